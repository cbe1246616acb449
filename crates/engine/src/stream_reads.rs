//! What a decision is taken on, read from the log: a stream's folded state and version, and the
//! reference data (a service, a therapist) a command names.

use std::collections::HashMap;

use uuid::Uuid;

use forlop_domain::events::{ServiceRegistered, TherapistRegistered};
use forlop_domain::{Command, Event, References, StreamRef, StreamState};
use forlop_store::RecordedEvent;

use crate::error::EngineError;
use crate::replay::decode;
use crate::Engine;

/// Folds one stored event into a stream's decision state.
fn fold_into(state: &mut StreamState, e: &RecordedEvent) -> Result<(), EngineError> {
    match Event::decode(&e.event_type, e.schema_version, &e.payload) {
        Ok(event) => state.apply(&event),
        // A type (or version) a newer forlop wrote: it carries no rule this build knows, so it
        // must not stop the stream from being decided.
        Err(forlop_domain::DecodeError::UnknownType { event_type, schema_version }) => {
            metrics::counter!("forlop_events_unknown_total", "type" => event_type.clone()).increment(1);
            tracing::warn!(position = e.position, %event_type, schema_version, "unknown event type skipped while deciding");
        }
        Err(err) => return Err(EngineError::Internal(format!("position {}: {err}", e.position))),
    }
    Ok(())
}

/// A stream's state, its version, and its events by id.
pub(crate) type StateWithIds = (StreamState, Option<u64>, HashMap<Uuid, RecordedEvent>);

impl Engine {
    /// `stream_state`, with the stream's events by id (to recognise retries without a lookup).
    pub(crate) async fn stream_state_with_ids(&self, stream: &str) -> Result<StateWithIds, EngineError> {
        let events = self.store.read_stream(stream, 0, usize::MAX).await?;
        let mut state = StreamState::default();
        let version = events.last().map(|e| e.version);
        for e in &events {
            fold_into(&mut state, e)?;
        }
        Ok((state, version, events.into_iter().map(|e| (e.id, e)).collect()))
    }

    pub(crate) async fn stream_state(&self, stream: &str) -> Result<(StreamState, Option<u64>), EngineError> {
        let mut state = StreamState::default();
        let mut version = None;
        let mut from = 0;
        loop {
            let page = self.store.read_stream(stream, from, 4096).await?;
            let Some(last) = page.last() else { break };
            from = last.version + 1;
            version = Some(last.version);
            for e in &page {
                fold_into(&mut state, e)?;
            }
        }
        Ok((state, version))
    }

    async fn reference<T>(&self, stream: StreamRef, pick: fn(Event) -> Option<T>) -> Result<Option<T>, EngineError> {
        let first = self.store.read_stream(&stream.name(), 0, 1).await?;
        match first.first() {
            None => Ok(None),
            Some(e) => Ok(pick(decode(e)?)),
        }
    }

    /// The reference data `command` names, from the streams that registered it.
    pub(crate) async fn references(&self, command: &Command) -> Result<References, EngineError> {
        let mut refs = References::default();
        if let Some(id) = command.referenced_service() {
            refs.service = self
                .reference(StreamRef::Service(id), |e| match e {
                    Event::ServiceRegistered(s) => Some(s),
                    _ => None,
                })
                .await?;
        }
        if let Some(id) = command.referenced_therapist() {
            refs.therapist = self
                .reference(StreamRef::Therapist(id), |e| match e {
                    Event::TherapistRegistered(t) => Some(t),
                    _ => None,
                })
                .await?;
        }
        Ok(refs)
    }

    /// `references`, from the read model when it already holds them (services and therapists
    /// never change once registered), else from their streams.
    pub(crate) async fn references_from_model(&self, command: &Command) -> Result<References, EngineError> {
        let model = self.model();
        let service = command.referenced_service().map(|id| model.services.get(&id).cloned());
        let therapist = command.referenced_therapist().map(|id| model.therapists.get(&id).cloned());
        if matches!(service, Some(None)) || matches!(therapist, Some(None)) {
            return self.references(command).await;
        }
        Ok(References {
            service: service.flatten().map(|s| ServiceRegistered {
                service_id: s.id,
                name: s.name,
                care_level: s.care_level,
            }),
            therapist: therapist.flatten().map(|t| TherapistRegistered {
                therapist_id: t.id,
                name: t.name,
                hpr_number: t.hpr_number,
            }),
        })
    }
}
