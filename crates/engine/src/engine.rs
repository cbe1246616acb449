//! The engine: decides commands against the log and appends their events; folds the log into
//! the read model. Projections are fed from the log (a catch-up subscription), never from the
//! command path, so what a query sees is always a prefix of the durable log.

use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::Utc;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use uuid::Uuid;

use forlop_domain::national_id::NationalId;
use forlop_domain::{decide, Command, Event, References, StreamRef, StreamState};
use forlop_projections::{EventMeta, ReadModel};
use forlop_store::{EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError};

use forlop_store::access_log::FileAccessLog;
use forlop_store::key_table::KeyTable;
use forlop_vault::{MasterKey, Vault};

use crate::access::{Caller, SharedAccessLog};
use crate::error::EngineError;
use crate::policy;

/// How a recording names its idempotency key and concurrency expectation.
#[derive(Debug, Clone, Default)]
pub struct RecordOptions {
    pub event_id: Option<Uuid>,
    /// What the client expects of the stream; None lets the engine retry on concurrent writes.
    pub expected_version: Option<ExpectedVersion>,
}

/// What the engine needs besides the event log.
#[derive(Clone)]
pub struct EngineParts {
    pub access_log: SharedAccessLog,
    pub vault: Vault,
    pub settings: Settings,
    /// Where the read model is checkpointed (in the background and at clean shutdown) and
    /// loaded from at start.
    pub checkpoint: Option<std::path::PathBuf>,
    /// That checkpoint, decoding since the parts were opened (before the event log).
    pub preload: Arc<crate::checkpoint::Preload>,
}

/// Tunables of the core.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Analysts see counts from 1 to this − 1 as hidden, and larger ones perturbed.
    pub suppression_threshold: u64,
    /// The projector checkpoints the read model in the background every this many events (0:
    /// only at clean shutdown), so a crash replays at most this many.
    pub checkpoint_every: u64,
    /// How long a referral or episode a clinician recorded themselves, and nobody else has acted
    /// on, stays a self-recorded relationship (`policy::Relationship::SelfRecorded`).
    pub self_grant_days: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { suppression_threshold: 5, checkpoint_every: 100_000, self_grant_days: 14 }
    }
}

impl EngineParts {
    /// The access log and key table in their own sled databases under the event log's directory.
    pub fn open_beside(
        data: &std::path::Path,
        master: MasterKey,
        settings: Settings,
    ) -> Result<EngineParts, EngineError> {
        // The checkpoint starts decoding before the logs open.
        let checkpoint = data.join("readmodel.checkpoint");
        let preload = Arc::new(crate::checkpoint::Preload::start(&checkpoint));
        let access = FileAccessLog::open(&data.join("access"))?;
        let keys = KeyTable::open(&data.join("keys"))?;
        Ok(EngineParts::with_preload(Arc::new(access), Arc::new(keys), master, settings, checkpoint, preload))
    }

    /// Parts whose access log and key table live elsewhere (beside a PostgreSQL event log, shared
    /// by every node); this node's read-model checkpoint stays in `data`.
    pub fn new(
        data: &std::path::Path,
        access_log: SharedAccessLog,
        keys: Arc<dyn forlop_store::key_table::KeyStore>,
        master: MasterKey,
        settings: Settings,
    ) -> Result<EngineParts, EngineError> {
        std::fs::create_dir_all(data)
            .map_err(|e| EngineError::Unavailable(format!("creating {}: {e}", data.display())))?;
        let checkpoint = data.join("readmodel.checkpoint");
        let preload = Arc::new(crate::checkpoint::Preload::start(&checkpoint));
        Ok(EngineParts::with_preload(access_log, keys, master, settings, checkpoint, preload))
    }

    fn with_preload(
        access_log: SharedAccessLog,
        keys: Arc<dyn forlop_store::key_table::KeyStore>,
        master: MasterKey,
        settings: Settings,
        checkpoint: std::path::PathBuf,
        preload: Arc<crate::checkpoint::Preload>,
    ) -> EngineParts {
        EngineParts { access_log, vault: Vault::new(master, keys), settings, checkpoint: Some(checkpoint), preload }
    }
}

/// Folds one stored event into a stream's decision state.
fn fold_into(state: &mut StreamState, e: &RecordedEvent) -> Result<(), EngineError> {
    match Event::decode(&e.event_type, e.schema_version, &e.payload) {
        Ok(event) => state.apply(&event),
        // A type (or version) a newer forlop wrote: it carries no rule this build knows, so it
        // must not stop the stream from being decided.
        Err(forlop_domain::DecodeError::UnknownType { event_type, schema_version }) => {
            metrics::counter!("forlop_events_unknown_total", "type" => event_type.clone()).increment(1);
            tracing::warn!(position = e.position, %event_type, schema_version, "unknown event type skipped while deciding");
        }
        Err(err) => return Err(EngineError::Internal(format!("position {}: {err}", e.position))),
    }
    Ok(())
}

/// One fact of a [`Engine::record_batch`].
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub command: Command,
    /// Its idempotency key.
    pub event_id: Uuid,
    /// Facts of one group (one FHIR resource) stop at the group's first refusal.
    pub group: usize,
}

/// A copy of an error for every fact it stopped (the store's errors are not `Clone`).
fn clone_error(e: &EngineError) -> EngineError {
    match e {
        EngineError::Domain(d) => EngineError::Domain(d.clone()),
        EngineError::InvalidInput(m) => EngineError::InvalidInput(m.clone()),
        EngineError::WrongExpectedVersion { stream, expected, current } => {
            EngineError::WrongExpectedVersion { stream: stream.clone(), expected: expected.clone(), current: *current }
        }
        EngineError::IdempotencyConflict(id) => EngineError::IdempotencyConflict(*id),
        EngineError::Unauthenticated(m) => EngineError::Unauthenticated(m.clone()),
        EngineError::Forbidden(m) => EngineError::Forbidden(m.clone()),
        EngineError::Unavailable(m) => EngineError::Unavailable(m.clone()),
        EngineError::Internal(m) => EngineError::Internal(m.clone()),
    }
}

