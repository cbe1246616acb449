//! Recording an entry's facts one by one, or a patient's facts from many entries as one
//! batch, patients side by side.

use forlop_domain::{Command, DomainError};
use forlop_engine::{BatchItem, Caller, EngineError, RecordOptions, Unpublished};
use futures::StreamExt;

use super::prepare::EntryFacts;
use super::Fhir;
use crate::mapping::Fact;
use crate::outcome::{Issue, IssueType};

/// Patients whose facts are placed at the same time in a batch or an import: a chunk's worth,
/// so that they share a few group commits of the log.
const PARALLEL_PATIENTS: usize = 4096;
/// Tasks a batch's or import chunk's patients are placed on: one per worker of a small server.
const PATIENT_TASKS: usize = 4;

/// What became of one entry's facts.
#[derive(Debug)]
pub(super) struct Placement {
    pub entry: usize,
    pub appended: usize,
    pub duplicates: usize,
    /// The refusal that stopped the entry.
    pub refusal: Option<Issue>,
}

impl Placement {
    fn new(entry: usize) -> Placement {
        Placement { entry, appended: 0, duplicates: 0, refusal: None }
    }
}

/// A fact placed, or why not.
enum Placing {
    Appended,
    Duplicate,
    Refused(Issue),
}

/// Registrations: one made before by another route (a GraphQL mutation) is the same entity.
pub(super) fn registers(command: &Command) -> bool {
    matches!(command, Command::RegisterPatient(_) | Command::RegisterService(_) | Command::RegisterTherapist(_))
}

impl Fhir {
    /// Entries of shared reference data (services, therapists), each on its own, side by side.
    pub(super) async fn place_shared(&self, caller: &Caller, shared: Vec<EntryFacts>) -> Vec<Placement> {
        futures::stream::iter(shared.into_iter().map(|f| self.place_entry(caller, f.entry, f.facts)))
            .buffer_unordered(PARALLEL_PATIENTS)
            .collect::<Vec<_>>()
            .await
    }

    /// Patients placed side by side, on `PATIENT_TASKS` tasks: their facts are decided on every
    /// worker of the runtime, not only on the one that runs the commit. Returns once the facts
    /// are durable, with what waits for their publication.
    pub(super) async fn place_patients(
        &self,
        caller: &Caller,
        patients: Vec<Vec<EntryFacts>>,
    ) -> (Vec<Placement>, Unpublished) {
        let per_task = patients.len().div_ceil(PATIENT_TASKS).max(1);
        let mut tasks = Vec::new();
        let mut patients = patients.into_iter().peekable();
        while patients.peek().is_some() {
            let share: Vec<_> = patients.by_ref().take(per_task).collect();
            let entries: Vec<usize> = share.iter().flatten().map(|f| f.entry).collect();
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
                Err(_) => placed.extend(entries.into_iter().map(|entry| Placement {
                    refusal: Some(Issue::new(IssueType::Transient, "", "UNAVAILABLE: the server is shutting down")),
                    ..Placement::new(entry)
                })),
            }
        }
        (placed, unpublished)
    }

    /// One patient's facts from several entries, in order, with one append: a registration with
    /// a national id first (through the vault), then the rest as one batch in which each entry
    /// stops at its first refusal. Returns once the batch is durable, with what waits for its
    /// publication.
    async fn place_patient(&self, caller: &Caller, entries: Vec<EntryFacts>) -> (Vec<Placement>, Unpublished) {
        let mut out: Vec<Placement> = entries.iter().map(|f| Placement::new(f.entry)).collect();
        let patient = entries.iter().flat_map(|f| &f.facts).find_map(|f| f.command.stream().patient_id());
        let mut items = Vec::new();
        for (k, EntryFacts { facts, .. }) in entries.into_iter().enumerate() {
            for f in facts {
                if out[k].refusal.is_some() {
                    break;
                }
                if f.national_id.is_some() {
                    match self.place_fact(caller, f).await {
                        Placing::Appended => out[k].appended += 1,
                        Placing::Duplicate => out[k].duplicates += 1,
                        Placing::Refused(issue) => out[k].refusal = Some(issue),
                    }
                    continue;
                }
                items.push(BatchItem { command: f.command, event_id: f.event_id, group: k });
            }
        }
        let items: Vec<BatchItem> = items.into_iter().filter(|it| out[it.group].refusal.is_none()).collect();
        let kinds: Vec<BatchKind> = items.iter().map(BatchKind::of).collect();
        let (results, unpublished) = self.engine.record_batch_unpublished(caller, items).await;
        for (kind, r) in kinds.into_iter().zip(results) {
            let o = &mut out[kind.group];
            if o.refusal.is_some() {
                continue;
            }
            match r {
                Ok(r) if r.deduplicated => o.duplicates += 1,
                Ok(_) => o.appended += 1,
                Err(EngineError::Domain(DomainError::AlreadyExists(_))) if kind.registers_patient => o.duplicates += 1,
                // Its admission was recorded meanwhile (an earlier version of the Encounter, still
                // being written when this one was mapped): mapped again later, it is a discharge.
                Err(EngineError::Domain(DomainError::AlreadyExists(_))) if kind.stay => {
                    o.refusal = Some(Issue::new(
                        IssueType::NotFound,
                        "",
                        "the stay's admission was being recorded; placed again",
                    ))
                }
                Err(e) => o.refusal = Some(self.refusal(caller, patient, &e)),
            }
        }
        (out, unpublished)
    }

    /// One entry's facts in order; the first refusal stops that entry.
    async fn place_entry(&self, caller: &Caller, entry: usize, facts: Vec<Fact>) -> Placement {
        let mut placement = Placement::new(entry);
        for f in facts {
            match self.place_fact(caller, f).await {
                Placing::Appended => placement.appended += 1,
                Placing::Duplicate => placement.duplicates += 1,
                Placing::Refused(issue) => {
                    placement.refusal = Some(issue);
                    break;
                }
            }
        }
        placement
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
}

/// What a batch item's refusal as already existing means: its entry and what it records.
struct BatchKind {
    group: usize,
    registers_patient: bool,
    stay: bool,
}

impl BatchKind {
    fn of(item: &BatchItem) -> BatchKind {
        BatchKind {
            group: item.group,
            registers_patient: matches!(item.command, Command::RegisterPatient(_)),
            stay: matches!(item.command, Command::RecordStay { .. }),
        }
    }
}
