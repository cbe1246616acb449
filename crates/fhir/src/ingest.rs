//! Ingest: Bundles (transaction and batch) and NDJSON, through the engine. Every fact goes
//! through `Engine::record` with the caller's principal, so authorisation, access logging and
//! the domain's rules are the same as for a GraphQL mutation.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use forlop_domain::national_id::NationalId;
use forlop_domain::{DomainError, StreamRef};
use forlop_engine::{
    BatchItem, Caller, Engine, EngineError, RecordOptions, Transacted, TransactionItem, TransactionRefused, Unpublished,
};
use forlop_projections::ReadModel;
use futures::StreamExt;
use serde::Deserialize;
use uuid::Uuid;

use crate::care_levels::CareLevels;
use crate::held::{HeldEntry, HeldIssue, HeldStore, Sender};
use crate::identity::{AliasIndex, RecentNames};
use crate::mapping::{clip, place, Fact, Issue, Lookup, Mapper, Placed, Scope};
use crate::resources::{BundleIn, Resource, ACCEPTED};

/// Most entries in one Bundle; larger loads go through `$import`.
pub const MAX_BUNDLE_ENTRIES: usize = 10_000;
/// How long a resource waits for what it refers to before it is reported as unresolved.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(15 * 60);
/// Patients whose facts are placed at the same time in a batch or an import: a chunk's worth,
/// so that they share a few group commits of the log.
const PARALLEL_PATIENTS: usize = 4096;
/// Tasks a batch's or import chunk's patients are placed on: one per worker of a small server.
const PATIENT_TASKS: usize = 4;
/// Chunks of an import parsed and mapped ahead of the one being written.
const PREPARED_AHEAD: usize = 2;
/// What an access record says was disclosed when a national id is resolved to a patient.
pub const RESOLVED_FIELDS: &str = "fhir.Patient.identifier";
/// Fresh patient ids kept for returning numbers (`FreshIds`) before the map starts over.
const FRESH_IDS: usize = 64 * 1024;

/// The FHIR adapter: one per server, cheap to clone.
#[derive(Clone, Debug)]
pub struct Fhir {
    engine: Engine,
    aliases: AliasIndex,
    held: HeldStore,
    care_levels: Arc<CareLevels>,
    /// How long a held resource waits before it is reported as unresolved.
    hold: Duration,
    fresh: FreshIds,
}

/// The id a number returns under once its holder was forgotten, by the number's keyed pseudonym.
/// The id derived from the pseudonym is the forgotten patient's, so a returning person gets a
/// random one instead: nothing links it to the old id or to the number. Kept until the person is
/// registered (from then on the vault finds them), so that a Bundle, the chunks of an import and
/// a held resource meanwhile agree on it. In memory only, per node: lost, it costs nothing that
/// was recorded, as the vault then knows the patient.
#[derive(Clone, Default)]
struct FreshIds(Arc<parking_lot::Mutex<std::collections::HashMap<[u8; 32], Uuid>>>);

impl std::fmt::Debug for FreshIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FreshIds({})", self.0.lock().len())
    }
}

/// What became of one entry (or NDJSON line).
#[derive(Debug, Clone, Default)]
pub struct EntryOutcome {
    /// The resource's type and forlop id, when it was placed (see `location`).
    pub placed_as: Option<(&'static str, Uuid)>,
    pub appended: usize,
    pub duplicates: usize,
    pub issues: Vec<Issue>,
    /// Every fact was already recorded: the resource was seen before.
    pub unchanged: bool,
    /// Kept until what it refers to arrives (its issues say what).
    pub held: bool,
}

impl EntryOutcome {
    /// `Type/uuid` of the resource in forlop's export, when it was placed. Formatted only when
    /// asked: an import places a million and reports none.
    pub fn location(&self) -> Option<String> {
        self.placed_as.map(|(t, id)| format!("{t}/{id}"))
    }

    pub fn ok(&self) -> bool {
        self.issues.is_empty()
    }

    /// The HTTP status FHIR puts in `entry.response.status`.
    pub fn status(&self) -> &'static str {
        if self.held {
            return "202 Accepted";
        }
        match self.issues.first().map(|i| i.code) {
            None if self.appended > 0 => "201 Created",
            None => "200 OK",
            Some("forbidden") => "403 Forbidden",
            Some("transient") => "503 Service Unavailable",
            Some("conflict") | Some("duplicate") => "409 Conflict",
            Some("business-rule") | Some("processing") => "422 Unprocessable Entity",
            Some(_) => "400 Bad Request",
        }
    }
}

/// Entries parsed, named and mapped, not yet recorded (`Fhir::prepare`).
#[derive(Debug)]
pub struct Prepared {
    outcomes: Vec<EntryOutcome>,
    /// Each entry's resource, named; emptied by a caller that commits without `hold`.
    placed: Vec<Option<Placed>>,
    facts: Vec<(usize, u8, Vec<Fact>)>,
    /// Nothing is to be recorded (a transaction with a bad entry, or the aliases not durable).
    stop: bool,
    /// Derivable names of these entries, found by later lookups until the facts are recorded.
    recent: RecentNames,
}

/// Totals of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    pub resources_read: u64,
    pub events_appended: u64,
    pub duplicates_skipped: u64,
    /// Lines that waited for a resource later in the file, and were placed once it had come.
    pub placed_after_waiting: u64,
    /// Lines still waiting for a resource the file did not have: kept, and placed when it
    /// arrives (`GET /fhir/$unresolved` lists them after the hold time).
    pub held: u64,
    pub failed: u64,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "resources read {}, events appended {}, duplicates skipped {}, placed after waiting {}, held {}, failed {}",
            self.resources_read,
            self.events_appended,
            self.duplicates_skipped,
            self.placed_after_waiting,
            self.held,
            self.failed
        )
    }
}

/// An entry as it arrives: where it came from, its fullUrl, and its JSON.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub path: String,
    pub full_url: Option<String>,
    pub json: String,
}

#[derive(Deserialize)]
struct TypeOnly {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
}

/// serde's messages can name Rust types; a client sees FHIR's words instead.
fn plain(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = match msg.find(", expected struct") {
        Some(i) => {
            format!("{}, expected an object{}", &msg[..i], msg[i..].find(" at line").map_or("", |j| &msg[i + j..]))
        }
        None => msg,
    };
    msg.replace("expected a borrowed string", "expected a string")
}

