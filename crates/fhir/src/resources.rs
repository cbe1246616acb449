//! The R4 resources forlop reads and writes, as typed serde structs: only the elements that
//! carry pathway facts. Unknown elements are ignored on input (FHIR resources carry far more),
//! and nothing is ever read by walking untyped JSON.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identifier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeableConcept {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl CodeableConcept {
    pub fn has(&self, system: &str, code: &str) -> bool {
        self.coding.iter().any(|c| c.system.as_deref() == Some(system) && c.code.as_deref() == Some(code))
    }

    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.coding.iter().filter_map(|c| c.code.as_deref())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Period {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HumanName {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub given: Vec<String>,
}

impl HumanName {
    pub fn full(&self) -> Option<String> {
        if let Some(t) = self.text.as_deref().filter(|t| !t.trim().is_empty()) {
            return Some(t.to_owned());
        }
        let mut parts: Vec<&str> = self.given.iter().map(String::as_str).collect();
        parts.extend(self.family.as_deref());
        let name = parts.join(" ");
        (!name.trim().is_empty()).then_some(name)
    }
}

/// A forlop extension (release reason, patient notified): one value element of the few used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_boolean: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Practitioner {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name: Vec<HumanName>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PractitionerRole {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practitioner: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub code: Vec<CodeableConcept>,
}

/// Organization and HealthcareService carry the same facts for forlop: identifiers and a name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performer: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authored_on: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reason_code: Vec<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusHistory {
    pub status: String,
    pub period: Period,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpisodeOfCare {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contained: Vec<Contained>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_history: Vec<StatusHistory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managing_organization: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referral_request: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub care_manager: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub team: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CareTeamParticipant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CareTeam {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participant: Vec<CareTeamParticipant>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncounterParticipant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub individual: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Encounter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub status: String,
    /// Required by R4; absent is reported, not guessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<Coding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub episode_of_care: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participant: Vec<EncounterParticipant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reason_code: Vec<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_provider: Option<Reference>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservationComponent {
    pub code: CodeableConcept,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_integer: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_codeable_concept: Option<CodeableConcept>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_integer: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub component: Vec<ObservationComponent>,
    /// forlop's link from an outcome to its episode, when no Encounter carries it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_of: Vec<Reference>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuestionnaireAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_integer: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_coding: Option<Coding>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuestionnaireItem {
    #[serde(default)]
    pub link_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answer: Vec<QuestionnaireAnswer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub item: Vec<QuestionnaireItem>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuestionnaireResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// One identifier in R4 (not a list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub questionnaire: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authored: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub item: Vec<QuestionnaireItem>,
}

/// A resource inside another (`contained`), referenced as `#id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resourceType")]
pub enum Contained {
    Practitioner(Practitioner),
    PractitionerRole(PractitionerRole),
    Organization(Organization),
    HealthcareService(Organization),
    CareTeam(CareTeam),
    Patient(Patient),
    #[serde(other)]
    Other,
}

impl Contained {
    pub fn id(&self) -> Option<&str> {
        match self {
            Contained::Practitioner(r) => r.id.as_deref(),
            Contained::PractitionerRole(r) => r.id.as_deref(),
            Contained::Organization(r) | Contained::HealthcareService(r) => r.id.as_deref(),
            Contained::CareTeam(r) => r.id.as_deref(),
            Contained::Patient(r) => r.id.as_deref(),
            Contained::Other => None,
        }
    }
}

/// Any resource that may arrive at forlop; other types are read only to be refused by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resourceType")]
pub enum Resource {
    Patient(Patient),
    Practitioner(Practitioner),
    PractitionerRole(PractitionerRole),
    Organization(Organization),
    HealthcareService(Organization),
    ServiceRequest(ServiceRequest),
    EpisodeOfCare(EpisodeOfCare),
    Encounter(Encounter),
    Observation(Observation),
    QuestionnaireResponse(QuestionnaireResponse),
    CareTeam(CareTeam),
}

impl Resource {
    /// Parses a resource whose `resourceType` is already known, in one pass. The tagged enum's
    /// own deserializer buffers the whole object first, which costs more than the parse itself
    /// in a bulk import. `resourceType` is an ignored field of each struct. None for a type
    /// forlop does not take.
    pub fn parse_as(type_name: &str, json: &str) -> Option<serde_json::Result<Resource>> {
        fn as_<T: serde::de::DeserializeOwned>(json: &str, f: fn(T) -> Resource) -> serde_json::Result<Resource> {
            serde_json::from_str(json).map(f)
        }
        Some(match type_name {
            "Patient" => as_(json, Resource::Patient),
            "Practitioner" => as_(json, Resource::Practitioner),
            "PractitionerRole" => as_(json, Resource::PractitionerRole),
            "Organization" => as_(json, Resource::Organization),
            "HealthcareService" => as_(json, Resource::HealthcareService),
            "ServiceRequest" => as_(json, Resource::ServiceRequest),
            "EpisodeOfCare" => as_(json, Resource::EpisodeOfCare),
            "Encounter" => as_(json, Resource::Encounter),
            "Observation" => as_(json, Resource::Observation),
            "QuestionnaireResponse" => as_(json, Resource::QuestionnaireResponse),
            "CareTeam" => as_(json, Resource::CareTeam),
            _ => return None,
        })
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Resource::Patient(_) => "Patient",
            Resource::Practitioner(_) => "Practitioner",
            Resource::PractitionerRole(_) => "PractitionerRole",
            Resource::Organization(_) => "Organization",
            Resource::HealthcareService(_) => "HealthcareService",
            Resource::ServiceRequest(_) => "ServiceRequest",
            Resource::EpisodeOfCare(_) => "EpisodeOfCare",
            Resource::Encounter(_) => "Encounter",
            Resource::Observation(_) => "Observation",
            Resource::QuestionnaireResponse(_) => "QuestionnaireResponse",
            Resource::CareTeam(_) => "CareTeam",
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            Resource::Patient(r) => r.id.as_deref(),
            Resource::Practitioner(r) => r.id.as_deref(),
            Resource::PractitionerRole(r) => r.id.as_deref(),
            Resource::Organization(r) | Resource::HealthcareService(r) => r.id.as_deref(),
            Resource::ServiceRequest(r) => r.id.as_deref(),
            Resource::EpisodeOfCare(r) => r.id.as_deref(),
            Resource::Encounter(r) => r.id.as_deref(),
            Resource::Observation(r) => r.id.as_deref(),
            Resource::QuestionnaireResponse(r) => r.id.as_deref(),
            Resource::CareTeam(r) => r.id.as_deref(),
        }
    }

    pub fn identifiers(&self) -> &[Identifier] {
        match self {
            Resource::Patient(r) => &r.identifier,
            Resource::Practitioner(r) => &r.identifier,
            Resource::PractitionerRole(r) => &r.identifier,
            Resource::Organization(r) | Resource::HealthcareService(r) => &r.identifier,
            Resource::ServiceRequest(r) => &r.identifier,
            Resource::EpisodeOfCare(r) => &r.identifier,
            Resource::Encounter(r) => &r.identifier,
            Resource::Observation(r) => &r.identifier,
            Resource::QuestionnaireResponse(r) => r.identifier.as_slice(),
            Resource::CareTeam(_) => &[],
        }
    }

    /// Order in which a Bundle's facts are placed: what others refer to comes first.
    pub fn rank(&self) -> u8 {
        match self {
            Resource::Organization(_) | Resource::HealthcareService(_) => 0,
            Resource::Practitioner(_) | Resource::PractitionerRole(_) | Resource::CareTeam(_) => 1,
            Resource::Patient(_) => 2,
            Resource::ServiceRequest(_) => 3,
            Resource::EpisodeOfCare(_) => 4,
            Resource::Encounter(_) => 5,
            Resource::Observation(_) | Resource::QuestionnaireResponse(_) => 6,
        }
    }
}

