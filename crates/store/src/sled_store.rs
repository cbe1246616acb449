//! The embedded backend: one sled tree, written by one thread that commits appends in groups.
//!
//! Key layout (one tree, so one `apply_batch` makes a group of appends atomic):
//! - `E` + first position (u64 BE)                -> the append's records, each
//!   `[u32 LE length][canonical bytes][SHA-256 chain hash]`
//! - `S` + stream + 0x00 + first version (u64 BE) -> first position (u64 BE) ++ count (u32 BE)
//! - `I` + event id (16 bytes)                    -> position (u64 BE)
//!
//! One value per append (not per event) keeps a 1000-event append to one sled value plus its id
//! index entries, within a small factor of raw sled. Group commit: concurrent appends queue for
//! the writer thread, which validates each against the log plus the earlier requests of the same
//! group, applies them in one batch and makes it durable with one `flush` (fsync) before
//! acknowledging any of them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::hash::{chain_hash, Hash, GENESIS_HASH};
use crate::*;

const EVENT: u8 = b'E';
const STREAM: u8 = b'S';
const ID: u8 = b'I';
/// Most requests one group commit takes; bounds the latency a long queue adds to its first writer.
const MAX_GROUP: usize = 1024;
pub const MAX_STREAM_NAME: usize = 256;

#[derive(Debug, Clone)]
pub struct SledOptions {
    pub path: PathBuf,
    /// sled page cache in bytes.
    pub cache_bytes: u64,
}

impl SledOptions {
    pub fn new(path: impl AsRef<Path>) -> Self {
        SledOptions { path: path.as_ref().to_owned(), cache_bytes: 1024 * 1024 * 1024 }
    }
}

pub struct SledStore {
    tree: sled::Tree,
    /// Set once a group failed to become durable or the writer died: no later write touches sled.
    failed: Arc<std::sync::OnceLock<String>>,
    writer: crate::group::WriterThread<Request>,
    committed: Arc<AtomicU64>,
    watch: watch::Receiver<u64>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").field("committed", &self.committed()).finish()
    }
}

struct Request {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// The canonical bytes of an event: what the hash covers and what is stored.
#[derive(Serialize, Deserialize)]
struct Canonical<'a> {
    id: [u8; 16],
    stream: &'a str,
    version: u64,
    position: u64,
    event_type: &'a str,
    schema_version: u16,
    occurred_at_ns: i64,
    recorded_at_ns: i64,
    actor: &'a str,
    correlation_id: Option<[u8; 16]>,
    causation_id: Option<[u8; 16]>,
    #[serde(borrow)]
    payload: &'a [u8],
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A failed read. sled keeps an I/O error (a full disk, a failing device) and fails every later
/// call with it, so that is the store being unavailable, not a bug: callers answer UNAVAILABLE.
fn read_error(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(_) => StoreError::Unavailable(format!("the event log cannot be read: {e}")),
        other => StoreError::Backend(other.to_string()),
    }
}

fn nanos(t: DateTime<Utc>) -> Result<i64, StoreError> {
    t.timestamp_nanos_opt().ok_or_else(|| StoreError::InvalidAppend(format!("time {t} is outside 1677-2262")))
}

fn event_key(position: u64) -> [u8; 9] {
    let mut k = [EVENT; 9];
    k[1..].copy_from_slice(&position.to_be_bytes());
    k
}

fn id_key(id: Uuid) -> [u8; 17] {
    let mut k = [ID; 17];
    k[1..].copy_from_slice(id.as_bytes());
    k
}

fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 10);
    k.push(STREAM);
    k.extend_from_slice(stream.as_bytes());
    k.push(0);
    k
}

fn stream_key(prefix: &[u8], version: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().expect("8-byte big-endian value"))
}

/// A run of one append's events in one stream: (first version, first position, count).
fn run(key: &[u8], value: &[u8]) -> (u64, u64, u64) {
    let first_version = be_u64(&key[key.len() - 8..]);
    let count = u32::from_be_bytes(value[8..12].try_into().expect("run count")) as u64;
    (first_version, be_u64(value), count)
}

fn run_value(first_position: u64, count: usize) -> [u8; 12] {
    let mut v = [0; 12];
    v[..8].copy_from_slice(&first_position.to_be_bytes());
    v[8..].copy_from_slice(&(count as u32).to_be_bytes());
    v
}

