//! The embedded access log: one append-only record file, and an index kept in memory.
//!
//! Why not sled, like the event log: every patient read appends a record and waits for it to be
//! durable, so this log sits on the hot path of every query. A preallocated file made durable by
//! one `fdatasync` per group costs a fraction of sled's B-tree inserts and flush (run on sled's
//! own I/O threads); reads of the log are rare (audits, the patient's own view).
//!
//! The file `records`: `MAGIC`, then one frame per record: body length (u32 LE), the canonical
//! bytes, and the SHA-256 chain hash (32 bytes). The file grows in chunks of zeros written ahead,
//! so an `fdatasync` flushes data, not the file's size; a zero length therefore ends the frames.
//!
//! The index (per patient: positions and offsets; every `SPARSE`th position's offset) is rebuilt
//! by one sequential scan at open, about 16 bytes of memory per record. A crash can leave a torn
//! final frame that was never acknowledged; the scan cuts it off (its chain hash does not match).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, RwLock};

use async_trait::async_trait;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    backend, be_u64, decode, encode, not_durable, split, validate, AccessFilter, AccessLog, AccessRecord,
    AccessVerifyReport, StoredAccessRecord,
};
use crate::hash::{chain_hash, Hash, GENESIS_HASH};
use crate::StoreError;

const MAGIC: &[u8; 8] = b"FLACCES1";
const RECORDS: &str = "records";
/// Every this many positions the index keeps the frame's offset, for reads from a position.
const SPARSE: u64 = 256;
/// Most requests one group commit takes; bounds the latency a long queue adds to its first writer.
const MAX_GROUP: usize = 1024;
/// Largest frame body accepted when reading: far beyond any valid record (7 fields ≤ 4 KiB).
const MAX_BODY: usize = 64 * 1024;
/// The file grows by this much at a time (zeros written ahead of the frames).
const CHUNK: u64 = 1024 * 1024;

/// Where the next record goes: its position, its offset, and the hash it chains from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reach {
    position: u64,
    offset: u64,
    hash: Hash,
}

impl Reach {
    const EMPTY: Reach = Reach { position: 0, offset: MAGIC.len() as u64, hash: GENESIS_HASH };
}

/// One frame as read from the file: its offset and body ++ hash.
struct Frame {
    offset: u64,
    value: Vec<u8>,
}

impl Frame {
    fn len(&self) -> u64 {
        4 + self.value.len() as u64
    }

    /// The patient id: the fixed-size last field of the canonical bytes.
    fn patient(&self) -> Option<Uuid> {
        let body = self.value.len().checked_sub(32)?;
        Uuid::from_slice(self.value.get(body.checked_sub(16)?..body)?).ok()
    }
}

/// Reads frames one after another from `offset`. Ends at the end of the written frames (a zero
/// length or the end of the file); a frame cut short by the end of the file ends them too.
struct Frames<R> {
    reader: R,
    offset: u64,
}

impl<R: Read> Frames<R> {
    fn next_frame(&mut self) -> Result<Option<Frame>, StoreError> {
        let mut len = [0u8; 4];
        if read_full(&mut self.reader, &mut len)? < 4 {
            return Ok(None);
        }
        let body = u32::from_le_bytes(len) as usize;
        if body == 0 {
            return Ok(None);
        }
        if body > MAX_BODY {
            return Err(StoreError::Corrupt {
                position: u64::MAX,
                reason: format!("frame at byte {} claims {body} bytes", self.offset),
            });
        }
        let mut value = vec![0; body + 32];
        if read_full(&mut self.reader, &mut value)? < value.len() {
            return Ok(None);
        }
        let frame = Frame { offset: self.offset, value };
        self.offset += frame.len();
        Ok(Some(frame))
    }
}

/// Fills `buf` as far as the reader allows; returns the bytes read (short only at end of file).
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, StoreError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(backend(e)),
        }
    }
    Ok(filled)
}

fn frames_from(file: &File, offset: u64) -> Result<Frames<BufReader<File>>, StoreError> {
    use std::io::{Seek, SeekFrom};
    let mut f = file.try_clone().map_err(backend)?;
    f.seek(SeekFrom::Start(offset)).map_err(backend)?;
    Ok(Frames { reader: BufReader::with_capacity(256 * 1024, f), offset })
}

