//! The access log: durability, ordering, filters, paging and tamper detection.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use forlop_store::access_log::{AccessFilter, AccessLog, AccessOutcome, AccessRecord, FileAccessLog};
use forlop_store::{StoreError, GENESIS_HASH};
use uuid::Uuid;

mod common;
use common::{rec, t};

fn allowed(patient: Uuid, at: DateTime<Utc>) -> AccessRecord {
    rec(patient, "alice", AccessOutcome::Allowed, at)
}

#[test]
fn access_log_outcome_strings() {
    assert_eq!(AccessOutcome::Allowed.as_str(), "ALLOWED");
    assert_eq!(AccessOutcome::Denied.as_str(), "DENIED");
    assert_eq!(AccessOutcome::Emergency.as_str(), "EMERGENCY");
}

#[tokio::test]
async fn access_log_append_and_query_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileAccessLog::open(dir.path()).unwrap();
    assert_eq!(log.committed(), 0);
    assert_eq!(log.head_hash(), GENESIS_HASH);
    assert_eq!(log.append(vec![]).await.unwrap(), 0);

    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let first = vec![allowed(a, t(0)), rec(b, "bob", AccessOutcome::Denied, t(1))];
    let mut minimal = allowed(a, t(2));
    minimal.actor_name = None;
    minimal.hpr_number = None;
    minimal.correlation_id = None;
    minimal.operation = "anonymous".into();
    let second = vec![minimal, rec(b, "carol", AccessOutcome::Emergency, t(3))];
    assert_eq!(log.append(first.clone()).await.unwrap(), 0);
    assert_eq!(log.append(second.clone()).await.unwrap(), 2);
    assert_eq!(log.committed(), 4);
    assert_eq!(log.append(vec![]).await.unwrap(), 4);

    let all = log.query(&AccessFilter::default(), None, 100).await.unwrap();
    let expected: Vec<_> = first.into_iter().chain(second).collect();
    assert_eq!(all.iter().map(|s| s.position).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_eq!(all.iter().map(|s| s.record.clone()).collect::<Vec<_>>(), expected);
    assert_eq!(all[3].hash, log.head_hash());

    // Paging over the whole log.
    let page = log.query(&AccessFilter::default(), Some(1), 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].position, 2);
    assert!(log.query(&AccessFilter::default(), Some(3), 10).await.unwrap().is_empty());
    assert!(log.query(&AccessFilter::default(), None, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn access_log_durable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = Uuid::new_v4();
    let head = {
        let log = FileAccessLog::open(dir.path()).unwrap();
        for i in 0..5 {
            assert_eq!(log.append(vec![allowed(p, t(i))]).await.unwrap(), i as u64);
        }
        let report = log.verify().await.unwrap();
        assert_eq!(report.records, 5);
        log.head_hash()
    };
    let log = FileAccessLog::open(dir.path()).unwrap();
    assert_eq!(log.committed(), 5);
    assert_eq!(log.head_hash(), head);
    assert_eq!(log.append(vec![allowed(p, t(5)), allowed(p, t(6))]).await.unwrap(), 5);
    let report = log.verify().await.unwrap();
    assert_eq!(report.records, 7);
    assert_eq!(report.head_hash, log.head_hash());
    let all = log.query(&AccessFilter { patient_id: Some(p), ..Default::default() }, None, 100).await.unwrap();
    assert_eq!(all.iter().map(|s| s.record.at).collect::<Vec<_>>(), (0..7).map(t).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn access_log_concurrent_appenders_get_gapless_positions() {
    const TASKS: usize = 64;
    const EACH: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(FileAccessLog::open(dir.path()).unwrap());
    let patients: Vec<Uuid> = (0..TASKS).map(|_| Uuid::new_v4()).collect();
    let mut tasks = Vec::new();
    for (task, &patient) in patients.iter().enumerate() {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(EACH);
            for i in 0..EACH {
                // Some appends carry two records, to mix request sizes within groups.
                let n = if (task + i) % 7 == 0 { 2 } else { 1 };
                let records = (0..n).map(|_| allowed(patient, t(i as i64))).collect();
                let first = log.append(records).await.unwrap();
                got.extend((0..n).map(|j| first + j as u64));
            }
            got
        }));
    }
    let mut positions = Vec::new();
    for (task, h) in tasks.into_iter().enumerate() {
        let got = h.await.unwrap();
        // Each task's own positions increase: an append is visible to the next.
        assert!(got.windows(2).all(|w| w[0] < w[1]), "task {task}: {got:?}");
        // And its patient's index holds exactly those positions.
        let filter = AccessFilter { patient_id: Some(patients[task]), ..Default::default() };
        let mine = log.query(&filter, None, 10_000).await.unwrap();
        assert_eq!(mine.iter().map(|s| s.position).collect::<Vec<_>>(), got);
        positions.extend(got);
    }
    positions.sort_unstable();
    let total = positions.len() as u64;
    assert_eq!(positions, (0..total).collect::<Vec<_>>());
    assert_eq!(log.committed(), total);
    let report = log.verify().await.unwrap();
    assert_eq!(report.records, total);
    assert_eq!(report.head_hash, log.head_hash());
}

