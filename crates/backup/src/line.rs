//! One line of a segment file. Events are lines in the log's NDJSON export format (`forlop
//! export`), so a segment is also an export of its positions; access records are their position,
//! chain hash and the record as it is queried.

use chrono::{DateTime, Utc};
use forlop_store::access_log::{AccessRecord, StoredAccessRecord};
use forlop_store::{Metadata, NewEvent, RecordedEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An event with its full envelope and chain hash.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u16,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub hash: String,
    pub payload: Box<serde_json::value::RawValue>,
}

impl EventLine {
    /// The line of a stored event; Err when its payload is not UTF-8 JSON (the engine writes
    /// only JSON, so this names a damaged log).
    pub fn from_event(e: RecordedEvent) -> Result<EventLine, String> {
        let position = e.position;
        let payload = String::from_utf8(e.payload).map_err(|_| format!("position {position}: payload is not UTF-8"))?;
        Ok(EventLine {
            position: e.position,
            stream: e.stream,
            version: e.version,
            id: e.id,
            event_type: e.event_type,
            schema_version: e.schema_version,
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            actor: e.metadata.actor,
            correlation_id: e.metadata.correlation_id,
            causation_id: e.metadata.causation_id,
            hash: forlop_store::to_hex(&e.hash),
            payload: serde_json::value::RawValue::from_string(payload)
                .map_err(|_| format!("position {position}: payload is not JSON"))?,
        })
    }

    /// The stored event this line claims to be, its hash left zero (recompute it along the chain).
    pub fn to_recorded(&self) -> RecordedEvent {
        RecordedEvent {
            id: self.id,
            stream: self.stream.clone(),
            version: self.version,
            position: self.position,
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            metadata: Metadata {
                actor: self.actor.clone(),
                correlation_id: self.correlation_id,
                causation_id: self.causation_id,
            },
            payload: self.payload.get().as_bytes().to_vec(),
            hash: [0; 32],
        }
    }

    /// The event to append to reproduce this line: same id, same times, so the same hash.
    pub fn to_new_event(&self) -> NewEvent {
        NewEvent {
            id: self.id,
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            occurred_at: self.occurred_at,
            payload: self.payload.get().as_bytes().to_vec(),
            metadata: Metadata {
                actor: self.actor.clone(),
                correlation_id: self.correlation_id,
                causation_id: self.causation_id,
            },
            recorded_at: Some(self.recorded_at),
        }
    }
}

/// An access-log record with its position and chain hash.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct AccessLine {
    pub position: u64,
    pub hash: String,
    pub record: AccessRecord,
}

impl AccessLine {
    pub fn from_stored(s: StoredAccessRecord) -> AccessLine {
        AccessLine { position: s.position, hash: forlop_store::to_hex(&s.hash), record: s.record }
    }
}
