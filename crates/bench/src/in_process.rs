//! The seeded data directory and the API served from it inside the bench's process: seeding and
//! replay figures, then the server the HTTP load is measured against, as deployed (every
//! request verifies a JWT, every patient read appends a durable access record first).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;
use uuid::Uuid;

use forlop_store::{EventStore, SledOptions, SledStore};

use crate::args::RunArgs;
use crate::report::Figures;
use crate::stats::eps;

/// Events replayed for `replay_eps`.
pub const REPLAY_EVENTS: u64 = 1_000_000;

/// A data directory seeded with `--patients` synthetic pathways.
pub struct Seeded {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn EventStore>,
    /// Every seeded patient, for the queries.
    pub ids: Arc<Vec<Uuid>>,
    /// Events in the log.
    pub events: u64,
    pub episodes: usize,
    /// The service with the most episodes, and how many.
    pub largest: (Uuid, usize),
}

/// Seeds the data directory (`seed_eps`), then replays it into every projection
/// (`replay_eps`, `replay_full_eps`).
pub async fn seed_and_replay(args: &RunArgs, figures: &mut Figures) -> anyhow::Result<Seeded> {
    eprintln!("bench: seeding {} patients ...", args.patients);
    let dir = args.tempdir()?;
    let store: Arc<dyn EventStore> = Arc::new(SledStore::open(SledOptions::new(dir.path()))?);
    let dataset = forlop_seed::demo(42, args.patients);
    let ids: Arc<Vec<Uuid>> =
        Arc::new(dataset.patients.iter().filter_map(|p| p[0].command.stream().patient_id()).collect());
    let seed_started = Instant::now();
    let progress = indicatif::ProgressBar::new(dataset.event_count() as u64);
    let seeded = forlop_seed::load(&store, &dataset, &|n| progress.inc(n)).await?;
    progress.finish_and_clear();
    let seed_eps = eps(seeded as usize, seed_started.elapsed());
    drop(dataset);

    eprintln!("bench: replaying 1,000,000 events, then all {seeded}, into every projection ...");
    let started = Instant::now();
    let first = forlop_engine::rebuild_until(&store, REPLAY_EVENTS).await?;
    let replay = eps(first.position as usize, started.elapsed());
    drop(first);
    let started = Instant::now();
    let model = forlop_engine::rebuild(&store).await?;
    let replay_full = eps(model.position as usize, started.elapsed());
    anyhow::ensure!(model.patients.len() == args.patients, "replay lost patients");
    let episodes: usize = model.episodes_by_service.values().map(|e| e.len()).sum();
    let largest = model
        .episodes_by_service
        .iter()
        .map(|(s, e)| (*s, e.len()))
        .max_by_key(|(_, n)| *n)
        .context("no episodes seeded")?;
    drop(model);
    figures.push("seed_eps", seed_eps, format!("seeding {} patients through the domain rules", args.patients));
    figures.push("replay_eps", replay, format!("rebuild all projections from the first {REPLAY_EVENTS} events"));
    figures.push("replay_full_eps", replay_full, format!("rebuild all projections from all {seeded} events"));
    Ok(Seeded { dir, store, ids, events: seeded, episodes, largest })
}

/// The API on the seeded store, on a loopback port.
pub struct InProcess {
    pub addr: std::net::SocketAddr,
    pub engine: forlop_engine::Engine,
    /// An admin's and an analyst's bearer tokens.
    pub token: String,
    pub analyst_token: String,
    /// What the continuous backup reads, as `serve --backup-dir` hands it over.
    pub backup_sources: Option<forlop_backup::Sources>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    pub async fn start(dir: &std::path::Path, store: &Arc<dyn EventStore>) -> anyhow::Result<InProcess> {
        let secret: Vec<u8> = (0..48).map(|i| b'a' + (i % 26) as u8).collect();
        let verifier = forlop_auth::Verifier::new(
            forlop_auth::VerifierConfig {
                issuer: "bench".into(),
                audience: "forlop".into(),
                leeway_seconds: 30,
                claims: Default::default(),
            },
            vec![forlop_auth::KeySource::Hs256Secret(secret.clone())],
        )?;
        let now = chrono::Utc::now().timestamp();
        let token = forlop_auth::mint_hs256(
            &secret,
            &json!({ "iss": "bench", "aud": "forlop", "sub": "bench-admin", "role": "admin", "exp": now + 3600 }),
        )?;
        let analyst_token = forlop_auth::mint_hs256(
            &secret,
            &json!({ "iss": "bench", "aud": "forlop", "sub": "bench-analyst", "role": "analyst", "exp": now + 3600 }),
        )?;
        let parts =
            forlop_layout::sled_parts(dir, forlop_vault::MasterKey::generate(), forlop_engine::Settings::default())?;
        let backup_sources = forlop_backup::Sources {
            events: store.clone(),
            access: parts.access_log.clone(),
            keys: parts.vault.key_table(),
        };
        let http = forlop_api::HttpSettings {
            auth: forlop_api::Authenticator::Jwt(verifier),
            allowed_origins: Vec::new(),
            explorer_token: None,
            metrics: None,
            fhir: None,
            request_timeout: forlop_api::DEFAULT_REQUEST_TIMEOUT,
            metrics_listen: None,
            header_read_timeout: forlop_api::DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: forlop_api::DEFAULT_MAX_CONNECTIONS,
            degraded: None,
        };
        let app = forlop_api::Application::build(store.clone(), parts, http, "127.0.0.1:0".parse()?).await?;
        // As `forlop serve` does once it has started.
        forlop_alloc::settle_after_start();
        let addr = app.local_addr()?;
        let engine = app.engine().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Ok(InProcess { addr, engine, token, analyst_token, backup_sources: Some(backup_sources), stop, server })
    }

    /// Stops the server; it writes its read-model checkpoint as it stops.
    pub async fn stop(self) -> anyhow::Result<()> {
        let InProcess { engine, stop, server, backup_sources, .. } = self;
        drop((engine, backup_sources));
        let _ = stop.send(());
        server.await?
    }
}
