//! The backup's figures: how far behind the continuous backup is under the
//! writers' load (`backup_lag_p99_ms`), what it costs them (`mutation_p99_ms_with_backup`), and
//! how fast a restore rebuilds the bench's log (`restore_eps`).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use forlop_backup::continuous::BackupStatus;
use forlop_store::EventStore;

use crate::appends::WRITERS;
use crate::args::RunArgs;
use crate::in_process::InProcess;
use crate::under_load::mutations;

/// Waits until the backup holds everything committed (its first catch-up of the seeded log).
async fn until_caught_up(status: &BackupStatus, store: &dyn EventStore) -> anyhow::Result<f64> {
    let started = Instant::now();
    while status.events_next() < store.committed() {
        if let Some(failure) = status.failure() {
            anyhow::bail!("the bench's backup failed: {failure}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Runs `load` while sampling, every millisecond, how long each newly committed position takes
/// to reach the backup; returns the load's result and the p99 of those times (ms).
async fn lag_during<T>(
    status: Arc<BackupStatus>,
    store: Arc<dyn EventStore>,
    load: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, f64)> {
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let (mut pending, mut lags) = (VecDeque::<(Instant, u64)>::new(), Vec::new());
            let mut last = store.committed();
            while !done.load(Ordering::Relaxed) || !pending.is_empty() {
                let committed = store.committed();
                if committed > last {
                    pending.push_back((Instant::now(), committed));
                    last = committed;
                }
                let backed_up = status.events_next();
                while pending.front().is_some_and(|(_, c)| *c <= backed_up) {
                    let (at, _) = pending.pop_front().expect("a front");
                    lags.push(at.elapsed().as_secs_f64() * 1000.0);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            lags
        })
    };
    let result = load.await;
    done.store(true, Ordering::Relaxed);
    let mut lags = sampler.await?;
    lags.sort_by(f64::total_cmp);
    anyhow::ensure!(!lags.is_empty(), "no commit reached the backup during the load");
    Ok((result?, crate::stats::percentile(&lags, 0.99)))
}

/// Events per second restored (verification of the backup included) into a new data directory.
pub async fn restore_eps(backup: &Path, into: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let verified = forlop_backup::verify(backup)?;
    let target = forlop_backup::RestoreTarget {
        events: Arc::new(forlop_store::SledStore::open(forlop_store::SledOptions::new(into))?),
        access: Arc::new(forlop_store::access_log::FileAccessLog::open(&forlop_layout::access_dir(into))?),
        keys: Arc::new(forlop_store::key_table::KeyTable::open(&forlop_layout::keys_dir(into))?),
    };
    let options = forlop_backup::RestoreOptions { cut: forlop_backup::Cut::Head, resume: false, check_key: None };
    let report = forlop_backup::restore(backup, &verified, &target, options).await?;
    Ok(crate::stats::eps(report.events as usize, started.elapsed()))
}

/// What the writers measured with the continuous backup running.
pub struct WithBackup {
    /// Seconds the backup's first copy of the seeded log took.
    pub first_copy_s: f64,
    pub mutation_p99_ms: f64,
    pub lag_p99_ms: f64,
    /// Patients the writers registered meanwhile (warm-up included).
    pub registered: usize,
    /// The backup, to restore from.
    pub dir: tempfile::TempDir,
}

/// Starts the continuous backup, waits for its first copy of the log, then measures the writers
/// with it running and how far behind it stays.
pub async fn with_backup(
    args: &RunArgs,
    server: &mut InProcess,
    store: &Arc<dyn EventStore>,
    largest: uuid::Uuid,
) -> anyhow::Result<WithBackup> {
    let (addr, token) = (server.addr, server.token.clone());
    eprintln!("bench: continuous backup: its first copy of the log, then {WRITERS} writers with it running ...");
    let dir = args.tempdir()?;
    let sources = server.backup_sources.take().context("the backup started twice")?;
    let backup = forlop_backup::continuous::ContinuousBackup::start(dir.path().to_owned(), sources)?;
    let first_copy_s = until_caught_up(&backup.status(), &**store).await?;
    // One unmeasured round, as before the writers alone: the first copy read the whole log
    // through sled's page cache, so the next writes would meet cold pages.
    let (_, warm_up) = mutations(addr, &token, largest, 0).await.context("mutation warm-up with the backup running")?;
    let ((mutation_p99_ms, measured), lag_p99_ms) =
        lag_during(backup.status(), store.clone(), mutations(addr, &token, largest, 0))
            .await
            .context("mutation benchmark with the backup running")?;
    tokio::task::spawn_blocking(move || backup.stop()).await?;
    Ok(WithBackup { first_copy_s, mutation_p99_ms, lag_p99_ms, registered: warm_up + measured, dir })
}
