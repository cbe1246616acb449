//! Privacy that holds across requests: what an analyst can learn from many reports, what a
//! clinician can grant themselves, and what a national id or an error message gives away.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::*;

const RPH: &str = "Rask psykisk helsehjelp Gamle Oslo";

async fn service(s: &Server, name: &str) -> Uuid {
    let services = s.query("{ services { id name } }", json!({})).await;
    let id = services["services"].as_array().unwrap().iter().find(|x| x["name"] == name).expect(name)["id"].clone();
    serde_json::from_value(id).unwrap()
}

const REPORT: &str = "query($s: UUID!, $f: DateTime!, $t: DateTime!) { pathwayReport(serviceId: $s, from: $f, to: $t) {
    from to disclosure { method threshold maxNoise snappedToMonths note }
    episodes patients hidden { field reason }
    gender { key count hidden } referralSources { key count hidden } endReasons { key count hidden } ageGroups { key count hidden }
    phq9 { intakeCount intakeMean dischargeCount dischargeMean pairedCount meanChange missingPairs reliablyImproved recovered hidden { field reason } }
    gad7 { intakeCount intakeMean dischargeCount dischargeMean pairedCount meanChange missingPairs reliablyImproved recovered hidden { field reason } }
    recovery { eligible atCaseness recovered reliablyImproved reliablyDeteriorated reliablyRecovered recoveryRate }
    waitingDays { count mean median p90 min max } waitingHistogram { key count hidden }
    sessionsPerEpisode { count mean median p90 min max }
    referrals { received accepted rejected rejectedForCapacity undecided }
    continuity { patientsWithTransition transitions transitionsKeepingTherapist handovers handoversWithoutNotification meanCoc } } }";

async fn report(s: &Server, token: &str, service: Uuid, from: &str, to: &str) -> Value {
    let (status, v) = s.gql_as(Some(token), REPORT, json!({ "s": service, "f": utc(from), "t": utc(to) })).await;
    assert_eq!(status, 200, "{v}");
    ok_data(&v)["pathwayReport"].clone()
}

/// Every count of a report by its path (`phq9.pairedCount`, `gender.FEMALE`), numbers only.
fn counts(report: &Value) -> Vec<(String, Option<u64>)> {
    let mut out = Vec::new();
    for (k, v) in report.as_object().unwrap() {
        match v {
            Value::Array(cells) => {
                for c in cells {
                    out.push((format!("{k}.{}", c["key"].as_str().unwrap()), c["count"].as_u64()));
                }
            }
            Value::Object(o) if k != "disclosure" => {
                for (f, x) in o {
                    if x.is_u64() || (x.is_null() && !is_statistic(f)) {
                        out.push((format!("{k}.{f}"), x.as_u64()));
                    }
                }
            }
            Value::Number(n) => out.push((k.clone(), n.as_u64())),
            Value::Null if k == "episodes" || k == "patients" => out.push((k.clone(), None)),
            _ => {}
        }
    }
    out
}

fn is_statistic(field: &str) -> bool {
    field.contains("ean") || ["median", "p90", "min", "max", "recoveryRate"].contains(&field)
}

