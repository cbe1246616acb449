//! The access log (pasientjournalloven §§ 18 and 22): one record per patient disclosed by a
//! response, made durable before the response is sent, so the patient can later see who read
//! their record.
//!
//! A separate append-only, hash-chained log in its own sled database, written like the event log
//! (`sled_store`): one writer thread takes every queued append (up to a cap), writes the group's
//! records and index entries in one sled batch, makes it durable with one `flush` (fsync) and only
//! then acknowledges each append. Many concurrent reads thus share one fsync.
//!
//! Key layout (one tree):
//! - `R` + position (u64 BE)                      -> canonical bytes ++ SHA-256 chain hash (32 bytes)
//! - `P` + patient id (16 bytes) + position (u64 BE) -> empty: the per-patient index
//!
//! Fail-stop: if a group's `apply_batch` or `flush` fails, that group and every later append fail
//! with `StoreError::Unavailable("access log is not durable: ...")`; positions are never reused.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::hash::{chain_hash, Hash, GENESIS_HASH};
use crate::StoreError;

const RECORD: u8 = b'R';
const PATIENT: u8 = b'P';
/// Most requests one group commit takes; bounds the latency a long queue adds to its first writer.
const MAX_GROUP: usize = 1024;
/// Longest string field a record may carry, in bytes.
pub const MAX_FIELD_BYTES: usize = 4096;
/// Version of the canonical encoding, the first field of every record.
const FORMAT: u8 = 1;
/// sled page cache: the access log is mostly appended, rarely read.
const CACHE_BYTES: u64 = 128 * 1024 * 1024;
const TREE: &str = "access";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessOutcome {
    Allowed,
    Denied,
    Emergency,
}

