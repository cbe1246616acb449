//! Dashboard analytics through the running server: the rph2016 profile reproduces the published
//! figures, care alerts and service overviews answer, and bad parameters get coded errors.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::subscriptions::{connect, recv, send, Protocol};
use crate::support::*;

const REPORT: &str = "query($s: UUID!, $from: DateTime!, $to: DateTime!) {
  pathwayReport(serviceId: $s, from: $from, to: $to) {
    episodes patients
    gender { key count } referralSources { key count } endReasons { key count } ageGroups { key count }
    phq9 { intakeCount intakeMean dischargeCount dischargeMean pairedCount meanChange missingPairs reliablyImproved recovered }
    gad7 { intakeCount intakeMean dischargeCount dischargeMean pairedCount meanChange missingPairs reliablyImproved recovered }
    recovery { eligible atCaseness recovered reliablyImproved reliablyDeteriorated reliablyRecovered recoveryRate }
    waitingDays { count mean median p90 min max }
    sessionsPerEpisode { count mean median p90 min max }
    referrals { received accepted rejected rejectedForCapacity undecided }
    continuity { patientsWithTransition transitions transitionsKeepingTherapist handovers handoversWithoutNotification meanCoc }
  } }";

fn count(list: &Value, key: &str) -> u64 {
    list.as_array()
        .and_then(|l| l.iter().find(|c| c["key"] == key))
        .and_then(|c| c["count"].as_u64())
        .unwrap_or_else(|| panic!("no key {key} in {list}"))
}

