//! Recording one fact: authorised, decided against the stream's state as the log holds it under
//! the stream's turn, appended with the version it was decided on, and answered once the read
//! model shows it. A retry of a stored event is answered from the log.

use chrono::Utc;
use uuid::Uuid;

use forlop_domain::national_id::NationalId;
use forlop_domain::{decide, Command, Event, References};
use forlop_store::{ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError};

use crate::access::Caller;
use crate::error::EngineError;
use crate::replay::decode;
use crate::retry::Contention;
use crate::Engine;

/// How a recording names its idempotency key and concurrency expectation.
#[derive(Debug, Clone, Default)]
pub struct RecordOptions {
    pub event_id: Option<Uuid>,
    /// What the client expects of the stream; None lets the engine retry on concurrent writes.
    pub expected_version: Option<ExpectedVersion>,
}

/// What a successful recording returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub event_id: Uuid,
    pub stream_version: u64,
    pub position: u64,
    /// True when this was a retry of an already recorded event.
    pub deduplicated: bool,
}

impl Recorded {
    /// The answer to a retry of `stored`, recorded before under `event_id`: its original placing.
    pub(crate) fn retry_of(event_id: Uuid, stored: &RecordedEvent) -> Recorded {
        Recorded { event_id, stream_version: stored.version, position: stored.position, deduplicated: true }
    }
}

/// The domain has no clock: a fact dated more than a day ahead of this server's is refused here.
pub(crate) fn not_ahead(command: &Command) -> Result<(), EngineError> {
    let proposed = command.proposed_event();
    let bound = Utc::now() + chrono::Duration::hours(24);
    match proposed.clinical_time().filter(|t| *t > bound) {
        Some(t) => Err(EngineError::invalid(format!(
            "{} {t} is more than 24 h in the future (latest accepted: {bound})",
            proposed.clinical_time_field()
        ))),
        None => Ok(()),
    }
}

/// The store's form of a domain event. Registrations have no clinical time: they occur when recorded.
pub fn new_event(id: Uuid, event: &Event, metadata: Metadata) -> NewEvent {
    NewEvent {
        id,
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        occurred_at: event.clinical_time().unwrap_or_else(Utc::now),
        payload: event.to_payload(),
        metadata,
        recorded_at: None,
    }
}

impl Engine {
    /// Decides `command` against the current log and appends its event durably, if the caller
    /// may record it. A national id is sealed by the vault before it reaches the log.
    pub async fn record(
        &self,
        caller: &Caller,
        command: Command,
        national_id: Option<NationalId>,
        options: RecordOptions,
    ) -> Result<Recorded, EngineError> {
        match self.record_checked(caller, command, national_id, options).await {
            // An internal error while the node is failing (a read of a store that could not
            // write) is the failure itself: retryable elsewhere, not a bug to report.
            Err(EngineError::Internal(detail)) if !self.failures().is_empty() => {
                tracing::warn!(%detail, "write refused while failed");
                Err(EngineError::Unavailable(format!("not accepting writes: {}", self.failures().join("; "))))
            }
            other => other,
        }
    }

    async fn record_checked(
        &self,
        caller: &Caller,
        command: Command,
        national_id: Option<NationalId>,
        options: RecordOptions,
    ) -> Result<Recorded, EngineError> {
        if let Some(reason) = self.failures().into_iter().next() {
            return Err(EngineError::Unavailable(format!("not accepting writes: {reason}")));
        }
        self.authorize_record(caller, &command).await?;
        let stream = command.stream().name();
        let refs = self.references(&command).await?;
        let _turn = self.turns.of(&stream).await;
        let _claim = match (command.new_id(), command.stream().patient_id()) {
            (Some(new), Some(patient)) => Some(self.claim(new, patient)?),
            _ => None,
        };
        match (command, national_id) {
            (Command::RegisterPatient(e), Some(id)) => self.register_with_national_id(caller, e, id, options).await,
            (command, None) => self.record_locked(caller, command, &refs, options).await,
            (_, Some(_)) => Err(EngineError::invalid("only registerPatient takes a nationalId")),
        }
    }

    /// A retry of a stored event returns its original placing; the same id with other content
    /// is a conflict. Checked before deciding, since the retry would fail today's rules.
    pub(crate) async fn replayed(
        &self,
        caller: &Caller,
        id: Uuid,
        stream: &str,
        command: &Command,
    ) -> Result<Option<Recorded>, EngineError> {
        let Some(stored) = self.store.event_by_id(id).await? else { return Ok(None) };
        // Whether a guessed content matches someone else's fact would confirm that fact to a
        // caller who may not read it: such a caller is told only that the id is taken. A client's
        // retries of its own events are answered as always.
        if stored.metadata.actor != caller.actor() && !self.may_read_facts(caller, &stored.stream).await? {
            return Err(EngineError::IdempotencyConflict(id));
        }
        let proposed = command.proposed_event();
        let same =
            stored.stream == stream && stored.event_type == proposed.event_type() && decode(&stored)? == proposed;
        if !same {
            return Err(EngineError::IdempotencyConflict(id));
        }
        Ok(Some(Recorded::retry_of(id, &stored)))
    }

