//! Registering reference data (services, therapists) and patients: each stream is registered
//! once.

use crate::error::{invalid, DomainError};
use crate::events::{Event, PatientRegistered, ServiceRegistered, TherapistRegistered};
use crate::stream_state::StreamState;

use super::rules::non_empty;

/// Earliest and latest birth years accepted.
pub const BIRTH_YEARS: std::ops::RangeInclusive<i32> = 1900..=2100;

pub(super) fn service(state: &StreamState, e: ServiceRegistered) -> Result<Event, DomainError> {
    if state.exists {
        return Err(DomainError::AlreadyExists(format!("service {} already exists", e.service_id)));
    }
    non_empty("name", &e.name)?;
    Ok(e.into())
}

pub(super) fn therapist(state: &StreamState, e: TherapistRegistered) -> Result<Event, DomainError> {
    if state.exists {
        return Err(DomainError::AlreadyExists(format!("therapist {} already exists", e.therapist_id)));
    }
    non_empty("name", &e.name)?;
    if let Some(hpr) = &e.hpr_number {
        if hpr.is_empty() || hpr.len() > 9 || !hpr.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("hprNumber must be 1 to 9 digits"));
        }
    }
    Ok(e.into())
}

pub(super) fn patient(state: &StreamState, e: PatientRegistered) -> Result<Event, DomainError> {
    if state.exists {
        return Err(DomainError::AlreadyExists(format!("patient {} already exists", e.patient_id)));
    }
    if !BIRTH_YEARS.contains(&e.birth_year) {
        return Err(invalid(format!("birthYear {} is outside {BIRTH_YEARS:?}", e.birth_year)));
    }
    Ok(e.into())
}
