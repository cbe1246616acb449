//! Idempotency keys and optimistic concurrency, over HTTP.

use futures::future::join_all;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_event_id_when_the_same_mutation_is_retried_then_the_original_placing_is_returned_and_nothing_written()
{
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await;

    let key = id();
    let mut input = session(p, e, r.a, "2016-01-12T10:00:00Z");
    input["eventId"] = json!(key);
    let first = s.record("recordSession", input.clone()).await;
    assert_eq!(first.event_id, key, "the client's eventId is the event's id");
    assert!(!first.deduplicated);
    let committed = s.committed().await;

    let again = s.record("recordSession", input.clone()).await;
    assert_eq!(again.event_id, key);
    assert_eq!((again.stream_version, again.position), (first.stream_version, first.position));
    assert!(again.deduplicated, "a retry says it wrote nothing");
    assert_eq!(s.committed().await, committed, "a retry appended to the log");
    let p_now = s.patient(p, "version continuity { attendedSessions }").await;
    assert_eq!(p_now["continuity"]["attendedSessions"], 1);
    assert_eq!(p_now["version"], json!(first.stream_version));

    // A retry still succeeds after the stream has moved on, even with the then-current expectedVersion.
    s.record("recordSession", session(p, e, r.a, "2016-01-19T10:00:00Z")).await;
    let mut retry = input.clone();
    retry["expectedVersion"] = json!(first.stream_version - 1);
    let late = s.record("recordSession", retry).await;
    assert_eq!((late.position, late.deduplicated), (first.position, true));

    // The same id with other content is a conflict, and writes nothing.
    let committed = s.committed().await;
    let mut other = input.clone();
    other["at"] = json!("2016-01-13T10:00:00Z");
    let err = s.rejects("recordSession", other, "IDEMPOTENCY_CONFLICT").await;
    assert!(err["message"].as_str().expect("message").contains(&key.to_string()), "{err}");
    // ... also when used for another kind of recording or another patient's stream.
    s.rejects(
        "registerPatient",
        json!({ "patientId": id(), "birthYear": 2000, "gender": "UNKNOWN", "eventId": key }),
        "IDEMPOTENCY_CONFLICT",
    )
    .await;
    assert_eq!(s.committed().await, committed);

    // A retried registration is a retry, not a duplicate patient.
    let (q, reg_key) = (id(), id());
    let reg = json!({ "patientId": q, "birthYear": 1999, "gender": "FEMALE", "eventId": reg_key });
    let r1 = s.record("registerPatient", reg.clone()).await;
    let r2 = s.record("registerPatient", reg).await;
    assert_eq!((r2.position, r2.stream_version, r2.deduplicated), (r1.position, 0, true));
    // Without the key, registering again is a duplicate.
    s.rejects("registerPatient", json!({ "patientId": q, "birthYear": 1999, "gender": "FEMALE" }), "ALREADY_EXISTS")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_expected_versions_when_recording_then_only_the_current_version_is_accepted() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;

    // -1: only if the stream does not exist yet.
    let p = id();
    let reg = s
        .record(
            "registerPatient",
            json!({ "patientId": p, "birthYear": 1980, "gender": "MALE", "expectedVersion": -1 }),
        )
        .await;
    assert_eq!(reg.stream_version, 0);
    let err = s
        .rejects(
            "registerPatient",
            json!({ "patientId": p, "birthYear": 1980, "gender": "MALE", "expectedVersion": -1 }),
            "WRONG_EXPECTED_VERSION",
        )
        .await;
    assert_eq!(err["extensions"]["currentVersion"], 0, "{err}");
    // On a stream that does not exist, any version is wrong, and currentVersion is null.
    let err = s
        .rejects(
            "registerPatient",
            json!({ "patientId": id(), "birthYear": 1980, "gender": "MALE", "expectedVersion": 0 }),
            "WRONG_EXPECTED_VERSION",
        )
        .await;
    assert!(err["extensions"]["currentVersion"].is_null(), "{err}");

    let e = id();
    let start = s
        .record(
            "startEpisode",
            json!({ "patientId": p, "episodeId": e, "serviceId": r.rph, "startedAt": "2016-01-11T09:00:00Z", "expectedVersion": 0 }),
        )
        .await;
    assert_eq!(start.stream_version, 1);

    // The patient's `version` is what to pass.
    let v = s.patient(p, "version").await["version"].as_u64().expect("version");
    assert_eq!(v, 1);
    let mut input = session(p, e, r.a, "2016-01-12T10:00:00Z");
    input["expectedVersion"] = json!(v);
    let ok = s.record("recordSession", input.clone()).await;
    assert_eq!(ok.stream_version, v + 1);

    // The same expectation again is now stale.
    let mut stale = session(p, e, r.a, "2016-01-13T10:00:00Z");
    stale["expectedVersion"] = json!(v);
    let err = s.rejects("recordSession", stale.clone(), "WRONG_EXPECTED_VERSION").await;
    assert_eq!(err["extensions"]["currentVersion"], json!(v + 1), "{err}");
    stale["expectedVersion"] = json!(v + 5);
    let err = s.rejects("recordSession", stale, "WRONG_EXPECTED_VERSION").await;
    assert_eq!(err["extensions"]["currentVersion"], json!(v + 1), "{err}");
    assert_eq!(s.patient(p, "version").await["version"], json!(v + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_32_concurrent_sessions_for_one_patient_when_recorded_then_versions_stay_contiguous_and_none_is_lost() {
    const N: usize = 32;
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await;
    let base = s.patient(p, "version").await["version"].as_u64().expect("version");
    let committed = s.committed().await;

    let inputs: Vec<_> = (0..N).map(|i| session(p, e, r.a, &format!("2016-02-{:02}T10:00:00Z", i % 28 + 1))).collect();
    let responses = join_all(inputs.iter().map(|input| s.try_record("recordSession", input.clone()))).await;

    let mut versions = Vec::new();
    let mut positions = Vec::new();
    for (i, resp) in responses.iter().enumerate() {
        match Recorded::from_json(&resp["data"]["recordSession"]) {
            Some(rec) => {
                versions.push(rec.stream_version);
                positions.push(rec.position);
            }
            None => {
                panic!("concurrent recording {i} failed: {resp}");
            }
        }
    }
    let ok = N;
    versions.sort_unstable();
    positions.sort_unstable();
    assert_eq!(versions, (base + 1..=base + ok as u64).collect::<Vec<_>>(), "stream versions are contiguous");
    assert_eq!(positions, (committed..committed + ok as u64).collect::<Vec<_>>(), "positions are contiguous");

    // Every acknowledged session is there exactly once; the refused ones wrote nothing.
    let after = s.patient(p, "version continuity { attendedSessions } history { streamVersion }").await;
    assert_eq!(after["continuity"]["attendedSessions"], ok);
    assert_eq!(after["version"], json!(base + ok as u64));
    let history: Vec<u64> = after["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["streamVersion"].as_u64().expect("streamVersion"))
        .collect();
    assert_eq!(history, (0..=base + ok as u64).collect::<Vec<_>>());
    assert_eq!(s.committed().await, committed + ok as u64);
    assert_eq!(s.health().await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_32_patients_recorded_concurrently_when_each_gets_a_session_then_all_succeed() {
    const N: usize = 32;
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let mut patients = Vec::new();
    for _ in 0..N {
        patients.push(patient_in_episode(&s, &r).await);
    }
    let committed = s.committed().await;
    let responses = join_all(
        patients.iter().map(|(p, e)| s.try_record("recordSession", session(*p, *e, r.a, "2016-01-12T10:00:00Z"))),
    )
    .await;
    let mut positions: Vec<u64> = responses
        .iter()
        .map(|resp| {
            let rec = Recorded::from_json(&resp["data"]["recordSession"]).unwrap_or_else(|| panic!("{resp}"));
            assert_eq!(rec.stream_version, 3, "each patient's fourth event");
            rec.position
        })
        .collect();
    positions.sort_unstable();
    assert_eq!(positions, (committed..committed + N as u64).collect::<Vec<_>>());
    for (p, _) in &patients {
        assert_eq!(s.patient(*p, "continuity { attendedSessions }").await["continuity"]["attendedSessions"], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_16_concurrent_identical_retries_when_recorded_then_one_event_is_written_and_all_get_its_placing() {
    const N: usize = 16;
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await;
    let committed = s.committed().await;

    let mut input = session(p, e, r.a, "2016-01-12T10:00:00Z");
    input["eventId"] = json!(id());
    let responses = join_all((0..N).map(|_| s.try_record("recordSession", input.clone()))).await;
    let recs: Vec<Recorded> = responses
        .iter()
        .map(|resp| {
            Recorded::from_json(&resp["data"]["recordSession"]).unwrap_or_else(|| panic!("a retry failed: {resp}"))
        })
        .collect();
    assert!(recs.iter().all(|x| (x.position, x.stream_version) == (committed, 3)), "{recs:?}");
    assert_eq!(recs.iter().filter(|x| !x.deduplicated).count(), 1, "exactly one call wrote: {recs:?}");
    assert_eq!(s.committed().await, committed + 1);
    assert_eq!(s.patient(p, "continuity { attendedSessions }").await["continuity"]["attendedSessions"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_identical_retries_racing_other_writers_when_recorded_then_the_event_is_written_once() {
    const PAIRS: usize = 8;
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await;

    for round in 0..4 {
        let committed = s.committed().await;
        let mut retried = session(p, e, r.a, "2016-01-12T10:00:00Z");
        retried["eventId"] = json!(id());
        let calls = (0..2 * PAIRS).map(|i| {
            let input = if i % 2 == 0 { retried.clone() } else { session(p, e, r.a, "2016-01-13T10:00:00Z") };
            let s = &s;
            async move { (i % 2 == 0, s.try_record("recordSession", input).await) }
        });
        let responses = join_all(calls).await;

        let mut placings = Vec::new();
        let mut others_ok = 0u64;
        for (is_retry, resp) in &responses {
            match (Recorded::from_json(&resp["data"]["recordSession"]), is_retry) {
                (Some(rec), true) => placings.push(rec),
                (Some(_), false) => others_ok += 1,
                (None, _) => panic!("round {round}: every call succeeds, retries included: {resp}"),
            }
        }
        // Every acknowledged retry names the same single placing, and one of them wrote it.
        assert!(
            placings.windows(2).all(|w| (w[0].position, w[0].event_id) == (w[1].position, w[1].event_id)),
            "{placings:?}"
        );
        assert_eq!(placings.len(), PAIRS, "round {round}");
        assert_eq!(others_ok, PAIRS as u64, "round {round}");
        let written = 1;
        assert_eq!(placings.iter().filter(|x| !x.deduplicated).count() as u64, written, "round {round}: {placings:?}");
        // The retried event is in the log at most once, next to the other writers' events.
        assert_eq!(s.committed().await, committed + written + others_ok, "round {round}");
    }
}
