//! Placing appends, shared by every backend: the canonical bytes an event's hash covers, and the
//! checks and placing of one group of appends (idempotency, expected version, positions and the
//! chain). A backend supplies what is already stored (`Stored`) and writes what is planned.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::hash::{chain_hash, Hash};
use crate::*;

pub(crate) const MAX_STREAM_NAME: usize = 256;

/// The canonical bytes of an event (postcard): what the chain hash covers, on every backend.
#[derive(Serialize, Deserialize)]
pub(crate) struct Canonical<'a> {
    pub(crate) id: [u8; 16],
    pub(crate) stream: &'a str,
    pub(crate) version: u64,
    pub(crate) position: u64,
    pub(crate) event_type: &'a str,
    pub(crate) schema_version: u16,
    pub(crate) occurred_at_ns: i64,
    pub(crate) recorded_at_ns: i64,
    pub(crate) actor: &'a str,
    pub(crate) correlation_id: Option<[u8; 16]>,
    pub(crate) causation_id: Option<[u8; 16]>,
    #[serde(borrow)]
    pub(crate) payload: &'a [u8],
}

pub(crate) fn nanos(t: DateTime<Utc>) -> Result<i64, StoreError> {
    t.timestamp_nanos_opt().ok_or_else(|| StoreError::InvalidAppend(format!("time {t} is outside 1677-2262")))
}

/// The chain hash of `e` after `previous`: what `append` stored for it, on any backend. Lets an
/// importer check an exported log before appending anything.
pub fn event_hash(previous: &Hash, e: &RecordedEvent) -> Result<Hash, StoreError> {
    let c = Canonical {
        id: *e.id.as_bytes(),
        stream: &e.stream,
        version: e.version,
        position: e.position,
        event_type: &e.event_type,
        schema_version: e.schema_version,
        occurred_at_ns: nanos(e.occurred_at)?,
        recorded_at_ns: nanos(e.recorded_at)?,
        actor: &e.metadata.actor,
        correlation_id: e.metadata.correlation_id.map(|u| *u.as_bytes()),
        causation_id: e.metadata.causation_id.map(|u| *u.as_bytes()),
        payload: &e.payload,
    };
    let bytes = postcard::to_stdvec(&c).map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(chain_hash(previous, &bytes))
}

pub(crate) fn validate_stream_name(stream: &str) -> Result<(), StoreError> {
    if stream.is_empty() || stream.len() > MAX_STREAM_NAME || stream.as_bytes().contains(&0) {
        return Err(StoreError::InvalidAppend(format!("stream name must be 1 to {MAX_STREAM_NAME} bytes without NUL")));
    }
    Ok(())
}

/// One append waiting for its group: one or more streams' events, placed all or none.
pub(crate) struct Request {
    pub(crate) parts: Vec<StreamAppend>,
    pub(crate) reply: oneshot::Sender<Result<Vec<AppendResult>, StoreError>>,
}

impl Request {
    pub(crate) fn events(&self) -> impl Iterator<Item = &NewEvent> {
        self.parts.iter().flat_map(|p| p.events.iter())
    }
}

/// What is already stored, as the planner needs it.
pub(crate) trait Stored {
    /// The stored event with this id, if any.
    fn by_id(&mut self, id: Uuid) -> Result<Option<RecordedEvent>, StoreError>;
    /// The version of the stream's last stored event.
    fn stream_version(&mut self, stream: &str) -> Result<Option<u64>, StoreError>;
    /// Whether the stream has any stored event (a store may answer this more cheaply).
    fn has_stream(&mut self, stream: &str) -> Result<bool, StoreError> {
        Ok(self.stream_version(stream)?.is_some())
    }
}

/// The head of the chain: the next position and the hash to chain from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) position: u64,
    pub(crate) hash: Hash,
}

/// One append's new events, placed: their canonical records framed as
/// `[u32 LE length][canonical bytes][SHA-256 chain hash]` one after another, and where each went.
pub(crate) struct Placed {
    pub(crate) first_version: u64,
    pub(crate) first_position: u64,
    pub(crate) framed: Vec<u8>,
    pub(crate) committed: Vec<Committed>,
    pub(crate) hashes: Vec<Hash>,
    /// The store's clock for events that do not carry their own recording time.
    pub(crate) now: DateTime<Utc>,
}

/// Plans the appends of one group in order, each against what is stored plus the earlier
/// appends of the same group. `head` moves past every placed append.
#[derive(Default)]
pub(crate) struct GroupPlan {
    versions: HashMap<String, u64>,
    /// Event id -> (request, part, event index, placing), to recognise retries within a group.
    events: HashMap<Uuid, ((usize, usize, usize), Committed)>,
}

/// One part of a request, planned: its result, and what to write (None for a retry).
pub(crate) type PlannedPart = (AppendResult, Option<Placed>);

impl GroupPlan {
    /// Validates request `i` of `group` and places its parts after `head`, all or none: a part
    /// that fails undoes the parts placed before it.
    pub(crate) fn plan(
        &mut self,
        group: &[Request],
        i: usize,
        stored: &mut impl Stored,
        head: &mut Head,
    ) -> Result<Vec<PlannedPart>, StoreError> {
        let parts = &group[i].parts;
        if parts.is_empty() {
            return Err(StoreError::InvalidAppend("an append needs at least one event".into()));
        }
        let mut ids = std::collections::HashSet::new();
        if let Some(e) = group[i].events().find(|e| !ids.insert(e.id)) {
            return Err(StoreError::InvalidAppend(format!("event id {} appears twice in one append", e.id)));
        }
        let (start, mut undo) = (*head, Vec::new());
        let mut planned = Vec::with_capacity(parts.len());
        for p in 0..parts.len() {
            match self.plan_part(group, (i, p), stored, head) {
                Ok((result, placed)) => {
                    if let Some(placed) = &placed {
                        undo.push((parts[p].stream.as_str(), placed.first_version.checked_sub(1), p));
                    }
                    planned.push((result, placed));
                }
                Err(e) => {
                    for (stream, version, p) in undo.into_iter().rev() {
                        // The version before the part: what is stored, or an earlier append's.
                        match version {
                            Some(v) => self.versions.insert(stream.to_owned(), v),
                            None => self.versions.remove(stream),
                        };
                        for e in &parts[p].events {
                            self.events.remove(&e.id);
                        }
                    }
                    *head = start;
                    return Err(e);
                }
            }
        }
        Ok(planned)
    }

