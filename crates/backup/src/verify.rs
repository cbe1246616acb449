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

/// Verifies the backup in `dir`; Err names the first bad file (and position).
pub fn verify(dir: &Path) -> Result<BackupReport, BackupError> {
    let manifest = Manifest::load(dir)?.ok_or_else(|| {
        BackupError::Refused(format!("{} holds no manifest.json: it is not a forlop backup", dir.display()))
    })?;
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut forgotten = BTreeSet::new();
    verify_chain(dir, Kind::Events, &manifest.events, |position, line, previous| {
        let line: EventLine = serde_json::from_slice(line).map_err(|e| format!("not an event line: {e}"))?;
        if line.position != position {
            return Err(format!("line claims position {}", line.position));
        }
        let expected_version = versions.get(&line.stream).map_or(0, |v| v + 1);
        if line.version != expected_version {
            return Err(format!("{} version {} where {expected_version} was expected", line.stream, line.version));
        }
        let hash = forlop_store::event_hash(previous, &line.to_recorded()).map_err(|e| e.to_string())?;
        if forlop_store::to_hex(&hash) != line.hash.to_ascii_lowercase() {
            return Err("the hash does not continue the chain".into());
        }
        if line.event_type == "PatientForgotten" {
            if let Some(forlop_domain::StreamRef::Patient(p)) = forlop_domain::StreamRef::parse(&line.stream) {
                forgotten.insert(p);
            }
        }
        versions.insert(line.stream, line.version);
        Ok(hash)
    })?;
    verify_chain(dir, Kind::Access, &manifest.access, |position, line, previous| {
        let line: AccessLine = serde_json::from_slice(line).map_err(|e| format!("not an access line: {e}"))?;
        if line.position != position {
            return Err(format!("line claims position {}", line.position));
        }
        let hash = record_hash(previous, position, &line.record).map_err(|e| e.to_string())?;
        if forlop_store::to_hex(&hash) != line.hash.to_ascii_lowercase() {
            return Err("the hash does not continue the chain".into());
        }
        Ok(hash)
    })?;
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

/// Walks one chain's segments in order, handing each line to `check` with its position and the
/// previous hash; `check` returns the line's hash.
fn verify_chain(
    dir: &Path,
    kind: Kind,
    chain: &Chain,
    mut check: impl FnMut(u64, &[u8], &Hash) -> Result<Hash, String>,
) -> Result<(), BackupError> {
    let mut previous = forlop_store::GENESIS_HASH;
    let mut next = 0u64;
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
        if (full && segment.count != SEGMENT_LINES) || segment.count > SEGMENT_LINES {
            return Err(BackupError::damaged(&segment.file, None, format!("lists {} lines", segment.count)));
        }
        previous = verify_segment(dir, segment, previous, &mut check)?;
        next = segment.first + segment.count;
    }
    if next != chain.next || forlop_store::to_hex(&previous) != chain.head_hash {
        return Err(BackupError::damaged(
            crate::manifest::MANIFEST,
            Some(chain.next),
            format!("its {} head does not match the last segment's", kind.folder()),
        ));
    }
    Ok(())
}

fn verify_segment(
    dir: &Path,
    segment: &Segment,
    mut previous: Hash,
    check: &mut impl FnMut(u64, &[u8], &Hash) -> Result<Hash, String>,
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
        previous = check(position, &line[..line.len() - 1], &previous)
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
