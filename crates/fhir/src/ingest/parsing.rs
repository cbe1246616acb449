//! Reading what arrives: a Bundle's envelope, and each entry or line as a typed resource, with
//! serde's messages put in FHIR's words.

use forlop_domain::text::quote;
use serde::Deserialize;

use super::{Fhir, MAX_BUNDLE_ENTRIES};
use crate::outcome::{Issue, IssueType};
use crate::r4_types::R4_RESOURCE_TYPES;
use crate::resources::{BundleIn, EntryRequest, Resource, ACCEPTED};

/// An entry as it arrives: where it came from, its fullUrl, and its JSON.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub path: String,
    pub full_url: Option<String>,
    pub json: String,
    /// A Bundle entry's `request`; none for an NDJSON line.
    pub request: Option<EntryRequest>,
}

/// A Bundle as posted: how its entries are to be placed, and the entries, still raw.
#[derive(Debug, Clone)]
pub struct BundleRequest {
    /// A transaction (every entry or none), not a batch (each on its own).
    pub all_or_none: bool,
    pub entries: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct TypeOnly {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
}

/// serde's messages can name Rust types; a client sees FHIR's words instead.
fn plain(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = match msg.find(", expected struct") {
        Some(i) => {
            format!("{}, expected an object{}", &msg[..i], msg[i..].find(" at line").map_or("", |j| &msg[i + j..]))
        }
        None => msg,
    };
    msg.replace("expected a borrowed string", "expected a string")
}

/// Why an entry gave no resource to map.
#[derive(Debug, Clone, PartialEq)]
pub enum Unparsed {
    /// A valid R4 resource type that forlop does not record (a Condition, a MedicationRequest
    /// …): a record system's export always holds some, so it is skipped, not failed.
    Skipped(&'static str),
    /// Not a resource forlop can read: what is wrong with it.
    Failed(Issue),
}

impl From<Issue> for Unparsed {
    fn from(issue: Issue) -> Unparsed {
        Unparsed::Failed(issue)
    }
}

pub fn parse_resource(json: &str, path: &str) -> Result<Resource, Unparsed> {
    if let Some(resource) = Resource::parse_type_first(json) {
        return Ok(resource);
    }
    let t: TypeOnly = serde_json::from_str(json)
        .map_err(|e| Issue::new(IssueType::Structure, path, format!("not a JSON resource: {}", plain(&e))))?;
    let t = t
        .resource_type
        .ok_or_else(|| Issue::new(IssueType::Required, format!("{path}.resourceType"), "resourceType is required"))?;
    let not_taken = || {
        Issue::new(
            IssueType::NotSupported,
            format!("{path}.resourceType"),
            format!("{} is not an R4 resource type; forlop records {}", quote(&t), ACCEPTED.join(", ")),
        )
    };
    match Resource::parse_as(&t, json) {
        Some(parsed) => {
            parsed.map_err(|e| Issue::new(IssueType::Structure, path, format!("{t}: {}", plain(&e))).into())
        }
        None => match R4_RESOURCE_TYPES.binary_search(&t.as_str()) {
            Ok(i) => Err(Unparsed::Skipped(R4_RESOURCE_TYPES[i])),
            Err(_) => Err(not_taken().into()),
        },
    }
}

/// Each entry parsed; pure, so it runs ahead of mapping (which must follow the chunk before).
pub(super) fn parse_all(entries: &[RawEntry]) -> Vec<Result<Resource, Unparsed>> {
    entries.iter().map(|e| parse_resource(&e.json, &e.path)).collect()
}

impl Fhir {
    /// Reads a Bundle's envelope. Entries stay raw so each is parsed, and reported, on its own.
    pub fn read_bundle(body: &[u8]) -> Result<BundleRequest, Issue> {
        let bundle: BundleIn = serde_json::from_slice(body)
            .map_err(|e| Issue::new(IssueType::Structure, "Bundle", format!("not a JSON Bundle: {}", plain(&e))))?;
        if bundle.resource_type != "Bundle" {
            return Err(Issue::new(
                IssueType::NotSupported,
                "resourceType",
                format!("POST /fhir takes a Bundle, not {}", quote(&bundle.resource_type)),
            ));
        }
        let all_or_none = match bundle.type_.as_str() {
            "transaction" => true,
            "batch" => false,
            other => {
                return Err(Issue::new(
                    IssueType::Value,
                    "Bundle.type",
                    format!("{} is not transaction or batch", quote(other)),
                ))
            }
        };
        if bundle.entry.len() > MAX_BUNDLE_ENTRIES {
            return Err(Issue::new(
                IssueType::TooCostly,
                "Bundle.entry",
                format!(
                    "{} entries exceed the limit of {MAX_BUNDLE_ENTRIES}; send bulk data to $import as NDJSON",
                    bundle.entry.len()
                ),
            ));
        }
        let entries = bundle
            .entry
            .into_iter()
            .enumerate()
            .map(|(i, e)| RawEntry {
                path: format!("Bundle.entry[{i}].resource"),
                full_url: e.full_url,
                json: e.resource.map(|r| r.get().to_owned()).unwrap_or_else(|| "null".into()),
                request: e.request,
            })
            .collect();
        Ok(BundleRequest { all_or_none, entries })
    }
}