type Settled = Vec<Option<Result<Recorded, EngineError>>>;

fn copy_settled(s: &Settled) -> Settled {
    s.iter().map(|r| r.as_ref().map(|r| r.as_ref().map(|x| *x).map_err(clone_error))).collect()
}

/// What a successful recording returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub event_id: Uuid,
    pub stream_version: u64,
    pub position: u64,
    /// True when this was a retry of an already recorded event.
    pub deduplicated: bool,
}

/// What the projector publishes after each event it folds, or when it cannot read the log.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Events folded into the read model (the next position to fold).
    position: u64,
    /// Why the projector cannot read the log right now (cleared by the next successful read).
    /// While set, writes are refused and waiting mutations fail: their events are durable, but
    /// this node would never show them.
    stalled: Option<Arc<str>>,
}

#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn EventStore>,
    parts: EngineParts,
    /// The latest snapshot of the read model, published by the projector after each batch.
    /// Readers load it and keep it as long as they like; nothing they do delays the projector.
    model: Arc<ArcSwap<ReadModel>>,
    projected: watch::Receiver<Progress>,
    /// Mutations waiting for their event to be folded, woken by position (`waiters.rs`).
    waiters: Arc<crate::waiters::Waiters>,
    /// Commands to one stream are decided one at a time on this node (striped by stream name), so
    /// concurrent writers to one patient queue instead of failing; optimistic concurrency in the
    /// store still guards against other nodes.
    stripes: Arc<Vec<tokio::sync::Mutex<()>>>,
    /// Live subscriptions per token subject, to cap them.
    pub(crate) subscriptions: crate::access::SubscriptionCounts,
    /// Set if the projector task died.
    projector_failed: Arc<std::sync::OnceLock<String>>,
    /// Events in the log when this engine started; ready once it has folded them all.
    pub(crate) started_at: u64,
    /// The longest an event has waited, from reaching the projector to being in a published
    /// snapshot (nanoseconds): what readers can delay writers by. Reset by `take_max_stall`.
    max_stall: Arc<std::sync::atomic::AtomicU64>,
    /// Threads for whole-model computations (reports, alert scans): one core fewer than the
    /// machine has, at a lower priority, so they never take a core from writers, the projector
    /// and patient reads (`analysis.rs`).
    analysis: Arc<crate::analysis::AnalysisPool>,
    /// The position of the checkpoint on disk: the one loaded at start (0 if none), then each
    /// one written in the background.
    checkpointed: watch::Receiver<u64>,
    /// Stops the projector at shutdown, which releases its hold on the store.
    projector_abort: tokio::task::AbortHandle,
    /// Every referral, episode, session and admission id folded so far, and its patient. A flat
    /// map beside the snapshots (a persistent one cost several times the memory), written only
    /// by the projector, each lock held for one insert or lookup.
    owners: Owners,
    /// Global ids being recorded right now, and for whom (see `claim`).
    id_claims: Arc<parking_lot::Mutex<std::collections::HashMap<Uuid, Uuid>>>,
    /// Record keys for the cell key method, computed once per record (`disclosure`).
    pub(crate) record_keys: Arc<crate::disclosure::RecordKeys>,
    /// Set once the keys of patients the log says are forgotten have been destroyed after
    /// start (`erasure.rs`); the engine is ready only then.
    pub(crate) swept: Arc<std::sync::atomic::AtomicBool>,
}

type Owners = Arc<parking_lot::RwLock<crate::owners::OwnerIndex>>;

/// The global id an event introduces (see `forlop_domain::NewId`).
fn fact_id(event: &Event) -> Option<Uuid> {
    match event {
        Event::ReferralReceived(e) => Some(e.referral_id),
        Event::EpisodeStarted(e) => Some(e.episode_id),
        Event::SessionRecorded(e) => Some(e.session_id),
        Event::PatientAdmitted(e) => Some(e.admission_id),
        Event::StayRecorded(e) => Some(e.admission_id),
        _ => None,
    }
}

/// A claimed global id; released when dropped.
pub(crate) struct IdClaim {
    claims: Arc<parking_lot::Mutex<std::collections::HashMap<Uuid, Uuid>>>,
    id: Uuid,
}

impl Drop for IdClaim {
    fn drop(&mut self) {
        self.claims.lock().remove(&self.id);
    }
}

/// What one attempt of a batch came to.
enum Attempt {
    /// Settled; the position of the last event appended, if any.
    Done(Option<u64>),
    /// A fact was refused on the presumption that a stream the read model has not seen is empty:
    /// decide again on a read.
    ReadFirst,
}

/// What a batch recorded without waiting for the read model (`Engine::record_batch_unpublished`)
/// leaves to wait for: the position of its last new event, and the global ids it claimed, held
/// until that event is folded (`Engine::published`).
#[must_use = "the ids stay claimed, and the events unconfirmed, until `Engine::published` is awaited"]
#[derive(Default)]
pub struct Unpublished {
    position: Option<u64>,
    claims: Vec<IdClaim>,
}

impl Unpublished {
    /// Both batches' waits as one: the later position, every claim.
    pub fn and(mut self, other: Unpublished) -> Unpublished {
        self.position = self.position.max(other.position);
        self.claims.extend(other.claims);
        self
    }
}

/// The projector's background checkpoints: every `every` events it encodes and writes the
/// snapshot it just published, on a blocking thread, one at a time; a checkpoint still being
/// written when the next is due is simply skipped.
struct BackgroundCheckpoint {
    path: Option<std::path::PathBuf>,
    every: u64,
    last: u64,
    running: Arc<std::sync::atomic::AtomicBool>,
    written: Arc<watch::Sender<u64>>,
}

