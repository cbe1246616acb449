//! Optimistic concurrency against writers on other nodes (and this node's unpublished batches):
//! a write decided on a state another append has since moved on from is refused by the store's
//! expected-version check (or its id index), and is decided again on the new state, a bounded
//! number of times. One place for how many, what counts as contention, and how it is reported.

use forlop_store::StoreError;

use crate::error::EngineError;

/// Attempts before a write gives up as still contended.
const MAX_ATTEMPTS: usize = 32;

/// The attempts of one write: `while contention.another() { … }`.
pub(crate) struct Contention<'a> {
    /// The stream written, for the trace and the final error; None for a transaction.
    stream: Option<&'a str>,
    attempt: usize,
}

impl<'a> Contention<'a> {
    pub(crate) fn on_stream(stream: &'a str) -> Self {
        Contention { stream: Some(stream), attempt: 0 }
    }

    pub(crate) fn on_transaction() -> Self {
        Contention { stream: None, attempt: 0 }
    }

    /// Counts one more attempt: false once every attempt has been made.
    pub(crate) fn another(&mut self) -> bool {
        if self.attempt == MAX_ATTEMPTS {
            return false;
        }
        self.attempt += 1;
        true
    }

    /// True from the second attempt on.
    pub(crate) fn retrying(&self) -> bool {
        self.attempt > 1
    }

    /// After a refused append: Ok (once traced, and the writer that won has had a chance to
    /// run) if another writer got there first, so the caller decides again; the error itself
    /// if it is not contention.
    pub(crate) async fn decide_again(&self, refused: StoreError) -> Result<(), StoreError> {
        match refused {
            StoreError::WrongExpectedVersion { .. } | StoreError::IdempotencyConflict { .. } => {
                let attempt = self.attempt - 1;
                match self.stream {
                    Some(stream) => tracing::debug!(%stream, attempt, "concurrent write; deciding again"),
                    None => tracing::debug!(attempt, "concurrent write during a transaction; deciding again"),
                }
                tokio::task::yield_now().await;
                Ok(())
            }
            other => Err(other),
        }
    }

    /// The error once every attempt met another writer.
    pub(crate) fn exhausted(&self) -> EngineError {
        EngineError::Internal(match self.stream {
            Some(stream) => format!("stream {stream}: still contended after {MAX_ATTEMPTS} attempts"),
            None => format!("transaction still contended after {MAX_ATTEMPTS} attempts"),
        })
    }
}
