//! Subcommands. Settings come from flags, falling back to `FORLOP_`-prefixed environment variables.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use forlop_store::{EventStore, SledOptions, SledStore, StoreError};

#[derive(Parser, Debug)]
#[command(name = "forlop", version, about = "Event-sourced care pathways with continuity analytics over GraphQL")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve GraphQL over HTTP and WebSocket.
    Serve(Box<crate::serve::ServeArgs>),
    /// Record synthetic pathways (deterministic for a given --seed; running twice adds nothing).
    Seed {
        #[arg(long, env = "FORLOP_DATA", default_value = "data")]
        data: PathBuf,
        /// PostgreSQL event store (`postgres://user@host/db`) instead of sled in --data.
        #[arg(long, env = "FORLOP_STORE")]
        store: Option<String>,
        /// Patients to generate (the `city` profile only).
        #[arg(long, default_value_t = 1000)]
        patients: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// `city`: pathways across several services; `rph2016`: the RPH Gamle Oslo 2016 cohort,
        /// matching the published basis figures.
        #[arg(long, value_enum, default_value_t = Profile::City)]
        profile: Profile,
    },
    /// Write every event as NDJSON, in global order, to stdout.
    Export {
        #[arg(long, env = "FORLOP_DATA", default_value = "data")]
        data: PathBuf,
        /// PostgreSQL event store (`postgres://user@host/db`) instead of sled in --data.
        #[arg(long, env = "FORLOP_STORE")]
        store: Option<String>,
    },
    /// Append the events of an NDJSON export, after checking its whole hash chain (nothing is
    /// appended if a line fails); events already held are skipped, so an import can be resumed.
    Import {
        #[arg(long, env = "FORLOP_DATA")]
        data: PathBuf,
        file: PathBuf,
        /// Skip the chain check, for exports from versions whose hashes differ. Says so loudly.
        #[arg(long)]
        trust_unverified: bool,
    },
    /// Record the pathway facts of FHIR R4 resources in NDJSON (one resource per line), as
    /// `POST /fhir/$import` does, on a stopped server's data. Resending a file appends nothing.
    ImportFhir {
        #[arg(long, env = "FORLOP_DATA")]
        data: PathBuf,
        /// The master key file that protects national ids (as `serve --key-file`).
        #[arg(long, env = "FORLOP_KEY_FILE")]
        key_file: PathBuf,
        /// TOML file mapping service identifiers to care levels (as `serve --fhir-care-levels`).
        #[arg(long, env = "FORLOP_FHIR_CARE_LEVELS")]
        fhir_care_levels: Option<PathBuf>,
        file: PathBuf,
    },
    /// Recompute both hash chains (events and access log); exit 1 at the first bad position.
    Verify {
        #[arg(long, env = "FORLOP_DATA", default_value = "data")]
        data: PathBuf,
        /// PostgreSQL event store (`postgres://user@host/db`) instead of sled in --data.
        #[arg(long, env = "FORLOP_STORE")]
        store: Option<String>,
    },
    /// Print who accessed a patient's record, from a stopped server's data directory.
    AccessReport {
        #[arg(long, env = "FORLOP_DATA", default_value = "data")]
        data: PathBuf,
        /// PostgreSQL event store (`postgres://user@host/db`) instead of sled in --data.
        #[arg(long, env = "FORLOP_STORE")]
        store: Option<String>,
        #[arg(long)]
        patient: uuid::Uuid,
    },
    /// Rewrap every patient data key from one master key to another (server stopped).
    RotateKey {
        #[arg(long, env = "FORLOP_DATA", default_value = "data")]
        data: PathBuf,
        /// PostgreSQL store (`postgres://user@host/db`) instead of sled in --data; every node
        /// must be stopped or restarted with the new key.
        #[arg(long, env = "FORLOP_STORE")]
        store: Option<String>,
        /// The current master key file.
        #[arg(long)]
        old: PathBuf,
        /// The new master key file (`openssl rand -base64 32 > new.key`).
        #[arg(long)]
        new: PathBuf,
    },
    /// Copy a stopped server's sled data directory (event log, access log, key table) into an
    /// empty PostgreSQL store, keeping ids, positions, times and hashes; verifies both chains.
    Migrate {
        #[arg(long)]
        from_data: PathBuf,
        /// The PostgreSQL store (`postgres://user@host/db`).
        #[arg(long)]
        to: String,
    },
    /// Back up a stopped server's data directory (or a PostgreSQL store while nodes run) into a
    /// backup directory, incrementally; `forlop backup verify DIR` checks a backup.
    Backup(crate::backups::BackupArgs),
    /// Rebuild a data directory (or an empty PostgreSQL store) from a backup, whole or up to a
    /// position or a time; verifies both chains and prints the head to compare with an anchor.
    Restore(crate::backups::RestoreArgs),
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Print a reference page of the documentation, made from this binary's own definitions.
    Reference {
        #[arg(value_enum)]
        page: crate::reference::Page,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Profile {
    City,
    Rph2016,
}

pub fn open_store(data: &std::path::Path) -> anyhow::Result<Arc<dyn EventStore>> {
    crate::backend::refuse_partial_restore(data)?;
    let store =
        SledStore::open(SledOptions::new(data)).with_context(|| format!("opening the store in {}", data.display()))?;
    Ok(Arc::new(store))
}

pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve(args) => {
            let mut args = args.layered()?;
            if args.demo {
                crate::demo::demo_defaults(&mut args)?;
            } else if args.auth == Some(crate::serve::AuthMode::Off) && args.listen().ip().is_loopback() {
                crate::demo::dev_master_key(&mut args)?;
            }
            // Before anything is recorded: the key set fetched at start is counted.
            let metrics = crate::serve::install_metrics();
            let resolved = match crate::serve::resolve(&args).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("forlop serve: {e:#}");
                    return Ok(2);
                }
            };
            let loose = crate::serve::loose_permissions(&args);
            if !loose.is_empty() {
                let list = loose.join(", ");
                if args.strict_permissions {
                    eprintln!("forlop serve: --strict-permissions: readable by others than the service's user: {list}; chmod go= them");
                    return Ok(2);
                }
                tracing::warn!(paths = %list, "readable by others than the service's user; chmod go= them (or start with --strict-permissions to refuse)");
            }
            let (data, listen) = (args.data(), args.listen());
            let defaults = forlop_engine::Settings::default();
            let settings = forlop_engine::Settings {
                suppression_threshold: args.suppression_threshold.unwrap_or(defaults.suppression_threshold).max(1),
                checkpoint_every: args.checkpoint_every.unwrap_or(defaults.checkpoint_every),
                self_grant_days: args.self_grant_days.unwrap_or(defaults.self_grant_days),
            };
            let sled_cache = match args.sled_cache_bytes() {
                Ok(bytes) => bytes,
                Err(e) => {
                    eprintln!("forlop serve: {e:#}");
                    return Ok(2);
                }
            };
            let backend = crate::backend::Backend::new(&data, args.store.as_deref())?
                .with_ca_file(args.store_ca_file.clone())
                .with_sled_cache(sled_cache);
            let (store, parts) = backend.open_engine(&data, resolved.master, settings).await?;
            // Before the port is bound: a wrong key would answer every national-id lookup with nothing.
            if let Err(e) = parts.vault.check_master_key().await {
                let file = args.key_file.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
                eprintln!("forlop serve: the master key in {file} does not open the key table: {e}");
                return Ok(2);
            }
            let opened_with = store.committed();
            let load_demo = args.demo && opened_with == 0;
            if load_demo {
                let mut n = crate::seeding::load(&store, &forlop_seed::rph2016(2016)).await?;
                n += crate::seeding::load(&store, &forlop_seed::demo(2016, crate::seeding::DEMO_PATIENTS)).await?;
                tracing::info!(events = n, "loaded the synthetic demo dataset (rph2016 profile and city pathways)");
            }
            let demo_tokens = match (&resolved.hs256_secret, args.demo) {
                (Some(secret), true) => {
                    let services = registered_services(&store).await?;
                    let issuer = args.issuer.as_deref().unwrap_or_default();
                    let audience = args.audience.as_deref().unwrap_or_default();
                    crate::demo::demo_tokens(secret, issuer, audience, &services)?
                }
                _ => Vec::new(),
            };
            let admin_token = demo_tokens.iter().find(|(r, _)| *r == "admin").map(|(_, t)| t.clone());
            let backup = match &args.backup_dir {
                Some(dir) => {
                    let sources = forlop_backup::Sources {
                        events: store.clone(),
                        access: parts.access_log.clone(),
                        keys: parts.vault.key_table(),
                    };
                    tracing::info!(dir = %dir.display(), "backing up continuously");
                    Some(forlop_backup::continuous::ContinuousBackup::start(dir.clone(), sources)?)
                }
                None => None,
            };
            let degraded = backup.as_ref().map(|b| {
                let status = b.status();
                forlop_api::DegradedProbe(Arc::new(move || status.failure().into_iter().collect()))
            });
            let http = crate::serve::http_settings(&args, resolved.auth, admin_token, metrics, degraded)?;
            // Kept to tell, after the server stops, whether it appended (see below).
            let log = store.clone();
            let app = forlop_api::Application::build(store, parts, http, listen).await?;
            if load_demo {
                crate::demo::demo_patient(app.engine()).await.context("registering the demo patient")?;
            }
            // Start-up is over: what it freed goes back to the OS, what serving frees is reused.
            forlop_alloc::settle_after_start();
            let addr = app.local_addr()?;
            tracing::info!(%addr, data = %data.display(), "forlop listening");
            // The metrics line comes first: a reader that waits for the GraphQL line has both.
            if let Some(metrics) = app.metrics_addr() {
                eprintln!("forlop: metrics at http://{metrics}/metrics");
            }
            eprintln!("forlop: GraphQL at http://{addr}/graphql (explorer: open it in a browser), subscriptions at ws://{addr}/graphql/ws");
            if !demo_tokens.is_empty() {
                eprintln!("forlop: development tokens (HS256, 30 days; send as `Authorization: Bearer <token>`):");
                for (role, token) in &demo_tokens {
                    eprintln!("  {role:<12} {token}");
                }
            }
            // sled brought its recovery snapshot up to date when it opened: only a node that
            // appended since needs the settle (about a second at city scale) at shutdown.
            app.run_until(shutdown_signal()?).await?;
            if let Some(backup) = backup {
                // Once more up to the head, so a clean stop leaves the backup whole.
                tokio::task::spawn_blocking(move || backup.stop()).await.ok();
            }
            let appended = log.committed() != opened_with;
            drop(log);
            if backend.is_sled() && appended {
                crate::backend::settle(data).await;
            }
            Ok(0)
        }
        Command::Seed { data, store, patients, seed, profile } => {
            let backend = crate::backend::Backend::new(&data, store.as_deref())?;
            let store = backend.open_store().await?;
            let dataset = match profile {
                Profile::City => forlop_seed::demo(seed, patients),
                Profile::Rph2016 => forlop_seed::rph2016(seed),
            };
            let patients = dataset.patients.len();
            let started = std::time::Instant::now();
            let written = crate::seeding::load(&store, &dataset).await?;
            eprintln!(
                "seeded {patients} patients: {} events ({written} new) in {:.1}s; log now holds {}",
                dataset.event_count(),
                started.elapsed().as_secs_f64(),
                store.committed()
            );
            drop(store);
            if backend.is_sled() {
                crate::backend::settle(data).await;
            }
            Ok(0)
        }
        Command::Export { data, store } => {
            let store = crate::backend::Backend::new(&data, store.as_deref())?.open_store().await?;
            let n = crate::ndjson::export(&*store, &mut std::io::stdout().lock()).await?;
            eprintln!("exported {n} events");
            Ok(0)
        }
        Command::Import { data, file, trust_unverified } => {
            if trust_unverified {
                eprintln!("forlop import: WARNING: --trust-unverified: the file's hash chain is NOT checked");
                tracing::warn!(file = %file.display(), "importing without verifying the hash chain");
            }
            let store = open_store(&data)?;
            let outcome = crate::ndjson::import(&*store, &file, trust_unverified).await;
            drop(store);
            crate::backend::settle(data).await;
            match outcome {
                Ok((read, written)) => {
                    eprintln!("imported {read} events, {written} new");
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("forlop import: refused: {e:#}");
                    Ok(1)
                }
            }
        }
        Command::ImportFhir { data, key_file, fhir_care_levels, file } => {
            let code = import_fhir(&data, &key_file, &fhir_care_levels, &file).await;
            crate::backend::settle(data).await;
            code
        }
        Command::Verify { data, store } => {
            let backend = crate::backend::Backend::new(&data, store.as_deref())?;
            let store = backend.open_store().await?;
            let events = match store.verify().await {
                Ok(r) => {
                    println!(
                        "ok: {} events in {} streams, head hash {}",
                        r.events,
                        r.streams,
                        forlop_store::to_hex(&r.head_hash)
                    );
                    true
                }
                Err(StoreError::Corrupt { position, reason }) => {
                    println!("corrupt at position {position}: {reason}");
                    false
                }
                Err(e) => return Err(e.into()),
            };
            // Read-only: an audit changes nothing, not even a torn final record.
            let verified = match &backend {
                crate::backend::Backend::Sled(_) => {
                    forlop_store::access_log::FileAccessLog::verify_dir(&forlop_layout::access_dir(&data))
                }
                crate::backend::Backend::Postgres { .. } => backend.open_access_log().await?.verify().await,
            };
            let access = match verified {
                Ok(r) => {
                    println!("ok: {} access records, head hash {}", r.records, forlop_store::to_hex(&r.head_hash));
                    true
                }
                Err(StoreError::Corrupt { position, reason }) => {
                    println!("access log corrupt at position {position}: {reason}");
                    false
                }
                Err(e) => return Err(e.into()),
            };
            Ok(if events && access { 0 } else { 1 })
        }
        Command::AccessReport { data, store, patient } => {
            let log = crate::backend::Backend::new(&data, store.as_deref())?.open_access_log().await?;
            let filter = forlop_store::access_log::AccessFilter { patient_id: Some(patient), ..Default::default() };
            let (mut after, mut n) = (None, 0);
            println!("time\trole\tactor\tname\thpr\toutcome\toperation\tfields\treason");
            loop {
                let page = log.query(&filter, after, 1000).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.position);
                for r in &page {
                    let r = &r.record;
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        r.at.to_rfc3339(),
                        r.role,
                        r.actor_sub,
                        r.actor_name.as_deref().unwrap_or(""),
                        r.hpr_number.as_deref().unwrap_or(""),
                        r.outcome.as_str(),
                        r.operation,
                        r.fields,
                        r.reason.as_deref().unwrap_or("")
                    );
                    n += 1;
                }
            }
            eprintln!("{n} accesses to patient {patient}");
            Ok(0)
        }
        Command::RotateKey { data, store, old, new } => {
            let old = forlop_vault::MasterKey::load(&old).with_context(|| format!("old key {}", old.display()))?;
            let new = forlop_vault::MasterKey::load(&new).with_context(|| format!("new key {}", new.display()))?;
            let table = crate::backend::Backend::new(&data, store.as_deref())?.open_key_table().await?;
            let n = forlop_vault::rotate(&*table, &old, &new).await?;
            eprintln!("rewrapped {n} data keys; start forlop with the new --key-file");
            Ok(0)
        }
        Command::Migrate { from_data, to } => {
            crate::backend::migrate(&from_data, &to).await?;
            Ok(0)
        }
        Command::Backup(args) => crate::backups::backup(args).await,
        Command::Restore(args) => crate::backups::restore(args).await,
        Command::Schema => {
            print!("{}", forlop_api::sdl());
            Ok(0)
        }
        Command::Reference { page } => {
            print!("{}", crate::reference::markdown(page, &<Cli as clap::CommandFactory>::command()));
            Ok(0)
        }
    }
}

