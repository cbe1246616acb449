//! OperationOutcome and response Bundles, as R4 JSON.

use serde_json::{json, Value};

use crate::ingest::EntryOutcome;
use crate::mapping::Issue;

pub fn operation_outcome(issues: &[Issue]) -> Value {
    outcome_with(issues, "error")
}

/// An OperationOutcome whose issues all have `severity` (`warning` for a held resource).
pub fn outcome_with(issues: &[Issue], severity: &str) -> Value {
    let issue: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut v = json!({ "severity": severity, "code": i.code, "diagnostics": i.message });
            if !i.path.is_empty() {
                v["expression"] = json!([i.path]);
            }
            v
        })
        .collect();
    json!({ "resourceType": "OperationOutcome", "issue": issue })
}

/// The answer to a batch, or to a transaction that was placed: one response per entry.
pub fn response_bundle(all_or_none: bool, outcomes: &[EntryOutcome]) -> Value {
    let entry: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let mut response = json!({ "status": o.status() });
            if let Some(l) = o.location() {
                if o.ok() {
                    response["location"] = json!(l);
                }
            }
            if o.held {
                response["outcome"] = outcome_with(&o.issues, "warning");
            } else if !o.ok() {
                response["outcome"] = operation_outcome(&o.issues);
            }
            json!({ "response": response })
        })
        .collect();
    let kind = if all_or_none { "transaction-response" } else { "batch-response" };
    json!({ "resourceType": "Bundle", "type": kind, "entry": entry })
}
