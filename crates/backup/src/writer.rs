//! Brings a backup directory up to a store: one `cycle` copies what was committed since the last
//! (events, then access records, then the key table if it changed), syncs the files, and only
//! then replaces the manifest, so an interrupted cycle leaves the previous backup whole.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use forlop_store::access_log::AccessFilter;
use forlop_store::key_table::KeyEntry;
use uuid::Uuid;

use crate::line::{AccessLine, EventLine};
use crate::manifest::{sync_dir, write_atomically, Chain, KeySnapshot, Manifest};
use crate::segment::{Kind, OpenSegment};
use crate::{BackupError, Sources};

/// Events or access records read from the store at once.
const PAGE: usize = 4096;
/// Most events (and access records) one cycle copies, so a long catch-up records its progress.
const MOST_PER_CYCLE: u64 = 65_536;
/// The key table is copied whole; while only registrations change it, at most this often (a
/// patient registered since has their events in the backup and their key in the next copy). An
/// erasure is copied at once.
const KEY_COPY_INTERVAL: Duration = Duration::from_secs(1);
/// The event type that destroys a patient's data key.
const FORGOTTEN: &str = "PatientForgotten";

/// What one cycle copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleReport {
    pub events: u64,
    pub access: u64,
    pub keys_copied: bool,
    /// Positions backed up after the cycle (the next event's and access record's).
    pub events_next: u64,
    pub access_next: u64,
}

/// A backup directory opened for writing.
pub struct BackupWriter {
    dir: PathBuf,
    manifest: Manifest,
    events: Option<OpenSegment>,
    access: Option<OpenSegment>,
    forgotten: BTreeSet<Uuid>,
    keys_copied_at: Option<Instant>,
    new_files: bool,
}

