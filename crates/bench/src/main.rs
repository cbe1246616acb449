//! `forlop-bench`: the load generator and measurements of forlop (`run`), and the performance
//! page's tables made from their JSON (`table`). A binary of its own, so that the server does
//! not ship it.

mod appends;
mod args;
mod backup;
mod fhir;
mod figures;
mod http_load;
mod in_process;
mod machine;
mod postgres;
mod report;
mod restart;
mod run;
mod server;
mod sled;
mod stats;
mod steal;
mod table;
mod under_load;

use clap::{Parser, Subcommand};

// The in-process server allocates as `forlop serve` does.
#[global_allocator]
static GLOBAL: forlop_alloc::MiMalloc = forlop_alloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "forlop-bench", version, about = "Measure forlop against its raw baselines, and tabulate the figures")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure the store, replay, queries and the server against raw sled (or PostgreSQL), in
    /// one run; prints a table and writes JSON with `--out`.
    Run(Box<args::RunArgs>),
    /// Rewrite the tables of a Markdown page (between `<!-- bench-table:begin -->` and
    /// `<!-- bench-table:end -->`) from the JSON of runs.
    Table(table::TableArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Table(args) => table::table(&args)?,
        Command::Run(args) => {
            // As `forlop` does: its stores are the service's alone, and the read model is
            // built without transparent huge pages.
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
            let pages = forlop_alloc::small_pages_only();
            let filter = tracing_subscriber::EnvFilter::try_from_env("FORLOP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
            if let Err(e) = pages {
                tracing::warn!(error = %e, "could not turn transparent huge pages off; resident memory will be higher");
            }
            // The runtime `forlop serve` runs on (see its `global_queue_interval`).
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().global_queue_interval(4).build()?;
            runtime.block_on(run::run(*args))?;
            0
        }
    };
    std::process::exit(code)
}
