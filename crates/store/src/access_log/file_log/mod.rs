//! The embedded access log: one append-only record file, and an index kept in memory.
//!
//! Why not sled, like the event log: every patient read appends a record and waits for it to be
//! durable, so this log sits on the hot path of every query. A preallocated file made durable by
//! one `fdatasync` per group costs a fraction of sled's B-tree inserts and flush (run on sled's
//! own I/O threads); reads of the log are rare (audits, the patient's own view).
//!
//! The file `records`: `MAGIC`, then one frame per record: body length (u32 LE), the canonical
//! bytes, and the SHA-256 chain hash (32 bytes). The file grows in chunks of zeros written ahead,
//! so an `fdatasync` flushes data, not the file's size; a zero length therefore ends the frames.
//!
//! The index (per patient: positions and offsets; every `SPARSE`th position's offset) is rebuilt
//! by one sequential scan at open, about 16 bytes of memory per record. A crash can leave a torn
//! final frame that was never acknowledged; the scan cuts it off (its chain hash does not match).
//!
//! Its parts: `records_file` (the file, its magic and growth), `frames` (a record's frame, read
//! and encoded), `index`, `recovery` (the scan at open), `shared` (what the writer publishes),
//! `writer` (group commit), `reading`, `verify`, and `migrate` (from the earlier sled layout).

mod frames;
mod index;
mod migrate;
mod reading;
mod records_file;
mod recovery;
mod shared;
mod verify;
mod writer;

use std::fs::File;
#[cfg(feature = "testing")]
use std::fs::OpenOptions;
#[cfg(feature = "testing")]
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::oneshot;

#[cfg(feature = "testing")]
use super::split;
use super::{
    backend, not_durable, validate, AccessFilter, AccessLog, AccessRecord, AccessVerifyReport, StoredAccessRecord,
};
use crate::hash::{Hash, GENESIS_HASH};
use crate::StoreError;
#[cfg(feature = "testing")]
use frames::frames_from;
use migrate::migrate_from_sled;
#[cfg(feature = "testing")]
use records_file::MAGIC;
use records_file::{open_records, RECORDS};
use recovery::{keep_cut_bytes, rebuild, FinalFrame};
use shared::Shared;
use writer::{Request, Writer};

/// The file-backed access log. Dropping it ends the writer thread and closes the file.
pub struct FileAccessLog {
    /// The record file, for positioned reads (the writer holds its own handle).
    file: Arc<File>,
    writer: crate::group::WriterThread<Request>,
    shared: Arc<Shared>,
    #[cfg(test)]
    fail_next: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for FileAccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAccessLog")
            .field("committed", &self.committed())
            .field("failed", &self.shared.failed.get())
            .finish()
    }
}

impl FileAccessLog {
    /// Opens (or creates) the log in `dir`: indexes it, and cuts off a torn final frame.
    pub fn open(dir: &Path) -> Result<FileAccessLog, StoreError> {
        migrate_from_sled(dir)?;
        let file = open_records(dir)?;
        let (index, reach) = rebuild(&file, FinalFrame::Recover)?;
        // Zero whatever follows the last frame (a torn write, or preallocated zeros already),
        // so that the frames end there.
        let len = file.metadata().map_err(backend)?.len();
        if len > reach.offset {
            keep_cut_bytes(dir, &file, reach.offset)?;
            file.set_len(reach.offset).map_err(backend)?;
            file.sync_all().map_err(backend)?;
        }
        let shared = Arc::new(Shared::new(index, reach));
        #[cfg(test)]
        let fail_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = Writer {
            file: file.try_clone().map_err(backend)?,
            allocated: reach.offset,
            reach,
            shared: shared.clone(),
            #[cfg(test)]
            fail_next: fail_next.clone(),
        };
        let writer =
            crate::group::WriterThread::spawn("forlop-access-writer", move |rx| writer.run(rx)).map_err(backend)?;
        tracing::info!(path = %dir.display(), records = reach.position, "opened access log");
        Ok(FileAccessLog {
            file: Arc::new(file),
            writer,
            shared,
            #[cfg(test)]
            fail_next,
        })
    }

    /// Verifies the log in `dir` without opening it for writing: nothing is cut off or changed
    /// (beyond migrating a log kept in sled by an earlier version).
    pub fn verify_dir(dir: &Path) -> Result<AccessVerifyReport, StoreError> {
        migrate_from_sled(dir)?;
        if !dir.join(RECORDS).exists() {
            return Ok(AccessVerifyReport { records: 0, head_hash: GENESIS_HASH });
        }
        let file = open_records(dir)?;
        let (index, reach) = rebuild(&file, FinalFrame::Report)?;
        verify::verify(&file, &Shared::new(index, reach))
    }

    /// Flips one byte of the record at `position`, for tamper-detection tests. The log in `dir`
    /// must not be open.
    #[cfg(feature = "testing")]
    pub fn tamper(dir: &Path, position: u64) -> Result<(), StoreError> {
        let file = OpenOptions::new().read(true).write(true).open(dir.join(RECORDS)).map_err(backend)?;
        let mut frames = frames_from(&file, MAGIC.len() as u64)?;
        let mut at = 0;
        while let Some(frame) = frames.next_frame()? {
            if at == position {
                let body_len = split(position, &frame.value)?.0.len();
                // The last byte of the patient id, which ends the canonical bytes.
                let byte_at = frame.offset + 4 + body_len as u64 - 1;
                let flipped = [frame.value[body_len - 1] ^ 0x01];
                file.write_all_at(&flipped, byte_at).map_err(backend)?;
                return file.sync_all().map_err(backend);
            }
            at += 1;
        }
        Err(StoreError::Corrupt { position, reason: "no record to tamper with".into() })
    }
}

