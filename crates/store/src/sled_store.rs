//! The embedded backend: one sled tree, written by one thread that commits appends in groups.
//!
//! Key layout (one tree, so one `apply_batch` makes an append atomic):
//! - `E` + position (u64 BE)                 -> canonical bytes ++ SHA-256 chain hash (32 bytes)
//! - `S` + stream + 0x00 + version (u64 BE)  -> position (u64 BE)
//! - `I` + event id (16 bytes)               -> position (u64 BE)
//!
//! Group commit: concurrent appends queue for the writer thread, which validates each against the
//! log plus what earlier requests in the same group wrote, applies them in one batch and makes it
//! durable with one `flush` (fsync) before acknowledging any of them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

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
        SledOptions { path: path.as_ref().to_owned(), cache_bytes: 512 * 1024 * 1024 }
    }
}

pub struct SledStore {
    tree: sled::Tree,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
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
    u64::from_be_bytes(bytes.try_into().expect("8-byte big-endian value"))
}

/// Decodes a stored value; `position` is where it was found, for error messages.
fn decode(position: u64, value: &[u8]) -> Result<RecordedEvent, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    if value.len() < 32 {
        return Err(corrupt("record shorter than its hash".into()));
    }
    let (body, hash) = value.split_at(value.len() - 32);
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
        hash: hash.try_into().expect("32 bytes"),
    })
}

pub fn validate_stream_name(stream: &str) -> Result<(), StoreError> {
    if stream.is_empty() || stream.len() > MAX_STREAM_NAME || stream.as_bytes().contains(&0) {
        return Err(StoreError::InvalidAppend(format!("stream name must be 1 to {MAX_STREAM_NAME} bytes without NUL")));
    }
    Ok(())
}

impl SledStore {
    pub fn open(options: SledOptions) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(&options.path)
            .cache_capacity(options.cache_bytes)
            // We flush explicitly before every acknowledgement; a timer adds nothing.
            .flush_every_ms(None)
            .open()
            .map_err(backend)?;
        let tree = db.open_tree("log").map_err(backend)?;
        let (next_position, last_hash) = match tree.scan_prefix([EVENT]).next_back() {
            None => (0, GENESIS_HASH),
            Some(kv) => {
                let (k, v) = kv.map_err(backend)?;
                let position = be_u64(&k[1..]);
                (position + 1, decode(position, &v)?.hash)
            }
        };
        let committed = Arc::new(AtomicU64::new(next_position));
        let (watch_tx, watch) = watch::channel(next_position);
        let (requests, rx) = mpsc::channel();
        let writer =
            Writer { db, tree: tree.clone(), next_position, last_hash, committed: committed.clone(), watch: watch_tx };
        let writer = std::thread::Builder::new()
            .name("forlop-sled-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(backend)?;
        tracing::info!(path = %options.path.display(), events = next_position, "opened sled event store");
        Ok(SledStore { tree, requests: Some(requests), writer: Some(writer), committed, watch })
    }

    fn get_position(&self, position: u64) -> Result<Option<RecordedEvent>, StoreError> {
        if position >= self.committed() {
            return Ok(None);
        }
        match self.tree.get(event_key(position)).map_err(backend)? {
            None => Err(StoreError::Corrupt { position, reason: "indexed event is missing".into() }),
            Some(v) => decode(position, &v).map(Some),
        }
    }

