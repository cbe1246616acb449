//! What only a shared database asks of the PostgreSQL backend: several nodes writing one log,
//! each following the others' commits, and a database that goes away and comes back.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use forlop_store::conformance::sample_event;
use forlop_store::pg_cluster::TestCluster;
use forlop_store::{EventStore, ExpectedVersion, PgOptions, PgStore, StoreError};

fn cluster() -> TestCluster {
    TestCluster::start(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("start PostgreSQL")
}

async fn node(cluster: &TestCluster) -> Arc<PgStore> {
    Arc::new(PgStore::open(PgOptions::new(cluster.url("postgres"))).await.expect("open"))
}

/// Waits (bounded) until `store` has seen `n` events committed, by its own watch.
async fn until_committed(store: &PgStore, n: u64) {
    let mut watch = store.watch_committed();
    tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|c| *c >= n))
        .await
        .expect("the node follows the log within 10 s")
        .expect("watch open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_writing_the_same_streams_share_one_gapless_chain_and_follow_each_other() {
    let pg = cluster();
    let (a, b) = (node(&pg).await, node(&pg).await);
    const WRITERS: u64 = 32;
    const EACH: u64 = 10;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = if w % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut positions = Vec::new();
                for i in 0..EACH {
                    // Eight streams for 32 writers: writers on both nodes race for the same stream.
                    let stream = format!("patient-{}", (w + i) % 8);
                    let e = sample_event(w * 100 + i);
                    loop {
                        let expected = match store.stream_version(&stream).await.unwrap() {
                            None => ExpectedVersion::NoStream,
                            Some(v) => ExpectedVersion::Exact(v),
                        };
                        match store.append(&stream, expected, vec![e.clone()]).await {
                            Ok(r) => break positions.push(r.events[0].position),
                            Err(StoreError::WrongExpectedVersion { .. }) => continue,
                            Err(other) => panic!("{other}"),
                        }
                    }
                }
                positions
            })
        })
        .collect();
    let mut positions = Vec::new();
    for t in tasks {
        positions.extend(t.await.unwrap());
    }
    positions.sort_unstable();
    assert_eq!(positions, (0..WRITERS * EACH).collect::<Vec<_>>(), "every acknowledged append, no gap, no twice");
    until_committed(&a, WRITERS * EACH).await;
    until_committed(&b, WRITERS * EACH).await;
    let (va, vb) = (a.verify().await.unwrap(), b.verify().await.unwrap());
    assert_eq!(va, vb, "both nodes verify the same chain");
    assert_eq!((va.events, va.streams), (WRITERS * EACH, 8));
    for s in 0..8 {
        let stream = b.read_stream(&format!("patient-{s}"), 0, usize::MAX).await.unwrap();
        assert!(stream.iter().enumerate().all(|(i, e)| e.version == i as u64), "stream versions gapless");
    }
    assert_eq!(a.read_all(0, usize::MAX).await.unwrap(), b.read_all(0, usize::MAX).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sees_another_nodes_commit_without_writing_itself() {
    let pg = cluster();
    let (a, b) = (node(&pg).await, node(&pg).await);
    let mut sub = forlop_store::subscribe(b.clone(), 0);
    a.append("a", ExpectedVersion::Any, vec![sample_event(0), sample_event(1)]).await.unwrap();
    until_committed(&b, 2).await;
    use futures::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(10), sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((first.position, first.stream.as_str()), (0, "a"), "a subscription on B delivers A's events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_fails_appends_as_unavailable_and_the_store_recovers_when_it_returns() {
    let pg = cluster();
    let store = node(&pg).await;
    store.append("a", ExpectedVersion::Any, vec![sample_event(0)]).await.unwrap();
    pg.stop().unwrap();
    let err = store.append("a", ExpectedVersion::Any, vec![sample_event(1)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(err.code(), "UNAVAILABLE");
    assert!(store.failure().is_some(), "health reports the lost database");
    assert!(matches!(store.read_all(0, 10).await, Err(StoreError::Unavailable(_))));

    pg.restart().unwrap();
    let r = store.append("a", ExpectedVersion::Any, vec![sample_event(2)]).await.expect("appends work again");
    assert_eq!(r.events[0].position, 1, "the failed append took no position");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.failure().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "health recovers: {:?}", store.failure());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.verify().await.unwrap().events, 2);
}
