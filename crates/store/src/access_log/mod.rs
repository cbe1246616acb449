//! The access log (pasientjournalloven §§ 18 and 22): one record per patient disclosed by a
//! response, made durable before the response is sent, so the patient can later see who read
//! their record.
//!
//! This module holds the record, its canonical bytes and the `AccessLog` trait; `file_log` holds
//! the embedded implementation: an append-only, hash-chained record file made durable by one
//! `fdatasync` per group of appends, with a rebuildable per-patient index beside it.
//!
//! Fail-stop: if a group cannot be made durable, that group and every later append fail with
//! `StoreError::Unavailable("access log is not durable: ...")`; positions are never reused.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::hash::Hash;
use crate::StoreError;

mod file_log;

pub use file_log::FileAccessLog;

/// Longest string field a record may carry, in bytes.
pub const MAX_FIELD_BYTES: usize = 4096;
/// Version of the canonical encoding, the first field of every record.
const FORMAT: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessOutcome {
    Allowed,
    Denied,
    Emergency,
    /// Read through a relationship the reader recorded themselves (a referral or an episode at
    /// their own service, not yet confirmed by anyone else), with a stated reason.
    SelfGranted,
}

impl AccessOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessOutcome::Allowed => "ALLOWED",
            AccessOutcome::Denied => "DENIED",
            AccessOutcome::Emergency => "EMERGENCY",
            AccessOutcome::SelfGranted => "SELF_GRANTED",
        }
    }

    /// Listed for follow-up (`emergencyOnly`): emergency access and self-granted access.
    pub fn needs_follow_up(self) -> bool {
        matches!(self, AccessOutcome::Emergency | AccessOutcome::SelfGranted)
    }

    /// The stable code stored in the canonical bytes.
    fn code(self) -> u8 {
        match self {
            AccessOutcome::Allowed => 0,
            AccessOutcome::Denied => 1,
            AccessOutcome::Emergency => 2,
            AccessOutcome::SelfGranted => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(AccessOutcome::Allowed),
            1 => Some(AccessOutcome::Denied),
            2 => Some(AccessOutcome::Emergency),
            3 => Some(AccessOutcome::SelfGranted),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    pub patient_id: Uuid,
    pub actor_sub: String,
    pub actor_name: Option<String>,
    pub role: String,
    pub hpr_number: Option<String>,
    /// The GraphQL operation name (or "anonymous"), and the root field(s) that disclosed the data,
    /// e.g. "patient", "events".
    pub operation: String,
    pub fields: String,
    pub outcome: AccessOutcome,
    /// The reason given for emergency access.
    pub reason: Option<String>,
    pub correlation_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAccessRecord {
    pub position: u64,
    pub record: AccessRecord,
    pub hash: Hash,
}

#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    pub patient_id: Option<Uuid>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub emergency_only: bool,
}

impl AccessFilter {
    fn matches(&self, r: &AccessRecord) -> bool {
        self.patient_id.is_none_or(|p| p == r.patient_id)
            && self.from.is_none_or(|from| r.at >= from)
            && self.to.is_none_or(|to| r.at < to)
            && (!self.emergency_only || r.outcome.needs_follow_up())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessVerifyReport {
    pub records: u64,
    pub head_hash: Hash,
}

#[async_trait]
pub trait AccessLog: Send + Sync + 'static {
    /// Appends the records (in order) and returns the position of the first; returns only once
    /// they are durable (fsynced). An empty vec is a no-op returning the current committed count.
    async fn append(&self, records: Vec<AccessRecord>) -> Result<u64, StoreError>;
    /// Records matching `filter` with position > `after` (None: from the start), in log order, at
    /// most `limit`. With a patient filter this uses the per-patient index, not a full scan.
    async fn query(
        &self,
        filter: &AccessFilter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredAccessRecord>, StoreError>;
    /// Number of records committed (the next position).
    fn committed(&self) -> u64;
    /// Hash of the last committed record (GENESIS_HASH when empty).
    fn head_hash(&self) -> Hash;
    /// Recomputes the chain and positions over the whole log (and checks the patient index points
    /// at existing records); Err(StoreError::Corrupt{position,..}) at the first bad record.
    async fn verify(&self) -> Result<AccessVerifyReport, StoreError>;

    /// Why the log accepts no more records, once it has failed (fail-stop); None while healthy.
    fn failure(&self) -> Option<String> {
        None
    }
}

/// The canonical bytes of a record: what the hash covers and what is stored. Ends with the
/// fixed-size patient id, so flipping the last byte changes content without breaking decoding.
#[derive(Serialize, Deserialize)]
struct Canonical<'a> {
    format: u8,
    position: u64,
    at_ns: i64,
    outcome: u8,
    actor_sub: &'a str,
    #[serde(borrow)]
    actor_name: Option<&'a str>,
    role: &'a str,
    #[serde(borrow)]
    hpr_number: Option<&'a str>,
    operation: &'a str,
    fields: &'a str,
    #[serde(borrow)]
    reason: Option<&'a str>,
    correlation_id: Option<[u8; 16]>,
    patient_id: [u8; 16],
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(crate) fn not_durable(reason: &str) -> StoreError {
    StoreError::Unavailable(format!("access log is not durable: {reason}"))
}

fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().expect("8-byte big-endian value"))
}

/// Rejects records the log should not store: absurdly long strings, unrepresentable times.
pub(crate) fn validate(r: &AccessRecord) -> Result<(), StoreError> {
    let strings = [
        ("actor_sub", Some(&r.actor_sub)),
        ("actor_name", r.actor_name.as_ref()),
        ("role", Some(&r.role)),
        ("hpr_number", r.hpr_number.as_ref()),
        ("operation", Some(&r.operation)),
        ("fields", Some(&r.fields)),
        ("reason", r.reason.as_ref()),
    ];
    for (name, value) in strings {
        if let Some(v) = value {
            if v.len() > MAX_FIELD_BYTES {
                return Err(StoreError::InvalidAppend(format!(
                    "access record {name} is {} bytes; at most {MAX_FIELD_BYTES} allowed",
                    v.len()
                )));
            }
        }
    }
    if r.at.timestamp_nanos_opt().is_none() {
        return Err(StoreError::InvalidAppend(format!("access time {} is outside 1677-2262", r.at)));
    }
    Ok(())
}

/// Appends the canonical bytes of `r` at `position` to `out`.
pub(crate) fn encode(r: &AccessRecord, position: u64, out: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let c = Canonical {
        format: FORMAT,
        position,
        at_ns: r.at.timestamp_nanos_opt().ok_or_else(|| StoreError::InvalidAppend("time out of range".into()))?,
        outcome: r.outcome.code(),
        actor_sub: &r.actor_sub,
        actor_name: r.actor_name.as_deref(),
        role: &r.role,
        hpr_number: r.hpr_number.as_deref(),
        operation: &r.operation,
        fields: &r.fields,
        reason: r.reason.as_deref(),
        correlation_id: r.correlation_id.map(|u| *u.as_bytes()),
        patient_id: *r.patient_id.as_bytes(),
    };
    postcard::to_extend(&c, out).map_err(backend)
}

/// The chain hash a record gets at `position` after `previous`: what `AccessLog::append` stores
/// and `verify` recomputes. Lets a copy of the log (a backup) be checked without a store.
pub fn record_hash(previous: &Hash, position: u64, r: &AccessRecord) -> Result<Hash, StoreError> {
    Ok(crate::hash::chain_hash(previous, &encode(r, position, Vec::new())?))
}

/// Splits a stored value into (canonical bytes, hash).
fn split(position: u64, value: &[u8]) -> Result<(&[u8], Hash), StoreError> {
    if value.len() < 32 {
        return Err(StoreError::Corrupt { position, reason: "record without hash".into() });
    }
    let (body, hash) = value.split_at(value.len() - 32);
    Ok((body, hash.try_into().expect("32 bytes")))
}

/// Decodes the record stored under `position`, checking it claims that position.
pub(crate) fn decode(position: u64, value: &[u8]) -> Result<StoredAccessRecord, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let (body, hash) = split(position, value)?;
    let c: Canonical = postcard::from_bytes(body).map_err(|e| corrupt(format!("undecodable record: {e}")))?;
    if c.format != FORMAT {
        return Err(corrupt(format!("unknown record format {}", c.format)));
    }
    if c.position != position {
        return Err(corrupt(format!("record claims position {}", c.position)));
    }
    let outcome =
        AccessOutcome::from_code(c.outcome).ok_or_else(|| corrupt(format!("unknown outcome {}", c.outcome)))?;
    Ok(StoredAccessRecord {
        position,
        record: AccessRecord {
            patient_id: Uuid::from_bytes(c.patient_id),
            actor_sub: c.actor_sub.to_owned(),
            actor_name: c.actor_name.map(str::to_owned),
            role: c.role.to_owned(),
            hpr_number: c.hpr_number.map(str::to_owned),
            operation: c.operation.to_owned(),
            fields: c.fields.to_owned(),
            outcome,
            reason: c.reason.map(str::to_owned),
            correlation_id: c.correlation_id.map(Uuid::from_bytes),
            at: DateTime::from_timestamp_nanos(c.at_ns),
        },
        hash,
    })
}
