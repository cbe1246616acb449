//! Referrals: received once, decided once (a rejection with a reason, an acceptance without),
//! not before they were received.

use crate::error::{invalid, DomainError};
use crate::events::{Event, ReferralDecided, ReferralReceived};
use crate::types::ReferralDecision;

use super::rules::{not_before, PatientFacts};

pub(super) fn receive(f: &PatientFacts, e: ReferralReceived) -> Result<Event, DomainError> {
    f.service(e.service_id)?;
    if f.p.referrals.contains_key(&e.referral_id) {
        return Err(DomainError::AlreadyExists(format!("referral {} already exists", e.referral_id)));
    }
    Ok(e.into())
}

pub(super) fn decide(f: &PatientFacts, e: ReferralDecided) -> Result<Event, DomainError> {
    let r =
        f.p.referrals
            .get(&e.referral_id)
            .ok_or_else(|| DomainError::NotFound(format!("referral {} not found", e.referral_id)))?;
    if r.decision.is_some() {
        return Err(invalid(format!("referral {} is already decided", e.referral_id)));
    }
    match (e.decision, e.reason) {
        (ReferralDecision::Rejected, None) => return Err(invalid("a rejection needs a reason")),
        (ReferralDecision::Accepted, Some(_)) => return Err(invalid("a reason is only given for a rejection")),
        _ => {}
    }
    not_before("decidedAt", e.decided_at, "receivedAt", r.received_at)?;
    Ok(e.into())
}