    /// Flips one byte of the stored event at `position`, for tamper-detection tests. The store at
    /// `path` must not be open.
    #[doc(hidden)]
    pub fn tamper(path: &Path, position: u64) -> Result<(), StoreError> {
        let db = sled::Config::new().path(path).open().map_err(backend)?;
        let tree = db.open_tree("log").map_err(backend)?;
        let mut v = tree.get(event_key(position)).map_err(backend)?.ok_or(StoreError::Closed)?.to_vec();
        let i = v.len() - 40; // inside the payload, before the hash
        v[i] ^= 0x01;
        tree.insert(event_key(position), v).map_err(backend)?;
        db.flush().map_err(backend)?;
        Ok(())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer thread; joining it releases sled's file lock.
        self.requests.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

struct Writer {
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
    events: HashMap<Uuid, (String, NewEvent, Committed)>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        let mut batch = sled::Batch::default();
        let mut pending = Pending::default();
        let (mut position, mut hash) = (self.next_position, self.last_hash);
        let mut answers = Vec::with_capacity(group.len());
        for req in group {
            let result = self.plan(&req, &mut pending, &mut batch, &mut position, &mut hash);
            answers.push((req.reply, result));
        }
        if position != self.next_position {
            let durable = self.tree.apply_batch(batch).and_then(|_| self.db.flush().map(|_| ()));
            if let Err(e) = durable {
                tracing::error!(error = %e, "group commit failed; acknowledging nothing");
                for (reply, _) in answers {
                    let _ = reply.send(Err(backend(&e)));
                }
                return;
            }
            self.next_position = position;
            self.last_hash = hash;
            self.committed.store(position, Ordering::Release);
            self.watch.send_replace(position);
        }
        for (reply, result) in answers {
            let _ = reply.send(result);
        }
    }

    fn current_version(&self, stream: &str, pending: &Pending) -> Result<Option<u64>, StoreError> {
        if let Some(v) = pending.versions.get(stream) {
            return Ok(Some(*v));
        }
        match self.tree.scan_prefix(stream_prefix(stream)).next_back() {
            None => Ok(None),
            Some(kv) => {
                let (k, _) = kv.map_err(backend)?;
                Ok(Some(be_u64(&k[k.len() - 8..])))
            }
        }
    }

    /// Validates one request against the log and the group so far, and adds its writes to `batch`.
    fn plan(
        &self,
        req: &Request,
        pending: &mut Pending,
        batch: &mut sled::Batch,
        position: &mut u64,
        hash: &mut Hash,
    ) -> Result<AppendResult, StoreError> {
        validate_stream_name(&req.stream)?;
        if req.events.is_empty() {
            return Err(StoreError::InvalidAppend("an append needs at least one event".into()));
        }
        // Idempotency first: a retry of a stored append succeeds whatever the stream's version now is.
        let mut stored = Vec::new();
        for (i, e) in req.events.iter().enumerate() {
            if req.events[..i].iter().any(|o| o.id == e.id) {
                return Err(StoreError::InvalidAppend(format!("event id {} appears twice in one append", e.id)));
            }
            if let Some((stream, new, committed)) = pending.events.get(&e.id) {
                if stream != &req.stream || !same_new(new, e) {
                    return Err(StoreError::IdempotencyConflict { id: e.id });
                }
                stored.push(*committed);
            } else if let Some(pos) = self.tree.get(id_key(e.id)).map_err(backend)? {
                let pos = be_u64(&pos);
                let old = decode(pos, &self.tree.get(event_key(pos)).map_err(backend)?.unwrap_or_default())?;
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
        let prefix = stream_prefix(&req.stream);
        let mut version = current.map_or(0, |v| v + 1);
        let (mut pos, mut h) = (*position, *hash);
        let mut writes = Vec::with_capacity(req.events.len());
        let mut committed = Vec::with_capacity(req.events.len());
        for e in &req.events {
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
            let mut value = postcard::to_stdvec(&c).map_err(backend)?;
            h = chain_hash(&h, &value);
            value.extend_from_slice(&h);
            writes.push((stream_key(&prefix, version), pos, value, e.id));
            committed.push(Committed { id: e.id, version, position: pos });
            version += 1;
            pos += 1;
        }
        // Only now, with every check passed, does the request join the batch.
        for ((skey, p, value, id), (e, c)) in writes.into_iter().zip(req.events.iter().zip(&committed)) {
            let pbytes = p.to_be_bytes();
            batch.insert(&event_key(p)[..], value);
            batch.insert(skey, &pbytes[..]);
            batch.insert(&id_key(id)[..], &pbytes[..]);
            pending.events.insert(id, (req.stream.clone(), e.clone(), *c));
        }
        pending.versions.insert(req.stream.clone(), version - 1);
        *position = pos;
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
        let (reply, answer) = oneshot::channel();
        let req = Request { stream: stream.to_owned(), expected, events, reply };
        self.requests.as_ref().ok_or(StoreError::Closed)?.send(req).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let prefix = stream_prefix(stream);
        let committed = self.committed();
        let mut out = Vec::new();
        for kv in self.tree.range(stream_key(&prefix, from_version)..stream_key(&prefix, u64::MAX)) {
            if out.len() >= limit {
                break;
            }
            let (_, pos) = kv.map_err(backend)?;
            let pos = be_u64(&pos);
            if pos >= committed {
                break; // written by a group whose flush has not been acknowledged yet
            }
            out.extend(self.get_position(pos)?);
        }
        Ok(out)
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let end = self.committed();
        if from_position >= end {
            return Ok(Vec::new());
        }
        let end = end.min(from_position.saturating_add(limit as u64));
        let mut out = Vec::with_capacity((end - from_position) as usize);
        for kv in self.tree.range(event_key(from_position)..event_key(end)) {
            let (k, v) = kv.map_err(backend)?;
            out.push(decode(be_u64(&k[1..]), &v)?);
        }
        Ok(out)
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        let committed = self.committed();
        for kv in self.tree.scan_prefix(stream_prefix(stream)).rev() {
            let (k, pos) = kv.map_err(backend)?;
            if be_u64(&pos) < committed {
                return Ok(Some(be_u64(&k[k.len() - 8..])));
            }
        }
        Ok(None)
    }

    async fn event_by_id(&self, id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        match self.tree.get(id_key(id)).map_err(backend)? {
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
            let (k, v) = kv.map_err(backend)?;
            let position = be_u64(&k[1..]);
            let corrupt = |reason: String| StoreError::Corrupt { position, reason };
            if position != expected_position {
                return Err(StoreError::Corrupt {
                    position: expected_position,
                    reason: format!("gap: next stored position is {position}"),
                });
            }
            let e = decode(position, &v)?;
            if e.position != position {
                return Err(corrupt(format!("record claims position {}", e.position)));
            }
            let body = &v[..v.len() - 32];
            if chain_hash(&previous, body) != e.hash {
                return Err(corrupt("hash chain broken: content or order changed".into()));
            }
            let want = versions.get(&e.stream).map_or(0, |v| v + 1);
            if e.version != want {
                return Err(corrupt(format!("stream {} version {} where {want} was due", e.stream, e.version)));
            }
            let indexed = self.tree.get(stream_key(&stream_prefix(&e.stream), e.version)).map_err(backend)?;
            if indexed.as_deref().map(be_u64) != Some(position) {
                return Err(corrupt("stream index does not point at this event".into()));
            }
            if self.tree.get(id_key(e.id)).map_err(backend)?.as_deref().map(be_u64) != Some(position) {
                return Err(corrupt("id index does not point at this event".into()));
            }
            versions.insert(e.stream, e.version);
            previous = e.hash;
            expected_position += 1;
        }
        if expected_position != end {
            return Err(StoreError::Corrupt { position: expected_position, reason: "event missing".into() });
        }
        Ok(VerifyReport { events: end, streams: versions.len() as u64, head_hash: previous })
    }
}
