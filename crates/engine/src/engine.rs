//! The engine: decides commands against the log and appends their events; folds the log into
//! the read model. Projections are fed from the log (a catch-up subscription), never from the
//! command path, so what a query sees is always a prefix of the durable log.
//!
//! This file holds the `Engine` itself and what every path shares: its parts, the published
//! snapshot, waiting for the projector (read-your-writes) and health. How it starts is in
//! `startup.rs`, the projector in `projector.rs`, recording in `record.rs`, `batch.rs`,
//! `transaction.rs` and `national_ids.rs`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use uuid::Uuid;

use forlop_projections::ReadModel;
use forlop_store::EventStore;
use forlop_vault::Vault;

use crate::analysis::AnalysisPool;
use crate::error::EngineError;
use crate::id_claims::{IdClaim, IdClaims, Owners};
use crate::parts::{EngineParts, Settings, SharedAccessLog};
use crate::projector::Progress;
use crate::record_keys::RecordKeys;
use crate::subscriptions::SubscriptionCounts;
use crate::turns::Turns;
use crate::waiters::{Wait, Waiters};

/// A wait for the read model this long is reported: the projector folds well over 100,000
/// events a second, so it means a stuck projector, not load.
const SLOW_PROJECTION: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Engine {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) parts: EngineParts,
    /// The latest snapshot of the read model, published by the projector after each batch.
    /// Readers load it and keep it as long as they like; nothing they do delays the projector.
    pub(crate) model: Arc<ArcSwap<ReadModel>>,
    pub(crate) projected: watch::Receiver<Progress>,
    /// Mutations waiting for their event to be folded, woken by position (`waiters.rs`).
    pub(crate) waiters: Arc<Waiters>,
    /// Whose turn it is to decide on each stream (`turns.rs`).
    pub(crate) turns: Turns,
    /// Live subscriptions per token subject, to cap them.
    pub(crate) subscriptions: SubscriptionCounts,
    /// Set if the projector task died.
    pub(crate) projector_failed: Arc<OnceLock<String>>,
    /// Events in the log when this engine started; ready once it has folded them all.
    pub(crate) started_at: u64,
    /// The longest an event has waited, from reaching the projector to being in a published
    /// snapshot (nanoseconds): what readers can delay writers by. Reset by `take_max_stall`.
    pub(crate) max_stall: Arc<AtomicU64>,
    /// Threads for whole-model computations (reports, alert scans): one core fewer than the
    /// machine has, at a lower priority, so they never take a core from writers, the projector
    /// and patient reads (`analysis.rs`).
    pub(crate) analysis: Arc<AnalysisPool>,
    /// The position of the checkpoint on disk: the one loaded at start (0 if none), then each
    /// one written in the background.
    pub(crate) checkpointed: watch::Receiver<u64>,
    /// Stops the projector at shutdown, which releases its hold on the store.
    pub(crate) projector_abort: tokio::task::AbortHandle,
    /// Which patient holds each global id (`id_claims.rs`).
    pub(crate) owners: Owners,
    /// Global ids being recorded right now, and for whom (see `claim`).
    pub(crate) id_claims: IdClaims,
    /// Record keys for the cell key method, computed once per record (`disclosure`).
    pub(crate) record_keys: Arc<RecordKeys>,
    /// Set once the keys of patients the log says are forgotten have been destroyed after
    /// start (`erasure.rs`); the engine is ready only then.
    pub(crate) swept: Arc<AtomicBool>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("projected", &self.projected.borrow().position).finish()
    }
}

impl Engine {
    /// The event log, for the engine's own reads: adapters read through the engine's methods,
    /// which authorise and access-log what they hand over.
    pub(crate) fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Events committed to the log so far.
    pub fn committed(&self) -> u64 {
        self.store.committed()
    }

    pub fn access_log(&self) -> &SharedAccessLog {
        &self.parts.access_log
    }

    pub(crate) fn vault(&self) -> &Vault {
        &self.parts.vault
    }

    pub fn settings(&self) -> Settings {
        self.parts.settings
    }

    /// The patient holding a referral, episode, session or admission id, if one does.
    pub fn owner_of(&self, id: Uuid) -> Option<Uuid> {
        self.owners.read().owner(id, &self.model.load())
    }

    /// The latest published snapshot of the read model: a consistent prefix of the log, which
    /// the caller may hold for as long as a report takes.
    pub fn model(&self) -> Arc<ReadModel> {
        self.model.load_full()
    }