impl BackupWriter {
    /// Opens (or starts) the backup in `dir` for these sources: refused when the directory holds
    /// a backup of another log, or one ahead of this store.
    pub async fn open(dir: &Path, sources: &Sources) -> Result<BackupWriter, BackupError> {
        for sub in ["", "events", "access", "keys"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| BackupError::io(&dir.join(sub), e))?;
        }
        let manifest = Manifest::load(dir)?.unwrap_or_else(Manifest::empty);
        check_same_events(&manifest.events, sources).await?;
        check_same_access(&manifest.access, sources).await?;
        let resume = |chain: &Chain| match chain.segments.last() {
            Some(last) if last.count < crate::SEGMENT_LINES => OpenSegment::resume(dir, last).map(Some),
            _ => Ok(None),
        };
        let events = resume(&manifest.events)?;
        let access = resume(&manifest.access)?;
        let forgotten = manifest.forgotten.iter().copied().collect();
        Ok(BackupWriter {
            dir: dir.to_owned(),
            manifest,
            events,
            access,
            forgotten,
            keys_copied_at: None,
            new_files: false,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Copies what the sources committed since the last cycle (at most `MOST_PER_CYCLE` events
    /// and access records) and replaces the manifest.
    pub async fn cycle(&mut self, sources: &Sources) -> Result<CycleReport, BackupError> {
        let forgotten_before = self.forgotten.len();
        let events = self.copy_events(sources).await?;
        let access = self.copy_access(sources).await?;
        for segment in [&mut self.events, &mut self.access].into_iter().flatten() {
            segment.sync()?;
        }
        let erased = self.forgotten.len() > forgotten_before;
        let keys_copied = self.copy_keys(sources, erased).await?;
        if self.new_files {
            for folder in ["events", "access", "keys"] {
                sync_dir(&self.dir.join(folder))?;
            }
            self.new_files = false;
        }
        if events > 0 || access > 0 || keys_copied {
            self.manifest.forgotten = self.forgotten.iter().copied().collect();
            self.manifest.updated_at = Utc::now();
            self.manifest.store(&self.dir)?;
        }
        if keys_copied {
            // Only once the new manifest names the new copy: the old one may hold a destroyed key.
            self.remove_other_key_copies()?;
        }
        Ok(CycleReport {
            events,
            access,
            keys_copied,
            events_next: self.manifest.events.next,
            access_next: self.manifest.access.next,
        })
    }

    /// Cycles until the backup holds everything the sources had committed when it was called.
    pub async fn catch_up(&mut self, sources: &Sources) -> Result<CycleReport, BackupError> {
        let (events_target, access_target) = (sources.events.committed(), sources.access.committed());
        let mut total = CycleReport::default();
        loop {
            let r = self.cycle(sources).await?;
            total.events += r.events;
            total.access += r.access;
            total.keys_copied |= r.keys_copied;
            total.events_next = r.events_next;
            total.access_next = r.access_next;
            if r.events_next >= events_target && r.access_next >= access_target {
                return Ok(total);
            }
        }
    }

    async fn copy_events(&mut self, sources: &Sources) -> Result<u64, BackupError> {
        let until = sources.events.committed().min(self.manifest.events.next + MOST_PER_CYCLE);
        let mut copied = 0;
        let mut buffer = Vec::new();
        while self.manifest.events.next < until {
            let next = self.manifest.events.next;
            let in_segment = crate::SEGMENT_LINES - next % crate::SEGMENT_LINES;
            let want = (until - next).min(in_segment).min(PAGE as u64) as usize;
            let page = sources.events.read_all(next, want).await?;
            let Some(last) = page.last() else { break };
            let (last_hash, last_at, count) = (forlop_store::to_hex(&last.hash), last.recorded_at, page.len() as u64);
            if page[0].position != next || last.position != next + count - 1 {
                return Err(BackupError::Refused(format!("the store answered positions out of order at {next}")));
            }
            buffer.clear();
            for event in page {
                if event.event_type == FORGOTTEN {
                    if let Some(forlop_domain::StreamRef::Patient(patient)) =
                        forlop_domain::StreamRef::parse(&event.stream)
                    {
                        self.forgotten.insert(patient);
                    }
                }
                let line = EventLine::from_event(event)
                    .map_err(|reason| BackupError::damaged("the event log", None, reason))?;
                serde_json::to_writer(&mut buffer, &line).expect("an event line always serializes");
                buffer.push(b'\n');
            }
            let segment = self.segment(Kind::Events, next, last_at)?;
            segment.append(&buffer, count, last_hash.clone(), last_at)?;
            let entry = segment.entry.clone();
            record(&mut self.manifest.events, entry, last_hash);
            copied += count;
        }
        Ok(copied)
    }

    async fn copy_access(&mut self, sources: &Sources) -> Result<u64, BackupError> {
        let until = sources.access.committed().min(self.manifest.access.next + MOST_PER_CYCLE);
        let mut copied = 0;
        let mut buffer = Vec::new();
        while self.manifest.access.next < until {
            let next = self.manifest.access.next;
            let in_segment = crate::SEGMENT_LINES - next % crate::SEGMENT_LINES;
            let want = (until - next).min(in_segment).min(PAGE as u64) as usize;
            let after = next.checked_sub(1);
            let page = sources.access.query(&AccessFilter::default(), after, want).await?;
            let Some(last) = page.last() else { break };
            let (last_hash, last_at, count) = (forlop_store::to_hex(&last.hash), last.record.at, page.len() as u64);
            if page[0].position != next || last.position != next + count - 1 {
                return Err(BackupError::Refused(format!("the access log answered positions out of order at {next}")));
            }
            buffer.clear();
            for stored in page {
                serde_json::to_writer(&mut buffer, &AccessLine::from_stored(stored))
                    .expect("an access line always serializes");
                buffer.push(b'\n');
            }
            let segment = self.segment(Kind::Access, next, last_at)?;
            segment.append(&buffer, count, last_hash.clone(), last_at)?;
            let entry = segment.entry.clone();
            record(&mut self.manifest.access, entry, last_hash);
            copied += count;
        }
        Ok(copied)
    }

    /// The open segment of `kind`, starting a new one at `next` when there is none or it is full.
    fn segment(&mut self, kind: Kind, next: u64, at: chrono::DateTime<Utc>) -> Result<&mut OpenSegment, BackupError> {
        let slot = match kind {
            Kind::Events => &mut self.events,
            Kind::Access => &mut self.access,
        };
        if slot.as_ref().is_none_or(OpenSegment::is_full) {
            if let Some(mut full) = slot.take() {
                full.sync()?;
            }
            *slot = Some(OpenSegment::create(&self.dir, kind, next, at)?);
            self.new_files = true;
        }
        Ok(slot.as_mut().expect("a segment was just opened"))
    }

    /// Copies the key table when it changed: at once after an erasure, else at most every
    /// `KEY_COPY_INTERVAL`. The copy never holds the key of a patient forgotten in the events
    /// backed up, even when the store had not destroyed it yet.
    async fn copy_keys(&mut self, sources: &Sources, erased: bool) -> Result<bool, BackupError> {
        let generation = sources.keys.generation().await?;
        let copied = self.manifest.keys.as_ref().map(|k| k.generation);
        let due = self.keys_copied_at.is_none_or(|at| at.elapsed() >= KEY_COPY_INTERVAL);
        if !(erased || (copied != Some(generation) && due)) {
            return Ok(false);
        }
        let entries: Vec<KeyEntry> = sources
            .keys
            .entries()
            .await?
            .into_iter()
            .filter(|(patient, _, _)| !self.forgotten.contains(patient))
            .collect();
        if copied.is_none() && entries.is_empty() && !erased {
            return Ok(false);
        }
        let bytes = postcard::to_stdvec(&entries).expect("key entries always serialize");
        let name = format!("keys/{generation:020}-{:020}.bin", self.manifest.events.next);
        write_atomically(&self.dir, &name, &bytes)?;
        self.new_files = true;
        self.manifest.keys = Some(KeySnapshot {
            file: name,
            generation,
            events_next: self.manifest.events.next,
            count: entries.len() as u64,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        });
        self.keys_copied_at = Some(Instant::now());
        Ok(true)
    }

    /// Deletes key copies the manifest does not name (the one it named before, and any left by
    /// an interrupted cycle).
    fn remove_other_key_copies(&self) -> Result<(), BackupError> {
        let folder = self.dir.join("keys");
        let keep = self.manifest.keys.as_ref().map(|k| k.file.trim_start_matches("keys/").to_owned());
        let entries = std::fs::read_dir(&folder).map_err(|e| BackupError::io(&folder, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| BackupError::io(&folder, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if Some(&name) != keep.as_ref() {
                std::fs::remove_file(entry.path()).map_err(|e| BackupError::io(&entry.path(), e))?;
            }
        }
        sync_dir(&folder)
    }
}

/// Puts the open segment's entry into the chain (replacing its own earlier entry) and moves the
/// chain's head.
fn record(chain: &mut Chain, entry: crate::manifest::Segment, head_hash: String) {
    match chain.segments.last_mut() {
        Some(last) if last.first == entry.first => *last = entry.clone(),
        _ => chain.segments.push(entry.clone()),
    }
    chain.next = entry.first + entry.count;
    chain.head_hash = head_hash;
}

async fn check_same_events(chain: &Chain, sources: &Sources) -> Result<(), BackupError> {
    let Some(last) = chain.next.checked_sub(1) else { return Ok(()) };
    let held = sources.events.committed();
    if held < chain.next {
        return Err(BackupError::Refused(format!(
            "the backup holds {} events and the log only {held}: it is a backup of another log (or of this one \
             before it was restored to an earlier point); back up into a new directory",
            chain.next
        )));
    }
    let event = sources.events.read_all(last, 1).await?;
    let found = event.first().map(|e| forlop_store::to_hex(&e.hash)).unwrap_or_default();
    if found != chain.head_hash {
        return Err(BackupError::Refused(format!(
            "the backup's event {last} has another hash than the log's: it is a backup of another log; \
             back up into a new directory"
        )));
    }
    Ok(())
}

async fn check_same_access(chain: &Chain, sources: &Sources) -> Result<(), BackupError> {
    let Some(last) = chain.next.checked_sub(1) else { return Ok(()) };
    let held = sources.access.committed();
    let mismatch = || {
        BackupError::Refused(format!(
            "the backup's access log ({} records) is not a prefix of this access log ({held} records): it is a \
             backup of another store; back up into a new directory",
            chain.next
        ))
    };
    if held < chain.next {
        return Err(mismatch());
    }
    let record = sources.access.query(&AccessFilter::default(), last.checked_sub(1), 1).await?;
    match record.first() {
        Some(r) if r.position == last && forlop_store::to_hex(&r.hash) == chain.head_hash => Ok(()),
        _ => Err(mismatch()),
    }
}
