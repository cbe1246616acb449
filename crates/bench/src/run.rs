//! `forlop-bench run`: the store, replay, queries, reports, writers, backup, restart and FHIR
//! import, each beside its raw baseline measured in the same run on the same disk.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;

use forlop_store::EventStore;

use crate::appends::WRITERS;
use crate::args::{Only, RunArgs};
use crate::figures::Store;
use crate::http_load::CLIENTS;
use crate::in_process::{InProcess, Seeded};
use crate::machine::Machine;
use crate::report::{report, Figures};
use crate::server::Forlop;
use crate::under_load::{mutations, REPORT_CLIENTS};

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.store {
        let (rows, server) = crate::postgres::run(url, args.batch_events, args.single_events).await?;
        return report(&args, Store::Postgres, &Figures { rows, ..Figures::default() }, Some(server));
    }
    // Only the patient queries run without a `forlop` process.
    let forlop = match args.only {
        Some(Only::Queries) => None,
        _ => Some(Forlop::locate(args.forlop.as_deref())?),
    };
    if let (Some(Only::Fhir), Some(forlop)) = (args.only, &forlop) {
        let dir = args.tempdir()?;
        let fhir = crate::fhir::fhir_import(forlop, dir.path(), args.fhir_resources, args.fhir_runs)?;
        println!("forlop-bench on {}", Machine::this().short());
        println!(
            "fhir_import_rps          {:>12.0}  `forlop import-fhir`, {} resources of NDJSON, {}",
            fhir.median(),
            fhir.lines,
            fhir.runs()
        );
        println!("fhir_import_peak_rss_mb  {:>12.1}  its peak resident memory (the largest)", fhir.peak_mb);
        return Ok(());
    }
    let mut figures = Figures::default();
    if args.only.is_none() {
        crate::sled::figures(&args, &mut figures).await?;
    }

    let Seeded { dir, store, ids, events, episodes, largest } =
        crate::in_process::seed_and_replay(&args, &mut figures).await?;
    eprintln!("bench: {} continuity queries over HTTP, {CLIENTS} clients ...", args.queries);
    let server = InProcess::start(dir.path(), &store).await?;
    let (p50, p99, rps, steal) =
        crate::http_load::queries(&args, server.addr, ids, &server.token).await.context("query benchmark")?;
    figures.push(
        "query_p50_ms",
        p50,
        format!("patient continuity over HTTP, {CLIENTS} clients, {} patients", args.patients),
    );
    figures.push("query_p99_ms_auth", p99, "the same, each with a JWT and its durable access record");
    figures.push("query_rps", rps, "");
    figures.push("query_cpu_steal_pct", steal, "CPU time the VM's host took for others meanwhile");
    match &forlop {
        None => server.stop().await?,
        Some(forlop) => {
            let seeded = SeededCounts { events, episodes, largest };
            over_http(&args, forlop, server, store, dir.path(), seeded, &mut figures).await?;
        }
    }
    if let (None, Some(forlop)) = (args.only, &forlop) {
        eprintln!("bench: access log, {WRITERS} concurrent readers ...");
        let access_eps = crate::sled::access_log_eps(&args).await.context("access log benchmark")?;
        figures.push(
            "access_log_eps",
            access_eps,
            format!("durable access records, {WRITERS} concurrent, one per append"),
        );
        fhir_figures(&args, forlop, &mut figures)?;
    }
    figures.extra.insert("log_events".into(), json!(events));
    figures.extra.insert("patients".into(), json!(args.patients));
    figures.extra.insert("episodes".into(), json!(episodes));
    if args.keep {
        eprintln!("bench: the seeded data directory is kept at {}", dir.keep().display());
    }
    report(&args, Store::Sled, &figures, None)
}

/// What the seeded log holds, for the descriptions of the figures measured on it.
struct SeededCounts {
    events: u64,
    episodes: usize,
    largest: (uuid::Uuid, usize),
}

