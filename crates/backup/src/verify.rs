//! Checks a backup directory without a store: the manifest, every segment of both chains (each
//! line at its position, every hash recomputed, stream versions without gaps, the checksum of
//! the counted bytes), and the key copy. Names the first bad file and position.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, Read};
use std::path::Path;

use forlop_store::access_log::record_hash;
use forlop_store::Hash;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::line::{AccessLine, EventLine};
use crate::manifest::{Chain, Manifest, Segment};
use crate::segment::{file_name, Kind};
use crate::{BackupError, SEGMENT_LINES};

/// What a verified backup holds.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub manifest: Manifest,
    pub events: u64,
    pub events_head: String,
    pub access: u64,
    pub access_head: String,
    pub keys: u64,
    pub forgotten: u64,
}

/// Verifies the backup in `dir`; Err names the first bad file (and position). Segments are
/// checked on every core at once: each starts from the hash its predecessor's manifest entry
/// ends with, which that predecessor's own check confirms.
pub fn verify(dir: &Path) -> Result<BackupReport, BackupError> {
    let manifest = Manifest::load(dir)?.ok_or_else(|| {
        BackupError::Refused(format!("{} holds no manifest.json: it is not a forlop backup", dir.display()))
    })?;
    let events = verify_chain(dir, Kind::Events, &manifest.events, check_event)?;
    // Each stream's versions run on without a gap from one segment into the next.
    let (mut versions, mut forgotten) = (HashMap::<String, u64>::new(), BTreeSet::new());
    for (segment, seen) in manifest.events.segments.iter().zip(events) {
        for (stream, (first, last)) in seen.streams {
            let expected = versions.get(&stream).map_or(0, |v| v + 1);
            if first != expected {
                return Err(BackupError::damaged(
                    &segment.file,
                    None,
                    format!("{stream} starts at version {first} where {expected} was expected"),
                ));
            }
            versions.insert(stream, last);
        }
        forgotten.extend(seen.forgotten);
    }
    verify_chain(dir, Kind::Access, &manifest.access, check_access)?;
    let listed: BTreeSet<Uuid> = manifest.forgotten.iter().copied().collect();
    if listed != forgotten {
        return Err(BackupError::damaged(
            crate::manifest::MANIFEST,
            None,
            "its list of forgotten patients differs from the PatientForgotten events backed up",
        ));
    }
    let keys = match &manifest.keys {
        None => 0,
        Some(_) => read_keys(dir, &manifest)?.len() as u64,
    };
    Ok(BackupReport {
        events: manifest.events.next,
        events_head: manifest.events.head_hash.clone(),
        access: manifest.access.next,
        access_head: manifest.access.head_hash.clone(),
        keys,
        forgotten: forgotten.len() as u64,
        manifest,
    })
}

/// What one event segment holds: each stream's first and last version in it, and the patients
/// forgotten in it.
#[derive(Default)]
struct EventsSeen {
    streams: HashMap<String, (u64, u64)>,
    forgotten: Vec<Uuid>,
}

fn check_event(seen: &mut EventsSeen, position: u64, line: &[u8], previous: &Hash) -> Result<Hash, String> {
    let line: EventLine = serde_json::from_slice(line).map_err(|e| format!("not an event line: {e}"))?;
    if line.position != position {
        return Err(format!("line claims position {}", line.position));
    }
    let hash = forlop_store::event_hash(previous, &line.to_recorded()).map_err(|e| e.to_string())?;
    if forlop_store::to_hex(&hash) != line.hash.to_ascii_lowercase() {
        return Err("the hash does not continue the chain".into());
    }
    if line.event_type == "PatientForgotten" {
        if let Some(forlop_domain::StreamRef::Patient(p)) = forlop_domain::StreamRef::parse(&line.stream) {
            seen.forgotten.push(p);
        }
    }
    match seen.streams.get_mut(&line.stream) {
        Some((_, last)) if line.version == *last + 1 => *last = line.version,
        Some((_, last)) => {
            return Err(format!("{} version {} where {} was expected", line.stream, line.version, *last + 1))
        }
        None => {
            seen.streams.insert(line.stream, (line.version, line.version));
        }
    }
    Ok(hash)
}

fn check_access(_: &mut (), position: u64, line: &[u8], previous: &Hash) -> Result<Hash, String> {
    let line: AccessLine = serde_json::from_slice(line).map_err(|e| format!("not an access line: {e}"))?;
    if line.position != position {
        return Err(format!("line claims position {}", line.position));
    }
    let hash = record_hash(previous, position, &line.record).map_err(|e| e.to_string())?;
    if forlop_store::to_hex(&hash) != line.hash.to_ascii_lowercase() {
        return Err("the hash does not continue the chain".into());
    }
    Ok(hash)
}

