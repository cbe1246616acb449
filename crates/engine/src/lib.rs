//! forlop's application core: decides commands against the log and appends their events, folds
//! the log into the read model, and (one place for both) authorises every access and logs it.
//!
//! Invariant: knows neither GraphQL nor HTTP nor FHIR. Adapters translate their protocol into
//! calls on `Engine` with a `Caller`, and the engine's answers and `EngineError` codes back.

pub mod access;
mod analysis;
mod batch;
pub mod checkpoint;
mod directory;
pub mod disclosure;
pub mod engine;
mod erasure;
pub mod error;
mod follow;
mod id_claims;
mod may_record;
mod national_ids;
mod owners;
mod parts;
pub mod policy;
mod projector;
mod record;
mod record_keys;
mod replay;
mod retry;
mod startup;
mod stream_reads;
mod subscriptions;
mod transaction;
mod turns;
mod waiters;

pub use access::{Caller, PatientGrant, PendingDisclosures};
pub use batch::{BatchItem, Unpublished};
pub use engine::Engine;
pub use error::{code, EngineError};
pub use forlop_auth::{Principal, Role};
pub use parts::{checkpoint_path, EngineParts, Settings};
pub use record::{new_event, RecordOptions, Recorded};
pub use replay::{decode, rebuild, rebuild_until};
pub use transaction::{Transacted, TransactionItem, TransactionRefused};