/// Splits an append's value into (canonical bytes, hash) per event. `first` is the append's first
/// position, for error messages.
fn records(first: u64, value: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), StoreError>> {
    let mut rest = value;
    let mut position = first;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let corrupt = |reason: &str| StoreError::Corrupt { position, reason: reason.into() };
        let item = (|| {
            let len = u32::from_le_bytes(rest.get(..4).ok_or_else(|| corrupt("truncated record"))?.try_into().unwrap());
            let end = 4 + len as usize;
            let body = rest.get(4..end).ok_or_else(|| corrupt("truncated record"))?;
            let hash = rest.get(end..end + 32).ok_or_else(|| corrupt("record without hash"))?;
            rest = &rest[end + 32..];
            Ok((body, hash))
        })();
        if item.is_err() {
            rest = &[];
        }
        position += 1;
        Some(item)
    })
}

/// The chain hash of `e` after `previous`: what `append` stored for it. Lets an importer check
/// an exported log before appending anything.
pub fn event_hash(previous: &Hash, e: &RecordedEvent) -> Result<Hash, StoreError> {
    let c = Canonical {
        id: *e.id.as_bytes(),
        stream: &e.stream,
        version: e.version,
        position: e.position,
        event_type: &e.event_type,
        schema_version: e.schema_version,
        occurred_at_ns: nanos(e.occurred_at)?,
        recorded_at_ns: nanos(e.recorded_at)?,
        actor: &e.metadata.actor,
        correlation_id: e.metadata.correlation_id.map(|u| *u.as_bytes()),
        causation_id: e.metadata.causation_id.map(|u| *u.as_bytes()),
        payload: &e.payload,
    };
    let bytes = postcard::to_stdvec(&c).map_err(backend)?;
    Ok(chain_hash(previous, &bytes))
}

/// Decodes one record found at `position`.
fn decode(position: u64, body: &[u8], hash: &[u8]) -> Result<RecordedEvent, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let c: Canonical = postcard::from_bytes(body).map_err(|e| corrupt(format!("undecodable record: {e}")))?;
    Ok(RecordedEvent {
        id: Uuid::from_bytes(c.id),
        stream: c.stream.to_owned(),
        version: c.version,
        position: c.position,
        event_type: c.event_type.to_owned(),
        schema_version: c.schema_version,
        occurred_at: DateTime::from_timestamp_nanos(c.occurred_at_ns),
        recorded_at: DateTime::from_timestamp_nanos(c.recorded_at_ns),
        metadata: Metadata {
            actor: c.actor.to_owned(),
            correlation_id: c.correlation_id.map(Uuid::from_bytes),
            causation_id: c.causation_id.map(Uuid::from_bytes),
        },
        payload: c.payload.to_vec(),
        hash: hash.try_into().map_err(|_| corrupt("hash is not 32 bytes".into()))?,
    })
}

/// The append holding `position`: its first position and value.
fn find_append(tree: &sled::Tree, position: u64) -> Result<Option<(u64, sled::IVec)>, StoreError> {
    match tree.range(event_key(0)..=event_key(position)).next_back() {
        None => Ok(None),
        Some(kv) => {
            let (k, v) = kv.map_err(read_error)?;
            Ok(Some((be_u64(&k[1..]), v)))
        }
    }
}

/// Decodes the events of one append with positions in `[from, to)`, into `out`.
fn decode_append(first: u64, value: &[u8], from: u64, to: u64, out: &mut Vec<RecordedEvent>) -> Result<(), StoreError> {
    for (i, r) in records(first, value).enumerate() {
        let position = first + i as u64;
        if position >= to {
            break;
        }
        if position >= from {
            let (body, hash) = r?;
            out.push(decode(position, body, hash)?);
        }
    }
    Ok(())
}

pub fn validate_stream_name(stream: &str) -> Result<(), StoreError> {
    if stream.is_empty() || stream.len() > MAX_STREAM_NAME || stream.as_bytes().contains(&0) {
        return Err(StoreError::InvalidAppend(format!("stream name must be 1 to {MAX_STREAM_NAME} bytes without NUL")));
    }
    Ok(())
}

