//! The persisted domain events. Events are the only persisted domain format: they are versioned
//! and upcast on read, never edited. A payload is the JSON of the variant's struct; the event type
//! and schema version travel in the envelope.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::types::*;

pub use crate::time_codec::Timestamp;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRegistered {
    pub service_id: Uuid,
    pub name: String,
    pub care_level: CareLevel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TherapistRegistered {
    pub therapist_id: Uuid,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpr_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientRegistered {
    pub patient_id: Uuid,
    pub birth_year: i32,
    pub gender: Gender,
    /// The national id, sealed under the patient's data key (never clear text; see forlop-vault).
    /// Absent when none was given, so older payloads and their hashes are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub national_id: Option<String>,
}

/// The patient's data key was destroyed on request (GDPR art. 17): their sealed national id can
/// no longer be opened. The pathway itself stays in the log, pseudonymous, for aggregate reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientForgotten {
    pub patient_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferralReceived {
    pub referral_id: Uuid,
    pub service_id: Uuid,
    pub source: ReferralSource,
    #[serde(with = "crate::time_codec")]
    pub received_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferralDecided {
    pub referral_id: Uuid,
    pub decision: ReferralDecision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RejectionReason>,
    #[serde(with = "crate::time_codec")]
    pub decided_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeStarted {
    pub episode_id: Uuid,
    pub service_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral_id: Option<Uuid>,
    #[serde(with = "crate::time_codec")]
    pub started_at: Timestamp,
    /// An emergency admission (øyeblikkelig hjelp): a specialist episode without a referral.
    /// Absent (false) in every event written before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub acute: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeEnded {
    pub episode_id: Uuid,
    pub reason: EndReason,
    #[serde(with = "crate::time_codec")]
    pub ended_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TherapistAssigned {
    pub episode_id: Uuid,
    pub therapist_id: Uuid,
    #[serde(with = "crate::time_codec")]
    pub assigned_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TherapistReleased {
    pub episode_id: Uuid,
    pub therapist_id: Uuid,
    pub reason: ReleaseReason,
    pub patient_notified: bool,
    #[serde(with = "crate::time_codec")]
    pub released_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecorded {
    pub session_id: Uuid,
    pub episode_id: Uuid,
    pub therapist_id: Uuid,
    pub attendance: Attendance,
    #[serde(with = "crate::time_codec")]
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientAdmitted {
    pub admission_id: Uuid,
    pub service_id: Uuid,
    #[serde(with = "crate::time_codec")]
    pub admitted_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientDischarged {
    pub admission_id: Uuid,
    #[serde(with = "crate::time_codec")]
    pub discharged_at: Timestamp,
}

/// A stay recorded after the fact with both of its times (back-loads from record systems, which
/// send past stays in any order). Read like an admission and its discharge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StayRecorded {
    pub admission_id: Uuid,
    pub service_id: Uuid,
    #[serde(with = "crate::time_codec")]
    pub admitted_at: Timestamp,
    #[serde(with = "crate::time_codec")]
    pub discharged_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecorded {
    pub episode_id: Uuid,
    pub instrument: Instrument,
    pub phase: MeasurePhase,
    pub items: Vec<u8>,
    /// Derived from `items` when recorded; stored so exports and audits need no recomputation.
    pub total: u32,
    #[serde(with = "crate::time_codec")]
    pub measured_at: Timestamp,
}

/// Older shapes of events, kept so that a log written by an older forlop still loads.
pub mod v1 {
    use serde::Deserialize;
    use uuid::Uuid;

    /// `PatientRegistered` v1 stored sex as a free-text code ("F", "M", other or absent).
    #[derive(Debug, Deserialize)]
    pub struct PatientRegistered {
        pub patient_id: Uuid,
        pub birth_year: i32,
        #[serde(default)]
        pub sex: Option<String>,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {event_type} v{schema_version}")]
    UnknownType { event_type: String, schema_version: u16 },
    #[error("malformed {event_type} v{schema_version} payload: {source}")]
    Malformed { event_type: String, schema_version: u16, source: serde_json::Error },
}

macro_rules! domain_events {
    ($($variant:ident => $version:literal),+ $(,)?) => {
        /// Every fact forlop records.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event { $($variant($variant)),+ }

        $(impl From<$variant> for Event {
            fn from(e: $variant) -> Self { Event::$variant(e) }
        })+

        impl Event {
            /// The stable type name stored in the envelope.
            pub fn event_type(&self) -> &'static str {
                match self { $(Event::$variant(_) => stringify!($variant)),+ }
            }

            /// The schema version this build writes.
            pub fn schema_version(&self) -> u16 {
                match self { $(Event::$variant(_) => $version),+ }
            }

            /// Canonical JSON payload.
            pub fn to_payload(&self) -> Vec<u8> {
                let out = match self { $(Event::$variant(e) => serde_json::to_vec(e)),+ };
                out.expect("domain events always serialize")
            }

            /// What is wrong with the first field holding a placeholder id or an unrecognised
            /// code (`field_check`), if one does.
            pub fn first_bad_field(&self) -> Option<String> {
                match self { $(Event::$variant(e) => crate::field_check::first_bad_field(e)),+ }
            }

            /// Decodes a stored payload, upcasting older schema versions.
            pub fn decode(event_type: &str, schema_version: u16, payload: &[u8]) -> Result<Event, DecodeError> {
                let malformed = |source| DecodeError::Malformed {
                    event_type: event_type.to_owned(), schema_version, source,
                };
                match (event_type, schema_version) {
                    $((stringify!($variant), $version) => serde_json::from_slice::<$variant>(payload)
                        .map(Event::$variant).map_err(malformed),)+
                    ("PatientRegistered", 1) => serde_json::from_slice::<v1::PatientRegistered>(payload)
                        .map(upcast_patient_registered_v1).map_err(malformed),
                    _ => Err(DecodeError::UnknownType { event_type: event_type.to_owned(), schema_version }),
                }
            }
        }
    };
}

domain_events! {
    ServiceRegistered => 1,
    TherapistRegistered => 1,
    PatientRegistered => 2,
    ReferralReceived => 1,
    ReferralDecided => 1,
    EpisodeStarted => 1,
    EpisodeEnded => 1,
    TherapistAssigned => 1,
    TherapistReleased => 1,
    SessionRecorded => 1,
    PatientAdmitted => 1,
    PatientDischarged => 1,
    StayRecorded => 1,
    OutcomeRecorded => 1,
    PatientForgotten => 1,
}

fn upcast_patient_registered_v1(old: v1::PatientRegistered) -> Event {
    let gender = match old.sex.as_deref().map(str::trim) {
        Some("F") | Some("f") | Some("K") | Some("k") => Gender::Female,
        Some("M") | Some("m") => Gender::Male,
        Some("") | None => Gender::Unknown,
        Some(_) => Gender::Other,
    };
    Event::PatientRegistered(PatientRegistered {
        patient_id: old.patient_id,
        birth_year: old.birth_year,
        gender,
        national_id: None,
    })
}

impl Event {
    /// The GraphQL name of the field holding the clinical time, for messages.
    pub fn clinical_time_field(&self) -> &'static str {
        match self {
            Event::ReferralReceived(_) => "receivedAt",
            Event::ReferralDecided(_) => "decidedAt",
            Event::EpisodeStarted(_) => "startedAt",
            Event::EpisodeEnded(_) => "endedAt",
            Event::TherapistAssigned(_) => "assignedAt",
            Event::TherapistReleased(_) => "releasedAt",
            Event::SessionRecorded(_) => "at",
            Event::PatientAdmitted(_) => "admittedAt",
            Event::PatientDischarged(_) => "dischargedAt",
            Event::StayRecorded(_) => "dischargedAt",
            Event::OutcomeRecorded(_) => "measuredAt",
            _ => "time",
        }
    }

    /// Clinical time of the fact (the envelope's occurredAt). Registrations of reference data
    /// have no clinical time; the caller supplies the recording time for those.
    pub fn clinical_time(&self) -> Option<Timestamp> {
        Some(match self {
            Event::ServiceRegistered(_)
            | Event::TherapistRegistered(_)
            | Event::PatientRegistered(_)
            | Event::PatientForgotten(_) => return None,
            Event::ReferralReceived(e) => e.received_at,
            Event::ReferralDecided(e) => e.decided_at,
            Event::EpisodeStarted(e) => e.started_at,
            Event::EpisodeEnded(e) => e.ended_at,
            Event::TherapistAssigned(e) => e.assigned_at,
            Event::TherapistReleased(e) => e.released_at,
            Event::SessionRecorded(e) => e.at,
            Event::PatientAdmitted(e) => e.admitted_at,
            Event::PatientDischarged(e) => e.discharged_at,
            // Its latest time: the bound on recording the future applies to both.
            Event::StayRecorded(e) => e.discharged_at,
            Event::OutcomeRecorded(e) => e.measured_at,
        })
    }
}
