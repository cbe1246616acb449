//! What a decision is taken against: a stream's state folded from its past events, and the
//! reference data a command names. `apply` folds an event and never fails.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::events::*;
use crate::types::*;

/// Reference data a decision may need: looked up by the caller, so `decide` stays pure.
#[derive(Debug, Clone, Default)]
pub struct References {
    pub service: Option<ServiceRegistered>,
    pub therapist: Option<TherapistRegistered>,
}

/// State of one stream, folded from its events. Reference streams only need to know they exist.
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    pub exists: bool,
    pub patient: PatientState,
}

#[derive(Debug, Clone, Default)]
pub struct PatientState {
    pub referrals: HashMap<Uuid, ReferralState>,
    pub episodes: HashMap<Uuid, EpisodeState>,
    pub admissions: HashMap<Uuid, AdmissionState>,
    pub sessions: HashSet<Uuid>,
    pub forgotten: bool,
}

#[derive(Debug, Clone)]
pub struct ReferralState {
    pub service_id: Uuid,
    pub received_at: Timestamp,
    pub decision: Option<ReferralDecision>,
    pub decided_at: Option<Timestamp>,
    /// The episode this referral opened, if any: a referral opens at most one.
    pub opened: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub struct EpisodeState {
    pub service_id: Uuid,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub assignments: Vec<AssignmentState>,
    pub last_session_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct AssignmentState {
    pub therapist_id: Uuid,
    pub assigned_at: Timestamp,
    pub released_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct AdmissionState {
    pub service_id: Uuid,
    pub admitted_at: Timestamp,
    pub discharged_at: Option<Timestamp>,
}

impl StreamState {
    /// Folds one event. No logic, cannot fail: the event was valid when it was decided.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::ServiceRegistered(_) | Event::TherapistRegistered(_) | Event::PatientRegistered(_) => {
                self.exists = true
            }
            Event::PatientAdmitted(_) | Event::PatientDischarged(_) | Event::StayRecorded(_) => {
                self.patient.apply_stay(event)
            }
            event => self.patient.apply_care(event),
        }
    }

    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut s = StreamState::default();
        for e in events {
            s.apply(e);
        }
        s
    }
}

impl PatientState {
    /// Folds a fact of the patient's care (referrals, episodes, therapists, sessions, outcomes,
    /// erasure).
    fn apply_care(&mut self, event: &Event) {
        let p = self;
        match event {
            Event::ReferralReceived(e) => {
                p.referrals.insert(
                    e.referral_id,
                    ReferralState {
                        service_id: e.service_id,
                        received_at: e.received_at,
                        decision: None,
                        decided_at: None,
                        opened: None,
                    },
                );
            }
            Event::ReferralDecided(e) => {
                if let Some(r) = p.referrals.get_mut(&e.referral_id) {
                    r.decision = Some(e.decision);
                    r.decided_at = Some(e.decided_at);
                }
            }
            Event::EpisodeStarted(e) => {
                if let Some(r) = e.referral_id.and_then(|rid| p.referrals.get_mut(&rid)) {
                    r.opened = Some(e.episode_id);
                }
                p.episodes.insert(
                    e.episode_id,
                    EpisodeState {
                        service_id: e.service_id,
                        started_at: e.started_at,
                        ended_at: None,
                        assignments: Vec::new(),
                        last_session_at: None,
                    },
                );
            }
            Event::EpisodeEnded(e) => {
                if let Some(ep) = p.episodes.get_mut(&e.episode_id) {
                    ep.ended_at = Some(e.ended_at);
                }
            }
            Event::TherapistAssigned(e) => {
                if let Some(ep) = p.episodes.get_mut(&e.episode_id) {
                    ep.assignments.push(AssignmentState {
                        therapist_id: e.therapist_id,
                        assigned_at: e.assigned_at,
                        released_at: None,
                    });
                }
            }
            Event::TherapistReleased(e) => {
                if let Some(a) = p.episodes.get_mut(&e.episode_id).and_then(|ep| {
                    ep.assignments.iter_mut().find(|a| a.therapist_id == e.therapist_id && a.released_at.is_none())
                }) {
                    a.released_at = Some(e.released_at);
                }
            }
            Event::SessionRecorded(e) => {
                p.sessions.insert(e.session_id);
                if let Some(ep) = p.episodes.get_mut(&e.episode_id) {
                    ep.last_session_at = ep.last_session_at.max(Some(e.at));
                }
            }
            Event::OutcomeRecorded(_) => {}
            Event::PatientForgotten(_) => p.forgotten = true,
            Event::ServiceRegistered(_)
            | Event::TherapistRegistered(_)
            | Event::PatientRegistered(_)
            | Event::PatientAdmitted(_)
            | Event::PatientDischarged(_)
            | Event::StayRecorded(_) => {}
        }
    }

    /// Folds an inpatient stay's admission, discharge, or both at once.
    fn apply_stay(&mut self, event: &Event) {
        let p = self;
        match event {
            Event::PatientAdmitted(e) => {
                p.admissions.insert(
                    e.admission_id,
                    AdmissionState { service_id: e.service_id, admitted_at: e.admitted_at, discharged_at: None },
                );
            }
            Event::PatientDischarged(e) => {
                if let Some(a) = p.admissions.get_mut(&e.admission_id) {
                    a.discharged_at = Some(e.discharged_at);
                }
            }
            Event::StayRecorded(e) => {
                p.admissions.insert(
                    e.admission_id,
                    AdmissionState {
                        service_id: e.service_id,
                        admitted_at: e.admitted_at,
                        discharged_at: Some(e.discharged_at),
                    },
                );
            }
            _ => {}
        }
    }
}
