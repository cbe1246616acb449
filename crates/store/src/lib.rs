//! The event log: the `EventStore` trait every backend implements, the sled backend, and the
//! conformance suite every backend must pass.
//!
//! The store knows streams by name and payloads as opaque bytes; it knows nothing of the domain.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod access_log;
#[cfg(feature = "testing")]
pub mod conformance;
#[doc(hidden)]
pub mod faults;
mod group;
mod hash;
pub mod key_table;
#[cfg(feature = "testing")]
pub mod pg_cluster;
mod pg_store;
mod plan;
mod sled_open;
mod sled_store;

pub use hash::{chain_hash, to_hex, Hash, GENESIS_HASH};
pub use pg_store::{PgAccessLog, PgKeyTable, PgOptions, PgStore};
pub use plan::event_hash;
pub use sled_store::{SledOptions, SledStore};

/// What the writer expects the stream's version to be before the append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this version.
    Exact(u64),
}

/// Who recorded an event and in answer to what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub actor: String,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
}

/// An event as handed to `append`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Idempotency key: appending the same id with the same content again is a no-op.
    pub id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    /// Clinical time of the fact.
    pub occurred_at: DateTime<Utc>,
    /// JSON payload; opaque to the store.
    pub payload: Vec<u8>,
    pub metadata: Metadata,
    /// Set only when importing a log: keeps the original recording time. Otherwise the store's clock.
    pub recorded_at: Option<DateTime<Utc>>,
}

/// One stream's share of an atomic append to several streams (`EventStore::append_all`).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// An event as stored, with its full envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub id: Uuid,
    pub stream: String,
    /// Version within the stream, from 0, contiguous.
    pub version: u64,
    /// Position in the whole log, from 0, contiguous.
    pub position: u64,
    pub event_type: String,
    pub schema_version: u16,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub metadata: Metadata,
    pub payload: Vec<u8>,
    /// SHA-256 over the previous event's hash and this event's canonical bytes.
    pub hash: Hash,
}

impl RecordedEvent {
    /// True when `new` carries the same fact as this stored event (an idempotent retry): same
    /// stream, type, schema version and payload. Envelope times and metadata may differ on a retry.
    pub fn same_content(&self, stream: &str, new: &NewEvent) -> bool {
        self.stream == stream
            && self.event_type == new.event_type
            && self.schema_version == new.schema_version
            && self.payload == new.payload
    }
}

/// Where one appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub id: Uuid,
    pub version: u64,
    pub position: u64,
}

/// The result of an append: one entry per event, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    pub events: Vec<Committed>,
    /// True when every event was already stored with the same content and nothing was written.
    pub deduplicated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream}: expected version {expected:?}, current version {current:?}")]
    WrongExpectedVersion { stream: String, expected: ExpectedVersion, current: Option<u64> },
    #[error("event {id} is already stored with different content")]
    IdempotencyConflict { id: Uuid },
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    #[error("corrupt log at position {position}: {reason}")]
    Corrupt { position: u64, reason: String },
    #[error("store backend: {0}")]
    Backend(String),
    #[error("store is shut down")]
    Closed,
    /// Fail-stop: a write could not be made durable (or the writer died), so this process writes
    /// nothing more. Retryable elsewhere or after a restart.
    #[error("the log could not be made durable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::WrongExpectedVersion { .. } => "WRONG_EXPECTED_VERSION",
            StoreError::IdempotencyConflict { .. } => "IDEMPOTENCY_CONFLICT",
            StoreError::InvalidAppend(_) => "INVALID_INPUT",
            StoreError::Unavailable(_) => "UNAVAILABLE",
            StoreError::Corrupt { .. } | StoreError::Backend(_) | StoreError::Closed => "INTERNAL",
        }
    }
}

/// Outcome of a full integrity check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub events: u64,
    pub streams: u64,
    pub head_hash: Hash,
}

/// An append-only, hash-chained event log with per-stream optimistic concurrency.
///
/// Invariants every backend keeps (checked by `conformance`):
/// - appends are atomic and acknowledged only once durable;
/// - per-stream versions and global positions start at 0 and have no gaps;
/// - an event id is stored at most once, forever;
/// - `read_all` never shows an event before its append is acknowledged.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let part = StreamAppend { stream: stream.to_owned(), expected, events };
        let mut results = self.append_all(vec![part]).await?;
        results.pop().ok_or_else(|| StoreError::Backend("an append answered without a result".into()))
    }

    /// Appends to several streams at once, all or none: each part is checked (idempotency,
    /// expected version) against what is stored and the parts before it, and one refused part
    /// writes nothing of the others. One result per part, in order. A part may repeat a stream.
    async fn append_all(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError>;

    /// Events of one stream with version >= `from_version`, at most `limit`.
    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Events with position >= `from_position`, at most `limit`, in log order.
    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Version of the stream's last event, or None if the stream does not exist.
    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, StoreError>;

    /// Looks an event up by id.
    async fn event_by_id(&self, id: Uuid) -> Result<Option<RecordedEvent>, StoreError>;

    /// Number of committed events, which is also the position the next event will get.
    fn committed(&self) -> u64;

    /// Changes whenever `committed` grows.
    fn watch_committed(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Recomputes the hash chain, positions and stream versions over the whole log.
    async fn verify(&self) -> Result<VerifyReport, StoreError>;

    /// Why the store accepts no more writes, once it has failed (fail-stop); None while healthy.
    fn failure(&self) -> Option<String> {
        None
    }
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<RecordedEvent, StoreError>> + Send>>;

/// Catch-up subscription: every event from `from_position` on, then new ones as they commit.
/// Works over any backend: it reads committed events and waits on `watch_committed`.
pub fn subscribe(store: Arc<dyn EventStore>, from_position: u64) -> EventStream {
    const PAGE: usize = 1024;
    let mut watch = store.watch_committed();
    Box::pin(async_stream(move |tx| async move {
        let mut next = from_position;
        let mut empty_reads = 0u64;
        loop {
            let committed = *watch.borrow_and_update();
            while next < committed {
                match store.read_all(next, PAGE).await {
                    Ok(batch) if batch.is_empty() => {
                        // Below the committed position there is always an event: an empty read
                        // is an anomaly. Waiting for the next commit instead could wait forever
                        // on a quiet log (writers wait for this very event to be folded).
                        if empty_reads.is_multiple_of(100) {
                            tracing::warn!(
                                next,
                                committed,
                                empty_reads,
                                "a read below the committed position returned nothing; retrying"
                            );
                        }
                        empty_reads += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                    Ok(batch) => {
                        empty_reads = 0;
                        for e in batch {
                            next = e.position + 1;
                            if tx.send(Ok(e)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(err) => {
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                }
            }
            tokio::select! {
                changed = watch.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    }))
}

/// A small channel-backed stream, so the crate needs no stream-macro dependency.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<RecordedEvent, StoreError>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<RecordedEvent, StoreError>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
