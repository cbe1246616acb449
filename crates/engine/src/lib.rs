//! forlop's application core: decides commands against the log and appends their events, folds
//! the log into the read model, and (one place for both) authorises every access and logs it.
//!
//! Invariant: knows neither GraphQL nor HTTP nor FHIR. Adapters translate their protocol into
//! calls on `Engine` with a `Caller`, and the engine's answers and `EngineError` codes back.

pub mod access;
mod analysis;
pub mod checkpoint;
mod directory;
pub mod disclosure;
pub mod engine;
mod erasure;
pub mod error;
mod follow;
mod owners;
pub mod policy;
mod transaction;
mod waiters;

pub use access::{Caller, PatientGrant, PendingDisclosures};
pub use engine::{
    decode, new_event, rebuild, rebuild_until, BatchItem, Engine, EngineParts, RecordOptions, Recorded, Settings,
    Unpublished,
};
pub use error::{code, EngineError};
pub use forlop_auth::{Principal, Role};
pub use transaction::{Transacted, TransactionItem, TransactionRefused};
