//! Therapists assigned to an episode and released from it, within the episode's time; a
//! therapist holds at most one open assignment to an episode.

use crate::error::{invalid, DomainError};
use crate::events::{Event, TherapistAssigned, TherapistReleased};

use super::rules::{not_before, within_episode, PatientFacts};

pub(super) fn assign(f: &PatientFacts, e: TherapistAssigned) -> Result<Event, DomainError> {
    f.therapist(e.therapist_id)?;
    let ep = f.episode(e.episode_id)?;
    within_episode("assignedAt", e.assigned_at, ep)?;
    if ep.assignments.iter().any(|a| a.therapist_id == e.therapist_id && a.released_at.is_none()) {
        return Err(DomainError::AlreadyExists(format!(
            "therapist {} is already assigned to episode {}",
            e.therapist_id, e.episode_id
        )));
    }
    Ok(e.into())
}

pub(super) fn release(f: &PatientFacts, e: TherapistReleased) -> Result<Event, DomainError> {
    let ep = f.episode(e.episode_id)?;
    let a =
        ep.assignments.iter().find(|a| a.therapist_id == e.therapist_id && a.released_at.is_none()).ok_or_else(
            || invalid(format!("therapist {} is not assigned to episode {}", e.therapist_id, e.episode_id)),
        )?;
    not_before("releasedAt", e.released_at, "assignedAt", a.assigned_at)?;
    within_episode("releasedAt", e.released_at, ep)?;
    Ok(e.into())
}