impl AccessOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessOutcome::Allowed => "ALLOWED",
            AccessOutcome::Denied => "DENIED",
            AccessOutcome::Emergency => "EMERGENCY",
        }
    }

    /// The stable code stored in the canonical bytes.
    fn code(self) -> u8 {
        match self {
            AccessOutcome::Allowed => 0,
            AccessOutcome::Denied => 1,
            AccessOutcome::Emergency => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(AccessOutcome::Allowed),
            1 => Some(AccessOutcome::Denied),
            2 => Some(AccessOutcome::Emergency),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    pub patient_id: Uuid,
    pub actor_sub: String,
    pub actor_name: Option<String>,
    pub role: String,
    pub hpr_number: Option<String>,
    /// The GraphQL operation name (or "anonymous"), and the root field(s) that disclosed the data,
    /// e.g. "patient", "events".
    pub operation: String,
    pub fields: String,
    pub outcome: AccessOutcome,
    /// The reason given for emergency access.
    pub reason: Option<String>,
    pub correlation_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAccessRecord {
    pub position: u64,
    pub record: AccessRecord,
    pub hash: Hash,
}

#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    pub patient_id: Option<Uuid>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub emergency_only: bool,
}

impl AccessFilter {
    fn matches(&self, r: &AccessRecord) -> bool {
        self.patient_id.is_none_or(|p| p == r.patient_id)
            && self.from.is_none_or(|from| r.at >= from)
            && self.to.is_none_or(|to| r.at < to)
            && (!self.emergency_only || r.outcome == AccessOutcome::Emergency)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessVerifyReport {
    pub records: u64,
    pub head_hash: Hash,
}

#[async_trait]
pub trait AccessLog: Send + Sync + 'static {
    /// Appends the records (in order) and returns the position of the first; returns only once
    /// they are durable (fsynced). An empty vec is a no-op returning the current committed count.
    async fn append(&self, records: Vec<AccessRecord>) -> Result<u64, StoreError>;
    /// Records matching `filter` with position > `after` (None: from the start), in log order, at
    /// most `limit`. With a patient filter this uses the per-patient index, not a full scan.
    async fn query(
        &self,
        filter: &AccessFilter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredAccessRecord>, StoreError>;
    /// Number of records committed (the next position).
    fn committed(&self) -> u64;
    /// Hash of the last committed record (GENESIS_HASH when empty).
    fn head_hash(&self) -> Hash;
    /// Recomputes the chain and positions over the whole log (and checks the patient index points
    /// at existing records); Err(StoreError::Corrupt{position,..}) at the first bad record.
    async fn verify(&self) -> Result<AccessVerifyReport, StoreError>;

    /// Why the log accepts no more records, once it has failed (fail-stop); None while healthy.
    fn failure(&self) -> Option<String> {
        None
    }
}

/// The canonical bytes of a record: what the hash covers and what is stored. Ends with the
/// fixed-size patient id, so flipping the last byte changes content without breaking decoding.
#[derive(Serialize, Deserialize)]
struct Canonical<'a> {
    format: u8,
    position: u64,
    at_ns: i64,
    outcome: u8,
    actor_sub: &'a str,
    #[serde(borrow)]
    actor_name: Option<&'a str>,
    role: &'a str,
    #[serde(borrow)]
    hpr_number: Option<&'a str>,
    operation: &'a str,
    fields: &'a str,
    #[serde(borrow)]
    reason: Option<&'a str>,
    correlation_id: Option<[u8; 16]>,
    patient_id: [u8; 16],
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn not_durable(reason: &str) -> StoreError {
    StoreError::Unavailable(format!("access log is not durable: {reason}"))
}

fn record_key(position: u64) -> [u8; 9] {
    let mut k = [RECORD; 9];
    k[1..].copy_from_slice(&position.to_be_bytes());
    k
}

fn patient_key(patient: Uuid, position: u64) -> [u8; 25] {
    let mut k = [PATIENT; 25];
    k[1..17].copy_from_slice(patient.as_bytes());
    k[17..].copy_from_slice(&position.to_be_bytes());
    k
}

fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().expect("8-byte big-endian value"))
}

/// Rejects records the log should not store: absurdly long strings, unrepresentable times.
fn validate(r: &AccessRecord) -> Result<(), StoreError> {
    let strings = [
        ("actor_sub", Some(&r.actor_sub)),
        ("actor_name", r.actor_name.as_ref()),
        ("role", Some(&r.role)),
        ("hpr_number", r.hpr_number.as_ref()),
        ("operation", Some(&r.operation)),
        ("fields", Some(&r.fields)),
        ("reason", r.reason.as_ref()),
    ];
    for (name, value) in strings {
        if let Some(v) = value {
            if v.len() > MAX_FIELD_BYTES {
                return Err(StoreError::InvalidAppend(format!(
                    "access record {name} is {} bytes; at most {MAX_FIELD_BYTES} allowed",
                    v.len()
                )));
            }
        }
    }
    if r.at.timestamp_nanos_opt().is_none() {
        return Err(StoreError::InvalidAppend(format!("access time {} is outside 1677-2262", r.at)));
    }
    Ok(())
}

/// Appends the canonical bytes of `r` at `position` to `out`.
fn encode(r: &AccessRecord, position: u64, out: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let c = Canonical {
        format: FORMAT,
        position,
        at_ns: r.at.timestamp_nanos_opt().ok_or_else(|| StoreError::InvalidAppend("time out of range".into()))?,
        outcome: r.outcome.code(),
        actor_sub: &r.actor_sub,
        actor_name: r.actor_name.as_deref(),
        role: &r.role,
        hpr_number: r.hpr_number.as_deref(),
        operation: &r.operation,
        fields: &r.fields,
        reason: r.reason.as_deref(),
        correlation_id: r.correlation_id.map(|u| *u.as_bytes()),
        patient_id: *r.patient_id.as_bytes(),
    };
    postcard::to_extend(&c, out).map_err(backend)
}

/// Splits a stored value into (canonical bytes, hash).
fn split(position: u64, value: &[u8]) -> Result<(&[u8], Hash), StoreError> {
    if value.len() < 32 {
        return Err(StoreError::Corrupt { position, reason: "record without hash".into() });
    }
    let (body, hash) = value.split_at(value.len() - 32);
    Ok((body, hash.try_into().expect("32 bytes")))
}

/// Decodes the record stored under `position`, checking it claims that position.
fn decode(position: u64, value: &[u8]) -> Result<StoredAccessRecord, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let (body, hash) = split(position, value)?;
    let c: Canonical = postcard::from_bytes(body).map_err(|e| corrupt(format!("undecodable record: {e}")))?;
    if c.format != FORMAT {
        return Err(corrupt(format!("unknown record format {}", c.format)));
    }
    if c.position != position {
        return Err(corrupt(format!("record claims position {}", c.position)));
    }
    let outcome =
        AccessOutcome::from_code(c.outcome).ok_or_else(|| corrupt(format!("unknown outcome {}", c.outcome)))?;
    Ok(StoredAccessRecord {
        position,
        record: AccessRecord {
            patient_id: Uuid::from_bytes(c.patient_id),
            actor_sub: c.actor_sub.to_owned(),
            actor_name: c.actor_name.map(str::to_owned),
            role: c.role.to_owned(),
            hpr_number: c.hpr_number.map(str::to_owned),
            operation: c.operation.to_owned(),
            fields: c.fields.to_owned(),
            outcome,
            reason: c.reason.map(str::to_owned),
            correlation_id: c.correlation_id.map(Uuid::from_bytes),
            at: DateTime::from_timestamp_nanos(c.at_ns),
        },
        hash,
    })
}

