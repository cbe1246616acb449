//! Continuous backup beside `serve`: a thread of its own copies what is committed into the
//! backup directory, woken by every commit (and every `ACCESS_POLL` for access records and
//! keys), at most every `MIN_GAP`, so the backup is about a second behind at most under load.
//! A failing target (full, unmounted, read-only) never stops the server: the failure is
//! reported (`status`, metrics) and retried with backoff, and the backup resumes from its last
//! manifest, nothing skipped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thread_priority::{ThreadPriority, ThreadPriorityValue};

use status::Status;

use crate::{BackupWriter, Sources};

/// Shortest time between two cycles: commits arriving in between are copied together. Short
/// cycles keep each one's burst of reading and encoding small, so it never holds a core long.
const MIN_GAP: Duration = Duration::from_millis(200);
/// The backup thread's priority, crossplatform 22 of 99: nice 10 for Linux's normal policy. When
/// the server's threads want the cores they come first (a runnable nice-0 thread gets about nine
/// times the backup's share of a contended core), and the backup takes up the time they leave.
const PRIORITY: u8 = 22;
/// How often a quiet log is still checked for new access records and key changes.
const ACCESS_POLL: Duration = Duration::from_millis(500);
/// Longest wait before retrying a failing target.
const MOST_BACKOFF: Duration = Duration::from_secs(10);

mod status {
    use std::sync::Mutex;

    /// What `/healthz` reads: why the backup is failing, None while it keeps up; and how far
    /// it has come.
    #[derive(Default, Debug)]
    pub struct Status {
        failure: Mutex<Option<String>>,
        events_next: std::sync::atomic::AtomicU64,
    }

    impl Status {
        /// Events backed up (the next position the backup will copy).
        pub fn events_next(&self) -> u64 {
            self.events_next.load(std::sync::atomic::Ordering::Acquire)
        }

        pub(super) fn advance(&self, next: u64) {
            self.events_next.store(next, std::sync::atomic::Ordering::Release);
        }

        pub fn failure(&self) -> Option<String> {
            self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }

        pub(super) fn set(&self, failure: Option<String>) {
            *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = failure;
        }
    }
}

pub use status::Status as BackupStatus;

/// The running continuous backup; `stop` brings it up to the head once more and ends it.
pub struct ContinuousBackup {
    status: Arc<Status>,
    stop: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ContinuousBackup {
    pub fn start(dir: PathBuf, sources: Sources) -> std::io::Result<ContinuousBackup> {
        let status = Arc::new(Status::default());
        let stop = Arc::new(tokio::sync::Notify::new());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (thread_status, thread_stop) = (status.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("forlop-backup".into()).spawn(move || {
            lower_priority();
            runtime.block_on(run(dir, sources, thread_status, thread_stop))
        })?;
        Ok(ContinuousBackup { status, stop, thread: Some(thread) })
    }

    pub fn status(&self) -> Arc<BackupStatus> {
        self.status.clone()
    }

    /// Copies what is committed once more (best effort) and ends the thread.
    pub fn stop(mut self) {
        self.stop.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ContinuousBackup {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

/// Gives the calling thread nice 10, as the engine's analysis threads have.
fn lower_priority() {
    let lowered = ThreadPriorityValue::try_from(PRIORITY).map_err(|e| e.to_string()).and_then(|p| {
        thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(p)).map_err(|e| e.to_string())
    });
    if let Err(e) = lowered {
        tracing::warn!(error = %e, "the backup thread keeps normal priority");
    }
}

async fn run(dir: PathBuf, sources: Sources, status: Arc<Status>, stop: Arc<tokio::sync::Notify>) {
    let mut writer: Option<BackupWriter> = None;
    let mut watch = sources.events.watch_committed();
    let mut backoff = MIN_GAP;
    let mut stopping = false;
    loop {
        let outcome = match &mut writer {
            Some(w) => w.cycle(&sources).await,
            None => match BackupWriter::open(&dir, &sources).await {
                Ok(w) => writer.insert(w).cycle(&sources).await,
                Err(e) => Err(e),
            },
        };
        let wait = match outcome {
            Ok(report) => {
                if status.failure().is_some() {
                    tracing::info!(dir = %dir.display(), "the backup target works again; the backup resumed");
                }
                status.set(None);
                status.advance(report.events_next);
                let lag = sources.events.committed().saturating_sub(report.events_next);
                metrics::gauge!("forlop_backup_position").set(report.events_next as f64);
                metrics::gauge!("forlop_backup_lag_events").set(lag as f64);
                metrics::gauge!("forlop_backup_last_success_timestamp_seconds")
                    .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
                backoff = MIN_GAP;
                if lag > 0 {
                    Some(Duration::ZERO) // still catching up
                } else {
                    None
                }
            }
            Err(e) => {
                if status.failure().is_none() {
                    tracing::error!(dir = %dir.display(), error = %e, "the backup failed; the server keeps serving and retries");
                }
                status.set(Some(format!("backup to {}: {e}", dir.display())));
                metrics::counter!("forlop_backup_errors_total").increment(1);
                writer = None; // reopened from its manifest, cutting off what the failed cycle wrote
                backoff = (backoff * 2).min(MOST_BACKOFF);
                Some(backoff)
            }
        };
        if stopping {
            return;
        }
        match wait {
            Some(d) if !d.is_zero() => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = stop.notified() => stopping = true,
                }
            }
            Some(_) => {}
            None => {
                tokio::select! {
                    _ = watch.changed() => {}
                    _ = tokio::time::sleep(ACCESS_POLL) => {}
                    _ = stop.notified() => stopping = true,
                }
                if !stopping {
                    tokio::select! {
                        _ = tokio::time::sleep(MIN_GAP) => {}
                        _ = stop.notified() => stopping = true,
                    }
                }
            }
        }
    }
}
