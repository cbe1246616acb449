//! The global log as a cursor connection, the event envelope, and a patient's history.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::support::*;

const PAGE: &str = "query($after: String, $first: Int!) { events(after: $after, first: $first) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id stream streamVersion position type schemaVersion occurredAt recordedAt actor hash payload } } } }";

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_log_when_paged_three_at_a_time_then_every_event_appears_once_in_order_with_its_envelope() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await;
    let (q, _) = patient_in_episode(&s, &r).await;
    let mut sessions = Vec::new();
    for day in 12..16 {
        let input = session(p, e, r.a, &format!("2016-01-{day}T10:00:00Z"));
        sessions.push((s.record("recordSession", input.clone()).await, input));
    }
    let committed = s.committed().await;
    assert_eq!(committed, 6 + 3 + 3 + 4);

    // First page.
    let first = s.query(PAGE, json!({ "first": 3 })).await;
    let conn = &first["events"];
    let edges = conn["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 3);
    assert_eq!(conn["pageInfo"]["hasPreviousPage"], false);
    assert_eq!(conn["pageInfo"]["hasNextPage"], true);
    assert_eq!(conn["pageInfo"]["endCursor"], edges[2]["cursor"]);

    // Follow the cursors to the end.
    let mut all: Vec<Value> = edges.iter().map(|e| e["node"].clone()).collect();
    let mut cursor = edges[2]["cursor"].clone();
    let mut pages = 1;
    loop {
        let page = s.query(PAGE, json!({ "after": cursor, "first": 3 })).await;
        let conn = &page["events"];
        let edges = conn["edges"].as_array().expect("edges");
        pages += 1;
        assert!(pages <= 10, "paging does not end");
        assert!(edges.len() <= 3);
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], true);
        all.extend(edges.iter().map(|e| e["node"].clone()));
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        cursor = edges.last().expect("a page with a next page is not empty")["cursor"].clone();
    }
    let positions: Vec<u64> = all.iter().map(|n| n["position"].as_u64().expect("position")).collect();
    assert_eq!(positions, (0..committed).collect::<Vec<_>>(), "pages cover the log in order without gaps");

    // Past the end: empty.
    let end = s.query(PAGE, json!({ "after": (committed - 1).to_string(), "first": 3 })).await;
    assert_eq!(end["events"]["edges"], json!([]));
    assert_eq!(end["events"]["pageInfo"]["hasNextPage"], false);

    // The envelope.
    let mut ids = HashSet::new();
    let mut hashes = HashSet::new();
    for n in &all {
        assert!(n["id"].as_str().and_then(|s| s.parse::<uuid::Uuid>().ok()).is_some(), "{n}");
        ids.insert(n["id"].as_str().expect("id").to_owned());
        let stream = n["stream"].as_str().expect("stream");
        assert!(
            ["patient-", "service-", "therapist-"].iter().any(|pre| stream.starts_with(pre)),
            "stream name {stream}"
        );
        assert!(n["streamVersion"].as_u64().is_some(), "{n}");
        assert!(n["type"].as_str().is_some_and(|t| !t.is_empty()), "{n}");
        assert!(n["schemaVersion"].as_u64().is_some_and(|v| v >= 1), "{n}");
        assert!(n["occurredAt"].as_str().is_some_and(|t| t.len() >= 20), "{n}");
        assert!(n["recordedAt"].as_str().is_some_and(|t| t.len() >= 20), "{n}");
        assert!(n["actor"].as_str().is_some_and(|a| !a.is_empty()), "{n}");
        let hash = n["hash"].as_str().expect("hash");
        assert!(is_hex64(hash), "hash {hash} is 64 hex characters");
        hashes.insert(hash.to_owned());
        assert!(n["payload"].is_object(), "{n}");
    }
    assert_eq!(ids.len(), all.len(), "event ids are unique");
    assert_eq!(hashes.len(), all.len(), "chain hashes are unique");
    let types: Vec<&str> = all.iter().map(|n| n["type"].as_str().expect("type")).collect();
    assert_eq!(
        &types[..7],
        [
            "ServiceRegistered",
            "ServiceRegistered",
            "ServiceRegistered",
            "TherapistRegistered",
            "TherapistRegistered",
            "TherapistRegistered",
            "PatientRegistered"
        ]
    );

    // A session's envelope: clinical time as occurredAt, the payload as recorded.
    let (rec, input) = &sessions[0];
    let node = &all[rec.position as usize];
    assert_eq!(node["id"], json!(rec.event_id));
    assert_eq!(node["type"], "SessionRecorded");
    assert_eq!(node["stream"], json!(format!("patient-{p}")));
    assert_eq!(node["streamVersion"], json!(rec.stream_version));
    assert_eq!(utc(node["occurredAt"].as_str().expect("occurredAt")), "2016-01-12T10:00:00Z");
    assert_eq!(node["payload"]["session_id"], input["sessionId"]);
    assert_eq!(node["payload"]["therapist_id"], json!(r.a));
    assert_eq!(node["payload"]["attendance"], "ATTENDED");

    // The patient's history: their own stream, oldest first, the same events as in the log.
    let hist = s.patient(p, "history { id stream streamVersion position type hash }").await;
    let hist = hist["history"].as_array().expect("history");
    let from_log: Vec<&Value> = all.iter().filter(|n| n["stream"] == json!(format!("patient-{p}"))).collect();
    assert_eq!(hist.len(), 3 + 4);
    assert_eq!(hist.len(), from_log.len());
    for (i, (h, l)) in hist.iter().zip(&from_log).enumerate() {
        assert_eq!(h["streamVersion"], json!(i), "{h}");
        for f in ["id", "stream", "position", "type", "hash"] {
            assert_eq!(h[f], l[f], "history and log disagree on {f}: {h} vs {l}");
        }
    }
    let other = s.patient(q, "history { stream }").await;
    assert!(other["history"].as_array().expect("history").iter().all(|h| h["stream"] == json!(format!("patient-{q}"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_bad_paging_arguments_when_querying_events_then_invalid_input() {
    let s = Server::start().await;
    Reference::register(&s).await;
    for vars in [
        json!({ "first": 1001 }),
        json!({ "first": -1 }),
        json!({ "first": 3, "after": "not-a-position" }),
        json!({ "first": 3, "after": "-1" }),
    ] {
        let v = s.gql(PAGE, vars.clone()).await;
        assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{vars}: {v}");
    }
    // first: 0 is a valid, empty page; the default page holds the whole (small) log.
    let v = s.query(PAGE, json!({ "first": 0 })).await;
    assert_eq!(v["events"]["edges"], json!([]));
    let v = s.query("{ events { edges { cursor } } }", json!({})).await;
    assert_eq!(v["events"]["edges"].as_array().expect("edges").len(), 6);
}
