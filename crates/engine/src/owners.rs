//! Who owns each global fact id (referral, episode, session, admission): the index behind
//! `Engine::claim`. Derived from the read model at start, then kept current by the projector.
//!
//! At city scale it holds millions of ids, so the ids present at start sit in one sorted vector
//! (32 bytes each, binary search) and only ids recorded since then in a hash map; a hash map of
//! all of them would take four times the memory and most of a restart's time to build.

use forlop_projections::ReadModel;
use uuid::Uuid;

#[derive(Debug, Default)]
pub struct OwnerIndex {
    /// (fact id, patient id), sorted by fact id.
    at_start: Vec<(Uuid, Uuid)>,
    since_start: std::collections::HashMap<Uuid, Uuid, foldhash::fast::RandomState>,
}

impl OwnerIndex {
    pub fn of(model: &ReadModel) -> OwnerIndex {
        let ids = model
            .patients
            .values()
            .map(|p| p.referrals.len() + p.episodes.len() + p.sessions.len() + p.admissions.len());
        let mut at_start = Vec::with_capacity(ids.sum());
        at_start.extend(model.patients.values().flat_map(|p| p.fact_ids().map(|id| (id, p.id))));
        // As u128: one integer comparison, where `Uuid`'s ordering compares byte arrays.
        at_start.sort_unstable_by_key(|(id, _)| id.as_u128());
        OwnerIndex { at_start, since_start: Default::default() }
    }

    /// The patient that recorded a fact with this id, if any.
    pub fn owner(&self, id: Uuid) -> Option<Uuid> {
        match self.at_start.binary_search_by_key(&id.as_u128(), |(id, _)| id.as_u128()) {
            Ok(i) => Some(self.at_start[i].1),
            Err(_) => self.since_start.get(&id).copied(),
        }
    }

    pub fn insert(&mut self, id: Uuid, patient: Uuid) {
        if self.owner(id).is_none() {
            self.since_start.insert(id, patient);
        }
    }

    pub fn len(&self) -> usize {
        self.at_start.len() + self.since_start.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_the_start_and_recorded_since_are_both_found_and_the_first_owner_stays() {
        let mut index = OwnerIndex {
            at_start: vec![(Uuid::from_u128(1), Uuid::from_u128(10)), (Uuid::from_u128(3), Uuid::from_u128(30))],
            since_start: Default::default(),
        };
        index.insert(Uuid::from_u128(2), Uuid::from_u128(20));
        index.insert(Uuid::from_u128(3), Uuid::from_u128(99));
        assert_eq!(index.owner(Uuid::from_u128(1)), Some(Uuid::from_u128(10)));
        assert_eq!(index.owner(Uuid::from_u128(2)), Some(Uuid::from_u128(20)));
        assert_eq!(index.owner(Uuid::from_u128(3)), Some(Uuid::from_u128(30)));
        assert_eq!(index.owner(Uuid::from_u128(4)), None);
        assert_eq!(index.len(), 3);
    }
}
