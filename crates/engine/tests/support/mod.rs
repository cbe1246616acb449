//! What the engine tests share: parts laid out as a sled-backed node lays them out (the binary's
//! `store_layout.rs`), so a test directory looks like a served one.

use std::path::Path;
use std::sync::Arc;

use forlop_engine::{EngineParts, Settings};
use forlop_store::access_log::FileAccessLog;
use forlop_store::key_table::KeyTable;
use forlop_vault::MasterKey;

/// The access log and key table in `access/` and `keys/` under `data`, the checkpoint beside them.
pub fn sled_parts(data: &Path, master: MasterKey, settings: Settings) -> EngineParts {
    let access = FileAccessLog::open(&data.join("access")).unwrap();
    let keys = KeyTable::open(&data.join("keys")).unwrap();
    EngineParts::new(data, Arc::new(access), Arc::new(keys), master, settings).unwrap()
}
