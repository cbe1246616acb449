//! `manifest.json`: what a backup directory holds, replaced atomically (written beside, synced,
//! renamed over, directory synced) after the files it names are synced. Whatever a segment file
//! holds beyond the bytes its manifest entry counts was written by a cycle that did not finish,
//! and is cut off when the backup resumes; `verify` and `restore` never read it.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::BackupError;

pub const MANIFEST: &str = "manifest.json";
/// Bumped when the layout changes; a backup of a newer format is refused, not misread.
pub const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The events backed up: positions 0..next.
    pub events: Chain,
    /// The access records backed up: positions 0..next.
    pub access: Chain,
    /// The key table as last copied (none until a cycle found keys).
    pub keys: Option<KeySnapshot>,
    /// Patients whose `PatientForgotten` is in the backed-up events, in order: no key snapshot
    /// holds their keys, and no restore brings one back.
    pub forgotten: Vec<Uuid>,
    pub updated_at: DateTime<Utc>,
}

/// One hash-chained log, as segment files of `SEGMENT_LINES` positions each.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Chain {
    pub next: u64,
    /// Hash of the record at `next - 1` (the chain's start, all zeros, when empty).
    pub head_hash: String,
    pub segments: Vec<Segment>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Segment {
    /// Relative to the backup directory, e.g. `events/00000000000000000000-00000000000000065535.ndjson`.
    pub file: String,
    pub first: u64,
    pub count: u64,
    pub bytes: u64,
    /// SHA-256 of the segment's first `bytes` bytes.
    pub sha256: String,
    /// Chain hash of its last line.
    pub last_hash: String,
    /// Time of its last line (recording time of events, access time of records), for restores
    /// to a point in time.
    pub last_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeySnapshot {
    pub file: String,
    /// The key table's generation when it was read.
    pub generation: u64,
    /// Events backed up when it was read: every patient registered before holds a key in it.
    pub events_next: u64,
    pub count: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn empty() -> Manifest {
        let genesis = forlop_store::to_hex(&forlop_store::GENESIS_HASH);
        Manifest {
            format: FORMAT,
            events: Chain { head_hash: genesis.clone(), ..Chain::default() },
            access: Chain { head_hash: genesis, ..Chain::default() },
            keys: None,
            forgotten: Vec::new(),
            updated_at: Utc::now(),
        }
    }

    /// The manifest in `dir`, or None when there is none (a new backup directory).
    pub fn load(dir: &Path) -> Result<Option<Manifest>, BackupError> {
        let path = dir.join(MANIFEST);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BackupError::io(&path, e)),
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| BackupError::damaged(MANIFEST, None, format!("not a forlop backup manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(BackupError::damaged(
                MANIFEST,
                None,
                format!("backup format {} (this forlop reads {FORMAT})", manifest.format),
            ));
        }
        Ok(Some(manifest))
    }

    /// Replaces the manifest atomically; the files it names must already be synced.
    pub fn store(&self, dir: &Path) -> Result<(), BackupError> {
        let bytes = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        write_atomically(dir, MANIFEST, &bytes)
    }
}

/// Writes `name` in `dir` so that a reader sees the old file or the whole new one: written to a
/// temporary file, synced, renamed over, and the directory synced.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), BackupError> {
    let target = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(|e| BackupError::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| BackupError::io(&tmp, e))?;
    file.sync_all().map_err(|e| BackupError::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, &target).map_err(|e| BackupError::io(&target, e))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| BackupError::io(dir, e))
}