fn open_db(path: &Path) -> Result<(sled::Db, sled::Tree), StoreError> {
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        // We flush explicitly before every acknowledgement; a timer adds nothing.
        .flush_every_ms(None)
        .open()
        .map_err(backend)?;
    let tree = db.open_tree(TREE).map_err(backend)?;
    Ok((db, tree))
}

/// State the writer publishes and readers see.
#[derive(Debug)]
struct Shared {
    /// (committed count, head hash), updated together after each durable group.
    head: Mutex<(u64, Hash)>,
    /// Mirror of `head.0` for lock-free reads.
    committed: AtomicU64,
    /// Set once a group failed to become durable; every later append fails.
    failed: OnceLock<String>,
}

impl Shared {
    fn head(&self) -> (u64, Hash) {
        *self.head.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sled-backed access log. Dropping it ends the writer thread and releases the database.
pub struct SledAccessLog {
    tree: sled::Tree,
    writer: crate::group::WriterThread<Request>,
    shared: Arc<Shared>,
    #[cfg(test)]
    fail_next: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for SledAccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledAccessLog")
            .field("committed", &self.committed())
            .field("failed", &self.shared.failed.get())
            .finish()
    }
}

struct Request {
    records: Vec<AccessRecord>,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

impl SledAccessLog {
    pub fn open(path: &Path) -> Result<SledAccessLog, StoreError> {
        let (db, tree) = open_db(path)?;
        let (mut next_position, mut last_hash) = (0, GENESIS_HASH);
        if let Some(kv) = tree.scan_prefix([RECORD]).next_back() {
            let (k, v) = kv.map_err(backend)?;
            let position = be_u64(&k[1..]);
            last_hash = split(position, &v)?.1;
            next_position = position + 1;
        }
        let shared = Arc::new(Shared {
            head: Mutex::new((next_position, last_hash)),
            committed: AtomicU64::new(next_position),
            failed: OnceLock::new(),
        });
        #[cfg(test)]
        let fail_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = Writer {
            db,
            tree: tree.clone(),
            next_position,
            last_hash,
            shared: shared.clone(),
            #[cfg(test)]
            fail_next: fail_next.clone(),
        };
        let writer =
            crate::group::WriterThread::spawn("forlop-access-writer", move |rx| writer.run(rx)).map_err(backend)?;
        tracing::info!(path = %path.display(), records = next_position, "opened access log");
        Ok(SledAccessLog {
            tree,
            writer,
            shared,
            #[cfg(test)]
            fail_next,
        })
    }

    /// Flips one byte of the record at `position`, for tamper-detection tests. The log at `path`
    /// must not be open.
    #[doc(hidden)]
    pub fn tamper(path: &Path, position: u64) -> Result<(), StoreError> {
        let (db, tree) = open_db(path)?;
        let value = tree
            .get(record_key(position))
            .map_err(backend)?
            .ok_or_else(|| StoreError::Corrupt { position, reason: "no record to tamper with".into() })?;
        let body_len = split(position, &value)?.0.len();
        let mut value = value.to_vec();
        value[body_len - 1] ^= 0x01; // the last byte of the patient id, which ends the canonical bytes
        tree.insert(record_key(position), value).map_err(backend)?;
        db.flush().map_err(backend)?;
        Ok(())
    }

