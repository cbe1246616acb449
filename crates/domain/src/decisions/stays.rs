//! Inpatient stays: admissions and discharges as they happen, and past stays with both times.
//! Stays never overlap, whichever order they are recorded in.

use crate::error::{invalid, DomainError, RECORDED};
use crate::events::{Event, PatientAdmitted, PatientDischarged, StayRecorded};

use super::rules::PatientFacts;

pub(super) fn record_stay(f: &PatientFacts, e: StayRecorded) -> Result<Event, DomainError> {
    f.inpatient(e.service_id)?;
    if f.p.admissions.contains_key(&e.admission_id) {
        return Err(DomainError::AlreadyExists(format!("admission {} already exists", e.admission_id)));
    }
    if e.discharged_at <= e.admitted_at {
        return Err(invalid("dischargedAt must be after admittedAt"));
    }
    // Both ends are known: it overlaps a stay that starts before it ends and ends (or is still
    // open) after it starts, in whichever order they were recorded.
    let overlapping =
        f.p.admissions
            .iter()
            .find(|(_, a)| a.admitted_at < e.discharged_at && a.discharged_at.is_none_or(|d| d > e.admitted_at));
    if let Some((id, _)) = overlapping {
        return Err(invalid(format!("the stay overlaps a recorded stay{RECORDED}admission {id})")));
    }
    Ok(e.into())
}

pub(super) fn admit(f: &PatientFacts, e: PatientAdmitted) -> Result<Event, DomainError> {
    f.inpatient(e.service_id)?;
    if f.p.admissions.contains_key(&e.admission_id) {
        return Err(DomainError::AlreadyExists(format!("admission {} already exists", e.admission_id)));
    }
    // The new stay is open-ended, so it overlaps every stay that is open or ends after it starts.
    if let Some((id, _)) = f.p.admissions.iter().find(|(_, a)| a.discharged_at.is_none_or(|d| d > e.admitted_at)) {
        return Err(invalid(format!("the admission overlaps a recorded stay{RECORDED}admission {id})")));
    }
    Ok(e.into())
}

pub(super) fn discharge(f: &PatientFacts, e: PatientDischarged) -> Result<Event, DomainError> {
    let a =
        f.p.admissions
            .get(&e.admission_id)
            .ok_or_else(|| DomainError::NotFound(format!("admission {} not found", e.admission_id)))?;
    if a.discharged_at.is_some() {
        return Err(invalid(format!("admission {} is already discharged", e.admission_id)));
    }
    if e.discharged_at <= a.admitted_at {
        return Err(invalid("dischargedAt must be after admittedAt"));
    }
    Ok(e.into())
}
