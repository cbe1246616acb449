//! Subcommands. Settings come from flags, falling back to `FORLOP_`-prefixed environment variables.

use std::net::SocketAddr;
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
    Serve {
        #[arg(long, env = "FORLOP_DATA", default_value = "data")]
        data: PathBuf,
        #[arg(long, env = "FORLOP_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Load the synthetic demo dataset when the store is empty.
        #[arg(long)]
        demo: bool,
    },
    /// Record synthetic pathways (deterministic for a given --seed; running twice adds nothing).
    Seed {
        #[arg(long, env = "FORLOP_DATA")]
        data: PathBuf,
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
        #[arg(long, env = "FORLOP_DATA")]
        data: PathBuf,
    },
    /// Append the events of an NDJSON export (idempotent: events already stored are skipped).
    Import {
        #[arg(long, env = "FORLOP_DATA")]
        data: PathBuf,
        file: PathBuf,
    },
    /// Recompute the hash chain and stream versions; exit 1 at the first bad position.
    Verify {
        #[arg(long, env = "FORLOP_DATA")]
        data: PathBuf,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Measure the store, replay and queries against raw sled, in one run.
    Bench(crate::bench::BenchArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Profile {
    City,
    Rph2016,
}

pub fn open_store(data: &std::path::Path) -> anyhow::Result<Arc<dyn EventStore>> {
    let store =
        SledStore::open(SledOptions::new(data)).with_context(|| format!("opening the store in {}", data.display()))?;
    Ok(Arc::new(store))
}

pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve { data, listen, demo } => {
            let store = open_store(&data)?;
            if demo && store.committed() == 0 {
                let mut n = crate::seeding::load(&store, &forlop_seed::rph2016(2016)).await?;
                n += crate::seeding::load(&store, &forlop_seed::demo(2016, crate::seeding::DEMO_PATIENTS)).await?;
                tracing::info!(events = n, "loaded the synthetic demo dataset (rph2016 profile and city pathways)");
            }
            let app = forlop_api::Application::build(store, listen).await?;
            let addr = app.local_addr()?;
            tracing::info!(%addr, data = %data.display(), "forlop listening");
            eprintln!("forlop: GraphQL at http://{addr}/graphql (explorer: open it in a browser), subscriptions at ws://{addr}/graphql/ws");
            app.run_until(shutdown_signal()).await?;
            Ok(0)
        }
        Command::Seed { data, patients, seed, profile } => {
            let store = open_store(&data)?;
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
            Ok(0)
        }
        Command::Export { data } => {
            let store = open_store(&data)?;
            let n = crate::ndjson::export(&*store, &mut std::io::stdout().lock()).await?;
            eprintln!("exported {n} events");
            Ok(0)
        }
        Command::Import { data, file } => {
            let store = open_store(&data)?;
            let reader = std::io::BufReader::new(
                std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?,
            );
            let (read, written) = crate::ndjson::import(&*store, reader).await?;
            eprintln!("imported {read} events, {written} new");
            Ok(0)
        }
        Command::Verify { data } => {
            let store = open_store(&data)?;
            match store.verify().await {
                Ok(r) => {
                    println!(
                        "ok: {} events in {} streams, head hash {}",
                        r.events,
                        r.streams,
                        forlop_store::to_hex(&r.head_hash)
                    );
                    Ok(0)
                }
                Err(StoreError::Corrupt { position, reason }) => {
                    println!("corrupt at position {position}: {reason}");
                    Ok(1)
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Schema => {
            print!("{}", forlop_api::sdl());
            Ok(0)
        }
        Command::Bench(args) => crate::bench::run(args).await.map(|_| 0),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