#[async_trait]
impl AccessLog for FileAccessLog {
    async fn append(&self, records: Vec<AccessRecord>) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(self.committed());
        }
        for r in &records {
            validate(r)?;
        }
        if let Some(reason) = self.shared.failed.get() {
            return Err(not_durable(reason));
        }
        let (reply, answer) = oneshot::channel();
        // The writer died (its queue or reply closed): fail stop, so /healthz says so too.
        let gone = || {
            let _ = self.shared.failed.set("the writer thread stopped".into());
            not_durable("the writer thread stopped")
        };
        self.writer.send(Request { records, reply }).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    async fn query(
        &self,
        filter: &AccessFilter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredAccessRecord>, StoreError> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        // Only what a durable group wrote: a group being written is beyond `committed`.
        let end = self.committed();
        if limit == 0 || start >= end {
            return Ok(Vec::new());
        }
        match filter.patient_id {
            Some(patient) => self.query_patient(patient, filter, (start, end), limit),
            None => self.query_all(filter, (start, end), limit),
        }
    }

    fn failure(&self) -> Option<String> {
        self.shared.failed.get().map(|r| format!("the access log could not be made durable: {r}"))
    }

    fn committed(&self) -> u64 {
        self.shared.committed.load(Ordering::Acquire)
    }

    fn head_hash(&self) -> Hash {
        self.shared.head().1
    }

    async fn verify(&self) -> Result<AccessVerifyReport, StoreError> {
        let (file, shared) = (self.file.clone(), self.shared.clone());
        // A whole-log scan: keep it off the async workers.
        tokio::task::spawn_blocking(move || verify::verify(&file, &shared))
            .await
            .map_err(|e| backend(format!("verify task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use uuid::Uuid;

    use super::*;
    use crate::access_log::AccessOutcome;

    fn record(patient: Uuid) -> AccessRecord {
        AccessRecord {
            patient_id: patient,
            actor_sub: "sub".into(),
            actor_name: None,
            role: "nurse".into(),
            hpr_number: None,
            operation: "anonymous".into(),
            fields: "patient".into(),
            outcome: AccessOutcome::Allowed,
            reason: None,
            correlation_id: None,
            at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn a_failed_sync_fails_stop() {
        let dir = tempfile::tempdir().unwrap();
        let p = Uuid::new_v4();
        {
            let log = FileAccessLog::open(dir.path()).unwrap();
            assert_eq!(log.append(vec![record(p)]).await.unwrap(), 0);
            let head = log.head_hash();
            log.fail_next.store(true, Ordering::SeqCst);
            let err = log.append(vec![record(p)]).await.unwrap_err();
            assert!(matches!(&err, StoreError::Unavailable(m) if m.starts_with("access log is not durable")), "{err}");
            // Every later append fails too, and nothing moved.
            let err = log.append(vec![record(p), record(p)]).await.unwrap_err();
            assert!(matches!(&err, StoreError::Unavailable(m) if m.starts_with("access log is not durable")), "{err}");
            assert_eq!(log.committed(), 1);
            assert_eq!(log.head_hash(), head);
            assert_eq!(log.query(&AccessFilter::default(), None, 10).await.unwrap().len(), 1);
            assert_eq!(log.verify().await.unwrap().records, 1);
        }
        let log = FileAccessLog::open(dir.path()).unwrap();
        assert_eq!(log.append(vec![record(p)]).await.unwrap(), 1);
        assert_eq!(log.verify().await.unwrap().records, 2);
    }

    #[tokio::test]
    async fn a_torn_final_frame_is_cut_off_and_the_index_is_rebuilt_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        {
            let log = FileAccessLog::open(dir.path()).unwrap();
            for i in 0..600 {
                log.append(vec![record(if i % 3 == 0 { a } else { b })]).await.unwrap();
            }
        }
        // A crash mid-write: half a frame at the end, never acknowledged.
        let mut f = OpenOptions::new().append(true).open(dir.path().join(RECORDS)).unwrap();
        f.write_all(&[90, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let log = FileAccessLog::open(dir.path()).unwrap();
        assert_eq!(log.committed(), 600);
        assert_eq!(log.verify().await.unwrap().records, 600);
        assert_eq!(log.append(vec![record(a)]).await.unwrap(), 600);
        drop(log);

        let log = FileAccessLog::open(dir.path()).unwrap();
        assert_eq!(log.verify().await.unwrap().records, 601);
        let only_a = AccessFilter { patient_id: Some(a), ..Default::default() };
        assert_eq!(log.query(&only_a, None, 1000).await.unwrap().len(), 201);
        let from_300 = log.query(&AccessFilter::default(), Some(299), 1000).await.unwrap();
        assert_eq!(from_300.first().map(|r| r.position), Some(300));
        assert_eq!(from_300.len(), 301);
    }
}
