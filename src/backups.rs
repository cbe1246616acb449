//! `forlop backup`, `forlop backup verify` and `forlop restore`, and the continuous backup
//! `serve --backup-dir` runs: the commands around `forlop_backup`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use forlop_backup::{BackupError, Cut, RestoreOptions, RestoreTarget};

use crate::backend::{Backend, RESTORING};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    verify: Option<BackupCommand>,
    /// The data directory of a stopped server (sled).
    #[arg(long, env = "FORLOP_DATA", default_value = "data")]
    data: PathBuf,
    /// A PostgreSQL store (`postgres://user@host/db`), read while nodes run, instead of --data.
    #[arg(long, env = "FORLOP_STORE")]
    store: Option<String>,
    /// The backup directory: created if missing; one that holds a backup of this store is
    /// brought up to date (only what is new is written).
    #[arg(long)]
    to: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
enum BackupCommand {
    /// Check a backup without restoring it: every segment's hash chain and positions, the
    /// manifest's checksums and the key copy. Exit 0 only when it is intact.
    Verify { dir: PathBuf },
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The backup directory.
    #[arg(long)]
    from: PathBuf,
    /// The data directory to create (empty or absent), for sled.
    #[arg(long, required_unless_present = "to_store", conflicts_with = "to_store")]
    to: Option<PathBuf>,
    /// An empty PostgreSQL store to restore into instead (`postgres://user@host/db`).
    #[arg(long)]
    to_store: Option<String>,
    /// Restore events up to and including this position (access records up to its time).
    #[arg(long, conflicts_with = "at_time")]
    at_position: Option<u64>,
    /// Restore what was recorded at or before this time (RFC 3339, e.g. 2026-03-01T12:00:00Z).
    #[arg(long)]
    at_time: Option<chrono::DateTime<chrono::Utc>>,
    /// The master key the restored store will be served with: refused unless it opens the
    /// backup's key copy. Never kept in the backup directory.
    #[arg(long, env = "FORLOP_KEY_FILE")]
    key_file: Option<PathBuf>,
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<i32> {
    if let Some(BackupCommand::Verify { dir }) = args.verify {
        return Ok(verify(&dir));
    }
    let Some(to) = args.to else {
        eprintln!("forlop backup: give --to BACKUP_DIR (or `forlop backup verify BACKUP_DIR`)");
        return Ok(2);
    };
    let backend = Backend::new(&args.data, args.store.as_deref())?;
    if backend.is_sled() && !args.data.join("db").exists() {
        eprintln!("forlop backup: {} holds no forlop store", args.data.display());
        return Ok(2);
    }
    let sources = backend.open_sources().await.with_context(|| {
        if backend.is_sled() {
            "a running server holds its data directory: back it up with `serve --backup-dir`, or stop it first"
                .to_owned()
        } else {
            "opening the PostgreSQL store".to_owned()
        }
    })?;
    let started = std::time::Instant::now();
    let mut writer = match forlop_backup::BackupWriter::open(&to, &sources).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("forlop backup: refused: {e}");
            return Ok(1);
        }
    };
    let before = writer.manifest().events.next;
    let report = writer.catch_up(&sources).await?;
    let manifest = writer.manifest();
    eprintln!(
        "backed up {} new events ({} in all, head hash {}), {} new access records ({} in all), {} keys, in {:.1}s",
        report.events_next - before,
        manifest.events.next,
        manifest.events.head_hash,
        report.access,
        manifest.access.next,
        manifest.keys.as_ref().map_or(0, |k| k.count),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn verify(dir: &Path) -> i32 {
    match forlop_backup::verify(dir) {
        Ok(r) => {
            println!("ok: {} events, head hash {}", r.events, r.events_head);
            println!("ok: {} access records, head hash {}", r.access, r.access_head);
            println!("ok: {} keys ({} patients forgotten, none of their keys held)", r.keys, r.forgotten);
            0
        }
        Err(e) => {
            println!("damaged: {e}");
            1
        }
    }
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<i32> {
    let cut = match (args.at_position, args.at_time) {
        (Some(p), _) => Cut::Position(p),
        (_, Some(t)) => Cut::Time(t),
        _ => Cut::Head,
    };
    let master = match &args.key_file {
        Some(path) => {
            Some(forlop_vault::MasterKey::load(path).with_context(|| format!("master key {}", path.display()))?)
        }
        None => None,
    };
    let key_file = args.key_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let check = |patient: uuid::Uuid, record: &[u8]| -> Result<(), String> {
        match &master {
            Some(m) => m
                .check_record(patient, record)
                .map_err(|e| format!("the master key in {key_file} does not open the backup's key copy: {e}")),
            None => Ok(()),
        }
    };
    // Checked before a target is created or written.
    let verified = match forlop_backup::verify(&args.from) {
        Ok(r) => r,
        Err(e) => {
            println!("damaged: {e}");
            eprintln!("forlop restore: refused: the backup does not verify; nothing was written");
            return Ok(1);
        }
    };
    if let Err(e) = forlop_backup::check_master_key(&args.from, &verified, &check) {
        eprintln!("forlop restore: refused: {e}; nothing was written");
        return Ok(1);
    }
    let (target, data) = match (&args.to, &args.to_store) {
        (Some(dir), _) => match sled_target(dir)? {
            Some(t) => (t, Some(Written::Sled(dir.clone()))),
            None => return Ok(1),
        },
        (None, Some(url)) => match pg_target(url).await? {
            Some((t, pg)) => (t, Some(Written::Postgres(pg))),
            None => return Ok(1),
        },
        (None, None) => unreachable!("clap requires --to or --to-store"),
    };
    // Both targets were found empty, or marked by the restore this run completes.
    let options = RestoreOptions { cut, resume: true, check_key: Some(&check) };
    let outcome = forlop_backup::restore(&args.from, &verified, &target, options).await;
    drop(target);
    match outcome {
        Ok(r) => {
            match &data {
                Some(Written::Sled(dir)) => {
                    crate::backend::settle(dir.clone()).await;
                    let marker = dir.join(RESTORING);
                    std::fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
                    std::fs::File::open(dir).and_then(|d| d.sync_all())?;
                }
                Some(Written::Postgres(pg)) => pg.set_restoring(false).await?,
                None => {}
            }
            let (position, hash) = r.head.map_or(("none".to_owned(), String::new()), |(p, h)| (p.to_string(), h));
            println!("restored {} events: head position {position}, head hash {hash}", r.events);
            println!("restored {} access records: head hash {}", r.access, r.access_head);
            println!(
                "restored {} keys ({} left out: patients forgotten in the backup or after the point restored to)",
                r.keys, r.keys_left_out
            );
            eprintln!("forlop restore: verified; compare the head hash with a published anchor (verifyLog)");
            Ok(0)
        }
        Err(BackupError::Refused(reason)) => {
            eprintln!("forlop restore: refused: {reason}");
            Ok(1)
        }
        Err(e) => Err(e.into()),
    }
}

/// The stores of a new data directory, marked as being restored; None (after saying why) when
/// the directory holds something else.
fn sled_target(dir: &Path) -> anyhow::Result<Option<RestoreTarget>> {
    let marker = dir.join(RESTORING);
    let empty = !dir.exists() || std::fs::read_dir(dir)?.next().is_none();
    if !empty && !marker.exists() {
        eprintln!("forlop restore: refused: {} is not empty; restore only into a new directory", dir.display());
        return Ok(None);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if !marker.exists() {
        std::fs::write(&marker, b"forlop restore is writing this directory\n")?;
        std::fs::File::open(&marker)?.sync_all()?;
        std::fs::File::open(dir)?.sync_all()?;
    }
    let store = forlop_store::SledStore::open(forlop_store::SledOptions::new(dir))
        .with_context(|| format!("opening the store in {}", dir.display()))?;
    Ok(Some(RestoreTarget {
        events: Arc::new(store),
        access: Arc::new(forlop_store::access_log::FileAccessLog::open(&forlop_layout::access_dir(dir))?),
        keys: Arc::new(forlop_store::key_table::KeyTable::open(&forlop_layout::keys_dir(dir))?),
    }))
}

/// Where a restore wrote, to be unmarked when it completes.
enum Written {
    Sled(PathBuf),
    Postgres(Arc<forlop_store::PgStore>),
}

/// The stores of an empty PostgreSQL database, marked as being restored (or marked already by
/// the interrupted restore this one completes); None (after saying why) when it holds a log.
async fn pg_target(url: &str) -> anyhow::Result<Option<(RestoreTarget, Arc<forlop_store::PgStore>)>> {
    let pg = Arc::new(Backend::new(Path::new("."), Some(url))?.restore_target().await?);
    let target =
        RestoreTarget { events: pg.clone(), access: Arc::new(pg.access_log().await?), keys: Arc::new(pg.key_table()) };
    if !pg.is_restoring().await? {
        match forlop_backup::refuse_non_empty(&target).await {
            Err(BackupError::Refused(reason)) => {
                eprintln!("forlop restore: refused: {reason}");
                return Ok(None);
            }
            other => other?,
        }
        pg.set_restoring(true).await?;
    }
    Ok(Some((target, pg)))
}
