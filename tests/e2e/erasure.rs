//! Erasure that nothing re-links, and what FHIR discloses about patients it may not read: a
//! patient first registered through FHIR and then forgotten returns as a new, unlinked patient
//! (answered as a number never seen), nothing is appended to the forgotten stream by any name;
//! resolving a national id through FHIR is in the patient's access log; refusals to an
//! integration quote no recorded facts; a refused `$everything` is logged as DENIED.

use serde_json::{json, Value};
use uuid::Uuid;

use forlop_domain::national_id::with_check_digits;

use crate::support::*;

const RESH: &str = "urn:oid:2.16.578.1.12.4.1.4.102";
const HPR: &str = "urn:oid:2.16.578.1.12.4.1.4.4";
const FNR: &str = "urn:oid:2.16.578.1.12.4.1.4.1";
const MUNICIPAL: &str = "4001031";

const CARE_LEVELS: &str = r#"
[[service]]
system = "urn:oid:2.16.578.1.12.4.1.4.102"
value = "4001031"
care_level = "MUNICIPAL"
"#;

/// The `nth` synthetic fødselsnummer of 31 December 1999 (month + 80, individual numbers
/// 800–899): a different person for each `nth`.
fn number(nth: usize) -> String {
    (800..900)
        .filter_map(|i| with_check_digits(&format!("319299{i:03}")))
        .nth(nth)
        .unwrap_or_else(|| panic!("no {nth}th number"))
}

async fn fhir_server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("care-levels.toml");
    std::fs::write(&file, CARE_LEVELS).expect("write care levels");
    let s = Server::start_with(&["--fhir-care-levels", file.to_str().expect("path")]).await;
    (s, dir)
}

/// POSTs a Bundle of `kind` with `resources` as the holder of `token`.
async fn post(s: &Server, token: &str, kind: &str, resources: Vec<Value>) -> (u16, Value) {
    let entry: Vec<Value> = resources
        .into_iter()
        .map(|r| json!({ "resource": r, "request": { "method": "POST", "url": r["resourceType"] } }))
        .collect();
    let body = json!({ "resourceType": "Bundle", "type": kind, "entry": entry }).to_string();
    let r = s
        .client()
        .post(format!("{}/fhir", s.url))
        .header("content-type", "application/fhir+json")
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("POST /fhir");
    let status = r.status().as_u16();
    (status, r.json().await.expect("FHIR answers JSON"))
}