impl BackgroundCheckpoint {
    /// `head` is the hash of the last event in `model`.
    fn maybe_start(&mut self, model: &Arc<ReadModel>, head: forlop_store::Hash) {
        use std::sync::atomic::Ordering;
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
            let started = std::time::Instant::now();
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

/// Turns per stream are striped: a turn is held through the append, so two patients that share
/// a stripe wait for each other's write. Enough that the hundreds of patients of one import
/// chunk or batch rarely meet (a few hundred kilobytes of mutexes).
const STRIPES: usize = 16_384;
/// A wait for the read model this long is reported: the projector folds well over 100,000
/// events a second, so it means a stuck projector, not load.
const SLOW_PROJECTION: std::time::Duration = std::time::Duration::from_secs(10);
/// Under a steady stream of events, a snapshot is published at least every this many.
const PUBLISH_EVERY: u64 = 1024;
/// Optimistic retries against writers on other nodes before giving up.
pub(crate) const MAX_ATTEMPTS: usize = 32;

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("projected", &self.projected.borrow().position).finish()
    }
}

/// The vault's errors as the engine answers them.
fn vault_error(e: forlop_vault::VaultError) -> EngineError {
    match e {
        forlop_vault::VaultError::NationalIdInUse => EngineError::Domain(forlop_domain::DomainError::AlreadyExists(
            "a patient with this national id is already registered".into(),
        )),
        other => EngineError::Unavailable(format!("the key table could not be written: {other}")),
    }
}

fn stripe_of(stream: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(stream);
    h as usize % STRIPES
}

/// The domain has no clock: a fact dated more than a day ahead of this server's is refused here.
pub(crate) fn not_ahead(command: &Command) -> Result<(), EngineError> {
    let proposed = command.proposed_event();
    let bound = Utc::now() + chrono::Duration::hours(24);
    match proposed.clinical_time().filter(|t| *t > bound) {
        Some(t) => Err(EngineError::invalid(format!(
            "{} {t} is more than 24 h in the future (latest accepted: {bound})",
            proposed.clinical_time_field()
        ))),
        None => Ok(()),
    }
}

/// The store's form of a domain event. Registrations have no clinical time: they occur when recorded.
pub fn new_event(id: Uuid, event: &Event, metadata: Metadata) -> NewEvent {
    NewEvent {
        id,
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        occurred_at: event.clinical_time().unwrap_or_else(Utc::now),
        payload: event.to_payload(),
        metadata,
        recorded_at: None,
    }
}

/// Decodes a stored event into the domain, upcasting old versions.
pub fn decode(e: &RecordedEvent) -> Result<Event, EngineError> {
    Event::decode(&e.event_type, e.schema_version, &e.payload)
        .map_err(|err| EngineError::Internal(format!("position {}: {err}", e.position)))
}

/// Folds the log from position 0 into a fresh read model. Used at startup and by `bench`.
pub async fn rebuild(store: &Arc<dyn EventStore>) -> Result<ReadModel, EngineError> {
    let mut model = ReadModel::default();
    catch_up(store, &mut model).await?;
    Ok(model)
}

/// Folds the first `end` events of the log into a fresh read model (for measurements).
pub async fn rebuild_until(store: &Arc<dyn EventStore>, end: u64) -> Result<ReadModel, EngineError> {
    let mut model = ReadModel::default();
    fold(store, &mut model, end).await?;
    Ok(model)
}

/// An event ready to fold: decoded off the folding thread.
type Decoded = (EventMeta, Option<Event>);

fn decode_for_model(e: &RecordedEvent) -> Decoded {
    let meta = EventMeta {
        position: e.position,
        stream_version: e.version,
        patient_id: StreamRef::parse(&e.stream).and_then(|s| s.patient_id()),
    };
    match Event::decode(&e.event_type, e.schema_version, &e.payload) {
        Ok(event) => (meta, Some(event)),
        Err(err) => {
            // Skip, but loudly: a newer writer may have stored a type this build does not know.
            tracing::error!(position = e.position, error = %err, "event not understood; read model skips it");
            metrics::counter!("forlop_events_unknown_total", "type" => e.event_type.clone()).increment(1);
            (meta, None)
        }
    }
}

fn apply(model: &mut ReadModel, (meta, event): &Decoded) {
    match event {
        Some(event) => model.apply(*meta, event),
        None => model.position = meta.position + 1,
    }
}

/// Folds every committed event after `model.position`. Reading, decoding and folding overlap:
/// one task reads pages, each page is decoded on a blocking thread of its own, and the caller
/// folds them in log order.
pub async fn catch_up(store: &Arc<dyn EventStore>, model: &mut ReadModel) -> Result<(), EngineError> {
    fold(store, model, u64::MAX).await
}

