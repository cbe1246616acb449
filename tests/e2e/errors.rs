//! Bad input: the right `extensions.code`, nothing appended, and the server still answering.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::*;

/// A patient with some history to break rules against:
/// - referral r1 to RPH, decided ACCEPTED; referral r2 to the outpatient clinic, undecided;
/// - episode e1 at RPH from 2016-01-11, open, therapist A assigned, one session s1 on 2016-01-12;
/// - episode e2 at the outpatient clinic 2016-02-01 to 2016-02-10 (ended), from an accepted referral r3;
/// - admission adm1 to the ward from 2016-03-01, not discharged.
struct World {
    r: Reference,
    p: Uuid,
    r1: Uuid,
    r2: Uuid,
    e1: Uuid,
    e2: Uuid,
    s1: Uuid,
}

async fn world(s: &Server) -> World {
    let r = Reference::register(s).await;
    let (p, r2, e1, e2, s1, adm1) = (id(), id(), id(), id(), id(), id());
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1970, "gender": "OTHER" })).await;
    let r1 = accepted_referral(s, p, r.rph, "GP", "2016-01-04T09:00:00Z", "2016-01-05T09:00:00Z").await;
    s.record(
        "receiveReferral",
        json!({ "patientId": p, "referralId": r2, "serviceId": r.pol, "source": "NAV", "receivedAt": "2016-01-20T09:00:00Z" }),
    )
    .await;
    s.record(
        "startEpisode",
        json!({ "patientId": p, "episodeId": e1, "serviceId": r.rph, "referralId": r1, "startedAt": "2016-01-11T09:00:00Z" }),
    )
    .await;
    s.record(
        "assignTherapist",
        json!({ "patientId": p, "episodeId": e1, "therapistId": r.a, "assignedAt": "2016-01-11T09:00:00Z" }),
    )
    .await;
    s.record(
        "recordSession",
        json!({ "patientId": p, "episodeId": e1, "sessionId": s1, "therapistId": r.a, "attendance": "ATTENDED", "at": "2016-01-12T10:00:00Z" }),
    )
    .await;
    // The clinic's episode comes from a third referral (a specialist episode needs one).
    let r3 = accepted_referral(s, p, r.pol, "GP", "2016-01-21T09:00:00Z", "2016-01-25T09:00:00Z").await;
    s.record(
        "startEpisode",
        json!({ "patientId": p, "episodeId": e2, "serviceId": r.pol, "referralId": r3, "startedAt": "2016-02-01T09:00:00Z" }),
    )
    .await;
    s.record(
        "endEpisode",
        json!({ "patientId": p, "episodeId": e2, "reason": "COMPLETED", "endedAt": "2016-02-10T09:00:00Z" }),
    )
    .await;
    s.record(
        "admitPatient",
        json!({ "patientId": p, "admissionId": adm1, "serviceId": r.ward, "admittedAt": "2016-03-01T08:00:00Z" }),
    )
    .await;
    World { r, p, r1, r2, e1, e2, s1 }
}

