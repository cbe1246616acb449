//! FHIR resources to forlop commands. Pure of I/O except through [`Lookup`]: each resource maps
//! to the facts it carries (each with a stable event id), or to issues naming the element (as
//! a FHIRPath) that is wrong.
//!
//! Placing (`placing`) names each resource and gives it its forlop id; the resources of a
//! Bundle or chunk are then found by name (`scope`), references resolved (`resolving`), and
//! each resource kind mapped to its facts in a file of its own.

mod datetime;
mod encounter;
mod episode_of_care;
mod issues;
mod measure;
mod observation;
mod patient;
mod placing;
mod practitioner;
mod questionnaire_response;
mod resolving;
mod scope;
mod service;
mod service_request;
pub mod terminology;

use chrono::{DateTime, Utc};
use forlop_domain::national_id::NationalId;
use forlop_domain::Command;
use uuid::Uuid;

pub use self::datetime::time;
pub use self::issues::Issues;
pub use self::placing::{article, place, pseudonym_id, Placed};
pub use self::scope::Scope;
pub use self::terminology::*;
use crate::care_levels::CareLevels;
use crate::identity::fact_uuid;
pub use crate::outcome::Issue;
use crate::resources::Resource;

/// One fact a resource carries, ready for the engine.
#[derive(Debug, Clone)]
pub struct Fact {
    pub command: Command,
    /// Derived from the resource's forlop id and the fact: the same fact sent again has the same
    /// id, and the engine appends it once.
    pub event_id: Uuid,
    pub national_id: Option<NationalId>,
}

impl Fact {
    /// Fact `what` of the entity with forlop id `of` (`registered`, `started`, …).
    fn of(of: Uuid, what: &str, command: Command) -> Fact {
        Fact { command, event_id: fact_uuid(of, what), national_id: None }
    }
}

/// A recorded episode's start, and its end once it has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpisodePeriod {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
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
    fn episode_period(&self, patient: Uuid, episode: Uuid) -> Option<EpisodePeriod>;
    /// True when the referral is already decided.
    fn referral_decided(&self, patient: Uuid, referral: Uuid) -> bool;
    /// Whether a recorded admission is still open; None when it is not recorded.
    fn admission_open(&self, patient: Uuid, admission: Uuid) -> Option<bool>;
    /// True when forlop already holds `id` as a resource of this type (an id from its own
    /// export, sent back by a record system).
    fn known(&self, type_name: &str, id: Uuid) -> bool;
    /// Who sends: the token's subject. A `urn:uuid:` fullUrl is the sender's own name for a
    /// resource, so it identifies the resource only together with the sender.
    fn sender(&self) -> &str;
}

/// Maps resources to facts, resolving references against the Bundle and what came before.
pub struct Mapper<'a> {
    pub scope: &'a Scope<'a>,
    pub lookup: &'a dyn Lookup,
    pub care_levels: &'a CareLevels,
}

impl<'a> Mapper<'a> {
    /// The facts `p` carries.
    pub fn facts(&self, p: &'a Placed) -> Result<Vec<Fact>, Issues> {
        match &p.resource {
            Resource::Patient(r) => patient::registration(p, r),
            Resource::Practitioner(r) => practitioner::registration(p, r),
            Resource::Organization(r) | Resource::HealthcareService(r) => service::registration(p, r),
            Resource::PractitionerRole(_) | Resource::CareTeam(_) => Ok(vec![]),
            Resource::ServiceRequest(r) => self.referral(p, r),
            Resource::EpisodeOfCare(r) => self.episode(p, r),
            Resource::Encounter(r) => self.encounter(p, r),
            Resource::Observation(r) => self.observation(p, r),
            Resource::QuestionnaireResponse(r) => self.questionnaire(p, r),
        }
    }
}
