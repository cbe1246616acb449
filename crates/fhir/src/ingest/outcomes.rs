//! What became of each entry or line, the totals of an import, and the answers built from
//! them: response Bundles, the `$import` OperationOutcome, and engine refusals in the words the
//! caller may read.

use forlop_engine::EngineError;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::outcome::{self, operation_outcome, outcome_with, refusal_message, Issue, IssueType};

/// A placed resource's type and forlop id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedAs {
    pub type_name: &'static str,
    pub id: Uuid,
}

/// What became of one entry (or NDJSON line).
#[derive(Debug, Clone, Default)]
pub struct EntryOutcome {
    /// The resource's type and forlop id, when it was placed (see `location`).
    pub placed_as: Option<PlacedAs>,
    pub appended: usize,
    pub duplicates: usize,
    pub issues: Vec<Issue>,
    /// Every fact was already recorded: the resource was seen before.
    pub unchanged: bool,
    /// Kept until what it refers to arrives (its issues say what).
    pub held: bool,
    /// An R4 resource of this type, which forlop does not record: skipped, not failed.
    pub skipped: Option<&'static str>,
}

impl EntryOutcome {
    /// `Type/uuid` of the resource in forlop's export, when it was placed. Formatted only when
    /// asked: an import places a million and reports none.
    pub fn location(&self) -> Option<String> {
        self.placed_as.map(|p| format!("{}/{}", p.type_name, p.id))
    }

    pub fn ok(&self) -> bool {
        self.issues.is_empty()
    }

    /// The HTTP status FHIR puts in `entry.response.status`: the first issue's, when it failed.
    pub fn status(&self) -> &'static str {
        if self.held {
            return "202 Accepted";
        }
        match self.issues.first() {
            None if self.appended > 0 => "201 Created",
            None => "200 OK",
            Some(i) => i.code.status_line(),
        }
    }
}

/// Why a resource of a type forlop does not record was skipped.
pub fn skipped_issue(type_name: &str) -> Issue {
    Issue::new(
        IssueType::Informational,
        "",
        format!("{type_name} is not recorded by forlop (it records pathway facts only); skipped"),
    )
}

/// One failed (or held) line of an import, with its issues.
#[derive(Debug, Clone)]
pub struct FailedLine {
    /// `line 12`.
    pub line: String,
    pub issues: Vec<Issue>,
}

/// Totals of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    pub resources_read: u64,
    pub events_appended: u64,
    pub duplicates_skipped: u64,
    /// Lines that waited for a resource later in the file, and were placed once it had come.
    pub placed_after_waiting: u64,
    /// Lines still waiting for a resource the file did not have: kept, and placed when it
    /// arrives (`GET /fhir/$unresolved` lists them after the hold time).
    pub held: u64,
    pub failed: u64,
    /// Resources of R4 types forlop does not record, skipped, by type.
    pub skipped: std::collections::BTreeMap<&'static str, u64>,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "resources read {}, events appended {}, duplicates skipped {}, placed after waiting {}, held {}, failed {}",
            self.resources_read,
            self.events_appended,
            self.duplicates_skipped,
            self.placed_after_waiting,
            self.held,
            self.failed
        )?;
        if !self.skipped.is_empty() {
            let by_type: Vec<String> = self.skipped.iter().map(|(t, n)| format!("{t} {n}")).collect();
            write!(
                f,
                ", skipped (not recorded by forlop) {}: {}",
                self.skipped.values().sum::<u64>(),
                by_type.join(", ")
            )?;
        }
        Ok(())
    }
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
            if let Some(type_name) = o.skipped {
                response["outcome"] = outcome_with(&[skipped_issue(type_name)], "information");
            } else if o.held {
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

/// The answer to `$import`: the summary first, as information, then the issues listed, and the
/// summary's figures as an extension.
pub fn import_outcome(summary: &ImportSummary, listed: &[Issue]) -> Value {
    let mut body = operation_outcome(listed);
    if let Some(issues) = body["issue"].as_array_mut() {
        issues.insert(0, outcome::information(&summary.to_string()));
    }
    body["extension"] = json!([{
        "url": "https://forlop.no/fhir/StructureDefinition/import-summary",
        "valueString": serde_json::to_string(summary).unwrap_or_default(),
    }]);
    body
}

/// An engine refusal as an OperationOutcome issue for a caller who may not read the patient's
/// facts (an integration): the same code and issue type, and what is wrong with the fact sent,
/// but none of the recorded facts it was checked against (an episode's dates, another fact's
/// id), nor that an id it names is another patient's.
pub(super) fn withheld_issue(path: &str, e: &EngineError) -> Issue {
    let message = match e {
        EngineError::Domain(d) => d.without_records().to_string(),
        // The engine's claim on a global id (`Engine::claim`) says whose it is.
        EngineError::InvalidInput(m) if m.contains("another patient") => {
            "this fact cannot be recorded under the id it names; what it conflicts with is not \
             disclosed to your role"
                .to_owned()
        }
        other => refusal_message(other),
    };
    Issue::new(IssueType::from(e), path, format!("{}: {message}", e.code()))
}

/// True when every issue is a reference not yet recorded: the entry can wait for it.
pub(super) fn waits(issues: &[Issue]) -> bool {
    !issues.is_empty() && issues.iter().all(|i| i.code == IssueType::NotFound)
}
