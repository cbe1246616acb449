//! The second half of an ingest: the prepared facts recorded, as one transaction or entry by
//! entry, then published (in the read model) before the answer names what became of each.

use std::collections::BTreeMap;

use forlop_engine::{Caller, EngineError, Transacted, TransactionItem, TransactionRefused, Unpublished};
use uuid::Uuid;

use super::outcomes::{waits, EntryOutcome};
use super::parsing::RawEntry;
use super::placing::registers;
use super::prepare::{EntryFacts, Prepared};
use super::Fhir;
use crate::identity::RecentNames;
use crate::outcome::Issue;

/// A commit's durable events on their way into the read model (`Fhir::publish`).
pub(super) struct Publishing {
    /// The names of the committed entries, found by later lookups until their facts are folded.
    recent: RecentNames,
    /// What the batches recorded unpublished wait for.
    unpublished: Unpublished,
    /// Entries that appended events through those batches (the shared ones were published).
    entries: Vec<usize>,
}

impl Fhir {
    /// Records the prepared facts (and, with `hold`, keeps what waits for a reference).
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
    pub(super) async fn commit_durable(
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
        facts.sort_by_key(|f| (f.rank, f.entry));
        if all_or_none {
            self.record_transaction(caller, facts, &mut outcomes).await;
        } else {
            let (unpublished, entries) = self.record_entries(caller, facts, &mut outcomes).await;
            publishing.unpublished = unpublished;
            publishing.entries = entries;
        }
        (outcomes, publishing)
    }

    /// Every fact decided in order and appended together; one refusal records nothing.
    async fn record_transaction(&self, caller: &Caller, facts: Vec<EntryFacts>, outcomes: &mut [EntryOutcome]) {
        let mut entry_of = Vec::new();
        let mut patient_of = Vec::new();
        let mut items = Vec::new();
        for EntryFacts { entry, facts, .. } in facts {
            for f in facts {
                entry_of.push(entry);
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
                    o.issues.push(Issue::refused("", &error));
                }
            }
        }
    }

    /// Reference data first, then each patient's facts in order, patients side by side.
    /// Returns what the patients' batches wait for to be published, and the entries they
    /// appended for.
    async fn record_entries(
        &self,
        caller: &Caller,
        facts: Vec<EntryFacts>,
        outcomes: &mut [EntryOutcome],
    ) -> (Unpublished, Vec<usize>) {
        let (shared, patients): (Vec<_>, Vec<_>) = facts.into_iter().partition(|f| f.rank < 2);
        let done = self.place_shared(caller, shared).await;
        let mut by_patient: BTreeMap<Uuid, Vec<EntryFacts>> = BTreeMap::new();
        for f in patients {
            let patient = f.facts.iter().find_map(|f| f.command.stream().patient_id()).unwrap_or_default();
            by_patient.entry(patient).or_default().push(f);
        }
        let (per_patient, unpublished) = self.place_patients(caller, by_patient.into_values().collect()).await;
        let appended = per_patient.iter().filter(|p| p.appended > 0).map(|p| p.entry).collect();
        for p in done.into_iter().chain(per_patient) {
            let o = &mut outcomes[p.entry];
            o.appended += p.appended;
            o.duplicates += p.duplicates;
            if let Some(issue) = p.refusal {
                o.issues.push(issue);
            }
        }
        (unpublished, appended)
    }

    /// Waits until a commit's events are in the read model, then lets its names go (from then
    /// on found by the read model), names each issue's entry and marks what was unchanged.
    pub(super) async fn publish(&self, publishing: Publishing, entries: &[RawEntry], outcomes: &mut [EntryOutcome]) {
        let Publishing { recent, unpublished, entries: appended } = publishing;
        if let Err(e) = self.engine.published(unpublished).await {
            // Durable, but this node's read model does not follow: said for each entry it holds.
            for i in appended {
                outcomes[i].issues.push(Issue::refused("", &e));
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

    /// An engine refusal of a fact about `patient`, in the words the caller may read.
    pub(super) fn refusal(&self, caller: &Caller, patient: Option<Uuid>, e: &EngineError) -> Issue {
        match patient {
            Some(p) if !self.may_read(caller, p) => super::outcomes::withheld_issue("", e),
            _ => Issue::refused("", e),
        }
    }
}