async fn fold(store: &Arc<dyn EventStore>, model: &mut ReadModel, end: u64) -> Result<(), EngineError> {
    const PAGE: u64 = 4096;
    // Decoding (JSON, timestamps, ids) costs about three times what folding does, so pages are
    // decoded side by side; the bound keeps at most a few pages in memory.
    type Page = tokio::task::JoinHandle<Vec<Decoded>>;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Page, StoreError>>(4);
    let (store, mut next) = (store.clone(), model.position);
    let reader = tokio::spawn(async move {
        loop {
            let limit = PAGE.min(end.saturating_sub(next)) as usize;
            if limit == 0 {
                return;
            }
            let page = match store.read_all(next, limit).await {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let Some(last) = page.last() else { return };
            next = last.position + 1;
            let decoding = tokio::task::spawn_blocking(move || page.iter().map(decode_for_model).collect());
            if tx.send(Ok(decoding)).await.is_err() {
                return;
            }
        }
    });
    while let Some(page) = rx.recv().await {
        let decoded = page?.await.map_err(|e| EngineError::Internal(format!("replay decoder: {e}")))?;
        for d in &decoded {
            apply(model, d);
        }
    }
    reader.await.map_err(|e| EngineError::Internal(format!("replay reader: {e}")))?;
    Ok(())
}

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
            _ => crate::owners::OwnerIndex::of(&model),
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
        let (tx, projected) = watch::channel(Progress { position: model.position, stalled: None });
        let snapshot = Arc::new(ArcSwap::from_pointee(model.clone()));
        let (publish, projector_store, projector_owners) = (snapshot.clone(), store.clone(), owners.clone());
        let waiters = Arc::new(crate::waiters::Waiters::default());
        let closing = crate::waiters::CloseOnDrop(waiters.clone());
        let mut working = model;
        let (checkpointed_tx, checkpointed) = watch::channel(checkpointed);
        let mut background = BackgroundCheckpoint {
            path: parts.checkpoint.clone(),
            every: parts.settings.checkpoint_every,
            last: working.position,
            running: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            written: Arc::new(checkpointed_tx),
        };
        let max_stall = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stall = max_stall.clone();
        let projector = tokio::spawn(async move {
            // However the projector ends, its waiters hear it at once.
            let waiters = closing;
            // When the oldest event not yet in a published snapshot arrived.
            let mut waiting_since: Option<std::time::Instant> = None;
            // The projector outlives read errors: it logs them and resumes from where it stopped.
            loop {
                let from = tx.borrow().position;
                let mut events = forlop_store::subscribe(projector_store.clone(), from);
                let mut next = events.next().await;
                while let Some(item) = next.take() {
                    match item {
                        Ok(e) => {
                            let position = e.position;
                            #[cfg(debug_assertions)]
                            if forlop_store::faults::projector_should_panic(position) {
                                panic!("injected fault: projector panic at position {position}");
                            }
                            waiting_since.get_or_insert_with(std::time::Instant::now);
                            let decoded = decode_for_model(&e);
                            if let (Some(id), Some(patient)) =
                                (decoded.1.as_ref().and_then(fact_id), decoded.0.patient_id)
                            {
                                projector_owners.write().insert(id, patient);
                            }
                            apply(&mut working, &decoded);
                            // Fold whatever else is already here before publishing, so a burst
                            // of events costs one snapshot (and one every PUBLISH_EVERY in a long
                            // burst); then publish, then tell waiting mutations (read-your-writes:
                            // their event is in what readers load). An event taken from the
                            // stream here is always folded next, whether or not we publish.
                            let ready = events.next().now_or_never();
                            let burst = matches!(ready, Some(Some(_)));
                            if !burst || working.position % PUBLISH_EVERY == 0 {
                                publish.store(Arc::new(working.clone()));
                                tx.send_replace(Progress { position: position + 1, stalled: None });
                                waiters.0.wake_below(position + 1);
                                background.maybe_start(&publish.load_full(), e.hash);
                                if let Some(since) = waiting_since.take() {
                                    let waited = since.elapsed();
                                    metrics::histogram!("forlop_projection_stall_seconds").record(waited.as_secs_f64());
                                    stall.fetch_max(waited.as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
                                }
                            }
                            next = match ready {
                                Some(item) => item,
                                None => events.next().await,
                            };
                        }
                        Err(err) => {
                            // Fail-stop while the log cannot be read (sled keeps an I/O error, a
                            // full disk, for good); a read that succeeds again clears it.
                            let position = tx.borrow().position;
                            tracing::error!(error = %err, from = position, "projection read failed; refusing writes and retrying");
                            let reason = format!("cannot read the log at position {position}: {err}");
                            tx.send_replace(Progress { position, stalled: Some(reason.into()) });
                            waiters.0.wake_all();
                            break;
                        }
                    }
                }
                if tx.is_closed() {
                    return; // every Engine is gone
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        });
        // Supervise the projector: if it dies, reads would go stale while writes succeeded
        // unseen, so the engine fails stop instead (mutations answer UNAVAILABLE, /healthz 503).
        let projector_failed = Arc::new(std::sync::OnceLock::new());
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
        let stripes = Arc::new((0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect());
        let started_at = store.committed();
        let record_keys = Arc::new(crate::disclosure::RecordKeys::new(parts.vault.record_keyer()));
        let engine = Engine {
            store,
            parts,
            model: snapshot,
            projected,
            waiters,
            stripes,
            subscriptions: Default::default(),
            projector_failed,
            started_at,
            max_stall,
            checkpointed,
            projector_abort,
            id_claims: Default::default(),
            record_keys,
            owners,
            analysis: Arc::new(crate::analysis::AnalysisPool::start(
                std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
            )),
            swept: Default::default(),
        };
        engine.sweep_after_start();
        Ok(engine)
    }

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

    /// The latest published snapshot of the read model: a consistent prefix of the log, which
    /// the caller may hold for as long as a report takes.
    /// The patient holding a referral, episode, session or admission id, if one does.
    pub fn owner_of(&self, id: Uuid) -> Option<Uuid> {
        self.owners.read().owner(id, &self.model.load())
    }

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
        let id = new.id();
        let taken = || {
            EngineError::invalid(format!("{}: {id} is already used by another patient (ids are global)", new.field()))
        };
        let mut claims = self.id_claims.lock();
        if claims.get(&id).is_some_and(|p| *p != patient) {
            return Err(taken());
        }
        if self.owners.read().owner(id, &self.model.load()).is_some_and(|p| p != patient) {
            return Err(taken());
        }
        claims.insert(id, patient);
        Ok(IdClaim { claims: self.id_claims.clone(), id })
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
    pub fn take_max_stall(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.max_stall.swap(0, std::sync::atomic::Ordering::Relaxed))
    }

    /// Number of log events the read model has folded.
    pub fn projected(&self) -> u64 {
        self.projected.borrow().position
    }

    /// Waits until the read model has folded the event at `position` (read-your-writes). Fails
    /// if the projector has died: the event is durable but will not be seen by this process.
    pub async fn wait_projected(&self, position: u64) -> Result<(), EngineError> {
        use crate::waiters::Wait;
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
    pub async fn wait_for_position(&self, position: u64, timeout: std::time::Duration) -> Result<(), EngineError> {
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
        self.projected() >= self.started_at && self.swept.load(std::sync::atomic::Ordering::Acquire)
    }

    /// `stream_state`, with the stream's events by id (to recognise retries without a lookup).
    async fn stream_state_with_ids(
        &self,
        stream: &str,
    ) -> Result<(StreamState, Option<u64>, std::collections::HashMap<Uuid, RecordedEvent>), EngineError> {
        let events = self.store.read_stream(stream, 0, usize::MAX).await?;
        let mut state = StreamState::default();
        let version = events.last().map(|e| e.version);
        for e in &events {
            fold_into(&mut state, e)?;
        }
        Ok((state, version, events.into_iter().map(|e| (e.id, e)).collect()))
    }

    pub(crate) async fn stream_state(&self, stream: &str) -> Result<(StreamState, Option<u64>), EngineError> {
        let mut state = StreamState::default();
        let mut version = None;
        let mut from = 0;
        loop {
            let page = self.store.read_stream(stream, from, 4096).await?;
            let Some(last) = page.last() else { break };
            from = last.version + 1;
            version = Some(last.version);
            for e in &page {
                fold_into(&mut state, e)?;
            }
        }
        Ok((state, version))
    }

    async fn reference<T>(&self, stream: StreamRef, pick: fn(Event) -> Option<T>) -> Result<Option<T>, EngineError> {
        let first = self.store.read_stream(&stream.name(), 0, 1).await?;
        match first.first() {
            None => Ok(None),
            Some(e) => Ok(pick(decode(e)?)),
        }
    }

    async fn references(&self, command: &Command) -> Result<References, EngineError> {
        let mut refs = References::default();
        if let Some(id) = command.referenced_service() {
            refs.service = self
                .reference(StreamRef::Service(id), |e| match e {
                    Event::ServiceRegistered(s) => Some(s),
                    _ => None,
                })
                .await?;
        }
        if let Some(id) = command.referenced_therapist() {
            refs.therapist = self
                .reference(StreamRef::Therapist(id), |e| match e {
                    Event::TherapistRegistered(t) => Some(t),
                    _ => None,
                })
                .await?;
        }
        Ok(refs)
    }

    /// A retry of a stored event returns its original placing; the same id with other content
    /// is a conflict. Checked before deciding, since the retry would fail today's rules.
    async fn replayed(
        &self,
        caller: &Caller,
        id: Uuid,
        stream: &str,
        command: &Command,
    ) -> Result<Option<Recorded>, EngineError> {
        let Some(stored) = self.store.event_by_id(id).await? else { return Ok(None) };
        // Whether a guessed content matches someone else's fact would confirm that fact to a
        // caller who may not read it: such a caller is told only that the id is taken. A client's
        // retries of its own events are answered as always.
        if stored.metadata.actor != caller.actor() && !self.may_read_facts(caller, &stored.stream).await? {
            return Err(EngineError::IdempotencyConflict(id));
        }
        let proposed = command.proposed_event();
        let same =
            stored.stream == stream && stored.event_type == proposed.event_type() && decode(&stored)? == proposed;
        if !same {
            return Err(EngineError::IdempotencyConflict(id));
        }
        Ok(Some(Recorded {
            event_id: id,
            stream_version: stored.version,
            position: stored.position,
            deduplicated: true,
        }))
    }

    /// Whether the caller may read the facts of `stream` (a patient's: as `policy` decides for a
    /// read without a reason, on the relationship the read would rest on; any other stream's
    /// facts are reference data).
    async fn may_read_facts(&self, caller: &Caller, stream: &str) -> Result<bool, EngineError> {
        let Some(patient) = StreamRef::parse(stream).and_then(|s| s.patient_id()) else { return Ok(true) };
        let view = self.model().patients.get(&patient).cloned();
        let related = self.relationship(caller, view.as_ref()).await?;
        Ok(matches!(
            policy::patient_access(&caller.principal, view.as_deref(), None, related),
            policy::PatientAccess::Full
        ))
    }

    fn stripe(&self, stream: &str) -> &tokio::sync::Mutex<()> {
        &self.stripes[stripe_of(stream)]
    }

    /// Takes the turns of every stream named, in stripe order so that two callers never wait
    /// on each other.
    pub(crate) async fn turns(&self, streams: impl Iterator<Item = String>) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = streams.map(|s| stripe_of(&s)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut turns = Vec::with_capacity(stripes.len());
        for s in stripes {
            turns.push(self.stripes[s].lock().await);
        }
        turns
    }

    /// Refuses a recording the caller may not make, logging the attempt if it names a patient.
    pub(crate) async fn authorize_record(&self, caller: &Caller, command: &Command) -> Result<(), EngineError> {
        let mut verdict = policy::may_record(&caller.principal, command, &self.model());
        if verdict.is_ok() {
            verdict = self.within_relationship(caller, command).await?;
        }
        let Err(why) = verdict else { return Ok(()) };
        if let Some(patient) = command.stream().patient_id() {
            let record = caller.denied(patient, "mutation");
            self.log_access(vec![record]).await?;
        }
        Err(EngineError::Forbidden(why))
    }

    /// A clinician whose relationship to the patient is one they recorded themselves
    /// (`policy::Relationship::SelfRecorded`) records only about their own services' referrals,
    /// episodes and admissions: writing to another service's facts would be a way to probe them.
    async fn within_relationship(&self, caller: &Caller, command: &Command) -> Result<Result<(), String>, EngineError> {
        let p = &caller.principal;
        let Some(patient) = command.stream().patient_id() else { return Ok(Ok(())) };
        if !p.has(forlop_auth::Role::Clinician)
            || p.has(forlop_auth::Role::Admin)
            || p.has(forlop_auth::Role::Integration)
        {
            return Ok(Ok(()));
        }
        let view = self.model().patients.get(&patient).cloned();
        if self.relationship(caller, view.as_ref()).await? != policy::Relationship::SelfRecorded {
            return Ok(Ok(()));
        }
        let fact: serde_json::Value =
            serde_json::from_slice(&command.proposed_event().to_payload()).unwrap_or_default();
        Ok(match view {
            Some(view) if !policy::touches_only_own_services(p, &view, &fact) => {
                Err("you recorded this patient's only referral or episode at your service yourself: until a colleague \
                 confirms it you may record only about your own service's referrals, episodes and admissions"
                    .into())
            }
            _ => Ok(()),
        })
    }

    /// Decides `command` against the current log and appends its event durably, if the caller
    /// may record it. A national id is sealed by the vault before it reaches the log.
    pub async fn record(
        &self,
        caller: &Caller,
        command: Command,
        national_id: Option<NationalId>,
        options: RecordOptions,
    ) -> Result<Recorded, EngineError> {
        match self.record_checked(caller, command, national_id, options).await {
            // An internal error while the node is failing (a read of a store that could not
            // write) is the failure itself: retryable elsewhere, not a bug to report.
            Err(EngineError::Internal(detail)) if !self.failures().is_empty() => {
                tracing::warn!(%detail, "write refused while failed");
                Err(EngineError::Unavailable(format!("not accepting writes: {}", self.failures().join("; "))))
            }
            other => other,
        }
    }

    async fn record_checked(
        &self,
        caller: &Caller,
        command: Command,
        national_id: Option<NationalId>,
        options: RecordOptions,
    ) -> Result<Recorded, EngineError> {
        if let Some(reason) = self.failures().into_iter().next() {
            return Err(EngineError::Unavailable(format!("not accepting writes: {reason}")));
        }
        self.authorize_record(caller, &command).await?;
        let stream = command.stream().name();
        let refs = self.references(&command).await?;
        let _turn = self.stripe(&stream).lock().await;
        let _claim = match (command.new_id(), command.stream().patient_id()) {
            (Some(new), Some(patient)) => Some(self.claim(new, patient)?),
            _ => None,
        };
        match (command, national_id) {
            (Command::RegisterPatient(e), Some(id)) => self.register_with_national_id(caller, e, id, options).await,
            (command, None) => self.record_locked(caller, command, &refs, options).await,
            (_, Some(_)) => Err(EngineError::invalid("only registerPatient takes a nationalId")),
        }
    }

    /// Seals the national id and records the registration. A retry with the same event id and the
    /// same number is recognised by opening the stored number, since every sealing differs.
    async fn register_with_national_id(
        &self,
        caller: &Caller,
        mut event: forlop_domain::events::PatientRegistered,
        id: NationalId,
        options: RecordOptions,
    ) -> Result<Recorded, EngineError> {
        let stream = StreamRef::Patient(event.patient_id).name();
        if let Some(event_id) = options.event_id {
            if let Some(stored) = self.store.event_by_id(event_id).await? {
                if !self.same_registration(&stored, &event, &id).await? {
                    return Err(EngineError::IdempotencyConflict(event_id));
                }
                return Ok(Recorded {
                    event_id,
                    stream_version: stored.version,
                    position: stored.position,
                    deduplicated: true,
                });
            }
        }
        if self.store.stream_version(&stream).await?.is_some() {
            return Err(forlop_domain::DomainError::AlreadyExists(format!(
                "patient {} already exists",
                event.patient_id
            ))
            .into());
        }
        // The rules first, so that a refused registration never reaches the key table: a number
        // sealed for a patient who was then not recorded would be held by no one, for good.
        decide(&StreamState::default(), &References::default(), Command::RegisterPatient(event.clone()))?;
        if let Some(expected) = options.expected_version {
            if !matches!(expected, ExpectedVersion::Any | ExpectedVersion::NoStream) {
                return Err(StoreError::WrongExpectedVersion { stream, expected, current: None }.into());
            }
        }
        let patient = event.patient_id;
        event.national_id = Some(self.seal_national_id(caller, patient, &id).await?);
        let recorded =
            self.record_locked(caller, Command::RegisterPatient(event), &References::default(), options).await;
        if recorded.is_err() && self.store.stream_version(&stream).await.ok().flatten().is_none() {
            // Not recorded after all: the number goes back to no one.
            if let Err(e) = self.vault().forget(patient).await {
                tracing::error!(error = %e, "could not release the national id of a registration that failed");
            }
        }
        recorded
    }

    /// Whether `stored` registers the same patient as `event` with national id `id`: the number
    /// is compared by opening it, since every sealing differs.
    pub(crate) async fn same_registration(
        &self,
        stored: &RecordedEvent,
        event: &forlop_domain::events::PatientRegistered,
        id: &NationalId,
    ) -> Result<bool, EngineError> {
        Ok(match decode(stored)? {
            Event::PatientRegistered(s) if stored.stream == StreamRef::Patient(event.patient_id).name() => {
                let revealed = match s.national_id.as_deref().map(forlop_vault::Sealed::from_base64) {
                    Some(Ok(sealed)) => self.vault().reveal(s.patient_id, &sealed).await.ok().flatten(),
                    _ => None,
                };
                s.birth_year == event.birth_year && s.gender == event.gender && revealed.as_ref() == Some(id)
            }
            _ => false,
        })
    }

    /// Seals a new patient's national id under their data key, refusing a number another
    /// patient holds.
    pub(crate) async fn seal_national_id(
        &self,
        caller: &Caller,
        patient: Uuid,
        id: &NationalId,
    ) -> Result<String, EngineError> {
        self.check_national_id_free(caller, patient, id).await?;
        Ok(self.vault().protect(patient, id).await.map_err(vault_error)?.to_base64())
    }

    /// Refuses a national id that another patient holds. The refusal tells the caller that the
    /// number is someone's, so it is an access record on that patient (who sees it in
    /// `myAccessLog`), like every other resolution of a national id.
    pub(crate) async fn check_national_id_free(
        &self,
        caller: &Caller,
        patient: Uuid,
        id: &NationalId,
    ) -> Result<(), EngineError> {
        match self.vault_find(id).await? {
            Some(holder) if holder != patient => {
                self.log_access(vec![caller.denied(holder, "registerPatient.nationalId")]).await?;
                Err(vault_error(forlop_vault::VaultError::NationalIdInUse))
            }
            _ => Ok(()),
        }
    }

    /// Records several facts about one patient with a single append: each is decided against
    /// the state the ones before it leave. Facts already recorded (by event id) are answered as
    /// retries, and a refused fact stops the rest of its `group` (one FHIR resource), not the
    /// others. Returns one result per item, in order. Items must all be on the same stream;
    /// registrations with a national id go through [`Engine::record`].
    pub async fn record_batch(&self, caller: &Caller, items: Vec<BatchItem>) -> Vec<Result<Recorded, EngineError>> {
        let (mut results, unpublished) = self.record_batch_unpublished(caller, items).await;
        if let Err(e) = self.published(unpublished).await {
            for r in results.iter_mut().filter(|r| r.as_ref().is_ok_and(|r| !r.deduplicated)) {
                *r = Err(clone_error(&e));
            }
        }
        results
    }

    /// Waits until the events of a batch recorded unpublished are in the read model
    /// (read-your-writes), then lets go of the ids it claimed. An error says the events are
    /// durable but this node's read model does not follow the log.
    pub async fn published(&self, unpublished: Unpublished) -> Result<(), EngineError> {
        match unpublished.position {
            Some(position) => self.wait_projected(position).await,
            None => Ok(()),
        }
    }

    /// `record_batch`, returning once the new events are durable: a bulk import writes its next
    /// chunk while the read model folds this one, and awaits `published` before it relies on
    /// them (or reports the import done).
    pub async fn record_batch_unpublished(
        &self,
        caller: &Caller,
        items: Vec<BatchItem>,
    ) -> (Vec<Result<Recorded, EngineError>>, Unpublished) {
        let Some(first) = items.first() else { return (Vec::new(), Unpublished::default()) };
        let stream_ref = first.command.stream();
        let stream = stream_ref.name();
        if items.iter().any(|i| i.command.stream() != stream_ref) {
            let msg = "record_batch takes facts of one stream";
            return (items.iter().map(|_| Err(EngineError::Internal(msg.into()))).collect(), Unpublished::default());
        }
        if let Some(reason) = self.failures().into_iter().next() {
            let results = items
                .iter()
                .map(|_| Err(EngineError::Unavailable(format!("not accepting writes: {reason}"))))
                .collect();
            return (results, Unpublished::default());
        }
        let mut results: Settled = items.iter().map(|_| None).collect();
        let mut refs = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match self.authorize_record(caller, &item.command).await {
                Ok(()) => {}
                Err(e) => results[i] = Some(Err(e)),
            }
            refs.push(match self.references_from_model(&item.command).await {
                Ok(r) => r,
                Err(e) => {
                    results[i] = results[i].take().or(Some(Err(e)));
                    References::default()
                }
            });
        }
        let _turn = self.stripe(&stream).lock().await;
        let mut claims = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let (Some(new), Some(patient), None) =
                (item.command.new_id(), item.command.stream().patient_id(), &results[i])
            {
                match self.claim(new, patient) {
                    Ok(c) => claims.push(c),
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
        }
        let settled = copy_settled(&results);
        let mut position = None;
        for attempt in 0..MAX_ATTEMPTS {
            results = copy_settled(&settled);
            let outcome = self.decide_and_append(caller, stream_ref, &items, &refs, &mut results, attempt > 0).await;
            match outcome {
                Ok(Attempt::Done(last)) => {
                    position = last;
                    break;
                }
                // Refused on a presumption: the next attempt reads the stream.
                Ok(Attempt::ReadFirst) => {}
                Err(StoreError::WrongExpectedVersion { .. }) | Err(StoreError::IdempotencyConflict { .. }) => {
                    // Another writer got there first: decide again on the new state.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    let e = EngineError::from(e);
                    let results = results.into_iter().map(|r| r.unwrap_or_else(|| Err(clone_error(&e)))).collect();
                    return (results, Unpublished::default());
                }
            }
        }
        let results = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(EngineError::Internal(format!("stream {stream}: still contended")))))
            .collect();
        (results, Unpublished { position, claims })
    }

    /// One attempt of `record_batch`: fills `results` for every item it settles and says what
    /// the attempt came to (`Attempt`).
    async fn decide_and_append(
        &self,
        caller: &Caller,
        stream_ref: StreamRef,
        items: &[BatchItem],
        refs: &[References],
        results: &mut [Option<Result<Recorded, EngineError>>],
        retrying: bool,
    ) -> Result<Attempt, StoreError> {
        let stream = &stream_ref.name();
        // A stream the read model has never seen is presumed empty, without a read. The store's
        // expected-version check confirms it (an append of another node, or one of a batch recorded
        // unpublished and not yet folded), and the retry reads; a fact the presumption refuses
        // (a referral for a patient registered by such an append) is decided again on a read.
        let unseen = !retrying && !self.model.load().holds(stream_ref);
        let read = if unseen {
            Ok((StreamState::default(), None, Default::default()))
        } else {
            self.stream_state_with_ids(stream).await
        };
        let (mut state, version, stored) = match read {
            Ok(x) => x,
            Err(e) => {
                for r in results.iter_mut().filter(|r| r.is_none()) {
                    *r = Some(Err(clone_error(&e)));
                }
                return Ok(Attempt::Done(None));
            }
        };
        // A retry of a fact already on this stream is answered from it. An id used on another
        // stream is refused by the store's id index, and the next attempt asks it item by item.
        for (i, item) in items.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            let Some(e) = stored.get(&item.event_id) else {
                if retrying {
                    match self.replayed(caller, item.event_id, stream, &item.command).await {
                        Ok(Some(r)) => results[i] = Some(Ok(r)),
                        Ok(None) => {}
                        Err(e) => results[i] = Some(Err(e)),
                    }
                }
                continue;
            };
            let same = e.event_type == item.command.proposed_event().event_type()
                && decode(e).is_ok_and(|d| d == item.command.proposed_event());
            results[i] = Some(if same {
                Ok(Recorded {
                    event_id: item.event_id,
                    stream_version: e.version,
                    position: e.position,
                    deduplicated: true,
                })
            } else {
                Err(EngineError::IdempotencyConflict(item.event_id))
            });
        }
        let metadata = caller.metadata();
        let mut refused_groups = std::collections::HashSet::new();
        let mut new = Vec::new();
        let mut placed = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if results[i].as_ref().is_some_and(|r| r.is_err()) {
                refused_groups.insert(item.group);
            }
            if results[i].is_some() {
                continue;
            }
            if refused_groups.contains(&item.group) {
                results[i] =
                    Some(Err(EngineError::invalid("not recorded: an earlier fact of the same resource was refused")));
                continue;
            }
            if let Err(e) = not_ahead(&item.command) {
                results[i] = Some(Err(e));
                refused_groups.insert(item.group);
                continue;
            }
            match decide(&state, &refs[i], item.command.clone()) {
                Ok(event) => {
                    state.apply(&event);
                    new.push(new_event(item.event_id, &event, metadata.clone()));
                    placed.push(i);
                }
                Err(_) if unseen => return Ok(Attempt::ReadFirst),
                Err(e) => {
                    results[i] = Some(Err(e.into()));
                    refused_groups.insert(item.group);
                }
            }
        }
        if new.is_empty() {
            return Ok(Attempt::Done(None));
        }
        let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let appended = self.store.append(stream, expected, new).await?;
        let last = appended.events.last().map(|c| c.position);
        for (i, c) in placed.into_iter().zip(appended.events) {
            results[i] = Some(Ok(Recorded {
                event_id: items[i].event_id,
                stream_version: c.version,
                position: c.position,
                deduplicated: false,
            }));
        }
        Ok(Attempt::Done(last))
    }

    /// `references`, from the read model when it already holds them (services and therapists
    /// never change once registered), else from their streams.
    pub(crate) async fn references_from_model(&self, command: &Command) -> Result<References, EngineError> {
        let model = self.model();
        let service = command.referenced_service().map(|id| model.services.get(&id).cloned());
        let therapist = command.referenced_therapist().map(|id| model.therapists.get(&id).cloned());
        if matches!(service, Some(None)) || matches!(therapist, Some(None)) {
            return self.references(command).await;
        }
        Ok(References {
            service: service.flatten().map(|s| forlop_domain::events::ServiceRegistered {
                service_id: s.id,
                name: s.name,
                care_level: s.care_level,
            }),
            therapist: therapist.flatten().map(|t| forlop_domain::events::TherapistRegistered {
                therapist_id: t.id,
                name: t.name,
                hpr_number: t.hpr_number,
            }),
        })
    }

    /// Erasure: destroys the patient's data key, then records that it was done. Aggregates keep
    /// counting the pathway; the national id can no longer be opened by anyone.
    pub async fn forget_patient(
        &self,
        caller: &Caller,
        patient: Uuid,
        options: RecordOptions,
    ) -> Result<Recorded, EngineError> {
        let command = Command::ForgetPatient(forlop_domain::events::PatientForgotten { patient_id: patient });
        self.authorize_record(caller, &command).await?;
        let stream = command.stream().name();
        // A retry is answered from the log (`record_locked`: the original placing, or a conflict
        // for other content) without touching the key table: its key went before its event did.
        if let Some(id) = options.event_id {
            if self.store.event_by_id(id).await?.is_some() {
                let _turn = self.stripe(&stream).lock().await;
                return self.record_locked(caller, command, &References::default(), options).await;
            }
        }
        // Judged on the log, not this node's read model, which may not have folded another
        // node's registration yet. Forgotten before: refused as a patient never registered is
        // (the domain refuses every command on a forgotten stream alike), before the key table is
        // touched again.
        let (state, _) = self.stream_state(&stream).await?;
        if !state.exists || state.patient.forgotten {
            return Err(forlop_domain::DomainError::NotFound(format!("patient {patient} not found")).into());
        }
        // The key goes first: from then on the number finds no one, so no adapter can resolve it
        // to this patient while the event is on its way. The patient's other names (the FHIR
        // adapter's aliases and the ids it derives) are blocked by every node as soon as its read
        // model holds the patient without a live key or folds this event: they are resolved
        // against the log's read model, not kept here.
        self.vault()
            .forget(patient)
            .await
            .map_err(|e| EngineError::Unavailable(format!("the data key could not be destroyed: {e}")))?;
        let _turn = self.stripe(&stream).lock().await;
        self.record_locked(caller, command, &References::default(), options).await
    }

    async fn record_locked(
        &self,
        caller: &Caller,
        command: Command,
        refs: &References,
        options: RecordOptions,
    ) -> Result<Recorded, EngineError> {
        let stream = command.stream().name();
        let event_id = options.event_id.unwrap_or_else(Uuid::new_v4);
        for attempt in 0..MAX_ATTEMPTS {
            // A retry of a stored event is answered from the log, before today's rules.
            if options.event_id.is_some() {
                if let Some(r) = self.replayed(caller, event_id, &stream, &command).await? {
                    return Ok(r);
                }
            }
            let (state, version) = self.stream_state(&stream).await?;
            if let Some(expected) = options.expected_version {
                let ok = match expected {
                    ExpectedVersion::Any => true,
                    ExpectedVersion::NoStream => version.is_none(),
                    ExpectedVersion::Exact(v) => version == Some(v),
                };
                if !ok {
                    return Err(StoreError::WrongExpectedVersion { stream, expected, current: version }.into());
                }
            }
            not_ahead(&command)?;
            let event = match decide(&state, refs, command.clone()) {
                Ok(event) => event,
                // A refusal may quote recorded facts (dates, therapists): only to callers who may read them.
                Err(e) if self.may_read_facts(caller, &stream).await? => return Err(e.into()),
                Err(e) => return Err(e.without_records().into()),
            };
            let new = new_event(event_id, &event, caller.metadata());
            let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            match self.store.append(&stream, expected, vec![new]).await {
                Ok(r) => {
                    let c = r.events[0];
                    self.wait_projected(c.position).await?;
                    tracing::debug!(%stream, event = event.event_type(), position = c.position, "recorded");
                    return Ok(Recorded {
                        event_id,
                        stream_version: c.version,
                        position: c.position,
                        deduplicated: r.deduplicated,
                    });
                }
                Err(StoreError::WrongExpectedVersion { .. }) if options.expected_version.is_none() => {
                    // Another node wrote to this stream in between: decide again on the new state.
                    tracing::debug!(%stream, attempt, "concurrent write; deciding again");
                    tokio::task::yield_now().await;
                }
                Err(StoreError::IdempotencyConflict { id }) => {
                    // A concurrent identical retry may have won the race.
                    return match self.replayed(caller, id, &stream, &command).await? {
                        Some(r) => Ok(r),
                        None => Err(EngineError::IdempotencyConflict(id)),
                    };
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Internal(format!("stream {stream}: still contended after {MAX_ATTEMPTS} attempts")))
    }
}
