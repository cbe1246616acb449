//! Transactions: facts about several streams (reference data and patients) decided together
//! and appended all or none, as a FHIR `transaction` Bundle asks. Each fact is decided against
//! the log plus the facts before it in the transaction; one refusal records nothing.

use std::collections::HashMap;

use uuid::Uuid;

use forlop_domain::national_id::NationalId;
use forlop_domain::{decide, Command, DomainError, Event, References, StreamState};
use forlop_store::{ExpectedVersion, StreamAppend};

use crate::access::Caller;
use crate::error::EngineError;
use crate::record::{new_event, not_ahead, Recorded};
use crate::replay::decode;
use crate::retry::Contention;
use crate::Engine;

/// One fact of an [`Engine::record_transaction`].
#[derive(Debug, Clone)]
pub struct TransactionItem {
    pub command: Command,
    /// Its idempotency key.
    pub event_id: Uuid,
    /// For a registration: the patient's national id, sealed before it reaches the log.
    pub national_id: Option<NationalId>,
    /// A registration already made by another route (under another event id) counts as done
    /// rather than refusing the transaction.
    pub may_exist: bool,
}

/// What became of one fact of a transaction that was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transacted {
    /// Appended now, or (`deduplicated`) found recorded under its event id.
    Recorded(Recorded),
    /// A registration that another route had already made: nothing to append.
    AlreadyRegistered,
}

/// Why a transaction recorded nothing: the fact that was refused (None for the whole).
#[derive(Debug)]
pub struct TransactionRefused {
    pub item: Option<usize>,
    pub error: EngineError,
}

fn refused(item: usize) -> impl FnOnce(EngineError) -> TransactionRefused {
    move |error| TransactionRefused { item: Some(item), error }
}

fn whole(error: impl Into<EngineError>) -> TransactionRefused {
    TransactionRefused { item: None, error: error.into() }
}

/// One attempt's decisions: the appends to make, and for each fact its outcome or where its
/// event went (part, index in part).
struct Decided {
    parts: Vec<StreamAppend>,
    outcomes: Vec<Result<Transacted, (usize, usize)>>,
}

/// One stream's share of a decided transaction: its expected version and (event id, event)s.
type DecidedPart = (String, ExpectedVersion, Vec<(Uuid, Event)>);

impl Engine {
    /// Decides `items` in order, each against the log and the items before it, and appends all
    /// their events atomically, or none if any is refused. Retries of recorded facts (by event
    /// id) are answered from the log. Answers once the read model shows every appended event.
    pub async fn record_transaction(
        &self,
        caller: &Caller,
        items: Vec<TransactionItem>,
    ) -> Result<Vec<Transacted>, TransactionRefused> {
        match self.transaction_checked(caller, items).await {
            Err(TransactionRefused { item, error: EngineError::Internal(detail) }) if !self.failures().is_empty() => {
                tracing::warn!(%detail, "transaction refused while failed");
                let reason = self.failures().join("; ");
                Err(TransactionRefused {
                    item,
                    error: EngineError::Unavailable(format!("not accepting writes: {reason}")),
                })
            }
            other => other,
        }
    }