impl SledStore {
    pub fn open(options: SledOptions) -> Result<SledStore, StoreError> {
        let config = sled::Config::new()
            .path(&options.path)
            .cache_capacity(options.cache_bytes)
            // We flush explicitly before every acknowledgement; a timer adds nothing.
            .flush_every_ms(None);
        let db = crate::sled_open::open(&config).map_err(backend)?;
        let tree = db.open_tree("log").map_err(backend)?;
        let (mut next_position, mut last_hash) = (0, GENESIS_HASH);
        if let Some(kv) = tree.scan_prefix([EVENT]).next_back() {
            let (k, v) = kv.map_err(read_error)?;
            let first = be_u64(&k[1..]);
            for (i, r) in records(first, &v).enumerate() {
                let (_, hash) = r?;
                next_position = first + i as u64 + 1;
                last_hash = hash.try_into().map_err(backend)?;
            }
        }
        let committed = Arc::new(AtomicU64::new(next_position));
        let (watch_tx, watch) = watch::channel(next_position);
        let failed = Arc::new(std::sync::OnceLock::new());
        let writer = Writer {
            failed: failed.clone(),
            db,
            tree: tree.clone(),
            next_position,
            last_hash,
            committed: committed.clone(),
            watch: watch_tx,
        };
        let writer =
            crate::group::WriterThread::spawn("forlop-sled-writer", move |rx| writer.run(rx)).map_err(backend)?;
        tracing::info!(path = %options.path.display(), events = next_position, "opened sled event store");
        Ok(SledStore { tree, failed, writer, committed, watch })
    }

    fn get_position(&self, position: u64) -> Result<Option<RecordedEvent>, StoreError> {
        if position >= self.committed() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(1);
        if let Some((first, value)) = find_append(&self.tree, position)? {
            decode_append(first, &value, position, position + 1, &mut out)?;
        }
        match out.pop() {
            Some(e) => Ok(Some(e)),
            None => Err(StoreError::Corrupt { position, reason: "indexed event is missing".into() }),
        }
    }

    /// Flips one byte of the stored event at `position`, for tamper-detection tests. The store at
    /// `path` must not be open.
    #[doc(hidden)]
    pub fn tamper(path: &Path, position: u64) -> Result<(), StoreError> {
        let db = crate::sled_open::open(&sled::Config::new().path(path).flush_every_ms(None)).map_err(backend)?;
        let tree = db.open_tree("log").map_err(backend)?;
        let (first, value) = find_append(&tree, position)?.ok_or(StoreError::Closed)?;
        let mut value = value.to_vec();
        let mut offset = 0;
        for _ in first..position {
            let len = u32::from_le_bytes(value[offset..offset + 4].try_into().unwrap()) as usize;
            offset += 4 + len + 32;
        }
        let len = u32::from_le_bytes(value[offset..offset + 4].try_into().unwrap()) as usize;
        value[offset + 4 + len - 2] ^= 0x01; // inside the payload, which ends the canonical bytes
        tree.insert(event_key(first), value).map_err(backend)?;
        db.flush().map_err(backend)?;
        Ok(())
    }
}

struct Writer {
    failed: Arc<std::sync::OnceLock<String>>,
    db: sled::Db,
    tree: sled::Tree,
    next_position: u64,
    last_hash: Hash,
    committed: Arc<AtomicU64>,
    watch: watch::Sender<u64>,
}

