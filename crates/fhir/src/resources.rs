//! The R4 resources forlop reads and writes, as typed serde structs: only the elements that
//! carry pathway facts. Unknown elements are ignored on input (FHIR resources carry far more),
//! and nothing is ever read by walking untyped JSON.
//!
//! Long because it is one list: every R4 element forlop reads, so the mapping's types are
//! found in one place.

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

/// One way of parsing a resource of a known type (see `by_type`).
trait ParseAs {
    type Out;
    fn parse<T: serde::de::DeserializeOwned>(self, wrap: fn(T) -> Resource) -> Self::Out;
}

/// Parses as the resource type named, with `how`; None for a type forlop does not take.
fn by_type<P: ParseAs>(type_name: &str, how: P) -> Option<P::Out> {
    Some(match type_name {
        "Patient" => how.parse(Resource::Patient),
        "Practitioner" => how.parse(Resource::Practitioner),
        "PractitionerRole" => how.parse(Resource::PractitionerRole),
        "Organization" => how.parse(Resource::Organization),
        "HealthcareService" => how.parse(Resource::HealthcareService),
        "ServiceRequest" => how.parse(Resource::ServiceRequest),
        "EpisodeOfCare" => how.parse(Resource::EpisodeOfCare),
        "Encounter" => how.parse(Resource::Encounter),
        "Observation" => how.parse(Resource::Observation),
        "QuestionnaireResponse" => how.parse(Resource::QuestionnaireResponse),
        "CareTeam" => how.parse(Resource::CareTeam),
        _ => return None,
    })
}

impl Resource {
    /// Parses a resource whose `resourceType` is already known, in one pass. The tagged enum's
    /// own deserializer buffers the whole object first, which costs more than the parse itself
    /// in a bulk import. `resourceType` is an ignored field of each struct. None for a type
    /// forlop does not take.
    pub fn parse_as(type_name: &str, json: &str) -> Option<serde_json::Result<Resource>> {
        struct Whole<'a>(&'a str);
        impl ParseAs for Whole<'_> {
            type Out = serde_json::Result<Resource>;
            fn parse<T: serde::de::DeserializeOwned>(self, wrap: fn(T) -> Resource) -> Self::Out {
                serde_json::from_str(self.0).map(wrap)
            }
        }
        by_type(type_name, Whole(json))
    }

    /// Parses a resource in a single pass when `resourceType` is its first member, as FHIR's
    /// JSON format writes it: that member picks the type and the same pass reads the rest into
    /// it. None in every other case, errors included, for `parse_as` to parse and report.
    pub fn parse_type_first(json: &str) -> Option<Resource> {
        use serde::de::{Error as _, MapAccess};
        struct Rest<'de, A>(A, std::marker::PhantomData<&'de ()>);
        impl<'de, A: MapAccess<'de>> ParseAs for Rest<'de, A> {
            type Out = Result<Resource, A::Error>;
            fn parse<T: serde::de::DeserializeOwned>(self, wrap: fn(T) -> Resource) -> Self::Out {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(self.0)).map(wrap)
            }
        }
        struct TypeFirst;
        impl<'de> serde::de::Visitor<'de> for TypeFirst {
            type Value = Resource;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a resource whose first member is resourceType")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Resource, A::Error> {
                if map.next_key::<String>()?.as_deref() != Some("resourceType") {
                    return Err(A::Error::custom("resourceType is not first"));
                }
                let type_name: String = map.next_value()?;
                by_type(&type_name, Rest(map, std::marker::PhantomData))
                    .unwrap_or_else(|| Err(A::Error::custom("not a type forlop takes")))
            }
        }
        let mut json = serde_json::Deserializer::from_str(json);
        let resource = serde::Deserializer::deserialize_map(&mut json, TypeFirst).ok()?;
        json.end().ok()?;
        Some(resource)
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
    #[serde(default)]
    pub request: Option<EntryRequest>,
}

/// `Bundle.entry.request`: how the sender asks for the entry to be processed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryRequest {
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub if_none_exist: Option<String>,
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

    #[test]
    fn a_resource_that_names_its_type_first_parses_in_one_pass_as_the_tagged_enum_reads_it() {
        let phq9 = r#"{"resourceType":"Observation","id":"o-1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"subject":{"reference":"Patient/p-1"},"effectiveDateTime":"2024-03-01T10:00:00Z","component":[{"code":{"coding":[{"system":"http://loinc.org","code":"44250-9"}]},"valueInteger":2}]}"#;
        let patient = r#"{"resourceType":"Patient","id":"p-1","gender":"female","birthDate":"1990","identifier":[{"system":"urn:oid:2.16.578.1.12.4.1.4.1","value":"21030550231"}],"contained":[{"resourceType":"Patient","id":"c"}]}"#;
        let escaped = r#"{"resourceType":"Practitioner","id":"pr-\u00e6","name":[{"text":"Terapeut \"\u00d8\""}]}"#;
        for json in [phq9, patient, escaped] {
            let one_pass = Resource::parse_type_first(json).unwrap_or_else(|| panic!("one pass: {json}"));
            assert_eq!(one_pass, serde_json::from_str::<Resource>(json).unwrap(), "{json}");
        }
        // Every other case is left to `parse_as` and its messages: type not first, a bad value,
        // a type forlop does not take, not an object, trailing bytes.
        for json in [
            r#"{"id":"p-1","resourceType":"Patient"}"#,
            r#"{"resourceType":"Patient","birthDate":17}"#,
            r#"{"resourceType":"Medication","id":"m"}"#,
            r#"["resourceType","Patient"]"#,
            r#"{"resourceType":"Patient","id":"p-1"} {}"#,
            r#"{"resourceType":"Patient","id":"p-1""#,
        ] {
            assert_eq!(Resource::parse_type_first(json), None, "{json}");
        }
    }
}
