//! Recording several facts of one patient with one append (bulk ingest): each is decided against
//! the state the ones before it leave, under the same authorisation, id claims, future bound and
//! idempotency as a single recording. A refused fact stops the rest of its group.

use uuid::Uuid;

use forlop_domain::{decide, Command, References, StreamRef, StreamState};
use forlop_store::{ExpectedVersion, StoreError};

use crate::access::Caller;
use crate::error::EngineError;
use crate::id_claims::IdClaim;
use crate::record::{new_event, not_ahead, Recorded};
use crate::replay::decode;
use crate::retry::Contention;
use crate::Engine;

/// One fact of a [`Engine::record_batch`].
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub command: Command,
    /// Its idempotency key.
    pub event_id: Uuid,
    /// Facts of one group (one FHIR resource) stop at the group's first refusal.
    pub group: usize,
}

/// Each item's result, once settled.
type Settled = Vec<Option<Result<Recorded, EngineError>>>;

/// What one attempt of a batch came to.
enum Attempt {
    /// Settled; the position of the last event appended, if any.
    Done(Option<u64>),
    /// A fact was refused on the presumption that a stream the read model has not seen is empty:
    /// decide again on a read.
    ReadFirst,
}

/// What a batch recorded without waiting for the read model (`Engine::record_batch_unpublished`)
/// leaves to wait for: the position of its last new event, and the global ids it claimed, held
/// until that event is folded (`Engine::published`).
#[must_use = "the ids stay claimed, and the events unconfirmed, until `Engine::published` is awaited"]
#[derive(Default)]
pub struct Unpublished {
    position: Option<u64>,
    claims: Vec<IdClaim>,
}

impl Unpublished {
    /// Both batches' waits as one: the later position, every claim.
    pub fn and(mut self, other: Unpublished) -> Unpublished {
        self.position = self.position.max(other.position);
        self.claims.extend(other.claims);
        self
    }
}

/// Every result still open, settled as `error` says.
fn settle_rest(results: Settled, error: impl Fn() -> EngineError) -> Vec<Result<Recorded, EngineError>> {
    results.into_iter().map(|r| r.unwrap_or_else(|| Err(error()))).collect()
}

impl Engine {
    /// Records several facts about one patient with a single append: each is decided against
    /// the state the ones before it leave. Facts already recorded (by event id) are answered as
    /// retries, and a refused fact stops the rest of its `group` (one FHIR resource), not the
    /// others. Returns one result per item, in order. Items must all be on the same stream;
    /// registrations with a national id go through [`Engine::record`].
    pub async fn record_batch(&self, caller: &Caller, items: Vec<BatchItem>) -> Vec<Result<Recorded, EngineError>> {
        let (mut results, unpublished) = self.record_batch_unpublished(caller, items).await;
        if let Err(e) = self.published(unpublished).await {
            for r in results.iter_mut().filter(|r| r.as_ref().is_ok_and(|r| !r.deduplicated)) {
                *r = Err(e.clone());
            }
        }
        results
    }

    /// Waits until the events of a batch recorded unpublished are in the read model
    /// (read-your-writes), then lets go of the ids it claimed. An error says the events are
    /// durable but this node's read model does not follow the log.
    pub async fn published(&self, unpublished: Unpublished) -> Result<(), EngineError> {
        match unpublished.position {
            Some(position) => self.wait_projected(position).await,
            None => Ok(()),
        }
    }

    /// `record_batch`, returning once the new events are durable: a bulk import writes its next
    /// chunk while the read model folds this one, and awaits `published` before it relies on
    /// them (or reports the import done).
    pub async fn record_batch_unpublished(
        &self,
        caller: &Caller,
        items: Vec<BatchItem>,
    ) -> (Vec<Result<Recorded, EngineError>>, Unpublished) {
        let Some(first) = items.first() else { return (Vec::new(), Unpublished::default()) };
        let stream_ref = first.command.stream();
        let stream = stream_ref.name();
        if items.iter().any(|i| i.command.stream() != stream_ref) {
            let msg = "record_batch takes facts of one stream";
            return (items.iter().map(|_| Err(EngineError::Internal(msg.into()))).collect(), Unpublished::default());
        }
        if let Some(reason) = self.failures().into_iter().next() {
            let results = items
                .iter()
                .map(|_| Err(EngineError::Unavailable(format!("not accepting writes: {reason}"))))
                .collect();
            return (results, Unpublished::default());
        }
        let mut results: Settled = items.iter().map(|_| None).collect();
        let mut refs = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match self.authorize_record(caller, &item.command).await {
                Ok(()) => {}
                Err(e) => results[i] = Some(Err(e)),
            }
            refs.push(match self.references_from_model(&item.command).await {
                Ok(r) => r,
                Err(e) => {
                    results[i] = results[i].take().or(Some(Err(e)));
                    References::default()
                }
            });
        }
        let _turn = self.turns.of(&stream).await;
        let mut claims = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let (Some(new), Some(patient), None) =
                (item.command.new_id(), item.command.stream().patient_id(), &results[i])
            {
                match self.claim(new, patient) {
                    Ok(c) => claims.push(c),
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
        }
        let settled = results.clone();
        let mut position = None;
        let mut contention = Contention::on_stream(&stream);
        while contention.another() {
            results = settled.clone();
            let outcome =
                self.decide_and_append(caller, stream_ref, &items, &refs, &mut results, contention.retrying()).await;
            match outcome {
                Ok(Attempt::Done(last)) => {
                    position = last;
                    break;
                }
                // Refused on a presumption: the next attempt reads the stream.
                Ok(Attempt::ReadFirst) => {}
                Err(e) => {
                    if let Err(e) = contention.decide_again(e).await {
                        let e = EngineError::from(e);
                        return (settle_rest(results, || e.clone()), Unpublished::default());
                    }
                }
            }
        }
        let results = settle_rest(results, || contention.exhausted());
        (results, Unpublished { position, claims })
    }