/// What a group has written so far but not yet committed.
#[derive(Default)]
struct Pending {
    versions: HashMap<String, u64>,
    /// Event id -> (request index, event index, placing), to recognise retries within a group.
    events: HashMap<Uuid, (usize, usize, Committed)>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        // If this thread dies by a panic, the store fails stop rather than leaving appends to a
        // closed queue.
        struct Watchdog(Arc<std::sync::OnceLock<String>>);
        impl Drop for Watchdog {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let _ = self.0.set("the writer thread panicked".into());
                    tracing::error!("event log writer thread panicked; failing every later append");
                }
            }
        }
        let _watchdog = Watchdog(self.failed.clone());
        while let Some(group) = crate::group::next_group(&rx, MAX_GROUP) {
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        if let Some(reason) = self.failed.get() {
            for req in group {
                let _ = req.reply.send(Err(StoreError::Unavailable(reason.clone())));
            }
            return;
        }
        #[cfg(debug_assertions)]
        crate::faults::writer_may_panic(self.next_position);
        let mut batch = sled::Batch::default();
        let mut pending = Pending::default();
        let (mut position, mut hash) = (self.next_position, self.last_hash);
        let results: Vec<_> = (0..group.len())
            .map(|i| self.plan(&group, i, &mut pending, &mut batch, &mut position, &mut hash))
            .collect();
        if position != self.next_position {
            let started = std::time::Instant::now();
            let durable = self.tree.apply_batch(batch).and_then(|_| {
                let flushing = std::time::Instant::now();
                #[cfg(debug_assertions)]
                if crate::faults::flush_should_fail(position) {
                    return Err(sled::Error::Io(std::io::Error::other("injected fault: flush failed")));
                }
                let flushed = self.db.flush().map(|_| ());
                metrics::histogram!("forlop_fsync_seconds", "log" => "events").record(flushing.elapsed().as_secs_f64());
                flushed
            });
            metrics::histogram!("forlop_group_commit_seconds", "log" => "events")
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!("forlop_group_commit_size", "log" => "events").record(group.len() as f64);
            if let Err(e) = durable {
                // Fail-stop: whether the batch reached the disk is unknown, and sled may hold it in
                // memory, so no later group may reuse these positions. Nothing more is written.
                let reason = e.to_string();
                tracing::error!(error = %reason, "group commit failed; acknowledging nothing and failing every later append");
                let _ = self.failed.set(reason.clone());
                metrics::gauge!("forlop_store_failed", "log" => "events").set(1.0);
                for req in group {
                    let _ = req.reply.send(Err(StoreError::Unavailable(reason.clone())));
                }
                return;
            }
            for (req, result) in group.iter().zip(&results) {
                if let Ok(r) = result {
                    if !r.deduplicated {
                        for e in &req.events {
                            metrics::counter!("forlop_events_appended_total", "type" => e.event_type.clone())
                                .increment(1);
                        }
                    }
                }
            }
            self.next_position = position;
            self.last_hash = hash;
            self.committed.store(position, Ordering::Release);
            self.watch.send_replace(position);
        }
        for (req, result) in group.into_iter().zip(results) {
            let _ = req.reply.send(result);
        }
    }

    fn current_version(&self, stream: &str, pending: &Pending) -> Result<Option<u64>, StoreError> {
        if let Some(v) = pending.versions.get(stream) {
            return Ok(Some(*v));
        }
        match self.tree.scan_prefix(stream_prefix(stream)).next_back() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv.map_err(read_error)?;
                let (first_version, _, count) = run(&k, &v);
                Ok(Some(first_version + count - 1))
            }
        }
    }

    fn stored(&self, position: u64) -> Result<RecordedEvent, StoreError> {
        let mut out = Vec::with_capacity(1);
        if let Some((first, value)) = find_append(&self.tree, position)? {
            decode_append(first, &value, position, position + 1, &mut out)?;
        }
        out.pop().ok_or(StoreError::Corrupt { position, reason: "indexed event is missing".into() })
    }

    /// Validates request `i` of the group against the log and the group so far, and adds its
    /// writes to `batch`.
    fn plan(
        &self,
        group: &[Request],
        i: usize,
        pending: &mut Pending,
        batch: &mut sled::Batch,
        position: &mut u64,
        hash: &mut Hash,
    ) -> Result<AppendResult, StoreError> {
        let req = &group[i];
        validate_stream_name(&req.stream)?;
        if req.events.is_empty() {
            return Err(StoreError::InvalidAppend("an append needs at least one event".into()));
        }
        // Idempotency first: a retry of a stored append succeeds whatever the stream's version now is.
        let mut stored = Vec::new();
        for (j, e) in req.events.iter().enumerate() {
            if req.events[..j].iter().any(|o| o.id == e.id) {
                return Err(StoreError::InvalidAppend(format!("event id {} appears twice in one append", e.id)));
            }
            if let Some(&(ri, ei, committed)) = pending.events.get(&e.id) {
                if group[ri].stream != req.stream || !same_new(&group[ri].events[ei], e) {
                    return Err(StoreError::IdempotencyConflict { id: e.id });
                }
                stored.push(committed);
            } else if let Some(pos) = self.tree.get(id_key(e.id)).map_err(read_error)? {
                let old = self.stored(be_u64(&pos))?;
                if !old.same_content(&req.stream, e) {
                    return Err(StoreError::IdempotencyConflict { id: e.id });
                }
                stored.push(Committed { id: e.id, version: old.version, position: old.position });
            }
        }
        if stored.len() == req.events.len() {
            return Ok(AppendResult { events: stored, deduplicated: true });
        }
        if let Some(first) = stored.first() {
            // Part of this append is stored and part is not: not a retry of one append.
            return Err(StoreError::IdempotencyConflict { id: first.id });
        }

        let current = self.current_version(&req.stream, pending)?;
        let ok = match req.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::Exact(v) => current == Some(v),
        };
        if !ok {
            return Err(StoreError::WrongExpectedVersion {
                stream: req.stream.clone(),
                expected: req.expected,
                current,
            });
        }

        let now = Utc::now();
        let first_version = current.map_or(0, |v| v + 1);
        let first_position = *position;
        let mut h = *hash;
        let mut value = Vec::with_capacity(req.events.iter().map(|e| e.payload.len() + 160).sum());
        let mut committed = Vec::with_capacity(req.events.len());
        for (j, e) in req.events.iter().enumerate() {
            let (version, pos) = (first_version + j as u64, first_position + j as u64);
            let c = Canonical {
                id: *e.id.as_bytes(),
                stream: &req.stream,
                version,
                position: pos,
                event_type: &e.event_type,
                schema_version: e.schema_version,
                occurred_at_ns: nanos(e.occurred_at)?,
                recorded_at_ns: nanos(e.recorded_at.unwrap_or(now))?,
                actor: &e.metadata.actor,
                correlation_id: e.metadata.correlation_id.map(|u| *u.as_bytes()),
                causation_id: e.metadata.causation_id.map(|u| *u.as_bytes()),
                payload: &e.payload,
            };
            let len_at = value.len();
            value.extend_from_slice(&[0; 4]);
            let value_len = postcard::to_extend(&c, std::mem::take(&mut value)).map_err(backend)?;
            value = value_len;
            let body_len = value.len() - len_at - 4;
            value[len_at..len_at + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
            h = chain_hash(&h, &value[len_at + 4..]);
            value.extend_from_slice(&h);
            committed.push(Committed { id: e.id, version, position: pos });
        }
        // Only now, with every check passed, does the request join the batch.
        let pos_bytes = |p: u64| p.to_be_bytes();
        batch.insert(&event_key(first_position)[..], value);
        batch.insert(
            stream_key(&stream_prefix(&req.stream), first_version),
            &run_value(first_position, committed.len())[..],
        );
        for (j, c) in committed.iter().enumerate() {
            batch.insert(&id_key(c.id)[..], &pos_bytes(c.position)[..]);
            pending.events.insert(c.id, (i, j, *c));
        }
        pending.versions.insert(req.stream.clone(), first_version + committed.len() as u64 - 1);
        *position = first_position + committed.len() as u64;
        *hash = h;
        Ok(AppendResult { events: committed, deduplicated: false })
    }
}