    /// Reads and decodes the committed record at `position`.
    fn get(&self, position: u64) -> Result<StoredAccessRecord, StoreError> {
        let value = self.tree.get(record_key(position)).map_err(backend)?.ok_or_else(|| StoreError::Corrupt {
            position,
            reason: "patient index points at a missing record".into(),
        })?;
        decode(position, &value)
    }
}

struct Writer {
    db: sled::Db,
    tree: sled::Tree,
    next_position: u64,
    last_hash: Hash,
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
        let mut batch = sled::Batch::default();
        let (mut position, mut hash) = (self.next_position, self.last_hash);
        let mut results = Vec::with_capacity(group.len());
        for req in &group {
            results.push(plan(&req.records, &mut batch, &mut position, &mut hash));
        }
        if position != self.next_position {
            if let Err(e) = self.durable(batch) {
                // Fail-stop: whether the batch reached the disk is unknown, so no position after
                // `next_position` may ever be handed out again by this process.
                let reason = e.to_string();
                tracing::error!(error = %reason, "access log group commit failed; failing every later append");
                let _ = self.shared.failed.set(reason.clone());
                metrics::gauge!("forlop_store_failed", "log" => "access").set(1.0);
                for req in group {
                    let _ = req.reply.send(Err(not_durable(&reason)));
                }
                return;
            }
            self.next_position = position;
            self.last_hash = hash;
            {
                let mut head = self.shared.head.lock().unwrap_or_else(|e| e.into_inner());
                *head = (position, hash);
                self.shared.committed.store(position, Ordering::Release);
            }
        }
        for (req, result) in group.into_iter().zip(results) {
            let _ = req.reply.send(result);
        }
    }

    fn durable(&self, batch: sled::Batch) -> Result<(), sled::Error> {
        #[cfg(test)]
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(sled::Error::ReportableBug("injected flush failure".into()));
        }
        self.tree.apply_batch(batch)?;
        let flushing = std::time::Instant::now();
        self.db.flush()?;
        metrics::histogram!("forlop_fsync_seconds", "log" => "access").record(flushing.elapsed().as_secs_f64());
        Ok(())
    }
}

/// Encodes one request's records from `*position` on, chaining from `*hash`, and adds them to the
/// batch only if all of them encode. Returns the request's first position.
fn plan(
    records: &[AccessRecord],
    batch: &mut sled::Batch,
    position: &mut u64,
    hash: &mut Hash,
) -> Result<u64, StoreError> {
    let first = *position;
    let mut h = *hash;
    let mut writes = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let pos = first + i as u64;
        let mut value = encode(r, pos, Vec::with_capacity(160))?;
        h = chain_hash(&h, &value);
        value.extend_from_slice(&h);
        writes.push((pos, r.patient_id, value));
    }
    for (pos, patient, value) in writes {
        batch.insert(&record_key(pos)[..], value);
        batch.insert(&patient_key(patient, pos)[..], &[][..]);
    }
    *position = first + records.len() as u64;
    *hash = h;
    Ok(first)
}

