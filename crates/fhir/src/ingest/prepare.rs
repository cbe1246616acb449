//! The first half of an ingest, all CPU: entries parsed, named (placed) and mapped to facts,
//! and their names made durable in the alias index. Nothing is recorded yet.

use std::collections::HashSet;

use forlop_engine::Caller;

use super::lookup::EngineLookup;
use super::outcomes::{EntryOutcome, PlacedAs};
use super::parsing::{parse_all, RawEntry, Unparsed};
use super::requests::{requested, Requested};
use super::Fhir;
use crate::identity::{records_entity, RecentNames};
use crate::mapping::{place, Fact, Mapper, Placed, Scope};
use crate::outcome::{Issue, IssueType};
use crate::resources::Resource;

/// The facts of one entry, and the rank they are recorded in (reference data first).
#[derive(Debug)]
pub(super) struct EntryFacts {
    /// The entry's index in its Bundle or chunk.
    pub entry: usize,
    /// `Resource::rank`: shared reference data (below 2) before patients' facts.
    pub rank: u8,
    pub facts: Vec<Fact>,
}

/// Entries parsed, named and mapped, not yet recorded (`Fhir::prepare`).
#[derive(Debug)]
pub struct Prepared {
    pub(super) outcomes: Vec<EntryOutcome>,
    /// Each entry's resource, named; emptied by a caller that commits without `hold`.
    pub(super) placed: Vec<Option<Placed>>,
    pub(super) facts: Vec<EntryFacts>,
    /// Nothing is to be recorded (a transaction with a bad entry, or the aliases not durable).
    pub(super) stop: bool,
    /// Derivable names of these entries, found by later lookups until the facts are recorded.
    pub(super) recent: RecentNames,
}

impl Fhir {
    /// Parses, names and maps the entries, and makes their names durable in the alias index.
    pub fn prepare(&self, caller: &Caller, entries: &[RawEntry], all_or_none: bool) -> Prepared {
        self.prepare_parsed(caller, entries, parse_all(entries), all_or_none)
    }

    /// `prepare` of entries already parsed (`parse_all`), one result per entry.
    pub(super) fn prepare_parsed(
        &self,
        caller: &Caller,
        entries: &[RawEntry],
        parsed: Vec<Result<Resource, Unparsed>>,
        all_or_none: bool,
    ) -> Prepared {
        let mut prepared = self.mapped(caller, entries, parsed);
        if prepared.stop || (all_or_none && prepared.outcomes.iter().any(|o| !o.ok())) {
            prepared.stop = true;
            return prepared;
        }
        self.name_durably(&mut prepared);
        prepared
    }

    /// Each entry placed and mapped, and every national id resolved logged; stopped if that
    /// log could not be written.
    fn mapped(&self, caller: &Caller, entries: &[RawEntry], parsed: Vec<Result<Resource, Unparsed>>) -> Prepared {
        let mut outcomes: Vec<EntryOutcome> = vec![EntryOutcome::default(); entries.len()];
        let mut placed: Vec<Option<Placed>> = Vec::with_capacity(entries.len());
        let mut facts: Vec<EntryFacts> = Vec::new();
        let lookup = EngineLookup::new(self, caller);
        for (i, (e, r)) in entries.iter().zip(parsed).enumerate() {
            let p = match r {
                Ok(r) => match requested(e.request.as_ref(), &r, &e.path, &lookup) {
                    Ok(Requested::Record) => {
                        place(r, e.full_url.as_deref(), e.path.clone(), &self.care_levels, &lookup)
                    }
                    Ok(Requested::Exists(id)) => {
                        // `ifNoneExist` matched: the entry answers with the resource it found.
                        outcomes[i].placed_as = Some(PlacedAs { type_name: r.type_name(), id });
                        placed.push(None);
                        continue;
                    }
                    Err(issue) => Err(vec![issue]),
                },
                Err(Unparsed::Failed(issue)) => Err(vec![issue]),
                Err(Unparsed::Skipped(type_name)) => {
                    outcomes[i].skipped = Some(type_name);
                    placed.push(None);
                    continue;
                }
            };
            match p {
                Ok(p) => {
                    outcomes[i].placed_as = Some(PlacedAs { type_name: p.resource.type_name(), id: p.id });
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
                Ok(f) => facts.push(EntryFacts { entry: i, rank: p.resource.rank(), facts: f }),
                Err(issues) => outcomes[i].issues = issues,
            }
        }
        // Every number resolved to a patient is an access record on that patient, durable
        // before any answer (even a refusal) or fact that relies on it: the patient sees it.
        if let Err(e) = self.log_resolved(caller, lookup.take_resolved()) {
            for o in outcomes.iter_mut() {
                o.issues = vec![Issue::refused("", &e)];
            }
            return Prepared { outcomes, placed, facts: Vec::new(), stop: true, recent: RecentNames::default() };
        }
        Prepared { outcomes, placed, facts, stop: false, recent: RecentNames::default() }
    }

    /// Names first, durable before any fact that relies on them is acknowledged; stops the
    /// ingest if the alias index could not be made durable.
    fn name_durably(&self, prepared: &mut Prepared) {
        let Prepared { outcomes, placed, facts, recent, .. } = prepared;
        // Entries whose facts record the entity named by their id (see `AliasIndex::insert`).
        let recorded: HashSet<usize> = facts
            .iter()
            .filter(|f| {
                let id = placed[f.entry].as_ref().map(|p| p.id);
                f.facts.iter().any(|f| id.is_some_and(|id| records_entity(&f.command, id)))
            })
            .map(|f| f.entry)
            .collect();
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
                    IssueType::Transient,
                    "",
                    format!("UNAVAILABLE: the FHIR alias index could not be made durable: {e}"),
                ));
            }
            prepared.stop = true;
        }
    }
}
