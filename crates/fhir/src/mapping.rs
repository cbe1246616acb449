//! FHIR resources to forlop commands. Pure of I/O except through [`Lookup`]: each resource maps
//! to the facts it carries (each with a stable event id), or to issues naming the element (as
//! a FHIRPath) that is wrong.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use forlop_domain::events::*;
use forlop_domain::national_id::NationalId;
use forlop_domain::{
    Attendance, CareLevel, Command, EndReason, Gender, Instrument, MeasurePhase, ReferralDecision, ReferralSource,
    RejectionReason, ReleaseReason,
};
use uuid::Uuid;

use crate::care_levels::CareLevels;
use crate::identity::{fact_uuid, identifier_name, uuid_for};
use crate::resources::*;

pub const SYSTEM_FNR: &str = "urn:oid:2.16.578.1.12.4.1.4.1";
pub const SYSTEM_DNR: &str = "urn:oid:2.16.578.1.12.4.1.4.2";
pub const SYSTEM_HNR: &str = "urn:oid:2.16.578.1.12.4.1.4.3";
pub const SYSTEM_HPR: &str = "urn:oid:2.16.578.1.12.4.1.4.4";
pub const LOINC: &str = "http://loinc.org";
pub const PHQ9_TOTAL: &str = "44261-6";
pub const PHQ9_PANEL: &str = "44249-1";
pub const GAD7_TOTAL: &str = "70274-6";
pub const GAD7_PANEL: &str = "69737-5";
pub const PHQ9_ITEMS: [&str; 9] =
    ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", "44260-8"];
pub const GAD7_ITEMS: [&str; 7] = ["69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"];
/// LOINC answer codes for "not at all" … "nearly every day".
const ANSWERS: [&str; 4] = ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"];
/// SNOMED CT "General practitioner (occupation)" on a PractitionerRole; also the Norwegian word.
const GP_CODES: [&str; 3] = ["62247001", "fastlege", "GP"];

/// forlop's own extensions and code systems, for what FHIR has no element for.
pub const EXT_RELEASE_REASON: &str = "https://forlop.no/fhir/StructureDefinition/release-reason";
pub const EXT_PATIENT_NOTIFIED: &str = "https://forlop.no/fhir/StructureDefinition/patient-notified";
pub const EXT_END_REASON: &str = "https://forlop.no/fhir/StructureDefinition/end-reason";
pub const EXT_ACUTE: &str = "https://forlop.no/fhir/StructureDefinition/acute";
pub const PHASE_SYSTEM: &str = "https://forlop.no/fhir/CodeSystem/measure-phase";
/// An outcome measured this close to an episode's start (or end) is its intake (or discharge).
const PHASE_WINDOW_DAYS: i64 = 30;

/// One fact a resource carries, ready for the engine.
#[derive(Debug, Clone)]
pub struct Fact {
    pub command: Command,
    /// Derived from the resource's forlop id and the fact: the same fact sent again has the same
    /// id, and the engine appends it once.
    pub event_id: Uuid,
    pub national_id: Option<NationalId>,
}

/// What is wrong with an element, for an OperationOutcome issue.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// FHIR issue type: `structure`, `required`, `value`, `not-found`, `not-supported`, …
    pub code: &'static str,
    /// FHIRPath of the element, e.g. `Bundle.entry[2].resource.subject`.
    pub path: String,
    pub message: String,
}

impl Issue {
    pub fn new(code: &'static str, path: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue { code, path: path.into(), message: message.into() }
    }
}

/// What the mapper asks of the world outside the resources at hand.
pub trait Lookup: Send + Sync {
    /// An id recorded for `name` (a logical id or an identifier) by an earlier ingest.
    fn alias(&self, name: &str) -> Option<Uuid> {
        self.alias_derived(name, None)
    }
    /// `alias`, given the id `name` derives (`uuid_for(name)`) when the caller has it already.
    fn alias_derived(&self, name: &str, derived: Option<Uuid>) -> Option<Uuid>;
    /// The forlop id of the patient with this national id, and whether they are registered: the
    /// holder's id, or for a number nobody holds the id derived from its keyed pseudonym (a new
    /// random one where that is a forgotten patient's).
    fn patient_id(&self, id: &NationalId) -> Result<(Uuid, bool), String>;
    /// True when `id` is a forgotten patient's or one of their facts': a name that derives it
    /// names someone new (`place`), and `alias` and `known` never give it.
    fn forgotten(&self, id: Uuid) -> bool;
    /// The episode a recorded session belongs to.
    fn session_episode(&self, patient: Uuid, session: Uuid) -> Option<Uuid>;
    /// A recorded episode's start and end.
    fn episode_period(&self, patient: Uuid, episode: Uuid) -> Option<(DateTime<Utc>, Option<DateTime<Utc>>)>;
    /// True when the referral is already decided.
    fn referral_decided(&self, patient: Uuid, referral: Uuid) -> bool;
    /// Whether a recorded admission is still open; None when it is not recorded.
    fn admission_open(&self, patient: Uuid, admission: Uuid) -> Option<bool>;
    /// True when forlop already holds `id` as a resource of this type (an id from its own
    /// export, sent back by a record system).
    fn known(&self, type_name: &str, id: Uuid) -> bool;
}

/// A parsed resource with its forlop id and every name it goes by.
#[derive(Debug, Clone)]
pub struct Placed {
    pub resource: Resource,
    pub id: Uuid,
    /// Names for the alias index and the in-Bundle scope: fullUrl, `Type/id`, identifiers.
    pub names: Vec<String>,
    /// The name in `names` whose name-based UUID is `id`, when placing derived the id from it.
    pub derived_from: Option<usize>,
    /// `Bundle.entry[i].resource` or `line 12`, for messages.
    pub path: String,
    /// The national id a Patient carries (checked), registered encrypted.
    pub national_id: Option<NationalId>,
    /// The care level of a mapped service.
    pub care_level: Option<CareLevel>,
}

