//! How an engine starts: the read model from its checkpoint (when the log still holds what it
//! was taken of) plus the log's tail, the owner index of global ids, then the projector.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use forlop_projections::ReadModel;
use forlop_store::EventStore;

use crate::analysis::AnalysisPool;
use crate::error::EngineError;
use crate::id_claims::Owners;
use crate::owners::OwnerIndex;
use crate::parts::EngineParts;
use crate::projector::{BackgroundCheckpoint, Progress, Projector};
use crate::record_keys::RecordKeys;
use crate::replay::catch_up;
use crate::waiters::{CloseOnDrop, Waiters};
use crate::Engine;

impl Engine {
    /// Rebuilds the read model from the log, then keeps it current from a live subscription.
    pub async fn start(store: Arc<dyn EventStore>, parts: EngineParts) -> Result<Engine, EngineError> {
        let started = std::time::Instant::now();
        let loaded = match (&parts.checkpoint, parts.preload.take().await) {
            (Some(path), Some(Some(decoded))) => crate::checkpoint::check_with_owners(decoded, path, &store).await,
            (Some(_), Some(None)) | (None, _) => None,
            (Some(path), None) => crate::checkpoint::load_with_owners(path, &store).await,
        };
        let (mut model, owners) = loaded.map_or((ReadModel::default(), None), |(m, o)| (m, Some(o)));
        let checkpointed = model.position;
        if checkpointed > 0 {
            let ms = started.elapsed().as_millis() as u64;
            tracing::info!(events = checkpointed, ms, "loaded read-model checkpoint; replaying the tail");
        }
        catch_up(&store, &mut model).await?;
        let caught_up = started.elapsed();
        // Who owns each global id: derived from the model (so checkpoints need not carry it),
        // then kept current by the projector. The checkpoint's is built as it decodes; a tail
        // replayed since needs the whole index built again.
        let owners = match owners {
            Some(o) if model.position == checkpointed => o,
            _ => OwnerIndex::of(&model),
        };
        let owners: Owners = Arc::new(parking_lot::RwLock::new(owners));
        tracing::info!(
            ids = owners.read().len(),
            ms = (started.elapsed() - caught_up).as_millis() as u64,
            "owner index of global ids built"
        );
        tracing::info!(
            events = model.position,
            patients = model.patients.len(),
            ms = started.elapsed().as_millis() as u64,
            "read model rebuilt"
        );
        let (progress, projected) = watch::channel(Progress { position: model.position, stalled: None });
        let snapshot = Arc::new(ArcSwap::from_pointee(model.clone()));
        let waiters = Arc::new(Waiters::default());
        let (checkpointed_tx, checkpointed) = watch::channel(checkpointed);
        let background = BackgroundCheckpoint {
            path: parts.checkpoint.clone(),
            every: parts.settings.checkpoint_every,
            last: model.position,
            running: Arc::new(AtomicBool::new(false)),
            written: Arc::new(checkpointed_tx),
        };
        let max_stall = Arc::new(AtomicU64::new(0));
        let (projector_failed, projector_abort) = Projector {
            store: store.clone(),
            working: model,
            publish: snapshot.clone(),
            progress,
            waiters: CloseOnDrop(waiters.clone()),
            owners: owners.clone(),
            background,
            max_stall: max_stall.clone(),
        }
        .spawn();
        let started_at = store.committed();
        let record_keys = Arc::new(RecordKeys::new(parts.vault.record_keyer()));
        let engine = Engine {
            store,
            parts,
            model: snapshot,
            projected,
            waiters,
            turns: Default::default(),
            subscriptions: Default::default(),
            projector_failed,
            started_at,
            max_stall,
            checkpointed,
            projector_abort,
            id_claims: Default::default(),
            record_keys,
            owners,
            analysis: Arc::new(AnalysisPool::start(
                std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
            )),
            swept: Default::default(),
        };
        engine.sweep_after_start();
        Ok(engine)
    }
}