    /// Erasure: destroys the patient's data key, then records that it was done. Aggregates keep
    /// counting the pathway; the national id can no longer be opened by anyone.
    pub async fn forget_patient(
        &self,
        caller: &Caller,
        patient: Uuid,
        options: RecordOptions,
    ) -> Result<Recorded, EngineError> {
        let command = Command::ForgetPatient(forlop_domain::events::PatientForgotten { patient_id: patient });
        self.authorize_record(caller, &command).await?;
        let stream = command.stream().name();
        // A retry is answered from the log (`record_locked`: the original placing, or a conflict
        // for other content) without touching the key table: its key went before its event did.
        if let Some(id) = options.event_id {
            if self.store.event_by_id(id).await?.is_some() {
                let _turn = self.turns.of(&stream).await;
                return self.record_locked(caller, command, &References::default(), options).await;
            }
        }
        // Judged on the log, not this node's read model, which may not have folded another
        // node's registration yet. Forgotten before: refused as a patient never registered is
        // (the domain refuses every command on a forgotten stream alike), before the key table is
        // touched again.
        let (state, _) = self.stream_state(&stream).await?;
        if !state.exists || state.patient.forgotten {
            return Err(forlop_domain::DomainError::NotFound(format!("patient {patient} not found")).into());
        }
        // The key goes first: from then on the number finds no one, so no adapter can resolve it
        // to this patient while the event is on its way. The patient's other names (the FHIR
        // adapter's aliases and the ids it derives) are blocked by every node as soon as its read
        // model holds the patient without a live key or folds this event: they are resolved
        // against the log's read model, not kept here.
        self.vault()
            .forget(patient)
            .await
            .map_err(|e| EngineError::Unavailable(format!("the data key could not be destroyed: {e}")))?;
        let _turn = self.turns.of(&stream).await;
        self.record_locked(caller, command, &References::default(), options).await
    }

    /// Decides and appends one fact under its stream's turn, deciding again while other writers
    /// get there first (unless the client named the version it expects).
    pub(crate) async fn record_locked(
        &self,
        caller: &Caller,
        command: Command,
        refs: &References,
        options: RecordOptions,
    ) -> Result<Recorded, EngineError> {
        let stream = command.stream().name();
        let event_id = options.event_id.unwrap_or_else(Uuid::new_v4);
        let mut contention = Contention::on_stream(&stream);
        while contention.another() {
            // A retry of a stored event is answered from the log, before today's rules.
            if options.event_id.is_some() {
                if let Some(r) = self.replayed(caller, event_id, &stream, &command).await? {
                    return Ok(r);
                }
            }
            let (state, version) = self.stream_state(&stream).await?;
            if let Some(expected) = options.expected_version {
                let ok = match expected {
                    ExpectedVersion::Any => true,
                    ExpectedVersion::NoStream => version.is_none(),
                    ExpectedVersion::Exact(v) => version == Some(v),
                };
                if !ok {
                    return Err(StoreError::WrongExpectedVersion { stream, expected, current: version }.into());
                }
            }
            not_ahead(&command)?;
            let event = match decide(&state, refs, command.clone()) {
                Ok(event) => event,
                // A refusal may quote recorded facts (dates, therapists): only to callers who may read them.
                Err(e) if self.may_read_facts(caller, &stream).await? => return Err(e.into()),
                Err(e) => return Err(e.without_records().into()),
            };
            let new = new_event(event_id, &event, caller.metadata());
            let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            match self.store.append(&stream, expected, vec![new]).await {
                Ok(r) => {
                    let c = r.events[0];
                    self.wait_projected(c.position).await?;
                    tracing::debug!(%stream, event = event.event_type(), position = c.position, "recorded");
                    return Ok(Recorded {
                        event_id,
                        stream_version: c.version,
                        position: c.position,
                        deduplicated: r.deduplicated,
                    });
                }
                Err(StoreError::IdempotencyConflict { id }) => {
                    // A concurrent identical retry may have won the race.
                    return match self.replayed(caller, id, &stream, &command).await? {
                        Some(r) => Ok(r),
                        None => Err(EngineError::IdempotencyConflict(id)),
                    };
                }
                // Another node wrote to this stream in between: decide again on the new state.
                Err(e) if options.expected_version.is_none() => contention.decide_again(e).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(contention.exhausted())
    }
}