    /// One attempt of `record_batch`: fills `results` for every item it settles and says what
    /// the attempt came to (`Attempt`).
    async fn decide_and_append(
        &self,
        caller: &Caller,
        stream_ref: StreamRef,
        items: &[BatchItem],
        refs: &[References],
        results: &mut [Option<Result<Recorded, EngineError>>],
        retrying: bool,
    ) -> Result<Attempt, StoreError> {
        let stream = &stream_ref.name();
        // A stream the read model has never seen is presumed empty, without a read. The store's
        // expected-version check confirms it (an append of another node, or one of a batch recorded
        // unpublished and not yet folded), and the retry reads; a fact the presumption refuses
        // (a referral for a patient registered by such an append) is decided again on a read.
        let unseen = !retrying && !self.model.load().holds(stream_ref);
        let read = if unseen {
            Ok((StreamState::default(), None, Default::default()))
        } else {
            self.stream_state_with_ids(stream).await
        };
        let (mut state, version, stored) = match read {
            Ok(x) => x,
            Err(e) => {
                for r in results.iter_mut().filter(|r| r.is_none()) {
                    *r = Some(Err(e.clone()));
                }
                return Ok(Attempt::Done(None));
            }
        };
        // A retry of a fact already on this stream is answered from it. An id used on another
        // stream is refused by the store's id index, and the next attempt asks it item by item.
        for (i, item) in items.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            let Some(e) = stored.get(&item.event_id) else {
                if retrying {
                    match self.replayed(caller, item.event_id, stream, &item.command).await {
                        Ok(Some(r)) => results[i] = Some(Ok(r)),
                        Ok(None) => {}
                        Err(e) => results[i] = Some(Err(e)),
                    }
                }
                continue;
            };
            let same = e.event_type == item.command.proposed_event().event_type()
                && decode(e).is_ok_and(|d| d == item.command.proposed_event());
            results[i] = Some(if same {
                Ok(Recorded::retry_of(item.event_id, e))
            } else {
                Err(EngineError::IdempotencyConflict(item.event_id))
            });
        }
        let metadata = caller.metadata();
        let mut refused_groups = std::collections::HashSet::new();
        let mut new = Vec::new();
        let mut placed = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if results[i].as_ref().is_some_and(|r| r.is_err()) {
                refused_groups.insert(item.group);
            }
            if results[i].is_some() {
                continue;
            }
            if refused_groups.contains(&item.group) {
                results[i] =
                    Some(Err(EngineError::invalid("not recorded: an earlier fact of the same resource was refused")));
                continue;
            }
            if let Err(e) = not_ahead(&item.command) {
                results[i] = Some(Err(e));
                refused_groups.insert(item.group);
                continue;
            }
            match decide(&state, &refs[i], item.command.clone()) {
                Ok(event) => {
                    state.apply(&event);
                    new.push(new_event(item.event_id, &event, metadata.clone()));
                    placed.push(i);
                }
                Err(_) if unseen => return Ok(Attempt::ReadFirst),
                Err(e) => {
                    results[i] = Some(Err(e.into()));
                    refused_groups.insert(item.group);
                }
            }
        }
        if new.is_empty() {
            return Ok(Attempt::Done(None));
        }
        let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let appended = self.store.append(stream, expected, new).await?;
        let last = appended.events.last().map(|c| c.position);
        for (i, c) in placed.into_iter().zip(appended.events) {
            results[i] = Some(Ok(Recorded {
                event_id: items[i].event_id,
                stream_version: c.version,
                position: c.position,
                deduplicated: false,
            }));
        }
        Ok(Attempt::Done(last))
    }
}
