//! The writer thread: validates queued appends, applies each group in one sled batch and makes
//! it durable with one flush before acknowledging any of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use tokio::sync::watch;
use uuid::Uuid;

use super::encoding::*;
use super::read_error;
use crate::hash::Hash;
use crate::plan::{count_appended, GroupPlan, Head, Request, Stored};
use crate::*;

const MAX_GROUP: usize = 1024;

pub(super) struct Writer {
    pub(super) failed: Arc<std::sync::OnceLock<String>>,
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
    pub(super) ids: Arc<parking_lot::RwLock<super::ids::IdIndex>>,
    pub(super) ids_file: std::path::PathBuf,
    /// The position the id index was last saved at (or loaded as of).
    pub(super) ids_saved_at: u64,
    pub(super) ids_save_every: u64,
    /// A background save of the id index still being written.
    pub(super) ids_saving: Option<std::thread::JoinHandle<()>>,
    pub(super) next_position: u64,
    pub(super) last_hash: Hash,
    pub(super) committed: Arc<AtomicU64>,
    pub(super) watch: watch::Sender<u64>,
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
        // An open that had to scan many events for their ids saves the index right away.
        self.maybe_save_ids();
        while let Some(group) = crate::group::next_group(&rx, MAX_GROUP) {
            self.commit_group(group);
            self.maybe_save_ids();
        }
        // The store is closing: the next open then scans no tail for ids.
        if let Some(saving) = self.ids_saving.take() {
            let _ = saving.join();
        }
        if self.failed.get().is_none() && self.ids_saved_at != self.next_position {
            if let Err(e) = super::ids::write(&self.ids_file, &self.ids_as_of_head()) {
                tracing::warn!(error = %e, "event-id index not saved; the next open scans the log for its ids");
            }
        }
    }

    /// Every `ids_save_every` events, saves the id index on a background thread (one at a time), so
    /// a start after a crash scans at most that many events for ids, and compacts it (only this
    /// thread changes it, so nothing is added between the copy and the swap).
    fn maybe_save_ids(&mut self) {
        if self.next_position - self.ids_saved_at < self.ids_save_every
            || self.ids_saving.as_ref().is_some_and(|t| !t.is_finished())
        {
            return;
        }
        let snapshot = self.ids_as_of_head();
        let compacted = super::ids::IdIndex::of_sorted(&snapshot.entries);
        *self.ids.write() = compacted;
        let file = self.ids_file.clone();
        let saving = std::thread::Builder::new().name("forlop-ids-save".into()).spawn(move || {
            if let Err(e) = super::ids::write(&file, &snapshot) {
                tracing::warn!(error = %e, "event-id index not saved in the background");
            }
        });
        if let Ok(t) = saving {
            self.ids_saving = Some(t);
            self.ids_saved_at = self.next_position;
        }
    }

    /// The id index as a save writes it, as of the last durable group.
    fn ids_as_of_head(&self) -> super::ids::Saved {
        self.ids.read().snapshot(self.next_position, self.last_hash)
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
        let mut plan = GroupPlan::default();
        let mut head = Head { position: self.next_position, hash: self.last_hash };
        let results: Vec<_> = (0..group.len())
            .map(|i| {
                let planned = plan.plan(&group, i, &mut SledStored(self), &mut head)?;
                let mut results = Vec::with_capacity(planned.len());
                for ((result, placed), part) in planned.into_iter().zip(&group[i].parts) {
                    if let Some(p) = placed {
                        batch.insert(&event_key(p.first_position)[..], p.framed);
                        batch.insert(
                            stream_key(&stream_prefix(&part.stream), p.first_version),
                            &run_value(p.first_position, p.committed.len())[..],
                        );
                    }
                    results.push(result);
                }
                Ok(results)
            })
            .collect();
        let (position, hash) = (head.position, head.hash);
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
            count_appended(&group, &results);
            // Indexed before the position is published: a reader that sees an event can find
            // it by id.
            let mut ids = self.ids.write();
            for c in results.iter().flatten().flatten().filter(|r| !r.deduplicated).flat_map(|r| &r.events) {
                ids.insert(c.id, c.position);
            }
            drop(ids);
            self.next_position = position;
            self.last_hash = hash;
            self.committed.store(position, Ordering::Release);
            self.watch.send_replace(position);
        }
        for (req, result) in group.into_iter().zip(results) {
            let _ = req.reply.send(result);
        }
    }

    fn stored(&self, position: u64) -> Result<RecordedEvent, StoreError> {
        let mut out = Vec::with_capacity(1);
        if let Some((first, value)) = find_append(&self.tree, position)? {
            decode_append(first, &value, position, position + 1, &mut out)?;
        }
        out.pop().ok_or(StoreError::Corrupt { position, reason: "indexed event is missing".into() })
    }
}

/// What the planner sees of the tree: committed appends only (a group is planned before it
/// is applied).
struct SledStored<'a>(&'a Writer);

impl Stored for SledStored<'_> {
    fn by_id(&mut self, id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let candidates = self.0.ids.read().candidates(id);
        for position in candidates {
            let e = self.0.stored(position)?;
            if e.id == id {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// A stream's first append is filed under version 0: one point lookup, where finding its last
    /// version walks a range backwards (a bulk import checks every new patient's stream).
    fn has_stream(&mut self, stream: &str) -> Result<bool, StoreError> {
        self.0.tree.contains_key(stream_key(&stream_prefix(stream), 0)).map_err(read_error)
    }

    fn stream_version(&mut self, stream: &str) -> Result<Option<u64>, StoreError> {
        match self.0.tree.scan_prefix(stream_prefix(stream)).next_back() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv.map_err(read_error)?;
                let (first_version, _, count) = run(&k, &v);
                Ok(Some(first_version + count - 1))
            }
        }
    }
}
