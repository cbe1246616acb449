//! The PostgreSQL backend against the conformance suite, each case on its own throwaway cluster
//! (started by the test; Debian's `postgresql` package is installed first if it is missing).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use forlop_store::conformance::Backend;
use forlop_store::pg_cluster::TestCluster;
use forlop_store::{conformance_suite, EventStore, PgOptions, PgStore};

struct PgBackend {
    cluster: TestCluster,
}

impl PgBackend {
    fn new() -> PgBackend {
        PgBackend { cluster: TestCluster::start(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("start PostgreSQL") }
    }
}

#[async_trait]
impl Backend for PgBackend {
    async fn open(&mut self) -> Arc<dyn EventStore> {
        Arc::new(PgStore::open(PgOptions::new(self.cluster.url("postgres"))).await.expect("open PostgreSQL store"))
    }

    async fn tamper(&mut self, position: u64) {
        PgStore::tamper(&self.cluster.url("postgres"), position).await.expect("tamper");
    }
}

conformance_suite!(PgBackend::new());
