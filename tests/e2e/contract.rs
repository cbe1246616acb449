//! The contract-smoke pathway (shared/checks/contract-smoke.py), ported: one patient's pathway
//! through every recording mutation, with a late-recorded session, checked against the answers
//! worked out by hand.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::*;

const CONTINUITY: &str = "id version birthYear gender
    continuity { attendedSessions distinctTherapists careLevelTransitions transitionsKeepingTherapist
      sameTherapistAcrossCareLevels coc upc secon mmci
      segments { careLevel from to therapistIds sessions }
      handovers { episodeId fromTherapistId toTherapistId reason patientNotified releasedAt gapDays } }
    episodes { id serviceId careLevel referralId startedAt endedAt endReason }
    admissions { id serviceId admittedAt dischargedAt }";

/// One step of the pathway: the mutation and its input.
struct Step {
    op: &'static str,
    input: Value,
}

fn step(op: &'static str, input: Value) -> Step {
    Step { op, input }
}

fn uuids(v: &Value) -> Vec<Uuid> {
    v.as_array().expect("list").iter().map(|x| x.as_str().expect("uuid").parse().expect("uuid")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_hand_worked_pathway_when_recorded_then_continuity_matches_the_worked_answers() {
    let s = Server::start().await;
    let (rph, pol, ward, a, b, w, p) = (id(), id(), id(), id(), id(), id(), id());
    let (r1, r2, e1, e2, adm) = (id(), id(), id(), id(), id());
    let sess = |e: Uuid, t: Uuid, att: &str, at: &str| {
        step(
            "recordSession",
            json!({ "patientId": p, "episodeId": e, "sessionId": id(), "therapistId": t, "attendance": att, "at": at }),
        )
    };

    let mut steps = vec![
        step("registerService", json!({ "serviceId": rph, "name": "RPH", "careLevel": "MUNICIPAL" })),
        step(
            "registerService",
            json!({ "serviceId": pol, "name": "DPS poliklinikk", "careLevel": "SPECIALIST_OUTPATIENT" }),
        ),
        step("registerService", json!({ "serviceId": ward, "name": "DPS døgn", "careLevel": "SPECIALIST_INPATIENT" })),
        step("registerTherapist", json!({ "therapistId": a, "name": "A" })),
        step("registerTherapist", json!({ "therapistId": b, "name": "B" })),
        step("registerTherapist", json!({ "therapistId": w, "name": "W" })),
        step("registerPatient", json!({ "patientId": p, "birthYear": 1985, "gender": "FEMALE" })),
        step(
            "receiveReferral",
            json!({ "patientId": p, "referralId": r1, "serviceId": rph, "source": "SELF", "receivedAt": "2016-01-04T09:00:00Z" }),
        ),
        step(
            "decideReferral",
            json!({ "patientId": p, "referralId": r1, "decision": "ACCEPTED", "decidedAt": "2016-01-05T09:00:00Z" }),
        ),
        step(
            "startEpisode",
            json!({ "patientId": p, "episodeId": e1, "serviceId": rph, "referralId": r1, "startedAt": "2016-01-11T09:00:00Z" }),
        ),
        step(
            "assignTherapist",
            json!({ "patientId": p, "episodeId": e1, "therapistId": a, "assignedAt": "2016-01-11T09:00:00Z" }),
        ),
        step(
            "recordOutcome",
            json!({ "patientId": p, "episodeId": e1, "instrument": "PHQ9", "phase": "INTAKE",
                    "items": [2, 2, 2, 2, 2, 1, 1, 1, 1], "measuredAt": "2016-01-11T09:30:00Z" }),
        ),
    ];
    for (day, att) in [("01-11", "ATTENDED"), ("01-18", "ATTENDED"), ("01-25", "NO_SHOW"), ("02-01", "ATTENDED")] {
        steps.push(sess(e1, a, att, &format!("2016-{day}T10:00:00Z")));
    }
    steps.extend([
        step(
            "releaseTherapist",
            json!({ "patientId": p, "episodeId": e1, "therapistId": a, "reason": "EPISODE_ENDED",
                    "patientNotified": true, "releasedAt": "2016-02-08T10:00:00Z" }),
        ),
        step(
            "endEpisode",
            json!({ "patientId": p, "episodeId": e1, "reason": "REFERRED_ONWARD", "endedAt": "2016-02-08T11:00:00Z" }),
        ),
        step(
            "receiveReferral",
            json!({ "patientId": p, "referralId": r2, "serviceId": pol, "source": "GP", "receivedAt": "2016-02-09T09:00:00Z" }),
        ),
        step(
            "decideReferral",
            json!({ "patientId": p, "referralId": r2, "decision": "ACCEPTED", "decidedAt": "2016-02-10T09:00:00Z" }),
        ),
        step(
            "startEpisode",
            json!({ "patientId": p, "episodeId": e2, "serviceId": pol, "referralId": r2, "startedAt": "2016-02-15T09:00:00Z" }),
        ),
        step(
            "assignTherapist",
            json!({ "patientId": p, "episodeId": e2, "therapistId": a, "assignedAt": "2016-02-15T09:00:00Z" }),
        ),
        sess(e2, a, "ATTENDED", "2016-02-15T10:00:00Z"),
        step(
            "admitPatient",
            json!({ "patientId": p, "admissionId": adm, "serviceId": ward, "admittedAt": "2016-03-01T08:00:00Z" }),
        ),
        sess(e2, w, "ATTENDED", "2016-03-02T10:00:00Z"),
        sess(e2, a, "ATTENDED", "2016-03-03T10:00:00Z"),
        step(
            "dischargePatient",
            json!({ "patientId": p, "admissionId": adm, "dischargedAt": "2016-03-05T12:00:00Z" }),
        ),
        step(
            "releaseTherapist",
            json!({ "patientId": p, "episodeId": e2, "therapistId": a, "reason": "SICK_LEAVE",
                    "patientNotified": false, "releasedAt": "2016-03-07T09:00:00Z" }),
        ),
        step(
            "assignTherapist",
            json!({ "patientId": p, "episodeId": e2, "therapistId": b, "assignedAt": "2016-03-12T09:00:00Z" }),
        ),
        sess(e2, b, "ATTENDED", "2016-03-14T10:00:00Z"),
        sess(e2, b, "ATTENDED", "2016-03-21T10:00:00Z"),
        // A late entry: the Feb 22 session reaches the system last.
        sess(e2, a, "ATTENDED", "2016-02-22T10:00:00Z"),
    ]);

    // The pathway uses every recording mutation of the contract.
    let mut ops: Vec<&str> = steps.iter().map(|st| st.op).collect();
    ops.sort_unstable();
    ops.dedup();
    assert_eq!(ops.len(), 13, "{ops:?}");

    let mut recorded = Vec::new();
    for st in &steps {
        let r = s.record(st.op, st.input.clone()).await;
        assert!(!r.deduplicated, "{}: a first recording is not a retry", st.op);
        recorded.push((st.op, r));
    }

    // Where the events landed: one client writing alone, so positions are 0, 1, 2, ... in call
    // order; every stream's versions count from 0 without gaps; event ids are all distinct.
    for (i, (op, r)) in recorded.iter().enumerate() {
        assert_eq!(r.position, i as u64, "{op} (step {i}) landed at position {}", r.position);
    }
    let patient_versions: Vec<u64> = recorded
        .iter()
        .filter(|(op, _)| !op.starts_with("registerS") && !op.starts_with("registerT"))
        .map(|(_, r)| r.stream_version)
        .collect();
    assert_eq!(patient_versions.len(), 26, "26 facts about the patient");
    assert_eq!(patient_versions, (0..patient_versions.len() as u64).collect::<Vec<_>>());
    for (op, r) in &recorded[..6] {
        assert_eq!(r.stream_version, 0, "{op}: each service and therapist has a stream of its own");
    }
    let mut ids: Vec<Uuid> = recorded.iter().map(|(_, r)| r.event_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), recorded.len(), "event ids are unique");
    assert_eq!(s.committed().await, steps.len() as u64);

    // A PHQ-9 with eight items is refused and writes nothing.
    s.rejects(
        "recordOutcome",
        json!({ "patientId": p, "episodeId": e1, "instrument": "PHQ9", "phase": "DISCHARGE",
                "items": [1, 1, 1, 1, 1, 1, 1, 1], "measuredAt": "2016-02-08T09:00:00Z" }),
        "INVALID_INPUT",
    )
    .await;

    let patient = s.patient(p, CONTINUITY).await;
    assert_eq!(patient["id"], json!(p));
    assert_eq!(patient["version"], json!(patient_versions.len() - 1), "version is the patient stream's last");
    assert_eq!(patient["birthYear"], 1985);
    assert_eq!(patient["gender"], "FEMALE");

    let c = &patient["continuity"];
    assert_eq!(c["attendedSessions"], 9, "{c}");
    assert_eq!(c["distinctTherapists"], 3, "{c}");
    assert_eq!(c["careLevelTransitions"], 3, "{c}");
    assert_eq!(c["transitionsKeepingTherapist"], 2, "{c}");
    assert_eq!(c["sameTherapistAcrossCareLevels"], false, "{c}");
    assert_close(&c["coc"], 32.0 / 72.0, "coc");
    assert_close(&c["upc"], 6.0 / 9.0, "upc");
    assert_close(&c["secon"], 5.0 / 8.0, "secon");
    assert_close(&c["mmci"], (1.0 - 3.0 / 9.1) / (1.0 - 1.0 / 9.1), "mmci");

    // Segments in clinical order, the late Feb 22 session inside the outpatient one; therapists in
    // order of their first session in the segment (W before A on the ward).
    let segs = c["segments"].as_array().expect("segments");
    let got: Vec<(String, Vec<Uuid>, u64, String, String)> = segs
        .iter()
        .map(|sg| {
            (
                sg["careLevel"].as_str().expect("careLevel").to_owned(),
                uuids(&sg["therapistIds"]),
                sg["sessions"].as_u64().expect("sessions"),
                utc(sg["from"].as_str().expect("from")),
                utc(sg["to"].as_str().expect("to")),
            )
        })
        .collect();
    let want = vec![
        ("MUNICIPAL".to_owned(), vec![a], 3, "2016-01-11T10:00:00Z".to_owned(), "2016-02-01T10:00:00Z".to_owned()),
        ("SPECIALIST_OUTPATIENT".into(), vec![a], 2, "2016-02-15T10:00:00Z".into(), "2016-02-22T10:00:00Z".into()),
        ("SPECIALIST_INPATIENT".into(), vec![w, a], 2, "2016-03-02T10:00:00Z".into(), "2016-03-03T10:00:00Z".into()),
        ("SPECIALIST_OUTPATIENT".into(), vec![b], 2, "2016-03-14T10:00:00Z".into(), "2016-03-21T10:00:00Z".into()),
    ];
    assert_eq!(got, want, "segments: {}", c["segments"]);

    // Handovers, in order of release.
    let hos = c["handovers"].as_array().expect("handovers");
    assert_eq!(hos.len(), 2, "{}", c["handovers"]);
    let (h1, h2) = (&hos[0], &hos[1]);
    assert_eq!(h1["episodeId"], json!(e1));
    assert_eq!(h1["fromTherapistId"], json!(a));
    assert_eq!(h1["toTherapistId"], Value::Null, "nobody took over the ended RPH episode");
    assert_eq!(h1["reason"], "EPISODE_ENDED");
    assert_eq!(h1["patientNotified"], true);
    assert_eq!(utc(h1["releasedAt"].as_str().expect("releasedAt")), "2016-02-08T10:00:00Z");
    assert_eq!(h1["gapDays"], Value::Null);
    assert_eq!(h2["episodeId"], json!(e2));
    assert_eq!(h2["fromTherapistId"], json!(a));
    assert_eq!(h2["toTherapistId"], json!(b));
    assert_eq!(h2["reason"], "SICK_LEAVE");
    assert_eq!(h2["patientNotified"], false);
    assert_eq!(utc(h2["releasedAt"].as_str().expect("releasedAt")), "2016-03-07T09:00:00Z");
    assert_close(&h2["gapDays"], 5.0, "gapDays");

    // Episodes and the admission as recorded.
    let eps = patient["episodes"].as_array().expect("episodes");
    assert_eq!(eps.len(), 2);
    assert_eq!(eps[0]["id"], json!(e1));
    assert_eq!(eps[0]["careLevel"], "MUNICIPAL");
    assert_eq!(eps[0]["referralId"], json!(r1));
    assert_eq!(eps[0]["endReason"], "REFERRED_ONWARD");
    assert_eq!(utc(eps[0]["endedAt"].as_str().expect("endedAt")), "2016-02-08T11:00:00Z");
    assert_eq!(eps[1]["id"], json!(e2));
    assert_eq!(eps[1]["careLevel"], "SPECIALIST_OUTPATIENT");
    assert_eq!(eps[1]["endedAt"], Value::Null);
    let adms = patient["admissions"].as_array().expect("admissions");
    assert_eq!(adms.len(), 1);
    assert_eq!(adms[0]["id"], json!(adm));
    assert_eq!(adms[0]["serviceId"], json!(ward));
    assert_eq!(utc(adms[0]["dischargedAt"].as_str().expect("dischargedAt")), "2016-03-05T12:00:00Z");

    // Reference data is queryable: services by name.
    let services = s.query("{ services { id name careLevel } therapists { id name hprNumber } }", json!({})).await;
    let names: Vec<&str> =
        services["services"].as_array().expect("services").iter().map(|x| x["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["DPS døgn", "DPS poliklinikk", "RPH"]);
    assert_eq!(services["therapists"].as_array().expect("therapists").len(), 3);

    // A restart rebuilds the same answers from the log alone.
    let s = s.restart(&[]).await;
    assert_eq!(s.committed().await, steps.len() as u64);
    assert_eq!(s.patient(p, CONTINUITY).await, patient, "the read model rebuilt from the log differs");
}