/// Names a resource and finds its forlop id.
pub fn place(
    resource: Resource,
    full_url: Option<&str>,
    path: String,
    care_levels: &CareLevels,
    lookup: &dyn Lookup,
) -> Result<Placed, Vec<Issue>> {
    let t = resource.type_name();
    let mut names = Vec::new();
    if let Some(u) = full_url {
        names.push(u.to_owned());
    }
    let logical = resource.id().map(|id| {
        names.push(format!("{t}/{id}"));
        names.len() - 1
    });
    let mut national_id = None;
    let mut care_level = None;
    let mut key: Option<Uuid> = None;
    for (i, ident) in resource.identifiers().iter().enumerate() {
        let (Some(system), Some(value)) = (ident.system.as_deref(), ident.value.as_deref()) else { continue };
        if matches!(resource, Resource::Patient(_)) && [SYSTEM_FNR, SYSTEM_DNR, SYSTEM_HNR].contains(&system) {
            let nid = NationalId::parse(value)
                .map_err(|e| vec![Issue::new("value", format!("{path}.identifier[{i}].value"), format!("{e}"))])?;
            let (id, _) = lookup.patient_id(&nid).map_err(|e| vec![Issue::new("forbidden", path.clone(), e)])?;
            key = Some(id);
            national_id = Some(nid);
            // Never an alias: the index would hold the number in clear text.
            continue;
        }
        names.push(identifier_name(t, system, value));
    }
    if matches!(resource, Resource::Organization(_) | Resource::HealthcareService(_)) {
        if let Some((ident, level)) = care_levels.find(resource.identifiers()) {
            care_level = Some(level);
            let (system, value) = (ident.system.as_deref().unwrap_or(""), ident.value.as_deref().unwrap_or(""));
            key = Some(uuid_for(&identifier_name("Service", system, value)));
            // Organization and HealthcareService with the same mapped identifier are one service.
            names.push(identifier_name("Service", system, value));
        } else if matches!(resource, Resource::HealthcareService(_)) {
            return Err(vec![unmapped(&path, resource.identifiers())]);
        }
    }
    let mut derived_from = None;
    let id = match key {
        Some(k) => {
            // A mapped service's id is derived from its `Service|` name, pushed last.
            derived_from = care_level.map(|_| names.len() - 1);
            k
        }
        None => {
            // The first identifier, else the logical id; an alias known from before wins, so a
            // resource sent first by logical id and later with identifiers keeps its id. Each
            // derivable name's id is derived once, here.
            let first = names.iter().position(|n| n.contains('|')).or(logical);
            let derived: Vec<Option<Uuid>> =
                names.iter().map(|n| crate::identity::confirmable(n).map(|_| uuid_for(n))).collect();
            let known = names.iter().zip(&derived).find_map(|(n, d)| lookup.alias_derived(n, *d));
            match (known, first) {
                (Some(id), _) => id,
                (None, Some(i)) => match derived[i].unwrap_or_else(|| uuid_for(&names[i])) {
                    // The name derives a forgotten patient's id (or a fact of theirs): it is sent
                    // again for someone new, who gets a random id that nothing links to the old
                    // one. Its names then go into the alias index under it, so the next request
                    // finds the same id.
                    old if crate::identity::may_name_patient_data(&names[i]) && lookup.forgotten(old) => Uuid::new_v4(),
                    id => {
                        derived_from = Some(i);
                        id
                    }
                },
                (None, None) => {
                    return Err(vec![Issue::new(
                        "required",
                        path,
                        format!("a {t} needs an id or an identifier (system and value) to be placed exactly once"),
                    )])
                }
            }
        }
    };
    Ok(Placed { resource, id, names, derived_from, path, national_id, care_level })
}

/// A reference to something neither in this Bundle nor recorded before (held, in an import).
fn never_seen(path: &str, what: &str) -> Issue {
    Issue::new(
        "not-found",
        path,
        format!(
            "{} is neither in this Bundle nor recorded before; send it first, or in the same Bundle",
            clip(what).trim_matches('"')
        ),
    )
}

fn unmapped(path: &str, identifiers: &[Identifier]) -> Issue {
    let given: Vec<String> = identifiers
        .iter()
        .map(|i| format!("{}|{}", i.system.as_deref().unwrap_or(""), i.value.as_deref().unwrap_or("")))
        .collect();
    Issue::new(
        "not-found",
        format!("{path}.identifier"),
        format!(
            "no identifier of this service is in the care-level mapping (--fhir-care-levels); given: {}",
            if given.is_empty() { "none".to_owned() } else { given.join(", ") }
        ),
    )
}

