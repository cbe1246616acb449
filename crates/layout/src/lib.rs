//! Where a sled-backed node keeps its stores in its data directory: the event log at the top,
//! the access log in `access/`, the key table in `keys/`, and the engine's read-model checkpoint
//! beside them (`forlop_engine::checkpoint_path`). These names are on disk in every existing
//! data directory and in backups, so they never change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use forlop_engine::checkpoint::Preload;
use forlop_engine::{EngineError, EngineParts, Settings};
use forlop_store::access_log::FileAccessLog;
use forlop_store::key_table::KeyTable;
use forlop_vault::MasterKey;

/// The access log's directory.
pub fn access_dir(data: &Path) -> PathBuf {
    data.join("access")
}

/// The key table's directory.
pub fn keys_dir(data: &Path) -> PathBuf {
    data.join("keys")
}

/// The engine's parts with the access log and key table in their own stores under `data`.
pub fn sled_parts(data: &Path, master: MasterKey, settings: Settings) -> Result<EngineParts, EngineError> {
    // The checkpoint starts decoding before the logs open.
    let checkpoint = forlop_engine::checkpoint_path(data);
    let preload = Arc::new(Preload::start(&checkpoint));
    let access = FileAccessLog::open(&access_dir(data))?;
    let keys = KeyTable::open(&keys_dir(data))?;
    Ok(EngineParts::with_preload(Arc::new(access), Arc::new(keys), master, settings, checkpoint, preload))
}
