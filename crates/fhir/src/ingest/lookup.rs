//! The engine and the alias index as the mapper sees them (`EngineLookup`), and the engine
//! questions behind it: who a national id names, who is forgotten, who may read whom.

use std::sync::Arc;

use forlop_domain::national_id::NationalId;
use forlop_domain::StreamRef;
use forlop_engine::{Caller, EngineError};
use forlop_projections::ReadModel;
use uuid::Uuid;

use super::{Fhir, RESOLVED_FIELDS};
use crate::identity::{confirmable, may_name_patient_data, uuid_for, NameMap};
use crate::mapping::{pseudonym_id, EpisodePeriod, Lookup, Placed};

/// Fresh patient ids kept for returning numbers (`FreshIds`) before the map starts over.
const FRESH_IDS: usize = 64 * 1024;

/// The id a number returns under once its holder was forgotten, by the number's keyed pseudonym.
/// The id derived from the pseudonym is the forgotten patient's, so a returning person gets a
/// random one instead: nothing links it to the old id or to the number. Kept until the person is
/// registered (from then on the vault finds them), so that a Bundle, the chunks of an import and
/// a held resource meanwhile agree on it. In memory only, per node: lost, it costs nothing that
/// was recorded, as the vault then knows the patient.
#[derive(Clone, Default)]
pub(super) struct FreshIds(Arc<parking_lot::Mutex<std::collections::HashMap<[u8; 32], Uuid>>>);

impl std::fmt::Debug for FreshIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FreshIds({})", self.0.lock().len())
    }
}

/// Waits for `f` from synchronous mapping code (the mapper is synchronous and runs on blocking
/// threads for bulk imports), on a thread the runtime may block: the key table behind a national
/// id lookup is asynchronous (PostgreSQL). Needs the multi-threaded runtime, as `serve` runs.
pub(super) fn blocking<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// The engine and the alias index, as the mapper sees them.
pub(super) struct EngineLookup<'a> {
    fhir: &'a Fhir,
    caller: &'a Caller,
    model: Arc<ReadModel>,
    /// Names of the resources placed so far in this chunk or Bundle, not yet in the alias index:
    /// a later version of a resource in the same chunk keeps the id the first one was given.
    placed_here: parking_lot::Mutex<NameMap<Uuid>>,
    /// National ids resolved in this chunk or Bundle (by the number, in memory for its length):
    /// each is resolved once, and each patient found is one access record.
    numbers: parking_lot::Mutex<NameMap<(Uuid, bool)>>,
    /// Registered patients a national id was resolved to, to be logged before anything is
    /// answered or recorded (`Fhir::log_resolved`).
    resolved: parking_lot::Mutex<Vec<Uuid>>,
}

impl<'a> EngineLookup<'a> {
    pub(super) fn new(fhir: &'a Fhir, caller: &'a Caller) -> EngineLookup<'a> {
        EngineLookup {
            fhir,
            caller,
            model: fhir.engine.model(),
            placed_here: Default::default(),
            numbers: Default::default(),
            resolved: Default::default(),
        }
    }

    /// Records `p`'s names for the rest of this chunk or Bundle.
    pub(super) fn placed(&self, p: &Placed) {
        let mut here = self.placed_here.lock();
        for n in &p.names {
            here.entry(n.clone()).or_insert(p.id);
        }
    }

    /// The registered patients national ids were resolved to so far, to be logged.
    pub(super) fn take_resolved(&self) -> Vec<Uuid> {
        std::mem::take(&mut *self.resolved.lock())
    }
}