#[tokio::test]
async fn access_log_patient_query_with_paging() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileAccessLog::open(dir.path()).unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    for i in 0..10 {
        log.append(vec![allowed(a, t(i)), allowed(b, t(i)), allowed(b, t(i))]).await.unwrap();
    }
    let only_a = AccessFilter { patient_id: Some(a), ..Default::default() };
    let all_a = log.query(&only_a, None, 100).await.unwrap();
    assert_eq!(all_a.len(), 10);
    assert!(all_a.iter().all(|s| s.record.patient_id == a));
    assert_eq!(all_a.iter().map(|s| s.position).collect::<Vec<_>>(), (0..10).map(|i| i * 3).collect::<Vec<_>>());

    // Page through with `after` = last position seen.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = log.query(&only_a, after, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = Some(page.last().unwrap().position);
        seen.extend(page);
    }
    assert_eq!(seen, all_a);

    // `after` between a's records.
    let page = log.query(&only_a, Some(4), 2).await.unwrap();
    assert_eq!(page.iter().map(|s| s.position).collect::<Vec<_>>(), vec![6, 9]);

    let b_count = log.query(&AccessFilter { patient_id: Some(b), ..Default::default() }, None, 100).await.unwrap();
    assert_eq!(b_count.len(), 20);
    let nobody = AccessFilter { patient_id: Some(Uuid::new_v4()), ..Default::default() };
    assert!(log.query(&nobody, None, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn access_log_emergency_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileAccessLog::open(dir.path()).unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    log.append(vec![
        allowed(a, t(0)),
        rec(a, "er", AccessOutcome::Emergency, t(1)),
        rec(b, "er", AccessOutcome::Emergency, t(2)),
        rec(b, "x", AccessOutcome::Denied, t(3)),
        allowed(b, t(4)),
    ])
    .await
    .unwrap();
    let emergencies = log.query(&AccessFilter { emergency_only: true, ..Default::default() }, None, 100).await.unwrap();
    assert_eq!(emergencies.iter().map(|s| s.position).collect::<Vec<_>>(), vec![1, 2]);
    assert!(emergencies.iter().all(|s| s.record.reason.is_some()));
    let b_emergencies = AccessFilter { patient_id: Some(b), emergency_only: true, ..Default::default() };
    let got = log.query(&b_emergencies, None, 100).await.unwrap();
    assert_eq!(got.iter().map(|s| s.position).collect::<Vec<_>>(), vec![2]);
    // Limit counts matches, not scanned records.
    let one = log.query(&AccessFilter { emergency_only: true, ..Default::default() }, Some(1), 1).await.unwrap();
    assert_eq!(one.iter().map(|s| s.position).collect::<Vec<_>>(), vec![2]);
}

#[tokio::test]
async fn access_log_time_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileAccessLog::open(dir.path()).unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    log.append((0..10).map(|i| allowed(if i % 2 == 0 { a } else { b }, t(i))).collect()).await.unwrap();
    let range = AccessFilter { from: Some(t(3)), to: Some(t(7)), ..Default::default() };
    let got = log.query(&range, None, 100).await.unwrap();
    // `from` inclusive, `to` exclusive.
    assert_eq!(got.iter().map(|s| s.record.at).collect::<Vec<_>>(), (3..7).map(t).collect::<Vec<_>>());
    let a_range = AccessFilter { patient_id: Some(a), ..range.clone() };
    let got = log.query(&a_range, None, 100).await.unwrap();
    assert_eq!(got.iter().map(|s| s.record.at).collect::<Vec<_>>(), vec![t(4), t(6)]);
    let from_only = AccessFilter { from: Some(t(8)), ..Default::default() };
    assert_eq!(log.query(&from_only, None, 100).await.unwrap().len(), 2);
    let to_only = AccessFilter { to: Some(t(1)), ..Default::default() };
    assert_eq!(log.query(&to_only, None, 100).await.unwrap().len(), 1);
}

#[tokio::test]
async fn access_log_tamper_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let p = Uuid::new_v4();
    {
        let log = FileAccessLog::open(dir.path()).unwrap();
        log.append((0..6).map(|i| allowed(p, t(i))).collect()).await.unwrap();
        log.verify().await.unwrap();
    }
    FileAccessLog::tamper(dir.path(), 3).unwrap();
    let log = FileAccessLog::open(dir.path()).unwrap();
    match log.verify().await {
        Err(StoreError::Corrupt { position, .. }) => assert_eq!(position, 3),
        other => panic!("expected Corrupt at 3, got {other:?}"),
    }
}

#[tokio::test]
async fn access_log_head_hash_tracks_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileAccessLog::open(dir.path()).unwrap();
    let p = Uuid::new_v4();
    let mut heads = vec![log.head_hash()];
    assert_eq!(log.verify().await.unwrap().head_hash, GENESIS_HASH);
    for i in 0..5 {
        // Identical content still changes the head: the position is part of the hashed bytes.
        let mut r = allowed(p, t(0));
        r.correlation_id = None;
        log.append(vec![r]).await.unwrap();
        let head = log.head_hash();
        assert!(!heads.contains(&head), "append {i} did not change the head");
        heads.push(head);
        let report = log.verify().await.unwrap();
        assert_eq!(report.records, i + 1);
        assert_eq!(report.head_hash, head);
    }
    let last = log.query(&AccessFilter::default(), Some(3), 1).await.unwrap();
    assert_eq!(last[0].hash, log.head_hash());
}

#[tokio::test]
async fn access_log_rejects_absurd_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileAccessLog::open(dir.path()).unwrap();
    let p = Uuid::new_v4();
    let mut long = allowed(p, t(0));
    long.reason = Some("x".repeat(5000));
    let err = log.append(vec![allowed(p, t(0)), long]).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidAppend(_)), "{err:?}");
    let mut long = allowed(p, t(0));
    long.fields = "f".repeat(4097);
    assert!(matches!(log.append(vec![long]).await, Err(StoreError::InvalidAppend(_))));
    // Nothing of a rejected append is stored; the log goes on.
    assert_eq!(log.committed(), 0);
    let mut edge = allowed(p, t(0));
    edge.actor_sub = "s".repeat(4096);
    assert_eq!(log.append(vec![edge]).await.unwrap(), 0);
    assert_eq!(log.verify().await.unwrap().records, 1);
}
