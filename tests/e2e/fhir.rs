//! FHIR R4 ingest and export through the real server: a pathway sent as a transaction Bundle
//! gives the same continuity as the same pathway sent as GraphQL mutations; resending appends
//! nothing; bad entries get OperationOutcomes naming the element; NDJSON arrives out of order.
//!
//! Long because its cases share one server and one set of Bundles built by hand; each test
//! stands alone on them.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::*;

const RESH: &str = "urn:oid:2.16.578.1.12.4.1.4.102";
const HPR: &str = "urn:oid:2.16.578.1.12.4.1.4.4";
const FNR: &str = "urn:oid:2.16.578.1.12.4.1.4.1";
/// Synthetic (month + 80): 15 November 1985.
const SYNTHETIC_FNR: &str = "15918510033";

pub(crate) const CARE_LEVELS: &str = r#"
[[service]]
system = "urn:oid:2.16.578.1.12.4.1.4.102"
value = "4001031"
care_level = "MUNICIPAL"

[[service]]
system = "urn:oid:2.16.578.1.12.4.1.4.102"
value = "4001032"
care_level = "SPECIALIST_OUTPATIENT"

[[service]]
system = "urn:oid:2.16.578.1.12.4.1.4.102"
value = "4001033"
care_level = "SPECIALIST_INPATIENT"
"#;

const CONTINUITY: &str = "continuity { attendedSessions distinctTherapists careLevelTransitions
    transitionsKeepingTherapist sameTherapistAcrossCareLevels coc upc secon mmci
    segments { careLevel from to therapistIds sessions }
    handovers { fromTherapistId toTherapistId reason patientNotified releasedAt gapDays } }
    episodes { serviceId careLevel startedAt endedAt endReason }";

async fn fhir_server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("care-levels.toml");
    std::fs::write(&file, CARE_LEVELS).expect("write care levels");
    let s = Server::start_with(&["--fhir-care-levels", file.to_str().expect("path")]).await;
    (s, dir)
}

pub(crate) async fn post_fhir(s: &Server, token: Option<&str>, content_type: &str, body: String) -> (u16, Value) {
    let mut req = s.client().post(format!("{}/fhir", s.url)).header("content-type", content_type).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("POST /fhir");
    let status = r.status().as_u16();
    (status, r.json().await.expect("FHIR answers JSON"))
}