impl Lookup for EngineLookup<'_> {
    fn sender(&self) -> &str {
        &self.caller.principal.sub
    }

    fn alias_derived(&self, name: &str, derived: Option<Uuid>) -> Option<Uuid> {
        // A name of a forgotten patient (or of one of their facts) names no one any more, on
        // every node: the read model, folded from the shared log, says who is forgotten.
        let aliases = &self.fhir.aliases;
        let live = |id: &Uuid| !may_name_patient_data(name) || !self.fhir.forgotten(*id);
        match aliases.get(name).ok().flatten() {
            Some(id) if live(&id) => return Some(id),
            // Perhaps given to someone new since it was read (`AliasIndex::insert`).
            Some(_) => {
                if let Some(id) = aliases.get_again(name).ok().flatten().filter(live) {
                    return Some(id);
                }
            }
            None => {}
        }
        if let Some(id) = self.placed_here.lock().get(name) {
            return Some(*id);
        }
        // A derivable name is not written: the id it derives is its, if that was recorded.
        let type_name = confirmable(name)?;
        let id = derived.unwrap_or_else(|| uuid_for(name));
        self.known(type_name, id).then_some(id)
    }

    fn patient_id(&self, id: &NationalId) -> Result<(Uuid, bool), String> {
        if let Some(found) = self.numbers.lock().get(id.as_str()) {
            return Ok(*found);
        }
        let found = blocking(self.fhir.patient_id(self.caller, id)).map_err(|e| e.public_message())?;
        if found.1 {
            self.resolved.lock().push(found.0);
        }
        self.numbers.lock().insert(id.as_str().to_owned(), found);
        Ok(found)
    }

    fn forgotten(&self, id: Uuid) -> bool {
        self.fhir.forgotten(id)
    }

    fn session_episode(&self, patient: Uuid, session: Uuid) -> Option<Uuid> {
        let p = self.model.patients.get(&patient)?;
        p.sessions().find(|s| s.session_id == session).map(|s| s.episode_id)
    }

    fn episode_period(&self, patient: Uuid, episode: Uuid) -> Option<EpisodePeriod> {
        let p = self.model.patients.get(&patient)?;
        let e = p.episodes.iter().find(|e| e.id == episode)?;
        Some(EpisodePeriod { start: e.started_at, end: e.ended.as_ref().map(|x| x.ended_at) })
    }

    fn admission_open(&self, patient: Uuid, admission: Uuid) -> Option<bool> {
        let p = self.model.patients.get(&patient)?;
        p.admissions.iter().find(|a| a.id == admission).map(|a| a.discharged_at.is_none())
    }

    fn known(&self, type_name: &str, id: Uuid) -> bool {
        // The newest snapshot, not the one mapping started on: a derivable name leaves
        // `RecentNames` only once its facts are published, and must be found here from then.
        let model = self.fhir.engine.model();
        match type_name {
            // A forgotten patient and their facts are not known to anyone by any name.
            "Patient" => model.patients.get(&id).is_some_and(|p| !p.forgotten),
            "Practitioner" => model.holds(StreamRef::Therapist(id)),
            "Organization" | "HealthcareService" => model.holds(StreamRef::Service(id)),
            "EpisodeOfCare" | "ServiceRequest" | "Encounter" => self
                .fhir
                .engine
                .owner_of(id)
                .is_some_and(|owner| model.patients.get(&owner).is_some_and(|p| !p.forgotten)),
            _ => false,
        }
    }

    fn referral_decided(&self, patient: Uuid, referral: Uuid) -> bool {
        self.model
            .patients
            .get(&patient)
            .is_some_and(|p| p.referrals.iter().any(|r| r.id == referral && r.decision.is_some()))
    }
}

impl Fhir {
    /// True when `id` is a forgotten patient or a fact of one (a referral, episode, session or
    /// admission): no name resolves to it any more, and a name that derives it gets a new id.
    /// Judged on the read model, folded from the log every node shares, so an erasure on any
    /// node blocks this node's names too, and the offline import's.
    pub fn forgotten(&self, id: Uuid) -> bool {
        let model = self.engine.model();
        let forgotten = |p: &Uuid| model.patients.get(p).is_some_and(|v| v.forgotten);
        forgotten(&id) || self.engine.owner_of(id).is_some_and(|owner| forgotten(&owner))
    }

    /// Whether the caller may read `patient`'s facts (an integration may not), as the engine's
    /// policy decides it: refusals quote recorded facts only to such callers. A clinician is
    /// judged as if they had recorded their relationship to the patient themselves, the narrower
    /// case (`Relationship::SelfRecorded`): a refusal is not the place to widen what they read.
    pub(super) fn may_read(&self, caller: &Caller, patient: Uuid) -> bool {
        use forlop_engine::policy::{patient_access, PatientAccess, Relationship};
        let model = self.engine.model();
        let view = model.patients.get(&patient).map(|v| &**v);
        matches!(patient_access(&caller.principal, view, None, Relationship::SelfRecorded), PatientAccess::Full)
    }

    /// Logs that national ids were resolved to these patients (one record per patient), durably,
    /// before anything that relies on the resolution is answered or recorded.
    pub(super) fn log_resolved(&self, caller: &Caller, patients: Vec<Uuid>) -> Result<(), EngineError> {
        if patients.is_empty() {
            return Ok(());
        }
        blocking(self.engine.disclosed(caller, patients, RESOLVED_FIELDS))
    }

    /// The forlop id of the patient with this national id, and whether they are registered.
    /// The caller logs a registered one (`log_resolved`).
    ///
    /// A number no live patient holds gets the id derived from its keyed pseudonym (so a resent
    /// Patient is the same patient), unless the read model already holds that id: then it is a
    /// patient whose key was destroyed, the forgotten earlier holder of the number, and the
    /// returning person gets a random id instead (`FreshIds`), placed and answered as one whose
    /// number was never seen.
    pub(super) async fn patient_id(&self, caller: &Caller, id: &NationalId) -> Result<(Uuid, bool), EngineError> {
        let pseudonym = match self.engine.patient_key_for_recording(caller, id).await? {
            Ok(existing) => return Ok((existing, true)),
            Err(pseudonym) => pseudonym,
        };
        let derived = pseudonym_id(&pseudonym);
        let model = self.engine.model();
        if !model.holds(StreamRef::Patient(derived)) {
            return Ok((derived, false));
        }
        // Asked again after the snapshot: a patient it holds alive had their key made before
        // they were appended, so the vault finds them now (one who registered meanwhile).
        if let Ok(existing) = self.engine.patient_key_for_recording(caller, id).await? {
            return Ok((existing, true));
        }
        let mut fresh = self.fresh.0.lock();
        // A fresh id whose bearer was forgotten in turn is as taken as the derived one.
        if let Some(kept) = fresh.get(&pseudonym).copied().filter(|x| !model.holds(StreamRef::Patient(*x))) {
            return Ok((kept, false));
        }
        if fresh.len() >= FRESH_IDS {
            fresh.clear();
        }
        let new = Uuid::new_v4();
        fresh.insert(pseudonym, new);
        Ok((new, false))
    }
}