/// Reports and alerts, the writers alone, under reports and with the backup running, the
/// restore of that backup, and the server's shutdown and restart.
async fn over_http(
    args: &RunArgs,
    forlop: &Forlop,
    mut server: InProcess,
    store: Arc<dyn EventStore>,
    dir: &Path,
    seeded: SeededCounts,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let SeededCounts { events: seeded, episodes, largest: (largest, largest_episodes) } = seeded;
    let (addr, token) = (server.addr, server.token.clone());
    eprintln!("bench: {} pathway reports and {} care-alert lists ...", args.reports, args.reports);
    let (report_p99, analyst_p99, alerts_p99) =
        crate::http_load::reports(args, addr, &token, &server.analyst_token).await.context("report benchmark")?;
    eprintln!("bench: {WRITERS} writers registering patients, alone, then under {REPORT_CLIENTS} report loops ...");
    // One unmeasured round first: the first writes after the read phases meet cold sled
    // pages, which would make the writers alone look slower than under reports.
    let (_, warm_up) = mutations(addr, &token, largest, 0).await.context("mutation warm-up")?;
    let (mutation_p99, alone) = mutations(addr, &token, largest, 0).await.context("mutation benchmark")?;
    server.engine.take_max_stall();
    let (mutation_p99_reports, under_reports) =
        mutations(addr, &token, largest, REPORT_CLIENTS).await.context("mutation benchmark under reports")?;
    let backup = crate::backup::with_backup(args, &mut server, &store, largest).await?;
    // The restarted server holds the seeded patients and those the writers registered, one
    // event each.
    let registered = warm_up + alone + under_reports + backup.registered;
    let patients = args.patients + registered;
    let max_stall_ms = server.engine.take_max_stall().as_secs_f64() * 1000.0;
    let shutdown_s = crate::restart::shut_down(server, store, dir).await?;
    eprintln!(
        "bench: restoring the backup of all {} events into a new data directory ...",
        seeded as usize + registered
    );
    let restore_dir = args.tempdir()?;
    let restore_eps = crate::backup::restore_eps(backup.dir.path(), restore_dir.path()).await?;
    drop((restore_dir, backup.dir));
    eprintln!("bench: restart from the checkpoint: `forlop serve` until /readyz answers 200 ...");
    let (restart_s, resident) = crate::restart::restart_to_ready(forlop, dir).await.context("restart benchmark")?;
    let model_bytes_per_patient = resident as f64 / patients.max(1) as f64;
    figures.push(
        "report_p99_ms",
        report_p99,
        format!("pathwayReport, one service-year, {episodes} episodes in the log"),
    );
    figures.push(
        "report_p99_ms_analyst",
        analyst_p99,
        format!(
            "the same reports as an analyst (cell key perturbation), in alternation: {:.2} × exact",
            analyst_p99 / report_p99.max(f64::MIN_POSITIVE)
        ),
    );
    figures.push("alerts_p99_ms", alerts_p99, "careAlerts over every service at a random date");
    figures.push("mutation_p99_ms", mutation_p99, format!("registerPatient over HTTP, {WRITERS} writers alone"));
    figures.push(
        "mutation_p99_under_reports_ms",
        mutation_p99_reports,
        format!(
            "the same while {REPORT_CLIENTS} clients loop the all-time pathwayReport of the largest service ({largest_episodes} episodes)"
        ),
    );
    figures.push(
        "mutation_p99_ms_with_backup",
        backup.mutation_p99_ms,
        format!(
            "the writers alone with the continuous backup running (its first copy took {:.1} s)",
            backup.first_copy_s
        ),
    );
    figures.push(
        "backup_lag_p99_ms",
        backup.lag_p99_ms,
        "from an event's commit until the backup's manifest counts it, under those writers",
    );
    figures.push(
        "restore_eps",
        restore_eps,
        "forlop restore of the whole backup: verify it, append every event, verify the store",
    );
    figures.push(
        "max_projection_stall_ms",
        max_stall_ms,
        "longest wait of an event between reaching the projector and being readable, under that load",
    );
    figures.push(
        "shutdown_s",
        shutdown_s,
        "stopping the server: the read-model checkpoint, then sled's recovery snapshot",
    );
    figures.push(
        "restart_ready_s",
        restart_s,
        format!(
            "`forlop serve` process start to /readyz 200 on all {} events, from the checkpoint",
            seeded as usize + registered
        ),
    );
    figures.push(
        "read_model_bytes_per_patient",
        model_bytes_per_patient,
        format!("resident memory of that ready server (read model, caches, runtime) per patient, of {patients}"),
    );
    Ok(())
}

/// `forlop import-fhir` of `--fhir-resources` resources, `--fhir-runs` times.
fn fhir_figures(args: &RunArgs, forlop: &Forlop, figures: &mut Figures) -> anyhow::Result<()> {
    eprintln!(
        "bench: `forlop import-fhir` over {} FHIR resources of NDJSON, {} times ...",
        args.fhir_resources, args.fhir_runs
    );
    let dir = args.tempdir()?;
    let fhir = crate::fhir::fhir_import(forlop, dir.path(), args.fhir_resources, args.fhir_runs)?;
    figures.extra.insert("fhir_import_rps_runs".into(), json!(fhir.rates));
    figures.push(
        "fhir_import_rps",
        fhir.median(),
        format!(
            "`forlop import-fhir`, {} resources (10 per patient pathway), process start to exit; {}",
            fhir.lines,
            fhir.runs()
        ),
    );
    figures.push(
        "fhir_import_peak_rss_mb",
        fhir.peak_mb,
        "its peak resident memory, the largest of the runs (mostly the read model it builds)",
    );
    Ok(())
}