/// Every registered service's id (the demo clinician's token names them all).
async fn registered_services(store: &Arc<dyn EventStore>) -> anyhow::Result<Vec<uuid::Uuid>> {
    let (mut services, mut from) = (Vec::new(), 0);
    loop {
        let page = store.read_all(from, 4096).await?;
        let Some(last) = page.last() else { return Ok(services) };
        from = last.position + 1;
        for e in &page {
            if let Some(forlop_domain::StreamRef::Service(id)) = forlop_domain::StreamRef::parse(&e.stream) {
                if e.version == 0 {
                    services.push(id);
                }
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed here, before the server answers
/// anything: a signal that arrives once the health check passes must stop it cleanly, never kill
/// it with the default action.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        Ok(async move {
            tokio::select! { _ = interrupt.recv() => {}, _ = terminate.recv() => {} }
            tracing::info!("shutting down");
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}

/// The event log's page cache during `import-fhir` (serve uses sled's 1 GB).
const IMPORT_CACHE_BYTES: u64 = 128 * 1024 * 1024;
/// `import-fhir` checkpoints the read model in the background this seldom (and at the end).
const IMPORT_CHECKPOINT_EVERY: u64 = 1_000_000;

/// `forlop import-fhir`: streams the file through the FHIR adapter as the integration
/// `import-fhir`; prints each failed line, and a summary. Exit 1 if any line failed.
async fn import_fhir(
    data: &std::path::Path,
    key_file: &std::path::Path,
    care_levels: &Option<PathBuf>,
    file: &std::path::Path,
) -> anyhow::Result<i32> {
    let master =
        forlop_vault::MasterKey::load(key_file).with_context(|| format!("master key {}", key_file.display()))?;
    let care_levels = crate::serve::care_levels(care_levels)?;
    // Fewer checkpoints than serve's one every 100,000 events: each encodes the whole model, so a
    // backfill spends more on them the larger it grows. A crash meanwhile costs the next start
    // a replay of at most a million events (1 to 2 s); a clean end writes one.
    let settings = forlop_engine::Settings { checkpoint_every: IMPORT_CHECKPOINT_EVERY, ..Default::default() };
    let parts = forlop_layout::sled_parts(data, master, settings)?;
    if let Err(e) = parts.vault.check_master_key().await {
        eprintln!("forlop import-fhir: the master key in {} does not open the key table: {e}", key_file.display());
        return Ok(2);
    }
    // A bulk import writes once and reads little back: a small page cache keeps its memory flat.
    let options = SledOptions { cache_bytes: IMPORT_CACHE_BYTES, ..SledOptions::new(data) };
    let store: Arc<dyn EventStore> =
        Arc::new(SledStore::open(options).with_context(|| format!("opening the store in {}", data.display()))?);
    let engine = forlop_engine::Engine::start(store, parts).await?;
    let fhir = forlop_fhir::Fhir::open(engine.clone(), &data.join("fhir"), care_levels)?;
    let principal = forlop_auth::Principal {
        sub: "import-fhir".to_owned(),
        name: None,
        roles: vec![forlop_auth::Role::Integration],
        services: Vec::new(),
        national_id: None,
        hpr_number: None,
    };
    let caller = forlop_engine::Caller::server(principal, "import-fhir");
    // Lines are read on their own thread, a bounded channel ahead: memory stays flat. They cross
    // in batches: a million lines one by one spent more on the channel than on reading.
    const LINES_PER_BATCH: usize = 512;
    let reader =
        std::io::BufReader::new(std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?);
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<std::io::Result<String>>>(16);
    std::thread::spawn(move || {
        let mut batch = Vec::with_capacity(LINES_PER_BATCH);
        for line in std::io::BufRead::lines(reader) {
            batch.push(line);
            if batch.len() == LINES_PER_BATCH && tx.blocking_send(std::mem::take(&mut batch)).is_err() {
                return;
            }
        }
        let _ = tx.blocking_send(batch);
    });
    let batches = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let lines = Box::pin(futures::StreamExt::flat_map(batches, futures::stream::iter));
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| crate::progress::bar(None, "resources"));
    // Run on the runtime's workers beside the projector, not on this thread: a patient's placing,
    // woken once its events are folded, then resumes on the worker that folded them instead of
    // waking this thread each time.
    let importing = {
        let (fhir, bar, file) = (fhir.clone(), bar.clone(), file.to_path_buf());
        tokio::spawn(async move {
            fhir.import_lines(&caller, lines, 4000, |s, failed| {
                for forlop_fhir::FailedLine { line, issues } in failed {
                    for i in issues {
                        let at = if i.path.is_empty() { String::new() } else { format!(" at {}", i.path) };
                        eprintln!("{}: {}{at}: {}", file.display(), line, i.message);
                    }
                }
                if let Some(b) = &bar {
                    b.set_position(s.resources_read);
                }
            })
            .await
        })
    };
    let summary = importing.await.context("the import task failed")?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    engine.checkpoint().await.ok();
    engine.stop();
    eprintln!("import-fhir: {summary}");
    if summary.held > 0 {
        eprintln!(
            "import-fhir: {} resources wait for what they refer to; they are placed when it arrives",
            summary.held
        );
    }
    // The high-water mark of resident memory (Linux): an import's memory stays flat.
    if let Some(kb) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_owned())))
    {
        eprintln!("import-fhir: peak resident memory {kb}");
    }
    Ok(if summary.failed == 0 { 0 } else { 1 })
}
