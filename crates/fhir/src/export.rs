//! forlop's view of a patient as R4: `Patient/{id}/$everything` and the pathway it is made of.

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, Utc};
use forlop_domain::{Attendance, Gender, Instrument, MeasurePhase};
use forlop_engine::{Caller, EngineError, PatientGrant};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::mapping::terminology::*;
use crate::read::care_level_text;
use crate::Fhir;

fn t(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn entry(base: &str, resource: Value) -> Value {
    let url =
        format!("{base}/{}/{}", resource["resourceType"].as_str().unwrap_or(""), resource["id"].as_str().unwrap_or(""));
    json!({ "fullUrl": url, "resource": resource, "search": { "mode": "match" } })
}

impl Fhir {
    /// The patient's pathway as a searchset Bundle, if the caller may read all of it (the read
    /// is access-logged by the engine, and so is a refusal: an integration, which may see only a
    /// patient's id, is refused and logged as DENIED). `base` is the server's FHIR base URL.
    pub async fn everything(&self, caller: &Caller, patient: Uuid, base: &str) -> Result<Option<Value>, EngineError> {
        let Some((entries, _)) = self.pathway(caller, patient, base, "fhir.Patient.$everything").await? else {
            return Ok(None);
        };
        Ok(Some(json!({ "resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries })))
    }

    /// Every resource of the patient's pathway as searchset entries, and the grant they were
    /// read under (`fields` names the read in its access record).
    pub(crate) async fn pathway(
        &self,
        caller: &Caller,
        patient: Uuid,
        base: &str,
        fields: &str,
    ) -> Result<Option<(Vec<Value>, PatientGrant)>, EngineError> {
        let Some(grant) = self.engine().read_patient_in_full(caller, patient, fields).await? else {
            return Ok(None);
        };
        let national_id = self.engine().national_id(&grant).await?;
        let model = self.engine().model();
        let v = grant.view()?;
        let pid = v.id.to_string();
        let mut entries = Vec::new();
        let mut identifier = Vec::new();
        if let Some(n) = &national_id {
            // A D-number has first digit 4 to 7 (first digit + 4); an H-number month + 40.
            let first = n.as_bytes().first().copied().unwrap_or(b'0');
            let month_tens = n.as_bytes().get(2).copied().unwrap_or(b'0');
            let system = if (b'4'..=b'7').contains(&first) {
                SYSTEM_DNR
            } else if (b'4'..=b'5').contains(&month_tens) {
                SYSTEM_HNR
            } else {
                SYSTEM_FNR
            };
            identifier.push(json!({ "system": system, "value": n }));
        }
        let gender = match v.gender {
            Gender::Female => "female",
            Gender::Male => "male",
            Gender::Other => "other",
            Gender::Unknown | Gender::Unrecognised => "unknown",
        };
        let mut patient = json!({ "resourceType": "Patient", "id": pid, "gender": gender, "birthDate": format!("{:04}", v.birth_year) });
        if !identifier.is_empty() {
            patient["identifier"] = json!(identifier);
        }
        entries.push(entry(base, patient));

        let services: BTreeSet<Uuid> = v
            .episodes
            .iter()
            .map(|e| e.service_id)
            .chain(v.admissions.iter().map(|a| a.service_id))
            .chain(v.referrals.iter().map(|r| r.service_id))
            .collect();
        for s in services {
            if let Some(sv) = model.services.get(&s) {
                entries.push(entry(
                    base,
                    json!({ "resourceType": "Organization", "id": s.to_string(), "name": sv.name,
                        "type": [{ "text": care_level_text(sv.care_level) }] }),
                ));
            }
        }
        let therapists: BTreeSet<Uuid> =
            v.assignments.iter().map(|a| a.therapist_id).chain(v.therapists.iter().copied()).collect();
        for th in therapists {
            if let Some(tv) = model.therapists.get(&th) {
                let mut p =
                    json!({ "resourceType": "Practitioner", "id": th.to_string(), "name": [{ "text": tv.name }] });
                if let Some(hpr) = &tv.hpr_number {
                    p["identifier"] = json!([{ "system": SYSTEM_HPR, "value": hpr }]);
                }
                entries.push(entry(base, p));
            }
        }
        for r in &v.referrals {
            let status = match r.decision {
                Some((forlop_domain::ReferralDecision::Rejected, _, _)) => "revoked",
                Some(_) => "completed",
                None => "active",
            };
            entries.push(entry(
                base,
                json!({ "resourceType": "ServiceRequest", "id": r.id.to_string(), "status": status, "intent": "order",
                    "subject": { "reference": format!("Patient/{pid}") },
                    "performer": [{ "reference": format!("Organization/{}", r.service_id) }],
                    "authoredOn": t(&r.received_at) }),
            ));
        }
        for e in &v.episodes {
            entries.push(entry(base, episode_of_care(e, v, &pid)));
        }
        for s in v.sessions() {
            let status = if s.attendance == Attendance::Attended { "finished" } else { "cancelled" };
            let mut enc = json!({ "resourceType": "Encounter", "id": s.session_id.to_string(), "status": status,
                "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory" },
                "subject": { "reference": format!("Patient/{pid}") },
                "episodeOfCare": [{ "reference": format!("EpisodeOfCare/{}", s.episode_id) }],
                "participant": [{ "individual": { "reference": format!("Practitioner/{}", s.therapist_id) } }],
                "period": { "start": t(&s.at) } });
            if s.attendance != Attendance::Attended {
                enc["reasonCode"] = json!([{ "text": s.attendance.code() }]);
            }
            entries.push(entry(base, enc));
        }
        for a in &v.admissions {
            let mut period = json!({ "start": t(&a.admitted_at) });
            if let Some(d) = &a.discharged_at {
                period["end"] = json!(t(d));
            }
            entries.push(entry(
                base,
                json!({ "resourceType": "Encounter", "id": a.id.to_string(),
                    "status": if a.discharged_at.is_some() { "finished" } else { "in-progress" },
                    "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP", "display": "inpatient encounter" },
                    "subject": { "reference": format!("Patient/{pid}") },
                    "serviceProvider": { "reference": format!("Organization/{}", a.service_id) },
                    "period": period }),
            ));
        }
        for (n, o) in v.outcomes.iter().enumerate() {
            entries.push(entry(base, observation(o, v.outcome_episode_id(o), &pid, &v.id, n)));
        }
        Ok(Some((entries, grant)))
    }
}

fn episode_of_care(
    e: &forlop_projections::read_model::EpisodeView,
    v: &forlop_projections::PatientView,
    pid: &str,
) -> Value {
    let mut period = json!({ "start": t(&e.started_at) });
    let mut history = Vec::new();
    let status = match &e.ended {
        Some(end) => {
            period["end"] = json!(t(&end.ended_at));
            history
                .push(json!({ "status": "active", "period": { "start": t(&e.started_at), "end": t(&end.ended_at) } }));
            if end.reason == forlop_domain::EndReason::DroppedOut {
                "cancelled"
            } else {
                "finished"
            }
        }
        None => {
            history.push(json!({ "status": "active", "period": { "start": t(&e.started_at) } }));
            "active"
        }
    };
    let participants: Vec<Value> = v
        .assignments
        .iter()
        .filter(|a| a.episode_id == e.id)
        .map(|a| {
            let mut p = json!({ "start": t(&a.assigned_at) });
            let mut ext = Vec::new();
            if let Some(r) = &a.released_at {
                p["end"] = json!(t(r));
                let release = v.releases.iter().find(|x| {
                    x.event.episode_id == e.id && x.event.therapist_id == a.therapist_id && x.event.released_at == *r
                });
                if let Some(rel) = release {
                    ext.push(json!({ "url": EXT_RELEASE_REASON, "valueCode": rel.event.reason.code() }));
                    ext.push(json!({ "url": EXT_PATIENT_NOTIFIED, "valueBoolean": rel.event.patient_notified }));
                }
            }
            let mut part =
                json!({ "member": { "reference": format!("Practitioner/{}", a.therapist_id) }, "period": p });
            if !ext.is_empty() {
                part["extension"] = json!(ext);
            }
            part
        })
        .collect();
    let mut eoc = json!({ "resourceType": "EpisodeOfCare", "id": e.id.to_string(), "status": status,
        "statusHistory": history,
        "patient": { "reference": format!("Patient/{pid}") },
        "managingOrganization": { "reference": format!("Organization/{}", e.service_id) },
        "period": period });
    if let Some(r) = e.referral_id {
        eoc["referralRequest"] = json!([{ "reference": format!("ServiceRequest/{r}") }]);
    }
    if let Some(first) = v.assignments.iter().filter(|a| a.episode_id == e.id).min_by_key(|a| a.assigned_at) {
        eoc["careManager"] = json!({ "reference": format!("Practitioner/{}", first.therapist_id) });
    }
    if !participants.is_empty() {
        eoc["contained"] = json!([{ "resourceType": "CareTeam", "id": "team", "participant": participants }]);
        eoc["team"] = json!([{ "reference": "#team" }]);
    }
    if let Some(end) = &e.ended {
        eoc["extension"] = json!([{ "url": EXT_END_REASON, "valueCode": end.reason.code() }]);
    }
    if e.acute {
        let ext = eoc["extension"].as_array().cloned().unwrap_or_default();
        let mut ext = ext;
        ext.push(json!({ "url": EXT_ACUTE, "valueBoolean": true }));
        eoc["extension"] = json!(ext);
    }
    eoc
}

fn observation(
    o: &forlop_projections::read_model::OutcomeFact,
    episode_id: Uuid,
    pid: &str,
    patient: &Uuid,
    n: usize,
) -> Value {
    let (total, items, name): (&str, &[&str], &str) = match o.instrument {
        Instrument::Gad7 => (GAD7_TOTAL, &GAD7_ITEMS, "GAD-7 total score"),
        _ => (PHQ9_TOTAL, &PHQ9_ITEMS, "PHQ-9 total score"),
    };
    let phase = match o.phase {
        MeasurePhase::Intake => "intake",
        MeasurePhase::Discharge => "discharge",
        _ => "interim",
    };
    let component: Vec<Value> = o
        .items()
        .iter()
        .zip(items)
        .map(|(v, code)| json!({ "code": { "coding": [{ "system": LOINC, "code": code }] }, "valueInteger": v }))
        .collect();
    // Outcomes have no id of their own in forlop: named by patient and recording order.
    let id = crate::identity::uuid_for(&format!("{patient}#outcome#{n}"));
    json!({ "resourceType": "Observation", "id": id.to_string(), "status": "final",
        "category": [{ "coding": [{ "system": PHASE_SYSTEM, "code": phase }] }],
        "code": { "coding": [{ "system": LOINC, "code": total, "display": name }] },
        "subject": { "reference": format!("Patient/{pid}") },
        "effectiveDateTime": t(&o.measured_at),
        "valueInteger": o.total,
        "component": component,
        "focus": [{ "reference": format!("EpisodeOfCare/{episode_id}") }] })
}
