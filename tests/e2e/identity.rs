//! National ids end to end: validation, uniqueness, erasure (crypto-shredding), master key
//! rotation, the access report and tamper evidence on the CLI, and small-count suppression for
//! analysts.
//!
//! Every number here is synthetic: the worked example from the domain notes, numbers on year 99
//! with individual numbers 800–899 (a range never allocated to years 40–99), and month + 80
//! synthetic test numbers.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use uuid::Uuid;

use forlop_domain::national_id::with_check_digits;

use crate::support::*;

/// Weights of k1 over digits 1–9 and of k2 over digits 1–10 (written out here, not taken from the
/// code under test).
const K1: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
const K2: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

fn digits(s: &str) -> Vec<u32> {
    s.bytes().map(|b| u32::from(b - b'0')).collect()
}

fn weighted(s: &str, w: &[u32]) -> u32 {
    digits(s).iter().zip(w).map(|(d, w)| d * w).sum()
}

/// The `nth` number with valid classic check digits whose first six digits are `date`, built on
/// individual numbers 800–899 (synthetic: never allocated to years 40–99).
fn number(date: &str, nth: usize) -> String {
    (800..900)
        .filter_map(|i| with_check_digits(&format!("{date}{i:03}")))
        .nth(nth)
        .unwrap_or_else(|| panic!("no {nth}th number for {date}"))
}

/// A number valid only under the 2032 relaxed k1 rule: `(Σ w·d + k1) mod 11 ∈ {1, 2, 3}`, with k2
/// computed classically over the first ten digits.
fn relaxed_k1_number(date: &str) -> String {
    for i in 800..900 {
        let nine = format!("{date}{i:03}");
        let sum = weighted(&nine, &K1);
        let Some(k1) = (0..=9).find(|k1| matches!((sum + k1) % 11, 1..=3)) else { continue };
        let ten = format!("{nine}{k1}");
        let k2 = match 11 - weighted(&ten, &K2) % 11 {
            11 => 0,
            10 => continue,
            k => k,
        };
        let n = format!("{ten}{k2}");
        assert_ne!(with_check_digits(&nine).as_deref(), Some(n.as_str()), "{n} is classically valid");
        return n;
    }
    panic!("no relaxed-k1 number for {date}");
}

fn register(p: Uuid, national_id: &str) -> Value {
    json!({ "patientId": p, "birthYear": 1999, "gender": "FEMALE", "nationalId": national_id })
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read_dir {}: {e}", d.display())) {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(p);
                }
            }
        }
    }
    assert!(files > 2, "the data directory holds the store's files");
    found
}

/// The data directory and an export of it hold no trace of `n` in clear text.
fn assert_no_trace(dir: &Path, n: &str, when: &str) {
    let found = files_containing(dir, n.as_bytes());
    assert!(found.is_empty(), "{when}: the national id is stored in clear text in {found:?}");
    let export = stdout(&run_ok(&["export", "--data", path(dir)]));
    assert!(!export.is_empty(), "{when}: the export is empty");
    assert!(!export.contains(n), "{when}: the export holds the national id in clear text");
}

async fn report_episodes(s: &Server, service: Uuid) -> Value {
    s.query(&report_query(service), json!({})).await["pathwayReport"]["episodes"].clone()
}

const FORGET: &str = "mutation($in: ForgetPatientInput!) { forgetPatient(input: $in) { eventId position } }";