/// The forlop id of a new patient, from the keyed pseudonym of their national id.
pub fn pseudonym_id(pseudonym: &[u8; 32]) -> Uuid {
    uuid_for(&format!("Patient|national-id|{}", hex(pseudonym)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The resources of one Bundle (or one chunk of an NDJSON file), by every name they go by.
pub struct Scope<'a> {
    pub placed: &'a [Option<Placed>],
    by_name: HashMap<&'a str, usize>,
    /// (id, index) sorted: the resources with one id (versions of it) without a scan of the
    /// chunk per reference.
    by_id: Vec<(Uuid, usize)>,
}

impl<'a> Scope<'a> {
    pub fn new(placed: &'a [Option<Placed>]) -> Scope<'a> {
        let mut by_name = HashMap::new();
        let mut by_id = Vec::with_capacity(placed.len());
        for (i, p) in placed.iter().enumerate() {
            for n in p.iter().flat_map(|p| &p.names) {
                by_name.entry(n.as_str()).or_insert(i);
            }
            if let Some(p) = p {
                by_id.push((p.id, i));
            }
        }
        by_id.sort_unstable();
        Scope { placed, by_name, by_id }
    }

    fn get(&self, name: &str) -> Option<&'a Placed> {
        self.by_name.get(name).and_then(|i| self.placed[*i].as_ref())
    }

    /// The resources placed with forlop id `id`, in the order they came.
    fn with_id(&self, id: Uuid) -> impl Iterator<Item = &'a Placed> + '_ {
        let from = self.by_id.partition_point(|(x, _)| *x < id);
        self.by_id[from..].iter().take_while(move |(x, _)| *x == id).filter_map(|(_, i)| self.placed[*i].as_ref())
    }
}

/// What a reference points at.
#[derive(Debug, Clone)]
struct Target<'a> {
    type_name: String,
    id: Uuid,
    /// The resource itself, when it is in this Bundle or contained.
    resource: Option<ResourceRef<'a>>,
}

#[derive(Debug, Clone, Copy)]
enum ResourceRef<'a> {
    Top(&'a Placed),
    Contained(&'a Contained),
}

/// Maps resources to facts, resolving references against the Bundle and what came before.
pub struct Mapper<'a> {
    pub scope: &'a Scope<'a>,
    pub lookup: &'a dyn Lookup,
    pub care_levels: &'a CareLevels,
}

type Issues = Vec<Issue>;
/// When a therapist's part in an episode ended, why, and whether the patient was told.
type Release = (DateTime<Utc>, ReleaseReason, bool);

impl<'a> Mapper<'a> {
    fn resolve(
        &self,
        r: &Reference,
        path: &str,
        expected: &[&str],
        contained: &'a [Contained],
        host: &Placed,
    ) -> Result<Target<'a>, Issue> {
        let wrong =
            |found: &str| Issue::new("value", path, format!("refers to a {found}, expected {}", expected.join(" or ")));
        if let Some(text) = r.reference.as_deref() {
            if let Some(local) = text.strip_prefix('#') {
                let c = contained.iter().find(|c| c.id() == Some(local)).ok_or_else(|| {
                    Issue::new("not-found", format!("{path}.reference"), format!("no contained resource #{local}"))
                })?;
                let t = contained_type(c);
                if !expected.contains(&t) {
                    return Err(wrong(t));
                }
                let id = self.contained_id(c, host, local, path)?;
                return Ok(Target { type_name: t.to_owned(), id, resource: Some(ResourceRef::Contained(c)) });
            }
            if let Some(p) = self.scope.get(text) {
                return self.top(p, expected, &wrong);
            }
            // A relative or absolute URL: the last two segments are Type/id.
            let segs: Vec<&str> = text.trim_end_matches('/').rsplitn(3, '/').collect();
            if text.starts_with("urn:") || segs.len() < 2 {
                return Err(Issue::new(
                    "not-found",
                    format!("{path}.reference"),
                    format!("{} is not in this Bundle", clip(text)),
                ));
            }
            let (t, id) = (segs[1], segs[0]);
            if !expected.contains(&t) {
                return Err(wrong(t));
            }
            let name = format!("{t}/{id}");
            if let Some(p) = self.scope.get(&name) {
                return self.top(p, expected, &wrong);
            }
            if let Some(known) = self.lookup.alias(&name) {
                return Ok(Target { type_name: t.to_owned(), id: known, resource: None });
            }
            // forlop's own id, as its export names resources.
            if let Ok(own) = id.parse::<Uuid>() {
                if self.lookup.known(t, own) {
                    return Ok(Target { type_name: t.to_owned(), id: own, resource: None });
                }
            }
            return Err(never_seen(&format!("{path}.reference"), &name));
        }
        if let Some(ident) = &r.identifier {
            let (Some(system), Some(value)) = (ident.system.as_deref(), ident.value.as_deref()) else {
                return Err(Issue::new("required", format!("{path}.identifier"), "needs a system and a value"));
            };
            let t = match (r.type_.as_deref(), expected) {
                (Some(t), _) => t,
                (None, [only]) => only,
                (None, _) => {
                    return Err(Issue::new(
                        "required",
                        format!("{path}.type"),
                        "a reference by identifier needs a type",
                    ))
                }
            };
            if !expected.contains(&t) {
                return Err(wrong(t));
            }
            if t == "Patient" && [SYSTEM_FNR, SYSTEM_DNR, SYSTEM_HNR].contains(&system) {
                let nid = NationalId::parse(value)
                    .map_err(|e| Issue::new("value", format!("{path}.identifier.value"), e.to_string()))?;
                let (id, registered) = self.lookup.patient_id(&nid).map_err(|e| Issue::new("forbidden", path, e))?;
                let in_scope = self.scope.with_id(id).next();
                if !registered && in_scope.is_none() {
                    // Never the number itself in a message.
                    return Err(never_seen(&format!("{path}.identifier"), "the patient with this national id"));
                }
                return Ok(Target { type_name: t.to_owned(), id, resource: in_scope.map(ResourceRef::Top) });
            }
            let mut names = vec![identifier_name(t, system, value)];
            if matches!(t, "Organization" | "HealthcareService") {
                names.insert(0, identifier_name("Service", system, value));
            }
            for n in &names {
                if let Some(p) = self.scope.get(n) {
                    return self.top(p, expected, &wrong);
                }
            }
            return match names.iter().find_map(|n| self.lookup.alias(n)) {
                Some(id) => Ok(Target { type_name: t.to_owned(), id, resource: None }),
                None => Err(never_seen(&format!("{path}.identifier"), &format!("{t} {system}|{value}"))),
            };
        }
        Err(Issue::new("required", path, "a reference needs `reference` or `identifier`"))
    }

    fn top(&self, p: &'a Placed, expected: &[&str], wrong: &dyn Fn(&str) -> Issue) -> Result<Target<'a>, Issue> {
        let t = p.resource.type_name();
        if !expected.contains(&t) {
            return Err(wrong(t));
        }
        Ok(Target { type_name: t.to_owned(), id: p.id, resource: Some(ResourceRef::Top(p)) })
    }

    /// A contained resource is named by its identifiers when it has them (a Practitioner by its
    /// HPR number is the same therapist wherever it is contained), else within its host.
    fn contained_id(&self, c: &Contained, host: &Placed, local: &str, path: &str) -> Result<Uuid, Issue> {
        let t = contained_type(c);
        let idents: &[Identifier] = match c {
            Contained::Practitioner(p) => &p.identifier,
            Contained::PractitionerRole(p) => &p.identifier,
            Contained::Organization(o) | Contained::HealthcareService(o) => &o.identifier,
            Contained::Patient(p) => &p.identifier,
            _ => &[],
        };
        if matches!(c, Contained::Organization(_) | Contained::HealthcareService(_)) {
            return match self.care_levels.find(idents) {
                Some((i, _)) => Ok(uuid_for(&identifier_name(
                    "Service",
                    i.system.as_deref().unwrap_or(""),
                    i.value.as_deref().unwrap_or(""),
                ))),
                None => Err(unmapped(path, idents)),
            };
        }
        let first = idents.iter().find_map(|i| Some(identifier_name(t, i.system.as_deref()?, i.value.as_deref()?)));
        Ok(match first {
            Some(name) => self.lookup.alias(&name).unwrap_or_else(|| uuid_for(&name)),
            None => uuid_for(&format!("{}#{local}", host.id)),
        })
    }

    /// A service reference: the Organization or HealthcareService must be in the care-level map.
    fn service(
        &self,
        r: Option<&Reference>,
        path: &str,
        host: &'a Placed,
        contained: &'a [Contained],
    ) -> Result<Uuid, Issue> {
        let r = r.ok_or_else(|| Issue::new("required", path, "the service is required"))?;
        let t = self.resolve(r, path, &["Organization", "HealthcareService"], contained, host)?;
        if let Some(ResourceRef::Top(p)) = t.resource {
            if p.care_level.is_none() {
                return Err(unmapped(&p.path, p.resource.identifiers()));
            }
        }
        Ok(t.id)
    }

    /// A therapist reference: a Practitioner, or a PractitionerRole's practitioner.
    fn therapist(
        &self,
        r: &Reference,
        path: &str,
        host: &'a Placed,
        contained: &'a [Contained],
    ) -> Result<Uuid, Issue> {
        let t = self.resolve(r, path, &["Practitioner", "PractitionerRole"], contained, host)?;
        if t.type_name == "PractitionerRole" {
            let role = match t.resource {
                Some(ResourceRef::Top(Placed { resource: Resource::PractitionerRole(role), .. })) => role,
                Some(ResourceRef::Contained(Contained::PractitionerRole(role))) => role,
                _ => {
                    return Err(Issue::new(
                        "not-found",
                        path,
                        "a PractitionerRole must be in the Bundle or contained, to find its practitioner",
                    ))
                }
            };
            let p = role
                .practitioner
                .as_ref()
                .ok_or_else(|| Issue::new("required", format!("{path} (PractitionerRole.practitioner)"), "missing"))?;
            return Ok(self
                .resolve(p, &format!("{path} (PractitionerRole.practitioner)"), &["Practitioner"], contained, host)?
                .id);
        }
        Ok(t.id)
    }

    fn patient(
        &self,
        r: Option<&Reference>,
        path: &str,
        host: &'a Placed,
        contained: &'a [Contained],
    ) -> Result<Uuid, Issue> {
        let r = r.ok_or_else(|| Issue::new("required", path, "the patient is required"))?;
        Ok(self.resolve(r, path, &["Patient"], contained, host)?.id)
    }

    /// The facts `p` carries.
    pub fn facts(&self, p: &'a Placed) -> Result<Vec<Fact>, Issues> {
        let path = p.path.as_str();
        let fact = |command: Command, what: &str| Fact { command, event_id: fact_uuid(p.id, what), national_id: None };
        match &p.resource {
            Resource::Patient(r) => {
                let birth_year =
                    r.birth_date.as_deref().and_then(|d| d.get(..4)).and_then(|y| y.parse::<i32>().ok()).ok_or_else(
                        || {
                            vec![Issue::new(
                                "required",
                                format!("{path}.birthDate"),
                                "a birth date (at least the year) is required",
                            )]
                        },
                    )?;
                let gender = match r.gender.as_deref() {
                    Some("female") => Gender::Female,
                    Some("male") => Gender::Male,
                    Some("other") => Gender::Other,
                    Some("unknown") | None => Gender::Unknown,
                    Some(other) => {
                        return Err(vec![Issue::new(
                            "code-invalid",
                            format!("{path}.gender"),
                            format!("{} is not male, female, other or unknown", clip(other)),
                        )])
                    }
                };
                let mut f = fact(
                    Command::RegisterPatient(PatientRegistered {
                        patient_id: p.id,
                        birth_year,
                        gender,
                        national_id: None,
                    }),
                    "registered",
                );
                f.national_id = p.national_id.clone();
                Ok(vec![f])
            }
            Resource::Practitioner(r) => {
                let hpr =
                    r.identifier.iter().find(|i| i.system.as_deref() == Some(SYSTEM_HPR)).and_then(|i| i.value.clone());
                let Some(hpr) = hpr else {
                    return Err(vec![Issue::new(
                        "required",
                        format!("{path}.identifier"),
                        format!("a therapist needs an HPR number (system {SYSTEM_HPR})"),
                    )]);
                };
                let name =
                    r.name.iter().find_map(HumanName::full).ok_or_else(|| {
                        vec![Issue::new("required", format!("{path}.name"), "a therapist needs a name")]
                    })?;
                Ok(vec![fact(
                    Command::RegisterTherapist(TherapistRegistered { therapist_id: p.id, name, hpr_number: Some(hpr) }),
                    "registered",
                )])
            }
            Resource::Organization(r) | Resource::HealthcareService(r) => match p.care_level {
                // An unmapped Organization (a GP's office, say) is not a service: nothing to record.
                None => Ok(vec![]),
                Some(care_level) => {
                    let name = r.name.clone().filter(|n| !n.trim().is_empty()).ok_or_else(|| {
                        vec![Issue::new("required", format!("{path}.name"), "a service needs a name")]
                    })?;
                    Ok(vec![fact(
                        Command::RegisterService(ServiceRegistered { service_id: p.id, name, care_level }),
                        "registered",
                    )])
                }
            },
            Resource::PractitionerRole(_) | Resource::CareTeam(_) => Ok(vec![]),
            Resource::ServiceRequest(r) => self.referral(p, r, &fact),
            Resource::EpisodeOfCare(r) => self.episode(p, r, &fact),
            Resource::Encounter(r) => self.encounter(p, r, &fact),
            Resource::Observation(r) => self.observation(p, r, &fact),
            Resource::QuestionnaireResponse(r) => self.questionnaire(p, r, &fact),
        }
    }

    fn referral(
        &self,
        p: &'a Placed,
        r: &'a ServiceRequest,
        fact: &dyn Fn(Command, &str) -> Fact,
    ) -> Result<Vec<Fact>, Issues> {
        let path = p.path.as_str();
        if matches!(r.status.as_str(), "draft" | "entered-in-error" | "unknown") {
            return Ok(vec![]);
        }
        if !matches!(r.status.as_str(), "active" | "on-hold" | "completed" | "revoked") {
            return Err(vec![Issue::new(
                "code-invalid",
                format!("{path}.status"),
                format!("{} is not a ServiceRequest status", clip(&r.status)),
            )]);
        }
        let mut issues = Vec::new();
        let patient =
            self.patient(r.subject.as_ref(), &format!("{path}.subject"), p, &[]).map_err(|i| issues.push(i)).ok();
        let service =
            self.service(r.performer.first(), &format!("{path}.performer[0]"), p, &[]).map_err(|i| issues.push(i)).ok();
        let at = time(r.authored_on.as_deref(), &format!("{path}.authoredOn")).map_err(|i| issues.push(i)).ok();
        let source = match &r.requester {
            None => Some(ReferralSource::Other),
            Some(req) => self.source(req, &format!("{path}.requester"), p).map_err(|i| issues.push(i)).ok(),
        };
        let (Some(patient_id), Some(service_id), Some(received_at), Some(source), true) =
            (patient, service, at, source, issues.is_empty())
        else {
            return Err(issues);
        };
        let mut facts = vec![fact(
            Command::ReceiveReferral {
                patient_id,
                event: ReferralReceived { referral_id: p.id, service_id, source, received_at },
            },
            "received",
        )];
        if r.status == "revoked" {
            let said = |c: &CodeableConcept| {
                c.text
                    .iter()
                    .chain(c.coding.iter().filter_map(|c| c.display.as_ref()))
                    .chain(c.coding.iter().filter_map(|c| c.code.as_ref()))
                    .any(|t| {
                        let t = t.to_lowercase();
                        t.contains("capacity") || t.contains("kapasitet")
                    })
            };
            let reason =
                if r.reason_code.iter().any(said) { RejectionReason::Capacity } else { RejectionReason::Other };
            facts.push(fact(
                Command::DecideReferral {
                    patient_id,
                    event: ReferralDecided {
                        referral_id: p.id,
                        decision: ReferralDecision::Rejected,
                        reason: Some(reason),
                        decided_at: received_at,
                    },
                },
                "decided",
            ));
        }
        Ok(facts)
    }

    fn source(&self, r: &Reference, path: &str, host: &'a Placed) -> Result<ReferralSource, Issue> {
        let kinds = ["Patient", "RelatedPerson", "Practitioner", "PractitionerRole", "Organization"];
        // The requester need not be known to forlop: its type is what counts.
        let t = match self.resolve(r, path, &kinds, &[], host) {
            Ok(t) => t,
            Err(e) => match r.type_.as_deref() {
                Some(t) if kinds.contains(&t) => Target { type_name: t.to_owned(), id: Uuid::nil(), resource: None },
                _ => return Err(e),
            },
        };
        Ok(match t.type_name.as_str() {
            "Patient" => ReferralSource::SelfReferral,
            "RelatedPerson" => ReferralSource::Relative,
            "PractitionerRole" => {
                let gp = matches!(t.resource, Some(ResourceRef::Top(Placed { resource: Resource::PractitionerRole(role), .. }))
                    if role.code.iter().any(|c| c.codes().any(|code| GP_CODES.contains(&code))));
                if gp {
                    ReferralSource::Gp
                } else {
                    ReferralSource::HealthPersonnel
                }
            }
            "Practitioner" => ReferralSource::HealthPersonnel,
            _ => ReferralSource::Other,
        })
    }

    fn episode(
        &self,
        p: &'a Placed,
        r: &'a EpisodeOfCare,
        fact: &dyn Fn(Command, &str) -> Fact,
    ) -> Result<Vec<Fact>, Issues> {
        let path = p.path.as_str();
        match r.status.as_str() {
            "planned" | "waitlist" | "entered-in-error" => return Ok(vec![]),
            "active" | "onhold" | "finished" | "cancelled" => {}
            other => {
                return Err(vec![Issue::new(
                    "code-invalid",
                    format!("{path}.status"),
                    format!("{} is not an EpisodeOfCare status", clip(other)),
                )])
            }
        }
        let mut issues = Vec::new();
        let patient = self
            .patient(r.patient.as_ref(), &format!("{path}.patient"), p, &r.contained)
            .map_err(|i| issues.push(i))
            .ok();
        let service = self
            .service(r.managing_organization.as_ref(), &format!("{path}.managingOrganization"), p, &r.contained)
            .map_err(|i| issues.push(i))
            .ok();
        let referral = match r.referral_request.first() {
            None => None,
            Some(rr) => self
                .resolve(rr, &format!("{path}.referralRequest[0]"), &["ServiceRequest"], &r.contained, p)
                .map_err(|i| issues.push(i))
                .ok()
                .map(|t| t.id),
        };
        // The start: period.start, else the first active status in the history.
        let start_text =
            r.period.as_ref().and_then(|x| x.start.clone()).or_else(|| {
                r.status_history.iter().find(|h| h.status == "active").and_then(|h| h.period.start.clone())
            });
        let start = time(start_text.as_deref(), &format!("{path}.period.start")).map_err(|i| issues.push(i)).ok();
        let end = match r.period.as_ref().and_then(|x| x.end.as_deref()) {
            Some(e) if matches!(r.status.as_str(), "finished" | "cancelled") => {
                time(Some(e), &format!("{path}.period.end")).map_err(|i| issues.push(i)).ok()
            }
            None if matches!(r.status.as_str(), "finished" | "cancelled") => {
                issues.push(Issue::new(
                    "required",
                    format!("{path}.period.end"),
                    "a finished or cancelled episode needs its end",
                ));
                None
            }
            _ => None,
        };
        let (Some(patient_id), Some(service_id), Some(started_at), true) = (patient, service, start, issues.is_empty())
        else {
            return Err(issues);
        };
        let acute = r.extension.iter().any(|e| e.url == EXT_ACUTE && e.value_boolean == Some(true));
        let mut facts = Vec::new();
        // A contained Practitioner with an HPR number is a therapist like any other.
        for (ci, c) in r.contained.iter().enumerate() {
            let Contained::Practitioner(pr) = c else { continue };
            let hpr =
                pr.identifier.iter().find(|i| i.system.as_deref() == Some(SYSTEM_HPR)).and_then(|i| i.value.clone());
            let (Some(hpr), Some(name)) = (hpr, pr.name.iter().find_map(HumanName::full)) else { continue };
            let local = pr.id.as_deref().unwrap_or_default();
            let therapist_id =
                self.contained_id(c, p, local, &format!("{path}.contained[{ci}]")).map_err(|i| vec![i])?;
            facts.push(Fact {
                command: Command::RegisterTherapist(TherapistRegistered { therapist_id, name, hpr_number: Some(hpr) }),
                event_id: fact_uuid(therapist_id, "registered"),
                national_id: None,
            });
        }
        if let Some(referral_id) = referral {
            // Care starting on a referral means it was accepted, by then at the latest.
            let decided_in_bundle = self
                .scope
                .with_id(referral_id)
                .any(|q| matches!(&q.resource, Resource::ServiceRequest(s) if s.status == "revoked"));
            if !decided_in_bundle && !self.lookup.referral_decided(patient_id, referral_id) {
                facts.push(Fact {
                    command: Command::DecideReferral {
                        patient_id,
                        event: ReferralDecided {
                            referral_id,
                            decision: ReferralDecision::Accepted,
                            reason: None,
                            decided_at: started_at,
                        },
                    },
                    event_id: fact_uuid(referral_id, "accepted"),
                    national_id: None,
                });
            }
        }
        facts.push(fact(
            Command::StartEpisode {
                patient_id,
                event: EpisodeStarted { episode_id: p.id, service_id, referral_id: referral, started_at, acute },
            },
            "started",
        ));
        // Therapists: the care manager from the start, and each team member over its period.
        let mut assignments: Vec<(Uuid, DateTime<Utc>, Option<Release>)> = Vec::new();
        if let Some(cm) = &r.care_manager {
            match self.therapist(cm, &format!("{path}.careManager"), p, &r.contained) {
                Ok(t) => assignments.push((t, started_at, None)),
                Err(i) => issues.push(i),
            }
        }
        for (ti, team) in r.team.iter().enumerate() {
            let tpath = format!("{path}.team[{ti}]");
            let participants = match self.resolve(team, &tpath, &["CareTeam"], &r.contained, p) {
                Ok(Target { resource: Some(ResourceRef::Contained(Contained::CareTeam(ct))), .. }) => &ct.participant,
                Ok(Target {
                    resource: Some(ResourceRef::Top(Placed { resource: Resource::CareTeam(ct), .. })),
                    ..
                }) => &ct.participant,
                Ok(_) => {
                    issues.push(Issue::new("not-found", tpath, "the CareTeam must be contained or in the Bundle"));
                    continue;
                }
                Err(i) => {
                    issues.push(i);
                    continue;
                }
            };
            for (pi, part) in participants.iter().enumerate() {
                let ppath = format!("{tpath} (CareTeam.participant[{pi}])");
                let Some(member) = &part.member else { continue };
                let therapist = match self.therapist(member, &format!("{ppath}.member"), p, &r.contained) {
                    Ok(t) => t,
                    Err(i) => {
                        issues.push(i);
                        continue;
                    }
                };
                let from = match part.period.as_ref().and_then(|x| x.start.as_deref()) {
                    Some(s) => match time(Some(s), &format!("{ppath}.period.start")) {
                        Ok(t) => t,
                        Err(i) => {
                            issues.push(i);
                            continue;
                        }
                    },
                    None => started_at,
                };
                let release = match part.period.as_ref().and_then(|x| x.end.as_deref()) {
                    None => None,
                    Some(e) => match time(Some(e), &format!("{ppath}.period.end")) {
                        Ok(t) => {
                            let code = part
                                .extension
                                .iter()
                                .find(|x| x.url == EXT_RELEASE_REASON)
                                .and_then(|x| x.value_code.as_deref());
                            let reason = match code {
                                Some(c) => match ReleaseReason::ALL.iter().find(|r| r.code() == c) {
                                    Some(r) => *r,
                                    None => {
                                        issues.push(Issue::new(
                                            "code-invalid",
                                            format!("{ppath}.extension"),
                                            format!("{} is not a release reason", clip(c)),
                                        ));
                                        continue;
                                    }
                                },
                                None if Some(t) == end => ReleaseReason::EpisodeEnded,
                                None => ReleaseReason::Other,
                            };
                            let notified = part
                                .extension
                                .iter()
                                .find(|x| x.url == EXT_PATIENT_NOTIFIED)
                                .and_then(|x| x.value_boolean)
                                .unwrap_or(false);
                            Some((t, reason, notified))
                        }
                        Err(i) => {
                            issues.push(i);
                            continue;
                        }
                    },
                };
                assignments.push((therapist, from, release));
            }
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        assignments.sort_by_key(|a| a.1);
        for (therapist_id, assigned_at, release) in assignments {
            facts.push(fact(
                Command::AssignTherapist {
                    patient_id,
                    event: TherapistAssigned { episode_id: p.id, therapist_id, assigned_at },
                },
                &format!("assigned:{therapist_id}:{}", assigned_at.timestamp()),
            ));
            if let Some((released_at, reason, patient_notified)) = release {
                facts.push(fact(
                    Command::ReleaseTherapist {
                        patient_id,
                        event: TherapistReleased {
                            episode_id: p.id,
                            therapist_id,
                            reason,
                            patient_notified,
                            released_at,
                        },
                    },
                    &format!("released:{therapist_id}:{}", assigned_at.timestamp()),
                ));
            }
        }
        if let Some(ended_at) = end {
            let code = r.extension.iter().find(|x| x.url == EXT_END_REASON).and_then(|x| x.value_code.as_deref());
            let reason = match code {
                Some(c) => *EndReason::ALL.iter().find(|r| r.code() == c).ok_or_else(|| {
                    vec![Issue::new(
                        "code-invalid",
                        format!("{path}.extension"),
                        format!("{} is not an end reason", clip(c)),
                    )]
                })?,
                None if r.status == "cancelled" => EndReason::DroppedOut,
                None => EndReason::Completed,
            };
            facts.push(fact(
                Command::EndEpisode { patient_id, event: EpisodeEnded { episode_id: p.id, reason, ended_at } },
                "ended",
            ));
        }
        Ok(facts)
    }

    fn encounter(
        &self,
        p: &'a Placed,
        r: &'a Encounter,
        fact: &dyn Fn(Command, &str) -> Fact,
    ) -> Result<Vec<Fact>, Issues> {
        let path = p.path.as_str();
        let class =
            r.class.as_ref().and_then(|c| c.code.as_deref()).ok_or_else(|| {
                vec![Issue::new("required", format!("{path}.class"), "the encounter class is required")]
            })?;
        let mut issues = Vec::new();
        let patient =
            self.patient(r.subject.as_ref(), &format!("{path}.subject"), p, &[]).map_err(|i| issues.push(i)).ok();
        let start = time(r.period.as_ref().and_then(|x| x.start.as_deref()), &format!("{path}.period.start"));
        match class {
            "IMP" => {
                if matches!(r.status.as_str(), "planned" | "cancelled" | "entered-in-error") {
                    return Ok(vec![]);
                }
                let service = self
                    .service(r.service_provider.as_ref(), &format!("{path}.serviceProvider"), p, &[])
                    .map_err(|i| issues.push(i))
                    .ok();
                let admitted = start.map_err(|i| issues.push(i)).ok();
                let discharged = match (r.status.as_str(), r.period.as_ref().and_then(|x| x.end.as_deref())) {
                    ("finished", Some(e)) => {
                        time(Some(e), &format!("{path}.period.end")).map_err(|i| issues.push(i)).ok()
                    }
                    ("finished", None) => {
                        issues.push(Issue::new(
                            "required",
                            format!("{path}.period.end"),
                            "a finished stay needs its end",
                        ));
                        None
                    }
                    _ => None,
                };
                let (Some(patient_id), Some(service_id), Some(admitted_at), true) =
                    (patient, service, admitted, issues.is_empty())
                else {
                    return Err(issues);
                };
                let discharge = |discharged_at| {
                    fact(
                        Command::DischargePatient {
                            patient_id,
                            event: PatientDischarged { admission_id: p.id, discharged_at },
                        },
                        "discharged",
                    )
                };
                Ok(match (self.lookup.admission_open(patient_id, p.id), discharged) {
                    // Recorded while it lasted: now it has ended.
                    (Some(true), Some(discharged_at)) => vec![discharge(discharged_at)],
                    // Recorded as it is: nothing new.
                    (Some(_), _) => vec![],
                    // A past stay, both times at once: it may precede stays already recorded.
                    (None, Some(discharged_at)) => vec![fact(
                        Command::RecordStay {
                            patient_id,
                            event: StayRecorded { admission_id: p.id, service_id, admitted_at, discharged_at },
                        },
                        "stay",
                    )],
                    (None, None) => vec![fact(
                        Command::AdmitPatient {
                            patient_id,
                            event: PatientAdmitted { admission_id: p.id, service_id, admitted_at },
                        },
                        "admitted",
                    )],
                })
            }
            "AMB" | "VR" | "DT" => {
                let attendance = match r.status.as_str() {
                    "finished" => Attendance::Attended,
                    "cancelled" => {
                        let says = |needle: &str| {
                            r.reason_code
                                .iter()
                                .any(|c| c.codes().chain(c.text.as_deref()).any(|t| t.to_lowercase().contains(needle)))
                        };
                        if says("no-show") || says("noshow") || says("ikke møtt") {
                            Attendance::NoShow
                        } else if says("service") || says("behandler") {
                            Attendance::CancelledByService
                        } else {
                            Attendance::CancelledByPatient
                        }
                    }
                    "planned" | "arrived" | "triaged" | "in-progress" | "onleave" | "entered-in-error" | "unknown" => {
                        return Ok(vec![])
                    }
                    other => {
                        return Err(vec![Issue::new(
                            "code-invalid",
                            format!("{path}.status"),
                            format!("{} is not an Encounter status", clip(other)),
                        )])
                    }
                };
                let episode = match r.episode_of_care.first() {
                    Some(e) => self
                        .resolve(e, &format!("{path}.episodeOfCare[0]"), &["EpisodeOfCare"], &[], p)
                        .map_err(|i| issues.push(i))
                        .ok()
                        .map(|t| t.id),
                    None => {
                        issues.push(Issue::new(
                            "required",
                            format!("{path}.episodeOfCare"),
                            "a session must name its EpisodeOfCare",
                        ));
                        None
                    }
                };
                let therapist = match r.participant.iter().find_map(|x| x.individual.as_ref()) {
                    Some(ind) => self
                        .therapist(ind, &format!("{path}.participant[0].individual"), p, &[])
                        .map_err(|i| issues.push(i))
                        .ok(),
                    None => {
                        issues.push(Issue::new(
                            "required",
                            format!("{path}.participant"),
                            "a session needs the practitioner who held it",
                        ));
                        None
                    }
                };
                let at = start.map_err(|i| issues.push(i)).ok();
                let (Some(patient_id), Some(episode_id), Some(therapist_id), Some(at), true) =
                    (patient, episode, therapist, at, issues.is_empty())
                else {
                    return Err(issues);
                };
                Ok(vec![fact(
                    Command::RecordSession {
                        patient_id,
                        event: SessionRecorded { session_id: p.id, episode_id, therapist_id, attendance, at },
                    },
                    "session",
                )])
            }
            other => Err(vec![Issue::new(
                "not-supported",
                format!("{path}.class"),
                format!("class {} is not a pathway fact forlop records (IMP, AMB, VR, DT)", clip(other)),
            )]),
        }
    }

    fn observation(
        &self,
        p: &'a Placed,
        r: &'a Observation,
        fact: &dyn Fn(Command, &str) -> Fact,
    ) -> Result<Vec<Fact>, Issues> {
        let path = p.path.as_str();
        let (instrument, items_codes): (Instrument, &'static [&'static str]) =
            if r.code.has(LOINC, PHQ9_TOTAL) || r.code.has(LOINC, PHQ9_PANEL) {
                (Instrument::Phq9, &PHQ9_ITEMS)
            } else if r.code.has(LOINC, GAD7_TOTAL) || r.code.has(LOINC, GAD7_PANEL) {
                (Instrument::Gad7, &GAD7_ITEMS)
            } else {
                return Err(vec![Issue::new(
                    "not-supported",
                    format!("{path}.code"),
                    format!("forlop records PHQ-9 ({LOINC}|{PHQ9_TOTAL}) and GAD-7 ({LOINC}|{GAD7_TOTAL}) outcomes"),
                )]);
            };
        if matches!(r.status.as_str(), "registered" | "preliminary" | "cancelled" | "entered-in-error" | "unknown") {
            return Ok(vec![]);
        }
        let answers = items_codes
            .iter()
            .map(|code| {
                let (ci, c) = r.component.iter().enumerate().find(|(_, c)| c.code.has(LOINC, code))?;
                let value = match (&c.value_integer, &c.value_codeable_concept) {
                    (Some(v), _) => Some(*v),
                    (None, Some(cc)) => cc.codes().find_map(answer_score),
                    (None, None) => None,
                };
                Some((format!("{path}.component[{ci}]"), value))
            })
            .collect();
        let phase = match r
            .category
            .iter()
            .flat_map(|c| &c.coding)
            .find(|c| c.system.as_deref() == Some(PHASE_SYSTEM))
            .and_then(|c| c.code.as_deref())
        {
            Some("intake") => Some(MeasurePhase::Intake),
            Some("interim") => Some(MeasurePhase::Interim),
            Some("discharge") => Some(MeasurePhase::Discharge),
            Some(other) => {
                return Err(vec![Issue::new(
                    "code-invalid",
                    format!("{path}.category"),
                    format!("{} is not intake, interim or discharge", clip(other)),
                )])
            }
            None => None,
        };
        let measured = Measured {
            instrument,
            items_codes,
            answers,
            items_path: format!("{path}.component"),
            subject: r.subject.as_ref(),
            encounter: r.encounter.as_ref(),
            at: r.effective_date_time.as_deref(),
            at_path: format!("{path}.effectiveDateTime"),
            phase,
        };
        self.outcome(p, measured, fact)
    }

    /// A QuestionnaireResponse of the PHQ-9 or GAD-7 form: items named by their LOINC codes
    /// (as LOINC's own forms name them), answers as integers or LOINC answer codes.
    fn questionnaire(
        &self,
        p: &'a Placed,
        r: &'a QuestionnaireResponse,
        fact: &dyn Fn(Command, &str) -> Fact,
    ) -> Result<Vec<Fact>, Issues> {
        let path = p.path.as_str();
        if r.status != "completed" && r.status != "amended" {
            return Ok(vec![]);
        }
        let mut flat = Vec::new();
        flatten(&r.item, &format!("{path}.item"), &mut flat);
        let code_of = |link: &str| link.trim_start_matches('/').to_owned();
        let form = r.questionnaire.as_deref().unwrap_or_default();
        let mentions = |codes: &[&str]| flat.iter().any(|(_, i)| codes.contains(&code_of(&i.link_id).as_str()));
        let (instrument, items_codes): (Instrument, &'static [&'static str]) = if form.contains(PHQ9_PANEL)
            || mentions(&PHQ9_ITEMS)
        {
            (Instrument::Phq9, &PHQ9_ITEMS)
        } else if form.contains(GAD7_PANEL) || mentions(&GAD7_ITEMS) {
            (Instrument::Gad7, &GAD7_ITEMS)
        } else {
            return Err(vec![Issue::new(
                    "not-supported",
                    format!("{path}.questionnaire"),
                    format!("forlop records the PHQ-9 ({PHQ9_PANEL}) and GAD-7 ({GAD7_PANEL}) forms, with items named by their LOINC codes"),
                )]);
        };
        let answers = items_codes
            .iter()
            .map(|code| {
                let (ipath, item) = flat.iter().find(|(_, i)| code_of(&i.link_id) == *code)?;
                let value = item.answer.first().and_then(|a| {
                    a.value_integer
                        .or_else(|| a.value_coding.as_ref().and_then(|c| c.code.as_deref()).and_then(answer_score))
                });
                Some((format!("{ipath}.answer[0]"), value))
            })
            .collect();
        let measured = Measured {
            instrument,
            items_codes,
            answers,
            items_path: format!("{path}.item"),
            subject: r.subject.as_ref(),
            encounter: r.encounter.as_ref(),
            at: r.authored.as_deref(),
            at_path: format!("{path}.authored"),
            phase: None,
        };
        self.outcome(p, measured, fact)
    }

    /// The outcome fact of a measured questionnaire, however it was sent.
    fn outcome(
        &self,
        p: &'a Placed,
        m: Measured<'a>,
        fact: &dyn Fn(Command, &str) -> Fact,
    ) -> Result<Vec<Fact>, Issues> {
        let path = p.path.as_str();
        let mut issues = Vec::new();
        let mut items = Vec::with_capacity(m.items_codes.len());
        for (n, answer) in m.answers.iter().enumerate() {
            let Some((ipath, value)) = answer else { continue };
            match value {
                Some(v @ 0..=3) => items.push(*v as u8),
                Some(v) => issues.push(Issue::new(
                    "value",
                    format!("{ipath}.value[x]"),
                    format!("item {} scores {v}; items score 0 to 3", n + 1),
                )),
                None => issues.push(Issue::new(
                    "required",
                    format!("{ipath}.value[x]"),
                    "an item needs an integer or a LOINC answer code",
                )),
            }
        }
        if issues.is_empty() && items.len() != m.items_codes.len() {
            issues.push(Issue::new(
                "value",
                m.items_path.clone(),
                format!(
                    "{} needs all {} item answers (LOINC {}); found {}",
                    m.instrument.code(),
                    m.items_codes.len(),
                    m.items_codes.join(", "),
                    items.len()
                ),
            ));
        }
        let patient = self.patient(m.subject, &format!("{path}.subject"), p, &[]).map_err(|i| issues.push(i)).ok();
        let at = time(m.at, &m.at_path).map_err(|i| issues.push(i)).ok();
        let (Some(patient_id), Some(measured_at), true) = (patient, at, issues.is_empty()) else { return Err(issues) };
        // The episode: through the session Encounter (in the Bundle, or recorded).
        let enc = m.encounter.ok_or_else(|| {
            vec![Issue::new(
                "required",
                format!("{path}.encounter"),
                "an outcome must name the Encounter (session) it was measured at",
            )]
        })?;
        let target = self.resolve(enc, &format!("{path}.encounter"), &["Encounter"], &[], p).map_err(|i| vec![i])?;
        let episode_id = match target.resource {
            Some(ResourceRef::Top(Placed { resource: Resource::Encounter(e), .. })) => e
                .episode_of_care
                .first()
                .and_then(|er| {
                    self.resolve(
                        er,
                        &format!("{path}.encounter (Encounter.episodeOfCare[0])"),
                        &["EpisodeOfCare"],
                        &[],
                        p,
                    )
                    .ok()
                })
                .map(|t| t.id),
            _ => self.lookup.session_episode(patient_id, target.id),
        };
        let episode_id = episode_id.ok_or_else(|| {
            vec![Issue::new(
                "not-found",
                format!("{path}.encounter"),
                "the Encounter is neither in this Bundle nor a recorded session",
            )]
        })?;
        let phase = match m.phase {
            Some(phase) => phase,
            None => {
                let period = self.episode_period(episode_id, patient_id);
                let window = chrono::Duration::days(PHASE_WINDOW_DAYS);
                match period {
                    Some((start, _)) if measured_at <= start + window => MeasurePhase::Intake,
                    Some((_, Some(end))) if measured_at + window >= end => MeasurePhase::Discharge,
                    Some(_) => MeasurePhase::Interim,
                    // Not recorded yet: held until it is, in an import.
                    None => return Err(vec![Issue::new("not-found", format!("{path}.encounter"), format!("episode {episode_id} is not recorded (yet), so its dates cannot give the phase; send it first, or give the phase as a category ({PHASE_SYSTEM})"))]),
                }
            }
        };
        let instrument = m.instrument;
        Ok(vec![fact(
            Command::RecordOutcome {
                patient_id,
                event: OutcomeRecorded { episode_id, instrument, phase, items, total: 0, measured_at },
            },
            "outcome",
        )])
    }

    fn episode_period(&self, episode: Uuid, patient: Uuid) -> Option<(DateTime<Utc>, Option<DateTime<Utc>>)> {
        let in_scope = self.scope.with_id(episode).next();
        if let Some(Placed { resource: Resource::EpisodeOfCare(e), .. }) = in_scope {
            let start = e.period.as_ref().and_then(|x| x.start.as_deref()).and_then(|s| time(Some(s), "").ok())?;
            let end = e.period.as_ref().and_then(|x| x.end.as_deref()).and_then(|s| time(Some(s), "").ok());
            return Some((start, end));
        }
        self.lookup.episode_period(patient, episode)
    }
}

