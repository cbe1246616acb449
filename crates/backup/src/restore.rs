//! Restores a store from a backup: the whole backup or its prefix up to a position or a time,
//! with the same ids, positions, times and hashes (events are appended with their recording
//! times, access records with their access times, so each chain hash comes out the same), the
//! access log up to the same moment, and the key table as last copied, without the key of any
//! patient forgotten anywhere in the backup (even after the point restored to) and without keys
//! of patients the restored prefix does not hold.
//!
//! The whole backup is verified (`verify`) before anything is written; the target is verified after.

use std::collections::{BTreeSet, HashSet};
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use forlop_store::access_log::{AccessLog, AccessRecord};
use forlop_store::key_table::{KeyEntry, KeyStore};
use forlop_store::{EventStore, ExpectedVersion, NewEvent, StreamAppend};
use uuid::Uuid;

use crate::line::{AccessLine, EventLine};
use crate::manifest::Chain;
use crate::verify::{read_keys, BackupReport};
use crate::BackupError;

/// Events appended to the target at once (one durable group).
const BATCH: usize = 4096;

/// Where a restore ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Everything the backup holds.
    Head,
    /// Events up to and including this position; access records up to its recording time.
    Position(u64),
    /// Events recorded at or before this time (the longest such prefix), access records too.
    Time(DateTime<Utc>),
}

/// The stores a restore writes: empty, or holding a prefix of this very backup (an interrupted
/// restore being completed, when `RestoreOptions::resume`).
#[derive(Clone)]
pub struct RestoreTarget {
    pub events: Arc<dyn EventStore>,
    pub access: Arc<dyn AccessLog>,
    pub keys: Arc<dyn KeyStore>,
}

/// Checks that the master key opens a key record (patient, record); Err: the reason.
pub type KeyCheck<'a> = dyn Fn(Uuid, &[u8]) -> Result<(), String> + Sync + 'a;

pub struct RestoreOptions<'a> {
    pub cut: Cut,
    /// The target may hold what an interrupted restore of this backup wrote.
    pub resume: bool,
    pub check_key: Option<&'a KeyCheck<'a>>,
}

#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub events: u64,
    /// Position and hash of the last event restored (None: no event).
    pub head: Option<(u64, String)>,
    pub access: u64,
    pub access_head: String,
    pub keys: u64,
    /// Keys of the copy left out: patients forgotten in the backup, or not in the restored prefix.
    pub keys_left_out: u64,
}

/// Refuses a target that holds events, access records or keys: a restore writes only into an
/// empty store (or completes its own interrupted run).
pub async fn refuse_non_empty(target: &RestoreTarget) -> Result<(), BackupError> {
    let (events, records) = (target.events.committed(), target.access.committed());
    if events > 0 || records > 0 || !target.keys.entries().await?.is_empty() {
        return Err(BackupError::Refused(format!(
            "the target is not empty ({events} events, {records} access records); restore only into an empty store"
        )));
    }
    Ok(())
}