/// The key copy the manifest names, checked against its checksum and count.
pub(crate) fn read_keys(
    dir: &Path,
    manifest: &Manifest,
) -> Result<Vec<forlop_store::key_table::KeyEntry>, BackupError> {
    let Some(snapshot) = &manifest.keys else { return Ok(Vec::new()) };
    // Only a file of the backup's own `keys/` folder, as the writer names them.
    let name_ok = snapshot.file.strip_prefix("keys/").is_some_and(|n| {
        n.len() == 45 && n.ends_with(".bin") && n[..41].bytes().all(|b| b.is_ascii_digit() || b == b'-')
    });
    if !name_ok {
        return Err(BackupError::damaged(
            crate::manifest::MANIFEST,
            None,
            format!("names a key copy outside the backup: {:?}", snapshot.file),
        ));
    }
    let path = dir.join(&snapshot.file);
    let bytes = std::fs::read(&path).map_err(|e| BackupError::io(&path, e))?;
    if hex::encode(Sha256::digest(&bytes)) != snapshot.sha256 {
        return Err(BackupError::damaged(&snapshot.file, None, "its content differs from the manifest's checksum"));
    }
    let entries: Vec<forlop_store::key_table::KeyEntry> = postcard::from_bytes(&bytes)
        .map_err(|e| BackupError::damaged(&snapshot.file, None, format!("not a key copy: {e}")))?;
    if entries.len() as u64 != snapshot.count {
        return Err(BackupError::damaged(&snapshot.file, None, "holds another number of keys than the manifest says"));
    }
    Ok(entries)
}

/// Checks one chain's segments, on every core, handing each line to `check` with its position
/// and the previous hash (`check` returns the line's hash); the first bad segment in order is
/// the error. Returns what `check` gathered from each segment, in order.
fn verify_chain<S: Default + Send>(
    dir: &Path,
    kind: Kind,
    chain: &Chain,
    check: LineCheck<S>,
) -> Result<Vec<S>, BackupError> {
    let mut starts = Vec::with_capacity(chain.segments.len());
    let mut previous = forlop_store::GENESIS_HASH;
    for (i, segment) in chain.segments.iter().enumerate() {
        let expected_first = i as u64 * SEGMENT_LINES;
        if segment.first != expected_first || segment.file != file_name(kind, expected_first) {
            return Err(BackupError::damaged(
                crate::manifest::MANIFEST,
                Some(expected_first),
                format!("segment {} is listed where {} belongs", segment.file, file_name(kind, expected_first)),
            ));
        }
        let full = i + 1 < chain.segments.len();
        if (full && segment.count != SEGMENT_LINES) || segment.count > SEGMENT_LINES || segment.count == 0 {
            return Err(BackupError::damaged(&segment.file, None, format!("lists {} lines", segment.count)));
        }
        starts.push(previous);
        previous = parse_hash(&segment.last_hash).ok_or_else(|| {
            BackupError::damaged(crate::manifest::MANIFEST, None, "a segment's last hash is not a hash")
        })?;
    }
    let next = chain.segments.last().map_or(0, |s| s.first + s.count);
    if next != chain.next || forlop_store::to_hex(&previous) != chain.head_hash {
        return Err(BackupError::damaged(
            crate::manifest::MANIFEST,
            Some(chain.next),
            format!("its {} head does not match the last segment's", kind.folder()),
        ));
    }
    let results: Vec<std::sync::Mutex<Option<Result<S, BackupError>>>> =
        chain.segments.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let taken = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(chain.segments.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(segment) = chain.segments.get(i) else { return };
                let mut seen = S::default();
                let outcome = verify_segment(dir, segment, starts[i], &mut seen, check);
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome.map(|_| seen));
            });
        }
    });
    results
        .into_iter()
        .map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner()).expect("every segment was checked"))
        .collect()
}

fn parse_hash(hex_text: &str) -> Option<Hash> {
    hex::decode(hex_text).ok()?.try_into().ok()
}

/// A chain's check of one line: its position, bytes and the previous hash, gathering into `S`.
type LineCheck<S> = fn(&mut S, u64, &[u8], &Hash) -> Result<Hash, String>;

fn verify_segment<S>(
    dir: &Path,
    segment: &Segment,
    mut previous: Hash,
    seen: &mut S,
    check: LineCheck<S>,
) -> Result<Hash, BackupError> {
    let path = dir.join(&segment.file);
    let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BackupError::damaged(&segment.file, Some(segment.first), "the file is missing"),
        _ => BackupError::io(&path, e),
    })?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file.take(segment.bytes));
    let mut hasher = Sha256::new();
    let mut line = Vec::new();
    let (mut position, mut read) = (segment.first, 0u64);
    let end = segment.first + segment.count;
    while position < end {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| BackupError::io(&path, e))?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Err(BackupError::damaged(
                &segment.file,
                Some(position),
                format!("the file ends after {read} of the manifest's {} bytes", segment.bytes),
            ));
        }
        read += n as u64;
        hasher.update(&line);
        previous = check(seen, position, &line[..line.len() - 1], &previous)
            .map_err(|reason| BackupError::damaged(&segment.file, Some(position), reason))?;
        position += 1;
    }
    if read != segment.bytes {
        return Err(BackupError::damaged(&segment.file, Some(end), "holds more counted bytes than lines"));
    }
    if hex::encode(hasher.finalize()) != segment.sha256 {
        return Err(BackupError::damaged(&segment.file, None, "its content differs from the manifest's checksum"));
    }
    if segment.count > 0 && forlop_store::to_hex(&previous) != segment.last_hash {
        return Err(BackupError::damaged(&segment.file, Some(end - 1), "its last hash differs from the manifest's"));
    }
    Ok(previous)
}
