//! Global ids (referral, episode, session, admission): each names one fact of one patient. An id
//! is refused to a patient when the owner index gives it to another patient, or another
//! patient's command is recording it at that moment; a claim lasts until its event is readable.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use forlop_domain::{Event, NewId};
use forlop_projections::ReadModel;

use crate::error::EngineError;
use crate::owners::OwnerIndex;

/// Every referral, episode, session and admission id folded so far, and its patient. A flat
/// map beside the snapshots (a persistent one takes several times the memory), written only by
/// the projector, each lock held for one insert or lookup.
pub(crate) type Owners = Arc<RwLock<OwnerIndex>>;

/// The global id an event introduces (see `forlop_domain::NewId`).
pub(crate) fn fact_id(event: &Event) -> Option<Uuid> {
    match event {
        Event::ReferralReceived(e) => Some(e.referral_id),
        Event::EpisodeStarted(e) => Some(e.episode_id),
        Event::SessionRecorded(e) => Some(e.session_id),
        Event::PatientAdmitted(e) => Some(e.admission_id),
        Event::StayRecorded(e) => Some(e.admission_id),
        _ => None,
    }
}

/// Global ids being recorded right now, and for whom.
#[derive(Clone, Default)]
pub(crate) struct IdClaims(Arc<Mutex<HashMap<Uuid, Uuid>>>);

impl IdClaims {
    /// Claims `new` for `patient` until the returned guard is dropped: refused if another
    /// patient's fact already has it (by `owners`, confirmed against `model`), or another
    /// patient's command is recording it right now.
    pub(crate) fn claim(
        &self,
        new: NewId,
        patient: Uuid,
        owners: &Owners,
        model: &ArcSwap<ReadModel>,
    ) -> Result<IdClaim, EngineError> {
        let id = new.id();
        let taken = || {
            EngineError::invalid(format!("{}: {id} is already used by another patient (ids are global)", new.field()))
        };
        let mut claims = self.0.lock();
        if claims.get(&id).is_some_and(|p| *p != patient) {
            return Err(taken());
        }
        if owners.read().owner(id, &model.load()).is_some_and(|p| p != patient) {
            return Err(taken());
        }
        claims.insert(id, patient);
        Ok(IdClaim { claims: self.0.clone(), id })
    }
}

/// A claimed global id; released when dropped.
pub(crate) struct IdClaim {
    claims: Arc<Mutex<HashMap<Uuid, Uuid>>>,
    id: Uuid,
}

impl Drop for IdClaim {
    fn drop(&mut self) {
        self.claims.lock().remove(&self.id);
    }
}
