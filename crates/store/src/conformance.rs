//! The conformance suite: behaviour every `EventStore` backend must show. A backend's tests call
//! `conformance_suite!(factory)`, which makes one test per case below, each on a fresh store.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use uuid::Uuid;

use crate::*;

/// What the suite needs from a backend besides the trait: a way to reopen the same store, and a
/// way to change stored bytes behind the store's back.
#[async_trait]
pub trait Backend: Send {
    /// Opens the store, or reopens it after every earlier handle was dropped.
    async fn open(&mut self) -> Arc<dyn EventStore>;
    /// Alters the stored content of the event at `position`. Every handle must be dropped first.
    async fn tamper(&mut self, position: u64);
}

/// Makes one `#[tokio::test]` per conformance case. `$factory` is an expression that yields a
/// fresh `impl Backend` each time it is evaluated.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@cases $factory;
            append_assigns_contiguous_versions_and_positions,
            envelope_round_trips,
            expected_version_is_enforced_and_names_the_current_version,
            failed_append_writes_nothing,
            retry_with_same_id_and_content_returns_original_positions,
            same_id_with_other_content_is_a_conflict,
            idempotency_holds_after_reopen,
            concurrent_writers_to_one_stream_never_lose_or_duplicate,
            concurrent_writers_to_many_streams_share_one_gapless_log,
            reopen_after_drop_continues_the_log_and_chain,
            verify_detects_tampering_at_its_position,
            catch_up_subscription_delivers_history_then_live_events,
            reads_honour_bounds,
            old_schema_versions_are_kept_as_stored,
            invalid_appends_are_refused,
            append_all_is_all_or_none_across_streams
        );
    };
    (@cases $factory:expr; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let mut backend = $factory;
                $crate::conformance::$case(&mut backend).await;
            }
        )+
    };
}

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2016, 1, day, 9, 0, 0).unwrap()
}

/// A realistic event of about 300 bytes, like a recorded session.
pub fn sample_event(n: u64) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: "SessionRecorded".into(),
        schema_version: 1,
        occurred_at: at(1 + (n % 28) as u32),
        payload: format!(
            r#"{{"session_id":"{}","episode_id":"{}","therapist_id":"{}","attendance":"ATTENDED","at":"2016-01-{:02}T09:00:00Z","n":{n}}}"#,
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            1 + n % 28
        )
        .into_bytes(),
        metadata: Metadata { actor: "conformance".into(), correlation_id: None, causation_id: None },
        recorded_at: None,
    }
}

fn events(n: u64) -> Vec<NewEvent> {
    (0..n).map(sample_event).collect()
}

async fn all(store: &dyn EventStore) -> Vec<RecordedEvent> {
    store.read_all(0, usize::MAX).await.unwrap()
}

