//! Two nodes' vaults on one PostgreSQL key table: when both protect the same new patient at
//! once, one data key wins and both sealed values open with it.

use std::path::Path;
use std::sync::Arc;

use forlop_domain::national_id::NationalId;
use forlop_store::pg_cluster::TestCluster;
use forlop_store::{PgOptions, PgStore};
use forlop_vault::{MasterKey, Vault};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_protecting_one_new_patient_at_once_share_one_data_key() {
    let pg = TestCluster::start(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("start PostgreSQL");
    let master = MasterKey::generate().to_base64();
    let node = || async {
        let store = PgStore::open(PgOptions::new(pg.url("postgres"))).await.expect("open");
        Vault::new(MasterKey::from_base64(&master).unwrap(), Arc::new(store.key_table()))
    };
    let (a, b) = (node().await, node().await);
    let id = NationalId::parse("31929980150").unwrap(); // synthetic (month + 80)
    for n in 0..20u128 {
        let patient = Uuid::from_u128(0x5eed_0000 + n);
        let (sa, sb) = tokio::join!(a.protect(patient, &id), b.protect(patient, &id));
        let (sa, sb) = (sa.unwrap(), sb.unwrap());
        assert_eq!(a.reveal(patient, &sb).await.unwrap(), Some(id.clone()), "B's sealing opens on A");
        assert_eq!(b.reveal(patient, &sa).await.unwrap(), Some(id.clone()), "A's sealing opens on B");
        a.forget(patient).await.unwrap();
    }
}