fn statuses(resp: &Value) -> Vec<String> {
    resp["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap().into())
        .collect()
}

fn location_id(resp: &Value, index: usize) -> Uuid {
    let loc = resp["entry"][index]["response"]["location"].as_str().unwrap_or_else(|| panic!("no location: {resp:#}"));
    loc.rsplit('/').next().expect("id").parse().expect("uuid")
}

/// The response with every location's id replaced, to compare the shape of two answers.
fn masked(resp: &Value) -> Value {
    let mut resp = resp.clone();
    for e in resp["entry"].as_array_mut().expect("entries") {
        if let Some(loc) = e["response"]["location"].as_str() {
            let t = loc.split('/').next().unwrap_or_default().to_owned();
            e["response"]["location"] = json!(format!("{t}/<id>"));
        }
    }
    resp
}

fn organization() -> Value {
    json!({ "resourceType": "Organization", "id": "org-rph", "name": "RPH Gamle Oslo",
        "identifier": [{ "system": RESH, "value": MUNICIPAL }] })
}

fn practitioner() -> Value {
    json!({ "resourceType": "Practitioner", "id": "pr-a", "name": [{ "text": "Anne Andersen" }],
        "identifier": [{ "system": HPR, "value": "9144889" }] })
}

fn patient(id: &str, national_id: &str) -> Value {
    json!({ "resourceType": "Patient", "id": id, "gender": "female", "birthDate": "1999-12-31",
        "identifier": [{ "system": FNR, "value": national_id }] })
}

fn referral(id: &str, patient: &str, at: &str) -> Value {
    json!({ "resourceType": "ServiceRequest", "id": id, "status": "active", "intent": "order",
        "subject": { "reference": format!("Patient/{patient}") },
        "performer": [{ "reference": "Organization/org-rph" }], "authoredOn": at })
}

fn episode(id: &str, patient: &str, referral: &str, start: &str) -> Value {
    json!({ "resourceType": "EpisodeOfCare", "id": id, "status": "active",
        "patient": { "reference": format!("Patient/{patient}") },
        "managingOrganization": { "reference": "Organization/org-rph" },
        "referralRequest": [{ "reference": format!("ServiceRequest/{referral}") }],
        "careManager": { "reference": "Practitioner/pr-a" },
        "period": { "start": start } })
}

/// A session of episode `episode`, its patient named by `subject`.
fn session(id: &str, subject: Value, episode: &str, at: &str) -> Value {
    json!({ "resourceType": "Encounter", "id": id, "status": "finished",
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
        "subject": subject,
        "episodeOfCare": [{ "reference": format!("EpisodeOfCare/{episode}") }],
        "participant": [{ "individual": { "reference": "Practitioner/pr-a" } }],
        "period": { "start": at } })
}

fn by_number(national_id: &str) -> Value {
    json!({ "type": "Patient", "identifier": { "system": FNR, "value": national_id } })
}

async fn forget(s: &Server, p: Uuid) {
    let q = "mutation($in: ForgetPatientInput!) { forgetPatient(input: $in) { position } }";
    ok_data(&s.gql(q, json!({ "in": { "patientId": p } })).await);
}

/// The patient's stream as the admin reads it in the log: (version, number of events).
async fn stream(s: &Server, p: Uuid) -> (u64, usize) {
    let version = s.patient(p, "version").await["version"].as_u64().expect("version");
    let name = format!("patient-{p}");
    let (mut count, mut after) = (0, None::<String>);
    loop {
        let page = s
            .query(
                "query($a: String) { events(after: $a, first: 500) { edges { cursor node { stream } } } }",
                json!({ "a": after }),
            )
            .await;
        let edges = page["events"]["edges"].as_array().expect("edges").clone();
        count += edges.iter().filter(|e| e["node"]["stream"] == name.as_str()).count();
        match edges.last() {
            Some(last) => after = last["cursor"].as_str().map(str::to_owned),
            None => break,
        }
    }
    (version, count)
}

/// The event types on the patient's stream, as `token`'s holder reads the patient.
async fn history_as(s: &Server, token: &str, p: Uuid) -> Vec<String> {
    let q = "query($id: UUID!) { patient(id: $id) { history { type } } }";
    let (_, v) = s.gql_as(Some(token), q, json!({ "id": p })).await;
    ok_data(&v)["patient"]["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history: {v}"))
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_registered_through_fhir_and_forgotten_returns_as_a_new_unlinked_patient_and_the_old_stream_gains_nothing(
) {
    let (s, _dir) = fhir_server().await;
    let integration = s.token("integration", &[], None);
    let n = number(0);
    let first = vec![organization(), patient("pas-1", &n), referral("sr-1", "pas-1", "2016-01-04T09:00:00Z")];
    let (status, resp) = post(&s, &integration, "transaction", first).await;
    assert_eq!(status, 200, "{resp:#}");
    let (service, old) = (location_id(&resp, 0), location_id(&resp, 1));
    forget(&s, old).await;
    let forgotten = stream(&s, old).await;
    assert_eq!(forgotten.1, 3, "registered, referred, forgotten: {forgotten:?}");

    // The integration sends the same Patient again, with a new referral.
    let committed = s.committed().await;
    let again = vec![patient("pas-1", &n), referral("sr-2", "pas-1", "2016-06-01T09:00:00Z")];
    let (status, returned) = post(&s, &integration, "batch", again.clone()).await;
    assert_eq!(status, 200, "{returned:#}");
    assert_eq!(statuses(&returned), ["201 Created", "201 Created"], "{returned:#}");
    let new = location_id(&returned, 0);
    assert_ne!(new, old, "the returning person is a new patient");
    assert_eq!(s.committed().await, committed + 2, "a registration and a referral, both on the new stream");
    assert_eq!(stream(&s, old).await, forgotten, "nothing was appended to the forgotten stream");
    assert_eq!(s.patient(new, "nationalId forgotten").await, json!({ "nationalId": n, "forgotten": false }));

    // A clinician of the service reads the new patient: the new referral only, no old history.
    let clinician = s.token("clinician", &[service], None);
    assert_eq!(history_as(&s, &clinician, new).await, ["PatientRegistered", "ReferralReceived"]);
    assert_eq!(history_as(&s, &clinician, old).await, ["PatientRegistered", "ReferralReceived", "PatientForgotten"]);

    // The answer is the one a number never seen gets.
    let unseen = vec![patient("pas-9", &number(1)), referral("sr-9", "pas-9", "2016-06-01T09:00:00Z")];
    let (status, fresh) = post(&s, &integration, "batch", unseen).await;
    assert_eq!(status, 200, "{fresh:#}");
    assert_eq!(masked(&returned), masked(&fresh), "a forgotten number answers as one never seen");

    // Sent once more, the returning person is the same new patient: nothing new anywhere.
    let committed = s.committed().await;
    let (_, resent) = post(&s, &integration, "batch", again).await;
    assert_eq!(statuses(&resent), ["200 OK", "200 OK"], "{resent:#}");
    assert_eq!(location_id(&resent, 0), new, "{resent:#}");
    assert_eq!(s.committed().await, committed);
    assert_eq!(stream(&s, old).await, forgotten);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encounter_addressed_to_a_forgotten_patient_by_national_id_or_name_is_not_placed_and_answers_as_for_a_number_never_seen(
) {
    let (s, _dir) = fhir_server().await;
    let integration = s.token("integration", &[], None);
    let n = number(2);
    let pathway = vec![
        organization(),
        practitioner(),
        patient("pas-1", &n),
        referral("sr-1", "pas-1", "2016-01-04T09:00:00Z"),
        episode("eoc-1", "pas-1", "sr-1", "2016-01-11T09:00:00Z"),
    ];
    let (status, resp) = post(&s, &integration, "transaction", pathway).await;
    assert_eq!(status, 200, "{resp:#}");
    let old = location_id(&resp, 2);
    // Before erasure, a session addressed by the number is the patient's.
    let before = vec![session("enc-0", by_number(&n), "eoc-1", "2016-01-11T10:00:00Z")];
    let (_, placed) = post(&s, &integration, "batch", before).await;
    assert_eq!(statuses(&placed), ["201 Created"], "{placed:#}");
    forget(&s, old).await;
    let forgotten = stream(&s, old).await;
    let committed = s.committed().await;

    let by_identifier = vec![session("enc-1", by_number(&n), "eoc-1", "2016-01-18T10:00:00Z")];
    let (status, answer) = post(&s, &integration, "batch", by_identifier).await;
    assert_eq!(status, 200, "{answer:#}");
    assert_ne!(statuses(&answer), ["201 Created"], "placed on the forgotten stream: {answer:#}");
    assert_eq!(s.committed().await, committed, "{answer:#}");
    assert_eq!(stream(&s, old).await, forgotten, "nothing was appended to the forgotten stream");

    // The same Encounter for a number never seen answers alike, word for word.
    let unseen = vec![session("enc-1", by_number(&number(3)), "eoc-1", "2016-01-18T10:00:00Z")];
    let (_, never) = post(&s, &integration, "batch", unseen).await;
    assert_eq!(answer, never, "a forgotten number answers as one never seen");

    // By the patient's logical id, and by forlop's own id, the forgotten patient is no one.
    for subject in [json!({ "reference": "Patient/pas-1" }), json!({ "reference": format!("Patient/{old}") })] {
        let by_name = vec![session("enc-2", subject.clone(), "eoc-1", "2016-01-25T10:00:00Z")];
        let (_, answer) = post(&s, &integration, "batch", by_name).await;
        assert_ne!(statuses(&answer), ["201 Created"], "{subject}: {answer:#}");
        assert_eq!(s.committed().await, committed, "{subject}: {answer:#}");
    }
    assert_eq!(stream(&s, old).await, forgotten);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_resolving_a_national_id_through_fhir_is_in_the_patients_access_log() {
    let (s, _dir) = fhir_server().await;
    let n = number(4);
    let p = id();
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1999, "gender": "FEMALE", "nationalId": n }))
        .await;
    let mine = s.token("patient", &[], Some(&n));
    // The operation name is left out: which names the access log keeps is the log's own rule.
    let my_log = "{ myAccessLog { nodes { role fields outcome } } }";
    let integration_reads = |v: &Value| -> Vec<Value> {
        ok_data(v)["myAccessLog"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter(|r| r["role"] == "integration")
            .cloned()
            .collect()
    };
    let (_, before) = s.gql_as(Some(&mine), my_log, json!({})).await;
    assert_eq!(integration_reads(&before), Vec::<Value>::new(), "{before}");

    // The integration turns the number into the patient's id: a batch with the Patient answers it.
    let integration = s.token("integration", &[], None);
    let (status, resp) = post(&s, &integration, "batch", vec![patient("pas-7", &n)]).await;
    assert_eq!(status, 200, "{resp:#}");
    assert_eq!(location_id(&resp, 0), p, "{resp:#}");
    let (_, after) = s.gql_as(Some(&mine), my_log, json!({})).await;
    assert_eq!(
        integration_reads(&after),
        [json!({ "role": "integration", "fields": "fhir.Patient.identifier", "outcome": "ALLOWED" })],
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_to_an_integration_quote_no_recorded_dates_and_no_other_patient() {
    let (s, _dir) = fhir_server().await;
    let integration = s.token("integration", &[], None);
    let pathway = vec![
        organization(),
        practitioner(),
        patient("pas-1", &number(5)),
        patient("pas-2", &number(6)),
        referral("sr-1", "pas-1", "2016-01-04T09:00:00Z"),
        episode("eoc-1", "pas-1", "sr-1", "2016-01-11T09:00:00Z"),
    ];
    let (status, resp) = post(&s, &integration, "transaction", pathway).await;
    assert_eq!(status, 200, "{resp:#}");
    let (first, second) = (location_id(&resp, 2), location_id(&resp, 3));
    let committed = s.committed().await;
    let refusal = |resp: &Value| -> (String, String, String) {
        let r = &resp["entry"][0]["response"];
        let issue = &r["outcome"]["issue"][0];
        (
            r["status"].as_str().unwrap_or_default().to_owned(),
            issue["code"].as_str().unwrap_or_default().to_owned(),
            issue["diagnostics"].as_str().unwrap_or_default().to_owned(),
        )
    };

    // A session before the episode's start: refused, saying so, without the start's date.
    let early = vec![session("enc-1", json!({ "reference": "Patient/pas-1" }), "eoc-1", "2016-01-05T10:00:00Z")];
    let (_, resp) = post(&s, &integration, "batch", early.clone()).await;
    let (status, code, said) = refusal(&resp);
    assert_eq!((status.as_str(), code.as_str()), ("422 Unprocessable Entity", "business-rule"), "{resp:#}");
    assert!(said.starts_with("INVALID_INPUT: ") && said.contains("before the episode's startedAt"), "{said}");
    assert!(!said.contains("2016-01-11"), "the episode's start is quoted: {said}");
    // The referral of the first patient, sent again as the second's: refused without saying whose it is.
    let taken = vec![referral("sr-1", "pas-2", "2016-01-04T09:00:00Z")];
    let (_, resp) = post(&s, &integration, "batch", taken.clone()).await;
    let (status, code, said) = refusal(&resp);
    assert_eq!((status.as_str(), code.as_str()), ("422 Unprocessable Entity", "business-rule"), "{resp:#}");
    assert!(said.starts_with("INVALID_INPUT: "), "{said}");
    for secret in ["another patient", &first.to_string(), &second.to_string()] {
        assert!(!said.contains(secret), "{said} says {secret}");
    }
    assert_eq!(s.committed().await, committed, "refused facts appended");

    // An admin, who may read both patients, is told what the facts were checked against.
    let (_, resp) = post(&s, &s.admin, "batch", early).await;
    assert!(refusal(&resp).2.contains("2016-01-11"), "{resp:#}");
    let (_, resp) = post(&s, &s.admin, "batch", taken).await;
    assert!(refusal(&resp).2.contains("another patient"), "{resp:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integrations_refused_everything_is_logged_as_denied() {
    let (s, _dir) = fhir_server().await;
    let integration = s.token("integration", &[], None);
    let (status, resp) = post(&s, &integration, "batch", vec![patient("pas-1", &number(7))]).await;
    assert_eq!(status, 200, "{resp:#}");
    let p = location_id(&resp, 0);
    let get = |patient: Uuid| {
        s.client().get(format!("{}/fhir/Patient/{patient}/$everything", s.url)).bearer_auth(&integration).send()
    };
    let r = get(p).await.expect("GET $everything");
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.expect("an OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "forbidden", "{body:#}");
    // A patient that does not exist is refused alike: no existence oracle.
    assert_eq!(get(id()).await.expect("GET $everything").status(), 403);

    let log = s
        .query("query($p: UUID!) { accessLog(patientId: $p) { nodes { role fields outcome } } }", json!({ "p": p }))
        .await;
    let exports: Vec<&Value> = log["accessLog"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|r| r["fields"] == "fhir.Patient.$everything")
        .collect();
    assert_eq!(
        exports,
        [&json!({ "role": "integration", "fields": "fhir.Patient.$everything", "outcome": "DENIED" })],
        "{log:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forget_on_one_node_blocks_the_fhir_names_another_node_gave_the_patient() {
    let pg = forlop_store::pg_cluster::TestCluster::start(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")))
        .expect("start PostgreSQL");
    let url = pg.url("postgres");
    let levels = tempfile::tempdir().expect("tempdir");
    let file = levels.path().join("care-levels.toml");
    std::fs::write(&file, CARE_LEVELS).expect("write care levels");
    let flags = ["--store", url.as_str(), "--fhir-care-levels", file.to_str().expect("path")];
    let a = Server::start_with(&flags).await;
    let dir_b = tempfile::tempdir().expect("tempdir");
    share_keys(&a.dir, dir_b.path());
    let b = Server::start_in(dir_b.path(), &flags).await;

    // Node B's FHIR adapter names the patient (its alias index is its own, in B's --data).
    let integration = b.token("integration", &[], None);
    let n = number(8);
    let pathway = vec![
        organization(),
        practitioner(),
        patient("pas-1", &n),
        referral("sr-1", "pas-1", "2016-01-04T09:00:00Z"),
        episode("eoc-1", "pas-1", "sr-1", "2016-01-11T09:00:00Z"),
    ];
    let (status, resp) = post(&b, &integration, "transaction", pathway).await;
    assert_eq!(status, 200, "{resp:#}");
    let old = location_id(&resp, 2);

    // Node A forgets; B answers once it has folded that (it waits for the position).
    let q = "mutation($in: ForgetPatientInput!) { forgetPatient(input: $in) { position } }";
    let forgot = ok_data(&a.gql(q, json!({ "in": { "patientId": old } })).await)["forgetPatient"]["position"]
        .as_u64()
        .expect("position");
    let r = b
        .client()
        .post(format!("{}/graphql", b.url))
        .bearer_auth(&b.admin)
        .header("x-forlop-min-position", forgot.to_string())
        .json(&json!({ "query": "query($id: UUID!) { patient(id: $id) { forgotten } }", "variables": { "id": old } }))
        .send()
        .await
        .expect("POST /graphql");
    let folded: Value = r.json().await.expect("JSON");
    assert_eq!(ok_data(&folded)["patient"]["forgotten"], true, "{folded}");
    let forgotten = stream(&b, old).await;
    let committed = b.committed().await;

    // B's names for the patient (logical ids, the number, the episode) name no one now.
    let by_name = vec![session("enc-1", json!({ "reference": "Patient/pas-1" }), "eoc-1", "2016-01-18T10:00:00Z")];
    let (_, answer) = post(&b, &integration, "batch", by_name).await;
    assert_ne!(statuses(&answer), ["201 Created"], "{answer:#}");
    assert_eq!(b.committed().await, committed, "{answer:#}");
    // And the returning person is new on either node.
    let again = vec![patient("pas-1", &n), referral("sr-2", "pas-1", "2016-06-01T09:00:00Z")];
    let (_, returned) = post(&b, &integration, "batch", again).await;
    assert_eq!(statuses(&returned), ["201 Created", "201 Created"], "{returned:#}");
    let new = location_id(&returned, 0);
    assert_ne!(new, old);
    // Node A's FHIR index never heard of B's names, but the number is the vault's, shared.
    let (_, on_a) = post(&a, &a.token("integration", &[], None), "batch", vec![patient("pas-1", &n)]).await;
    assert_eq!(statuses(&on_a), ["200 OK"], "{on_a:#}");
    assert_eq!(location_id(&on_a, 0), new, "{on_a:#}");
    assert_eq!(stream(&b, old).await, forgotten, "nothing was appended to the forgotten stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_import_after_an_erasure_registers_the_returning_person_anew_and_appends_nothing_to_the_forgotten_stream(
) {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    // The key file the test server also uses, so that both open the same key table.
    let key = data.join("test-master.key");
    std::fs::write(&key, base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())).unwrap();
    let levels = dir.path().join("care-levels.toml");
    std::fs::write(&levels, CARE_LEVELS).unwrap();
    let (d, k, l) = (data.to_str().unwrap(), key.to_str().unwrap(), levels.to_str().unwrap());
    let import = |name: &str, resources: Vec<Value>| {
        let file = dir.path().join(name);
        let lines: Vec<String> = resources.iter().map(Value::to_string).collect();
        std::fs::write(&file, lines.join("\n")).unwrap();
        let out =
            run_ok(&["import-fhir", "--data", d, "--key-file", k, "--fhir-care-levels", l, file.to_str().unwrap()]);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let n = number(9);
    let by_number = "query($n: String!) { patientByNationalId(nationalId: $n) { id } }";
    let err = import(
        "first.ndjson",
        vec![organization(), patient("pas-1", &n), referral("sr-1", "pas-1", "2016-01-04T09:00:00Z")],
    );
    assert!(err.contains("events appended 3") && err.contains("failed 0"), "{err}");

    let s = Server::start_in(&data, &["--fhir-care-levels", l]).await;
    let found = s.query(by_number, json!({ "n": n })).await;
    let old: Uuid = found["patientByNationalId"]["id"].as_str().expect("the imported patient").parse().unwrap();
    forget(&s, old).await;
    let forgotten = stream(&s, old).await;
    assert_eq!(s.stop().code(), Some(0));

    // The same file's Patient again, with a new referral, imported offline.
    let err = import("again.ndjson", vec![patient("pas-1", &n), referral("sr-2", "pas-1", "2016-06-01T09:00:00Z")]);
    assert!(err.contains("events appended 2") && err.contains("failed 0"), "{err}");
    let s = Server::start_in(&data, &["--fhir-care-levels", l]).await;
    assert_eq!(stream(&s, old).await, forgotten, "nothing was appended to the forgotten stream");
    let found = s.query(by_number, json!({ "n": n })).await;
    let new: Uuid = found["patientByNationalId"]["id"].as_str().expect("the returning person").parse().unwrap();
    assert_ne!(new, old);
    assert_eq!(history_as(&s, &s.admin, new).await, ["PatientRegistered", "ReferralReceived"]);
}
