//! The cell key method's record keys (`disclosure::cell_key`), derived from the master key by the
//! vault, computed once per record and kept.

use uuid::Uuid;

/// Record keys, computed once per record and kept: a report asks for each of its contributors'
/// keys once per cell.
pub struct RecordKeys {
    keyer: forlop_vault::RecordKeyer,
    known: parking_lot::RwLock<foldhash::HashMap<Uuid, u64>>,
}

impl std::fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordKeys").field("known", &self.known.read().len()).finish()
    }
}

impl RecordKeys {
    pub fn new(keyer: forlop_vault::RecordKeyer) -> RecordKeys {
        RecordKeys { keyer, known: Default::default() }
    }

    pub fn key(&self, id: Uuid) -> u64 {
        if let Some(k) = self.known.read().get(&id) {
            return *k;
        }
        let k = self.keyer.key(id);
        self.known.write().insert(id, k);
        k
    }
}