fn report_query(service: Uuid) -> String {
    format!(
        "{{ pathwayReport(serviceId: \"{service}\", from: \"2016-01-01T00:00:00Z\", to: \"2017-01-01T00:00:00Z\") \
         {{ episodes patients suppressed gender {{ key count hidden }} }} }}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_national_ids_of_every_kind_when_registering_then_valid_ones_are_kept_and_invalid_ones_refused() {
    let s = Server::start().await;
    let accepted = [
        ("worked example", "31129956715".to_owned()),
        ("D-number (day + 40)", number("711299", 0)),
        ("H-number (month + 40)", number("315299", 0)),
        ("synthetic (month + 80)", number("319299", 0)),
        ("valid only under the 2032 k1 rule", relaxed_k1_number("311299")),
    ];
    for (what, n) in &accepted {
        let p = id();
        let r = s.try_record("registerPatient", register(p, n)).await;
        assert!(r.get("errors").is_none(), "{what} {n} was refused: {r}");
        let back = s.patient(p, "nationalId").await;
        assert_eq!(back["nationalId"], json!(n), "{what}: the admin reads the number back");
    }

    let valid = number("311299", 5);
    let mut bad_check = valid.clone().into_bytes();
    bad_check[10] = b'0' + (bad_check[10] - b'0' + 1) % 10;
    let bad_check = String::from_utf8(bad_check).unwrap();
    let refused = [
        ("a bad check digit", bad_check),
        ("10 digits", "3112995671".to_owned()),
        ("letters", "3112995671a".to_owned()),
        ("letters only", "abcdefghijk".to_owned()),
        // Day 32, with check digits that are right for the digits.
        ("a bad date", number("321299", 0)),
    ];
    for (what, n) in &refused {
        let p = id();
        let err = s.rejects("registerPatient", register(p, n), "INVALID_INPUT").await;
        let message = err["message"].as_str().unwrap_or_default();
        assert!(!message.contains(n.as_str()), "{what}: the error echoes the number: {message}");
        assert!(s.patient(p, "id").await.is_null(), "{what}: the patient was registered anyway");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_registered_national_id_when_reused_or_retried_then_duplicates_conflict_and_retries_deduplicate() {
    let s = Server::start().await;
    let (n, other) = (number("319299", 1), number("319299", 2));
    let (p, event_id) = (id(), id());
    let mut input = register(p, &n);
    input["eventId"] = json!(event_id);
    let first = s.record("registerPatient", input.clone()).await;
    assert!(!first.deduplicated);

    // Another patient with the same number.
    s.rejects("registerPatient", register(id(), &n), "ALREADY_EXISTS").await;

    // The same request again: answered from the log.
    let again = s.record("registerPatient", input.clone()).await;
    assert!(again.deduplicated, "a retry with the same eventId and number is deduplicated");
    assert_eq!((again.event_id, again.position), (first.event_id, first.position));

    // The same eventId with another number.
    let mut changed = input.clone();
    changed["nationalId"] = json!(other);
    s.rejects("registerPatient", changed, "IDEMPOTENCY_CONFLICT").await;
    assert_eq!(s.patient(p, "nationalId").await["nationalId"], json!(n), "the first number stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_patient_with_a_national_id_when_forgotten_then_the_number_is_gone_but_the_pathway_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), &[]).await;
    let r = Reference::register(&s).await;
    let n = number("319299", 3);
    let (p, e) = (id(), id());
    s.record("registerPatient", register(p, &n)).await;
    s.record(
        "startEpisode",
        json!({ "patientId": p, "episodeId": e, "serviceId": r.rph, "startedAt": "2016-02-01T09:00:00Z" }),
    )
    .await;
    s.record(
        "assignTherapist",
        json!({ "patientId": p, "episodeId": e, "therapistId": r.a, "assignedAt": "2016-02-01T09:00:00Z" }),
    )
    .await;
    s.record("recordSession", session(p, e, r.a, "2016-02-08T09:00:00Z")).await;
    let episodes = report_episodes(&s, r.rph).await;
    assert_eq!(episodes, json!(1));
    assert_eq!(s.patient(p, "nationalId").await["nationalId"], json!(n));
    let patient_token = s.token("patient", &[], Some(&n));
    let my_log = "{ myAccessLog { nodes { actor } } }";
    let (status, before) = s.gql_as(Some(&patient_token), my_log, json!({})).await;
    assert_eq!(status, 200, "{before}");
    assert!(
        !ok_data(&before)["myAccessLog"]["nodes"].as_array().expect("nodes").is_empty(),
        "before erasure the patient sees the admin's read: {before}"
    );
    assert_eq!(s.stop().code(), Some(0));
    assert_no_trace(dir.path(), &n, "before erasure");

    let s = Server::start_in(dir.path(), &[]).await;
    let before = s.committed().await;
    for role in ["clinician", "integration"] {
        let token = s.token(role, &[r.rph], None);
        let (_, v) = s.gql_as(Some(&token), FORGET, json!({ "in": { "patientId": p } })).await;
        assert_eq!(error_code(&v), Some("FORBIDDEN"), "{role} may not forget a patient: {v}");
    }
    assert_eq!(s.committed().await, before, "a refused forgetPatient appended");
    assert_eq!(s.patient(p, "nationalId").await["nationalId"], json!(n), "a refused forgetPatient destroyed the key");

    let v = s.gql(FORGET, json!({ "in": { "patientId": p } })).await;
    ok_data(&v);
    let after = s.patient(p, "nationalId forgotten").await;
    assert_eq!(after, json!({ "nationalId": null, "forgotten": true }));
    let found = s.query("query($n: String!) { patientByNationalId(nationalId: $n) { id } }", json!({ "n": n })).await;
    assert!(found["patientByNationalId"].is_null(), "the number still finds the patient: {found}");
    let (status, mine) = s.gql_as(Some(&patient_token), my_log, json!({})).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(ok_data(&mine)["myAccessLog"]["nodes"], json!([]), "the number still leads to the access log");
    assert_eq!(report_episodes(&s, r.rph).await, episodes, "the pathway still counts in aggregates");
    assert_eq!(s.query("{ verifyLog { ok } }", json!({})).await["verifyLog"]["ok"], json!(true));
    assert_eq!(s.stop().code(), Some(0));

    assert_no_trace(dir.path(), &n, "after erasure");
    let out = run_ok(&["verify", "--data", path(dir.path())]);
    let text = stdout(&out);
    assert_eq!(text.lines().filter(|l| l.starts_with("ok:")).count(), 2, "events and access records verify: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_stopped_server_when_the_master_key_is_rotated_then_national_ids_open_under_the_new_key_only() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = tempfile::tempdir().expect("tempdir");
    let write_key = |name: &str| {
        let p = keys.path().join(name);
        let key: [u8; 32] = rand::random();
        std::fs::write(&p, base64::engine::general_purpose::STANDARD.encode(key)).expect("write key");
        p
    };
    let s = Server::start_in(dir.path(), &[]).await;
    let (p, n) = (id(), number("319299", 4));
    s.record("registerPatient", register(p, &n)).await;
    assert_eq!(s.stop().code(), Some(0));

    let current = dir.path().join("test-master.key");
    let new = write_key("new.key");
    run_ok(&["rotate-key", "--data", path(dir.path()), "--old", path(&current), "--new", path(&new)]);
    std::fs::copy(&new, &current).expect("install the new key");

    let s = Server::start_in(dir.path(), &[]).await;
    assert_eq!(s.patient(p, "nationalId").await["nationalId"], json!(n), "the number opens under the new key");
    let found = s.query("query($n: String!) { patientByNationalId(nationalId: $n) { id } }", json!({ "n": n })).await;
    assert_eq!(found["patientByNationalId"]["id"], json!(p), "the blind index follows the new key");
    assert_eq!(s.stop().code(), Some(0));

    let (wrong, newer) = (write_key("wrong.key"), write_key("newer.key"));
    let out = run_cli(&["rotate-key", "--data", path(dir.path()), "--old", path(&wrong), "--new", path(&newer)]);
    assert!(!out.status.success(), "rotating with a wrong --old key succeeded: {}", stdout(&out));

    let s = Server::start_in(dir.path(), &[]).await;
    assert_eq!(s.patient(p, "nationalId").await["nationalId"], json!(n), "a failed rotation changed the key table");
    assert_eq!(s.stop().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_clinician_read_when_running_access_report_then_it_lists_the_clinician_as_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), &[]).await;
    let r = Reference::register(&s).await;
    let (p, _) = patient_in_episode(&s, &r).await;
    let clinician = s.token("clinician", &[r.rph], None);
    let (status, v) =
        s.gql_as(Some(&clinician), "query($id: UUID!) { patient(id: $id) { id birthYear } }", json!({ "id": p })).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(ok_data(&v)["patient"]["id"], json!(p));
    assert_eq!(s.stop().code(), Some(0));

    let out = run_ok(&["access-report", "--data", path(dir.path()), "--patient", &p.to_string()]);
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.contains("test-clinician") && l.contains("ALLOWED")),
        "the clinician's read is not in the report:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_tampered_access_log_when_verifying_then_verify_exits_1_naming_the_access_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), &[]).await;
    let p = id();
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1990, "gender": "MALE" })).await;
    assert_eq!(s.patient(p, "id").await["id"], json!(p));
    assert_eq!(s.stop().code(), Some(0));
    run_ok(&["verify", "--data", path(dir.path())]);

    forlop_store::access_log::FileAccessLog::tamper(&dir.path().join("access"), 0).expect("tamper");
    let out = run_cli(&["verify", "--data", path(dir.path())]);
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "verify of a tampered access log: {text}");
    assert!(text.contains("access log"), "verify does not name the access log: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_small_counts_when_an_analyst_reads_aggregates_then_they_are_hidden_and_the_rest_perturbed() {
    let s = Server::start().await;
    let (svc, small) = (id(), id());
    s.record("registerService", json!({ "serviceId": svc, "name": "Kommune", "careLevel": "MUNICIPAL" })).await;
    s.record("registerService", json!({ "serviceId": small, "name": "Liten", "careLevel": "MUNICIPAL" })).await;
    let start = |service: Uuid, gender: &'static str, day: usize| {
        let s = &s;
        async move {
            let p = id();
            s.record("registerPatient", json!({ "patientId": p, "birthYear": 1980, "gender": gender })).await;
            s.record(
                "startEpisode",
                json!({ "patientId": p, "episodeId": id(), "serviceId": service,
                        "startedAt": format!("2016-03-{day:02}T00:00:00Z") }),
            )
            .await;
        }
    };
    for i in 0..3 {
        start(svc, "FEMALE", i + 1).await;
    }
    for i in 0..7 {
        start(svc, "MALE", i + 1).await;
    }
    for i in 0..2 {
        start(small, "MALE", i + 1).await;
    }

    let q = report_query(svc);
    let cell = |report: &Value, key: &str| -> (Value, Value) {
        let c = report["gender"]
            .as_array()
            .expect("gender")
            .iter()
            .find(|c| c["key"] == key)
            .unwrap_or_else(|| panic!("no {key} in {report}"))
            .clone();
        (c["count"].clone(), c["hidden"].clone())
    };
    let near = |v: &Value, truth: u64, threshold: u64| {
        let n = v.as_u64().unwrap_or_else(|| panic!("{v} is not shown"));
        assert!(n >= threshold && n.abs_diff(truth) <= 2, "{n} for a true {truth}");
    };
    for role in ["admin", "auditor"] {
        let (status, v) = s.gql_as(Some(&s.token(role, &[], None)), &q, json!({})).await;
        assert_eq!(status, 200, "{v}");
        let report = &ok_data(&v)["pathwayReport"];
        assert_eq!((report["episodes"].clone(), report["patients"].clone()), (json!(10), json!(10)), "{role}");
        assert_eq!(cell(report, "FEMALE"), (json!(3), Value::Null), "{role}");
        assert_eq!(cell(report, "MALE"), (json!(7), Value::Null), "{role}");
    }
    let analyst = s.token("analyst", &[], None);
    let (_, v) = s.gql_as(Some(&analyst), &q, json!({})).await;
    let report = &ok_data(&v)["pathwayReport"];
    near(&report["episodes"], 10, 5);
    near(&report["patients"], 10, 5);
    assert_eq!(cell(report, "FEMALE"), (Value::Null, json!("SMALL")), "3 is below the threshold: {report}");
    // No complementary suppression: the total is perturbed too, so episodes − MALE is not FEMALE.
    let (male, hidden) = cell(report, "MALE");
    near(&male, 7, 5);
    assert_eq!(hidden, Value::Null);
    assert_eq!(cell(report, "OTHER"), (json!(0), Value::Null), "0 identifies no one: {report}");
    assert_eq!(cell(report, "UNKNOWN"), (json!(0), Value::Null), "{report}");
    let (_, again) = s.gql_as(Some(&analyst), &q, json!({})).await;
    assert_eq!(again, v, "the same query gets the same answer");

    // Service overviews: 2 open episodes is a small count, 10 is not.
    let overview = "{ services { id openEpisodes(asOf: \"2016-06-01T00:00:00Z\") } }";
    let open = |v: &Value, service: Uuid| -> Value {
        ok_data(v)["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|x| x["id"] == json!(service))
            .expect("the service is listed")["openEpisodes"]
            .clone()
    };
    let admin_view = s.gql(overview, json!({})).await;
    assert_eq!((open(&admin_view, small), open(&admin_view, svc)), (json!(2), json!(10)));
    let (_, analyst_view) = s.gql_as(Some(&analyst), overview, json!({})).await;
    assert_eq!(open(&analyst_view, small), Value::Null);
    near(&open(&analyst_view, svc), 10, 5);

    // A lower threshold shows both cells, still perturbed and never under it.
    let s = s.restart(&["--suppression-threshold", "2"]).await;
    let analyst = s.token("analyst", &[], None);
    let (_, v) = s.gql_as(Some(&analyst), &q, json!({})).await;
    let report = &ok_data(&v)["pathwayReport"];
    near(&cell(report, "FEMALE").0, 3, 2);
    near(&cell(report, "MALE").0, 7, 2);
}