/// The resource types forlop accepts, for messages and the CapabilityStatement.
pub const ACCEPTED: &[&str] = &[
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "HealthcareService",
    "ServiceRequest",
    "EpisodeOfCare",
    "Encounter",
    "Observation",
    "QuestionnaireResponse",
    "CareTeam",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleIn {
    #[serde(rename = "resourceType")]
    pub resource_type: String,
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default)]
    pub entry: Vec<EntryIn>,
}

/// An entry whose resource is kept as raw JSON until it is parsed on its own, so one bad entry
/// is reported at its index instead of failing the whole Bundle's parse.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryIn {
    #[serde(default)]
    pub full_url: Option<String>,
    #[serde(default)]
    pub resource: Option<Box<serde_json::value::RawValue>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_accepted_type_parses_in_one_pass_as_the_tagged_enum_reads_it() {
        let mut parsed = std::collections::BTreeSet::new();
        for t in ACCEPTED {
            // Bare, and with the elements some types require (Observation's `code`).
            for extra in ["", r#","code":{"coding":[]}"#] {
                let json = format!(r#"{{"resourceType":"{t}","id":"x-1"{extra}}}"#);
                let direct = Resource::parse_as(t, &json).expect("an accepted type");
                let tagged = serde_json::from_str::<Resource>(&json);
                assert_eq!(direct.is_ok(), tagged.is_ok(), "{json}");
                if let (Ok(direct), Ok(tagged)) = (direct, tagged) {
                    assert_eq!(direct, tagged, "{json}");
                    assert_eq!((direct.type_name(), direct.id()), (*t, Some("x-1")));
                    parsed.insert(*t);
                }
            }
        }
        assert_eq!(parsed.len(), ACCEPTED.len(), "every type parsed at least once: {parsed:?}");
        assert!(Resource::parse_as("Medication", "{}").is_none());
    }
}
