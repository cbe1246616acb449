//! What the rules of every kind of patient fact share: the facts a command names, looked up
//! with the refusal their absence gets, and the checks of names and clinical times.

use uuid::Uuid;

use crate::error::{invalid, DomainError, RECORDED};
use crate::events::{ServiceRegistered, TherapistRegistered, Timestamp};
use crate::stream_state::{EpisodeState, PatientState, References};
use crate::types::CareLevel;

/// A patient's stream state and the references of the command being decided on it.
pub(super) struct PatientFacts<'a> {
    pub(super) patient_id: Uuid,
    pub(super) p: &'a PatientState,
    pub(super) refs: &'a References,
}

impl PatientFacts<'_> {
    pub(super) fn service(&self, id: Uuid) -> Result<&ServiceRegistered, DomainError> {
        self.refs
            .service
            .as_ref()
            .filter(|s| s.service_id == id)
            .ok_or_else(|| DomainError::NotFound(format!("service {id} not found")))
    }

    /// The service, which must be an inpatient one (an admission or a stay).
    pub(super) fn inpatient(&self, id: Uuid) -> Result<(), DomainError> {
        let s = self.service(id)?;
        if s.care_level != CareLevel::SpecialistInpatient {
            return Err(invalid(format!("service {id} is {}, an admission needs SPECIALIST_INPATIENT", s.care_level)));
        }
        Ok(())
    }

    pub(super) fn therapist(&self, id: Uuid) -> Result<&TherapistRegistered, DomainError> {
        self.refs
            .therapist
            .as_ref()
            .filter(|t| t.therapist_id == id)
            .ok_or_else(|| DomainError::NotFound(format!("therapist {id} not found")))
    }

    pub(super) fn episode(&self, id: Uuid) -> Result<&EpisodeState, DomainError> {
        self.p
            .episodes
            .get(&id)
            .ok_or_else(|| DomainError::NotFound(format!("episode {id} not found for patient {}", self.patient_id)))
    }
}

/// A name must already be clean (the API cleans it before building the command, so a retry
/// compares equal); see `text::clean_name`.
pub(super) fn non_empty(field: &str, value: &str) -> Result<(), DomainError> {
    match crate::text::clean_name(value) {
        Ok(clean) if clean == value => Ok(()),
        Ok(_) => Err(invalid(format!("{field} must be trimmed and in Unicode NFC"))),
        Err(crate::text::NameError::Length) => {
            Err(invalid(format!("{field} must be 1 to {} characters", crate::text::MAX_NAME_CHARS)))
        }
        Err(crate::text::NameError::Forbidden(c)) => {
            Err(invalid(format!("{field} holds {c}, a control, invisible or direction-changing character")))
        }
    }
}

/// `t` (the command's) must not be before `earlier`, a time recorded on the stream.
pub(super) fn not_before(field: &str, t: Timestamp, other: &str, earlier: Timestamp) -> Result<(), DomainError> {
    if t < earlier {
        return Err(invalid(format!("{field} {t} is before {other}{RECORDED}{earlier})")));
    }
    Ok(())
}

pub(super) fn within_episode(field: &str, t: Timestamp, ep: &EpisodeState) -> Result<(), DomainError> {
    not_before(field, t, "the episode's startedAt", ep.started_at)?;
    if let Some(end) = ep.ended_at {
        if t > end {
            return Err(invalid(format!("{field} {t} is after the episode's endedAt{RECORDED}{end})")));
        }
    }
    Ok(())
}
