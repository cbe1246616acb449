//! The embedded backend: one sled tree, written by one thread that commits appends in groups.
//!
//! Key layout (one tree, so one `apply_batch` makes a group of appends atomic):
//! - `E` + first position (u64 BE)                -> the append's records, each
//!   `[u32 LE length][canonical bytes][SHA-256 chain hash]`
//! - `S` + stream + 0x00 + first version (u64 BE) -> first position (u64 BE) ++ count (u32 BE)
//!
//! Event ids are indexed in memory, not in sled (`ids`). Logs written before that also hold
//! `I` + event id -> position keys; they are left in place and no longer read.
//!
//! One value per append (not per event) keeps a 1000-event append to one sled value and one
//! stream key, within a small factor of raw sled. Group commit: concurrent appends queue for
//! the writer thread, which validates each against the log plus the earlier requests of the same
//! group, applies them in one batch and makes it durable with one `flush` (fsync) before
//! acknowledging any of them.

mod encoding;
mod ids;
mod reads;
mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::hash::{chain_hash, Hash, GENESIS_HASH};
use crate::plan::Request;
use crate::*;
use encoding::*;
use writer::Writer;

#[derive(Debug, Clone)]
pub struct SledOptions {
    pub path: PathBuf,
    /// sled page cache in bytes.
    pub cache_bytes: u64,
    /// Events appended between background saves (and compactions) of the event-id index.
    pub id_index_save_every: u64,
}

impl SledOptions {
    pub fn new(path: impl AsRef<Path>) -> Self {
        SledOptions {
            path: path.as_ref().to_owned(),
            cache_bytes: 1024 * 1024 * 1024,
            id_index_save_every: ids::SAVE_EVERY,
        }
    }
}

pub struct SledStore {
    tree: sled::Tree,
    /// Event id -> position, for idempotent appends and reads by id (see `ids`).
    ids: Arc<parking_lot::RwLock<ids::IdIndex>>,
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

/// The next position and head hash after the last append (first position `first`, bytes
/// `value`), checked against the chain from the append before it.
fn tail_head(tree: &sled::Tree, first: u64, value: &[u8]) -> Result<(u64, Hash), StoreError> {
    let mut hash = match first.checked_sub(1) {
        None => GENESIS_HASH,
        Some(before) => {
            let corrupt = |reason: &str| StoreError::Corrupt { position: before, reason: reason.into() };
            let (start, previous) = find_append(tree, before)?.ok_or_else(|| corrupt("event missing"))?;
            let (_, last) = records(start, &previous).last().ok_or_else(|| corrupt("empty append"))??;
            last.try_into().map_err(|_| corrupt("hash is not 32 bytes"))?
        }
    };
    let mut next = first;
    for r in records(first, value) {
        let (body, stored) = r?;
        if chain_hash(&hash, body)[..] != *stored {
            return Err(StoreError::Corrupt { position: next, reason: "hash chain broken".into() });
        }
        hash = stored.try_into().map_err(backend)?;
        next += 1;
    }
    if next == first {
        // An append is never empty: its events were lost, and must not go unnoticed as a log
        // that simply ends earlier.
        return Err(StoreError::Corrupt { position: first, reason: "empty append".into() });
    }
    Ok((next, hash))
}

impl SledStore {
    pub fn open(options: SledOptions) -> Result<SledStore, StoreError> {
        let opening = std::time::Instant::now();
        // The saved id index is read and checksummed while sled opens.
        let ids_file = ids::path(&options.path);
        let saved_ids = {
            let file = ids_file.clone();
            std::thread::Builder::new()
                .name("forlop-ids-load".into())
                .spawn(move || ids::read(&file))
                .map_err(backend)?
        };
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
            // The head of the chain comes from the last append, so check it against the chain
            // before trusting it. If it does not hold, scan the whole log to name the first
            // damaged event (a damaged length can make a later record look like the bad one).
            (next_position, last_hash) = match tail_head(&tree, first, &v) {
                Ok(head) => head,
                Err(e) => return Err(verify::verify_tree(&tree, None).err().unwrap_or(e)),
            };
        }
        let saved_ids = saved_ids.join().map_err(|_| backend("reading the event-id index panicked"))?;
        let (ids, ids_saved_at) = ids::build(&tree, saved_ids, next_position)?;
        let ids = Arc::new(parking_lot::RwLock::new(ids));
        let committed = Arc::new(AtomicU64::new(next_position));
        let (watch_tx, watch) = watch::channel(next_position);
        let failed = Arc::new(std::sync::OnceLock::new());
        let writer = Writer {
            failed: failed.clone(),
            db,
            tree: tree.clone(),
            ids: ids.clone(),
            ids_file,
            ids_saved_at,
            ids_save_every: options.id_index_save_every.max(1),
            ids_saving: None,
            next_position,
            last_hash,
            committed: committed.clone(),
            watch: watch_tx,
        };
        let writer =
            crate::group::WriterThread::spawn("forlop-sled-writer", move |rx| writer.run(rx)).map_err(backend)?;
        tracing::info!(
            path = %options.path.display(),
            events = next_position,
            ms = opening.elapsed().as_millis() as u64,
            "opened sled event store"
        );
        Ok(SledStore { tree, ids, failed, writer, committed, watch })
    }