/// A questionnaire as measured, from an Observation or a QuestionnaireResponse.
struct Measured<'a> {
    instrument: Instrument,
    items_codes: &'static [&'static str],
    /// Per item in the instrument's order: where it was and its score, or None if absent.
    answers: Vec<Option<(String, Option<i64>)>>,
    items_path: String,
    subject: Option<&'a Reference>,
    encounter: Option<&'a Reference>,
    at: Option<&'a str>,
    at_path: String,
    phase: Option<MeasurePhase>,
}

/// A LOINC answer code's score (0 "not at all" … 3 "nearly every day").
fn answer_score(code: &str) -> Option<i64> {
    ANSWERS.iter().position(|a| *a == code).map(|v| v as i64)
}

/// Items at any depth, with their FHIRPaths.
fn flatten<'r>(items: &'r [QuestionnaireItem], path: &str, out: &mut Vec<(String, &'r QuestionnaireItem)>) {
    for (n, i) in items.iter().enumerate() {
        let here = format!("{path}[{n}]");
        flatten(&i.item, &format!("{here}.item"), out);
        out.push((here, i));
    }
}

fn contained_type(c: &Contained) -> &'static str {
    match c {
        Contained::Practitioner(_) => "Practitioner",
        Contained::PractitionerRole(_) => "PractitionerRole",
        Contained::Organization(_) => "Organization",
        Contained::HealthcareService(_) => "HealthcareService",
        Contained::CareTeam(_) => "CareTeam",
        Contained::Patient(_) => "Patient",
        Contained::Other => "resource",
    }
}

/// A FHIR dateTime (or date) as a UTC instant. A date alone is taken as midnight UTC; a
/// dateTime must carry its offset, as R4 requires when a time is given.
pub fn time(text: Option<&str>, path: &str) -> Result<DateTime<Utc>, Issue> {
    let text = text.ok_or_else(|| Issue::new("required", path, "a date and time is required"))?;
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    Err(Issue::new("value", path, format!("{} is not a FHIR dateTime with an offset, nor a date", clip(text))))
}

/// Messages quote at most this many characters of what the client sent.
pub fn clip(s: &str) -> String {
    const ECHO: usize = 100;
    if s.chars().count() <= ECHO {
        format!("{s:?}")
    } else {
        format!("{:?}…", s.chars().take(ECHO).collect::<String>())
    }
}
