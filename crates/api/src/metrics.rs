//! What every forlop metric means, in one place: the `# HELP` line `/metrics` prints for it and
//! its row in docs/reference/metrics.md, which `forlop reference metrics` prints from here. The
//! metrics are recorded across the crates (store, engine, FHIR, API, backup); a new one gets its
//! entry here.

use metrics::{describe_counter, describe_gauge, describe_histogram};

/// Every forlop metric, described once: the `# HELP` line `/metrics` prints and the row of
/// docs/reference/metrics.md (`forlop reference metrics`). Kept as data so a test can check
/// that nothing recorded lacks one.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "forlop_failed",
        kind: Kind::Gauge,
        labels: "",
        help: "1 when the node is failed (/healthz 503), else 0",
        recorded_by: "every node",
    },
    Metric {
        name: "forlop_store_failed",
        kind: Kind::Gauge,
        labels: "`log`: `events`, `access`",
        help: "1 when that log (events, access) is failed or (PostgreSQL) unreachable, else 0",
        recorded_by: "sled and PostgreSQL event log; embedded access log",
    },
    Metric {
        name: "forlop_append_seconds",
        kind: Kind::Histogram,
        labels: "",
        help: "One append, from queued to durable (acknowledged)",
        recorded_by: "sled and PostgreSQL event log",
    },
    Metric {
        name: "forlop_fsync_seconds",
        kind: Kind::Histogram,
        labels: "`log`: `events`, `access`",
        help: "one flush of a log to disk",
        recorded_by: "sled event log; embedded access log",
    },
    Metric {
        name: "forlop_group_commit_seconds",
        kind: Kind::Histogram,
        labels: "`log`: `events`, `access`",
        help: "one group commit of a log",
        recorded_by: "sled event log; PostgreSQL event log and access log",
    },
    Metric {
        name: "forlop_group_commit_size",
        kind: Kind::Histogram,
        labels: "`log`: `events`, `access`",
        help: "appends (or access records) in one group commit",
        recorded_by: "sled and PostgreSQL event log; embedded access log",
    },
    Metric {
        name: "forlop_events_appended_total",
        kind: Kind::Counter,
        labels: "`type`",
        help: "events appended, by event type",
        recorded_by: "every backend",
    },
    Metric {
        name: "forlop_graphql_requests_total",
        kind: Kind::Counter,
        labels: "`operation`, `outcome`",
        help: "GraphQL requests, by operation name and outcome (OK or the first error's code)",
        recorded_by: "GraphQL over HTTP",
    },
    Metric {
        name: "forlop_graphql_request_seconds",
        kind: Kind::Histogram,
        labels: "`operation`, `outcome`",
        help: "GraphQL request latency, to the moment the answer may leave",
        recorded_by: "GraphQL over HTTP",
    },
    Metric {
        name: "forlop_projection_lag_events",
        kind: Kind::Gauge,
        labels: "",
        help: "Events committed but not yet folded into the read model",
        recorded_by: "every node",
    },
    Metric {
        name: "forlop_projection_stall_seconds",
        kind: Kind::Histogram,
        labels: "",
        help: "how long an event waits, from reaching the projector to being readable",
        recorded_by: "every node",
    },
    Metric {
        name: "forlop_live_subscriptions",
        kind: Kind::Gauge,
        labels: "",
        help: "Open GraphQL subscriptions",
        recorded_by: "every node",
    },
    Metric {
        name: "forlop_fhir_held",
        kind: Kind::Gauge,
        labels: "`state`: `waiting`, `unresolved`, `failed`",
        help: "FHIR resources held for a reference: waiting, unresolved (past --fhir-hold-seconds), failed",
        recorded_by: "FHIR adapter",
    },
    Metric {
        name: "forlop_events_unknown_total",
        kind: Kind::Counter,
        labels: "`type`",
        help: "events of a type this version does not know, skipped",
        recorded_by: "every node",
    },
    Metric {
        name: "forlop_unrecognised_codes_total",
        kind: Kind::Counter,
        labels: "`enum`",
        help: "codes this version does not know, decoded as UNRECOGNISED",
        recorded_by: "every node",
    },
    Metric {
        name: "forlop_http_connections",
        kind: Kind::Gauge,
        labels: "`listener`: `api`, `metrics`",
        help: "open HTTP connections (WebSockets included), by listener",
        recorded_by: "every node",
    },
    Metric {
        name: "forlop_http_connections_refused_total",
        kind: Kind::Counter,
        labels: "`listener`: `api`, `metrics`",
        help: "connections closed unanswered because --max-connections were open, by listener",
        recorded_by: "every node",
    },
    Metric {
        name: "forlop_jwks_refresh_total",
        kind: Kind::Counter,
        labels: "`trigger`: `start`, `schedule`, `unknown_kid`",
        help: "fetches of the identity provider's key set, by trigger (start, schedule, unknown_kid)",
        recorded_by: "`--oidc-issuer`, `--jwks-url`",
    },
    Metric {
        name: "forlop_jwks_refresh_errors_total",
        kind: Kind::Counter,
        labels: "",
        help:
            "fetches of the identity provider's key set that failed or brought no usable set (the set in use is kept)",
        recorded_by: "`--oidc-issuer`, `--jwks-url`",
    },
    Metric {
        name: "forlop_jwks_keys",
        kind: Kind::Gauge,
        labels: "",
        help: "keys in the identity provider's key set in use",
        recorded_by: "`--oidc-issuer`, `--jwks-url`",
    },
    Metric {
        name: "forlop_backup_position",
        kind: Kind::Gauge,
        labels: "",
        help: "log position the backup holds every event up to",
        recorded_by: "`--backup-dir`",
    },
    Metric {
        name: "forlop_backup_lag_events",
        kind: Kind::Gauge,
        labels: "",
        help: "events committed but not yet in the backup",
        recorded_by: "`--backup-dir`",
    },
    Metric {
        name: "forlop_backup_last_success_timestamp_seconds",
        kind: Kind::Gauge,
        labels: "",
        help: "Unix time of the backup's last successful pass",
        recorded_by: "`--backup-dir`",
    },
    Metric {
        name: "forlop_backup_errors_total",
        kind: Kind::Counter,
        labels: "",
        help: "backup passes that failed",
        recorded_by: "`--backup-dir`",
    },
];