pub async fn append_assigns_contiguous_versions_and_positions(b: &mut impl Backend) {
    let s = b.open().await;
    let r = s.append("a", ExpectedVersion::NoStream, events(3)).await.unwrap();
    assert_eq!(r.events.iter().map(|c| (c.version, c.position)).collect::<Vec<_>>(), [(0, 0), (1, 1), (2, 2)]);
    assert!(!r.deduplicated);
    let r = s.append("b", ExpectedVersion::Any, events(2)).await.unwrap();
    assert_eq!(r.events.iter().map(|c| (c.version, c.position)).collect::<Vec<_>>(), [(0, 3), (1, 4)]);
    let r = s.append("a", ExpectedVersion::Exact(2), events(1)).await.unwrap();
    assert_eq!((r.events[0].version, r.events[0].position), (3, 5));
    assert_eq!(s.committed(), 6);
    assert_eq!(s.stream_version("a").await.unwrap(), Some(3));
    assert_eq!(s.stream_version("b").await.unwrap(), Some(1));
    assert_eq!(s.stream_version("c").await.unwrap(), None);
    let a = s.read_stream("a", 0, usize::MAX).await.unwrap();
    assert_eq!(a.iter().map(|e| e.version).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(a.iter().map(|e| e.position).collect::<Vec<_>>(), [0, 1, 2, 5]);
    let log = all(&*s).await;
    assert_eq!(log.iter().map(|e| e.position).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
}

pub async fn envelope_round_trips(b: &mut impl Backend) {
    let s = b.open().await;
    let mut e = sample_event(0);
    e.occurred_at = Utc.timestamp_opt(1_452_502_800, 123_456_789).unwrap();
    e.metadata = Metadata {
        actor: "dps-integration".into(),
        correlation_id: Some(Uuid::new_v4()),
        causation_id: Some(Uuid::new_v4()),
    };
    let before = Utc::now();
    s.append("p", ExpectedVersion::Any, vec![e.clone()]).await.unwrap();
    let got = s.event_by_id(e.id).await.unwrap().expect("stored");
    assert_eq!(got.id, e.id);
    assert_eq!(got.stream, "p");
    assert_eq!(got.event_type, e.event_type);
    assert_eq!(got.schema_version, 1);
    assert_eq!(got.occurred_at, e.occurred_at, "clinical time keeps nanoseconds");
    assert!(got.recorded_at >= before - chrono::Duration::seconds(1), "recordedAt is the server clock");
    assert_eq!(got.metadata, e.metadata);
    assert_eq!(got.payload, e.payload);
    assert_ne!(got.hash, GENESIS_HASH, "every event carries its chain hash");
    assert_eq!(s.event_by_id(Uuid::new_v4()).await.unwrap(), None);
    let mut imported = sample_event(1);
    imported.recorded_at = Some(at(3));
    s.append("p", ExpectedVersion::Any, vec![imported.clone()]).await.unwrap();
    assert_eq!(s.event_by_id(imported.id).await.unwrap().unwrap().recorded_at, at(3), "import keeps recordedAt");
}

pub async fn expected_version_is_enforced_and_names_the_current_version(b: &mut impl Backend) {
    let s = b.open().await;
    match s.append("a", ExpectedVersion::Exact(0), events(1)).await {
        Err(StoreError::WrongExpectedVersion { current: None, .. }) => {}
        other => panic!("exact on a missing stream: {other:?}"),
    }
    s.append("a", ExpectedVersion::NoStream, events(2)).await.unwrap();
    match s.append("a", ExpectedVersion::NoStream, events(1)).await {
        Err(StoreError::WrongExpectedVersion { current: Some(1), ref stream, .. }) if stream == "a" => {}
        other => panic!("no-stream on an existing stream: {other:?}"),
    }
    let err = s.append("a", ExpectedVersion::Exact(0), events(1)).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongExpectedVersion { current: Some(1), .. }));
    assert_eq!(err.code(), "WRONG_EXPECTED_VERSION");
    assert!(err.to_string().contains("current version Some(1)"), "{err}");
    s.append("a", ExpectedVersion::Exact(1), events(1)).await.unwrap();
    s.append("a", ExpectedVersion::Any, events(1)).await.unwrap();
    assert_eq!(s.stream_version("a").await.unwrap(), Some(3));
}

pub async fn failed_append_writes_nothing(b: &mut impl Backend) {
    let s = b.open().await;
    s.append("a", ExpectedVersion::Any, events(1)).await.unwrap();
    let mut batch = events(3);
    batch[2].id = batch[0].id; // invalid: same id twice in one append
    assert!(matches!(s.append("a", ExpectedVersion::Any, batch.clone()).await, Err(StoreError::InvalidAppend(_))));
    assert!(s.append("a", ExpectedVersion::Exact(7), events(3)).await.is_err());
    assert_eq!(s.committed(), 1);
    assert_eq!(all(&*s).await.len(), 1);
    assert_eq!(s.event_by_id(batch[1].id).await.unwrap(), None, "no partial write of an atomic append");
}

pub async fn retry_with_same_id_and_content_returns_original_positions(b: &mut impl Backend) {
    let s = b.open().await;
    let batch = events(2);
    let first = s.append("a", ExpectedVersion::NoStream, batch.clone()).await.unwrap();
    s.append("a", ExpectedVersion::Any, events(1)).await.unwrap();
    // The retry carries the expected version of the original attempt, which is stale now.
    let retry = s.append("a", ExpectedVersion::NoStream, batch).await.unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.events, first.events);
    assert_eq!(s.committed(), 3, "a retry writes nothing");
}

pub async fn same_id_with_other_content_is_a_conflict(b: &mut impl Backend) {
    let s = b.open().await;
    let e = sample_event(0);
    s.append("a", ExpectedVersion::Any, vec![e.clone()]).await.unwrap();
    let mut changed = e.clone();
    changed.payload = b"{\"other\":true}".to_vec();
    let err = s.append("a", ExpectedVersion::Any, vec![changed]).await.unwrap_err();
    assert!(matches!(err, StoreError::IdempotencyConflict { id } if id == e.id));
    assert_eq!(err.code(), "IDEMPOTENCY_CONFLICT");
    let err = s.append("elsewhere", ExpectedVersion::Any, vec![e.clone()]).await.unwrap_err();
    assert!(matches!(err, StoreError::IdempotencyConflict { .. }), "same id in another stream");
    // Half-stored batch: one known id plus a new one is not a retry.
    let err = s.append("a", ExpectedVersion::Any, vec![e, sample_event(1)]).await.unwrap_err();
    assert!(matches!(err, StoreError::IdempotencyConflict { .. }));
    assert_eq!(s.committed(), 1);
}