    /// Runs a whole-model computation (a report, an alert scan) on the snapshot current when it
    /// starts, on the analysis threads (`analysis.rs`). A report takes tens of milliseconds of
    /// CPU; run on the async workers, a few of them would hold up every mutation and patient
    /// read queued behind them. Here reports queue among themselves instead.
    pub async fn analyse<T: Send + 'static>(
        &self,
        compute: impl FnOnce(&ReadModel) -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        let model = self.model.clone();
        self.analysis
            .run(move || compute(&model.load_full()))
            .await
            .map_err(|e| EngineError::Internal(format!("analysis: {e}")))
    }

    /// Claims a global id for `patient` until the returned guard is dropped (after the event is
    /// readable): refused if another patient's fact already has it, or another patient's command
    /// is recording it right now.
    pub(crate) fn claim(&self, new: forlop_domain::NewId, patient: Uuid) -> Result<IdClaim, EngineError> {
        self.id_claims.claim(new, patient, &self.owners, &self.model)
    }

    /// Stops following the log (at shutdown): the projector lets go of the store, so the data
    /// directory can be opened again in this process. Later mutations answer UNAVAILABLE.
    pub fn stop(&self) {
        self.projector_abort.abort();
    }

    /// Waits until a background checkpoint at or beyond `position` has been written.
    pub async fn wait_checkpointed(&self, position: u64) -> Result<u64, EngineError> {
        let mut rx = self.checkpointed.clone();
        let at = rx
            .wait_for(|p| *p >= position)
            .await
            .map_err(|_| EngineError::Unavailable("the projector stopped".into()))?;
        Ok(*at)
    }

    /// The longest projection stall since the last call (see `max_stall`), and resets it.
    pub fn take_max_stall(&self) -> Duration {
        Duration::from_nanos(self.max_stall.swap(0, Ordering::Relaxed))
    }

    /// Number of log events the read model has folded.
    pub fn projected(&self) -> u64 {
        self.projected.borrow().position
    }

    /// Waits until the read model has folded the event at `position` (read-your-writes). Fails
    /// if the projector has died: the event is durable but will not be seen by this process.
    pub async fn wait_projected(&self, position: u64) -> Result<(), EngineError> {
        let stopped = || {
            // The projector is gone; say so at once rather than when its supervisor notices.
            let _ = self.projector_failed.set("the projector stopped".into());
            EngineError::Unavailable(
                "the read model is no longer updated (the projector stopped); the event is durable, retry on a healthy node".into(),
            )
        };
        let folded = || {
            let p = self.projected.borrow();
            p.position > position || p.stalled.is_some()
        };
        loop {
            let mut woken = match self.waiters.wait_for(position, folded) {
                Wait::Ready => break,
                Wait::Closed => return Err(stopped()),
                Wait::Pending(woken) => woken,
            };
            let woke = match tokio::time::timeout(SLOW_PROJECTION, &mut woken).await {
                Ok(woke) => woke,
                Err(_) => {
                    // Seconds behind its own log is not load but a stuck projector: say so.
                    tracing::warn!(
                        position,
                        projected = self.projected(),
                        committed = self.store.committed(),
                        "a mutation has waited {} s for the read model to fold its event",
                        SLOW_PROJECTION.as_secs()
                    );
                    woken.await
                }
            };
            woke.map_err(|_| stopped())?;
        }
        let progress = self.projected.borrow().clone();
        match progress.stalled {
            Some(reason) if progress.position <= position => Err(EngineError::Unavailable(format!(
                "the read model is not updated ({reason}); the event is durable, retry on a healthy node"
            ))),
            _ => Ok(()),
        }
    }

    /// Read-your-writes across nodes: waits until this node's read model holds the event at
    /// `position` (written here or on any node sharing the log), at most `timeout`; then
    /// `UNAVAILABLE`, so the client can retry or ask another node.
    pub async fn wait_for_position(&self, position: u64, timeout: Duration) -> Result<(), EngineError> {
        match tokio::time::timeout(timeout, self.wait_projected(position)).await {
            Ok(done) => done,
            Err(_) => Err(EngineError::Unavailable(format!(
                "this node has read the log up to position {} and not yet {position} after {} ms; retry",
                self.projected(),
                timeout.as_millis()
            ))),
        }
    }

    /// Writes the read model to its checkpoint file (done at clean shutdown), so the next start
    /// replays only the tail, unless the file on disk already holds this position. Returns the
    /// position checkpointed.
    pub async fn checkpoint(&self) -> Result<u64, EngineError> {
        let Some(path) = self.parts.checkpoint.clone() else { return Ok(0) };
        let model = self.model();
        let position = model.position;
        // Nothing folded since the checkpoint on disk (an idle node stopping): rewriting it would
        // only add seconds to the shutdown.
        if position > 0 && *self.checkpointed.borrow() == position && path.exists() {
            tracing::info!(events = position, "read-model checkpoint already up to date");
            return Ok(position);
        }
        let head = match position {
            0 => [0; 32],
            p => self.store.read_all(p - 1, 1).await?.first().map(|e| e.hash).unwrap_or([0; 32]),
        };
        // Encoding a whole snapshot takes a while: off the async workers.
        tokio::task::spawn_blocking(move || {
            crate::checkpoint::write(&path, &model, head).map_err(|e| format!("writing the checkpoint: {e}"))
        })
        .await
        .map_err(|e| EngineError::Internal(format!("checkpoint task: {e}")))?
        .map_err(EngineError::Internal)?;
        Ok(position)
    }

    /// Everything that keeps this engine from serving writes (fail-stop): a failed event log or
    /// access log, or a dead projector. Empty while healthy.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.store.failure());
        out.extend(self.access_log().failure());
        out.extend(self.projector_failed.get().map(|r| format!("projector: {r}")));
        out.extend(self.projected.borrow().stalled.as_ref().map(|r| format!("projector: {r}")));
        out
    }

    /// True once the read model has folded every event the log held at start, and the keys of
    /// the patients it says are forgotten are destroyed.
    pub fn ready(&self) -> bool {
        self.projected() >= self.started_at && self.swept.load(Ordering::Acquire)
    }
}
