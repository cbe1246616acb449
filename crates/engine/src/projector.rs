//! The projector: one task that follows the committed log, folds each event into its own
//! working copy of the read model and publishes immutable snapshots (after each burst, and every
//! `PUBLISH_EVERY` events within a long one), then wakes the mutations waiting for them. It
//! also keeps the owner index current and starts the background checkpoints. A supervisor turns
//! its death into the engine's fail-stop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use forlop_projections::ReadModel;
use forlop_store::EventStore;

use crate::id_claims::{fact_id, Owners};
use crate::replay::{apply, decode_for_model};
use crate::waiters::CloseOnDrop;

/// Under a steady stream of events, a snapshot is published at least every this many.
const PUBLISH_EVERY: u64 = 1024;

/// What the projector publishes after each event it folds, or when it cannot read the log.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// Events folded into the read model (the next position to fold).
    pub(crate) position: u64,
    /// Why the projector cannot read the log right now (cleared by the next successful read).
    /// While set, writes are refused and waiting mutations fail: their events are durable, but
    /// this node would never show them.
    pub(crate) stalled: Option<Arc<str>>,
}

/// The projector's background checkpoints: every `every` events it encodes and writes the
/// snapshot it just published, on a blocking thread, one at a time; a checkpoint still being
/// written when the next is due is simply skipped.
pub(crate) struct BackgroundCheckpoint {
    pub(crate) path: Option<std::path::PathBuf>,
    pub(crate) every: u64,
    pub(crate) last: u64,
    pub(crate) running: Arc<AtomicBool>,
    pub(crate) written: Arc<watch::Sender<u64>>,
}

impl BackgroundCheckpoint {
    /// `head` is the hash of the last event in `model`.
    fn maybe_start(&mut self, model: &Arc<ReadModel>, head: forlop_store::Hash) {
        let Some(path) = self.path.clone() else { return };
        if self.every == 0 || model.position < self.last.saturating_add(self.every) {
            return;
        }
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.last = model.position;
        let (model, running, written) = (model.clone(), self.running.clone(), self.written.clone());
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = crate::checkpoint::write(&path, &model, head);
            match result {
                Ok(()) => {
                    let ms = started.elapsed().as_millis() as u64;
                    tracing::info!(events = model.position, ms, "read-model checkpoint written in the background");
                    written.send_replace(model.position);
                }
                Err(e) => tracing::warn!(error = %e, "background checkpoint failed; the next start replays more"),
            }
            running.store(false, Ordering::Release);
        });
    }
}

/// Everything the projector task owns or shares with the engine.
pub(crate) struct Projector {
    pub(crate) store: Arc<dyn EventStore>,
    /// Its own copy of the read model, folded event by event.
    pub(crate) working: ReadModel,
    /// Where it publishes snapshots of `working`.
    pub(crate) publish: Arc<ArcSwap<ReadModel>>,
    pub(crate) progress: watch::Sender<Progress>,
    /// However the projector ends, its waiters hear it at once.
    pub(crate) waiters: CloseOnDrop,
    pub(crate) owners: Owners,
    pub(crate) background: BackgroundCheckpoint,
    /// The longest an event has waited to be in a published snapshot (nanoseconds).
    pub(crate) max_stall: Arc<AtomicU64>,
}

impl Projector {
    /// Follows the log until every `Engine` is gone, or the task is aborted at shutdown.
    pub(crate) async fn run(mut self) {
        // When the oldest event not yet in a published snapshot arrived.
        let mut waiting_since: Option<Instant> = None;
        // The projector outlives read errors: it logs them and resumes from where it stopped.
        loop {
            let from = self.progress.borrow().position;
            let mut events = forlop_store::subscribe(self.store.clone(), from);
            let mut next = events.next().await;
            while let Some(item) = next.take() {
                match item {
                    Ok(e) => {
                        let position = e.position;
                        #[cfg(debug_assertions)]
                        if forlop_store::faults::projector_should_panic(position) {
                            panic!("injected fault: projector panic at position {position}");
                        }
                        waiting_since.get_or_insert_with(Instant::now);
                        let decoded = decode_for_model(&e);
                        if let (Some(id), Some(patient)) = (decoded.1.as_ref().and_then(fact_id), decoded.0.patient_id)
                        {
                            self.owners.write().insert(id, patient);
                        }
                        apply(&mut self.working, &decoded);
                        // Fold whatever else is already here before publishing, so a burst of
                        // events costs one snapshot (and one every PUBLISH_EVERY in a long
                        // burst); then publish, then tell waiting mutations (read-your-writes:
                        // their event is in what readers load). An event taken from the stream
                        // here is always folded next, whether or not we publish.
                        let ready = events.next().now_or_never();
                        let burst = matches!(ready, Some(Some(_)));
                        if !burst || self.working.position.is_multiple_of(PUBLISH_EVERY) {
                            self.publish.store(Arc::new(self.working.clone()));
                            self.progress.send_replace(Progress { position: position + 1, stalled: None });
                            self.waiters.0.wake_below(position + 1);
                            self.background.maybe_start(&self.publish.load_full(), e.hash);
                            if let Some(since) = waiting_since.take() {
                                let waited = since.elapsed();
                                metrics::histogram!("forlop_projection_stall_seconds").record(waited.as_secs_f64());
                                self.max_stall.fetch_max(waited.as_nanos() as u64, Ordering::Relaxed);
                            }
                        }
                        next = match ready {
                            Some(item) => item,
                            None => events.next().await,
                        };
                    }
                    Err(err) => {
                        // Fail-stop while the log cannot be read (sled keeps an I/O error, a full
                        // disk, for good); a read that succeeds again clears it.
                        let position = self.progress.borrow().position;
                        tracing::error!(error = %err, from = position, "projection read failed; refusing writes and retrying");
                        let reason = format!("cannot read the log at position {position}: {err}");
                        self.progress.send_replace(Progress { position, stalled: Some(reason.into()) });
                        self.waiters.0.wake_all();
                        break;
                    }
                }
            }
            if self.progress.is_closed() {
                return; // every Engine is gone
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Starts the projector and its supervisor: if it dies, reads would go stale while writes
    /// succeeded unseen, so the engine fails stop instead (mutations answer UNAVAILABLE,
    /// /healthz 503). Returns why it ended, once it has, and the handle that stops it.
    pub(crate) fn spawn(self) -> (Arc<OnceLock<String>>, tokio::task::AbortHandle) {
        let projector = tokio::spawn(self.run());
        let projector_failed = Arc::new(OnceLock::new());
        let failed = projector_failed.clone();
        let projector_abort = projector.abort_handle();
        tokio::spawn(async move {
            if let Err(e) = projector.await {
                if e.is_panic() {
                    tracing::error!("projector panicked; failing every later mutation");
                    let _ = failed.set("the projector panicked".to_string());
                } else {
                    // `Engine::stop`, at shutdown.
                    tracing::debug!("projector stopped");
                    let _ = failed.set("the engine is shutting down".to_string());
                }
            }
        });
        (projector_failed, projector_abort)
    }
}