pub async fn idempotency_holds_after_reopen(b: &mut impl Backend) {
    let batch = events(2);
    let first = {
        let s = b.open().await;
        s.append("a", ExpectedVersion::Any, batch.clone()).await.unwrap()
    };
    let s = b.open().await;
    let retry = s.append("a", ExpectedVersion::Any, batch).await.unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.events, first.events);
    assert_eq!(s.committed(), 2);
}

pub async fn concurrent_writers_to_one_stream_never_lose_or_duplicate(b: &mut impl Backend) {
    let s = b.open().await;
    const WRITERS: u64 = 8;
    const EACH: u64 = 10;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut conflicts = 0;
                for i in 0..EACH {
                    let e = sample_event(w * 100 + i);
                    loop {
                        let expected = match s.stream_version("shared").await.unwrap() {
                            None => ExpectedVersion::NoStream,
                            Some(v) => ExpectedVersion::Exact(v),
                        };
                        match s.append("shared", expected, vec![e.clone()]).await {
                            Ok(_) => break,
                            Err(StoreError::WrongExpectedVersion { .. }) => conflicts += 1,
                            Err(other) => panic!("{other}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stream = s.read_stream("shared", 0, usize::MAX).await.unwrap();
    assert_eq!(stream.len() as u64, WRITERS * EACH);
    assert!(stream.iter().enumerate().all(|(i, e)| e.version == i as u64));
    assert_eq!(stream.iter().map(|e| e.id).collect::<HashSet<_>>().len() as u64, WRITERS * EACH);
    s.verify().await.unwrap();
}

pub async fn concurrent_writers_to_many_streams_share_one_gapless_log(b: &mut impl Backend) {
    let s = b.open().await;
    let tasks: Vec<_> = (0..64u64)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut positions = Vec::new();
                for i in 0..5 {
                    let r = s.append(&format!("patient-{w}"), ExpectedVersion::Any, vec![sample_event(i)]).await;
                    positions.push(r.unwrap().events[0].position);
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
    assert_eq!(positions, (0..320).collect::<Vec<u64>>());
    let report = s.verify().await.unwrap();
    assert_eq!((report.events, report.streams), (320, 64));
}

pub async fn reopen_after_drop_continues_the_log_and_chain(b: &mut impl Backend) {
    let (ids, head) = {
        let s = b.open().await;
        let batch = events(3);
        s.append("a", ExpectedVersion::Any, batch.clone()).await.unwrap();
        (batch.iter().map(|e| e.id).collect::<Vec<_>>(), s.verify().await.unwrap().head_hash)
    };
    let s = b.open().await;
    assert_eq!(s.committed(), 3);
    assert_eq!(all(&*s).await.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(s.verify().await.unwrap().head_hash, head);
    let r = s.append("a", ExpectedVersion::Exact(2), events(1)).await.unwrap();
    assert_eq!((r.events[0].version, r.events[0].position), (3, 3));
    let report = s.verify().await.unwrap();
    assert_eq!(report.events, 4);
    assert_ne!(report.head_hash, head);
}

pub async fn verify_detects_tampering_at_its_position(b: &mut impl Backend) {
    {
        let s = b.open().await;
        s.append("s0", ExpectedVersion::Any, events(2)).await.unwrap();
        // Position 3 is in the middle of a multi-event append.
        s.append("s1", ExpectedVersion::Any, events(3)).await.unwrap();
        s.append("s0", ExpectedVersion::Any, events(1)).await.unwrap();
        s.verify().await.unwrap();
    }
    b.tamper(3).await;
    let s = b.open().await;
    match s.verify().await {
        Err(StoreError::Corrupt { position: 3, .. }) => {}
        other => panic!("tampering at 3 must be reported at 3: {other:?}"),
    }
}

pub async fn catch_up_subscription_delivers_history_then_live_events(b: &mut impl Backend) {
    let s = b.open().await;
    s.append("a", ExpectedVersion::Any, events(5)).await.unwrap();
    let mut sub = subscribe(s.clone(), 2);
    for want in 2..5 {
        assert_eq!(sub.next().await.unwrap().unwrap().position, want);
    }
    s.append("b", ExpectedVersion::Any, events(2)).await.unwrap();
    for want in 5..7 {
        let e = sub.next().await.unwrap().unwrap();
        assert_eq!((e.position, e.stream.as_str()), (want, "b"));
    }
}

pub async fn reads_honour_bounds(b: &mut impl Backend) {
    let s = b.open().await;
    s.append("a", ExpectedVersion::Any, events(10)).await.unwrap();
    let page = s.read_all(4, 3).await.unwrap();
    assert_eq!(page.iter().map(|e| e.position).collect::<Vec<_>>(), [4, 5, 6]);
    assert!(s.read_all(10, 5).await.unwrap().is_empty());
    let page = s.read_stream("a", 8, 5).await.unwrap();
    assert_eq!(page.iter().map(|e| e.version).collect::<Vec<_>>(), [8, 9]);
    assert!(s.read_stream("nope", 0, 5).await.unwrap().is_empty());
}

pub async fn old_schema_versions_are_kept_as_stored(b: &mut impl Backend) {
    // Upcasting is the domain's job; the store must hand old events back exactly as written.
    let s = b.open().await;
    let mut old = sample_event(0);
    old.event_type = "PatientRegistered".into();
    old.schema_version = 1;
    old.payload = br#"{"patient_id":"00000000-0000-0000-0000-000000000001","birth_year":1985,"sex":"F"}"#.to_vec();
    s.append("patient-1", ExpectedVersion::Any, vec![old.clone()]).await.unwrap();
    let got = &s.read_stream("patient-1", 0, 1).await.unwrap()[0];
    assert_eq!((got.event_type.as_str(), got.schema_version, &got.payload), ("PatientRegistered", 1, &old.payload));
}

pub async fn invalid_appends_are_refused(b: &mut impl Backend) {
    let s = b.open().await;
    for (stream, batch) in [("a", vec![]), ("", events(1)), ("nul\0name", events(1))] {
        let err = s.append(stream, ExpectedVersion::Any, batch).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidAppend(_)), "{err:?}");
    }
    assert_eq!(s.committed(), 0);
}

pub async fn append_all_is_all_or_none_across_streams(b: &mut impl Backend) {
    let s = b.open().await;
    s.append("b", ExpectedVersion::Any, events(1)).await.unwrap();
    let part = |stream: &str, expected, events| StreamAppend { stream: stream.into(), expected, events };

    // One stale part refuses the whole append: nothing of the other parts is written.
    let first = events(2);
    let stale =
        vec![part("a", ExpectedVersion::NoStream, first.clone()), part("b", ExpectedVersion::Exact(5), events(1))];
    let err = s.append_all(stale).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongExpectedVersion { current: Some(0), .. }), "{err}");
    assert_eq!(s.committed(), 1);
    assert_eq!(s.event_by_id(first[0].id).await.unwrap(), None, "no part of a refused append is stored");
    assert_eq!(s.stream_version("a").await.unwrap(), None);

    // The same id in two parts is one invalid append.
    let twice = vec![part("a", ExpectedVersion::Any, first.clone()), part("c", ExpectedVersion::Any, first.clone())];
    assert!(matches!(s.append_all(twice).await, Err(StoreError::InvalidAppend(_))));

    // Accepted: contiguous positions across the parts, versions per stream, a stream repeated.
    let (second, third) = (events(1), events(1));
    let parts = vec![
        part("a", ExpectedVersion::NoStream, first.clone()),
        part("b", ExpectedVersion::Exact(0), second.clone()),
        part("a", ExpectedVersion::Exact(1), third.clone()),
    ];
    let done = s.append_all(parts.clone()).await.unwrap();
    let placed: Vec<(u64, u64)> = done.iter().flat_map(|r| r.events.iter().map(|c| (c.version, c.position))).collect();
    assert_eq!(placed, vec![(0, 1), (1, 2), (1, 3), (2, 4)]);
    assert!(done.iter().all(|r| !r.deduplicated));
    assert_eq!(s.committed(), 5);
    assert_eq!(s.stream_version("a").await.unwrap(), Some(2));

    // A retry of the whole append is answered from the log and writes nothing.
    let again = s.append_all(parts).await.unwrap();
    assert!(again.iter().all(|r| r.deduplicated));
    assert_eq!(
        again.iter().map(|r| r.events.clone()).collect::<Vec<_>>(),
        done.iter().map(|r| r.events.clone()).collect::<Vec<_>>()
    );
    assert_eq!(s.committed(), 5);
    let report = s.verify().await.unwrap();
    assert_eq!(report.events, 5);
}
