//! The sled backend's event-id index is a cache of the log: whatever became of its file (lost
//! in a crash, left behind by an older run, copied from another node), a retried append is
//! still recognised and nothing is stored twice.

use forlop_store::conformance::sample_event;
use forlop_store::{EventStore, ExpectedVersion, NewEvent, SledOptions, SledStore};

const INDEX_FILE: &str = "event-ids.index";

fn open(dir: &std::path::Path) -> SledStore {
    SledStore::open(SledOptions::new(dir)).expect("open sled store")
}

/// Appends `n` one-event appends to stream `s`, closes the store, and returns what was sent.
async fn appended(dir: &std::path::Path, stream: &str, from: u64, n: u64) -> Vec<NewEvent> {
    let store = open(dir);
    let mut sent = Vec::new();
    for i in from..from + n {
        let e = sample_event(i);
        store.append(stream, ExpectedVersion::Any, vec![e.clone()]).await.expect("append");
        sent.push(e);
    }
    sent
}

/// Sends every event again and checks each is recognised as stored, then that the log did not grow.
async fn every_retry_is_recognised(dir: &std::path::Path, stream: &str, sent: &[NewEvent]) {
    let store = open(dir);
    let before = store.committed();
    for e in sent {
        let stored = store.event_by_id(e.id).await.expect("read by id").expect("found by id");
        assert_eq!(stored.payload, e.payload);
        let retry = store.append(stream, ExpectedVersion::Any, vec![e.clone()]).await.expect("retry");
        assert!(retry.deduplicated, "event {} was stored again", e.id);
    }
    assert_eq!(store.committed(), before, "retries appended nothing");
    assert_eq!(store.verify().await.expect("verify").events, before);
}

#[tokio::test]
async fn without_its_index_file_a_reopened_log_still_recognises_every_stored_id() {
    let dir = tempfile::tempdir().unwrap();
    let sent = appended(dir.path(), "a", 0, 40).await;
    // As after a crash before any save.
    std::fs::remove_file(dir.path().join(INDEX_FILE)).expect("the closing store saved its index");
    every_retry_is_recognised(dir.path(), "a", &sent).await;
    assert!(dir.path().join(INDEX_FILE).exists(), "the store that scanned the log saved the index again");
}

#[tokio::test]
async fn an_index_file_saved_before_later_appends_is_completed_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut sent = appended(dir.path(), "a", 0, 10).await;
    let older = std::fs::read(dir.path().join(INDEX_FILE)).unwrap();
    sent.extend(appended(dir.path(), "a", 10, 10).await);
    std::fs::write(dir.path().join(INDEX_FILE), older).unwrap();
    every_retry_is_recognised(dir.path(), "a", &sent).await;
}

#[tokio::test]
async fn an_index_file_of_another_log_is_ignored() {
    let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sent = appended(dir.path(), "a", 0, 10).await;
    let foreign = appended(other.path(), "a", 100, 12).await;
    std::fs::copy(other.path().join(INDEX_FILE), dir.path().join(INDEX_FILE)).unwrap();
    every_retry_is_recognised(dir.path(), "a", &sent).await;
    // The other log's ids mean nothing here: they append as new events.
    let store = open(dir.path());
    let appended = store.append("a", ExpectedVersion::Any, vec![foreign[0].clone()]).await.unwrap();
    assert!(!appended.deduplicated);
    assert_eq!(store.committed(), 11);
}

#[tokio::test]
async fn ids_folded_into_the_saved_index_while_appending_are_still_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let options = SledOptions { id_index_save_every: 5, ..SledOptions::new(dir.path()) };
    let store = SledStore::open(options).expect("open");
    let mut sent = Vec::new();
    for i in 0..23 {
        let e = sample_event(i);
        store.append("a", ExpectedVersion::Any, vec![e.clone()]).await.expect("append");
        sent.push(e);
    }
    // Compacted every 5 events: the same store recognises every id, before and after a reopen.
    for e in &sent {
        let retry = store.append("a", ExpectedVersion::Any, vec![e.clone()]).await.expect("retry");
        assert!(retry.deduplicated, "event {} was stored again", e.id);
    }
    drop(store);
    every_retry_is_recognised(dir.path(), "a", &sent).await;
}

#[tokio::test]
async fn a_damaged_index_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let sent = appended(dir.path(), "a", 0, 10).await;
    let file = dir.path().join(INDEX_FILE);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();
    every_retry_is_recognised(dir.path(), "a", &sent).await;
}