fn same_new(a: &NewEvent, b: &NewEvent) -> bool {
    a.event_type == b.event_type && a.schema_version == b.schema_version && a.payload == b.payload
}

#[async_trait]
impl EventStore for SledStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        if let Some(reason) = self.failed.get() {
            return Err(StoreError::Unavailable(reason.clone()));
        }
        let (reply, answer) = oneshot::channel();
        let req = Request { stream: stream.to_owned(), expected, events, reply };
        // The writer's queue or reply closed: it died. Record that before answering, so that
        // /healthz already says so when the client sees the error.
        let writer_gone = || {
            let _ = self.failed.set("the writer thread stopped".into());
            StoreError::Unavailable(self.failed.get().cloned().unwrap_or_default())
        };
        let started = std::time::Instant::now();
        self.writer.send(req).map_err(|_| writer_gone())?;
        let result = answer.await.map_err(|_| writer_gone())?;
        metrics::histogram!("forlop_append_seconds").record(started.elapsed().as_secs_f64());
        result
    }

    fn failure(&self) -> Option<String> {
        self.failed.get().map(|r| format!("the event log could not be made durable: {r}"))
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let prefix = stream_prefix(stream);
        let committed = self.committed();
        // Start at the run holding `from_version`: the last run starting at or before it.
        let start = match self.tree.range(stream_key(&prefix, 0)..=stream_key(&prefix, from_version)).next_back() {
            Some(kv) => kv.map_err(read_error)?.0.to_vec(),
            None => stream_key(&prefix, from_version),
        };
        let mut out = Vec::new();
        for kv in self.tree.range(start..stream_key(&prefix, u64::MAX)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv.map_err(read_error)?;
            let (first_version, first_position, count) = run(&k, &v);
            if first_position >= committed {
                break; // written by a group whose flush has not been acknowledged yet
            }
            let from = first_position + from_version.saturating_sub(first_version);
            let to = (first_position + count).min(from.saturating_add((limit - out.len()) as u64));
            let value = self.tree.get(event_key(first_position)).map_err(read_error)?.ok_or(StoreError::Corrupt {
                position: first_position,
                reason: "stream index points at a missing append".into(),
            })?;
            decode_append(first_position, &value, from, to, &mut out)?;
        }
        Ok(out)
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let end = self.committed();
        if from_position >= end {
            return Ok(Vec::new());
        }
        let end = end.min(from_position.saturating_add(limit as u64));
        let start = find_append(&self.tree, from_position)?.map_or(from_position, |(first, _)| first);
        let mut out = Vec::with_capacity((end - from_position) as usize);
        for kv in self.tree.range(event_key(start)..event_key(end)) {
            let (k, v) = kv.map_err(read_error)?;
            decode_append(be_u64(&k[1..]), &v, from_position, end, &mut out)?;
        }
        Ok(out)
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        let committed = self.committed();
        for kv in self.tree.scan_prefix(stream_prefix(stream)).rev() {
            let (k, v) = kv.map_err(read_error)?;
            let (first_version, first_position, count) = run(&k, &v);
            if first_position < committed {
                return Ok(Some(first_version + count - 1));
            }
        }
        Ok(None)
    }

    async fn event_by_id(&self, id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        match self.tree.get(id_key(id)).map_err(read_error)? {
            None => Ok(None),
            Some(pos) => self.get_position(be_u64(&pos)),
        }
    }

    fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    fn watch_committed(&self) -> watch::Receiver<u64> {
        self.watch.clone()
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let end = self.committed();
        let mut previous = GENESIS_HASH;
        let mut versions: HashMap<String, u64> = HashMap::new();
        let mut expected_position = 0u64;
        for kv in self.tree.range(event_key(0)..event_key(end)) {
            let (k, v) = kv.map_err(read_error)?;
            let first = be_u64(&k[1..]);
            if first != expected_position {
                return Err(StoreError::Corrupt {
                    position: expected_position,
                    reason: format!("gap: next stored position is {first}"),
                });
            }
            let mut run_start: Option<(String, u64)> = None;
            for r in records(first, &v) {
                let position = expected_position;
                let corrupt = |reason: String| StoreError::Corrupt { position, reason };
                let (body, hash) = r?;
                let e = decode(position, body, hash)?;
                if e.position != position {
                    return Err(corrupt(format!("record claims position {}", e.position)));
                }
                if chain_hash(&previous, body) != e.hash {
                    return Err(corrupt("hash chain broken: content or order changed".into()));
                }
                let want = versions.get(&e.stream).map_or(0, |v| v + 1);
                if e.version != want {
                    return Err(corrupt(format!("stream {} version {} where {want} was due", e.stream, e.version)));
                }
                match &run_start {
                    None => run_start = Some((e.stream.clone(), e.version)),
                    Some((stream, _)) if *stream != e.stream => {
                        return Err(corrupt("one append holds events of two streams".into()))
                    }
                    Some(_) => {}
                }
                if self.tree.get(id_key(e.id)).map_err(read_error)?.as_deref().map(be_u64) != Some(position) {
                    return Err(corrupt("id index does not point at this event".into()));
                }
                versions.insert(e.stream, e.version);
                previous = e.hash;
                expected_position += 1;
            }
            let Some((stream, first_version)) = run_start else {
                return Err(StoreError::Corrupt { position: first, reason: "empty append".into() });
            };
            let indexed = self.tree.get(stream_key(&stream_prefix(&stream), first_version)).map_err(read_error)?;
            if indexed.as_deref().map(|v| (be_u64(v), u32::from_be_bytes(v[8..12].try_into().unwrap()) as u64))
                != Some((first, expected_position - first))
            {
                return Err(StoreError::Corrupt {
                    position: first,
                    reason: "stream index does not match the append".into(),
                });
            }
        }
        if expected_position != end {
            return Err(StoreError::Corrupt { position: expected_position, reason: "event missing".into() });
        }
        Ok(VerifyReport { events: end, streams: versions.len() as u64, head_hash: previous })
    }
}
