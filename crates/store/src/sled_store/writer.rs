//! The writer thread: validates queued appends, applies each group in one sled batch and makes
//! it durable with one flush before acknowledging any of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use super::encoding::*;
use super::{backend, read_error};
use crate::hash::Hash;
use crate::*;

const MAX_GROUP: usize = 1024;

pub(super) struct Request {
    pub(super) stream: String,
    pub(super) expected: ExpectedVersion,
    pub(super) events: Vec<NewEvent>,
    pub(super) reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

pub(super) struct Writer {
    pub(super) failed: Arc<std::sync::OnceLock<String>>,
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
    pub(super) next_position: u64,
    pub(super) last_hash: Hash,
    pub(super) committed: Arc<AtomicU64>,
    pub(super) watch: watch::Sender<u64>,
}

/// What a group has written so far but not yet committed.
#[derive(Default)]
pub(super) struct Pending {
    versions: HashMap<String, u64>,
    /// Event id -> (request index, event index, placing), to recognise retries within a group.
    events: HashMap<Uuid, (usize, usize, Committed)>,
}

impl Writer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Request>) {
        // If this thread dies by a panic, the store fails stop rather than leaving appends to a
        // closed queue.
        struct Watchdog(Arc<std::sync::OnceLock<String>>);
        impl Drop for Watchdog {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let _ = self.0.set("the writer thread panicked".into());
                    tracing::error!("event log writer thread panicked; failing every later append");
                }
            }
        }
        let _watchdog = Watchdog(self.failed.clone());
        while let Some(group) = crate::group::next_group(&rx, MAX_GROUP) {
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        if let Some(reason) = self.failed.get() {
            for req in group {
                let _ = req.reply.send(Err(StoreError::Unavailable(reason.clone())));
            }
            return;
        }
        #[cfg(debug_assertions)]
        crate::faults::writer_may_panic(self.next_position);
        let mut batch = sled::Batch::default();
        let mut pending = Pending::default();
        let (mut position, mut hash) = (self.next_position, self.last_hash);
        let results: Vec<_> = (0..group.len())
            .map(|i| self.plan(&group, i, &mut pending, &mut batch, &mut position, &mut hash))
            .collect();
        if position != self.next_position {
            let started = std::time::Instant::now();
            let durable = self.tree.apply_batch(batch).and_then(|_| {
                let flushing = std::time::Instant::now();
                #[cfg(debug_assertions)]
                if crate::faults::flush_should_fail(position) {
                    return Err(sled::Error::Io(std::io::Error::other("injected fault: flush failed")));
                }
                let flushed = self.db.flush().map(|_| ());
                metrics::histogram!("forlop_fsync_seconds", "log" => "events").record(flushing.elapsed().as_secs_f64());
                flushed
            });
            metrics::histogram!("forlop_group_commit_seconds", "log" => "events")
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!("forlop_group_commit_size", "log" => "events").record(group.len() as f64);
            if let Err(e) = durable {
                // Fail-stop: whether the batch reached the disk is unknown, and sled may hold it in
                // memory, so no later group may reuse these positions. Nothing more is written.
                let reason = e.to_string();
                tracing::error!(error = %reason, "group commit failed; acknowledging nothing and failing every later append");
                let _ = self.failed.set(reason.clone());
                metrics::gauge!("forlop_store_failed", "log" => "events").set(1.0);
                for req in group {
                    let _ = req.reply.send(Err(StoreError::Unavailable(reason.clone())));
                }
                return;
            }
            for (req, result) in group.iter().zip(&results) {
                if let Ok(r) = result {
                    if !r.deduplicated {
                        for e in &req.events {
                            metrics::counter!("forlop_events_appended_total", "type" => e.event_type.clone())
                                .increment(1);
                        }
                    }
                }
            }
            self.next_position = position;
            self.last_hash = hash;
            self.committed.store(position, Ordering::Release);
            self.watch.send_replace(position);
        }
        for (req, result) in group.into_iter().zip(results) {
            let _ = req.reply.send(result);
        }
    }

    fn current_version(&self, stream: &str, pending: &Pending) -> Result<Option<u64>, StoreError> {
        if let Some(v) = pending.versions.get(stream) {
            return Ok(Some(*v));
        }
        match self.tree.scan_prefix(stream_prefix(stream)).next_back() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv.map_err(read_error)?;
                let (first_version, _, count) = run(&k, &v);
                Ok(Some(first_version + count - 1))
            }
        }
    }

    fn stored(&self, position: u64) -> Result<RecordedEvent, StoreError> {
        let mut out = Vec::with_capacity(1);
        if let Some((first, value)) = find_append(&self.tree, position)? {
            decode_append(first, &value, position, position + 1, &mut out)?;
        }
        out.pop().ok_or(StoreError::Corrupt { position, reason: "indexed event is missing".into() })
    }

    /// Validates request `i` of the group against the log and the group so far, and adds its
    /// writes to `batch`.
    fn plan(
        &self,
        group: &[Request],
        i: usize,
        pending: &mut Pending,
        batch: &mut sled::Batch,
        position: &mut u64,
        hash: &mut Hash,
    ) -> Result<AppendResult, StoreError> {
        let req = &group[i];
        validate_stream_name(&req.stream)?;
        if req.events.is_empty() {
            return Err(StoreError::InvalidAppend("an append needs at least one event".into()));
        }
        // Idempotency first: a retry of a stored append succeeds whatever the stream's version now is.
        let mut stored = Vec::new();
        for (j, e) in req.events.iter().enumerate() {
            if req.events[..j].iter().any(|o| o.id == e.id) {
                return Err(StoreError::InvalidAppend(format!("event id {} appears twice in one append", e.id)));
            }
            if let Some(&(ri, ei, committed)) = pending.events.get(&e.id) {
                if group[ri].stream != req.stream || !same_new(&group[ri].events[ei], e) {
                    return Err(StoreError::IdempotencyConflict { id: e.id });
                }
                stored.push(committed);
            } else if let Some(pos) = self.tree.get(id_key(e.id)).map_err(read_error)? {
                let old = self.stored(be_u64(&pos))?;
                if !old.same_content(&req.stream, e) {
                    return Err(StoreError::IdempotencyConflict { id: e.id });
                }
                stored.push(Committed { id: e.id, version: old.version, position: old.position });
            }
        }
        if stored.len() == req.events.len() {
            return Ok(AppendResult { events: stored, deduplicated: true });
        }
        if let Some(first) = stored.first() {
            // Part of this append is stored and part is not: not a retry of one append.
            return Err(StoreError::IdempotencyConflict { id: first.id });
        }

        let current = self.current_version(&req.stream, pending)?;
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
        let first_position = *position;
        let mut h = *hash;
        let mut value = Vec::with_capacity(req.events.iter().map(|e| e.payload.len() + 160).sum());
        let mut committed = Vec::with_capacity(req.events.len());
        for (j, e) in req.events.iter().enumerate() {
            let (version, pos) = (first_version + j as u64, first_position + j as u64);
            let c = Canonical {
                id: *e.id.as_bytes(),
                stream: &req.stream,
                version,
                position: pos,
                event_type: &e.event_type,
                schema_version: e.schema_version,
                occurred_at_ns: nanos(e.occurred_at)?,
                recorded_at_ns: nanos(e.recorded_at.unwrap_or(now))?,
                actor: &e.metadata.actor,
                correlation_id: e.metadata.correlation_id.map(|u| *u.as_bytes()),
                causation_id: e.metadata.causation_id.map(|u| *u.as_bytes()),
                payload: &e.payload,
            };
            let len_at = value.len();
            value.extend_from_slice(&[0; 4]);
            let value_len = postcard::to_extend(&c, std::mem::take(&mut value)).map_err(backend)?;
            value = value_len;
            let body_len = value.len() - len_at - 4;
            value[len_at..len_at + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
            h = chain_hash(&h, &value[len_at + 4..]);
            value.extend_from_slice(&h);
            committed.push(Committed { id: e.id, version, position: pos });
        }
        // Only now, with every check passed, does the request join the batch.
        let pos_bytes = |p: u64| p.to_be_bytes();
        batch.insert(&event_key(first_position)[..], value);
        batch.insert(
            stream_key(&stream_prefix(&req.stream), first_version),
            &run_value(first_position, committed.len())[..],
        );
        for (j, c) in committed.iter().enumerate() {
            batch.insert(&id_key(c.id)[..], &pos_bytes(c.position)[..]);
            pending.events.insert(c.id, (i, j, *c));
        }
        pending.versions.insert(req.stream.clone(), first_version + committed.len() as u64 - 1);
        *position = first_position + committed.len() as u64;
        *hash = h;
        Ok(AppendResult { events: committed, deduplicated: false })
    }
}

fn same_new(a: &NewEvent, b: &NewEvent) -> bool {
    a.event_type == b.event_type && a.schema_version == b.schema_version && a.payload == b.payload
}
