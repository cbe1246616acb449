//! Episodes of care: a specialist one starts from the accepted referral that led to it (unless
//! acute), not before the decision, and a referral opens at most one; an episode ends once, not
//! before anything recorded in it.

use uuid::Uuid;

use crate::error::{invalid, DomainError, RECORDED};
use crate::events::{EpisodeEnded, EpisodeStarted, Event};
use crate::types::{CareLevel, ReferralDecision};

use super::rules::{not_before, PatientFacts};

pub(super) fn start(f: &PatientFacts, e: EpisodeStarted) -> Result<Event, DomainError> {
    let s = f.service(e.service_id)?;
    if f.p.episodes.contains_key(&e.episode_id) {
        return Err(DomainError::AlreadyExists(format!("episode {} already exists", e.episode_id)));
    }
    match e.referral_id {
        Some(rid) => opened_by_referral(f, &e, rid)?,
        // Specialist care needs a referral (spesialisthelsetjenesteloven § 2-2), except an
        // emergency admission (øyeblikkelig hjelp).
        None if s.care_level != CareLevel::Municipal && !e.acute => {
            return Err(invalid(
                "referralId: a specialist episode needs the referral that led to it, or acute: true for an emergency admission",
            ))
        }
        None => {}
    }
    Ok(e.into())
}

/// The referral `rid` may open episode `e`: sent to its service, accepted before it starts, and
/// not yet the start of another episode.
fn opened_by_referral(f: &PatientFacts, e: &EpisodeStarted, rid: Uuid) -> Result<(), DomainError> {
    let r = f.p.referrals.get(&rid).ok_or_else(|| DomainError::NotFound(format!("referral {rid} not found")))?;
    if r.service_id != e.service_id {
        return Err(invalid(format!("referral {rid} was sent to another service")));
    }
    match (r.decision, r.decided_at) {
        (Some(ReferralDecision::Accepted), Some(decided_at)) => {
            not_before("startedAt", e.started_at, "the referral's decidedAt", decided_at)?
        }
        (Some(ReferralDecision::Rejected), _) => {
            return Err(invalid(format!("referralId: referral {rid} was rejected")))
        }
        _ => {
            return Err(invalid(format!(
                "referralId: referral {rid} is not decided yet; accept it before starting an episode"
            )))
        }
    }
    if let Some(opened) = r.opened {
        return Err(invalid(format!(
            "referralId: referral {rid} already opened an episode{RECORDED}episode {opened})"
        )));
    }
    Ok(())
}

pub(super) fn end(f: &PatientFacts, e: EpisodeEnded) -> Result<Event, DomainError> {
    let ep = f.episode(e.episode_id)?;
    if ep.ended_at.is_some() {
        return Err(invalid(format!("episode {} has already ended", e.episode_id)));
    }
    not_before("endedAt", e.ended_at, "startedAt", ep.started_at)?;
    if let Some(last) = ep.last_session_at {
        not_before("endedAt", e.ended_at, "the episode's last session", last)?;
    }
    if let Some(last) = ep.assignments.iter().map(|a| a.assigned_at).max() {
        not_before("endedAt", e.ended_at, "the episode's last therapist assignment", last)?;
    }
    Ok(e.into())
}