pub fn parse_resource(json: &str, path: &str) -> Result<Resource, Issue> {
    if let Some(resource) = Resource::parse_type_first(json) {
        return Ok(resource);
    }
    let t: TypeOnly = serde_json::from_str(json)
        .map_err(|e| Issue::new("structure", path, format!("not a JSON resource: {}", plain(&e))))?;
    let t = t
        .resource_type
        .ok_or_else(|| Issue::new("required", format!("{path}.resourceType"), "resourceType is required"))?;
    let not_taken = || {
        Issue::new(
            "not-supported",
            format!("{path}.resourceType"),
            format!("{} is not a resource forlop records; it takes {}", clip(&t), ACCEPTED.join(", ")),
        )
    };
    Resource::parse_as(&t, json)
        .ok_or_else(not_taken)?
        .map_err(|e| Issue::new("structure", path, format!("{t}: {}", plain(&e))))
}

/// Each entry parsed; pure, so it runs ahead of mapping (which must follow the chunk before).
fn parse_all(entries: &[RawEntry]) -> Vec<Result<Resource, Issue>> {
    entries.iter().map(|e| parse_resource(&e.json, &e.path)).collect()
}

/// Waits for `f` from synchronous mapping code (the mapper is synchronous and runs on blocking
/// threads for bulk imports), on a thread the runtime may block: the key table behind a national
/// id lookup is asynchronous (PostgreSQL). Needs the multi-threaded runtime, as `serve` runs.
fn blocking<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// The engine and the alias index, as the mapper sees them.
struct EngineLookup<'a> {
    fhir: &'a Fhir,
    caller: &'a Caller,
    model: Arc<ReadModel>,
    /// Names of the resources placed so far in this chunk or Bundle, not yet in the alias index:
    /// a later version of a resource in the same chunk keeps the id the first one was given.
    placed_here: parking_lot::Mutex<crate::identity::NameMap<Uuid>>,
    /// National ids resolved in this chunk or Bundle (by the number, in memory for its length):
    /// each is resolved once, and each patient found is one access record.
    numbers: parking_lot::Mutex<crate::identity::NameMap<(Uuid, bool)>>,
    /// Registered patients a national id was resolved to, to be logged before anything is
    /// answered or recorded (`Fhir::log_resolved`).
    resolved: parking_lot::Mutex<Vec<Uuid>>,
}

impl<'a> EngineLookup<'a> {
    fn new(fhir: &'a Fhir, caller: &'a Caller) -> EngineLookup<'a> {
        EngineLookup {
            fhir,
            caller,
            model: fhir.engine.model(),
            placed_here: Default::default(),
            numbers: Default::default(),
            resolved: Default::default(),
        }
    }

    fn placed(&self, p: &Placed) {
        let mut here = self.placed_here.lock();
        for n in &p.names {
            here.entry(n.clone()).or_insert(p.id);
        }
    }
}

