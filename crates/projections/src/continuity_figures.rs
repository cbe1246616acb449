//! The continuity-of-care figures of one patient (computed in `continuity.rs`), and the cache a
//! patient's view keeps them in until its next event.

use std::sync::{Arc, OnceLock};

use forlop_domain::events::Timestamp;
use forlop_domain::{CareLevel, ReleaseReason};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub struct Continuity {
    pub attended_sessions: u32,
    pub distinct_therapists: u32,
    pub care_level_transitions: u32,
    pub transitions_keeping_therapist: u32,
    /// None when there is no transition.
    pub same_therapist_across_care_levels: Option<bool>,
    pub indices: Indices,
    pub segments: Vec<Segment>,
    pub handovers: Vec<Handover>,
}

/// The standard continuity indices; each is None with fewer than two attended sessions.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Indices {
    pub coc: Option<f64>,
    pub upc: Option<f64>,
    pub secon: Option<f64>,
    pub mmci: Option<f64>,
}

/// A maximal run of consecutive attended sessions at one care level.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub care_level: CareLevel,
    pub from: Timestamp,
    pub to: Timestamp,
    /// Distinct therapists, in order of their first session in the segment.
    pub therapist_ids: Vec<Uuid>,
    pub sessions: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Handover {
    pub episode_id: Uuid,
    pub from_therapist_id: Uuid,
    pub to_therapist_id: Option<Uuid>,
    pub reason: ReleaseReason,
    pub patient_notified: bool,
    pub released_at: Timestamp,
    pub gap_days: Option<f64>,
}

/// A lazily filled cache that compares equal whatever it holds: it is derived data.
#[derive(Debug, Clone, Default)]
pub struct ContinuityCache(OnceLock<Arc<Continuity>>);

impl PartialEq for ContinuityCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl ContinuityCache {
    /// The cached figures, computed by `compute` on the first read.
    pub(crate) fn get_or_init(&self, compute: impl FnOnce() -> Continuity) -> Arc<Continuity> {
        self.0.get_or_init(|| Arc::new(compute())).clone()
    }
}