#[async_trait]
impl AccessLog for SledAccessLog {
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
        let req = Request { records, reply };
        // The writer died (its queue or reply closed): fail stop, so /healthz says so too.
        let gone = || {
            let _ = self.shared.failed.set("the writer thread stopped".into());
            not_durable("the writer thread stopped")
        };
        self.writer.send(req).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    async fn query(
        &self,
        filter: &AccessFilter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredAccessRecord>, StoreError> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        // Only what a durable group wrote: a group being flushed is beyond `committed`.
        let end = self.committed();
        let mut out = Vec::new();
        if limit == 0 || start >= end {
            return Ok(out);
        }
        if let Some(patient) = filter.patient_id {
            for kv in self.tree.range(patient_key(patient, start)..patient_key(patient, end)) {
                let (k, _) = kv.map_err(backend)?;
                let position = be_u64(&k[17..]);
                let stored = self.get(position)?;
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
        } else {
            for kv in self.tree.range(record_key(start)..record_key(end)) {
                let (k, v) = kv.map_err(backend)?;
                let stored = decode(be_u64(&k[1..]), &v)?;
                if filter.matches(&stored.record) {
                    out.push(stored);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
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
        let tree = self.tree.clone();
        let (end, head) = self.shared.head();
        // A whole-log scan: keep it off the async workers.
        tokio::task::spawn_blocking(move || verify(&tree, end, head))
            .await
            .map_err(|e| backend(format!("verify task failed: {e}")))?
    }
}

/// Checks records `[0, end)`: gapless positions, decodable, hash chain intact, each record in the
/// patient index, the chain ending at `head`; then that the index holds nothing else.
fn verify(tree: &sled::Tree, end: u64, head: Hash) -> Result<AccessVerifyReport, StoreError> {
    let mut previous = GENESIS_HASH;
    let mut expected = 0u64;
    for kv in tree.range(record_key(0)..record_key(end)) {
        let (k, v) = kv.map_err(backend)?;
        let position = be_u64(&k[1..]);
        if position != expected {
            return Err(StoreError::Corrupt {
                position: expected,
                reason: format!("gap: next stored position is {position}"),
            });
        }
        let corrupt = |reason: &str| StoreError::Corrupt { position, reason: reason.into() };
        let (body, hash) = split(position, &v)?;
        if chain_hash(&previous, body) != hash {
            return Err(corrupt("hash chain broken: content or order changed"));
        }
        let stored = decode(position, &v)?;
        if !tree.contains_key(patient_key(stored.record.patient_id, position)).map_err(backend)? {
            return Err(corrupt("record is missing from the patient index"));
        }
        previous = hash;
        expected += 1;
    }
    if expected != end {
        return Err(StoreError::Corrupt { position: expected, reason: "record missing".into() });
    }
    if previous != head {
        return Err(StoreError::Corrupt {
            position: end.saturating_sub(1),
            reason: "stored chain does not end at the head hash".into(),
        });
    }
    // Every record has its index entry; the index points only at existing records when it holds
    // exactly `end` entries below `end`. Index entries at or beyond `end` belong to a group that
    // never became durable and are never shown.
    let mut indexed = 0u64;
    for kv in tree.scan_prefix([PATIENT]) {
        let (k, _) = kv.map_err(backend)?;
        if k.len() != 25 {
            return Err(StoreError::Corrupt { position: 0, reason: "malformed patient index key".into() });
        }
        if be_u64(&k[17..]) < end {
            indexed += 1;
        }
    }
    if indexed != end {
        // Find the stray entry, for the report.
        for kv in tree.scan_prefix([PATIENT]) {
            let (k, _) = kv.map_err(backend)?;
            let position = be_u64(&k[17..]);
            if position >= end {
                continue;
            }
            let patient = Uuid::from_slice(&k[1..17]).map_err(backend)?;
            let value = tree.get(record_key(position)).map_err(backend)?;
            let ok = match value {
                Some(v) => decode(position, &v)?.record.patient_id == patient,
                None => false,
            };
            if !ok {
                return Err(StoreError::Corrupt {
                    position,
                    reason: format!("patient index entry for {patient} points at no record of that patient"),
                });
            }
        }
        return Err(StoreError::Corrupt {
            position: 0,
            reason: format!("patient index holds {indexed} entries for {end} records"),
        });
    }
    Ok(AccessVerifyReport { records: end, head_hash: previous })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn access_log_failed_flush_fails_stop() {
        let dir = tempfile::tempdir().unwrap();
        let p = Uuid::new_v4();
        {
            let log = SledAccessLog::open(dir.path()).unwrap();
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
        let log = SledAccessLog::open(dir.path()).unwrap();
        assert_eq!(log.append(vec![record(p)]).await.unwrap(), 1);
        assert_eq!(log.verify().await.unwrap().records, 2);
    }
}
