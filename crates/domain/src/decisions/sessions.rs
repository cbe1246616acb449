//! Sessions: recorded once, with a registered therapist, within their episode's time.

use crate::error::DomainError;
use crate::events::{Event, SessionRecorded};

use super::rules::{within_episode, PatientFacts};

pub(super) fn record(f: &PatientFacts, e: SessionRecorded) -> Result<Event, DomainError> {
    f.therapist(e.therapist_id)?;
    let ep = f.episode(e.episode_id)?;
    if f.p.sessions.contains(&e.session_id) {
        return Err(DomainError::AlreadyExists(format!("session {} already exists", e.session_id)));
    }
    within_episode("at", e.at, ep)?;
    Ok(e.into())
}
