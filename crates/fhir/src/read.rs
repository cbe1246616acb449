//! `GET /fhir/{type}/{id}`: one resource as `$everything` shows it, with `meta.versionId` (how
//! many recorded facts name it) and `meta.lastUpdated` (when the last of them was recorded),
//! from the log. A patient's resources are read through `Engine::read_patient_in_full`, so the
//! read is authorised and access-logged as a GraphQL read is; services and therapists through
//! the engine's reference reads.

use chrono::{DateTime, SecondsFormat, Utc};
use forlop_domain::{CareLevel, StreamRef};
use forlop_engine::{Caller, EngineError};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::mapping::terminology::SYSTEM_HPR;
use crate::Fhir;

/// The resource types `GET /fhir/{type}/{id}` reads.
pub const READABLE: &[&str] =
    &["Patient", "EpisodeOfCare", "Encounter", "ServiceRequest", "Practitioner", "Organization"];

/// A resource as read, with the version its `ETag` carries.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadResource {
    pub resource: Value,
    pub version: u64,
}

impl Fhir {
    /// The resource of `type_name` with forlop id `id`, if there is one the caller may read.
    pub async fn read(
        &self,
        caller: &Caller,
        type_name: &str,
        id: Uuid,
        base: &str,
    ) -> Result<Option<ReadResource>, EngineError> {
        match type_name {
            "Patient" | "EpisodeOfCare" | "Encounter" | "ServiceRequest" => {
                // An id no patient holds is asked of the engine as an unknown patient (the nil
                // id), so a caller who may not read it gets the same refusal as for one that
                // exists: the answer does not tell which ids are taken.
                let patient =
                    if type_name == "Patient" { id } else { self.engine().owner_of(id).unwrap_or(Uuid::nil()) };
                let fields = format!("fhir.{type_name}.read");
                let Some((entries, grant)) = self.pathway(caller, patient, base, &fields).await? else {
                    return Ok(None);
                };
                let wanted = id.to_string();
                let Some(resource) = entries
                    .into_iter()
                    .map(|mut e| e["resource"].take())
                    .find(|r| r["resourceType"] == type_name && r["id"] == wanted.as_str())
                else {
                    return Ok(None);
                };
                let events = self.engine().history(&grant).await?;
                let meta = meta_of(&resource, events.iter().map(|e| (e.payload.as_slice(), e.recorded_at)));
                Ok(Some(meta.on(resource)))
            }
            "Practitioner" => {
                let Some(t) = self.engine().therapists(caller)?.into_iter().find(|t| t.id == id) else {
                    return Ok(None);
                };
                let mut p =
                    json!({ "resourceType": "Practitioner", "id": id.to_string(), "name": [{ "text": t.name }] });
                if let Some(hpr) = &t.hpr_number {
                    p["identifier"] = json!([{ "system": SYSTEM_HPR, "value": hpr }]);
                }
                let events = self.engine().reference_events(caller, StreamRef::Therapist(id)).await?;
                Ok(Some(Meta::of(events.iter().map(|e| e.recorded_at)).on(p)))
            }
            "Organization" => {
                let Some(s) = self.engine().services(caller)?.into_iter().find(|s| s.id == id) else {
                    return Ok(None);
                };
                let o = json!({ "resourceType": "Organization", "id": id.to_string(), "name": s.name,
                    "type": [{ "text": care_level_text(s.care_level) }] });
                let events = self.engine().reference_events(caller, StreamRef::Service(id)).await?;
                Ok(Some(Meta::of(events.iter().map(|e| e.recorded_at)).on(o)))
            }
            _ => Ok(None),
        }
    }
}

/// A resource's version and last update, from the recording times of the facts that name it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Meta {
    pub version: u64,
    pub last: Option<DateTime<Utc>>,
}

impl Meta {
    fn of(naming: impl Iterator<Item = DateTime<Utc>>) -> Meta {
        naming.fold(Meta { version: 0, last: None }, |m, at| Meta {
            version: m.version + 1,
            last: Some(m.last.map_or(at, |l| l.max(at))),
        })
    }

    pub(crate) fn json(&self) -> Value {
        let mut meta = json!({ "versionId": self.version.to_string() });
        if let Some(at) = self.last {
            meta["lastUpdated"] = json!(at.to_rfc3339_opts(SecondsFormat::Millis, true));
        }
        meta
    }

    fn on(self, mut resource: Value) -> ReadResource {
        resource["meta"] = self.json();
        ReadResource { resource, version: self.version }
    }
}

/// The meta of one of a patient's resources, from the patient's events (payload, recording
/// time): the patient is named by every event of their stream, a fact by those that carry its id.
pub(crate) fn meta_of<'a>(resource: &Value, events: impl Iterator<Item = (&'a [u8], DateTime<Utc>)>) -> Meta {
    let patient = resource["resourceType"] == "Patient";
    let id = resource["id"].as_str().unwrap_or("").as_bytes();
    Meta::of(events.filter(|(payload, _)| patient || contains(payload, id)).map(|(_, at)| at))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// How a service's care level reads in FHIR (`Organization.type.text`).
pub(crate) fn care_level_text(l: CareLevel) -> &'static str {
    match l {
        CareLevel::Municipal => "Municipal mental health service",
        CareLevel::SpecialistOutpatient => "Specialist outpatient (DPS)",
        CareLevel::SpecialistDay => "Specialist day treatment",
        CareLevel::SpecialistInpatient => "Specialist inpatient",
        CareLevel::Unrecognised => "Unrecognised care level",
    }
}
