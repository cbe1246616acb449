//! The `forlop` binary: serve the API, and the operator's tools around the log.

mod backend;
mod backups;
mod cli;
mod demo;
mod ndjson;
mod progress;
mod reference;
mod seeding;
mod serve;

use clap::Parser;

// Replay and group commit allocate many small, short-lived buffers; glibc malloc spent ~40% of a
// replay in malloc/free, mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: forlop_alloc::MiMalloc = forlop_alloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // Everything forlop creates (the event log, the access log, the key table, checkpoints) is
    // for the service alone: files 0600 and directories 0700, whatever the caller's umask.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // Before the read model is built: see `small_pages_only` for why (about 45 MB at city scale).
    let pages = forlop_alloc::small_pages_only();
    let args = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FORLOP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // FORLOP_LOG_FORMAT=json: one JSON object per line, for log shippers.
    if std::env::var("FORLOP_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.init();
    }
    if let Err(e) = pages {
        tracing::warn!(error = %e, "could not turn transparent huge pages off; resident memory will be higher");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Tasks woken from outside the runtime (a query whose access record the access log's
        // writer thread made durable, an append acknowledged by the store's) wait in the global
        // queue, which a busy worker checks only every 31st task by default. Checking it every
        // 4th serves them in about the order they became ready, which shortens the tail of query
        // latency under load (`query_p99_ms_auth` in docs/performance.md).
        .global_queue_interval(4)
        .build()?;
    let code = runtime.block_on(cli::run(args))?;
    std::process::exit(code)
}