/// GET /fhir/Patient/{patient}/$everything with `token` as the bearer.
async fn everything_as(s: &Server, token: &str, patient: impl std::fmt::Display) -> reqwest::Response {
    s.client()
        .get(format!("{}/fhir/Patient/{patient}/$everything", s.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET $everything")
}

fn entry(resource: Value) -> Value {
    json!({ "resource": resource, "request": { "method": "POST", "url": resource["resourceType"] } })
}

pub(crate) fn bundle(kind: &str, resources: Vec<Value>) -> String {
    json!({ "resourceType": "Bundle", "type": kind, "entry": resources.into_iter().map(entry).collect::<Vec<_>>() })
        .to_string()
}

fn session(id: &str, episode: &str, practitioner: &str, status: &str, at: &str) -> Value {
    let mut e = json!({ "resourceType": "Encounter", "id": id, "status": status,
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
        "subject": { "reference": "Patient/pas-1" },
        "episodeOfCare": [{ "reference": format!("EpisodeOfCare/{episode}") }],
        "participant": [{ "individual": { "reference": format!("Practitioner/{practitioner}") } }],
        "period": { "start": at } });
    if status == "cancelled" {
        e["reasonCode"] = json!([{ "text": "no-show" }]);
    }
    e
}

fn phq9(id: &str, encounter: &str, items: &[i64], at: &str) -> Value {
    const ITEMS: [&str; 9] =
        ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", "44260-8"];
    let component: Vec<Value> = items
        .iter()
        .zip(ITEMS)
        .map(|(v, code)| json!({ "code": { "coding": [{ "system": "http://loinc.org", "code": code }] }, "valueInteger": v }))
        .collect();
    json!({ "resourceType": "Observation", "id": id, "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "44261-6" }] },
        "subject": { "reference": "Patient/pas-1" },
        "encounter": { "reference": format!("Encounter/{encounter}") },
        "effectiveDateTime": at, "valueInteger": items.iter().sum::<i64>(), "component": component })
}

/// A municipal episode, then a DPS episode where the first therapist goes on sick leave without
/// the patient being told: as a record system would send it.
fn pathway() -> Vec<Value> {
    vec![
        json!({ "resourceType": "Organization", "id": "org-rph", "name": "RPH Gamle Oslo",
            "identifier": [{ "system": RESH, "value": "4001031" }] }),
        json!({ "resourceType": "HealthcareService", "id": "hs-dps", "name": "DPS poliklinikk",
            "identifier": [{ "system": RESH, "value": "4001032" }] }),
        json!({ "resourceType": "Practitioner", "id": "pr-a", "name": [{ "given": ["Anne"], "family": "Andersen" }],
            "identifier": [{ "system": HPR, "value": "9144889" }] }),
        json!({ "resourceType": "Practitioner", "id": "pr-b", "name": [{ "text": "Bjørn Berg" }],
            "identifier": [{ "system": HPR, "value": "9144890" }] }),
        json!({ "resourceType": "PractitionerRole", "id": "gp-role", "practitioner": { "display": "Fastlege" },
            "code": [{ "coding": [{ "system": "http://snomed.info/sct", "code": "62247001" }] }] }),
        json!({ "resourceType": "Patient", "id": "pas-1", "gender": "female", "birthDate": "1985-11-15",
            "identifier": [{ "system": FNR, "value": SYNTHETIC_FNR }] }),
        json!({ "resourceType": "ServiceRequest", "id": "sr-1", "status": "active", "intent": "order",
            "subject": { "reference": "Patient/pas-1" }, "requester": { "reference": "Patient/pas-1" },
            "performer": [{ "reference": "Organization/org-rph" }], "authoredOn": "2016-01-04T09:00:00Z" }),
        json!({ "resourceType": "EpisodeOfCare", "id": "eoc-1", "status": "finished",
            "patient": { "reference": "Patient/pas-1" },
            "managingOrganization": { "reference": "Organization/org-rph" },
            "referralRequest": [{ "reference": "ServiceRequest/sr-1" }],
            "careManager": { "reference": "Practitioner/pr-a" },
            "period": { "start": "2016-01-11T09:00:00Z", "end": "2016-02-08T11:00:00Z" },
            "extension": [{ "url": "https://forlop.no/fhir/StructureDefinition/end-reason", "valueCode": "REFERRED_ONWARD" }] }),
        session("enc-1", "eoc-1", "pr-a", "finished", "2016-01-11T10:00:00Z"),
        session("enc-2", "eoc-1", "pr-a", "finished", "2016-01-18T10:00:00Z"),
        session("enc-3", "eoc-1", "pr-a", "cancelled", "2016-01-25T10:00:00Z"),
        phq9("obs-1", "enc-1", &[2, 2, 2, 2, 2, 1, 1, 1, 1], "2016-01-11T09:30:00Z"),
        // Referred by the GP to the DPS, whose service is named by its RESH id.
        json!({ "resourceType": "ServiceRequest", "id": "sr-2", "status": "completed", "intent": "order",
            "subject": { "reference": "Patient/pas-1" }, "requester": { "reference": "PractitionerRole/gp-role" },
            "performer": [{ "type": "HealthcareService", "identifier": { "system": RESH, "value": "4001032" } }],
            "authoredOn": "2016-02-09T09:00:00Z" }),
        json!({ "resourceType": "EpisodeOfCare", "id": "eoc-2", "status": "active",
            "contained": [{ "resourceType": "CareTeam", "id": "team", "participant": [
                { "member": { "reference": "Practitioner/pr-a" },
                  "period": { "start": "2016-02-15T09:00:00Z", "end": "2016-03-01T09:00:00Z" },
                  "extension": [
                    { "url": "https://forlop.no/fhir/StructureDefinition/release-reason", "valueCode": "SICK_LEAVE" },
                    { "url": "https://forlop.no/fhir/StructureDefinition/patient-notified", "valueBoolean": false } ] },
                { "member": { "reference": "Practitioner/pr-b" }, "period": { "start": "2016-03-08T09:00:00Z" } } ] }],
            "patient": { "reference": "Patient/pas-1" },
            "managingOrganization": { "reference": "HealthcareService/hs-dps" },
            "referralRequest": [{ "reference": "ServiceRequest/sr-2" }],
            "team": [{ "reference": "#team" }],
            "period": { "start": "2016-02-15T09:00:00Z" } }),
        session("enc-4", "eoc-2", "pr-a", "finished", "2016-02-15T10:00:00Z"),
        session("enc-5", "eoc-2", "pr-b", "finished", "2016-03-08T10:00:00Z"),
    ]
}

/// The same pathway as GraphQL mutations, for patient `p`, with the services and therapists the
/// FHIR ingest created.
async fn same_pathway_by_graphql(s: &Server, p: Uuid, rph: Uuid, dps: Uuid, a: Uuid, b: Uuid) {
    let (r1, r2, e1, e2) = (id(), id(), id(), id());
    let sess = |e: Uuid, t: Uuid, att: &str, at: &str| {
        (
            "recordSession",
            json!({ "patientId": p, "episodeId": e, "sessionId": id(), "therapistId": t, "attendance": att, "at": at }),
        )
    };
    let steps = vec![
        ("registerPatient", json!({ "patientId": p, "birthYear": 1985, "gender": "FEMALE" })),
        (
            "receiveReferral",
            json!({ "patientId": p, "referralId": r1, "serviceId": rph, "source": "SELF", "receivedAt": "2016-01-04T09:00:00Z" }),
        ),
        (
            "decideReferral",
            json!({ "patientId": p, "referralId": r1, "decision": "ACCEPTED", "decidedAt": "2016-01-11T09:00:00Z" }),
        ),
        (
            "startEpisode",
            json!({ "patientId": p, "episodeId": e1, "serviceId": rph, "referralId": r1, "startedAt": "2016-01-11T09:00:00Z" }),
        ),
        (
            "assignTherapist",
            json!({ "patientId": p, "episodeId": e1, "therapistId": a, "assignedAt": "2016-01-11T09:00:00Z" }),
        ),
        sess(e1, a, "ATTENDED", "2016-01-11T10:00:00Z"),
        sess(e1, a, "ATTENDED", "2016-01-18T10:00:00Z"),
        sess(e1, a, "NO_SHOW", "2016-01-25T10:00:00Z"),
        (
            "recordOutcome",
            json!({ "patientId": p, "episodeId": e1, "instrument": "PHQ9", "phase": "INTAKE",
            "items": [2, 2, 2, 2, 2, 1, 1, 1, 1], "measuredAt": "2016-01-11T09:30:00Z" }),
        ),
        (
            "endEpisode",
            json!({ "patientId": p, "episodeId": e1, "reason": "REFERRED_ONWARD", "endedAt": "2016-02-08T11:00:00Z" }),
        ),
        (
            "receiveReferral",
            json!({ "patientId": p, "referralId": r2, "serviceId": dps, "source": "GP", "receivedAt": "2016-02-09T09:00:00Z" }),
        ),
        (
            "decideReferral",
            json!({ "patientId": p, "referralId": r2, "decision": "ACCEPTED", "decidedAt": "2016-02-15T09:00:00Z" }),
        ),
        (
            "startEpisode",
            json!({ "patientId": p, "episodeId": e2, "serviceId": dps, "referralId": r2, "startedAt": "2016-02-15T09:00:00Z" }),
        ),
        (
            "assignTherapist",
            json!({ "patientId": p, "episodeId": e2, "therapistId": a, "assignedAt": "2016-02-15T09:00:00Z" }),
        ),
        (
            "releaseTherapist",
            json!({ "patientId": p, "episodeId": e2, "therapistId": a, "reason": "SICK_LEAVE",
            "patientNotified": false, "releasedAt": "2016-03-01T09:00:00Z" }),
        ),
        (
            "assignTherapist",
            json!({ "patientId": p, "episodeId": e2, "therapistId": b, "assignedAt": "2016-03-08T09:00:00Z" }),
        ),
        sess(e2, a, "ATTENDED", "2016-02-15T10:00:00Z"),
        sess(e2, b, "ATTENDED", "2016-03-08T10:00:00Z"),
    ];
    for (op, input) in steps {
        s.record(op, input).await;
    }
}

fn location_id(response: &Value, index: usize) -> Uuid {
    let loc = response["entry"][index]["response"]["location"].as_str().expect("location");
    loc.rsplit('/').next().expect("id").parse().expect("uuid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_pathway_as_a_transaction_then_continuity_equals_the_same_pathway_as_mutations_and_a_resend_appends_nothing(
) {
    let (s, _dir) = fhir_server().await;
    let integration = s.token("integration", &[], None);
    let before = s.committed().await;
    let (status, resp) =
        post_fhir(&s, Some(&integration), "application/fhir+json", bundle("transaction", pathway())).await;
    assert_eq!(status, 200, "{resp:#}\n{}", s.log_tail());
    assert_eq!(resp["type"], "transaction-response");
    let statuses: Vec<&str> =
        resp["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
    assert!(statuses.iter().all(|st| st.starts_with("201") || st.starts_with("200")), "{statuses:?}");
    let appended = s.committed().await - before;
    // 2 services, 2 therapists, patient, 2 referrals (+2 acceptances), 2 episodes (+1 end),
    // 3 assignments + 1 release, 5 sessions, 1 outcome.
    assert_eq!(appended, 22, "{resp:#}");

    // The patient, read by the ids the Bundle answered with.
    let (rph, dps, a, b, patient) = (
        location_id(&resp, 0),
        location_id(&resp, 1),
        location_id(&resp, 2),
        location_id(&resp, 3),
        location_id(&resp, 5),
    );
    let by_fhir = s.patient(patient, &format!("nationalId {CONTINUITY}")).await;
    assert_eq!(by_fhir["nationalId"], SYNTHETIC_FNR, "the national id was registered (encrypted)");

    let p2 = id();
    same_pathway_by_graphql(&s, p2, rph, dps, a, b).await;
    let by_graphql = s.patient(p2, CONTINUITY).await;
    assert_eq!(by_fhir["continuity"], by_graphql["continuity"]);
    assert_eq!(by_fhir["episodes"], by_graphql["episodes"]);
    assert_eq!(by_fhir["continuity"]["handovers"][0]["reason"], "SICK_LEAVE", "{by_fhir:#}");
    assert_eq!(by_fhir["continuity"]["handovers"][0]["patientNotified"], false);

    // Resending the whole Bundle appends nothing, and says so entry by entry.
    let committed = s.committed().await;
    let (status, again) =
        post_fhir(&s, Some(&integration), "application/fhir+json", bundle("transaction", pathway())).await;
    assert_eq!(status, 200, "{again:#}");
    assert!(again["entry"].as_array().unwrap().iter().all(|e| e["response"]["status"] == "200 OK"), "{again:#}");
    assert_eq!(s.committed().await, committed);

    // A new version of the open episode, now finished, appends only its end.
    let mut resources = pathway();
    let eoc2 = resources.iter_mut().find(|r| r["id"] == "eoc-2").unwrap();
    eoc2["status"] = json!("finished");
    eoc2["period"]["end"] = json!("2016-05-01T09:00:00Z");
    let (status, newer) = post_fhir(&s, Some(&integration), "application/fhir+json", bundle("batch", resources)).await;
    assert_eq!(status, 200, "{newer:#}");
    assert_eq!(s.committed().await, committed + 1);

    // Export: the pathway back as R4, access-logged like any read.
    let r = everything_as(&s, &s.token("auditor", &[], None), patient).await;
    assert_eq!(r.status(), 200);
    let everything: Value = r.json().await.unwrap();
    assert_eq!(everything["type"], "searchset");
    let count =
        |t: &str| everything["entry"].as_array().unwrap().iter().filter(|e| e["resource"]["resourceType"] == t).count();
    assert_eq!((count("Patient"), count("EpisodeOfCare"), count("Encounter"), count("Observation")), (1, 2, 5, 1));
    let dps_ref = format!("Organization/{dps}");
    let eoc = everything["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["resource"]["resourceType"] == "EpisodeOfCare"
                && e["resource"]["managingOrganization"]["reference"] == dps_ref.as_str()
        })
        .expect("the DPS episode");
    assert_eq!(eoc["resource"]["status"], "finished");
    let team = eoc["resource"]["contained"][0]["participant"].as_array().unwrap();
    assert_eq!(team.len(), 2, "{eoc:#}");
    assert_eq!(team[0]["extension"][0]["valueCode"], "SICK_LEAVE");
    let log = s
        .query(
            "query($p: UUID!) { accessLog(patientId: $p) { nodes { operation outcome role } } }",
            json!({ "p": patient }),
        )
        .await;
    assert!(
        log["accessLog"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["operation"] == "fhir.Patient.$everything" && n["role"] == "auditor"),
        "{log:#}"
    );
    // An integration may record, not read the pathway back.
    let r = everything_as(&s, &integration, patient).await;
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_bad_entries_in_a_transaction_then_one_outcome_names_each_and_nothing_is_appended() {
    let (s, _dir) = fhir_server().await;
    let token = s.token("integration", &[], None);
    let mut resources = pathway();
    resources.push(json!({ "resourceType": "Medicament", "id": "m" }));
    resources.push(phq9("obs-short", "enc-1", &[1, 1, 1, 1, 1, 1, 1], "2016-01-18T09:30:00Z"));
    resources.push(json!({ "resourceType": "Encounter", "id": "enc-x", "status": "finished",
        "class": { "code": "AMB" }, "subject": { "reference": "Patient/pas-1" },
        "episodeOfCare": [{ "reference": "urn:uuid:7d0c3f5e-0000-4000-8000-000000000000" }],
        "participant": [{ "individual": { "reference": "Practitioner/pr-a" } }],
        "period": { "start": "2016-01-20T10:00:00Z" } }));
    resources.push(json!({ "resourceType": "HealthcareService", "id": "hs-unmapped", "name": "X",
        "identifier": [{ "system": RESH, "value": "999" }] }));
    // HL7 Norway's published example number, which fails the mod-11 check.
    resources.push(json!({ "resourceType": "Patient", "id": "bad-fnr", "birthDate": "1977-03-21",
        "identifier": [{ "system": FNR, "value": "21037750231" }] }));
    let n = resources.len() - 1;
    let before = s.committed().await;
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", bundle("transaction", resources)).await;
    assert_eq!(status, 400, "{resp:#}");
    assert_eq!(resp["resourceType"], "OperationOutcome");
    let issues = resp["issue"].as_array().unwrap();
    let at = |path: &str| {
        issues
            .iter()
            .find(|i| i["expression"][0].as_str().unwrap_or("").starts_with(path))
            .unwrap_or_else(|| panic!("no issue at {path}: {resp:#}"))
            .clone()
    };
    assert_eq!(at(&format!("Bundle.entry[{}].resource.resourceType", n - 4))["code"], "not-supported");
    let short = at(&format!("Bundle.entry[{}].resource.component", n - 3));
    assert!(short["diagnostics"].as_str().unwrap().contains("all 9 item answers"), "{short}");
    assert_eq!(at(&format!("Bundle.entry[{}].resource.episodeOfCare[0].reference", n - 2))["code"], "not-found");
    assert!(at(&format!("Bundle.entry[{}].resource.identifier", n - 1))["diagnostics"]
        .as_str()
        .unwrap()
        .contains("|999"));
    let bad = at(&format!("Bundle.entry[{n}].resource.identifier[0].value"));
    assert_eq!(bad["code"], "value", "{resp:#}");
    assert!(bad["diagnostics"].as_str().unwrap().contains("check digit"), "{bad}");
    assert!(!bad["diagnostics"].as_str().unwrap().contains("21037750231"), "the number is not echoed: {bad}");
    assert_eq!(s.committed().await, before, "a transaction with any bad entry appends nothing");

    // As a batch, the good entries are placed and each bad one answers on its own.
    let mut resources = pathway();
    resources.push(json!({ "resourceType": "Medicament", "id": "m" }));
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", bundle("batch", resources)).await;
    assert_eq!(status, 200, "{resp:#}");
    assert_eq!(resp["type"], "batch-response");
    let last = &resp["entry"][pathway().len()]["response"];
    assert_eq!(last["status"], "400 Bad Request");
    // A created entry answers 201 in a batch as in a transaction.
    for i in [0, 2, 5, 7, 8] {
        assert_eq!(resp["entry"][i]["response"]["status"], "201 Created", "entry {i}: {resp:#}");
    }
    assert_eq!(last["outcome"]["issue"][0]["code"], "not-supported");
    assert_eq!(s.committed().await, before + 22);

    // Malformed JSON, a wrong resource type, a wrong media type, no token, too large.
    let (status, resp) =
        post_fhir(&s, Some(&token), "application/fhir+json", "{\"resourceType\": \"Bundle\", ".into()).await;
    assert_eq!((status, resp["issue"][0]["code"].as_str()), (400, Some("structure")), "{resp:#}");
    let (status, resp) =
        post_fhir(&s, Some(&token), "application/fhir+json", json!({ "resourceType": "Patient" }).to_string()).await;
    assert_eq!((status, resp["issue"][0]["code"].as_str()), (400, Some("not-supported")), "{resp:#}");
    let (status, _) = post_fhir(&s, Some(&token), "text/plain", bundle("batch", vec![])).await;
    assert_eq!(status, 415);
    let (status, resp) = post_fhir(&s, None, "application/fhir+json", bundle("batch", vec![])).await;
    assert_eq!((status, resp["resourceType"].as_str()), (401, Some("OperationOutcome")));
    let huge = bundle("batch", vec![json!({ "resourceType": "Patient", "id": "x".repeat(17 * 1024 * 1024) })]);
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", huge).await;
    assert_eq!((status, resp["issue"][0]["code"].as_str()), (413, Some("too-costly")), "{resp:#}");
    // An analyst may not record.
    let (status, resp) =
        post_fhir(&s, Some(&s.token("analyst", &[], None)), "application/fhir+json", bundle("transaction", pathway()))
            .await;
    assert_eq!(status, 403, "{resp:#}");
    assert_eq!(s.committed().await, before + 22);
    s.health().await;
}

/// `pathway()` as many record systems build a transaction: every entry a POST named only by a
/// `urn:uuid:` fullUrl, no logical ids, references by fullUrl, and therapists without HPR
/// numbers (only the services keep the RESH ids the care levels map, the patient their number).
fn pathway_by_full_url() -> Value {
    let resources = pathway();
    let urn = |id: &str| format!("urn:uuid:{}", Uuid::new_v5(&Uuid::NAMESPACE_URL, id.as_bytes()));
    let mut names = std::collections::HashMap::new();
    for r in &resources {
        let t = r["resourceType"].as_str().unwrap();
        let id = r["id"].as_str().unwrap();
        names.insert(format!("{t}/{id}"), urn(id));
    }
    fn rewrite(v: &mut Value, names: &std::collections::HashMap<String, String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get_mut("reference") {
                    if let Some(u) = names.get(r.as_str()) {
                        *r = u.clone();
                    }
                }
                m.values_mut().for_each(|x| rewrite(x, names));
            }
            Value::Array(a) => a.iter_mut().for_each(|x| rewrite(x, names)),
            _ => {}
        }
    }
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|mut r| {
            let full_url = urn(r["id"].as_str().unwrap());
            let t = r["resourceType"].as_str().unwrap().to_owned();
            let m = r.as_object_mut().unwrap();
            m.remove("id");
            if t == "Practitioner" {
                m.remove("identifier");
            }
            rewrite(&mut r, &names);
            json!({ "fullUrl": full_url, "resource": r, "request": { "method": "POST", "url": t } })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_transaction_of_posts_named_only_by_urn_uuid_then_the_first_send_records_it_and_a_resend_appends_nothing(
) {
    let (s, _dir) = fhir_server().await;
    let token = s.token("integration", &[], None);
    let sent = pathway_by_full_url().to_string();
    let before = s.committed().await;
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", sent.clone()).await;
    assert_eq!(status, 200, "{resp:#}");
    assert_eq!(s.committed().await, before + 22, "the whole pathway, as by logical ids: {resp:#}");
    let (status, again) = post_fhir(&s, Some(&token), "application/fhir+json", sent).await;
    assert_eq!(status, 200, "{again:#}");
    assert_eq!(s.committed().await, before + 22, "a resend appends nothing: {again:#}");
    for (first, second) in resp["entry"].as_array().unwrap().iter().zip(again["entry"].as_array().unwrap()) {
        assert_eq!(first["response"]["location"], second["response"]["location"], "the same ids: {again:#}");
    }
    // The therapists without HPR numbers are therapists, and the pathway's continuity is the
    // same as when it is sent by logical ids.
    let by_urn = s.patient(pseudonymous_patient(&s).await.parse().unwrap(), CONTINUITY).await;
    let (dir2, levels) = (tempfile::tempdir().unwrap(), CARE_LEVELS);
    std::fs::write(dir2.path().join("care-levels.toml"), levels).unwrap();
    let by_id =
        Server::start_with(&["--fhir-care-levels", dir2.path().join("care-levels.toml").to_str().unwrap()]).await;
    let (status, resp) = post_fhir(
        &by_id,
        Some(&by_id.token("integration", &[], None)),
        "application/fhir+json",
        bundle("transaction", pathway()),
    )
    .await;
    assert_eq!(status, 200, "{resp:#}");
    let expected = by_id.patient(pseudonymous_patient(&by_id).await.parse().unwrap(), CONTINUITY).await;
    let ignore_ids = |v: &Value| {
        let mut v = v["continuity"].clone();
        for s in v["segments"].as_array_mut().unwrap() {
            s["therapistIds"] = json!(s["therapistIds"].as_array().unwrap().len());
        }
        for h in v["handovers"].as_array_mut().unwrap() {
            h["fromTherapistId"] = json!(null);
            h["toTherapistId"] = json!(null);
        }
        v
    };
    assert_eq!(ignore_ids(&by_urn), ignore_ids(&expected), "the same continuity as by logical ids");
    assert_eq!(by_urn["continuity"]["distinctTherapists"], 2, "{by_urn:#}");

    // An entry with neither an id, an identifier nor a urn:uuid fullUrl is still refused.
    let no_name = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": { "resourceType": "EpisodeOfCare", "status": "active", "patient": { "reference": "Patient/x" } },
        "request": { "method": "POST", "url": "EpisodeOfCare" } }] });
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", no_name.to_string()).await;
    assert_eq!(status, 400, "{resp:#}");
    let text = resp["issue"].to_string();
    assert!(
        text.contains("an EpisodeOfCare needs an id, an identifier (system and value) or a urn:uuid fullUrl"),
        "{text}"
    );
    assert_eq!(s.committed().await, before + 22);
}

