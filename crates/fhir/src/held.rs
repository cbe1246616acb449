//! Resources that arrived before what they refer to (an Encounter before its EpisodeOfCare),
//! kept durably beside the alias index and placed again whenever new facts are recorded. After
//! the hold time they are reported by `GET /fhir/$unresolved` and the `forlop_fhir_held` gauge;
//! nothing is dropped silently.
//!
//! A held resource is stored as forlop's typed view of it, with every reference to a patient by
//! national id replaced by the patient's forlop id first, so no file holds a national id. One
//! about a patient who has since been forgotten is dropped (the erasure covers what waited too),
//! never placed.

use chrono::{DateTime, Utc};
use forlop_engine::{Principal, Role};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::outcome::{self, Issue};

/// Who sent a held resource: it is recorded in their name once it can be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    pub sub: String,
    pub name: Option<String>,
    pub roles: Vec<Role>,
    pub services: Vec<Uuid>,
    pub hpr_number: Option<String>,
}

impl Sender {
    pub fn of(p: &Principal) -> Sender {
        Sender {
            sub: p.sub.clone(),
            name: p.name.clone(),
            roles: p.roles.clone(),
            services: p.services.clone(),
            hpr_number: p.hpr_number.clone(),
        }
    }

    pub fn principal(&self) -> Principal {
        Principal {
            sub: self.sub.clone(),
            name: self.name.clone(),
            roles: self.roles.clone(),
            services: self.services.clone(),
            national_id: None,
            hpr_number: self.hpr_number.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldIssue {
    pub code: String,
    pub path: String,
    pub message: String,
}

impl From<&Issue> for HeldIssue {
    fn from(i: &Issue) -> Self {
        HeldIssue { code: i.code.code().to_owned(), path: i.path.clone(), message: i.message.clone() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldEntry {
    pub received_at: DateTime<Utc>,
    pub sender: Sender,
    pub resource_type: String,
    pub resource_id: Option<String>,
    /// The resource as forlop read it (typed, national ids replaced), as JSON.
    pub resource: String,
    pub full_url: Option<String>,
    /// What it waits for; or, once `failed`, why it can never be placed.
    pub issues: Vec<HeldIssue>,
    pub failed: bool,
    /// The patient it is about, as its subject named them when it was kept: once that patient
    /// is forgotten it is dropped, even if its names have since been given to someone new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<Uuid>,
}

/// The durable list of held resources.
#[derive(Clone)]
pub struct HeldStore {
    db: sled::Db,
    tree: sled::Tree,
}

impl std::fmt::Debug for HeldStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeldStore({} held)", self.tree.len())
    }
}

impl HeldStore {
    pub fn open(db: &sled::Db) -> Result<HeldStore, sled::Error> {
        Ok(HeldStore { db: db.clone(), tree: db.open_tree("held")? })
    }

    /// Keeps `entry`, durably, and returns its key.
    pub fn insert(&self, entry: &HeldEntry) -> Result<u64, sled::Error> {
        let key = self.db.generate_id()?;
        let value = serde_json::to_vec(entry).unwrap_or_default();
        self.tree.insert(key.to_be_bytes(), value)?;
        self.tree.flush()?;
        Ok(key)
    }

    pub fn update(&self, key: u64, entry: &HeldEntry) -> Result<(), sled::Error> {
        self.tree.insert(key.to_be_bytes(), serde_json::to_vec(entry).unwrap_or_default())?;
        self.tree.flush().map(|_| ())
    }

    pub fn remove(&self, key: u64) -> Result<(), sled::Error> {
        self.tree.remove(key.to_be_bytes())?;
        self.tree.flush().map(|_| ())
    }

    /// Every held entry, oldest first.
    pub fn all(&self) -> Vec<(u64, HeldEntry)> {
        self.tree
            .iter()
            .flatten()
            .filter_map(|(k, v)| {
                let key = u64::from_be_bytes(<[u8; 8]>::try_from(k.as_ref()).ok()?);
                Some((key, serde_json::from_slice(&v).ok()?))
            })
            .collect()
    }

    /// Updates the gauges: waiting (within the hold time), unresolved (past it), failed.
    pub fn measure(&self, hold: std::time::Duration) {
        let now = Utc::now();
        let (mut waiting, mut unresolved, mut failed) = (0u64, 0u64, 0u64);
        for (_, e) in self.all() {
            if e.failed {
                failed += 1;
            } else if past(&e, hold, now) {
                unresolved += 1;
            } else {
                waiting += 1;
            }
        }
        metrics::gauge!("forlop_fhir_held", "state" => "waiting").set(waiting as f64);
        metrics::gauge!("forlop_fhir_held", "state" => "unresolved").set(unresolved as f64);
        metrics::gauge!("forlop_fhir_held", "state" => "failed").set(failed as f64);
    }
}

/// True once `e` has waited longer than the hold time.
pub fn past(e: &HeldEntry, hold: std::time::Duration, now: DateTime<Utc>) -> bool {
    let hold = chrono::Duration::from_std(hold).unwrap_or(chrono::Duration::MAX);
    now.signed_duration_since(e.received_at) >= hold
}

/// The answer to `GET /fhir/$unresolved`: an OperationOutcome with one issue per held
/// resource's issue (an error once it can never be placed, a warning while it waits), naming
/// the resource, its key and when it arrived; no resource content.
pub fn unresolved_outcome(held: &[(u64, HeldEntry)]) -> serde_json::Value {
    if held.is_empty() {
        return outcome::outcome_of(vec![outcome::information("nothing is unresolved")]);
    }
    let issues = held
        .iter()
        .flat_map(|(key, e)| {
            let name = match &e.resource_id {
                Some(id) => format!("{}/{id}", e.resource_type),
                None => e.resource_type.clone(),
            };
            let severity = if e.failed { "error" } else { "warning" };
            e.issues.iter().map(move |i| {
                let diagnostics = format!(
                    "{name} (held {key}, received {}{}): {}",
                    e.received_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    if e.failed { ", cannot be placed" } else { ", unresolved" },
                    i.message
                );
                // The listing names the held resource, not an element of a request: no expression.
                outcome::issue_json(severity, &i.code, &diagnostics, "")
            })
        })
        .collect();
    outcome::outcome_of(issues)
}
