//! The sled backend against the conformance suite, each case in a fresh temporary directory.

use std::sync::Arc;

use async_trait::async_trait;
use forlop_store::conformance::Backend;
use forlop_store::{conformance_suite, EventStore, SledOptions, SledStore};

struct SledBackend {
    dir: tempfile::TempDir,
}

#[async_trait]
impl Backend for SledBackend {
    async fn open(&mut self) -> Arc<dyn EventStore> {
        Arc::new(SledStore::open(SledOptions::new(self.dir.path())).expect("open sled store"))
    }

    async fn tamper(&mut self, position: u64) {
        SledStore::tamper(self.dir.path(), position).expect("tamper");
    }
}

conformance_suite!(SledBackend { dir: tempfile::tempdir().unwrap() });