    async fn transaction_checked(
        &self,
        caller: &Caller,
        items: Vec<TransactionItem>,
    ) -> Result<Vec<Transacted>, TransactionRefused> {
        if let Some(reason) = self.failures().into_iter().next() {
            return Err(whole(EngineError::Unavailable(format!("not accepting writes: {reason}"))));
        }
        for (i, item) in items.iter().enumerate() {
            self.authorize_record(caller, &item.command).await.map_err(refused(i))?;
            if item.national_id.is_some() && !matches!(item.command, Command::RegisterPatient(_)) {
                return Err(refused(i)(EngineError::invalid("only registerPatient takes a nationalId")));
            }
        }
        let _turns = self.turns.all(items.iter().map(|i| i.command.stream().name())).await;
        let mut claims = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let (Some(new), Some(patient)) = (item.command.new_id(), item.command.stream().patient_id()) {
                claims.push(self.claim(new, patient).map_err(refused(i))?);
            }
        }
        let mut contention = Contention::on_transaction();
        while contention.another() {
            let Decided { parts, outcomes } = self.decide_transaction(caller, &items).await?;
            if parts.is_empty() {
                return Ok(outcomes.into_iter().map(|o| o.unwrap_or(Transacted::AlreadyRegistered)).collect());
            }
            match self.store().append_all(parts).await {
                Ok(appended) => {
                    let last = appended.iter().flat_map(|r| r.events.last()).map(|c| c.position).max();
                    self.wait_projected(last.unwrap_or(0)).await.map_err(whole)?;
                    let settled = outcomes.into_iter().zip(&items).map(|(o, item)| match o {
                        Ok(t) => t,
                        Err((part, k)) => {
                            let c = appended[part].events[k];
                            Transacted::Recorded(Recorded {
                                event_id: item.event_id,
                                stream_version: c.version,
                                position: c.position,
                                deduplicated: appended[part].deduplicated,
                            })
                        }
                    });
                    return Ok(settled.collect());
                }
                // Another writer got there first (or stored one of these ids): decide again.
                Err(e) => contention.decide_again(e).await.map_err(whole)?,
            }
        }
        Err(whole(contention.exhausted()))
    }

    /// One attempt: every item decided against the log as it is now and the items before it.
    async fn decide_transaction(
        &self,
        caller: &Caller,
        items: &[TransactionItem],
    ) -> Result<Decided, TransactionRefused> {
        let mut streams: HashMap<String, (StreamState, Option<u64>)> = HashMap::new();
        let mut services = HashMap::new();
        let mut therapists = HashMap::new();
        // Each part's events stay domain events until every fact is decided: national ids are
        // sealed only then, so a refused transaction leaves no data key behind.
        let mut parts: Vec<DecidedPart> = Vec::new();
        let mut to_seal = Vec::new();
        let mut outcomes = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let stream = item.command.stream().name();
            // A retry of a recorded fact is answered from the log, before today's rules.
            if let Some(stored) = self.store().event_by_id(item.event_id).await.map_err(whole)? {
                let same = match (&item.command, &item.national_id) {
                    (Command::RegisterPatient(e), Some(id)) => self.same_registration(&stored, e, id).await,
                    (command, _) => decode(&stored).map(|d| {
                        stored.stream == stream
                            && stored.event_type == command.proposed_event().event_type()
                            && d == command.proposed_event()
                    }),
                }
                .map_err(refused(i))?;
                if !same {
                    return Err(refused(i)(EngineError::IdempotencyConflict(item.event_id)));
                }
                outcomes.push(Ok(Transacted::Recorded(Recorded::retry_of(item.event_id, &stored))));
                continue;
            }
            if !streams.contains_key(&stream) {
                let state = self.stream_state(&stream).await.map_err(whole)?;
                streams.insert(stream.clone(), state);
            }
            let mut refs = self.references_from_model(&item.command).await.map_err(refused(i))?;
            if let Some(id) = item.command.referenced_service() {
                refs.service = refs.service.or_else(|| services.get(&id).cloned());
            }
            if let Some(id) = item.command.referenced_therapist() {
                refs.therapist = refs.therapist.or_else(|| therapists.get(&id).cloned());
            }
            let (state, version) = streams.get_mut(&stream).expect("loaded above");
            let decided = self.decide_item(caller, item, state, &refs).await;
            let event = match decided {
                Ok(event) => event,
                Err(EngineError::Domain(DomainError::AlreadyExists(_))) if item.may_exist => {
                    outcomes.push(Ok(Transacted::AlreadyRegistered));
                    continue;
                }
                Err(e) => return Err(refused(i)(e)),
            };
            state.apply(&event);
            match &event {
                Event::ServiceRegistered(s) => drop(services.insert(s.service_id, s.clone())),
                Event::TherapistRegistered(t) => drop(therapists.insert(t.therapist_id, t.clone())),
                _ => {}
            }
            match parts.last_mut() {
                Some((last, _, events)) if *last == stream => events.push((item.event_id, event)),
                _ => {
                    let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                    parts.push((stream.clone(), expected, vec![(item.event_id, event)]));
                }
            }
            *version = Some(version.map_or(0, |v| v + 1));
            let at = (parts.len() - 1, parts.last().map_or(0, |p| p.2.len() - 1));
            if let (Command::RegisterPatient(_), Some(id)) = (&item.command, &item.national_id) {
                to_seal.push((i, at, id));
            }
            outcomes.push(Err(at));
        }
        for (i, (part, k), id) in to_seal {
            if let Event::PatientRegistered(e) = &mut parts[part].2[k].1 {
                e.national_id = Some(self.seal_national_id(caller, e.patient_id, id).await.map_err(refused(i))?);
            }
        }
        let metadata = caller.metadata();
        let parts = parts
            .into_iter()
            .map(|(stream, expected, events)| StreamAppend {
                stream,
                expected,
                events: events.iter().map(|(id, e)| new_event(*id, e, metadata.clone())).collect(),
            })
            .collect();
        Ok(Decided { parts, outcomes })
    }

    /// Decides one item against its stream's state. A new patient's national id must not be
    /// another patient's; it is sealed once the whole transaction is decided.
    async fn decide_item(
        &self,
        caller: &Caller,
        item: &TransactionItem,
        state: &StreamState,
        refs: &References,
    ) -> Result<Event, EngineError> {
        not_ahead(&item.command)?;
        if let (Command::RegisterPatient(e), Some(id)) = (&item.command, &item.national_id) {
            if !state.exists {
                self.check_national_id_free(caller, e.patient_id, id).await?;
            }
        }
        Ok(decide(state, refs, item.command.clone())?)
    }
}
