//! The access log and the key table in PostgreSQL: the same records, hashes and rules as their
//! embedded counterparts, shared by every node on the database.

use std::path::Path;
use std::sync::Arc;

use forlop_store::access_log::{AccessFilter, AccessLog, AccessOutcome, FileAccessLog};
use forlop_store::key_table::{KeyStore, KeyTable};
use forlop_store::pg_cluster::TestCluster;
use forlop_store::{PgOptions, PgStore, StoreError};
use uuid::Uuid;

mod common;
use common::{rec, t};

fn cluster() -> TestCluster {
    TestCluster::start(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("start PostgreSQL")
}

async fn store(pg: &TestCluster) -> PgStore {
    PgStore::open(PgOptions::new(pg.url("postgres"))).await.expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_chains_exactly_as_the_file_log_and_filters_in_the_database() {
    let pg = cluster();
    let log = store(&pg).await.access_log().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = FileAccessLog::open(dir.path()).unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let records = vec![
        rec(a, "alice", AccessOutcome::Allowed, t(0)),
        rec(b, "bob", AccessOutcome::Denied, t(1)),
        rec(a, "carol", AccessOutcome::Emergency, t(2)),
        rec(b, "alice", AccessOutcome::Allowed, t(3)),
    ];
    assert_eq!(log.append(records[..2].to_vec()).await.unwrap(), 0);
    assert_eq!(log.append(records[2..].to_vec()).await.unwrap(), 2);
    file.append(records.clone()).await.unwrap();
    assert_eq!(log.committed(), 4);
    assert_eq!(log.head_hash(), file.head_hash(), "same records, same chain, whichever backend");
    assert_eq!(log.verify().await.unwrap(), file.verify().await.unwrap());

    let all = log.query(&AccessFilter::default(), None, 100).await.unwrap();
    assert_eq!(all.iter().map(|s| s.record.clone()).collect::<Vec<_>>(), records);
    let of_a = AccessFilter { patient_id: Some(a), ..Default::default() };
    let got = log.query(&of_a, None, 100).await.unwrap();
    assert_eq!(got.iter().map(|s| s.position).collect::<Vec<_>>(), [0, 2]);
    assert_eq!(log.query(&of_a, Some(0), 100).await.unwrap()[0].position, 2, "paging after a position");
    let emergency = AccessFilter { emergency_only: true, ..Default::default() };
    assert_eq!(log.query(&emergency, None, 100).await.unwrap()[0].record.actor_sub, "carol");
    let window = AccessFilter { from: Some(t(1)), to: Some(t(3)), ..Default::default() };
    assert_eq!(log.query(&window, None, 100).await.unwrap().iter().map(|s| s.position).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(log.query(&AccessFilter::default(), None, 1).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_append_access_records_to_one_gapless_chain() {
    let pg = cluster();
    let (a, b) = (store(&pg).await, store(&pg).await);
    let (la, lb) = (Arc::new(a.access_log().await.unwrap()), Arc::new(b.access_log().await.unwrap()));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let log: Arc<dyn AccessLog> = if i % 2 == 0 { la.clone() } else { lb.clone() };
            tokio::spawn(async move {
                let p = Uuid::new_v4();
                let mut firsts = Vec::new();
                for m in 0..5 {
                    let records = vec![rec(p, "alice", AccessOutcome::Allowed, t(m)); 2];
                    firsts.push(log.append(records).await.unwrap());
                }
                firsts
            })
        })
        .collect();
    let mut firsts = Vec::new();
    for t in tasks {
        firsts.extend(t.await.unwrap());
    }
    firsts.sort_unstable();
    assert_eq!(firsts, (0..80).map(|i| i * 2).collect::<Vec<u64>>(), "every append got its own two positions");
    let report = la.verify().await.unwrap();
    assert_eq!(report.records, 160);
    assert_eq!(report, lb.verify().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_table_behaves_as_the_embedded_one() {
    let pg = cluster();
    let pg_keys = store(&pg).await.key_table();
    let dir = tempfile::tempdir().unwrap();
    let sled_keys = KeyTable::open(dir.path()).unwrap();
    let tables: [&dyn KeyStore; 2] = [&pg_keys, &sled_keys];
    let (p1, p2) = (Uuid::from_u128(1), Uuid::from_u128(2));
    for keys in tables {
        assert_eq!(keys.get_patient(p1).await.unwrap(), None);
        assert!(keys.insert_patient(p1, b"record-1", Some([1; 32])).await.unwrap(), "a first record is inserted");
        assert!(!keys.insert_patient(p1, b"other", Some([9; 32])).await.unwrap(), "never over an existing one");
        assert_eq!(keys.find_blind_index(&[9; 32]).await.unwrap(), None, "a refused insert changes nothing");
        keys.put_patient(p2, b"record-2", Some([2; 32])).await.unwrap();
        assert_eq!(keys.get_patient(p1).await.unwrap().as_deref(), Some(&b"record-1"[..]));
        assert_eq!(keys.find_blind_index(&[1; 32]).await.unwrap(), Some(p1));
        // A new number for p1 replaces its old index entry.
        keys.put_patient(p1, b"record-1b", Some([3; 32])).await.unwrap();
        assert_eq!(keys.find_blind_index(&[1; 32]).await.unwrap(), None);
        assert_eq!(keys.find_blind_index(&[3; 32]).await.unwrap(), Some(p1));
        keys.forget_patient(p1).await.unwrap();
        keys.forget_patient(p1).await.unwrap();
        assert_eq!(keys.get_patient(p1).await.unwrap(), None);
        assert_eq!(keys.find_blind_index(&[3; 32]).await.unwrap(), None);
        assert_eq!(keys.patients().await.unwrap(), vec![(p2, b"record-2".to_vec())]);

        let generation = keys.generation().await.unwrap();
        keys.put_patient(p1, b"late", None).await.unwrap();
        let err = keys.replace_all_at(generation, vec![(p2, b"rewrapped".to_vec(), Some([4; 32]))]).await;
        assert!(matches!(err, Err(StoreError::WrongExpectedVersion { .. })), "a write since the read refuses");
        let generation = keys.generation().await.unwrap();
        keys.replace_all_at(generation, vec![(p2, b"rewrapped".to_vec(), Some([4; 32]))]).await.unwrap();
        assert_eq!(keys.patients().await.unwrap(), vec![(p2, b"rewrapped".to_vec())], "records not given are gone");
        assert_eq!(keys.find_blind_index(&[4; 32]).await.unwrap(), Some(p2));
        assert_eq!(keys.find_blind_index(&[2; 32]).await.unwrap(), None);
    }
}
