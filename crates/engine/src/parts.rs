//! What the engine is built from besides the event log: the access log, the vault over its key
//! table, the tunables, and the read-model checkpoint. The caller opens the stores (the binary
//! chooses where they live); the engine only names its checkpoint's file in a data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use forlop_store::key_table::KeyStore;
use forlop_vault::{MasterKey, Vault};

use crate::checkpoint::Preload;
use crate::error::EngineError;

/// The read-model checkpoint's file name in a node's data directory.
const CHECKPOINT_FILE: &str = "readmodel.checkpoint";

/// Where a node keeps its read-model checkpoint, whatever holds its logs.
pub fn checkpoint_path(data: &Path) -> PathBuf {
    data.join(CHECKPOINT_FILE)
}

/// Keeps `Arc` in the public signature of `Engine::access_log` readable.
pub type SharedAccessLog = Arc<dyn forlop_store::access_log::AccessLog>;

/// What the engine needs besides the event log.
#[derive(Clone)]
pub struct EngineParts {
    pub access_log: SharedAccessLog,
    pub vault: Vault,
    pub settings: Settings,
    /// Where the read model is checkpointed (in the background and at clean shutdown) and
    /// loaded from at start.
    pub checkpoint: Option<PathBuf>,
    /// That checkpoint, decoding since the parts were opened (before the event log).
    pub preload: Arc<Preload>,
}

/// Tunables of the core.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Analysts see counts from 1 to this − 1 as hidden, and larger ones perturbed.
    pub suppression_threshold: u64,
    /// The projector checkpoints the read model in the background every this many events (0:
    /// only at clean shutdown), so a crash replays at most this many.
    pub checkpoint_every: u64,
    /// How long a referral or episode a clinician recorded themselves, and nobody else has acted
    /// on, stays a self-recorded relationship (`policy::Relationship::SelfRecorded`).
    pub self_grant_days: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { suppression_threshold: 5, checkpoint_every: 100_000, self_grant_days: 14 }
    }
}

impl EngineParts {
    /// Parts whose access log and key table live elsewhere (beside a PostgreSQL event log, shared
    /// by every node); this node's read-model checkpoint stays in `data`.
    pub fn new(
        data: &Path,
        access_log: SharedAccessLog,
        keys: Arc<dyn KeyStore>,
        master: MasterKey,
        settings: Settings,
    ) -> Result<EngineParts, EngineError> {
        std::fs::create_dir_all(data)
            .map_err(|e| EngineError::Unavailable(format!("creating {}: {e}", data.display())))?;
        let checkpoint = checkpoint_path(data);
        let preload = Arc::new(Preload::start(&checkpoint));
        Ok(EngineParts::with_preload(access_log, keys, master, settings, checkpoint, preload))
    }

    /// Parts around a checkpoint that has been decoding since `preload` was started: a caller
    /// that opens the stores itself starts it first, so decoding overlaps their opening.
    pub fn with_preload(
        access_log: SharedAccessLog,
        keys: Arc<dyn KeyStore>,
        master: MasterKey,
        settings: Settings,
        checkpoint: PathBuf,
        preload: Arc<Preload>,
    ) -> EngineParts {
        EngineParts { access_log, vault: Vault::new(master, keys), settings, checkpoint: Some(checkpoint), preload }
    }
}