/// Restores the backup in `dir`, which `verify` has just checked (its report), into `target`.
pub async fn restore(
    dir: &Path,
    verified: &BackupReport,
    target: &RestoreTarget,
    options: RestoreOptions<'_>,
) -> Result<RestoreReport, BackupError> {
    let manifest = &verified.manifest;
    if let Cut::Position(p) = options.cut {
        if p >= manifest.events.next {
            return Err(BackupError::Refused(format!(
                "--at-position {p}: the backup holds events 0..{} only",
                manifest.events.next
            )));
        }
    }
    let keys = read_keys(dir, manifest)?;
    if let Some(check) = options.check_key {
        check_key(&keys, check)?;
    }
    if !options.resume {
        refuse_non_empty(target).await?;
    }
    let (events_held, access_held) = (target.events.committed(), target.access.committed());

    // Events: read and parsed on a thread of their own, a few batches ahead of the appends.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Batch, BackupError>>(4);
    let reader = {
        let (dir, chain, cut) = (dir.to_owned(), manifest.events.clone(), options.cut);
        std::thread::Builder::new()
            .name("forlop-restore-read".into())
            .spawn(move || read_events(&dir, &chain, cut, events_held, &tx))
            .map_err(|e| BackupError::io(Path::new("a restore thread"), e))?
    };
    let (mut patients, mut restored, mut head, mut cut_time) = (HashSet::new(), 0u64, None, None);
    while let Some(batch) = rx.recv().await {
        let batch = batch?;
        patients.extend(batch.patients);
        restored += batch.lines;
        if batch.head.is_some() {
            (head, cut_time) = (batch.head, batch.last_at);
        }
        if !batch.parts.is_empty() {
            target.events.append_all(batch.parts).await?;
            #[cfg(debug_assertions)]
            forlop_store::faults::restore_may_abort(restored - events_held);
        }
    }
    let _ = reader.join();
    if events_held > restored {
        return Err(BackupError::Refused(format!(
            "the target holds {events_held} events, more than the {restored} this restore ends with"
        )));
    }
    check_event_head(target, head.as_ref()).await?;

    // Access records, up to the moment the events end (all of them for a whole restore).
    let access_cut = match options.cut {
        Cut::Head => None,
        Cut::Position(_) => Some(cut_time.unwrap_or(DateTime::<Utc>::MIN_UTC)),
        Cut::Time(t) => Some(t),
    };
    let (mut access_restored, mut access_head) = (0u64, forlop_store::to_hex(&forlop_store::GENESIS_HASH));
    let mut records: Vec<AccessRecord> = Vec::new();
    let mut lines = Lines::new(dir, &manifest.access);
    while let Some((position, bytes)) = lines.next_line()? {
        let line: AccessLine = serde_json::from_slice(&bytes)
            .map_err(|e| BackupError::damaged("an access segment", Some(position), e.to_string()))?;
        if access_cut.is_some_and(|t| line.record.at > t) {
            break;
        }
        access_restored += 1;
        access_head = line.hash;
        if position < access_held {
            continue;
        }
        records.push(line.record);
        if records.len() == 1024 {
            target.access.append(std::mem::take(&mut records)).await?;
        }
    }
    if !records.is_empty() {
        target.access.append(records).await?;
    }
    if access_held > access_restored || forlop_store::to_hex(&target.access.head_hash()) != access_head {
        return Err(BackupError::Refused(
            "the target's access log does not end where the backup's does at this point; it holds another store's records"
                .into(),
        ));
    }

    // Keys: as last copied, minus the forgotten and those of patients after the cut.
    let forgotten: BTreeSet<Uuid> = manifest.forgotten.iter().copied().collect();
    let total = keys.len() as u64;
    let kept: Vec<KeyEntry> =
        keys.into_iter().filter(|(p, _, _)| patients.contains(p) && !forgotten.contains(p)).collect();
    let kept_count = kept.len() as u64;
    let generation = target.keys.generation().await?;
    target.keys.replace_all_at(generation, kept).await?;

    // The target, checked as `forlop verify` would.
    let verified = target.events.verify().await?;
    if verified.events != restored {
        return Err(BackupError::Refused(format!(
            "the target verifies with {} events, not {restored}",
            verified.events
        )));
    }
    let access = target.access.verify().await?;
    if access.records != access_restored {
        return Err(BackupError::Refused(format!(
            "the target's access log verifies with {} records, not {access_restored}",
            access.records
        )));
    }
    Ok(RestoreReport {
        events: restored,
        head,
        access: access_restored,
        access_head,
        keys: kept_count,
        keys_left_out: total - kept_count,
    })
}

/// Checks the master key against the backup's key copy (`check` on one of its records), so a
/// restore can be refused before its target is created.
pub fn check_master_key(dir: &Path, verified: &BackupReport, check: &KeyCheck<'_>) -> Result<(), BackupError> {
    check_key(&read_keys(dir, &verified.manifest)?, check)
}

fn check_key(keys: &[KeyEntry], check: &KeyCheck<'_>) -> Result<(), BackupError> {
    match keys.first() {
        Some((patient, record, _)) => check(*patient, record).map_err(BackupError::Refused),
        None => Ok(()),
    }
}

