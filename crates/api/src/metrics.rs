//! What every forlop metric means, in one place: the `# HELP` line `/metrics` prints for it.
//! The metrics are recorded across the crates (store, engine, FHIR, API, backup); a new one
//! gets its line here, and in docs/reference/metrics.md with the same words.

use metrics::{describe_counter, describe_gauge, describe_histogram};

/// Every forlop metric's description, as (name, kind, help). Kept as data so a test can check
/// that nothing recorded lacks one.
pub const DESCRIPTIONS: &[(&str, Kind, &str)] = &[
    ("forlop_failed", Kind::Gauge, "1 when the node is failed (/healthz 503), else 0"),
    (
        "forlop_store_failed",
        Kind::Gauge,
        "1 when that log (events, access) is failed or (PostgreSQL) unreachable, else 0",
    ),
    ("forlop_append_seconds", Kind::Histogram, "One append, from queued to durable (acknowledged)"),
    ("forlop_fsync_seconds", Kind::Histogram, "one flush of a log to disk"),
    ("forlop_group_commit_seconds", Kind::Histogram, "one group commit of a log"),
    ("forlop_group_commit_size", Kind::Histogram, "appends (or access records) in one group commit"),
    ("forlop_events_appended_total", Kind::Counter, "events appended, by event type"),
    (
        "forlop_graphql_requests_total",
        Kind::Counter,
        "GraphQL requests, by operation name and outcome (OK or the first error's code)",
    ),
    ("forlop_graphql_request_seconds", Kind::Histogram, "GraphQL request latency, to the moment the answer may leave"),
    ("forlop_projection_lag_events", Kind::Gauge, "Events committed but not yet folded into the read model"),
    (
        "forlop_projection_stall_seconds",
        Kind::Histogram,
        "how long an event waits, from reaching the projector to being readable",
    ),
    ("forlop_live_subscriptions", Kind::Gauge, "Open GraphQL subscriptions"),
    (
        "forlop_fhir_held",
        Kind::Gauge,
        "FHIR resources held for a reference: waiting, unresolved (past --fhir-hold-seconds), failed",
    ),
    ("forlop_events_unknown_total", Kind::Counter, "events of a type this version does not know, skipped"),
    ("forlop_unrecognised_codes_total", Kind::Counter, "codes this version does not know, decoded as UNRECOGNISED"),
    ("forlop_http_connections", Kind::Gauge, "open HTTP connections (WebSockets included), by listener"),
    (
        "forlop_http_connections_refused_total",
        Kind::Counter,
        "connections closed unanswered because --max-connections were open, by listener",
    ),
    (
        "forlop_jwks_refresh_total",
        Kind::Counter,
        "fetches of the identity provider's key set, by trigger (start, schedule, unknown_kid)",
    ),
    (
        "forlop_jwks_refresh_errors_total",
        Kind::Counter,
        "fetches of the identity provider's key set that failed or brought no usable set (the set in use is kept)",
    ),
    ("forlop_jwks_keys", Kind::Gauge, "keys in the identity provider's key set in use"),
    ("forlop_backup_position", Kind::Gauge, "log position the backup holds every event up to"),
    ("forlop_backup_lag_events", Kind::Gauge, "events committed but not yet in the backup"),
    ("forlop_backup_last_success_timestamp_seconds", Kind::Gauge, "Unix time of the backup's last successful pass"),
    ("forlop_backup_errors_total", Kind::Counter, "backup passes that failed"),
];

/// A metric's Prometheus type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Gives the installed recorder every description. Call once, right after installing it: a
/// recorder installed later never hears of them.
pub fn describe() {
    for &(name, kind, help) in DESCRIPTIONS {
        // No units: they are in the names already (`_seconds`, `_total`, `_events`).
        match kind {
            Kind::Counter => describe_counter!(name, help),
            Kind::Gauge => describe_gauge!(name, help),
            Kind::Histogram => describe_histogram!(name, help),
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
        let described: Vec<&str> = DESCRIPTIONS.iter().map(|(n, _, _)| *n).collect();
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
