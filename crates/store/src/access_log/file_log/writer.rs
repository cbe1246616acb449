//! The writer thread: group commit of appended records, one `fdatasync` per group, fail-stop
//! when a group may not have reached the disk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;

use super::super::{not_durable, AccessRecord};
use super::frames::{encode_frames, Reach};
use super::records_file::{preallocate, CHUNK};
use super::shared::Shared;
use crate::StoreError;

/// Most requests one group commit takes; bounds the latency a long queue adds to its first writer.
const MAX_GROUP: usize = 1024;

pub(super) struct Request {
    pub(super) records: Vec<AccessRecord>,
    pub(super) reply: oneshot::Sender<Result<u64, StoreError>>,
}

pub(super) struct Writer {
    pub(super) file: File,
    /// The file's length: the frames, then preallocated zeros.
    pub(super) allocated: u64,
    pub(super) reach: Reach,
    pub(super) shared: Arc<Shared>,
    #[cfg(test)]
    pub(super) fail_next: Arc<std::sync::atomic::AtomicBool>,
}

impl Writer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Request>) {
        while let Some(group) = crate::group::next_group(&rx, MAX_GROUP) {
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        if let Some(reason) = self.shared.failed.get() {
            for req in group {
                let _ = req.reply.send(Err(not_durable(reason)));
            }
            return;
        }
        metrics::histogram!("forlop_group_commit_size", "log" => "access").record(group.len() as f64);
        let mut bytes = Vec::with_capacity(group.len() * 200);
        let mut entries = Vec::with_capacity(group.len());
        let mut reach = self.reach;
        let mut results = Vec::with_capacity(group.len());
        for req in &group {
            results.push(encode_frames(&req.records, &mut bytes, &mut entries, &mut reach));
        }
        if reach.position != self.reach.position {
            if let Err(e) = self.durable(&bytes, reach.position) {
                // Fail-stop: whether the group reached the disk is unknown, so no position after
                // the reach may ever be handed out again by this process.
                let reason = e.to_string();
                tracing::error!(error = %reason, "access log group commit failed; failing every later append");
                let _ = self.shared.failed.set(reason.clone());
                metrics::gauge!("forlop_store_failed", "log" => "access").set(1.0);
                for req in group {
                    let _ = req.reply.send(Err(not_durable(&reason)));
                }
                return;
            }
            {
                let mut index = self.shared.index.write().unwrap_or_else(|e| e.into_inner());
                for (patient, position, offset) in entries {
                    index.add(patient, position, offset);
                }
            }
            self.reach = reach;
            let mut head = self.shared.head.lock().unwrap_or_else(|e| e.into_inner());
            *head = (reach.position, reach.hash);
            self.shared.committed.store(reach.position, Ordering::Release);
        }
        for (req, result) in group.into_iter().zip(results) {
            let _ = req.reply.send(result);
        }
    }

    /// Writes the group's frames after the last one and waits until they are on disk; the group
    /// ends before record `records_end`.
    fn durable(&mut self, bytes: &[u8], records_end: u64) -> std::io::Result<()> {
        #[cfg(test)]
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(std::io::Error::other("injected flush failure"));
        }
        let end = self.reach.offset + bytes.len() as u64;
        if end > self.allocated {
            let grow = (end - self.allocated).div_ceil(CHUNK) * CHUNK;
            preallocate(&self.file, self.allocated, grow)?;
            self.allocated += grow;
        }
        self.file.write_all_at(bytes, self.reach.offset)?;
        let syncing = std::time::Instant::now();
        #[cfg(debug_assertions)]
        if crate::faults::access_sync_should_fail(records_end) {
            // A failing fsync returns once the device has given up, not at once. The delay also
            // makes the failure arrive after the request has resolved its answer, the case a
            // deferred settle exists for, whatever the machine's speed.
            std::thread::sleep(std::time::Duration::from_millis(300));
            return Err(std::io::Error::other("injected fault: the access log's fsync failed"));
        }
        #[cfg(not(debug_assertions))]
        let _ = records_end;
        self.file.sync_data()?;
        metrics::histogram!("forlop_fsync_seconds", "log" => "access").record(syncing.elapsed().as_secs_f64());
        Ok(())
    }
}