/// The position a frame's body claims (its second field, after the format byte).
fn claimed_position(value: &[u8]) -> Option<u64> {
    let body = value.get(..value.len().checked_sub(32)?)?;
    postcard::take_from_bytes::<(u8, u64)>(body).ok().map(|((_, position), _)| position)
}

/// Writes `len` bytes of zeros from `offset`, growing the file, so that writing frames there
/// later changes no metadata (an `fdatasync` then flushes data only). Explicit zeros rather than
/// `fallocate`: unwritten extents would still change metadata when first written.
fn preallocate(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    let zeros = vec![0; 1024 * 1024];
    let mut at = offset;
    while at < offset + len {
        let n = (offset + len - at).min(zeros.len() as u64);
        file.write_all_at(&zeros[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

fn open_records(dir: &Path) -> Result<File, StoreError> {
    std::fs::create_dir_all(dir).map_err(backend)?;
    let path = dir.join(RECORDS);
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(backend)?;
    let len = file.metadata().map_err(backend)?.len();
    if len == 0 {
        file.write_all_at(MAGIC, 0).map_err(backend)?;
        file.sync_all().map_err(backend)?;
        // The new file's name must be durable too.
        File::open(dir).and_then(|d| d.sync_all()).map_err(backend)?;
    } else {
        let mut magic = [0u8; 8];
        let ok = file.read_exact_at(&mut magic, 0).is_ok() && &magic == MAGIC;
        if !ok {
            return Err(StoreError::Corrupt {
                position: 0,
                reason: format!("{} is not a forlop access log (or a newer format)", path.display()),
            });
        }
    }
    Ok(file)
}

/// Where each patient's records are, and every `SPARSE`th record's offset.
#[derive(Debug, Default)]
struct Index {
    /// Per patient: (position, offset), in position order.
    by_patient: HashMap<Uuid, Vec<(u64, u64)>>,
    /// `sparse[i]` is the offset of position `i * SPARSE`.
    sparse: Vec<u64>,
}

impl Index {
    fn add(&mut self, patient: Uuid, position: u64, offset: u64) {
        self.by_patient.entry(patient).or_default().push((position, offset));
        if position.is_multiple_of(SPARSE) {
            self.sparse.push(offset);
        }
    }
}

/// What to do with a final frame that does not chain: a torn write looks just like a damaged
/// last record.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FinalFrame {
    /// Serving: cut it off (the caller keeps its bytes aside), as a write never acknowledged.
    Recover,
    /// Auditing: report it as corrupt, and change nothing.
    Report,
}

/// Scans the whole file: indexes every frame, checks the last one chains, and returns where the
/// next record goes.
fn rebuild(file: &File, final_frame: FinalFrame) -> Result<(Index, Reach), StoreError> {
    let mut index = Index::default();
    let mut reach = Reach::EMPTY;
    let mut frames = frames_from(file, reach.offset)?;
    let mut last: Option<Frame> = None;
    let mut before_last = GENESIS_HASH;
    while let Some(frame) = frames.next_frame().map_err(|e| at_position(e, reach.position))? {
        let position = reach.position;
        let corrupt = |reason: &str| StoreError::Corrupt { position, reason: reason.into() };
        if claimed_position(&frame.value) != Some(position) {
            // Only a torn final frame may be unreadable; anything before it is corruption.
            let mut rest = frames_from(file, frame.offset + frame.len())?;
            if rest.next_frame()?.is_none() && final_frame == FinalFrame::Recover {
                tracing::warn!(position, "cutting an unreadable final frame off the access log");
                break;
            }
            return Err(corrupt("frame does not hold the next position"));
        }
        let patient = frame.patient().ok_or_else(|| corrupt("frame too short"))?;
        index.add(patient, position, frame.offset);
        let (body, hash) = split(position, &frame.value)?;
        // Auditing checks the chain as it reads, so that a damaged length is blamed on its own
        // record, not on the next one it misaligns.
        if final_frame == FinalFrame::Report && chain_hash(&reach.hash, body) != hash {
            return Err(corrupt("hash chain broken: content or order changed"));
        }
        before_last = reach.hash;
        reach = Reach { position: position + 1, offset: frame.offset + frame.len(), hash };
        last = Some(frame);
    }
    // Auditing leaves the chain to `verify`, which reports its first break, wherever it is.
    if let Some(frame) = last.filter(|_| final_frame == FinalFrame::Recover) {
        let position = reach.position - 1;
        let (body, hash) = split(position, &frame.value)?;
        if chain_hash(&before_last, body) != hash {
            // Written but never acknowledged: the write was cut short by a crash.
            tracing::warn!(position, "cutting a torn final frame off the access log");
            let entries = index.by_patient.get_mut(&frame.patient().expect("indexed")).expect("indexed");
            entries.pop();
            if position.is_multiple_of(SPARSE) {
                index.sparse.pop();
            }
            reach = Reach { position, offset: frame.offset, hash: before_last };
        }
    }
    if final_frame == FinalFrame::Report {
        // After the last frame come only zeros laid down ahead. Anything else is a frame that
        // could not be read (a damaged length, a torn write): never a silently shorter log.
        let mut rest = Vec::new();
        frames_from(file, reach.offset)?.reader.read_to_end(&mut rest).map_err(backend)?;
        if rest.iter().any(|b| *b != 0) {
            return Err(StoreError::Corrupt {
                position: reach.position,
                reason: "unreadable bytes where this record should start (a damaged length or a torn write)".into(),
            });
        }
    }
    Ok((index, reach))
}

/// A `Corrupt` error from reading frames names the position being read.
fn at_position(e: StoreError, position: u64) -> StoreError {
    match e {
        StoreError::Corrupt { position: u64::MAX, reason } => StoreError::Corrupt { position, reason },
        other => other,
    }
}

/// Copies a cut-off final frame (any non-zero bytes after `offset`) to `records.cut-<offset>`
/// before the file is truncated: a torn write and a damaged final record look alike, and an
/// auditor must be able to see which it was.
fn keep_cut_bytes(dir: &Path, file: &File, offset: u64) -> Result<(), StoreError> {
    let mut rest = Vec::new();
    frames_from(file, offset)?.reader.read_to_end(&mut rest).map_err(backend)?;
    let written = rest.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    if written > 0 {
        let path = dir.join(format!("records.cut-{offset}"));
        std::fs::write(&path, &rest[..written]).map_err(backend)?;
        tracing::warn!(path = %path.display(), bytes = written, "kept the bytes cut off the access log");
    }
    Ok(())
}

/// State the writer publishes and readers see.
#[derive(Debug)]
struct Shared {
    /// (committed count, head hash), updated together after each durable, indexed group.
    head: Mutex<(u64, Hash)>,
    /// Mirror of `head.0` for lock-free reads.
    committed: AtomicU64,
    /// Set once a group failed to become durable; every later append fails.
    failed: OnceLock<String>,
    index: RwLock<Index>,
}

impl Shared {
    fn head(&self) -> (u64, Hash) {
        *self.head.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }
}

struct Request {
    records: Vec<AccessRecord>,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// The file-backed access log. Dropping it ends the writer thread and closes the file.
pub struct FileAccessLog {
    /// The record file, for positioned reads (the writer holds its own handle).
    file: Arc<File>,
    writer: crate::group::WriterThread<Request>,
    shared: Arc<Shared>,
    #[cfg(test)]
    fail_next: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for FileAccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAccessLog")
            .field("committed", &self.committed())
            .field("failed", &self.shared.failed.get())
            .finish()
    }
}

impl FileAccessLog {
    /// Opens (or creates) the log in `dir`: indexes it, and cuts off a torn final frame.
    pub fn open(dir: &Path) -> Result<FileAccessLog, StoreError> {
        migrate_from_sled(dir)?;
        let file = open_records(dir)?;
        let (index, reach) = rebuild(&file, FinalFrame::Recover)?;
        // Zero whatever follows the last frame (a torn write, or preallocated zeros already),
        // so that the frames end there.
        let len = file.metadata().map_err(backend)?.len();
        if len > reach.offset {
            keep_cut_bytes(dir, &file, reach.offset)?;
            file.set_len(reach.offset).map_err(backend)?;
            file.sync_all().map_err(backend)?;
        }
        let shared = Arc::new(Shared {
            head: Mutex::new((reach.position, reach.hash)),
            committed: AtomicU64::new(reach.position),
            failed: OnceLock::new(),
            index: RwLock::new(index),
        });
        #[cfg(test)]
        let fail_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = Writer {
            file: file.try_clone().map_err(backend)?,
            allocated: reach.offset,
            reach,
            shared: shared.clone(),
            #[cfg(test)]
            fail_next: fail_next.clone(),
        };
        let writer =
            crate::group::WriterThread::spawn("forlop-access-writer", move |rx| writer.run(rx)).map_err(backend)?;
        tracing::info!(path = %dir.display(), records = reach.position, "opened access log");
        Ok(FileAccessLog {
            file: Arc::new(file),
            writer,
            shared,
            #[cfg(test)]
            fail_next,
        })
    }

    /// Verifies the log in `dir` without opening it for writing: nothing is cut off or changed
    /// (beyond migrating a log kept in sled by an earlier version).
    pub fn verify_dir(dir: &Path) -> Result<AccessVerifyReport, StoreError> {
        migrate_from_sled(dir)?;
        if !dir.join(RECORDS).exists() {
            return Ok(AccessVerifyReport { records: 0, head_hash: GENESIS_HASH });
        }
        let file = open_records(dir)?;
        let (index, reach) = rebuild(&file, FinalFrame::Report)?;
        let shared = Shared {
            head: Mutex::new((reach.position, reach.hash)),
            committed: AtomicU64::new(reach.position),
            failed: OnceLock::new(),
            index: RwLock::new(index),
        };
        verify(&file, &shared)
    }

    /// Flips one byte of the record at `position`, for tamper-detection tests. The log in `dir`
    /// must not be open.
    #[cfg(feature = "testing")]
    pub fn tamper(dir: &Path, position: u64) -> Result<(), StoreError> {
        let file = OpenOptions::new().read(true).write(true).open(dir.join(RECORDS)).map_err(backend)?;
        let mut frames = frames_from(&file, MAGIC.len() as u64)?;
        let mut at = 0;
        while let Some(frame) = frames.next_frame()? {
            if at == position {
                let body_len = split(position, &frame.value)?.0.len();
                // The last byte of the patient id, which ends the canonical bytes.
                let byte_at = frame.offset + 4 + body_len as u64 - 1;
                let flipped = [frame.value[body_len - 1] ^ 0x01];
                file.write_all_at(&flipped, byte_at).map_err(backend)?;
                return file.sync_all().map_err(backend);
            }
            at += 1;
        }
        Err(StoreError::Corrupt { position, reason: "no record to tamper with".into() })
    }

    /// Reads and decodes the frame at `offset`, which must hold `position`.
    fn read_at(&self, position: u64, offset: u64) -> Result<StoredAccessRecord, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt { position, reason };
        let mut len = [0u8; 4];
        self.file.read_exact_at(&mut len, offset).map_err(|e| corrupt(format!("index points past the file: {e}")))?;
        let body = u32::from_le_bytes(len) as usize;
        if body == 0 || body > MAX_BODY {
            return Err(corrupt(format!("frame claims {body} bytes")));
        }
        let mut value = vec![0; body + 32];
        self.file.read_exact_at(&mut value, offset + 4).map_err(|e| corrupt(format!("truncated frame: {e}")))?;
        decode(position, &value)
    }

    fn query_patient(
        &self,
        patient: Uuid,
        filter: &AccessFilter,
        (start, end): (u64, u64),
        limit: usize,
    ) -> Result<Vec<StoredAccessRecord>, StoreError> {
        let entries: Vec<(u64, u64)> = {
            let index = self.shared.index();
            let all = index.by_patient.get(&patient).map(Vec::as_slice).unwrap_or_default();
            let from = all.partition_point(|(p, _)| *p < start);
            all[from..].iter().take_while(|(p, _)| *p < end).copied().collect()
        };
        let mut out = Vec::new();
        for (position, offset) in entries {
            let stored = self.read_at(position, offset)?;
            if stored.record.patient_id != patient {
                return Err(StoreError::Corrupt {
                    position,
                    reason: format!("patient index for {patient} points at another patient's record"),
                });
            }
            if filter.matches(&stored.record) {
                out.push(stored);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn query_all(
        &self,
        filter: &AccessFilter,
        (start, end): (u64, u64),
        limit: usize,
    ) -> Result<Vec<StoredAccessRecord>, StoreError> {
        // Start at the last sparse offset at or before `start` and read forward.
        let anchor = start / SPARSE;
        let offset = self.shared.index().sparse.get(anchor as usize).copied().unwrap_or(MAGIC.len() as u64);
        let mut position = if offset == MAGIC.len() as u64 { 0 } else { anchor * SPARSE };
        let mut frames = frames_from(&self.file, offset)?;
        let mut out = Vec::new();
        while position < end && out.len() < limit {
            let Some(frame) = frames.next_frame()? else {
                return Err(StoreError::Corrupt { position, reason: "record missing from the file".into() });
            };
            if position >= start {
                let stored = decode(position, &frame.value)?;
                if filter.matches(&stored.record) {
                    out.push(stored);
                }
            }
            position += 1;
        }
        Ok(out)
    }
}

/// Earlier versions kept the access log in a sled database directly in `dir`, with the same
/// canonical bytes and hashes under `R` + position. Copies those records into a new record file
/// (written under a temporary name, renamed when durable), then moves the old database aside.
fn migrate_from_sled(dir: &Path) -> Result<(), StoreError> {
    let old = dir.join("db");
    if !old.exists() || dir.join(RECORDS).exists() {
        return Ok(());
    }
    let db = crate::sled_open::open(&sled::Config::new().path(dir).flush_every_ms(None)).map_err(backend)?;
    let tree = db.open_tree("access").map_err(backend)?;
    let partial = dir.join("records.migrating");
    let mut out = std::io::BufWriter::new(File::create(&partial).map_err(backend)?);
    out.write_all(MAGIC).map_err(backend)?;
    let mut n = 0u64;
    for kv in tree.scan_prefix([b'R']) {
        let (k, v) = kv.map_err(backend)?;
        let position = be_u64(&k[1..]);
        if position != n {
            return Err(StoreError::Corrupt {
                position: n,
                reason: format!("gap: next stored position is {position}"),
            });
        }
        let (body, _) = split(position, &v)?;
        let len = u32::try_from(body.len()).map_err(backend)?;
        out.write_all(&len.to_le_bytes()).map_err(backend)?;
        out.write_all(&v).map_err(backend)?;
        n += 1;
    }
    let file = out.into_inner().map_err(|e| backend(e.error()))?;
    file.sync_all().map_err(backend)?;
    drop((tree, db));
    std::fs::rename(&partial, dir.join(RECORDS)).map_err(backend)?;
    let aside = dir.join("sled-before-migration");
    std::fs::create_dir_all(&aside).map_err(backend)?;
    for name in ["conf", "db", "snap", "blobs"] {
        let from = dir.join(name);
        if from.exists() {
            std::fs::rename(&from, aside.join(name)).map_err(backend)?;
        }
    }
    for entry in std::fs::read_dir(dir).map_err(backend)? {
        let entry = entry.map_err(backend)?;
        if entry.file_name().to_string_lossy().starts_with("snap.") {
            std::fs::rename(entry.path(), aside.join(entry.file_name())).map_err(backend)?;
        }
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(backend)?;
    tracing::warn!(records = n, old = %aside.display(), "migrated the access log from sled to its record file");
    Ok(())
}

struct Writer {
    file: File,
    /// The file's length: the frames, then preallocated zeros.
    allocated: u64,
    reach: Reach,
    shared: Arc<Shared>,
    #[cfg(test)]
    fail_next: Arc<std::sync::atomic::AtomicBool>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        while let Some(group) = crate::group::next_group(&rx, MAX_GROUP) {
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        if let Some(reason) = self.shared.failed.get() {
            for req in group {
                let _ = req.reply.send(Err(not_durable(reason)));
            }
            return;
        }
        metrics::histogram!("forlop_group_commit_size", "log" => "access").record(group.len() as f64);
        let mut bytes = Vec::with_capacity(group.len() * 200);
        let mut entries = Vec::with_capacity(group.len());
        let mut reach = self.reach;
        let mut results = Vec::with_capacity(group.len());
        for req in &group {
            results.push(plan(&req.records, &mut bytes, &mut entries, &mut reach));
        }
        if reach.position != self.reach.position {
            if let Err(e) = self.durable(&bytes, reach.position) {
                // Fail-stop: whether the group reached the disk is unknown, so no position after
                // the reach may ever be handed out again by this process.
                let reason = e.to_string();
                tracing::error!(error = %reason, "access log group commit failed; failing every later append");
                let _ = self.shared.failed.set(reason.clone());
                metrics::gauge!("forlop_store_failed", "log" => "access").set(1.0);
                for req in group {
                    let _ = req.reply.send(Err(not_durable(&reason)));
                }
                return;
            }
            {
                let mut index = self.shared.index.write().unwrap_or_else(|e| e.into_inner());
                for (patient, position, offset) in entries {
                    index.add(patient, position, offset);
                }
            }
            self.reach = reach;
            let mut head = self.shared.head.lock().unwrap_or_else(|e| e.into_inner());
            *head = (reach.position, reach.hash);
            self.shared.committed.store(reach.position, Ordering::Release);
        }
        for (req, result) in group.into_iter().zip(results) {
            let _ = req.reply.send(result);
        }
    }

    /// Writes the group's frames after the last one and waits until they are on disk; the group
    /// ends before record `records_end`.
    fn durable(&mut self, bytes: &[u8], records_end: u64) -> std::io::Result<()> {
        #[cfg(test)]
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(std::io::Error::other("injected flush failure"));
        }
        let end = self.reach.offset + bytes.len() as u64;
        if end > self.allocated {
            let grow = (end - self.allocated).div_ceil(CHUNK) * CHUNK;
            preallocate(&self.file, self.allocated, grow)?;
            self.allocated += grow;
        }
        self.file.write_all_at(bytes, self.reach.offset)?;
        let syncing = std::time::Instant::now();
        #[cfg(debug_assertions)]
        if crate::faults::access_sync_should_fail(records_end) {
            // A failing fsync returns once the device has given up, not at once. The delay also
            // makes the failure arrive after the request has resolved its answer, the case a
            // deferred settle exists for, whatever the machine's speed.
            std::thread::sleep(std::time::Duration::from_millis(300));
            return Err(std::io::Error::other("injected fault: the access log's fsync failed"));
        }
        #[cfg(not(debug_assertions))]
        let _ = records_end;
        self.file.sync_data()?;
        metrics::histogram!("forlop_fsync_seconds", "log" => "access").record(syncing.elapsed().as_secs_f64());
        Ok(())
    }
}

/// Frames one request's records from `reach` on, with their index entries, only if all of them
/// encode. Returns the request's first position.
fn plan(
    records: &[AccessRecord],
    bytes: &mut Vec<u8>,
    entries: &mut Vec<(Uuid, u64, u64)>,
    reach: &mut Reach,
) -> Result<u64, StoreError> {
    let mut framed = Vec::with_capacity(records.len() * 200);
    let mut mine = Vec::with_capacity(records.len());
    let mut r = *reach;
    for record in records {
        let start = framed.len();
        framed.extend_from_slice(&[0; 4]);
        framed = encode(record, r.position, framed)?;
        let body = u32::try_from(framed.len() - start - 4).map_err(backend)?;
        framed[start..start + 4].copy_from_slice(&body.to_le_bytes());
        r.hash = chain_hash(&r.hash, &framed[start + 4..]);
        framed.extend_from_slice(&r.hash);
        mine.push((record.patient_id, r.position, r.offset));
        r.position += 1;
        r.offset += (framed.len() - start) as u64;
    }
    bytes.extend_from_slice(&framed);
    entries.extend(mine);
    let first = reach.position;
    *reach = r;
    Ok(first)
}

#[async_trait]
impl AccessLog for FileAccessLog {
    async fn append(&self, records: Vec<AccessRecord>) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(self.committed());
        }
        for r in &records {
            validate(r)?;
        }
        if let Some(reason) = self.shared.failed.get() {
            return Err(not_durable(reason));
        }
        let (reply, answer) = oneshot::channel();
        // The writer died (its queue or reply closed): fail stop, so /healthz says so too.
        let gone = || {
            let _ = self.shared.failed.set("the writer thread stopped".into());
            not_durable("the writer thread stopped")
        };
        self.writer.send(Request { records, reply }).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    async fn query(
        &self,
        filter: &AccessFilter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredAccessRecord>, StoreError> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        // Only what a durable group wrote: a group being written is beyond `committed`.
        let end = self.committed();
        if limit == 0 || start >= end {
            return Ok(Vec::new());
        }
        match filter.patient_id {
            Some(patient) => self.query_patient(patient, filter, (start, end), limit),
            None => self.query_all(filter, (start, end), limit),
        }
    }

    fn failure(&self) -> Option<String> {
        self.shared.failed.get().map(|r| format!("the access log could not be made durable: {r}"))
    }

    fn committed(&self) -> u64 {
        self.shared.committed.load(Ordering::Acquire)
    }

    fn head_hash(&self) -> Hash {
        self.shared.head().1
    }

    async fn verify(&self) -> Result<AccessVerifyReport, StoreError> {
        let (file, shared) = (self.file.clone(), self.shared.clone());
        // A whole-log scan: keep it off the async workers.
        tokio::task::spawn_blocking(move || verify(&file, &shared))
            .await
            .map_err(|e| backend(format!("verify task failed: {e}")))?
    }
}

/// Checks records `[0, committed)`: gapless positions, decodable, hash chain intact, the chain
/// ending at the head hash, and each record in the patient index at its offset and nowhere else.
fn verify(file: &File, shared: &Shared) -> Result<AccessVerifyReport, StoreError> {
    let (end, head) = shared.head();
    let mut frames = frames_from(file, MAGIC.len() as u64)?;
    let mut previous = GENESIS_HASH;
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    for position in 0..end {
        let corrupt = |reason: &str| StoreError::Corrupt { position, reason: reason.into() };
        let frame =
            frames.next_frame().map_err(|e| at_position(e, position))?.ok_or_else(|| corrupt("record missing"))?;
        let (body, hash) = split(position, &frame.value)?;
        if chain_hash(&previous, body) != hash {
            return Err(corrupt("hash chain broken: content or order changed"));
        }
        let stored = decode(position, &frame.value)?;
        let patient = stored.record.patient_id;
        let nth = seen.entry(patient).or_default();
        let indexed = shared.index().by_patient.get(&patient).and_then(|v| v.get(*nth).copied());
        if indexed != Some((position, frame.offset)) {
            return Err(corrupt("record is missing from the patient index"));
        }
        *nth += 1;
        previous = hash;
    }
    if previous != head {
        return Err(StoreError::Corrupt {
            position: end.saturating_sub(1),
            reason: "stored chain does not end at the head hash".into(),
        });
    }
    Ok(AccessVerifyReport { records: end, head_hash: previous })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::AccessOutcome;

    fn record(patient: Uuid) -> AccessRecord {
        AccessRecord {
            patient_id: patient,
            actor_sub: "sub".into(),
            actor_name: None,
            role: "nurse".into(),
            hpr_number: None,
            operation: "anonymous".into(),
            fields: "patient".into(),
            outcome: AccessOutcome::Allowed,
            reason: None,
            correlation_id: None,
            at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn a_failed_sync_fails_stop() {
        let dir = tempfile::tempdir().unwrap();
        let p = Uuid::new_v4();
        {
            let log = FileAccessLog::open(dir.path()).unwrap();
            assert_eq!(log.append(vec![record(p)]).await.unwrap(), 0);
            let head = log.head_hash();
            log.fail_next.store(true, Ordering::SeqCst);
            let err = log.append(vec![record(p)]).await.unwrap_err();
            assert!(matches!(&err, StoreError::Unavailable(m) if m.starts_with("access log is not durable")), "{err}");
            // Every later append fails too, and nothing moved.
            let err = log.append(vec![record(p), record(p)]).await.unwrap_err();
            assert!(matches!(&err, StoreError::Unavailable(m) if m.starts_with("access log is not durable")), "{err}");
            assert_eq!(log.committed(), 1);
            assert_eq!(log.head_hash(), head);
            assert_eq!(log.query(&AccessFilter::default(), None, 10).await.unwrap().len(), 1);
            assert_eq!(log.verify().await.unwrap().records, 1);
        }
        let log = FileAccessLog::open(dir.path()).unwrap();
        assert_eq!(log.append(vec![record(p)]).await.unwrap(), 1);
        assert_eq!(log.verify().await.unwrap().records, 2);
    }

    #[tokio::test]
    async fn a_torn_final_frame_is_cut_off_and_the_index_is_rebuilt_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        {
            let log = FileAccessLog::open(dir.path()).unwrap();
            for i in 0..600 {
                log.append(vec![record(if i % 3 == 0 { a } else { b })]).await.unwrap();
            }
        }
        // A crash mid-write: half a frame at the end, never acknowledged.
        let mut f = OpenOptions::new().append(true).open(dir.path().join(RECORDS)).unwrap();
        f.write_all(&[90, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let log = FileAccessLog::open(dir.path()).unwrap();
        assert_eq!(log.committed(), 600);
        assert_eq!(log.verify().await.unwrap().records, 600);
        assert_eq!(log.append(vec![record(a)]).await.unwrap(), 600);
        drop(log);

        let log = FileAccessLog::open(dir.path()).unwrap();
        assert_eq!(log.verify().await.unwrap().records, 601);
        let only_a = AccessFilter { patient_id: Some(a), ..Default::default() };
        assert_eq!(log.query(&only_a, None, 1000).await.unwrap().len(), 201);
        let from_300 = log.query(&AccessFilter::default(), Some(299), 1000).await.unwrap();
        assert_eq!(from_300.first().map(|r| r.position), Some(300));
        assert_eq!(from_300.len(), 301);
    }
}

#[cfg(test)]
mod migration_tests {
    use super::*;
    use crate::access_log::AccessOutcome;

    #[tokio::test]
    async fn an_access_log_kept_in_sled_by_an_earlier_version_is_migrated_with_its_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let p = Uuid::new_v4();
        let mut hash = GENESIS_HASH;
        {
            // The earlier layout: `R` + position -> canonical bytes ++ chain hash.
            let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open().unwrap();
            let tree = db.open_tree("access").unwrap();
            for position in 0..3u64 {
                let r = AccessRecord {
                    patient_id: p,
                    actor_sub: format!("sub{position}"),
                    actor_name: None,
                    role: "auditor".into(),
                    hpr_number: None,
                    operation: "Q".into(),
                    fields: "patient".into(),
                    outcome: AccessOutcome::Allowed,
                    reason: None,
                    correlation_id: None,
                    at: chrono::Utc::now(),
                };
                let mut value = encode(&r, position, Vec::new()).unwrap();
                hash = chain_hash(&hash, &value);
                value.extend_from_slice(&hash);
                let mut key = vec![b'R'];
                key.extend_from_slice(&position.to_be_bytes());
                tree.insert(key, value).unwrap();
            }
            db.flush().unwrap();
        }
        let log = FileAccessLog::open(dir.path()).unwrap();
        let report = log.verify().await.unwrap();
        assert_eq!((report.records, report.head_hash), (3, hash));
        let mine = log.query(&AccessFilter { patient_id: Some(p), ..Default::default() }, None, 10).await.unwrap();
        assert_eq!(mine.iter().map(|r| r.record.actor_sub.as_str()).collect::<Vec<_>>(), ["sub0", "sub1", "sub2"]);
        assert!(dir.path().join("sled-before-migration").join("db").exists());
        drop(log);
        // Opening again does not migrate twice.
        assert_eq!(FileAccessLog::open(dir.path()).unwrap().committed(), 3);
    }
}