    /// Places one part (one stream's events) of request `at.0`.
    fn plan_part(
        &mut self,
        group: &[Request],
        at: (usize, usize),
        stored: &mut impl Stored,
        head: &mut Head,
    ) -> Result<PlannedPart, StoreError> {
        let req = &group[at.0].parts[at.1];
        validate_stream_name(&req.stream)?;
        if req.events.is_empty() {
            return Err(StoreError::InvalidAppend("an append needs at least one event".into()));
        }
        // Idempotency first: a retry of a stored append succeeds whatever the stream's version now is.
        let mut known = Vec::new();
        for e in &req.events {
            if let Some(&((ri, pi, ei), committed)) = self.events.get(&e.id) {
                let earlier = &group[ri].parts[pi];
                if earlier.stream != req.stream || !same_new(&earlier.events[ei], e) {
                    return Err(StoreError::IdempotencyConflict { id: e.id });
                }
                known.push(committed);
            } else if let Some(old) = stored.by_id(e.id)? {
                if !old.same_content(&req.stream, e) {
                    return Err(StoreError::IdempotencyConflict { id: e.id });
                }
                known.push(Committed { id: e.id, version: old.version, position: old.position });
            }
        }
        if known.len() == req.events.len() {
            return Ok((AppendResult { events: known, deduplicated: true }, None));
        }
        if let Some(first) = known.first() {
            // Part of this append is stored and part is not: not a retry of one append.
            return Err(StoreError::IdempotencyConflict { id: first.id });
        }

        let current = match self.versions.get(&req.stream) {
            Some(v) => Some(*v),
            // A stream expected new need only be absent: no search for its last event.
            None if matches!(req.expected, ExpectedVersion::NoStream) && !stored.has_stream(&req.stream)? => None,
            None => stored.stream_version(&req.stream)?,
        };
        let ok = match req.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::Exact(v) => current == Some(v),
        };
        if !ok {
            return Err(StoreError::WrongExpectedVersion {
                stream: req.stream.clone(),
                expected: req.expected,
                current,
            });
        }

        let now = Utc::now();
        let first_version = current.map_or(0, |v| v + 1);
        let first_position = head.position;
        let mut h = head.hash;
        let mut framed = Vec::with_capacity(req.events.iter().map(|e| e.payload.len() + 160).sum());
        let mut committed = Vec::with_capacity(req.events.len());
        let mut hashes = Vec::with_capacity(req.events.len());
        for (j, e) in req.events.iter().enumerate() {
            let (version, position) = (first_version + j as u64, first_position + j as u64);
            let c = Canonical {
                id: *e.id.as_bytes(),
                stream: &req.stream,
                version,
                position,
                event_type: &e.event_type,
                schema_version: e.schema_version,
                occurred_at_ns: nanos(e.occurred_at)?,
                recorded_at_ns: nanos(e.recorded_at.unwrap_or(now))?,
                actor: &e.metadata.actor,
                correlation_id: e.metadata.correlation_id.map(|u| *u.as_bytes()),
                causation_id: e.metadata.causation_id.map(|u| *u.as_bytes()),
                payload: &e.payload,
            };
            let len_at = framed.len();
            framed.extend_from_slice(&[0; 4]);
            framed = postcard::to_extend(&c, framed).map_err(|e| StoreError::Backend(e.to_string()))?;
            let body_len = framed.len() - len_at - 4;
            framed[len_at..len_at + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
            h = chain_hash(&h, &framed[len_at + 4..]);
            framed.extend_from_slice(&h);
            hashes.push(h);
            committed.push(Committed { id: e.id, version, position });
        }
        // Only now, with every check passed, does the request count as placed.
        for (j, c) in committed.iter().enumerate() {
            self.events.insert(c.id, ((at.0, at.1, j), *c));
        }
        self.versions.insert(req.stream.clone(), first_version + committed.len() as u64 - 1);
        *head = Head { position: first_position + committed.len() as u64, hash: h };
        let result = AppendResult { events: committed.clone(), deduplicated: false };
        Ok((result, Some(Placed { first_version, first_position, framed, committed, hashes, now })))
    }
}

fn same_new(a: &NewEvent, b: &NewEvent) -> bool {
    a.event_type == b.event_type && a.schema_version == b.schema_version && a.payload == b.payload
}

/// Counts the events a group wrote, by type, once they are durable.
pub(crate) fn count_appended(group: &[Request], results: &[Result<Vec<AppendResult>, StoreError>]) {
    // Counted per type first: a group holds hundreds of events of a dozen types.
    let mut counts: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (req, result) in group.iter().zip(results) {
        let Ok(parts) = result else { continue };
        for (part, r) in req.parts.iter().zip(parts) {
            if !r.deduplicated {
                for e in &part.events {
                    *counts.entry(&e.event_type).or_default() += 1;
                }
            }
        }
    }
    for (event_type, n) in counts {
        metrics::counter!("forlop_events_appended_total", "type" => event_type.to_owned()).increment(n);
    }
}
