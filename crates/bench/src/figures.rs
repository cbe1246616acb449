//! The table of figures: for each store, every figure a run reports, what it measures and its
//! target. The performance page's tables and the targets a run prints are made from it.
//!
//! In `what`, `{patients}`, `{log_events}` and `{episodes}` stand for those numbers of the run,
//! `{fhir_runs}` for the rate of each FHIR import run.

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Sled,
    Postgres,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Sled => "sled",
            Store::Postgres => "postgres",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Store::Sled => "sled",
            Store::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// Measured for context, with no target.
    None,
    /// The raw baseline other figures of the run are divided by.
    Baseline,
    /// Conditions of the run that explain other figures (not forlop's doing).
    Context,
    /// At least this much; the text after the number, if any, qualifies it.
    AtLeast(f64, &'static str),
    /// At most this much.
    AtMost(f64, &'static str),
    /// At least `factor` times figure `of` of the same run (`label` names it in the table).
    TimesAtLeast { of: &'static str, label: &'static str, factor: f64 },
    /// At most `factor` times figure `of` of the same run.
    TimesAtMost { of: &'static str, label: &'static str, factor: f64 },
    /// A rate (events per second) at which the run's whole log takes at most this many seconds.
    LogWithin(f64),
    /// No number: what the figure grows with.
    Note(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub struct Figure {
    pub store: Store,
    pub key: &'static str,
    pub what: &'static str,
    pub target: Target,
}

const fn sled(key: &'static str, what: &'static str, target: Target) -> Figure {
    Figure { store: Store::Sled, key, what, target }
}

const fn pg(key: &'static str, what: &'static str, target: Target) -> Figure {
    Figure { store: Store::Postgres, key, what, target }
}

pub const FIGURES: &[Figure] = &[
    sled("raw_sled_batch_eps", "raw sled, 300-byte values, 1,000 per batch, flush per batch", Target::Baseline),
    sled(
        "store_batch_eps",
        "forlop append of 1,000 realistic events, durable",
        Target::TimesAtLeast { of: "raw_sled_batch_eps", label: "raw", factor: 0.5 },
    ),
    sled("raw_sled_single_eps", "raw sled, one insert + flush at a time", Target::Baseline),
    sled(
        "store_concurrent_eps",
        "64 concurrent writers, one event per append to distinct patients, durable (group commit)",
        Target::TimesAtLeast { of: "raw_sled_single_eps", label: "raw", factor: 2.0 },
    ),
    sled("seed_eps", "seeding {patients} patients through the domain rules, 64 appends in flight", Target::None),
    sled(
        "replay_eps",
        "rebuilding every projection from the first 1,000,000 events",
        Target::AtLeast(500_000.0, ""),
    ),
    sled("replay_full_eps", "rebuilding every projection from all {log_events} events", Target::None),
    sled(
        "query_p50_ms",
        "patient continuity query over HTTP, 32 concurrent clients, JWT and durable access record each",
        Target::None,
    ),
    sled("query_p99_ms_auth", "the same", Target::AtMost(10.0, "")),
    sled("query_rps", "the same", Target::None),
    sled("query_cpu_steal_pct", "CPU time the host took for other guests during the query phase", Target::Context),
    sled(
        "report_p99_ms",
        "full `pathwayReport` for one service-year, as an admin (exact), one request at a time, {episodes} episodes in the log",
        Target::AtMost(100.0, ""),
    ),
    sled(
        "report_p99_ms_analyst",
        "the same reports as an analyst (cell key perturbation), measured in alternation with the exact ones",
        Target::TimesAtMost { of: "report_p99_ms", label: "exact", factor: 1.5 },
    ),
    sled("alerts_p99_ms", "`careAlerts` over every service at a random date", Target::AtMost(200.0, "")),
    sled("mutation_p99_ms", "`registerPatient` over HTTP, 64 writers, after an unmeasured warm-up round", Target::None),
    sled(
        "mutation_p99_under_reports_ms",
        "the same writers while 4 clients loop the all-time `pathwayReport` of the largest service",
        Target::TimesAtMost { of: "mutation_p99_ms", label: "alone", factor: 3.0 },
    ),
    sled(
        "mutation_p99_ms_with_backup",
        "the same writers alone with `--backup-dir` running (after its first copy of the log and one unmeasured round)",
        Target::TimesAtMost { of: "mutation_p99_ms", label: "alone", factor: 1.1 },
    ),
    sled(
        "backup_lag_p99_ms",
        "from an event's commit until the backup's manifest counts it, under those writers",
        Target::AtMost(1000.0, " (recovery point)"),
    ),
    sled(
        "restore_eps",
        "`forlop restore` of the whole backup: verify it, append every event, verify the store",
        Target::LogWithin(60.0),
    ),
    sled(
        "max_projection_stall_ms",
        "longest wait of an event between reaching the projector and being readable, under that load",
        Target::AtMost(5.0, ""),
    ),
    sled(
        "shutdown_s",
        "stopping the server: the read-model checkpoint, then bringing sled's recovery snapshot up to date",
        Target::None,
    ),
    sled(
        "restart_ready_s",
        "`forlop serve` process start to `/readyz` 200 on the whole log, from the checkpoint",
        Target::AtMost(2.0, ""),
    ),
    sled(
        "read_model_bytes_per_patient",
        "resident memory of that ready server (read model, sled, runtime) per patient it holds (the seeded ones and those the writers registered)",
        Target::AtMost(2048.0, ""),
    ),
    sled(
        "access_log_eps",
        "durable access records, 64 concurrent appenders, one record per append",
        Target::None,
    ),
    sled(
        "fhir_import_rps",
        "`forlop import-fhir` of 1,000,000 resources, process start to exit; median of {fhir_runs}",
        Target::AtLeast(50_000.0, " (median)"),
    ),
    sled(
        "fhir_import_peak_rss_mb",
        "the import's peak resident memory, the largest of the runs",
        Target::Note("grows with the pathways imported (the read model it builds), not with the file's lines"),
    ),
    pg("raw_pg_batch_eps", "raw PostgreSQL: multi-row INSERT of 1,000 rows in one transaction", Target::Baseline),
    pg(
        "store_batch_eps",
        "forlop appends of 1,000 events, committed",
        Target::TimesAtLeast { of: "raw_pg_batch_eps", label: "raw", factor: 0.5 },
    ),
    pg("raw_pg_single_eps", "raw PostgreSQL: one INSERT + COMMIT at a time, one client", Target::Baseline),
    pg(
        "store_concurrent_eps",
        "64 concurrent writers, one event per append, committed (group commit)",
        Target::TimesAtLeast { of: "raw_pg_single_eps", label: "raw", factor: 3.0 },
    ),
    pg("read_all_eps", "the whole log read back in pages of 10,000", Target::None),
];

/// The figures of one store, in the order of the table.
pub fn of(store: Store) -> impl Iterator<Item = &'static Figure> {
    FIGURES.iter().filter(move |f| f.store == store)
}

/// Whether a target was met, and how it reads (`≥ 0.5 × raw: 2.49, met`); None for a figure
/// without a target or whose baseline the run lacks.
pub struct Verdict {
    pub text: String,
    pub met: Option<bool>,
}

impl Target {
    /// How the target reads for `value`, in the run whose figures are `run`. `strong` marks up
    /// the ratio (the table bolds it).
    pub fn verdict(&self, value: f64, run: &Value, strong: bool) -> Verdict {
        let bold = |s: String| if strong { format!("**{s}**") } else { s };
        let judged = |target: String, shown: Option<String>, met: bool| {
            let shown = shown.map(|s| format!("{}, ", bold(s))).unwrap_or_default();
            let outcome = if met {
                "met"
            } else if strong {
                "**not met**"
            } else {
                "NOT MET"
            };
            Verdict { text: format!("{target}: {shown}{outcome}"), met: Some(met) }
        };
        let plain = |text: &str| Verdict { text: text.to_owned(), met: None };
        match *self {
            Target::None => plain(""),
            Target::Baseline => plain("(baseline)"),
            Target::Context => plain("(context)"),
            Target::Note(text) => plain(text),
            Target::AtLeast(limit, qualifier) => {
                judged(format!("≥ {}{qualifier}", limit_text(limit)), None, value >= limit)
            }
            Target::AtMost(limit, qualifier) => {
                judged(format!("≤ {}{qualifier}", limit_text(limit)), None, value <= limit)
            }
            Target::TimesAtLeast { of, label, factor } | Target::TimesAtMost { of, label, factor } => {
                let Some(base) = run[of].as_f64().filter(|b| *b > 0.0) else { return plain("") };
                let ratio = value / base;
                let at_least = matches!(self, Target::TimesAtLeast { .. });
                let (sign, met) = if at_least { ("≥", ratio >= factor) } else { ("≤", ratio <= factor) };
                judged(format!("{sign} {factor} × {label}"), Some(format!("{ratio:.2}")), met)
            }
            Target::LogWithin(seconds) => {
                let Some(events) = run["log_events"].as_f64().filter(|_| value > 0.0) else { return plain("") };
                let took = events / value;
                judged(format!("the whole log in ≤ {seconds} s"), Some(format!("{took:.0} s")), took <= seconds)
            }
        }
    }
}

/// A figure as the table shows it: two decimals below 100, whole numbers with thousands
/// separators above.
pub fn number(v: f64) -> String {
    if v.abs() < 100.0 {
        return format!("{v:.2}");
    }
    thousands(v)
}

/// A target's limit: whole numbers as such (`10`, `2,048`), others as written (`0.5`).
fn limit_text(v: f64) -> String {
    if v.fract() == 0.0 {
        thousands(v)
    } else {
        format!("{v}")
    }
}

/// `v` rounded, with thousands separators.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// `what` with the run's numbers in place of its placeholders.
pub fn describe(what: &str, run: &Value) -> String {
    let count = |key: &str| run[key].as_f64().map(number).unwrap_or_else(|| "?".into());
    let runs = run["fhir_import_rps_runs"]
        .as_array()
        .map(|rs| rs.iter().filter_map(Value::as_f64).map(number).collect::<Vec<_>>().join(" / "))
        .unwrap_or_else(|| "?".into());
    what.replace("{patients}", &count("patients"))
        .replace("{log_events}", &count("log_events"))
        .replace("{episodes}", &count("episodes"))
        .replace("{fhir_runs}", &runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_read_as_the_table_shows_them() {
        assert_eq!(number(165_277.4), "165,277");
        assert_eq!(number(1_751.0), "1,751");
        assert_eq!(number(207.0), "207");
        assert_eq!(number(2.13), "2.13");
        assert_eq!(number(0.0), "0.00");
        assert_eq!(number(1_347_019.0), "1,347,019");
    }

    #[test]
    fn a_target_against_the_baseline_reads_with_its_ratio() {
        let run = json!({ "raw_sled_batch_eps": 165_277.0, "log_events": 3_450_000 });
        let t = Target::TimesAtLeast { of: "raw_sled_batch_eps", label: "raw", factor: 0.5 };
        assert_eq!(t.verdict(411_777.0, &run, true).text, "≥ 0.5 × raw: **2.49**, met");
        assert_eq!(t.verdict(41_177.0, &run, true).text, "≥ 0.5 × raw: **0.25**, **not met**");
        assert_eq!(Target::AtMost(10.0, "").verdict(4.96, &run, true).text, "≤ 10: met");
        assert_eq!(
            Target::LogWithin(60.0).verdict(115_000.0, &run, true).text,
            "the whole log in ≤ 60 s: **30 s**, met"
        );
        assert!(t.verdict(1.0, &json!({}), true).met.is_none(), "no baseline, no verdict");
    }

    #[test]
    fn every_figure_is_listed_once_per_store() {
        for store in [Store::Sled, Store::Postgres] {
            let mut keys: Vec<_> = of(store).map(|f| f.key).collect();
            let n = keys.len();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), n, "{store:?}");
        }
    }
}
