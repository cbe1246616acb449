//! The NDJSON form of the log: one event per line with its full envelope, in global order.
//! Import appends each event under its original id and recording time, so importing an export
//! into an empty store reproduces positions and hashes exactly, and importing twice adds nothing.

use std::io::{BufRead, Write};

use anyhow::Context;
use chrono::{DateTime, Utc};
use forlop_store::{EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Line {
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

impl Line {
    fn from_event(e: RecordedEvent) -> anyhow::Result<Line> {
        let payload = String::from_utf8(e.payload).context("payload is not UTF-8")?;
        Ok(Line {
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
            payload: serde_json::value::RawValue::from_string(payload).context("payload is not JSON")?,
        })
    }
}

pub async fn export(store: &dyn EventStore, out: &mut impl Write) -> anyhow::Result<u64> {
    let mut from = 0;
    loop {
        let page = store.read_all(from, 4096).await?;
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        for e in page {
            serde_json::to_writer(&mut *out, &Line::from_event(e)?)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(from)
}

/// Returns (events read, events newly written).
pub async fn import(store: &dyn EventStore, input: impl BufRead) -> anyhow::Result<(u64, u64)> {
    let (mut read, mut written) = (0, 0);
    // Consecutive events of one stream go in one append, as they were most likely written.
    let mut pending: Option<(String, Vec<NewEvent>)> = None;
    let flush = |batch: Option<(String, Vec<NewEvent>)>| async {
        let Some((stream, events)) = batch else { return anyhow::Ok(0) };
        let n = events.len() as u64;
        let r = store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .with_context(|| format!("appending to {stream}"))?;
        Ok(if r.deduplicated { 0 } else { n })
    };
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(&line).with_context(|| format!("line {}: not an exported event", i + 1))?;
        read += 1;
        let event = NewEvent {
            id: l.id,
            event_type: l.event_type,
            schema_version: l.schema_version,
            occurred_at: l.occurred_at,
            payload: l.payload.get().as_bytes().to_vec(),
            metadata: Metadata { actor: l.actor, correlation_id: l.correlation_id, causation_id: l.causation_id },
            recorded_at: Some(l.recorded_at),
        };
        match &mut pending {
            Some((stream, events)) if *stream == l.stream => events.push(event),
            _ => {
                written += flush(pending.take()).await?;
                pending = Some((l.stream, vec![event]));
            }
        }
    }
    written += flush(pending.take()).await?;
    Ok((read, written))
}