/// One metric: its name, type, labels (with their values where they are few), what it
/// measures and which nodes or settings record it.
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    /// Markdown, e.g. `` `log`: `events`, `access` ``; empty when it has none.
    pub labels: &'static str,
    pub help: &'static str,
    pub recorded_by: &'static str,
}

/// A metric's Prometheus type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Gives the installed recorder every description. Call once, right after installing it: a
/// recorder installed later never hears of them.
pub fn describe() {
    for m in METRICS {
        // No units: they are in the names already (`_seconds`, `_total`, `_events`).
        match m.kind {
            Kind::Counter => describe_counter!(m.name, m.help),
            Kind::Gauge => describe_gauge!(m.name, m.help),
            Kind::Histogram => describe_histogram!(m.name, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names in `name!("forlop_…"` calls of the metrics macros in the workspace's sources.
    fn recorded_names() -> std::collections::BTreeSet<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut pending = vec![root.join("src"), root.join("crates")];
        let mut names = std::collections::BTreeSet::new();
        while let Some(path) = pending.pop() {
            if path.is_dir() {
                pending.extend(std::fs::read_dir(&path).unwrap().flatten().map(|e| e.path()));
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(macro_name) {
                    let rest = text[at + macro_name.len()..].trim_start();
                    if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                        if name.starts_with("forlop_") {
                            names.insert(name.to_owned());
                        }
                    }
                }
            }
        }
        names
    }

    #[test]
    fn every_metric_the_workspace_records_is_described_once() {
        let described: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        let unique: std::collections::BTreeSet<&str> = described.iter().copied().collect();
        assert_eq!(unique.len(), described.len(), "a metric is described twice");
        let recorded = recorded_names();
        assert!(recorded.contains("forlop_events_appended_total"), "the scan found the metrics: {recorded:?}");
        for name in &recorded {
            assert!(unique.contains(name.as_str()), "{name} is recorded but has no description here");
        }
        for backup in [
            "forlop_backup_position",
            "forlop_backup_lag_events",
            "forlop_backup_last_success_timestamp_seconds",
            "forlop_backup_errors_total",
        ] {
            assert!(unique.contains(backup), "{backup}");
        }
    }
}