async fn service_named(s: &Server, name: &str) -> Uuid {
    let services = s.query("{ services { id name careLevel } }", json!({})).await;
    let found = services["services"].as_array().expect("services").iter().find(|x| x["name"] == name);
    found.and_then(|x| x["id"].as_str()).and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("no {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_rph2016_profile_when_reporting_2016_then_the_published_basis_figures_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    run_ok(&["seed", "--data", data, "--profile", "rph2016"]);
    let s = Server::start_in(dir.path(), &[]).await;
    let rph = service_named(&s, "Rask psykisk helsehjelp Gamle Oslo").await;
    let vars = json!({ "s": rph, "from": "2016-01-01T00:00:00Z", "to": "2017-01-01T00:00:00Z" });
    let r = &s.query(REPORT, vars).await["pathwayReport"];

    assert_eq!(r["episodes"], 304);
    assert_eq!(r["patients"], 304);
    let g = &r["gender"];
    assert_eq!((count(g, "FEMALE"), count(g, "MALE"), count(g, "UNKNOWN"), count(g, "OTHER")), (199, 101, 4, 0));
    let src = &r["referralSources"];
    assert_eq!(
        (count(src, "SELF"), count(src, "HEALTH_PERSONNEL"), count(src, "RELATIVE"), count(src, "NONE")),
        (236, 30, 11, 27)
    );
    let phq = &r["phq9"];
    assert_eq!((phq["pairedCount"].as_u64(), phq["missingPairs"].as_u64()), (Some(73), Some(231)));
    let near = |v: &Value, want: f64, what: &str| {
        let got = v.as_f64().unwrap_or_else(|| panic!("{what} missing"));
        assert!((got - want).abs() < 0.05, "{what} = {got}, published {want}");
    };
    near(&phq["intakeMean"], 13.5, "PHQ-9 intake mean");
    near(&phq["dischargeMean"], 8.6, "PHQ-9 discharge mean");
    near(&phq["meanChange"], 4.3, "PHQ-9 mean change");
    let gad = &r["gad7"];
    assert_eq!(gad["pairedCount"], 66);
    near(&gad["intakeMean"], 11.1, "GAD-7 intake mean");
    near(&gad["dischargeMean"], 6.8, "GAD-7 discharge mean");
    // Everything the 2016 report could not give: each key present, waiting times, continuity.
    assert_eq!(r["endReasons"].as_array().map(Vec::len), Some(6));
    assert_eq!(r["ageGroups"].as_array().map(Vec::len), Some(8));
    assert_eq!(r["recovery"]["eligible"], 66);
    let waited = r["waitingDays"]["count"].as_u64().expect("count");
    assert!((250..=277).contains(&waited), "referred episodes with an attended session: {waited}");
    assert_eq!(r["referrals"]["received"], 292);
    assert_eq!(r["referrals"]["rejectedForCapacity"], 10);
    assert!(r["continuity"]["patientsWithTransition"].as_u64() > Some(0), "onward referrals reach the DPS");
    assert!(r["continuity"]["meanCoc"].as_f64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_pathway_when_asking_for_alerts_and_overviews_then_they_follow_clinical_time() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await; // RPH episode from 2016-01-11, A assigned
    s.record("recordSession", session(p, e, r.a, "2016-01-12T10:00:00Z")).await;
    s.record(
        "releaseTherapist",
        json!({ "patientId": p, "episodeId": e, "therapistId": r.a, "reason": "SICK_LEAVE",
                "patientNotified": false, "releasedAt": "2016-01-20T09:00:00Z" }),
    )
    .await;
    let alerts = |as_of: &str| {
        let q = "query($t: DateTime!, $s: UUID) { careAlerts(asOf: $t, serviceId: $s) { kind patientId episodeId since days } }";
        let vars = json!({ "t": as_of, "s": r.rph });
        let s = &s;
        async move { s.query(q, vars).await["careAlerts"].as_array().cloned().expect("alerts") }
    };
    // Ten days after the release: not told, and unassigned for more than 7 days.
    let now = alerts("2016-01-30T09:00:00Z").await;
    let kinds: Vec<&str> = now.iter().filter_map(|a| a["kind"].as_str()).collect();
    assert_eq!(kinds, ["UNASSIGNED", "HANDOVER_NOT_NOTIFIED"]);
    assert_close(&now[0]["days"], 10.0, "unassigned days");
    let since = now[1]["since"].as_str().expect("since");
    assert!(since.starts_with("2016-01-20T09:00:00"), "the release time: {since}");
    // Two months on, silence too: the patient has fallen away; the unnotified release is old news.
    let later = alerts("2016-03-20T09:00:00Z").await;
    let kinds: Vec<&str> = later.iter().filter_map(|a| a["kind"].as_str()).collect();
    assert_eq!(kinds, ["UNASSIGNED", "INACTIVE"]);
    // Before the release nothing is wrong.
    assert!(alerts("2016-01-15T09:00:00Z").await.is_empty());

    let overview = s
        .query(
            "{ services { name openEpisodes(asOf: \"2016-02-01T00:00:00Z\")
                 waitingDays(from: \"2016-01-01T00:00:00Z\", to: \"2017-01-01T00:00:00Z\") { count }
                 referralOutcomes(from: \"2016-01-01T00:00:00Z\", to: \"2017-01-01T00:00:00Z\") { received } } }",
            json!({}),
        )
        .await;
    let rph = overview["services"].as_array().and_then(|l| l.iter().find(|x| x["name"] == "RPH")).cloned();
    let rph = rph.expect("RPH in services");
    assert_eq!((rph["openEpisodes"].as_u64(), rph["waitingDays"]["count"].as_u64()), (Some(1), Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_bad_report_parameters_when_asked_then_coded_errors() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let q = "query($s: UUID!, $f: DateTime!, $t: DateTime!, $b: [Int!]) { pathwayReport(serviceId: $s, from: $f, to: $t, ageBins: $b) { episodes } }";
    let cases = [
        (json!({ "s": id(), "f": "2016-01-01T00:00:00Z", "t": "2017-01-01T00:00:00Z" }), "NOT_FOUND"),
        (json!({ "s": r.rph, "f": "2017-01-01T00:00:00Z", "t": "2016-01-01T00:00:00Z" }), "INVALID_INPUT"),
        (
            json!({ "s": r.rph, "f": "2016-01-01T00:00:00Z", "t": "2017-01-01T00:00:00Z", "b": [16, 16] }),
            "INVALID_INPUT",
        ),
    ];
    for (vars, code) in cases {
        let resp = s.gql(q, vars.clone()).await;
        assert_eq!(error_code(&resp), Some(code), "{vars}: {resp}");
    }
    let reversed =
        "{ services { waitingDays(from: \"2017-01-01T00:00:00Z\", to: \"2016-01-01T00:00:00Z\") { count } } }";
    assert_eq!(error_code(&s.gql(reversed, json!({})).await), Some("INVALID_INPUT"));
    assert_eq!(s.health().await["status"], "ok");
    let resp = s.gql("{ careAlerts(asOf: \"2016-01-01T00:00:00Z\", inactiveDays: -1) { kind } }", json!({})).await;
    assert_eq!(error_code(&resp), Some("INVALID_INPUT"));
    // An empty cohort answers with every key and null means.
    let resp = s.gql(q, json!({ "s": r.rph, "f": "2016-01-01T00:00:00Z", "t": "2017-01-01T00:00:00Z" })).await;
    assert_eq!(ok_data(&resp)["pathwayReport"]["episodes"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_care_alert_subscription_when_a_therapist_leaves_without_notice_then_the_alert_is_pushed() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await;
    let from = s.committed().await;
    let mut ws = connect(&s, Protocol::TransportWs).await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", s.admin) } }))
        .await;
    assert_eq!(recv(&mut ws).await["type"], "connection_ack");
    let sub = "subscription($s: UUID, $f: Int) { careAlertRaised(serviceId: $s, fromPosition: $f) { kind patientId episodeId since days } }";
    send(
        &mut ws,
        json!({ "type": "subscribe", "id": "1", "payload": { "query": sub, "variables": { "s": r.rph, "f": from } } }),
    )
    .await;
    // A notified release raises nothing; an unnotified one does.
    s.record("recordSession", session(p, e, r.a, "2016-01-12T10:00:00Z")).await;
    s.record(
        "releaseTherapist",
        json!({ "patientId": p, "episodeId": e, "therapistId": r.a, "reason": "LEFT_POSITION",
                "patientNotified": false, "releasedAt": "2016-01-20T09:00:00Z" }),
    )
    .await;
    let msg = recv(&mut ws).await;
    assert_eq!(msg["type"], "next", "{msg}");
    let alert = &msg["payload"]["data"]["careAlertRaised"];
    assert_eq!(alert["kind"], "HANDOVER_NOT_NOTIFIED");
    assert_eq!(alert["patientId"], json!(p));
    assert_eq!(alert["episodeId"], json!(e));
    assert_eq!(alert["days"], 0.0);
}
