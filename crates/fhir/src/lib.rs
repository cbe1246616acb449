//! forlop's HL7 FHIR R4 adapter, over the engine as GraphQL is: Bundles (transaction, batch)
//! and NDJSON in, mapped to the domain's commands and recorded exactly once; a patient's pathway
//! out as a searchset Bundle (`$everything`).
//!
//! Invariants:
//! - Knows no HTTP: the server and the CLI call it. Authorisation and access logging stay in the
//!   engine: every fact is an `Engine::record`, every export an `Engine::read_patient`.
//! - Exactly once: a resource's forlop id and each fact's event id are name-based UUIDs of its
//!   identity (see `identity`), so a resent resource or file appends nothing.
//! - Resources are typed serde structs (`resources`); a resource is never read by walking JSON.
//! - Every refusal names the element as a FHIRPath, and a transaction with any refusal found
//!   while mapping appends nothing.

pub mod capability;
pub mod care_levels;
pub mod export;
pub mod held;
pub mod identity;
pub mod ingest;
pub mod mapping;
pub mod outcome;
mod query;
pub mod r4_types;
pub mod read;
pub mod resources;
pub mod search;

pub use care_levels::CareLevels;
pub use ingest::{EntryOutcome, FailedLine, Fhir, ImportSummary, RawEntry};
