//! Pure folds from the event log to read models. No I/O, no runtime: the caller feeds events in
//! log order and asks questions of the result.
//!
//! Invariant: a read model depends only on the events folded into it, so replaying the log
//! rebuilds it exactly. Answers about clinical time use clinical timestamps, never recording order,
//! except as the documented tie-break.

pub mod alerts;
pub mod continuity;
mod continuity_figures;
pub mod read_model;
pub mod reports;
pub mod tally;

pub use continuity::{continuity, indices, Continuity, Handover, Indices, Segment};
pub use read_model::{EventMeta, PatientView, ReadModel, ServiceView, TherapistView};