/// Every mean, median and p90 of a report by its path.
fn statistics(report: &Value) -> Vec<(String, Option<f64>)> {
    let mut out = Vec::new();
    for (k, v) in report.as_object().unwrap() {
        if let Value::Object(o) = v {
            for (f, x) in o {
                if is_statistic(f) && !["min", "max", "recoveryRate"].contains(&f.as_str()) {
                    out.push((format!("{k}.{f}"), x.as_f64()));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_differencing_reports_a_day_apart_learns_nothing_and_a_service_year_stays_close_to_the_truth() {
    let s = Server::start_with(&["--demo"]).await;
    let rph = service(&s, RPH).await;
    let (analyst, auditor) = (s.token("analyst", &[], None), s.token("auditor", &[], None));

    // The finding: a day D where the exact episode count rises by exactly one.
    let mut found = None;
    for day in 2..28 {
        let (d, next) = (format!("2016-06-{day:02}T00:00:00Z"), format!("2016-06-{:02}T00:00:00Z", day + 1));
        let a = report(&s, &auditor, rph, "2016-01-01T00:00:00Z", &d).await;
        let b = report(&s, &auditor, rph, "2016-01-01T00:00:00Z", &next).await;
        if b["episodes"].as_u64().unwrap() == a["episodes"].as_u64().unwrap() + 1 {
            found = Some((d, next, a, b));
            break;
        }
    }
    let (d, next, exact_a, exact_b) = found.expect("a day in June 2016 on which RPH started exactly one episode");
    // An auditor's difference gives that one person's waiting days back: exact figures are exact.
    let person = exact_b["waitingDays"]["count"].as_f64().unwrap() * exact_b["waitingDays"]["mean"].as_f64().unwrap()
        - exact_a["waitingDays"]["count"].as_f64().unwrap() * exact_a["waitingDays"]["mean"].as_f64().unwrap();
    assert!(person >= 0.0, "{person}");

    // The analyst's same 13 requests: every pair is the same answer, so every difference is 0.
    let a = report(&s, &analyst, rph, "2016-01-01T00:00:00Z", &d).await;
    let b = report(&s, &analyst, rph, "2016-01-01T00:00:00Z", &next).await;
    assert_eq!(a, b, "D and D + 1 give one answer");
    assert_eq!(
        (a["from"].as_str(), a["to"].as_str()),
        (Some("2016-01-01T00:00:00+00:00"), Some("2017-01-01T00:00:00+00:00")),
        "widened to the standard period holding it: here the calendar year"
    );
    assert_eq!(a["disclosure"]["method"], "CELL_KEY");
    assert_eq!(a["disclosure"]["snappedToMonths"], true, "the answer says its window was widened");
    assert_eq!(report(&s, &analyst, rph, "2016-01-01T00:00:00Z", &d).await, a, "asking again averages nothing away");
    // No extremes: each is one person's value.
    for f in ["min", "max"] {
        assert!(a["waitingDays"][f].is_null() && a["sessionsPerEpisode"][f].is_null(), "{f} shown: {a}");
    }
    // The eight age probes: custom age groups are refused, not answered.
    let (_, refused) = s
        .gql_as(
            Some(&analyst),
            "query($s: UUID!) { pathwayReport(serviceId: $s, from: \"2016-01-01T00:00:00Z\", to: \"2016-07-01T00:00:00Z\", ageBins: [0, 19]) { episodes } }",
            json!({ "s": rph }),
        )
        .await;
    assert_eq!(error_code(&refused), Some("FORBIDDEN"), "{refused}");
    // The averaging attack: every run of months is one of a few standard periods (a month, a
    // quarter, a year), so no month is measured in more than three windows.
    let mut windows = std::collections::BTreeSet::new();
    for (from, to) in [("01", "03"), ("02", "03"), ("01", "02"), ("02", "04"), ("03", "07"), ("01", "13")] {
        let to = if to == "13" { "2017-01-01T00:00:00Z".to_owned() } else { format!("2016-{to}-01T00:00:00Z") };
        let r = report(&s, &analyst, rph, &format!("2016-{from}-01T00:00:00Z"), &to).await;
        windows.insert((r["from"].as_str().unwrap().to_owned(), r["to"].as_str().unwrap().to_owned()));
    }
    let holding_february = windows.iter().filter(|(f, t)| f.as_str() <= "2016-02" && t.as_str() > "2016-02").count();
    assert!(holding_february <= 3, "{windows:?}");
    // A window across a calendar year is refused, not answered.
    let (_, across) = s
        .gql_as(
            Some(&analyst),
            REPORT,
            json!({ "s": rph, "f": utc("2016-06-01T00:00:00Z"), "t": utc("2017-06-01T00:00:00Z") }),
        )
        .await;
    assert_eq!(error_code(&across), Some("FORBIDDEN"), "{across}");
    // openEpisodes(asOf:) on two days.
    let open = |day: &'static str| {
        let (s, analyst) = (&s, &analyst);
        async move {
            let q = format!("{{ services {{ id openEpisodes(asOf: \"2016-06-{day}T00:00:00Z\") }} }}");
            let (_, v) = s.gql_as(Some(analyst), &q, json!({})).await;
            ok_data(&v)["services"].clone()
        }
    };
    assert_eq!(open("10").await, open("11").await, "two days of a month give one overview");

    // No count from 1 to 4 anywhere, and the hidden ones say why.
    let year = report(&s, &analyst, rph, "2016-01-01T00:00:00Z", "2017-01-01T00:00:00Z").await;
    let exact = report(&s, &auditor, rph, "2016-01-01T00:00:00Z", "2017-01-01T00:00:00Z").await;
    assert_eq!(exact["disclosure"]["method"], "EXACT");
    let (shown, truth) = (counts(&year), counts(&exact));
    assert_eq!(shown.len(), truth.len());
    assert!(shown.len() > 60, "{shown:?}");
    let mut perturbed = 0;
    for ((path, a), (_, e)) in shown.iter().zip(&truth) {
        let e = e.unwrap_or_else(|| panic!("exact {path} is null"));
        match a {
            Some(a) => {
                assert!(*a == 0 || *a >= 5, "{path} shows the small count {a}");
                assert!(a.abs_diff(e) <= 3, "{path}: {a} for a true {e}");
                perturbed += usize::from(*a != e);
            }
            None => assert!((1..5).contains(&e) || path.ends_with("missingPairs"), "{path} hidden at {e}"),
        }
    }
    assert!(perturbed > 5, "counts are perturbed, not exact ({perturbed} moved)");
    for ((path, a), (_, e)) in statistics(&year).iter().zip(statistics(&exact)) {
        if let (Some(a), Some(e)) = (a, e) {
            assert!((a - e).abs() <= 1.0, "{path}: {a} for a true {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_is_told_a_figure_is_withheld_to_protect_a_small_one_and_never_sees_it_as_small() {
    let s = Server::start().await;
    let svc = id();
    s.record("registerService", json!({ "serviceId": svc, "name": "Kommune", "careLevel": "MUNICIPAL" })).await;
    for i in 0..12 {
        let (p, e) = (id(), id());
        s.record("registerPatient", json!({ "patientId": p, "birthYear": 1980, "gender": "FEMALE" })).await;
        s.record(
            "startEpisode",
            json!({ "patientId": p, "episodeId": e, "serviceId": svc,
                    "startedAt": format!("2016-03-{:02}T00:00:00Z", i + 1) }),
        )
        .await;
        // Two episodes with a PHQ-9 pair: pairedCount is small, so missingPairs would give it back.
        if i < 2 {
            for (phase, total, day) in [("INTAKE", 18, 5), ("DISCHARGE", 8, 25)] {
                s.record(
                    "recordOutcome",
                    json!({ "patientId": p, "episodeId": e, "instrument": "PHQ9", "phase": phase,
                            "items": phq9_items(total), "measuredAt": format!("2016-04-{day:02}T00:00:00Z") }),
                )
                .await;
            }
        }
    }
    let analyst = s.token("analyst", &[], None);
    let r = report(&s, &analyst, svc, "2016-01-01T00:00:00Z", "2017-01-01T00:00:00Z").await;
    let phq = &r["phq9"];
    assert!(phq["pairedCount"].is_null() && phq["missingPairs"].is_null(), "{phq}");
    let reason = |field: &str| {
        phq["hidden"].as_array().unwrap().iter().find(|h| h["field"] == field).map(|h| h["reason"].clone())
    };
    assert_eq!(reason("pairedCount"), Some(json!("SMALL")));
    assert_eq!(reason("missingPairs"), Some(json!("PROTECTED")), "withheld only to protect pairedCount: {phq}");
    let exact = report(&s, &s.admin, svc, "2016-01-01T00:00:00Z", "2017-01-01T00:00:00Z").await;
    assert_eq!((exact["phq9"]["pairedCount"].clone(), exact["phq9"]["missingPairs"].clone()), (json!(2), json!(10)));
}

/// Nine PHQ-9 item scores (0–3) adding up to `total`.
fn phq9_items(total: u32) -> Vec<u32> {
    let mut left = total;
    (0..9)
        .map(|_| {
            let x = left.min(3);
            left -= x;
            x
        })
        .collect()
}

const NID: &str = "31129956715"; // the worked example in the domain notes; synthetic
const ACCESS_LOG: &str = "query($p: UUID, $e: Boolean) { accessLog(patientId: $p, emergencyOnly: $e) { nodes { actor role operation fields outcome reason } } }";

async fn access_log(s: &Server, patient: Uuid, emergency_only: bool) -> Vec<Value> {
    let v = s.query(ACCESS_LOG, json!({ "p": patient, "e": emergency_only })).await;
    v["accessLog"]["nodes"].as_array().unwrap().clone()
}

async fn my_access_log(s: &Server, nid: &str) -> Vec<Value> {
    let (_, v) = s
        .gql_as(
            Some(&s.token("patient", &[], Some(nid))),
            "{ myAccessLog { nodes { actor role fields outcome } } }",
            json!({}),
        )
        .await;
    ok_data(&v)["myAccessLog"]["nodes"].as_array().unwrap().clone()
}

const READ: &str =
    "query($id: UUID!, $r: String) { patient(id: $id, emergencyReason: $r) { id nationalId episodes { id } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinician_who_records_a_referral_to_their_own_service_does_not_gain_the_record_without_a_reason() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    // P is a patient of the DPS clinic only, registered by the admin.
    let p = id();
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1975, "gender": "MALE", "nationalId": NID }))
        .await;
    let (dps_referral, dps_episode) = (id(), id());
    s.record("receiveReferral", json!({ "patientId": p, "referralId": dps_referral, "serviceId": r.pol, "source": "GP", "receivedAt": "2016-02-01T00:00:00Z" })).await;
    s.record("decideReferral", json!({ "patientId": p, "referralId": dps_referral, "decision": "ACCEPTED", "decidedAt": "2016-02-02T00:00:00Z" })).await;
    s.record("startEpisode", json!({ "patientId": p, "episodeId": dps_episode, "serviceId": r.pol, "referralId": dps_referral, "startedAt": "2016-02-03T00:00:00Z" })).await;

    let snoop =
        s.token_with(json!({ "sub": "dr-snoop", "name": "Dr Snoop", "role": "clinician", "services": [r.rph] }));
    let (_, v) = s.gql_as(Some(&snoop), READ, json!({ "id": p })).await;
    assert_eq!(error_code(&v), Some("FORBIDDEN"), "{v}");

    // The finding: a referral to their own service, recorded by themselves.
    let own_referral = id();
    let (_, v) = s
        .gql_as(
            Some(&snoop),
            "mutation($i: ReceiveReferralInput!) { receiveReferral(input: $i) { position } }",
            json!({ "i": { "patientId": p, "referralId": own_referral, "serviceId": r.rph, "source": "SELF", "receivedAt": "2016-03-01T00:00:00Z" } }),
        )
        .await;
    ok_data(&v);
    let (_, v) = s.gql_as(Some(&snoop), READ, json!({ "id": p })).await;
    assert_eq!(error_code(&v), Some("FORBIDDEN"), "a self-recorded referral opens nothing silently: {v}");
    assert!(v.to_string().contains("emergencyReason"), "{v}");

    // With a reason it is read, logged SELF_GRANTED, listed for follow-up, and shown to the patient.
    let reason = "selvhenvisning i dag, trenger tidligere behandling";
    let (_, v) = s.gql_as(Some(&snoop), READ, json!({ "id": p, "r": reason })).await;
    assert_eq!(ok_data(&v)["patient"]["nationalId"], NID, "{v}");
    let follow_up = access_log(&s, p, true).await;
    assert!(
        follow_up.iter().any(|n| n["outcome"] == "SELF_GRANTED" && n["actor"] == "dr-snoop" && n["reason"] == reason),
        "{follow_up:?}"
    );
    assert!(my_access_log(&s, NID).await.iter().any(|n| n["outcome"] == "SELF_GRANTED"));

    // Once someone else acts on the referral (a colleague accepts it), it is a relationship.
    s.record("decideReferral", json!({ "patientId": p, "referralId": own_referral, "decision": "ACCEPTED", "decidedAt": "2016-03-02T00:00:00Z" })).await;
    let (_, v) = s.gql_as(Some(&snoop), READ, json!({ "id": p })).await;
    assert_eq!(ok_data(&v)["patient"]["id"], json!(p), "{v}");

    // A patient with nothing at other services: a self-recorded referral widens nothing, so it is read at once.
    let q = id();
    s.record("registerPatient", json!({ "patientId": q, "birthYear": 1990, "gender": "FEMALE" })).await;
    let (_, v) = s
        .gql_as(
            Some(&snoop),
            "mutation($i: ReceiveReferralInput!) { receiveReferral(input: $i) { position } }",
            json!({ "i": { "patientId": q, "referralId": id(), "serviceId": r.rph, "source": "SELF", "receivedAt": "2016-03-01T00:00:00Z" } }),
        )
        .await;
    ok_data(&v);
    let (_, v) = s.gql_as(Some(&snoop), READ, json!({ "id": q })).await;
    assert_eq!(ok_data(&v)["patient"]["id"], json!(q), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_self_grant_period_is_configurable() {
    let s = Server::start_with(&["--self-grant-days", "0"]).await;
    let r = Reference::register(&s).await;
    let p = id();
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1975, "gender": "MALE" })).await;
    s.record("receiveReferral", json!({ "patientId": p, "referralId": id(), "serviceId": r.pol, "source": "GP", "receivedAt": "2016-02-01T00:00:00Z" })).await;
    let c = s.token("clinician", &[r.rph], None);
    let (_, v) = s
        .gql_as(
            Some(&c),
            "mutation($i: ReceiveReferralInput!) { receiveReferral(input: $i) { position } }",
            json!({ "i": { "patientId": p, "referralId": id(), "serviceId": r.rph, "source": "SELF", "receivedAt": "2016-03-01T00:00:00Z" } }),
        )
        .await;
    ok_data(&v);
    let (_, v) = s.gql_as(Some(&c), READ, json!({ "id": p })).await;
    assert_eq!(ok_data(&v)["patient"]["id"], json!(p), "a period of 0 days confirms at once: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn national_ids_cannot_be_probed_and_every_resolution_is_logged_on_the_patient() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let p = id();
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1975, "gender": "MALE", "nationalId": NID }))
        .await;
    s.record("startEpisode", json!({ "patientId": p, "episodeId": id(), "serviceId": r.pol, "startedAt": "2016-02-03T00:00:00Z", "acute": true })).await;
    let c = s.token_with(json!({ "sub": "dr-probe", "role": "clinician", "services": [r.rph] }));
    let lookup = "query($n: String!) { patientByNationalId(nationalId: $n) { id } }";
    let (_, held) = s.gql_as(Some(&c), lookup, json!({ "n": NID })).await;
    let (_, unknown) = s.gql_as(Some(&c), lookup, json!({ "n": "31929956780" })).await;
    assert_eq!(error_code(&held), Some("FORBIDDEN"), "{held}");
    assert_eq!(held["errors"][0]["message"], unknown["errors"][0]["message"], "the same answer: {held} / {unknown}");
    assert_eq!(held["data"], unknown["data"]);
    // An admin may read any patient, so an unknown number is simply null.
    assert_eq!(s.query(lookup, json!({ "n": "31929956780" })).await["patientByNationalId"], Value::Null);

    // registerPatient with another patient's number: refused, and an access record on the holder.
    let (_, v) = s
        .gql_as(
            Some(&c),
            "mutation($i: RegisterPatientInput!) { registerPatient(input: $i) { position } }",
            json!({ "i": { "patientId": id(), "birthYear": 1980, "gender": "FEMALE", "nationalId": NID } }),
        )
        .await;
    assert_eq!(error_code(&v), Some("ALREADY_EXISTS"), "{v}");
    let seen = my_access_log(&s, NID).await;
    assert!(
        seen.iter().any(|n| n["actor"] == "dr-probe" && n["fields"] == "registerPatient.nationalId"),
        "the probe is in the patient's own access log: {seen:?}"
    );
    assert!(seen
        .iter()
        .any(|n| n["actor"] == "dr-probe" && n["fields"] == "patientByNationalId" && n["outcome"] == "DENIED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_reasons_must_be_visible_text_of_a_bounded_length_and_refusals_are_logged() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let p = id();
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1975, "gender": "MALE" })).await;
    s.record("startEpisode", json!({ "patientId": p, "episodeId": id(), "serviceId": r.pol, "startedAt": "2016-02-03T00:00:00Z", "acute": true })).await;
    let c = s.token_with(json!({ "sub": "dr-e", "role": "clinician", "services": [r.rph] }));
    for (what, reason) in
        [("zero-width", "\u{200b}".repeat(10)), ("NUL", "\0".repeat(10)), ("100 KB", "a".repeat(100_000))]
    {
        let before = access_log(&s, p, false).await.len();
        let (status, v) = s.gql_as(Some(&c), READ, json!({ "id": p, "r": reason })).await;
        assert_eq!(status, 200, "{what}: {v}");
        assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{what}: {v}");
        let log = access_log(&s, p, false).await;
        assert_eq!(log.len(), before + 1, "{what}");
        assert_eq!(log.last().unwrap()["outcome"], "DENIED", "{what}");
    }
    let (_, v) = s.gql_as(Some(&c), READ, json!({ "id": p, "r": "akutt innlagt, bevisstløs" })).await;
    assert_eq!(ok_data(&v)["patient"]["id"], json!(p));
    assert_eq!(s.health().await["status"], "ok", "no refusal took the server down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_chosen_operation_name_never_puts_a_number_in_the_access_log_or_on_metrics() {
    let s = Server::start().await;
    let p = id();
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1975, "gender": "MALE" })).await;
    let q = format!("query Patient_21030550231 {{ patient(id: \"{p}\") {{ id }} }}");
    let v = s.query(&q, json!({})).await;
    assert_eq!(v["patient"]["id"], json!(p));
    let log = access_log(&s, p, false).await;
    let reads: Vec<&Value> = log.iter().filter(|n| n["fields"] == "patient").collect();
    assert!(!reads.is_empty(), "{log:?}");
    assert!(reads.iter().all(|n| n["operation"] == "unnamed"), "{log:?}");
    let metrics = s.client().get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("21030550231"), "the number is on /metrics");
    // Plain names are kept.
    s.query(&format!("query PatientOverview {{ patient(id: \"{p}\") {{ id }} }}"), json!({})).await;
    assert!(access_log(&s, p, false).await.iter().any(|n| n["operation"] == "PatientOverview"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_event_id_with_guessed_content_confirms_nothing_to_a_role_that_cannot_read_it() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let p = id();
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1975, "gender": "MALE" })).await;
    let (event, referral) = (id(), id());
    let input = json!({ "patientId": p, "referralId": referral, "serviceId": r.pol, "source": "GP",
                        "receivedAt": "2016-02-01T00:00:00Z", "eventId": event });
    let m = "mutation($i: ReceiveReferralInput!) { receiveReferral(input: $i) { deduplicated } }";
    let (_, v) = s.gql_as(Some(&s.admin), m, json!({ "i": input })).await;
    assert_eq!(ok_data(&v)["receiveReferral"]["deduplicated"], false);
    let integration = s.token("integration", &[], None);
    let right = s.gql_as(Some(&integration), m, json!({ "i": input })).await.1;
    let mut wrong_input = input.clone();
    wrong_input["source"] = json!("NAV");
    let wrong = s.gql_as(Some(&integration), m, json!({ "i": wrong_input })).await.1;
    assert_eq!(error_code(&right), Some("IDEMPOTENCY_CONFLICT"), "the right guess is not confirmed: {right}");
    assert_eq!(right["errors"][0]["message"], wrong["errors"][0]["message"], "{right} / {wrong}");
    // The admin's own retry is answered as a retry.
    let (_, v) = s.gql_as(Some(&s.admin), m, json!({ "i": input })).await;
    assert_eq!(ok_data(&v)["receiveReferral"]["deduplicated"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_elsewhere_and_writes_to_other_services_stay_behind_a_self_recorded_referral() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    // P's only fact is a psychiatric admission at the DPS ward.
    let (p, admission, dps_episode) = (id(), id(), id());
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1975, "gender": "MALE" })).await;
    s.record(
        "admitPatient",
        json!({ "patientId": p, "admissionId": admission, "serviceId": r.ward, "admittedAt": "2016-02-01T00:00:00Z" }),
    )
    .await;
    let c = s.token_with(json!({ "sub": "dr-self", "role": "clinician", "services": [r.rph] }));
    let m = "mutation($i: ReceiveReferralInput!) { receiveReferral(input: $i) { position } }";
    let referral = json!({ "patientId": p, "referralId": id(), "serviceId": r.rph, "source": "SELF", "receivedAt": "2016-03-01T00:00:00Z" });
    ok_data(&s.gql_as(Some(&c), m, json!({ "i": referral })).await.1);
    let (_, v) =
        s.gql_as(Some(&c), "query($id: UUID!) { patient(id: $id) { admissions { id } } }", json!({ "id": p })).await;
    assert_eq!(
        error_code(&v),
        Some("FORBIDDEN"),
        "an admission elsewhere stays behind the self-recorded referral: {v}"
    );

    // Nor may the clinician write to another service's episode (a way to probe its dates).
    s.record(
        "startEpisode",
        json!({ "patientId": p, "episodeId": dps_episode, "serviceId": r.pol, "startedAt": "2016-02-10T00:00:00Z", "acute": true }),
    )
    .await;
    let (_, v) = s
        .gql_as(
            Some(&c),
            "mutation($i: RecordSessionInput!) { recordSession(input: $i) { position } }",
            json!({ "i": { "patientId": p, "episodeId": dps_episode, "sessionId": id(), "therapistId": r.a,
                           "attendance": "ATTENDED", "at": "2016-02-05T10:00:00Z" } }),
        )
        .await;
    assert_eq!(error_code(&v), Some("FORBIDDEN"), "{v}");
    assert!(!v.to_string().contains("2016-02-10"), "the refusal quotes the episode's start: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_registration_does_not_take_its_national_id_from_the_person() {
    let s = Server::start().await;
    let m = "mutation($i: RegisterPatientInput!) { registerPatient(input: $i) { position } }";
    let refused = json!({ "patientId": id(), "birthYear": 1700, "gender": "FEMALE", "nationalId": NID });
    let (_, v) = s.gql_as(Some(&s.admin), m, json!({ "i": refused })).await;
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{v}");
    let p = id();
    let (_, v) = s
        .gql_as(
            Some(&s.admin),
            m,
            json!({ "i": { "patientId": p, "birthYear": 1956, "gender": "FEMALE", "nationalId": NID } }),
        )
        .await;
    ok_data(&v);
    let found = s.query("query($n: String!) { patientByNationalId(nationalId: $n) { id } }", json!({ "n": NID })).await;
    assert_eq!(found["patientByNationalId"]["id"], json!(p));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invisible_emergency_reason_is_refused() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let p = id();
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1975, "gender": "MALE" })).await;
    s.record(
        "startEpisode",
        json!({ "patientId": p, "episodeId": id(), "serviceId": r.pol, "startedAt": "2016-02-03T00:00:00Z", "acute": true }),
    )
    .await;
    let c = s.token("clinician", &[r.rph], None);
    for reason in ["\u{3164}".repeat(12), "\u{2800}".repeat(12), "\u{e0041}".repeat(12)] {
        let (_, v) = s.gql_as(Some(&c), READ, json!({ "id": p, "r": reason })).await;
        assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{reason:?}: {v}");
    }
}