/// Up to `BATCH` events to append, and what the lines they came from tell.
#[derive(Default)]
struct Batch {
    parts: Vec<StreamAppend>,
    /// Lines read (including those the target already held).
    lines: u64,
    patients: Vec<Uuid>,
    /// Position and hash of the last line, and its recording time.
    head: Option<(u64, String)>,
    last_at: Option<DateTime<Utc>>,
}

/// Reads the events up to `cut` into batches; lines below `held` are counted, not appended.
fn read_events(
    dir: &Path,
    chain: &Chain,
    cut: Cut,
    held: u64,
    tx: &tokio::sync::mpsc::Sender<Result<Batch, BackupError>>,
) {
    let mut lines = Lines::new(dir, chain);
    let (mut batch, mut in_batch) = (Batch::default(), 0usize);
    loop {
        let next = match lines.next_line() {
            Ok(next) => next,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let Some((position, bytes)) = next else { break };
        let line: EventLine = match serde_json::from_slice(&bytes) {
            Ok(line) => line,
            Err(e) => {
                let _ = tx.blocking_send(Err(BackupError::damaged("an event segment", Some(position), e.to_string())));
                return;
            }
        };
        let past = match cut {
            Cut::Head => false,
            Cut::Position(p) => position > p,
            Cut::Time(t) => line.recorded_at > t,
        };
        if past {
            break;
        }
        if let Some(forlop_domain::StreamRef::Patient(p)) = forlop_domain::StreamRef::parse(&line.stream) {
            batch.patients.push(p);
        }
        batch.lines += 1;
        batch.last_at = Some(line.recorded_at);
        if position >= held {
            push(&mut batch.parts, &line.stream, line.to_new_event());
            in_batch += 1;
        }
        batch.head = Some((position, line.hash));
        if in_batch == BATCH {
            if tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                return;
            }
            in_batch = 0;
        }
    }
    let _ = tx.blocking_send(Ok(batch));
}

/// Adds an event to the batch, to the last part when it is of the same stream.
fn push(batch: &mut Vec<StreamAppend>, stream: &str, event: NewEvent) {
    match batch.last_mut() {
        Some(part) if part.stream == stream => part.events.push(event),
        _ => {
            batch.push(StreamAppend { stream: stream.to_owned(), expected: ExpectedVersion::Any, events: vec![event] })
        }
    }
}

async fn check_event_head(target: &RestoreTarget, head: Option<&(u64, String)>) -> Result<(), BackupError> {
    let held = target.events.committed();
    let found = match held.checked_sub(1) {
        None => None,
        Some(last) => {
            target.events.read_all(last, 1).await?.first().map(|e| (e.position, forlop_store::to_hex(&e.hash)))
        }
    };
    if found.as_ref() != head {
        return Err(BackupError::Refused(
            "the target's log does not end where the backup's does at this point; it holds another log's events".into(),
        ));
    }
    Ok(())
}

/// The lines of one chain's segments, in order, each with its position (a verified backup).
struct Lines<'a> {
    dir: &'a Path,
    chain: &'a Chain,
    segment: usize,
    reader: Option<(std::io::BufReader<std::io::Take<std::fs::File>>, u64, u64)>,
}

impl<'a> Lines<'a> {
    fn new(dir: &'a Path, chain: &'a Chain) -> Lines<'a> {
        Lines { dir, chain, segment: 0, reader: None }
    }

    fn next_line(&mut self) -> Result<Option<(u64, Vec<u8>)>, BackupError> {
        loop {
            if let Some((reader, position, end)) = &mut self.reader {
                if *position < *end {
                    let mut line = Vec::new();
                    reader.read_until(b'\n', &mut line).map_err(|e| BackupError::io(self.dir, e))?;
                    line.pop();
                    *position += 1;
                    return Ok(Some((*position - 1, line)));
                }
            }
            let Some(segment) = self.chain.segments.get(self.segment) else { return Ok(None) };
            self.segment += 1;
            let path = self.dir.join(&segment.file);
            let file = std::fs::File::open(&path).map_err(|e| BackupError::io(&path, e))?;
            let reader = std::io::BufReader::with_capacity(1 << 20, std::io::Read::take(file, segment.bytes));
            self.reader = Some((reader, segment.first, segment.first + segment.count));
        }
    }
}