fn entry_with(resource: Value, request: Value) -> Value {
    json!({ "resource": resource, "request": request })
}

fn raw_bundle(kind: &str, entries: Vec<Value>) -> String {
    json!({ "resourceType": "Bundle", "type": kind, "entry": entries }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_conditional_references_if_none_exist_and_put_then_each_is_honoured_as_fhir_specifies() {
    let (s, _dir) = fhir_server().await;
    let token = s.token("integration", &[], None);
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", bundle("transaction", pathway())).await;
    assert_eq!(status, 200, "{resp:#}");
    let before = s.committed().await;

    // A referral whose patient and performer are conditional references (one `|` sent escaped).
    let referral = json!({ "resourceType": "ServiceRequest", "id": "sr-3", "status": "active", "intent": "order",
        "subject": { "reference": format!("Patient?identifier={FNR}%7C{SYNTHETIC_FNR}") },
        "requester": { "reference": format!("Patient?identifier={FNR}|{SYNTHETIC_FNR}") },
        "performer": [{ "reference": format!("Organization?identifier={RESH}|4001031") }],
        "authoredOn": "2016-06-01T09:00:00Z" });
    let (status, resp) =
        post_fhir(&s, Some(&token), "application/fhir+json", bundle("transaction", vec![referral.clone()])).await;
    assert_eq!(status, 200, "{resp:#}");
    assert_eq!(s.committed().await, before + 1, "the referral is recorded: {resp:#}");
    let patient: Uuid = pseudonymous_patient(&s).await.parse().unwrap();
    let history = s.patient(patient, "history { type }").await;
    let received = history["history"].as_array().unwrap().iter().filter(|e| e["type"] == "ReferralReceived").count();
    assert_eq!(received, 3, "{history:#}");

    // None matches, or an unsupported parameter: refused, naming the element, nothing appended.
    let mut nobody = referral.clone();
    nobody["id"] = json!("sr-4");
    // Synthetic (month + 80), held by no patient.
    nobody["subject"]["reference"] = json!(format!("Patient?identifier={FNR}|01818010083"));
    nobody["requester"]["reference"] = json!("Patient?identifier=https://example.org/mrn|nobody");
    let (status, resp) =
        post_fhir(&s, Some(&token), "application/fhir+json", bundle("transaction", vec![nobody])).await;
    assert_eq!(status, 404, "{resp:#}");
    let text = resp["issue"].to_string();
    assert!(
        text.contains("needs exactly one") && text.contains("Bundle.entry[0].resource.requester.reference"),
        "{text}"
    );
    assert!(!text.contains("01818010083"), "no national id is echoed: {text}");
    let mut by_name = referral.clone();
    by_name["id"] = json!("sr-5");
    by_name["subject"]["reference"] = json!("Patient?name=Hansen");
    let (status, resp) =
        post_fhir(&s, Some(&token), "application/fhir+json", bundle("transaction", vec![by_name])).await;
    assert_eq!((status, resp["issue"][0]["code"].as_str()), (400, Some("not-supported")), "{resp:#}");
    assert_eq!(s.committed().await, before + 1);

    // ifNoneExist: a therapist already recorded under that HPR number is not created again.
    let renamed = json!({ "resourceType": "Practitioner", "id": "pr-a2", "name": [{ "text": "Anne A. Andersen" }],
        "identifier": [{ "system": HPR, "value": "9144889" }] });
    let request =
        json!({ "method": "POST", "url": "Practitioner", "ifNoneExist": format!("identifier={HPR}|9144889") });
    let (status, resp) =
        post_fhir(&s, Some(&token), "application/fhir+json", raw_bundle("batch", vec![entry_with(renamed, request)]))
            .await;
    assert_eq!(status, 200, "{resp:#}");
    assert_eq!(resp["entry"][0]["response"]["status"], "200 OK", "{resp:#}");
    let therapists = s.query("{ therapists { id name } }", json!({})).await;
    let anne = therapists["therapists"].as_array().unwrap().iter().find(|t| t["name"] == "Anne Andersen").cloned();
    let anne = anne.unwrap_or_else(|| panic!("{therapists:#}"));
    assert_eq!(resp["entry"][0]["response"]["location"], format!("Practitioner/{}", anne["id"].as_str().unwrap()));
    assert_eq!(s.committed().await, before + 1, "nothing appended");

    // PUT Type/id: an update that appends only what changed (the DPS episode ends).
    let mut ended = pathway().into_iter().find(|r| r["id"] == "eoc-2").unwrap();
    ended["status"] = json!("finished");
    ended["period"]["end"] = json!("2016-06-30T09:00:00Z");
    let put = json!({ "method": "PUT", "url": "EpisodeOfCare/eoc-2" });
    let (status, resp) = post_fhir(
        &s,
        Some(&token),
        "application/fhir+json",
        raw_bundle("transaction", vec![entry_with(ended.clone(), put)]),
    )
    .await;
    assert_eq!(status, 200, "{resp:#}");
    let after_put = s.committed().await;
    assert!(after_put > before + 1 && after_put <= before + 3, "the end and the open assignment's release: {resp:#}");
    // Its id must be the URL's, and nothing is deleted.
    let wrong = json!({ "method": "PUT", "url": "EpisodeOfCare/eoc-1" });
    let (status, resp) = post_fhir(
        &s,
        Some(&token),
        "application/fhir+json",
        raw_bundle("transaction", vec![entry_with(ended.clone(), wrong)]),
    )
    .await;
    assert_eq!((status, resp["issue"][0]["code"].as_str()), (400, Some("value")), "{resp:#}");
    assert!(resp["issue"][0]["expression"][0].as_str().unwrap().ends_with(".resource.id"), "{resp:#}");
    let delete = json!({ "method": "DELETE", "url": "EpisodeOfCare/eoc-2" });
    let (status, resp) = post_fhir(
        &s,
        Some(&token),
        "application/fhir+json",
        raw_bundle("transaction", vec![entry_with(ended, delete)]),
    )
    .await;
    assert_eq!((status, resp["issue"][0]["code"].as_str()), (400, Some("not-supported")), "{resp:#}");
    assert_eq!(resp["issue"][0]["expression"][0], "Bundle.entry[0].request.method", "{resp:#}");
    assert_eq!(s.committed().await, after_put);
    s.health().await;
}

/// Resources of R4 types a record system's export always holds and forlop does not record.
fn unrecorded_resources() -> Vec<Value> {
    vec![
        json!({ "resourceType": "Condition", "id": "c1", "subject": { "reference": "Patient/pas-1" },
            "code": { "coding": [{ "system": "http://hl7.org/fhir/sid/icd-10", "code": "F32.1" }] } }),
        json!({ "resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
            "subject": { "reference": "Patient/pas-1" }, "medicationCodeableConcept": { "text": "sertralin" } }),
        json!({ "resourceType": "AllergyIntolerance", "id": "ai1", "patient": { "reference": "Patient/pas-1" } }),
        json!({ "resourceType": "Condition", "id": "c2", "subject": { "reference": "Patient/pas-1" } }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_resources_forlop_does_not_record_then_they_are_skipped_by_type_and_the_pathway_is_recorded() {
    let (s, _dir) = fhir_server().await;
    let token = s.token("integration", &[], None);
    let mut resources = pathway();
    let n = resources.len();
    resources.extend(unrecorded_resources());
    let before = s.committed().await;
    // A transaction holding them records the pathway; each skipped entry says why.
    let (status, resp) =
        post_fhir(&s, Some(&token), "application/fhir+json", bundle("transaction", resources.clone())).await;
    assert_eq!(status, 200, "{resp:#}");
    assert_eq!(s.committed().await, before + 22, "the pathway is recorded: {resp:#}");
    for i in n..n + 4 {
        let r = &resp["entry"][i]["response"];
        assert_eq!(r["status"], "200 OK", "{resp:#}");
        assert_eq!(r["outcome"]["issue"][0]["severity"], "information", "{resp:#}");
        assert!(r["outcome"]["issue"][0]["diagnostics"].as_str().unwrap().contains("skipped"), "{resp:#}");
        assert!(r.get("location").is_none(), "nothing was created: {r}");
    }
    // As a batch, again: nothing appended, nothing failed.
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", bundle("batch", resources.clone())).await;
    assert_eq!(status, 200, "{resp:#}");
    assert!(resp["entry"].as_array().unwrap().iter().all(|e| e["response"]["status"] == "200 OK"), "{resp:#}");
    assert_eq!(s.committed().await, before + 22);
    // In NDJSON, the summary counts them by type, not as failed.
    let lines: Vec<String> = resources.iter().map(|r| r.to_string()).collect();
    let (out, summary) = import_ndjson(&s, &lines).await;
    assert_eq!(summary["failed"], 0, "{out:#}");
    assert_eq!(
        summary["skipped"],
        json!({ "AllergyIntolerance": 1, "Condition": 2, "MedicationRequest": 1 }),
        "{out:#}"
    );
    let text = out["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        text.contains("skipped (not recorded by forlop) 4: AllergyIntolerance 1, Condition 2, MedicationRequest 1"),
        "{text}"
    );
    // What cannot be recorded says in one line why: a PHQ-9 total without its items, a
    // session without the practitioner who held it.
    let mut total_only = phq9("obs-total", "enc-1", &[], "2016-01-11T09:30:00Z");
    total_only["valueInteger"] = json!(14);
    let mut nobody_held_it = session("enc-9", "eoc-1", "pr-a", "finished", "2016-01-26T10:00:00Z");
    nobody_held_it.as_object_mut().unwrap().remove("participant");
    let (status, resp) =
        post_fhir(&s, Some(&token), "application/fhir+json", bundle("batch", vec![total_only, nobody_held_it])).await;
    assert_eq!(status, 200, "{resp:#}");
    let why =
        |i: usize| resp["entry"][i]["response"]["outcome"]["issue"][0]["diagnostics"].as_str().unwrap().to_owned();
    assert!(why(0).contains("a total alone is not recorded"), "{resp:#}");
    assert!(why(1).contains("continuity is counted by therapist"), "{resp:#}");
    assert_eq!(s.committed().await, before + 22);
    // A name that is no R4 type is still an error.
    let (status, resp) = post_fhir(
        &s,
        Some(&token),
        "application/fhir+json",
        bundle("transaction", vec![json!({ "resourceType": "Conditon", "id": "typo" })]),
    )
    .await;
    assert_eq!(status, 400, "{resp:#}");
    assert_eq!(resp["issue"][0]["code"], "not-supported", "{resp:#}");
    assert!(resp["issue"][0]["diagnostics"].as_str().unwrap().contains("not an R4 resource type"), "{resp:#}");
    assert_eq!(s.committed().await, before + 22);
    s.health().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_ndjson_out_of_order_when_imported_then_held_lines_are_placed_and_a_resend_appends_nothing() {
    let (s, _dir) = fhir_server().await;
    let token = s.token("integration", &[], None);
    // Sessions and outcomes first, then more than one chunk (4,000 lines) of the same service
    // resent, then the rest: the sessions wait for episodes that arrive in a later chunk.
    let all: Vec<String> = pathway().into_iter().map(|r| r.to_string()).collect();
    let (early, rest): (Vec<String>, Vec<String>) =
        all.iter().cloned().partition(|l| l.contains("\"Encounter\"") || l.contains("\"Observation\""));
    let mut lines = early;
    lines.extend(std::iter::repeat_n(all[0].clone(), 4000));
    lines.extend(rest);
    lines.push("{not json".into());
    let body = lines.join("\n") + "\n";
    let import = |body: String| {
        s.client()
            .post(format!("{}/fhir/$import", s.url))
            .header("content-type", "application/fhir+ndjson")
            .bearer_auth(&token)
            .body(body)
            .send()
    };
    let r = import(body.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    let summary: Value = serde_json::from_str(out["extension"][0]["valueString"].as_str().unwrap()).unwrap();
    assert_eq!(summary["resources_read"], lines.len() as u64, "{out:#}");
    assert_eq!(summary["events_appended"], 22, "{out:#}");
    assert_eq!(summary["duplicates_skipped"], 4000, "the service, sent 4,001 times: {out:#}");
    assert_eq!(summary["failed"], 1, "{out:#}");
    assert_eq!(summary["placed_after_waiting"], 6, "five sessions and the outcome waited: {out:#}");
    assert_eq!(summary["held"], 0, "{out:#}");
    let bad = &out["issue"][1];
    assert_eq!(bad["expression"][0], format!("line {}", lines.len()), "{out:#}");

    let committed = s.committed().await;
    let r = import(body).await.unwrap();
    let out: Value = r.json().await.unwrap();
    let summary: Value = serde_json::from_str(out["extension"][0]["valueString"].as_str().unwrap()).unwrap();
    assert_eq!(summary["events_appended"], 0, "{out:#}");
    assert_eq!(s.committed().await, committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_session_before_its_episode_in_another_request_then_it_is_held_reported_and_placed_when_the_episode_comes(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("care-levels.toml");
    std::fs::write(&file, CARE_LEVELS).unwrap();
    let s = Server::start_with(&["--fhir-care-levels", file.to_str().unwrap(), "--fhir-hold-seconds", "0"]).await;
    let token = s.token("integration", &[], None);
    // The first session, with its patient named by national id, before anything else.
    let mut early = session("enc-1", "eoc-1", "pr-a", "finished", "2016-01-11T10:00:00Z");
    early["subject"] = json!({ "type": "Patient", "identifier": { "system": FNR, "value": SYNTHETIC_FNR } });
    let before = s.committed().await;
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", bundle("batch", vec![early])).await;
    assert_eq!(status, 200, "{resp:#}");
    let answer = &resp["entry"][0]["response"];
    assert_eq!(answer["status"], "202 Accepted", "{resp:#}");
    assert_eq!(answer["outcome"]["issue"][0]["severity"], "warning");
    assert_eq!(s.committed().await, before);
    // Held durably, and without the national id in any file.
    for f in walk(&s.dir) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(!bytes.windows(SYNTHETIC_FNR.len()).any(|w| w == SYNTHETIC_FNR.as_bytes()), "{}", f.display());
    }
    let unresolved = |token: String| {
        let c = s.client().get(format!("{}/fhir/$unresolved", s.url)).bearer_auth(token).send();
        async move {
            let r = c.await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, list) = unresolved(token.clone()).await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(text.contains("Encounter/enc-1") && text.contains("unresolved"), "{list:#}");
    let metrics = s.client().get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("forlop_fhir_held{state=\"unresolved\"} 1")), "{metrics}");
    assert_eq!(unresolved(s.token("analyst", &[], None)).await.0, 403);

    // The rest of the pathway arrives (without that session): the held one is placed too.
    let rest: Vec<Value> = pathway().into_iter().filter(|r| r["id"] != "enc-1" && r["id"] != "obs-1").collect();
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", bundle("transaction", rest)).await;
    assert_eq!(status, 200, "{resp:#}");
    let (_, list) = unresolved(token).await;
    assert_eq!(list["issue"][0]["diagnostics"], "nothing is unresolved", "{list:#}");
    let patient = location_id(&resp, 5);
    let p = s.patient(patient, "continuity { attendedSessions }").await;
    assert_eq!(p["continuity"]["attendedSessions"], 4, "the held session counts: {p:#}");
}

pub(crate) fn stay(id: &str, status: &str, start: &str, end: Option<&str>) -> Value {
    let mut period = json!({ "start": start });
    if let Some(e) = end {
        period["end"] = json!(e);
    }
    json!({ "resourceType": "Encounter", "id": id, "status": status,
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP" },
        "subject": { "reference": "Patient/pas-1" },
        "serviceProvider": { "type": "Organization", "identifier": { "system": RESH, "value": "4001033" } },
        "period": period })
}

/// An inpatient ward, the pathway's patient and a stay there from 1 to 9 April 2016: the start
/// of a back-load of stays.
pub(crate) fn ward_patient_and_stay(stay_id: &str) -> Vec<Value> {
    let ward = json!({ "resourceType": "Organization", "id": "ward", "name": "DPS døgnpost",
        "identifier": [{ "system": RESH, "value": "4001033" }] });
    let patient = pathway().into_iter().find(|r| r["resourceType"] == "Patient").expect("a Patient");
    vec![ward, patient, stay(stay_id, "finished", "2016-04-01T08:00:00Z", Some("2016-04-09T12:00:00Z"))]
}

/// A transaction that records the ward, the patient and a stay, and the same transaction with a
/// last stay overlapping the first: every entry maps, only deciding the last shows the overlap.
pub(crate) fn good_and_overlapping_transaction() -> (Vec<Value>, Vec<Value>) {
    let good = ward_patient_and_stay("stay-1");
    let mut bad = good.clone();
    bad.push(stay("stay-2", "finished", "2016-04-08T08:00:00Z", Some("2016-04-20T12:00:00Z")));
    (good, bad)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_past_stays_in_any_order_then_each_is_recorded_and_an_overlap_is_refused_at_either_end() {
    let (s, _dir) = fhir_server().await;
    let token = s.token("integration", &[], None);
    // The later stay first, then an earlier one: a back-load in any order.
    let first = ward_patient_and_stay("stay-2");
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", bundle("transaction", first)).await;
    assert_eq!(status, 200, "{resp:#}");
    let patient_id = location_id(&resp, 1);
    let earlier = vec![stay("stay-1", "finished", "2016-03-01T08:00:00Z", Some("2016-03-05T12:00:00Z"))];
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", bundle("batch", earlier.clone())).await;
    assert_eq!(resp["entry"][0]["response"]["status"], "201 Created", "{status} {resp:#}");
    // Sent again, nothing new.
    let (_, resp) = post_fhir(&s, Some(&token), "application/fhir+json", bundle("batch", earlier)).await;
    assert_eq!(resp["entry"][0]["response"]["status"], "200 OK", "{resp:#}");
    // A stay that began while it was still going on is refused, and says so.
    let overlapping = vec![stay("stay-3", "finished", "2016-04-08T08:00:00Z", Some("2016-04-20T12:00:00Z"))];
    let (_, resp) = post_fhir(&s, Some(&token), "application/fhir+json", bundle("batch", overlapping)).await;
    let answer = &resp["entry"][0]["response"];
    assert_eq!(answer["status"], "422 Unprocessable Entity", "{resp:#}");
    assert!(answer["outcome"]["issue"][0]["diagnostics"].as_str().unwrap().contains("overlaps"), "{resp:#}");
    // An open admission, then its discharge in a later version of the same Encounter.
    let open = vec![stay("stay-4", "in-progress", "2016-05-01T08:00:00Z", None)];
    post_fhir(&s, Some(&token), "application/fhir+json", bundle("batch", open)).await;
    let closed = vec![stay("stay-4", "finished", "2016-05-01T08:00:00Z", Some("2016-05-03T08:00:00Z"))];
    let (_, resp) = post_fhir(&s, Some(&token), "application/fhir+json", bundle("batch", closed)).await;
    assert_eq!(resp["entry"][0]["response"]["status"], "201 Created", "{resp:#}");
    let p = s.patient(patient_id, "admissions { admittedAt dischargedAt }").await;
    let admissions = p["admissions"].as_array().unwrap();
    assert_eq!(admissions.len(), 3, "{p:#}");
    assert!(admissions.iter().all(|a| a["dischargedAt"].is_string()), "{p:#}");

    // The same rule through GraphQL's recordStay.
    let ward_id = s.query("{ services { id careLevel } }", json!({})).await["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["careLevel"] == "SPECIALIST_INPATIENT")
        .map(|x| x["id"].as_str().unwrap().to_owned())
        .unwrap();
    let input = |from: &str, to: &str| json!({ "patientId": patient_id, "admissionId": id(), "serviceId": ward_id, "admittedAt": from, "dischargedAt": to });
    s.record("recordStay", input("2016-01-01T08:00:00Z", "2016-01-10T08:00:00Z")).await;
    s.rejects("recordStay", input("2016-03-04T08:00:00Z", "2016-03-20T08:00:00Z"), "INVALID_INPUT").await;
    s.rejects("recordStay", input("2016-02-01T08:00:00Z", "2016-02-01T08:00:00Z"), "INVALID_INPUT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_last_fact_the_domain_refuses_records_none_of_its_facts() {
    let (s, _dir) = fhir_server().await;
    let token = s.token("integration", &[], None);
    let (good, bad) = good_and_overlapping_transaction();
    let before = s.committed().await;
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", bundle("transaction", bad)).await;
    assert_eq!(status, 422, "a business rule, as FHIR answers it: {resp:#}");
    assert_eq!(resp["resourceType"], "OperationOutcome", "{resp:#}");
    let issue = &resp["issue"][0];
    assert_eq!(issue["code"], "business-rule", "{resp:#}");
    assert_eq!(issue["expression"][0], "Bundle.entry[3].resource", "{resp:#}");
    assert!(issue["diagnostics"].as_str().unwrap().contains("overlaps"), "{resp:#}");
    assert_eq!(s.committed().await, before, "neither the ward, the patient nor the first stay is recorded");
    let services = s.query("{ services { id } }", json!({})).await;
    assert_eq!(services["services"], json!([]), "{services:#}");

    // Without the overlapping stay the same facts are recorded together, and once.
    let (status, resp) =
        post_fhir(&s, Some(&token), "application/fhir+json", bundle("transaction", good.clone())).await;
    assert_eq!(status, 200, "{resp:#}");
    assert_eq!(s.committed().await, before + 3, "the ward, the patient and the stay (one fact)");
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", bundle("transaction", good)).await;
    assert_eq!(status, 200, "{resp:#}");
    assert!((0..3).all(|i| resp["entry"][i]["response"]["status"] == "200 OK"), "{resp:#}");
    assert_eq!(s.committed().await, before + 3, "a resent transaction appends nothing");
    let verified = s.query("{ verifyLog { ok headPosition } }", json!({})).await;
    assert_eq!(verified["verifyLog"], json!({ "ok": true, "headPosition": before + 2 }), "{verified:#}");
}

fn gad7_form(id: &str, answers: &[usize]) -> Value {
    const ITEMS: [&str; 7] = ["69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"];
    const LA: [&str; 4] = ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"];
    let item: Vec<Value> = answers
        .iter()
        .zip(ITEMS)
        .map(|(a, code)| json!({ "linkId": format!("/{code}"), "answer": [{ "valueCoding": { "system": "http://loinc.org", "code": LA[*a] } }] }))
        .collect();
    json!({ "resourceType": "QuestionnaireResponse", "id": id, "status": "completed",
        "questionnaire": "http://loinc.org/q/69737-5", "subject": { "reference": "Patient/pas-1" },
        "encounter": { "reference": "Encounter/enc-2" }, "authored": "2016-01-18T09:30:00Z",
        "item": [{ "linkId": "/69737-5", "item": item }] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gad7_questionnaire_response_is_an_outcome_and_a_short_one_is_refused_by_its_path() {
    let (s, _dir) = fhir_server().await;
    let token = s.token("integration", &[], None);
    let mut resources = pathway();
    resources.push(gad7_form("qr-1", &[1, 2, 1, 0, 3, 1, 2]));
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", bundle("transaction", resources)).await;
    assert_eq!(status, 200, "{resp:#}");
    let patient = location_id(&resp, 5);
    let r = everything_as(&s, &s.admin, patient).await;
    let everything: Value = r.json().await.unwrap();
    let gad7 = everything["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["code"]["coding"][0]["code"] == "70274-6")
        .unwrap_or_else(|| panic!("no GAD-7 outcome: {everything:#}"));
    assert_eq!(gad7["resource"]["valueInteger"], 10);
    assert_eq!(gad7["resource"]["category"][0]["coding"][0]["code"], "intake", "a week after the start: intake");

    let before = s.committed().await;
    let (status, resp) = post_fhir(
        &s,
        Some(&token),
        "application/fhir+json",
        bundle("transaction", vec![gad7_form("qr-2", &[1, 1, 1, 1, 1])]),
    )
    .await;
    assert_eq!(status, 400, "{resp:#}");
    let issue = &resp["issue"][0];
    assert_eq!(issue["expression"][0], "Bundle.entry[0].resource.item", "{resp:#}");
    assert!(issue["diagnostics"].as_str().unwrap().contains("all 7 item answers"), "{resp:#}");
    assert_eq!(s.committed().await, before);
}

/// An inpatient ward, mapped in the test care-level file: a cheap line to fill import chunks.
fn ward() -> Value {
    json!({ "resourceType": "Organization", "id": "ward", "name": "DPS døgnpost",
        "identifier": [{ "system": RESH, "value": "4001033" }] })
}

/// `POST /fhir/$import` of `lines` as the integration: the OperationOutcome and its summary.
async fn import_ndjson(s: &Server, lines: &[String]) -> (Value, Value) {
    let r = s
        .client()
        .post(format!("{}/fhir/$import", s.url))
        .header("content-type", "application/fhir+ndjson")
        .bearer_auth(s.token("integration", &[], None))
        .body(lines.join("\n"))
        .send()
        .await
        .unwrap();
    let out: Value = r.json().await.unwrap();
    let summary: Value = serde_json::from_str(out["extension"][0]["valueString"].as_str().unwrap()).unwrap();
    (out, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_and_its_discharge_in_consecutive_import_chunks_become_one_discharged_stay() {
    let (s, _dir) = fhir_server().await;
    let ward = ward().to_string();
    let patient = pathway().into_iter().find(|r| r["resourceType"] == "Patient").unwrap().to_string();
    // The open admission in the first chunk (4,000 lines), its finished version in the next,
    // which is mapped while the first is still being written.
    let mut lines =
        vec![ward.clone(), patient, stay("stay-9", "in-progress", "2016-05-01T08:00:00Z", None).to_string()];
    lines.extend(std::iter::repeat_n(ward, 4000));
    lines.push(stay("stay-9", "finished", "2016-05-01T08:00:00Z", Some("2016-05-03T08:00:00Z")).to_string());
    let (out, summary) = import_ndjson(&s, &lines).await;
    assert_eq!((summary["failed"].as_u64(), summary["held"].as_u64()), (Some(0), Some(0)), "{out:#}");
    let everything = everything_as(&s, &s.admin, pseudonymous_patient(&s).await).await.json::<Value>().await.unwrap();
    let stays: Vec<&Value> =
        everything["entry"].as_array().unwrap().iter().filter(|e| e["resource"]["class"]["code"] == "IMP").collect();
    assert_eq!(stays.len(), 1, "{everything:#}");
    assert_eq!(stays[0]["resource"]["period"]["end"], "2016-05-03T08:00:00Z", "{everything:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_practitioner_sent_again_under_a_new_identifier_in_the_next_import_chunk_stays_one_therapist() {
    let (s, _dir) = fhir_server().await;
    let ward = ward().to_string();
    let first = json!({ "resourceType": "Practitioner", "id": "pr-77", "name": [{ "text": "Kari Nordmann" }],
        "identifier": [{ "system": HPR, "value": "9144889" }] });
    // The record system has since given her a local staff number, listed first.
    let mut again = first.clone();
    again["identifier"] =
        json!([{ "system": "urn:example:dps:staff", "value": "A77" }, { "system": HPR, "value": "9144889" }]);
    // The first version ends the first chunk (4,000 lines); the second begins the next, which is
    // read while the first may still be being mapped.
    let mut lines = vec![ward.clone(); 3999];
    lines.push(first.to_string());
    lines.push(again.to_string());
    let (out, summary) = import_ndjson(&s, &lines).await;
    assert_eq!(summary["failed"].as_u64(), Some(0), "{out:#}");
    let therapists = s.query("{ therapists { id name } }", json!({})).await;
    assert_eq!(therapists["therapists"].as_array().map(Vec::len), Some(1), "{therapists:#}");
    // Sent once more, by its identifiers only, it is the same therapist.
    let id = therapists["therapists"][0]["id"].as_str().unwrap().to_owned();
    let reference = json!({ "resourceType": "Practitioner", "name": [{ "text": "Kari Nordmann" }],
        "identifier": [{ "system": "urn:example:dps:staff", "value": "A77" }, { "system": HPR, "value": "9144889" }] });
    let integration = s.token("integration", &[], None);
    let (status, body) =
        post_fhir(&s, Some(&integration), "application/fhir+json", bundle("batch", vec![reference])).await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(location_id(&body, 0).to_string(), id, "{body:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_versions_of_a_practitioner_in_one_bundle_are_one_therapist_with_one_id() {
    let (s, _dir) = fhir_server().await;
    let first = json!({ "resourceType": "Practitioner", "id": "pr-78", "name": [{ "text": "Per Hansen" }],
        "identifier": [{ "system": HPR, "value": "9144890" }] });
    let mut again = first.clone();
    again["identifier"] =
        json!([{ "system": "urn:example:dps:staff", "value": "B78" }, { "system": HPR, "value": "9144890" }]);
    let integration = s.token("integration", &[], None);
    let (status, body) =
        post_fhir(&s, Some(&integration), "application/fhir+json", bundle("batch", vec![first, again])).await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(location_id(&body, 0), location_id(&body, 1), "{body:#}");
    let therapists = s.query("{ therapists { id } }", json!({})).await;
    assert_eq!(therapists["therapists"].as_array().map(Vec::len), Some(1), "{therapists:#}");
}

/// The one patient registered on this server (by national id, so its id is a pseudonym's).
async fn pseudonymous_patient(s: &Server) -> String {
    let q = "query($n: String!) { patientByNationalId(nationalId: $n) { id } }";
    s.query(q, json!({ "n": SYNTHETIC_FNR })).await["patientByNationalId"]["id"].as_str().unwrap().to_owned()
}

/// `pathway()` recorded as one transaction by the integration; the patient's forlop id.
async fn pathway_recorded(s: &Server) -> Uuid {
    let token = s.token("integration", &[], None);
    let (status, resp) = post_fhir(s, Some(&token), "application/fhir+json", bundle("transaction", pathway())).await;
    assert_eq!(status, 200, "{resp:#}");
    pseudonymous_patient(s).await.parse().unwrap()
}

/// `GET /fhir/{type}/{id}` as `token`: the status, the ETag and the body.
async fn read_as(s: &Server, token: &str, path: &str) -> (u16, Option<String>, Value) {
    let r = s.client().get(format!("{}/fhir/{path}", s.url)).bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    let etag = r.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
    (status, etag, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_recorded_resource_is_read_by_its_id_with_its_version_from_the_log_and_the_read_is_access_logged() {
    let (s, _dir) = fhir_server().await;
    let patient = pathway_recorded(&s).await;
    let auditor = s.token("auditor", &[], None);
    let everything: Value = everything_as(&s, &auditor, patient).await.json().await.unwrap();
    let history = s.patient(patient, "history { type }").await;
    let events = history["history"].as_array().unwrap().len();
    // Every resource $everything shows, read on its own, is the same resource with meta.
    for e in everything["entry"].as_array().unwrap() {
        let t = e["resource"]["resourceType"].as_str().unwrap();
        if t == "Observation" {
            continue;
        }
        let id = e["resource"]["id"].as_str().unwrap();
        let (status, etag, mut body) = read_as(&s, &auditor, &format!("{t}/{id}")).await;
        assert_eq!(status, 200, "{t}/{id}: {body:#}");
        let version = body["meta"]["versionId"].as_str().unwrap().to_owned();
        assert_eq!(etag.as_deref(), Some(format!("W/\"{version}\"").as_str()), "{t}/{id}");
        assert!(version.parse::<u64>().unwrap() >= 1, "{t}/{id}: {body:#}");
        assert!(body["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'), "{body:#}");
        if t == "Patient" {
            assert_eq!(version, events.to_string(), "a patient's version counts the events of their stream");
        }
        body.as_object_mut().unwrap().remove("meta");
        assert_eq!(body, e["resource"], "{t}/{id}");
    }
    let log = s
        .query(
            "query($p: UUID!) { accessLog(patientId: $p) { nodes { operation fields outcome role } } }",
            json!({ "p": patient }),
        )
        .await;
    let reads = log["accessLog"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["fields"].as_str().is_some_and(|f| f.ends_with(".read")) && n["role"] == "auditor")
        .count();
    assert!(reads >= 5, "each read of the patient's resources is access-logged: {log:#}");

    // A role that may not read the pathway is refused, and the refusal logged; unknown ids and
    // types answer OperationOutcomes.
    let (status, _, body) = read_as(&s, &s.token("integration", &[], None), &format!("Patient/{patient}")).await;
    assert_eq!((status, body["resourceType"].as_str()), (403, Some("OperationOutcome")), "{body:#}");
    let (status, _, body) = read_as(&s, &auditor, &format!("EpisodeOfCare/{}", Uuid::new_v4())).await;
    assert_eq!((status, body["issue"][0]["code"].as_str()), (404, Some("not-found")), "{body:#}");
    // A clinician who may not read the patient learns nothing from the ids: an episode that
    // exists and one that does not get the same answer.
    let stranger = s.token("clinician", &[Uuid::new_v4()], None);
    let episode = everything["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "EpisodeOfCare")
        .unwrap();
    let (taken, _, body) =
        read_as(&s, &stranger, &format!("EpisodeOfCare/{}", episode["resource"]["id"].as_str().unwrap())).await;
    let (free, _, other) = read_as(&s, &stranger, &format!("EpisodeOfCare/{}", Uuid::new_v4())).await;
    assert_eq!(
        (taken, body["issue"][0]["code"].clone()),
        (free, other["issue"][0]["code"].clone()),
        "{body:#} {other:#}"
    );
    assert_ne!(taken, 200);
    let (status, _, body) = read_as(&s, &auditor, "Patient/pas-1").await;
    assert_eq!(status, 404, "forlop's ids are UUIDs: {body:#}");
    let (status, _, body) = read_as(&s, &auditor, "Condition/c1").await;
    assert_eq!((status, body["issue"][0]["code"].as_str()), (400, Some("not-supported")), "{body:#}");
    let (status, _, _) = read_as(&s, &auditor, "Nonsense/c1").await;
    assert_eq!(status, 404);
    // The CapabilityStatement lists read for exactly these types.
    let meta: Value = s.client().get(format!("{}/fhir/metadata", s.url)).send().await.unwrap().json().await.unwrap();
    let mut readable: Vec<&str> = meta["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["interaction"].as_array().unwrap().iter().any(|i| i["code"] == "read"))
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    readable.sort();
    assert_eq!(readable, ["Encounter", "EpisodeOfCare", "Organization", "Patient", "Practitioner", "ServiceRequest"]);
    for t in &readable {
        assert!(
            everything["entry"].as_array().unwrap().iter().any(|e| e["resource"]["resourceType"] == *t),
            "{t} was read above"
        );
    }
    s.health().await;
}

/// `GET url` as `token` (with `Prefer: handling=lenient` when asked): the status and the body.
async fn search_as(s: &Server, token: &str, url: &str, lenient: bool) -> (u16, Value) {
    let url = if url.starts_with("http") { url.to_owned() } else { format!("{}/fhir/{url}", s.url) };
    let mut req = s.client().get(url).bearer_auth(token);
    if lenient {
        req = req.header("prefer", "handling=lenient");
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn ids_of(bundle: &Value) -> Vec<String> {
    bundle["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_search_parameter_the_capability_statement_lists_finds_what_it_says_and_pages_by_next_links() {
    let (s, _dir) = fhir_server().await;
    let p = pathway_recorded(&s).await;
    let admin = s.admin.clone();
    let total = |b: &Value| b["total"].as_u64().unwrap();
    let ok = |(status, body): (u16, Value)| {
        assert_eq!(status, 200, "{body:#}");
        assert_eq!(
            (body["resourceType"].as_str(), body["type"].as_str()),
            (Some("Bundle"), Some("searchset")),
            "{body:#}"
        );
        body
    };

    let found = ok(search_as(&s, &admin, &format!("Patient?identifier={FNR}|{SYNTHETIC_FNR}"), false).await);
    assert_eq!(ids_of(&found), [p.to_string()], "{found:#}");
    let eoc = |q: &str| format!("EpisodeOfCare?patient=Patient/{p}{q}");
    assert_eq!(total(&ok(search_as(&s, &admin, &eoc(""), false).await)), 2);
    assert_eq!(total(&ok(search_as(&s, &admin, &eoc("&status=finished"), false).await)), 1);
    assert_eq!(total(&ok(search_as(&s, &admin, &eoc("&status=active,finished"), false).await)), 2);
    assert_eq!(total(&ok(search_as(&s, &admin, &eoc("&date=ge2016-02-15"), false).await)), 1, "the open DPS episode");
    assert_eq!(total(&ok(search_as(&s, &admin, &eoc("&date=2016-01-20"), false).await)), 1);
    let enc = |q: &str| format!("Encounter?patient={p}{q}");
    let window =
        ok(search_as(&s, &admin, &enc("&date=ge2016-01-12&date=lt2016-02-16&class=AMB&_sort=date"), false).await);
    let starts: Vec<&str> = window["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["period"]["start"].as_str().unwrap())
        .collect();
    assert_eq!(starts, ["2016-01-18T10:00:00Z", "2016-01-25T10:00:00Z", "2016-02-15T10:00:00Z"], "{window:#}");
    assert_eq!(total(&ok(search_as(&s, &admin, &enc("&status=cancelled"), false).await)), 1);
    assert_eq!(total(&ok(search_as(&s, &admin, &enc("&class=IMP"), false).await)), 0);
    let sr = |q: &str| format!("ServiceRequest?patient={p}{q}");
    assert_eq!(total(&ok(search_as(&s, &admin, &sr(""), false).await)), 2);
    assert_eq!(total(&ok(search_as(&s, &admin, &sr("&authored=lt2016-02-01"), false).await)), 1);
    assert_eq!(
        total(&ok(search_as(&s, &admin, &sr("&status=completed"), false).await)),
        2,
        "both referrals are decided"
    );
    let obs = |q: &str| format!("Observation?patient={p}{q}");
    assert_eq!(total(&ok(search_as(&s, &admin, &obs("&code=http://loinc.org|44261-6"), false).await)), 1);
    assert_eq!(total(&ok(search_as(&s, &admin, &obs("&code=http://loinc.org|70274-6"), false).await)), 0);
    assert_eq!(total(&ok(search_as(&s, &admin, &obs("&date=2016-01-11"), false).await)), 1);
    assert_eq!(total(&ok(search_as(&s, &admin, &enc("&_lastUpdated=ge2000-01-01"), false).await)), 5);
    assert_eq!(total(&ok(search_as(&s, &admin, &enc("&_lastUpdated=lt2000-01-01"), false).await)), 0);

    // Paging by link[next], in date order, every entry once; and newest first.
    let mut page = ok(search_as(&s, &admin, &enc("&_sort=date&_count=2"), false).await);
    let mut seen = Vec::new();
    loop {
        assert_eq!(total(&page), 5);
        assert!(page["entry"].as_array().unwrap().len() <= 2);
        seen.extend(
            page["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"]["period"]["start"].as_str().unwrap().to_owned()),
        );
        let Some(next) = page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") else { break };
        page = ok(search_as(&s, &admin, next["url"].as_str().unwrap(), false).await);
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    let newest = ok(search_as(&s, &admin, &enc("&_sort=-date&_count=1"), false).await);
    assert_eq!(newest["entry"][0]["resource"]["period"]["start"], seen[4].as_str());

    // Unknown parameters are refused, or ignored when the client asks for lenient handling;
    // a search without a patient, and bad values, are refused by name.
    let (status, body) = search_as(&s, &admin, &eoc("&care-manager=x"), false).await;
    assert_eq!((status, body["issue"][0]["code"].as_str()), (400, Some("not-supported")), "{body:#}");
    assert_eq!(total(&ok(search_as(&s, &admin, &eoc("&care-manager=x"), true).await)), 2);
    let (status, body) = search_as(&s, &admin, "EpisodeOfCare?status=active", false).await;
    assert_eq!(status, 400, "{body:#}");
    let why = body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(why.starts_with("an EpisodeOfCare search needs patient="), "{body:#}");
    for bad in [
        "EpisodeOfCare?status=active",
        "Encounter?patient=x",
        &enc("&date=soon"),
        &enc("&_count=0"),
        "Condition?patient=x",
    ] {
        let (status, body) = search_as(&s, &admin, bad, false).await;
        assert_eq!((status, body["resourceType"].as_str()), (400, Some("OperationOutcome")), "{bad}: {body:#}");
    }
    // A role that may not read the pathway is refused; the searches are access-logged.
    let (status, body) = search_as(&s, &s.token("integration", &[], None), &eoc(""), false).await;
    assert_eq!((status, body["resourceType"].as_str()), (403, Some("OperationOutcome")), "{body:#}");
    let log = s.query("query($p: UUID!) { accessLog(patientId: $p) { nodes { fields } } }", json!({ "p": p })).await;
    assert!(
        log["accessLog"]["nodes"].as_array().unwrap().iter().any(|n| n["fields"] == "fhir.EpisodeOfCare.search"),
        "{log:#}"
    );

    // The CapabilityStatement lists search-type with exactly the parameters exercised above.
    let meta: Value = s.client().get(format!("{}/fhir/metadata", s.url)).send().await.unwrap().json().await.unwrap();
    let mut listed: Vec<String> = Vec::new();
    for r in meta["rest"][0]["resource"].as_array().unwrap() {
        if r["interaction"].as_array().unwrap().iter().any(|i| i["code"] == "search-type") {
            for p in r["searchParam"].as_array().unwrap() {
                listed.push(format!("{}.{}", r["type"].as_str().unwrap(), p["name"].as_str().unwrap()));
            }
        }
    }
    listed.sort();
    assert_eq!(
        listed,
        [
            "Encounter._lastUpdated",
            "Encounter.class",
            "Encounter.date",
            "Encounter.patient",
            "Encounter.status",
            "EpisodeOfCare._lastUpdated",
            "EpisodeOfCare.date",
            "EpisodeOfCare.patient",
            "EpisodeOfCare.status",
            "Observation._lastUpdated",
            "Observation.code",
            "Observation.date",
            "Observation.patient",
            "Patient._lastUpdated",
            "Patient.identifier",
            "ServiceRequest._lastUpdated",
            "ServiceRequest.authored",
            "ServiceRequest.patient",
            "ServiceRequest.status",
        ]
    );
    s.health().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fhir_paths_and_methods_answer_an_operation_outcome() {
    let (s, _dir) = fhir_server().await;
    let token = s.token("integration", &[], None);
    for (method, path, status, code) in [
        (reqwest::Method::GET, "/fhir/Medication/m1/_history/2", 404, "not-found"),
        (reqwest::Method::GET, "/fhir/Patient/x/$graph", 404, "not-found"),
        (reqwest::Method::DELETE, "/fhir", 405, "not-supported"),
        (reqwest::Method::PUT, "/fhir/metadata", 405, "not-supported"),
    ] {
        let r =
            s.client().request(method.clone(), format!("{}{path}", s.url)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        assert_eq!(r.headers()["content-type"], "application/fhir+json", "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["resourceType"], "OperationOutcome", "{method} {path}: {body:#}");
        assert_eq!(body["issue"][0]["code"], code, "{method} {path}: {body:#}");
        assert!(body["issue"][0]["diagnostics"].as_str().unwrap().contains("/fhir/metadata"), "{body:#}");
    }
    // Outside /fhir, the API's own coded errors.
    let r = s.client().get(format!("{}/nowhere", s.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND", "{body:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_a_capability_statement() {
    let (s, _dir) = fhir_server().await;
    let (status, body) = s.get_json("/fhir/metadata").await;
    assert_eq!(status, 200);
    assert_eq!(body["resourceType"], "CapabilityStatement");
    assert_eq!(body["fhirVersion"], "4.0.1");
}

#[test]
fn given_an_ndjson_file_when_imported_offline_then_facts_are_recorded_once_and_the_log_verifies() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let key = dir.path().join("master.key");
    std::fs::write(&key, base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())).unwrap();
    let levels = dir.path().join("care-levels.toml");
    std::fs::write(&levels, CARE_LEVELS).unwrap();
    let file = dir.path().join("pathway.ndjson");
    let mut lines: Vec<String> = pathway().into_iter().map(|r| r.to_string()).collect();
    lines.push(
        json!({ "resourceType": "Observation", "id": "x", "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "1234-5" }] } })
        .to_string(),
    );
    std::fs::write(&file, lines.join("\n")).unwrap();
    let (d, k, l, f) =
        (data.to_str().unwrap(), key.to_str().unwrap(), levels.to_str().unwrap(), file.to_str().unwrap());
    let args = ["import-fhir", "--data", d, "--key-file", k, "--fhir-care-levels", l, f];

    // An export's resources that forlop does not record are skipped, and the exit code stays 0.
    let only_skipped = dir.path().join("unrecorded.ndjson");
    let unrecorded: Vec<String> = unrecorded_resources().iter().map(|r| r.to_string()).collect();
    std::fs::write(&only_skipped, unrecorded.join("\n")).unwrap();
    let skip = run_cli(&[
        "import-fhir",
        "--data",
        d,
        "--key-file",
        k,
        "--fhir-care-levels",
        l,
        only_skipped.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&skip.stderr);
    assert_eq!(skip.status.code(), Some(0), "nothing failed: {err}");
    assert!(err.contains("failed 0") && err.contains("skipped (not recorded by forlop) 4"), "{err}");

    let out = run_cli(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a failed line makes the exit code 1: {err}");
    assert!(err.contains("events appended 22") && err.contains("failed 1"), "{err}");
    assert!(err.contains(&format!("line {}", lines.len())) && err.contains("PHQ-9"), "the failed line is named: {err}");

    // The two referral acceptances are not even proposed again: the referrals are decided.
    let again = run_cli(&args);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("events appended 0") && err.contains("duplicates skipped 20"), "{err}");
    run_ok(&["verify", "--data", d]);
    // The national id is in no file in clear text.
    for entry in walk(&data) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!bytes.windows(SYNTHETIC_FNR.len()).any(|w| w == SYNTHETIC_FNR.as_bytes()), "{}", entry.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The pinned npm packages of `tests/fhir` (HL7's R4 examples, an R4 JSON-schema validator),
/// installed once per target dir with `npm ci`, which checks each package's integrity hash
/// against `tests/fhir/package-lock.json`.
fn fhir_tools() -> std::path::PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fhir-tools");
    let lock = std::fs::read(src.join("package-lock.json")).expect("tests/fhir/package-lock.json");
    let marker = dir.join("installed.lock");
    if std::fs::read(&marker).ok().as_deref() != Some(lock.as_slice()) {
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["package.json", "package-lock.json"] {
            std::fs::copy(src.join(f), dir.join(f)).unwrap();
        }
        let out = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .output()
            .expect("npm must be installed for the FHIR tests (Debian: apt-get install nodejs npm; .ci/run does it)");
        assert!(out.status.success(), "npm ci failed: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&marker, &lock).unwrap();
    }
    std::fs::copy(src.join("validate_r4.js"), dir.join("validate_r4.js")).unwrap();
    dir
}

/// Runs HL7's R4 JSON schema over `resource`; the errors, or None.
fn r4_errors(resource: &Value) -> Option<String> {
    use std::io::Write as _;
    let dir = fhir_tools();
    let mut child = std::process::Command::new("node")
        .arg(dir.join("validate_r4.js"))
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node");
    child.stdin.take().unwrap().write_all(resource.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_bundle_is_the_example_file_valid_r4_and_records_eight_events_once() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docs/integration/examples/transaction-bundle.json")).unwrap(),
    )
    .unwrap();
    let page = std::fs::read_to_string(root.join("docs/integration/fhir.md")).unwrap();
    let start = page.find("```json\n{ \"resourceType\": \"Bundle\"").expect("the worked Bundle in fhir.md") + 8;
    let shown: Value = serde_json::from_str(&page[start..start + page[start..].find("```").unwrap()]).unwrap();
    assert_eq!(shown, file, "docs/integration/fhir.md shows the example file");
    assert!(
        file["entry"].as_array().unwrap().iter().all(|e| e["request"]["method"].is_string()),
        "every entry has its request"
    );
    assert_eq!(r4_errors(&file), None, "a strict R4 validator accepts it");
    let levels = root.join("docs/integration/examples/care-levels.toml");
    let s = Server::start_with(&["--fhir-care-levels", levels.to_str().unwrap()]).await;
    let token = s.token("integration", &[], None);
    let before = s.committed().await;
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", file.to_string()).await;
    assert_eq!(status, 200, "{resp:#}");
    assert_eq!(s.committed().await, before + 8, "eight events: {resp:#}");
    let (status, resp) = post_fhir(&s, Some(&token), "application/fhir+json", file.to_string()).await;
    assert_eq!(status, 200, "{resp:#}");
    assert_eq!(s.committed().await, before + 8, "a resend appends nothing");
}

#[test]
fn the_validator_refuses_what_r4_does_not_allow() {
    let bad = json!({ "resourceType": "Patient", "id": "x", "gender": "woman" });
    assert!(r4_errors(&bad).is_some_and(|e| e.contains("gender")), "the independent validator checks codes");
    assert_eq!(r4_errors(&json!({ "resourceType": "Patient", "id": "x", "gender": "female" })), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_pathway_is_valid_r4_for_an_independent_validator() {
    let (s, _dir) = fhir_server().await;
    let (status, resp) = post_fhir(
        &s,
        Some(&s.token("integration", &[], None)),
        "application/fhir+json",
        bundle("transaction", pathway()),
    )
    .await;
    assert_eq!(status, 200, "{resp:#}");
    let patient = location_id(&resp, 5);
    let r = everything_as(&s, &s.admin, patient).await;
    assert_eq!(r.status(), 200);
    let everything: Value = r.json().await.unwrap();
    assert_eq!(r4_errors(&everything), None, "{everything:#}");
    // (The CapabilityStatement is not checked here: this schema predates R4's 4.0.1 correction
    // and lists fhirVersion only up to 4.0.0.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hl7s_own_r4_examples_are_refused_precisely_where_they_lack_what_forlop_needs() {
    let (s, _dir) = fhir_server().await;
    let examples = fhir_tools().join("node_modules/hl7.fhir.r4.examples");
    let names = [
        "Patient-example",
        "Practitioner-example",
        "Organization-f001",
        "EpisodeOfCare-example",
        "Encounter-example",
        "Encounter-f201",
        "Encounter-home",
        "ServiceRequest-example",
        "Observation-example",
    ];
    let resources: Vec<Value> = names
        .iter()
        .map(|n| {
            let text =
                std::fs::read_to_string(examples.join(format!("{n}.json"))).unwrap_or_else(|e| panic!("{n}: {e}"));
            serde_json::from_str(&text).unwrap()
        })
        .collect();
    let (status, resp) =
        post_fhir(&s, Some(&s.token("integration", &[], None)), "application/fhir+json", bundle("batch", resources))
            .await;
    assert_eq!(status, 200, "{resp:#}");
    let answer = |i: usize| {
        let r = &resp["entry"][i]["response"];
        let issues = r["outcome"]["issue"].as_array().cloned().unwrap_or_default();
        let text: Vec<String> = issues
            .iter()
            .map(|x| {
                format!("{} {}", x["expression"][0].as_str().unwrap_or(""), x["diagnostics"].as_str().unwrap_or(""))
            })
            .collect();
        (r["status"].as_str().unwrap_or("").to_owned(), text.join("\n"))
    };
    // A patient without a national id is still a patient (the MR number names it).
    assert_eq!(answer(0).0, "201 Created", "{resp:#}");
    // A practitioner without an HPR number is a therapist without one.
    assert_eq!(answer(1).0, "201 Created", "{resp:#}");
    // An Organization the care-level file does not map is no service: nothing to record.
    assert_eq!(answer(2).0, "200 OK");
    let (st, why) = answer(3);
    assert!(st.starts_with("4"), "{why}");
    assert!(
        why.contains("entry[3].resource.managingOrganization.reference")
            && why.contains("Organization/hl7 is neither in this Bundle nor recorded before"),
        "{why}"
    );
    assert!(
        why.contains("entry[3].resource.referralRequest[0]") && why.contains("needs `reference` or `identifier`"),
        "{why}"
    );
    assert!(answer(4).1.contains("entry[4].resource.serviceProvider"), "{}", answer(4).1);
    let why = answer(5).1;
    assert!(why.contains("Patient/f201 is neither") && why.contains("must name its EpisodeOfCare"), "{why}");
    assert!(answer(6).1.contains("class \"HH\" is not a pathway fact"), "{}", answer(6).1);
    assert!(answer(7).1.contains("entry[7].resource.performer[0]"), "{}", answer(7).1);
    assert!(answer(8).1.contains("entry[8].resource.code") && answer(8).1.contains("PHQ-9"), "{}", answer(8).1);
}

/// Sends a request whose body comes in `parts`, `pause` apart, over a raw connection (a slow
/// client, which reqwest cannot be made into), and returns the answer's status and body.
async fn slow_post(
    s: &Server,
    path: &str,
    content_type: &str,
    token: &str,
    parts: &[String],
    pause: Duration,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let length: usize = parts.iter().map(String::len).sum();
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", s.port)).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {content_type}\r\nauthorization: Bearer {token}\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.expect("write head");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        if conn.write_all(part.as_bytes()).await.is_err() {
            break; // the server answered already and closed
        }
    }
    // Up to the end or a reset: a server that answers before reading the whole body may reset the
    // connection after its answer.
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = conn.read(&mut buf).await {
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&bytes).into_owned();
    let status = answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status line");
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_import_outlasts_the_request_timeout_while_its_body_keeps_coming_and_ends_when_it_stalls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("care-levels.toml");
    std::fs::write(&file, CARE_LEVELS).expect("write care levels");
    let s = Server::start_with(&["--fhir-care-levels", file.to_str().unwrap(), "--request-timeout-seconds", "1"]).await;
    let token = s.token("integration", &[], None);
    let lines: Vec<String> = pathway().into_iter().map(|r| format!("{r}\n")).collect();
    let thirds: Vec<String> = lines.chunks(lines.len().div_ceil(3)).map(|c| c.concat()).collect();

    // Three parts 600 ms apart: 1.2 s in all, over the 1 s bound, but never idle for 1 s.
    let pause = Duration::from_millis(600);
    let (status, body) = slow_post(&s, "/fhir/$import", "application/fhir+ndjson", &token, &thirds, pause).await;
    assert_eq!(status, 200, "{body}");
    let out: Value = serde_json::from_str(&body).expect("an OperationOutcome");
    let summary: Value = serde_json::from_str(out["extension"][0]["valueString"].as_str().unwrap()).unwrap();
    assert_eq!(summary["resources_read"], lines.len() as u64, "{out:#}");
    assert_eq!(summary["failed"], 0, "{out:#}");
    assert_eq!(summary["events_appended"], 22, "{out:#}");

    // Any other request taking as long is answered 408.
    let admin = s.admin.clone();
    let query = serde_json::json!({ "query": "{ log { committed } }" }).to_string();
    let third = query.len() / 3;
    let parts = [query[..third].to_owned(), query[third..2 * third].to_owned(), query[2 * third..].to_owned()];
    let (status, body) = slow_post(&s, "/graphql", "application/json", &admin, &parts, pause).await;
    assert_eq!(status, 408, "{body}");

    // An import whose body stops coming for longer than the bound ends: what arrived is read
    // (here a resend, so nothing new), the stall is reported as a failed read, and the server
    // goes on.
    let committed = s.committed().await;
    let stall = Duration::from_millis(1600);
    let (status, body) = slow_post(&s, "/fhir/$import", "application/fhir+ndjson", &token, &thirds, stall).await;
    assert_eq!(status, 200, "{body}");
    let out: Value = serde_json::from_str(&body).expect("an OperationOutcome");
    let summary: Value = serde_json::from_str(out["extension"][0]["valueString"].as_str().unwrap()).unwrap();
    assert_eq!(summary["failed"], 1, "the stall: {out:#}");
    assert!(out.to_string().contains("no data for 1 s"), "{out:#}");
    assert_eq!(s.committed().await, committed, "everything that arrived was a resend");
    assert_eq!(s.health().await["status"], "ok");
}
