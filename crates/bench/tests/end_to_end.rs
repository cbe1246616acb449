//! `forlop-bench` as its users run it: a small run on sled and one on a throwaway PostgreSQL
//! cluster, each starting the real `forlop` binary, and the check that the performance page's
//! tables are the ones made from the checked-in JSON.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The workspace's root, where the docs are.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `forlop` binary beside `forlop-bench`, built first: cargo builds a package's own
/// binaries for its tests, not another package's, and one left from an older build would
/// measure older code.
fn forlop() -> &'static Path {
    static FORLOP: OnceLock<PathBuf> = OnceLock::new();
    FORLOP.get_or_init(|| {
        let bench = Path::new(env!("CARGO_BIN_EXE_forlop-bench"));
        let profile_dir = bench.parent().expect("the bench's directory");
        let target_dir = profile_dir.parent().expect("the target directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--package", "forlop", "--bin", "forlop", "--profile", profile, "--target-dir"])
            .arg(target_dir)
            .current_dir(workspace())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --bin forlop: {status}");
        let forlop = profile_dir.join(format!("forlop{}", std::env::consts::EXE_SUFFIX));
        assert!(forlop.is_file(), "no {}", forlop.display());
        forlop
    })
}

/// Runs `forlop-bench ARGS` and requires success.
fn bench(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_forlop-bench"))
        .args(args)
        .current_dir(workspace())
        .stdin(Stdio::null())
        .output()
        .expect("run forlop-bench");
    assert!(
        out.status.success(),
        "forlop-bench {args:?} exited with {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The `run` object every JSON carries.
fn assert_run_recorded(figures: &Value, store: &str) {
    let run = &figures["run"];
    assert_eq!(run["store"], store, "{run}");
    assert!(run["date"].as_str().is_some_and(|d| d.ends_with('Z')), "a UTC date: {run}");
    assert!(run["machine"]["cores"].as_u64().is_some_and(|n| n > 0), "{run}");
    assert!(run["machine"]["cpu"].is_string() && run["machine"]["kernel"].is_string(), "{run}");
    assert!(run["flags"].as_array().is_some_and(|f| f.iter().any(|a| a == "--out")), "{run}");
}

#[test]
fn given_small_sizes_when_benchmarking_then_every_figure_is_positive() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("b.json");
    let run = bench(&[
        "run",
        "--forlop",
        path(forlop()),
        "--patients",
        "200",
        "--batch-events",
        "2000",
        "--single-events",
        "256",
        "--queries",
        "256",
        "--reports",
        "5",
        "--fhir-resources",
        "2000",
        "--fhir-runs",
        "3",
        "--dir",
        path(tmp.path()),
        "--out",
        path(&out),
    ]);
    let figures: Value = serde_json::from_slice(&std::fs::read(&out).expect("bench wrote --out")).expect("bench JSON");
    for k in [
        "raw_sled_batch_eps",
        "store_batch_eps",
        "raw_sled_single_eps",
        "store_concurrent_eps",
        "replay_eps",
        "query_p50_ms",
        "query_p99_ms_auth",
        "access_log_eps",
        "restart_ready_s",
        "query_rps",
        "report_p99_ms",
        "alerts_p99_ms",
        "fhir_import_rps",
        "fhir_import_peak_rss_mb",
        "mutation_p99_ms_with_backup",
        "backup_lag_p99_ms",
        "restore_eps",
    ] {
        let v = figures[k].as_f64().unwrap_or_else(|| panic!("{k} is not a number in {figures}"));
        assert!(v.is_finite() && v > 0.0, "{k} = {v}");
    }
    assert!(figures["query_p99_ms_auth"].as_f64() >= figures["query_p50_ms"].as_f64(), "{figures}");
    // The import is run three times and the median reported.
    let runs: Vec<f64> = figures["fhir_import_rps_runs"]
        .as_array()
        .unwrap_or_else(|| panic!("fhir_import_rps_runs in {figures}"))
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(runs.len(), 3, "{figures}");
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(figures["fhir_import_rps"].as_f64(), Some(sorted[1]), "{figures}");
    assert_eq!(figures["patients"], 200);
    assert!(figures["log_events"].as_u64().is_some_and(|n| n > 200), "{figures}");
    assert!(figures["episodes"].as_u64().is_some_and(|n| n >= 200), "{figures}");
    assert!(figures["machine"].is_string(), "{figures}");
    assert_run_recorded(&figures, "sled");
    let printed = String::from_utf8_lossy(&run.stdout);
    assert!(printed.contains("store_concurrent_eps"), "the table is printed: {printed}");
    assert!(printed.contains("targets:"), "the targets are printed: {printed}");

    // The run's JSON makes a table.
    let page = tmp.path().join("page.md");
    std::fs::write(&page, "# Figures\n\n<!-- bench-table:begin -->\n<!-- bench-table:end -->\n").unwrap();
    bench(&["table", path(&out), "--into", path(&page)]);
    let table = std::fs::read_to_string(&page).unwrap();
    assert!(table.contains("| `store_batch_eps` |") && table.contains("× raw: **"), "{table}");
    bench(&["table", path(&out), "--into", path(&page), "--check"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_on_postgres_measures_the_store_beside_raw_postgres_and_leaves_no_database_behind() {
    let pg =
        forlop_store::pg_cluster::TestCluster::start(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("start PostgreSQL");
    let url = pg.url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let run = bench(&["run", "--store", &url, "--batch-events", "3000", "--single-events", "640", "--out", path(&out)]);
    let printed = String::from_utf8_lossy(&run.stdout);
    assert!(printed.contains("store_batch_eps ≥ 0.5 × raw"), "{printed}");
    let figures: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    for key in ["raw_pg_batch_eps", "raw_pg_single_eps", "store_batch_eps", "store_concurrent_eps", "read_all_eps"] {
        assert!(figures[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {figures}");
    }
    assert_run_recorded(&figures, "postgres");
    assert!(figures["run"]["postgres"]["version"].as_str().is_some_and(|v| v.starts_with("PostgreSQL")), "{figures}");
    assert!(!figures["run"].to_string().contains(&url), "the store's URL is not recorded: {}", figures["run"]);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let left: i64 = client
        .query_one("SELECT count(*) FROM pg_database WHERE datname LIKE 'forlop_bench_%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the bench dropped its database");
}

/// The performance page's tables are made from the checked-in JSON: a changed figure, target or
/// description fails here until `forlop-bench table` is run again.
#[test]
fn the_performance_tables_are_the_ones_made_from_the_checked_in_runs() {
    let out = Command::new(env!("CARGO_BIN_EXE_forlop-bench"))
        .args([
            "table",
            "docs/performance/bench-sled.json",
            "docs/performance/bench-pg.json",
            "--into",
            "docs/performance.md",
            "--check",
        ])
        .current_dir(workspace())
        .output()
        .expect("run forlop-bench");
    assert!(
        out.status.success(),
        "docs/performance.md is stale: regenerate it with `forlop-bench table docs/performance/bench-sled.json \
         docs/performance/bench-pg.json --into docs/performance.md`\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