    /// Opens the store at `path` once more and closes it, once every other handle is gone. sled
    /// brings its recovery snapshot up to date only when it opens a database, replaying its own
    /// log from the last snapshot; doing it at a clean shutdown keeps that replay (seconds after a
    /// few million events) out of the next start.
    pub fn settle(path: &Path) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        drop(crate::sled_open::open(&sled::Config::new().path(path).flush_every_ms(None)).map_err(backend)?);
        tracing::info!(path = %path.display(), ms = started.elapsed().as_millis() as u64, "sled recovery snapshot brought up to date");
        Ok(())
    }

    /// Flips one byte of the stored event at `position`, for tamper-detection tests. The store at
    /// `path` must not be open.
    #[cfg(feature = "testing")]
    pub fn tamper(path: &Path, position: u64) -> Result<(), StoreError> {
        Self::tamper_with(path, position, |first, value| {
            let mut offset = 0;
            for _ in first..position {
                let len = u32::from_le_bytes(value[offset..offset + 4].try_into().unwrap()) as usize;
                offset += 4 + len + 32;
            }
            let len = u32::from_le_bytes(value[offset..offset + 4].try_into().unwrap()) as usize;
            value[offset + 4 + len - 2] ^= 0x01; // inside the payload, which ends the canonical bytes
        })
    }

    /// Lets `edit` change the stored bytes of the append holding `position` (given that
    /// append's first position), for tamper-detection tests. The store must not be open.
    #[cfg(feature = "testing")]
    pub fn tamper_with(path: &Path, position: u64, edit: impl FnOnce(u64, &mut Vec<u8>)) -> Result<(), StoreError> {
        let db = crate::sled_open::open(&sled::Config::new().path(path).flush_every_ms(None)).map_err(backend)?;
        let tree = db.open_tree("log").map_err(backend)?;
        let (first, value) = find_append(&tree, position)?.ok_or(StoreError::Closed)?;
        let mut value = value.to_vec();
        edit(first, &mut value);
        tree.insert(event_key(first), value).map_err(backend)?;
        db.flush().map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl EventStore for SledStore {
    async fn append_all(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        if let Some(reason) = self.failed.get() {
            return Err(StoreError::Unavailable(reason.clone()));
        }
        let (reply, answer) = oneshot::channel();
        let req = Request { parts, reply };
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
        self.stream_events(stream, from_version, limit)
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.log_events(from_position, limit)
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        self.last_version(stream)
    }

    async fn event_by_id(&self, id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        self.event_with_id(id)
    }

    fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    fn watch_committed(&self) -> watch::Receiver<u64> {
        self.watch.clone()
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.verify_log()
    }
}
