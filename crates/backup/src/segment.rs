//! Segment files: the lines of `SEGMENT_LINES` consecutive positions of one chain, appended to
//! and synced by the writer, named by the range they can hold.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::manifest::Segment;
use crate::{BackupError, SEGMENT_LINES};

/// The two chains a backup holds, and the folder each one's segments are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Events,
    Access,
}

impl Kind {
    pub fn folder(self) -> &'static str {
        match self {
            Kind::Events => "events",
            Kind::Access => "access",
        }
    }
}

/// The file (relative to the backup directory) of the segment holding `position`.
pub fn file_name(kind: Kind, position: u64) -> String {
    let first = position - position % SEGMENT_LINES;
    format!("{}/{first:020}-{:020}.ndjson", kind.folder(), first + SEGMENT_LINES - 1)
}

/// The segment being appended to: its file, positioned at the end of what the manifest counts,
/// and the running checksum of those bytes.
pub struct OpenSegment {
    pub entry: Segment,
    path: PathBuf,
    file: File,
    hasher: Sha256,
    /// Lines written since the last sync.
    dirty: bool,
}

impl OpenSegment {
    /// A new, empty segment starting at `first`; a file left there by an unfinished cycle is
    /// emptied.
    pub fn create(dir: &Path, kind: Kind, first: u64, at: DateTime<Utc>) -> Result<OpenSegment, BackupError> {
        let name = file_name(kind, first);
        let path = dir.join(&name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|e| BackupError::io(&path, e))?;
        let entry = Segment {
            file: name,
            first,
            count: 0,
            bytes: 0,
            sha256: String::new(),
            last_hash: String::new(),
            last_at: at,
        };
        Ok(OpenSegment { entry, path, file, hasher: Sha256::new(), dirty: true })
    }

    /// The manifest's last segment, to append to: its counted bytes are checked against the
    /// manifest's checksum, and anything after them is cut off.
    pub fn resume(dir: &Path, entry: &Segment) -> Result<OpenSegment, BackupError> {
        let path = dir.join(&entry.file);
        let mut file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| BackupError::io(&path, e))?;
        let mut hasher = Sha256::new();
        let mut remaining = entry.bytes;
        let mut buffer = vec![0u8; 1 << 20];
        while remaining > 0 {
            let want = remaining.min(buffer.len() as u64) as usize;
            let n = file.read(&mut buffer[..want]).map_err(|e| BackupError::io(&path, e))?;
            if n == 0 {
                return Err(BackupError::damaged(
                    &entry.file,
                    None,
                    format!("holds fewer bytes than the manifest's {}", entry.bytes),
                ));
            }
            hasher.update(&buffer[..n]);
            remaining -= n as u64;
        }
        if hex::encode(hasher.clone().finalize()) != entry.sha256 {
            return Err(BackupError::damaged(&entry.file, None, "its content differs from the manifest's checksum"));
        }
        file.set_len(entry.bytes).map_err(|e| BackupError::io(&path, e))?;
        file.seek(SeekFrom::Start(entry.bytes)).map_err(|e| BackupError::io(&path, e))?;
        Ok(OpenSegment { entry: entry.clone(), path, file, hasher, dirty: false })
    }

    pub fn is_full(&self) -> bool {
        self.entry.count >= SEGMENT_LINES
    }

    /// Appends lines already encoded (each ending in a newline): `count` of them, the last with
    /// chain hash `last_hash` and time `last_at`.
    pub fn append(
        &mut self,
        bytes: &[u8],
        count: u64,
        last_hash: String,
        last_at: DateTime<Utc>,
    ) -> Result<(), BackupError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_all(bytes).map_err(|e| BackupError::io(&self.path, e))?;
        self.hasher.update(bytes);
        self.entry.count += count;
        self.entry.bytes += bytes.len() as u64;
        self.entry.last_hash = last_hash;
        self.entry.last_at = last_at;
        self.entry.sha256 = hex::encode(self.hasher.clone().finalize());
        self.dirty = true;
        Ok(())
    }

    /// Makes what was appended durable (before the manifest counts it).
    pub fn sync(&mut self) -> Result<(), BackupError> {
        if self.dirty {
            self.file.sync_data().map_err(|e| BackupError::io(&self.path, e))?;
            self.dirty = false;
        }
        Ok(())
    }
}