impl Lookup for EngineLookup<'_> {
    fn alias_derived(&self, name: &str, derived: Option<Uuid>) -> Option<Uuid> {
        // A name of a forgotten patient (or of one of their facts) names no one any more, on
        // every node: the read model, folded from the shared log, says who is forgotten.
        let aliases = &self.fhir.aliases;
        let live = |id: &Uuid| !crate::identity::may_name_patient_data(name) || !self.fhir.forgotten(*id);
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
        let type_name = crate::identity::confirmable(name)?;
        let id = derived.unwrap_or_else(|| crate::identity::uuid_for(name));
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

    fn episode_period(&self, patient: Uuid, episode: Uuid) -> Option<(DateTime<Utc>, Option<DateTime<Utc>>)> {
        let p = self.model.patients.get(&patient)?;
        let e = p.episodes.iter().find(|e| e.id == episode)?;
        Some((e.started_at, e.ended.as_ref().map(|x| x.ended_at)))
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

/// Registrations: one made before by another route (a GraphQL mutation) is the same entity.
fn registers(command: &forlop_domain::Command) -> bool {
    use forlop_domain::Command::*;
    matches!(command, RegisterPatient(_) | RegisterService(_) | RegisterTherapist(_))
}

/// An engine refusal as an OperationOutcome issue.
fn engine_issue(path: &str, e: &EngineError) -> Issue {
    Issue::new(issue_code(e), path, format!("{}: {}", e.code(), message(e)))
}

/// An engine refusal as an OperationOutcome issue for a caller who may not read the patient's
/// facts (an integration): the same code and issue type, and what is wrong with the fact sent,
/// but none of the recorded facts it was checked against (an episode's dates, another fact's
/// id), nor that an id it names is another patient's.
fn withheld_issue(path: &str, e: &EngineError) -> Issue {
    let message = match e {
        EngineError::Domain(d) => d.without_records().to_string(),
        // The engine's claim on a global id (`Engine::claim`) says whose it is.
        EngineError::InvalidInput(m) if m.contains("another patient") => {
            "this fact cannot be recorded under the id it names; what it conflicts with is not \
             disclosed to your role"
                .to_owned()
        }
        other => message(other),
    };
    Issue::new(issue_code(e), path, format!("{}: {message}", e.code()))
}

fn message(e: &EngineError) -> String {
    match e {
        EngineError::IdempotencyConflict(_) => {
            "this fact was recorded before with other content; forlop never edits a recorded fact".to_owned()
        }
        other => other.public_message(),
    }
}

fn issue_code(e: &EngineError) -> &'static str {
    match e {
        EngineError::Domain(DomainError::NotFound(_)) => "not-found",
        EngineError::Domain(DomainError::AlreadyExists(_)) => "duplicate",
        EngineError::Domain(DomainError::InvalidInput(_)) | EngineError::InvalidInput(_) => "business-rule",
        EngineError::IdempotencyConflict(_) => "conflict",
        EngineError::Forbidden(_) | EngineError::Unauthenticated(_) => "forbidden",
        EngineError::Unavailable(_) => "transient",
        EngineError::WrongExpectedVersion { .. } => "conflict",
        EngineError::Internal(_) => "exception",
    }
}

/// True when every issue is a reference not yet recorded: the entry can wait for it.
fn waits(issues: &[Issue]) -> bool {
    !issues.is_empty() && issues.iter().all(|i| i.code == "not-found")
}

/// A fact placed, or why not.
enum Placing {
    Appended,
    Duplicate,
    Refused(Issue),
}

impl Fhir {
    /// The alias index lives in `dir` (e.g. `<data>/fhir`).
    pub fn open(engine: Engine, dir: &Path, care_levels: CareLevels) -> Result<Fhir, sled::Error> {
        let aliases = AliasIndex::open(dir)?;
        let held = HeldStore::open(aliases.db())?;
        Ok(Fhir {
            engine,
            aliases,
            held,
            care_levels: Arc::new(care_levels),
            hold: DEFAULT_HOLD,
            fresh: FreshIds::default(),
        })
    }

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
    fn may_read(&self, caller: &Caller, patient: Uuid) -> bool {
        use forlop_engine::policy::{patient_access, PatientAccess, Relationship};
        let model = self.engine.model();
        let view = model.patients.get(&patient).map(|v| &**v);
        matches!(patient_access(&caller.principal, view, None, Relationship::SelfRecorded), PatientAccess::Full)
    }

    /// An engine refusal of a fact about `patient`, in the words the caller may read.
    fn refusal(&self, caller: &Caller, patient: Option<Uuid>, e: &EngineError) -> Issue {
        match patient {
            Some(p) if !self.may_read(caller, p) => withheld_issue("", e),
            _ => engine_issue("", e),
        }
    }

    /// Logs that national ids were resolved to these patients (one record per patient), durably,
    /// before anything that relies on the resolution is answered or recorded.
    fn log_resolved(&self, caller: &Caller, patients: Vec<Uuid>) -> Result<(), EngineError> {
        if patients.is_empty() {
            return Ok(());
        }
        blocking(self.engine.disclosed(caller, patients, RESOLVED_FIELDS))
    }

    /// How long a held resource waits before it is reported as unresolved.
    pub fn with_hold(mut self, hold: Duration) -> Fhir {
        self.hold = hold;
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Parses, names and maps `entries`; then, if nothing is wrong or `all_or_none` is false,
    /// places their facts. Returns one outcome per entry, in order.
    /// With `hold`, an entry that fails only for references not yet recorded is kept and placed
    /// when they arrive, instead of failing.
    pub async fn ingest(
        &self,
        caller: &Caller,
        entries: &[RawEntry],
        all_or_none: bool,
        hold: bool,
    ) -> Vec<EntryOutcome> {
        let prepared = self.prepare(caller, entries, all_or_none);
        self.commit(caller, entries, prepared, all_or_none, hold).await
    }

    /// The first half of `ingest`, all CPU: parses, names and maps the entries, and makes their
    /// names durable in the alias index. Nothing is recorded yet.
    pub fn prepare(&self, caller: &Caller, entries: &[RawEntry], all_or_none: bool) -> Prepared {
        self.prepare_parsed(caller, entries, parse_all(entries), all_or_none)
    }

    /// `prepare` of entries already parsed (`parse_all`), one result per entry.
    fn prepare_parsed(
        &self,
        caller: &Caller,
        entries: &[RawEntry],
        parsed: Vec<Result<Resource, Issue>>,
        all_or_none: bool,
    ) -> Prepared {
        let mut outcomes: Vec<EntryOutcome> = vec![EntryOutcome::default(); entries.len()];
        let mut placed: Vec<Option<Placed>> = Vec::with_capacity(entries.len());
        let mut facts: Vec<(usize, u8, Vec<Fact>)> = Vec::new();
        {
            // The snapshot and the scope are dropped before anything is awaited.
            let lookup = EngineLookup::new(self, caller);
            for (i, (e, r)) in entries.iter().zip(parsed).enumerate() {
                let p = r
                    .map_err(|x| vec![x])
                    .and_then(|r| place(r, e.full_url.as_deref(), e.path.clone(), &self.care_levels, &lookup));
                match p {
                    Ok(p) => {
                        outcomes[i].placed_as = Some((p.resource.type_name(), p.id));
                        lookup.placed(&p);
                        placed.push(Some(p));
                    }
                    Err(issues) => {
                        outcomes[i].issues = issues;
                        placed.push(None);
                    }
                }
            }
            let scope = Scope::new(&placed);
            let mapper = Mapper { scope: &scope, lookup: &lookup, care_levels: &self.care_levels };
            for (i, p) in placed.iter().enumerate() {
                let Some(p) = p else { continue };
                match mapper.facts(p) {
                    Ok(f) => facts.push((i, p.resource.rank(), f)),
                    Err(issues) => outcomes[i].issues = issues,
                }
            }
            // Every number resolved to a patient is an access record on that patient, durable
            // before any answer (even a refusal) or fact that relies on it: the patient sees it.
            let resolved = std::mem::take(&mut *lookup.resolved.lock());
            if let Err(e) = self.log_resolved(caller, resolved) {
                for o in outcomes.iter_mut() {
                    o.issues = vec![engine_issue("", &e)];
                }
                return Prepared { outcomes, placed, facts: Vec::new(), stop: true, recent: RecentNames::default() };
            }
        }
        let mut prepared = Prepared { outcomes, placed, facts, stop: false, recent: RecentNames::default() };
        if all_or_none && prepared.outcomes.iter().any(|o| !o.ok()) {
            prepared.stop = true;
            return prepared;
        }
        let Prepared { outcomes, placed, facts, recent, .. } = &mut prepared;
        // Entries whose facts record the entity named by their id (see `AliasIndex::insert`).
        let recorded: std::collections::HashSet<usize> = facts
            .iter()
            .filter(|(i, _, fs)| {
                let id = placed[*i].as_ref().map(|p| p.id);
                fs.iter().any(|f| id.is_some_and(|id| crate::identity::records_entity(&f.command, id)))
            })
            .map(|(i, _, _)| *i)
            .collect();
        // Names first, durable before any fact that relies on them is acknowledged.
        let named = placed
            .iter()
            .enumerate()
            .filter(|(i, _)| outcomes[*i].ok())
            .filter_map(|(i, p)| Some((p.as_ref()?, recorded.contains(&i))))
            .map(|(p, recorded)| (p.names.as_slice(), p.derived_from, p.id, recorded));
        // A name that still points at a forgotten patient's id is given to its new bearer.
        match self.aliases.insert(named, &|id| self.forgotten(id)) {
            Ok(held) => *recent = held,
            Err(e) => tracing::error!(error = %e, "alias index write failed"),
        }
        if let Err(e) = self.aliases.flush() {
            for o in outcomes.iter_mut().filter(|o| o.ok()) {
                o.issues.push(Issue::new(
                    "transient",
                    "",
                    format!("UNAVAILABLE: the FHIR alias index could not be made durable: {e}"),
                ));
            }
            prepared.stop = true;
        }
        prepared
    }

    /// The second half of `ingest`: records the prepared facts (and, with `hold`, keeps what
    /// waits for a reference).
    pub async fn commit(
        &self,
        caller: &Caller,
        entries: &[RawEntry],
        mut prepared: Prepared,
        all_or_none: bool,
        hold: bool,
    ) -> Vec<EntryOutcome> {
        let placed = std::mem::take(&mut prepared.placed);
        let (mut outcomes, publishing) = self.commit_durable(caller, prepared, all_or_none).await;
        self.publish(publishing, entries, &mut outcomes).await;
        if hold && !all_or_none {
            for (i, o) in outcomes.iter_mut().enumerate() {
                let Some(p) = placed.get(i).and_then(Option::as_ref) else { continue };
                if o.ok() || o.appended > 0 || !waits(&o.issues) {
                    continue;
                }
                match self.hold_resource(caller, p.resource.clone(), entries[i].full_url.clone(), &o.issues) {
                    Ok(()) => o.held = true,
                    Err(e) => o.issues.push(e),
                }
            }
        }
        outcomes
    }

    /// Records the prepared facts and returns once they are durable, with what waits for them
    /// to reach the read model (`publish`). Issues found here name no entry path yet.
    async fn commit_durable(
        &self,
        caller: &Caller,
        prepared: Prepared,
        all_or_none: bool,
    ) -> (Vec<EntryOutcome>, Publishing) {
        let Prepared { mut outcomes, placed: _, mut facts, stop, recent } = prepared;
        let mut publishing = Publishing { recent, unpublished: Unpublished::default(), entries: Vec::new() };
        if stop {
            return (outcomes, publishing);
        }
        facts.sort_by_key(|(i, rank, _)| (*rank, *i));
        if all_or_none {
            // Every fact decided in order and appended together; one refusal records nothing.
            let mut entry_of = Vec::new();
            let mut patient_of = Vec::new();
            let mut items = Vec::new();
            for (i, _, fs) in facts {
                for f in fs {
                    entry_of.push(i);
                    patient_of.push(f.command.stream().patient_id());
                    let may_exist = registers(&f.command);
                    items.push(TransactionItem {
                        command: f.command,
                        event_id: f.event_id,
                        national_id: f.national_id,
                        may_exist,
                    });
                }
            }
            match self.engine.record_transaction(caller, items).await {
                Ok(done) => {
                    for (i, t) in entry_of.into_iter().zip(done) {
                        match t {
                            Transacted::Recorded(r) if !r.deduplicated => outcomes[i].appended += 1,
                            _ => outcomes[i].duplicates += 1,
                        }
                    }
                }
                Err(TransactionRefused { item: Some(k), error }) => {
                    outcomes[entry_of[k]].issues.push(self.refusal(caller, patient_of[k], &error));
                }
                Err(TransactionRefused { item: None, error }) => {
                    for o in outcomes.iter_mut() {
                        o.issues.push(engine_issue("", &error));
                    }
                }
            }
        } else {
            // Reference data first, then each patient's facts in order, patients side by side.
            let (shared, patients): (Vec<_>, Vec<_>) = facts.into_iter().partition(|(_, rank, _)| *rank < 2);
            let done = futures::stream::iter(shared.into_iter().map(|(i, _, fs)| self.place_all(caller, i, fs)))
                .buffer_unordered(PARALLEL_PATIENTS)
                .collect::<Vec<_>>()
                .await;
            let mut by_patient: BTreeMap<Uuid, Vec<(usize, Vec<Fact>)>> = BTreeMap::new();
            for (i, _, fs) in patients {
                let patient = fs.iter().find_map(|f| f.command.stream().patient_id()).unwrap_or_default();
                by_patient.entry(patient).or_default().push((i, fs));
            }
            let (per_patient, unpublished) = self.place_patients(caller, by_patient.into_values().collect()).await;
            publishing.unpublished = unpublished;
            publishing.entries = per_patient.iter().filter(|p| p.1 > 0).map(|p| p.0).collect();
            for (i, appended, duplicates, issue) in done.into_iter().chain(per_patient) {
                outcomes[i].appended += appended;
                outcomes[i].duplicates += duplicates;
                if let Some(issue) = issue {
                    outcomes[i].issues.push(issue);
                }
            }
        }
        (outcomes, publishing)
    }

    /// Waits until a commit's events are in the read model, then lets its names go (from then
    /// on found by the read model), names each issue's entry and marks what was unchanged.
    async fn publish(&self, publishing: Publishing, entries: &[RawEntry], outcomes: &mut [EntryOutcome]) {
        let Publishing { recent, unpublished, entries: appended } = publishing;
        if let Err(e) = self.engine.published(unpublished).await {
            // Durable, but this node's read model does not follow: said for each entry it holds.
            for i in appended {
                outcomes[i].issues.push(engine_issue("", &e));
            }
        }
        drop(recent);
        for (o, e) in outcomes.iter_mut().zip(entries) {
            for issue in o.issues.iter_mut().filter(|x| x.path.is_empty()) {
                issue.path = e.path.clone();
            }
            o.unchanged = o.ok() && o.appended == 0 && o.duplicates > 0;
        }
    }

    /// The forlop id of the patient with this national id, and whether they are registered.
    /// The caller logs a registered one (`log_resolved`).
    ///
    /// A number no live patient holds gets the id derived from its keyed pseudonym (so a resent
    /// Patient is the same patient), unless the read model already holds that id: then it is a
    /// patient whose key was destroyed, the forgotten earlier holder of the number, and the
    /// returning person gets a random id instead (`FreshIds`), placed and answered as one whose
    /// number was never seen.
    async fn patient_id(&self, caller: &Caller, id: &NationalId) -> Result<(Uuid, bool), EngineError> {
        let pseudonym = match self.engine.patient_key_for_recording(caller, id).await? {
            Ok(existing) => return Ok((existing, true)),
            Err(pseudonym) => pseudonym,
        };
        let derived = crate::mapping::pseudonym_id(&pseudonym);
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

    /// Keeps a resource that waits for a reference, with national ids replaced by patient ids.
    fn hold_resource(
        &self,
        caller: &Caller,
        resource: Resource,
        full_url: Option<String>,
        issues: &[Issue],
    ) -> Result<(), Issue> {
        let resource_type = resource.type_name().to_owned();
        let resource_id = resource.id().map(str::to_owned);
        let resource = self.scrubbed(caller, resource)?;
        let patient = self.subject_of(&resource);
        let entry = HeldEntry {
            received_at: Utc::now(),
            sender: Sender::of(&caller.principal),
            resource_type,
            resource_id,
            resource: serde_json::to_string(&resource).unwrap_or_default(),
            full_url,
            issues: issues.iter().map(HeldIssue::from).collect(),
            failed: false,
            patient,
        };
        self.held.insert(&entry).map_err(|e| {
            Issue::new("transient", "", format!("UNAVAILABLE: the held resource could not be kept: {e}"))
        })?;
        self.held.measure(self.hold);
        Ok(())
    }

    /// The patient a (scrubbed) held resource is about, as its subject names them now.
    fn subject_of(&self, resource: &Resource) -> Option<Uuid> {
        let subject = match resource {
            Resource::ServiceRequest(x) => x.subject.as_ref(),
            Resource::EpisodeOfCare(x) => x.patient.as_ref(),
            Resource::Encounter(x) => x.subject.as_ref(),
            Resource::Observation(x) => x.subject.as_ref(),
            Resource::QuestionnaireResponse(x) => x.subject.as_ref(),
            _ => None,
        }?;
        let text = subject.reference.as_deref()?;
        let id = text.trim_end_matches('/').rsplit('/').next()?;
        let name = format!("Patient/{id}");
        if let Some(found) = self.aliases.get(&name).ok().flatten() {
            return Some(found);
        }
        Some(id.parse::<Uuid>().unwrap_or_else(|_| crate::identity::uuid_for(&name)))
    }

    /// Drops every held resource about a forgotten patient: what waited for a reference is part
    /// of what the patient asked to have erased, and placed later it would be a pre-erasure fact
    /// on whoever now goes by the names it uses.
    fn drop_forgotten_held(&self) {
        for (key, e) in self.held.all() {
            let patient = e.patient.or_else(|| {
                let resource = parse_resource(&e.resource, "").ok()?;
                self.subject_of(&resource)
            });
            if patient.is_some_and(|p| self.forgotten(p)) {
                if let Err(err) = self.held.remove(key) {
                    tracing::error!(error = %err, "a held resource of a forgotten patient could not be dropped");
                }
            }
        }
    }

    /// `resource` with every reference to a patient by national id turned into one by forlop id,
    /// so that what is kept holds no national id.
    fn scrubbed(&self, caller: &Caller, mut resource: Resource) -> Result<Resource, Issue> {
        let fix = |r: &mut Option<crate::resources::Reference>| -> Result<(), Issue> {
            let Some(reference) = r else { return Ok(()) };
            let Some(ident) = &reference.identifier else { return Ok(()) };
            let (Some(system), Some(value)) = (ident.system.as_deref(), ident.value.as_deref()) else { return Ok(()) };
            if ![crate::mapping::SYSTEM_FNR, crate::mapping::SYSTEM_DNR, crate::mapping::SYSTEM_HNR].contains(&system) {
                return Ok(());
            }
            let nid = NationalId::parse(value).map_err(|e| Issue::new("value", "", e.to_string()))?;
            let (id, registered) = blocking(self.patient_id(caller, &nid)).map_err(|e| engine_issue("", &e))?;
            if registered {
                self.log_resolved(caller, vec![id]).map_err(|e| engine_issue("", &e))?;
            }
            *r = Some(crate::resources::Reference { reference: Some(format!("Patient/{id}")), ..Default::default() });
            Ok(())
        };
        match &mut resource {
            Resource::ServiceRequest(x) => {
                fix(&mut x.subject)?;
                fix(&mut x.requester)?;
            }
            Resource::EpisodeOfCare(x) => {
                fix(&mut x.patient)?;
                x.contained.retain(|c| !matches!(c, crate::resources::Contained::Patient(_)));
            }
            Resource::Encounter(x) => fix(&mut x.subject)?,
            Resource::Observation(x) => fix(&mut x.subject)?,
            Resource::Patient(_) => {
                return Err(Issue::new("not-supported", "", "a Patient is never held: it refers to nothing"));
            }
            _ => {}
        }
        Ok(resource)
    }

    /// Places held resources again, in their senders' names, until a round places nothing.
    /// Called after every ingest that recorded something.
    pub async fn retry_held(&self) {
        self.drop_forgotten_held();
        loop {
            let waiting: Vec<(u64, HeldEntry)> = self.held.all().into_iter().filter(|(_, e)| !e.failed).collect();
            if waiting.is_empty() {
                break;
            }
            let mut by_sender: BTreeMap<String, Vec<(u64, HeldEntry)>> = BTreeMap::new();
            for (k, e) in waiting {
                by_sender.entry(serde_json::to_string(&e.sender).unwrap_or_default()).or_default().push((k, e));
            }
            let mut progress = false;
            for (_, group) in by_sender {
                let caller = Caller::server(group[0].1.sender.principal(), "fhir.held");
                let entries: Vec<RawEntry> = group
                    .iter()
                    .map(|(k, e)| RawEntry {
                        path: format!("held {k}"),
                        full_url: e.full_url.clone(),
                        json: e.resource.clone(),
                    })
                    .collect();
                let outcomes = self.ingest(&caller, &entries, false, false).await;
                for ((key, mut entry), o) in group.into_iter().zip(outcomes) {
                    let result = if o.ok() {
                        progress = true;
                        self.held.remove(key)
                    } else if o.appended == 0 && waits(&o.issues) {
                        Ok(())
                    } else {
                        // It can never be placed as it is: kept, and reported, not dropped.
                        progress |= o.appended > 0;
                        entry.failed = true;
                        entry.issues = o.issues.iter().map(HeldIssue::from).collect();
                        self.held.update(key, &entry)
                    };
                    if let Err(e) = result {
                        tracing::error!(error = %e, "held resources could not be updated");
                        return;
                    }
                }
            }
            self.held.measure(self.hold);
            if !progress {
                break;
            }
        }
    }

    /// Held resources past the hold time, and those that can never be placed, for the caller
    /// that sent them (admins see all). Lists what waits and why; no resource content.
    pub fn unresolved(&self, caller: &Caller) -> Result<Vec<(u64, HeldEntry)>, EngineError> {
        if !forlop_engine::policy::may_resolve_for_recording(&caller.principal) {
            return Err(EngineError::forbidden("your role may not see resources held for recording"));
        }
        let admin = caller.principal.has(forlop_engine::Role::Admin);
        let now = Utc::now();
        self.drop_forgotten_held();
        self.held.measure(self.hold);
        Ok(self
            .held
            .all()
            .into_iter()
            .filter(|(_, e)| e.failed || crate::held::past(e, self.hold, now))
            .filter(|(_, e)| admin || e.sender.sub == caller.principal.sub)
            .collect())
    }

    /// Patients placed side by side, on `PATIENT_TASKS` tasks: their facts are decided on every
    /// worker of the runtime, not only on the one that runs the commit. Returns once the facts
    /// are durable, with what waits for their publication.
    async fn place_patients(
        &self,
        caller: &Caller,
        patients: Vec<Vec<(usize, Vec<Fact>)>>,
    ) -> (Vec<Placement>, Unpublished) {
        let per_task = patients.len().div_ceil(PATIENT_TASKS).max(1);
        let mut tasks = Vec::new();
        let mut patients = patients.into_iter().peekable();
        while patients.peek().is_some() {
            let share: Vec<_> = patients.by_ref().take(per_task).collect();
            let entries: Vec<usize> = share.iter().flatten().map(|(i, _)| *i).collect();
            let (fhir, caller) = (self.clone(), caller.clone());
            let task = tokio::spawn(async move {
                futures::stream::iter(share.into_iter().map(|p| fhir.place_patient(&caller, p)))
                    .buffer_unordered(PARALLEL_PATIENTS)
                    .collect::<Vec<_>>()
                    .await
            });
            tasks.push((entries, task));
        }
        let (mut placed, mut unpublished) = (Vec::new(), Unpublished::default());
        for (entries, task) in tasks {
            match task.await {
                Ok(done) => {
                    for (p, u) in done {
                        placed.extend(p);
                        unpublished = unpublished.and(u);
                    }
                }
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Cancelled: the runtime is shutting down. What was appended stays appended.
                Err(_) => placed.extend(entries.into_iter().map(|i| {
                    let issue = Issue::new("transient", "", "UNAVAILABLE: the server is shutting down");
                    (i, 0, 0, Some(issue))
                })),
            }
        }
        (placed, unpublished)
    }

    /// One patient's facts from several entries, in order, with one append: a registration with
    /// a national id first (through the vault), then the rest as one batch in which each entry
    /// stops at its first refusal. Returns once the batch is durable, with what waits for its
    /// publication.
    async fn place_patient(&self, caller: &Caller, entries: Vec<(usize, Vec<Fact>)>) -> (Vec<Placement>, Unpublished) {
        let mut out: Vec<Placement> = entries.iter().map(|(i, _)| (*i, 0, 0, None)).collect();
        let patient = entries.iter().flat_map(|(_, fs)| fs).find_map(|f| f.command.stream().patient_id());
        let mut items = Vec::new();
        for (k, (_, facts)) in entries.into_iter().enumerate() {
            for f in facts {
                if out[k].3.is_some() {
                    break;
                }
                if f.national_id.is_some() {
                    match self.place_fact(caller, f).await {
                        Placing::Appended => out[k].1 += 1,
                        Placing::Duplicate => out[k].2 += 1,
                        Placing::Refused(issue) => out[k].3 = Some(issue),
                    }
                    continue;
                }
                items.push(BatchItem { command: f.command, event_id: f.event_id, group: k });
            }
        }
        let items: Vec<BatchItem> = items.into_iter().filter(|it| out[it.group].3.is_none()).collect();
        let groups: Vec<usize> = items.iter().map(|it| it.group).collect();
        let kinds: Vec<(bool, bool)> = items
            .iter()
            .map(|it| {
                (
                    matches!(it.command, forlop_domain::Command::RegisterPatient(_)),
                    matches!(it.command, forlop_domain::Command::RecordStay { .. }),
                )
            })
            .collect();
        let (results, unpublished) = self.engine.record_batch_unpublished(caller, items).await;
        for ((k, (registers, stay)), r) in groups.into_iter().zip(kinds).zip(results) {
            if out[k].3.is_some() {
                continue;
            }
            match r {
                Ok(r) if r.deduplicated => out[k].2 += 1,
                Ok(_) => out[k].1 += 1,
                Err(EngineError::Domain(DomainError::AlreadyExists(_))) if registers => out[k].2 += 1,
                // Its admission was recorded meanwhile (an earlier version of the Encounter, still
                // being written when this one was mapped): mapped again later, it is a discharge.
                Err(EngineError::Domain(DomainError::AlreadyExists(_))) if stay => {
                    out[k].3 =
                        Some(Issue::new("not-found", "", "the stay's admission was being recorded; placed again"))
                }
                Err(e) => out[k].3 = Some(self.refusal(caller, patient, &e)),
            }
        }
        (out, unpublished)
    }

    /// One entry's facts in order; the first refusal stops that entry.
    async fn place_all(&self, caller: &Caller, i: usize, facts: Vec<Fact>) -> Placement {
        let (mut appended, mut duplicates) = (0, 0);
        for f in facts {
            match self.place_fact(caller, f).await {
                Placing::Appended => appended += 1,
                Placing::Duplicate => duplicates += 1,
                Placing::Refused(issue) => return (i, appended, duplicates, Some(issue)),
            }
        }
        (i, appended, duplicates, None)
    }

    async fn place_fact(&self, caller: &Caller, f: Fact) -> Placing {
        let registration = registers(&f.command);
        let patient = f.command.stream().patient_id();
        let options = RecordOptions { event_id: Some(f.event_id), expected_version: None };
        match self.engine.record(caller, f.command, f.national_id, options).await {
            Ok(r) if r.deduplicated => Placing::Duplicate,
            Ok(_) => Placing::Appended,
            // Registered before by another route (a GraphQL mutation): the same patient.
            Err(EngineError::Domain(DomainError::AlreadyExists(_))) if registration => Placing::Duplicate,
            Err(e) => Placing::Refused(self.refusal(caller, patient, &e)),
        }
    }

    /// Reads a Bundle's envelope. Entries stay raw so each is parsed, and reported, on its own.
    pub fn read_bundle(body: &[u8]) -> Result<(bool, Vec<RawEntry>), Issue> {
        let bundle: BundleIn = serde_json::from_slice(body)
            .map_err(|e| Issue::new("structure", "Bundle", format!("not a JSON Bundle: {}", plain(&e))))?;
        if bundle.resource_type != "Bundle" {
            return Err(Issue::new(
                "not-supported",
                "resourceType",
                format!("POST /fhir takes a Bundle, not {}", clip(&bundle.resource_type)),
            ));
        }
        let all_or_none = match bundle.type_.as_str() {
            "transaction" => true,
            "batch" => false,
            other => {
                return Err(Issue::new("value", "Bundle.type", format!("{} is not transaction or batch", clip(other))))
            }
        };
        if bundle.entry.len() > MAX_BUNDLE_ENTRIES {
            return Err(Issue::new(
                "too-costly",
                "Bundle.entry",
                format!(
                    "{} entries exceed the limit of {MAX_BUNDLE_ENTRIES}; send bulk data to $import as NDJSON",
                    bundle.entry.len()
                ),
            ));
        }
        let entries = bundle
            .entry
            .into_iter()
            .enumerate()
            .map(|(i, e)| RawEntry {
                path: format!("Bundle.entry[{i}].resource"),
                full_url: e.full_url,
                json: e.resource.map(|r| r.get().to_owned()).unwrap_or_else(|| "null".into()),
            })
            .collect();
        Ok((all_or_none, entries))
    }

    /// Reads the next chunk and, if it has lines, starts parsing and mapping it on a blocking
    /// thread: its mapping waits for the chunk before it (`mapped_before`), its parsing does not.
    async fn read_chunk<I>(
        &self,
        caller: &Caller,
        lines: &mut futures::stream::Enumerate<I>,
        chunk: usize,
        mapped_before: &mut Option<std::sync::mpsc::Receiver<()>>,
    ) -> (Gathered, Option<Preparing>)
    where
        I: futures::Stream<Item = std::io::Result<String>> + Unpin,
    {
        let mut gathered = gather(lines, chunk).await;
        if gathered.entries.is_empty() {
            return (gathered, None);
        }
        // Shared with the mapping thread rather than copied: a chunk is megabytes of JSON.
        let entries = Arc::new(std::mem::take(&mut gathered.entries));
        let (fhir, who, mapped) = (self.clone(), caller.clone(), entries.clone());
        let turn = mapped_before.take();
        let (mapped_now, next_turn) = std::sync::mpsc::channel::<()>();
        *mapped_before = Some(next_turn);
        let preparing = tokio::task::spawn_blocking(move || {
            // Parsing needs nothing from the chunk before, so it overlaps with its mapping.
            let parsed = parse_all(&mapped);
            if let Some(turn) = turn {
                let _ = turn.recv(); // Err once the chunk before is mapped: its sender is gone
            }
            let mut prepared = fhir.prepare_parsed(&who, &mapped, parsed, false);
            drop(mapped_now);
            // An import holds what waits itself, not at commit (`hold` false), so the parsed
            // resources go here, on the thread that made them: freeing another thread's memory
            // costs more.
            prepared.placed = Vec::new();
            prepared
        });
        (gathered, Some((entries, preparing)))
    }

    /// Writes one prepared chunk of an import; returns once its events are durable.
    async fn write_chunk(&self, caller: &Caller, (entries, prepared): Preparing) -> Written {
        match prepared.await {
            Ok(prepared) => {
                let (outcomes, publishing) = self.commit_durable(caller, prepared, false).await;
                Written { entries, outcomes, publishing: Some(publishing) }
            }
            // Mapping panicked: a bug, reported for every line of the chunk, not a lost chunk.
            Err(e) => {
                tracing::error!(error = %e, "mapping a chunk failed");
                let issue = Issue::new("exception", "", "INTERNAL: mapping this line failed");
                let outcomes = entries
                    .iter()
                    .map(|_| EntryOutcome { issues: vec![issue.clone()], ..Default::default() })
                    .collect();
                Written { entries, outcomes, publishing: None }
            }
        }
    }

    /// Waits until a written chunk is in the read model and adds it to the summary; lines that
    /// wait for a reference go to `held`.
    async fn finish_chunk<F>(
        &self,
        written: Written,
        summary: &mut ImportSummary,
        held: &mut Vec<RawEntry>,
        progress: &mut F,
    ) where
        F: FnMut(&ImportSummary, &[(String, Vec<Issue>)]),
    {
        let Written { entries, mut outcomes, publishing } = written;
        if let Some(publishing) = publishing {
            self.publish(publishing, &entries, &mut outcomes).await;
        }
        // The mapping thread has let go of its share by now: the lines are moved, not copied.
        let entries = Arc::try_unwrap(entries).unwrap_or_else(|shared| shared.as_ref().clone());
        let mut failed = Vec::new();
        for (e, o) in entries.into_iter().zip(outcomes) {
            summary.events_appended += o.appended as u64;
            summary.duplicates_skipped += o.duplicates as u64;
            if o.ok() {
                continue;
            }
            if waits(&o.issues) {
                held.push(e);
            } else {
                summary.failed += 1;
                failed.push((e.path, o.issues));
            }
        }
        progress(summary, &failed);
    }

    /// Imports NDJSON, `chunk` lines at a time, calling `progress` after each chunk with the
    /// totals so far and each failed line's issues (at the end, also each line left held, with
    /// what it waits for). Lines whose references were not yet known
    /// are held and placed again once the whole file has been read.
    pub async fn import_lines<I, F>(&self, caller: &Caller, lines: I, chunk: usize, mut progress: F) -> ImportSummary
    where
        I: futures::Stream<Item = std::io::Result<String>> + Unpin,
        F: FnMut(&ImportSummary, &[(String, Vec<Issue>)]),
    {
        let mut summary = ImportSummary::default();
        let mut held: Vec<RawEntry> = Vec::new();
        let mut lines = lines.enumerate();
        // Chunks are named and mapped strictly in file order: a chunk's names must be in the alias
        // index before the next chunk is placed, or a resource sent again in the next chunk under
        // a new identifier would get a second id. Each mapping task drops its sender when it ends
        // (or panics), which lets the next one start.
        let mut mapped_before: Option<std::sync::mpsc::Receiver<()>> = None;
        // Chunks being parsed and mapped, in file order, while the oldest one is written: two
        // ahead, so that a chunk is parsed as soon as it is read, and the cores do not wait for
        // the end of a write (its last flush and projection) to start on the next.
        let mut preparing: std::collections::VecDeque<Preparing> = std::collections::VecDeque::new();
        // The chunk written last, being folded into the read model while the next is written.
        let mut written: Option<Written> = None;
        let mut next = self.read_chunk(caller, &mut lines, chunk, &mut mapped_before).await;
        loop {
            let (Gathered { entries: _, unreadable, end }, job) = next;
            if !unreadable.is_empty() {
                summary.failed += unreadable.len() as u64;
                progress(&summary, &unreadable);
            }
            if let Some(job) = job {
                summary.resources_read += job.0.len() as u64;
                preparing.push_back(job);
            }
            if end {
                if let Some(w) = written.take() {
                    self.finish_chunk(w, &mut summary, &mut held, &mut progress).await;
                }
                while let Some(job) = preparing.pop_front() {
                    let w = self.write_chunk(caller, job).await;
                    self.finish_chunk(w, &mut summary, &mut held, &mut progress).await;
                }
                break;
            }
            // Chunks are written in file order, each once the one before is durable (its facts
            // about a patient come after the earlier chunk's), while the one before is folded and
            // the next is read and starts its preparing.
            let oldest = if preparing.len() >= PREPARED_AHEAD { preparing.pop_front() } else { None };
            let previous = written.take();
            let finishing = async {
                if let Some(w) = previous {
                    self.finish_chunk(w, &mut summary, &mut held, &mut progress).await;
                }
            };
            let writing = async {
                match oldest {
                    Some(job) => Some(self.write_chunk(caller, job).await),
                    None => None,
                }
            };
            let reading = self.read_chunk(caller, &mut lines, chunk, &mut mapped_before);
            let ((), w, read) = futures::join!(finishing, writing, reading);
            (written, next) = (w, read);
        }
        // What waited for a later line: placed again, in rounds, until a round places nothing.
        while !held.is_empty() {
            let outcomes = self.ingest(caller, &held, false, false).await;
            let mut still = Vec::new();
            let mut placed_any = false;
            let mut failed = Vec::new();
            for (e, o) in held.drain(..).zip(outcomes) {
                summary.events_appended += o.appended as u64;
                summary.duplicates_skipped += o.duplicates as u64;
                if o.ok() {
                    summary.placed_after_waiting += 1;
                    placed_any = true;
                } else if o.appended > 0 || waits(&o.issues) {
                    placed_any |= o.appended > 0;
                    still.push(e);
                } else {
                    summary.failed += 1;
                    failed.push((e.path, o.issues));
                }
            }
            if !placed_any {
                // Waiting for what the file did not have: kept until it arrives.
                let outcomes = self.ingest(caller, &still, false, true).await;
                for (e, o) in still.into_iter().zip(outcomes) {
                    summary.events_appended += o.appended as u64;
                    if o.held {
                        summary.held += 1;
                        // Reported with what it waits for, though not a failure.
                        failed.push((e.path, o.issues));
                    } else if !o.ok() {
                        summary.failed += 1;
                        failed.push((e.path, o.issues));
                    }
                }
                progress(&summary, &failed);
                break;
            }
            progress(&summary, &failed);
            held = still;
        }
        if summary.events_appended > 0 {
            self.retry_held().await;
        }
        summary
    }
}

/// What became of one entry's facts: (entry, appended, duplicates, the refusal that stopped it).
type Placement = (usize, usize, usize, Option<Issue>);

/// A chunk of an import written, not yet in the read model.
struct Written {
    entries: Arc<Vec<RawEntry>>,
    outcomes: Vec<EntryOutcome>,
    publishing: Option<Publishing>,
}

/// A commit's durable events on their way into the read model (`Fhir::publish`).
struct Publishing {
    /// The names of the committed entries, found by later lookups until their facts are folded.
    recent: RecentNames,
    /// What the batches recorded unpublished wait for.
    unpublished: Unpublished,
    /// Entries that appended events through those batches (the shared ones were published).
    entries: Vec<usize>,
}

/// A chunk of an import being parsed and mapped: its lines and the task preparing them.
type Preparing = (Arc<Vec<RawEntry>>, tokio::task::JoinHandle<Prepared>);

/// One chunk of NDJSON lines, as `gather` reads it.
struct Gathered {
    entries: Vec<RawEntry>,
    /// Lines that could not be read, with why.
    unreadable: Vec<(String, Vec<Issue>)>,
    /// The file has ended.
    end: bool,
}

/// Reads up to `chunk` non-blank lines.
async fn gather<I>(lines: &mut futures::stream::Enumerate<I>, chunk: usize) -> Gathered
where
    I: futures::Stream<Item = std::io::Result<String>> + Unpin,
{
    let mut gathered = Gathered { entries: Vec::with_capacity(chunk), unreadable: Vec::new(), end: false };
    while gathered.entries.len() < chunk {
        let Some((n, line)) = lines.next().await else {
            gathered.end = true;
            break;
        };
        match line {
            Ok(l) if l.trim().is_empty() => {}
            Ok(l) => gathered.entries.push(RawEntry { path: format!("line {}", n + 1), full_url: None, json: l }),
            Err(e) => {
                gathered.unreadable.push((format!("line {}", n + 1), vec![Issue::new("structure", "", e.to_string())]))
            }
        }
    }
    gathered
}