fn outcome(w: &World, instrument: &str, items: Value) -> Value {
    json!({ "patientId": w.p, "episodeId": w.e1, "instrument": instrument, "phase": "INTERIM",
            "items": items, "measuredAt": "2016-01-20T09:00:00Z" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_unknown_or_duplicate_ids_when_recording_then_not_found_or_already_exists_and_nothing_is_appended() {
    let s = Server::start().await;
    let w = world(&s).await;
    let stranger = id();

    // Unknown patient.
    let e = s
        .rejects(
            "receiveReferral",
            json!({ "patientId": stranger, "referralId": id(), "serviceId": w.r.rph, "source": "GP", "receivedAt": "2016-01-04T09:00:00Z" }),
            "NOT_FOUND",
        )
        .await;
    assert!(
        e["message"].as_str().expect("message").contains(&stranger.to_string()),
        "the message names the patient: {e}"
    );
    s.rejects("recordSession", session(stranger, w.e1, w.r.a, "2016-01-13T10:00:00Z"), "NOT_FOUND").await;
    assert_eq!(s.patient(stranger, "id").await, Value::Null, "a refused recording creates no patient");

    // Unknown service, for a referral, an episode and an admission.
    s.rejects(
        "receiveReferral",
        json!({ "patientId": w.p, "referralId": id(), "serviceId": id(), "source": "GP", "receivedAt": "2016-01-04T09:00:00Z" }),
        "NOT_FOUND",
    )
    .await;
    s.rejects(
        "startEpisode",
        json!({ "patientId": w.p, "episodeId": id(), "serviceId": id(), "startedAt": "2016-01-11T09:00:00Z" }),
        "NOT_FOUND",
    )
    .await;
    s.rejects(
        "admitPatient",
        json!({ "patientId": w.p, "admissionId": id(), "serviceId": id(), "admittedAt": "2016-06-01T08:00:00Z" }),
        "NOT_FOUND",
    )
    .await;

    // Unknown therapist, unknown episode.
    s.rejects("recordSession", session(w.p, w.e1, id(), "2016-01-13T10:00:00Z"), "NOT_FOUND").await;
    s.rejects("recordSession", session(w.p, id(), w.r.a, "2016-01-13T10:00:00Z"), "NOT_FOUND").await;

    // Duplicates: patient, service, therapist, session id, referral id, episode id.
    s.rejects("registerPatient", json!({ "patientId": w.p, "birthYear": 1970, "gender": "OTHER" }), "ALREADY_EXISTS")
        .await;
    s.rejects(
        "registerService",
        json!({ "serviceId": w.r.rph, "name": "RPH", "careLevel": "MUNICIPAL" }),
        "ALREADY_EXISTS",
    )
    .await;
    s.rejects("registerTherapist", json!({ "therapistId": w.r.a, "name": "A" }), "ALREADY_EXISTS").await;
    s.rejects(
        "recordSession",
        json!({ "patientId": w.p, "episodeId": w.e1, "sessionId": w.s1, "therapistId": w.r.a,
                "attendance": "NO_SHOW", "at": "2016-01-19T10:00:00Z" }),
        "ALREADY_EXISTS",
    )
    .await;
    s.rejects(
        "receiveReferral",
        json!({ "patientId": w.p, "referralId": w.r1, "serviceId": w.r.rph, "source": "GP", "receivedAt": "2016-01-04T09:00:00Z" }),
        "ALREADY_EXISTS",
    )
    .await;
    s.rejects(
        "startEpisode",
        json!({ "patientId": w.p, "episodeId": w.e1, "serviceId": w.r.rph, "startedAt": "2016-01-11T09:00:00Z" }),
        "ALREADY_EXISTS",
    )
    .await;

    // Discharge of an admission that does not exist.
    s.rejects(
        "dischargePatient",
        json!({ "patientId": w.p, "admissionId": id(), "dischargedAt": "2016-03-05T12:00:00Z" }),
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_inputs_that_break_pathway_rules_when_recording_then_invalid_input_and_nothing_is_appended() {
    let s = Server::start().await;
    let w = world(&s).await;

    // A session before its episode started, and one after its episode ended.
    s.rejects("recordSession", session(w.p, w.e1, w.r.a, "2016-01-10T10:00:00Z"), "INVALID_INPUT").await;
    s.rejects("recordSession", session(w.p, w.e2, w.r.a, "2016-02-11T10:00:00Z"), "INVALID_INPUT").await;

    // An admission at a service that is not SPECIALIST_INPATIENT.
    s.rejects(
        "admitPatient",
        json!({ "patientId": w.p, "admissionId": id(), "serviceId": w.r.pol, "admittedAt": "2016-06-01T08:00:00Z" }),
        "INVALID_INPUT",
    )
    .await;
    // An admission overlapping the open one.
    s.rejects(
        "admitPatient",
        json!({ "patientId": w.p, "admissionId": id(), "serviceId": w.r.ward, "admittedAt": "2016-03-03T08:00:00Z" }),
        "INVALID_INPUT",
    )
    .await;

    // Releasing a therapist who is not assigned to the episode.
    s.rejects(
        "releaseTherapist",
        json!({ "patientId": w.p, "episodeId": w.e1, "therapistId": w.r.b, "reason": "TRANSFER",
                "patientNotified": true, "releasedAt": "2016-01-20T09:00:00Z" }),
        "INVALID_INPUT",
    )
    .await;

    // Outcome items: PHQ-9 takes exactly 9, GAD-7 exactly 7, each scored 0 to 3.
    s.rejects("recordOutcome", outcome(&w, "PHQ9", json!([1, 1, 1, 1, 1, 1, 1, 1])), "INVALID_INPUT").await;
    s.rejects("recordOutcome", outcome(&w, "PHQ9", json!([1, 1, 1, 1, 1, 1, 1, 1, 1, 1])), "INVALID_INPUT").await;
    s.rejects("recordOutcome", outcome(&w, "PHQ9", json!([0, 0, 0, 0, 4, 0, 0, 0, 0])), "INVALID_INPUT").await;
    s.rejects("recordOutcome", outcome(&w, "PHQ9", json!([0, 0, 0, 0, -1, 0, 0, 0, 0])), "INVALID_INPUT").await;
    s.rejects("recordOutcome", outcome(&w, "GAD7", json!([1, 1, 1, 1, 1, 1, 1, 1, 1])), "INVALID_INPUT").await;
    // ... while a well-formed one is accepted.
    s.record("recordOutcome", outcome(&w, "GAD7", json!([3, 3, 0, 0, 1, 2, 3]))).await;

    // An episode ending before it started; an episode ending twice.
    s.rejects(
        "endEpisode",
        json!({ "patientId": w.p, "episodeId": w.e1, "reason": "COMPLETED", "endedAt": "2016-01-01T09:00:00Z" }),
        "INVALID_INPUT",
    )
    .await;
    s.rejects(
        "endEpisode",
        json!({ "patientId": w.p, "episodeId": w.e2, "reason": "COMPLETED", "endedAt": "2016-02-11T09:00:00Z" }),
        "INVALID_INPUT",
    )
    .await;

    // A referral decided twice; a rejection without a reason; a discharge before the admission.
    s.rejects(
        "decideReferral",
        json!({ "patientId": w.p, "referralId": w.r1, "decision": "ACCEPTED", "decidedAt": "2016-01-06T09:00:00Z" }),
        "INVALID_INPUT",
    )
    .await;
    s.rejects(
        "decideReferral",
        json!({ "patientId": w.p, "referralId": w.r2, "decision": "REJECTED", "decidedAt": "2016-01-21T09:00:00Z" }),
        "INVALID_INPUT",
    )
    .await;
    // With a reason the same rejection is accepted.
    s.record(
        "decideReferral",
        json!({ "patientId": w.p, "referralId": w.r2, "decision": "REJECTED", "reason": "CAPACITY", "decidedAt": "2016-01-21T09:00:00Z" }),
    )
    .await;

    // A decision before its referral was received.
    let r3 = id();
    s.record(
        "receiveReferral",
        json!({ "patientId": w.p, "referralId": r3, "serviceId": w.r.pol, "source": "RELATIVE", "receivedAt": "2016-04-04T09:00:00Z" }),
    )
    .await;
    let e = s
        .rejects(
            "decideReferral",
            json!({ "patientId": w.p, "referralId": r3, "decision": "ACCEPTED", "decidedAt": "2016-04-03T09:00:00Z" }),
            "INVALID_INPUT",
        )
        .await;
    assert!(e["message"].as_str().expect("message").contains("before"), "{e}");

    // Clinical times the log cannot store (it keeps nanoseconds from 1677 to 2262).
    for at in ["2300-01-01T00:00:00Z", "1600-01-01T00:00:00Z", "+10000-01-01T00:00:00Z"] {
        s.rejects("recordSession", session(w.p, w.e1, w.r.a, at), "INVALID_INPUT").await;
    }
    s.rejects(
        "startEpisode",
        json!({ "patientId": w.p, "episodeId": id(), "serviceId": w.r.rph, "startedAt": "1600-01-01T00:00:00Z" }),
        "INVALID_INPUT",
    )
    .await;

    // Out-of-range plain values.
    s.rejects("registerPatient", json!({ "patientId": id(), "birthYear": 1800, "gender": "FEMALE" }), "INVALID_INPUT")
        .await;
    s.rejects("registerPatient", json!({ "patientId": id(), "birthYear": 2099, "gender": "FEMALE" }), "INVALID_INPUT")
        .await;
    s.rejects("registerService", json!({ "serviceId": id(), "name": "  ", "careLevel": "MUNICIPAL" }), "INVALID_INPUT")
        .await;
    s.rejects("registerTherapist", json!({ "therapistId": id(), "name": "C", "hprNumber": "12ab" }), "INVALID_INPUT")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_stale_expected_version_when_recording_then_wrong_expected_version_and_nothing_is_appended() {
    let s = Server::start().await;
    let w = world(&s).await;
    let version = s.patient(w.p, "version").await["version"].as_u64().expect("version");
    assert_eq!(version, 11, "twelve events on the patient's stream");

    let mut input = session(w.p, w.e1, w.r.a, "2016-01-19T10:00:00Z");
    input["expectedVersion"] = json!(version - 1);
    let e = s.rejects("recordSession", input.clone(), "WRONG_EXPECTED_VERSION").await;
    assert_eq!(e["extensions"]["currentVersion"], json!(version), "{e}");
    // A negative version other than -1 is not a version.
    input["expectedVersion"] = json!(-2);
    s.rejects("recordSession", input.clone(), "INVALID_INPUT").await;
    // The current version is accepted.
    input["expectedVersion"] = json!(version);
    let r = s.record("recordSession", input).await;
    assert_eq!(r.stream_version, version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_malformed_requests_when_posted_then_coded_errors_and_the_server_keeps_serving() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await;
    let before = s.committed().await;

    // Malformed JSON bodies: HTTP 400 with INVALID_INPUT, whatever the declared content type.
    for (body, ct) in [
        ("{bad", "application/json"),
        ("", "application/json"),
        ("[1, 2", "application/json"),
        ("{\"query\": 42}", "application/json"),
        ("[\"{ log { committed } }\"]", "application/json"),
        ("\"{ log { committed } }\"", "application/json"),
    ] {
        let (status, v) = s.post_raw(body, ct).await;
        assert_eq!(status, 400, "body {body:?}: {v}");
        assert_eq!(error_code(&v), Some("INVALID_INPUT"), "body {body:?}: {v}");
        assert!(v["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }

    // Malformed GraphQL, unknown fields and arguments, wrong types: errors with a code.
    for q in [
        "{ log { ",
        "mutation { registerPatient(input: { patientId: \"x\" ",
        "{ nope }",
        "{ log { committed nope } }",
        "{ services { id } } extra",
        "query { patient(id: \"not-a-uuid\") { id } }",
        "query { patient(id: 1) { id } }",
        "{ events(first: \"three\") { edges { cursor } } }",
        "subscription { events { position } }",
        "mutation { recordSession(input: {}) { position } }",
    ] {
        let v = s.gql(q, json!({})).await;
        assert!(v["data"].is_null(), "{q}: {v}");
        assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{q}: {v}");
    }

    // An invalid DateTime (or UUID) in a variable is refused before anything is recorded.
    let mut input = session(p, e, r.a, "2016-13-45T99:00:00Z");
    let q = "mutation($in: RecordSessionInput!) { recordSession(input: $in) { position } }";
    let v = s.gql(q, json!({ "in": input })).await;
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{v}");
    input["at"] = json!("yesterday");
    let v = s.gql(q, json!({ "in": input })).await;
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{v}");
    input["at"] = json!("2016-01-20T10:00:00Z");
    input["patientId"] = json!("not-a-uuid");
    let v = s.gql(q, json!({ "in": input })).await;
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{v}");
    // A missing required variable.
    let v = s.gql(q, json!({})).await;
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{v}");

    // A body over the 2 MiB limit is refused as such.
    let huge = format!("{{\"query\": \"{}\"}}", "a".repeat(3 * 1024 * 1024));
    if let Ok(r) = s
        .client()
        .post(format!("{}/graphql", s.url))
        .bearer_auth(&s.admin)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
    {
        assert_eq!(r.status(), 413);
    }

    assert_eq!(s.committed().await, before, "malformed requests appended to the log");
    let h = s.health().await;
    assert_eq!(h["status"], "ok");
    // And real work still goes through.
    s.record("recordSession", session(p, e, r.a, "2016-01-20T10:00:00Z")).await;
    assert_eq!(s.committed().await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_disguised_names_placeholder_ids_leap_seconds_or_future_dates_when_recording_then_invalid_input() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await;
    for name in ["ab\u{0}cd", "Dr \u{202e}evil\u{202c}", "a\u{1b}[31m", "zero\u{200b}width", "\u{feff}bom", "  "] {
        let err = s
            .rejects(
                "registerService",
                json!({ "serviceId": id(), "name": name, "careLevel": "MUNICIPAL" }),
                "INVALID_INPUT",
            )
            .await;
        assert!(err["message"].as_str().unwrap().contains("name"), "{err}");
    }
    // Clean names are trimmed and normalised to NFC before they are stored.
    let sid = id();
    s.record(
        "registerService",
        json!({ "serviceId": sid, "name": "  Bjo\u{0308}rnstad DPS ", "careLevel": "MUNICIPAL" }),
    )
    .await;
    let names = s.query("{ services { id name } }", json!({})).await;
    let stored = names["services"].as_array().unwrap().iter().find(|x| x["id"] == json!(sid)).unwrap()["name"].clone();
    assert_eq!(stored, "Björnstad DPS");

    for placeholder in ["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"] {
        s.rejects(
            "registerPatient",
            json!({ "patientId": placeholder, "birthYear": 1990, "gender": "MALE" }),
            "INVALID_INPUT",
        )
        .await;
        let mut input = session(p, e, r.a, "2016-01-20T10:00:00Z");
        input["sessionId"] = json!(placeholder);
        s.rejects("recordSession", input, "INVALID_INPUT").await;
    }
    s.rejects("recordSession", session(p, e, r.a, "2016-12-31T23:59:60Z"), "INVALID_INPUT").await;
    let tomorrow_and_more = (chrono::Utc::now() + chrono::Duration::hours(30)).to_rfc3339();
    let err = s.rejects("recordSession", session(p, e, r.a, &tomorrow_and_more), "INVALID_INPUT").await;
    assert!(
        err["message"].as_str().unwrap().contains("at ") && err["message"].as_str().unwrap().contains("24 h"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_outcome_or_release_dated_outside_its_episode_when_recorded_then_invalid_input_naming_the_field() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await; // started 2016-01-11, therapist A assigned
    let outcome = json!({ "patientId": p, "episodeId": e, "instrument": "PHQ9", "phase": "INTAKE",
        "items": [1, 1, 1, 1, 1, 1, 1, 1, 1], "measuredAt": "2016-01-01T10:00:00Z" });
    let err = s.rejects("recordOutcome", outcome, "INVALID_INPUT").await;
    assert!(err["message"].as_str().unwrap().contains("measuredAt"), "{err}");
    s.record(
        "endEpisode",
        json!({ "patientId": p, "episodeId": e, "reason": "COMPLETED", "endedAt": "2016-03-01T00:00:00Z" }),
    )
    .await;
    let release = json!({ "patientId": p, "episodeId": e, "therapistId": r.a, "reason": "SICK_LEAVE",
        "patientNotified": false, "releasedAt": "2016-04-01T00:00:00Z" });
    let err = s.rejects("releaseTherapist", release, "INVALID_INPUT").await;
    assert!(err["message"].as_str().unwrap().contains("releasedAt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_referral_undecided_used_or_decided_later_or_none_for_specialist_care_when_starting_an_episode_then_invalid_input(
) {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let p = id();
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1990, "gender": "FEMALE" })).await;
    let referral = id();
    s.record(
        "receiveReferral",
        json!({ "patientId": p, "referralId": referral, "serviceId": r.pol, "source": "GP", "receivedAt": "2016-02-01T09:00:00Z" }),
    )
    .await;
    let start = |episode: Uuid, referral: Option<Uuid>, at: &str| json!({ "patientId": p, "episodeId": episode, "serviceId": r.pol, "referralId": referral, "startedAt": at });
    let before = s.committed().await;
    // Undecided.
    let err = s.rejects("startEpisode", start(id(), Some(referral), "2016-02-10T09:00:00Z"), "INVALID_INPUT").await;
    assert!(err["message"].as_str().unwrap().contains("not decided"), "{err}");
    s.record(
        "decideReferral",
        json!({ "patientId": p, "referralId": referral, "decision": "ACCEPTED", "decidedAt": "2016-02-05T09:00:00Z" }),
    )
    .await;
    // Dated before the decision.
    let err = s.rejects("startEpisode", start(id(), Some(referral), "2016-02-03T09:00:00Z"), "INVALID_INPUT").await;
    assert!(err["message"].as_str().unwrap().contains("startedAt"), "{err}");
    // No referral for specialist care, unless acute.
    let err = s.rejects("startEpisode", start(id(), None, "2016-02-10T09:00:00Z"), "INVALID_INPUT").await;
    assert!(err["message"].as_str().unwrap().contains("referralId"), "{err}");
    assert_eq!(s.committed().await, before + 1, "only the decision was appended");

    s.record("startEpisode", start(id(), Some(referral), "2016-02-10T09:00:00Z")).await;
    // A referral opens one episode.
    let err = s.rejects("startEpisode", start(id(), Some(referral), "2016-03-10T09:00:00Z"), "INVALID_INPUT").await;
    assert!(err["message"].as_str().unwrap().contains("already opened"), "{err}");

    // An emergency admission without a referral, flagged as such, is taken and shown.
    let acute = id();
    let mut input = start(acute, None, "2016-04-01T02:00:00Z");
    input["serviceId"] = json!(r.ward);
    input["acute"] = json!(true);
    s.record("startEpisode", input).await;
    let v = s.patient(p, "episodes { id acute referralId }").await;
    let episodes = v["episodes"].as_array().unwrap();
    assert!(episodes.iter().any(|e| e["id"] == json!(acute) && e["acute"] == json!(true)), "{v}");
    assert!(episodes.iter().any(|e| e["acute"] == json!(false) && e["referralId"] == json!(referral)), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_id_another_patient_already_uses_when_recording_then_invalid_input_naming_the_field() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (first, _) = patient_in_episode(&s, &r).await;
    let v = s.patient(first, "episodes { id }").await;
    let episode = v["episodes"][0]["id"].as_str().unwrap().to_owned();
    let session_id = id();
    let mut first_session = session(first, episode.parse().unwrap(), r.a, "2016-01-12T10:00:00Z");
    first_session["sessionId"] = json!(session_id);
    s.record("recordSession", first_session.clone()).await;

    let second = id();
    s.record("registerPatient", json!({ "patientId": second, "birthYear": 1991, "gender": "MALE" })).await;
    // The first patient's episode id, for the second patient.
    let err = s
        .rejects(
            "startEpisode",
            json!({ "patientId": second, "episodeId": episode, "serviceId": r.rph, "startedAt": "2016-01-11T09:00:00Z" }),
            "INVALID_INPUT",
        )
        .await;
    assert!(err["message"].as_str().unwrap().contains("episodeId"), "{err}");
    assert!(err["message"].as_str().unwrap().contains("another patient"), "{err}");
    // A fresh episode for the second patient, then the first patient's session id in it.
    let own = id();
    s.record(
        "startEpisode",
        json!({ "patientId": second, "episodeId": own, "serviceId": r.rph, "startedAt": "2016-01-11T09:00:00Z" }),
    )
    .await;
    let mut clash = session(second, own, r.a, "2016-01-12T10:00:00Z");
    clash["sessionId"] = json!(session_id);
    let err = s.rejects("recordSession", clash, "INVALID_INPUT").await;
    assert!(err["message"].as_str().unwrap().contains("sessionId"), "{err}");
    // The same fact again for its own patient is still an idempotent retry or ALREADY_EXISTS, as before.
    let again = s.try_record("recordSession", first_session).await;
    assert_ne!(error_code(&again), Some("INVALID_INPUT"), "{again}");
}
