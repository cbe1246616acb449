//! Backups of everything forlop keeps: the event log, the access log and the key table, as
//! append-only segment files and an atomically replaced manifest in a directory of their own
//! (another disk, a mounted share), so that a copy of that directory taken at any moment (rsync,
//! an object store) is a usable backup.
//!
//! - `BackupWriter` brings a backup directory up to a running or stopped store, incrementally;
//!   `continuous` runs it beside `serve`.
//! - `verify` checks a backup directory without a store: both hash chains, every position, the
//!   manifest's checksums, and the key snapshot.
//! - `restore` rebuilds an empty store from a backup, whole or up to a position or a time, with
//!   the same positions and hashes, and without the key of any patient the backup knows as
//!   forgotten.
//!
//! Layout of a backup directory:
//! - `manifest.json` (`manifest::Manifest`): what the directory holds;
//! - `events/<first>-<last>.ndjson`: events in the export format, `SEGMENT_LINES` positions a file;
//! - `access/<first>-<last>.ndjson`: access records with their chain hashes;
//! - `keys/<generation>.bin`: the key table (wrapped data keys and blind indexes) as last copied.
//!
//! The master key is never in a backup: the key snapshot holds data keys only wrapped by it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use forlop_store::access_log::AccessLog;
use forlop_store::key_table::KeyStore;
use forlop_store::{EventStore, StoreError};

pub mod continuous;
mod line;
pub mod manifest;
mod restore;
mod segment;
mod verify;
mod writer;

pub use line::{AccessLine, EventLine};
pub use restore::{
    check_master_key, refuse_non_empty, restore, Cut, KeyCheck, RestoreOptions, RestoreReport, RestoreTarget,
};
pub use verify::{verify, BackupReport};
pub use writer::{BackupWriter, CycleReport};

/// Positions a segment file holds; its name gives its range, so a file's place never changes.
pub const SEGMENT_LINES: u64 = 65_536;

/// What a backup reads: the three stores of one forlop (sled in a data directory, or PostgreSQL).
#[derive(Clone)]
pub struct Sources {
    pub events: Arc<dyn EventStore>,
    pub access: Arc<dyn AccessLog>,
    pub keys: Arc<dyn KeyStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A file of the backup is not what its manifest and chain say: the first bad file, and the
    /// first bad position in it where one is known.
    #[error("{file}{}: {reason}", position.map(|p| format!(" at position {p}")).unwrap_or_default())]
    Damaged { file: String, position: Option<u64>, reason: String },
    /// The backup and the store are not of one log, or the request does not fit the backup.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BackupError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> BackupError {
        BackupError::Io { path: path.to_owned(), source }
    }

    pub(crate) fn damaged(file: impl Into<String>, position: Option<u64>, reason: impl Into<String>) -> BackupError {
        BackupError::Damaged { file: file.into(), position, reason: reason.into() }
    }
}
