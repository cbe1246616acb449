//! The in-memory index, rebuilt by one scan at open and extended by every durable group.

use std::collections::HashMap;

use uuid::Uuid;

/// Every this many positions the index keeps the frame's offset, for reads from a position.
pub(super) const SPARSE: u64 = 256;

/// Where each patient's records are, and every `SPARSE`th record's offset.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// Per patient: (position, offset), in position order.
    pub(super) by_patient: HashMap<Uuid, Vec<(u64, u64)>>,
    /// `sparse[i]` is the offset of position `i * SPARSE`.
    pub(super) sparse: Vec<u64>,
}

impl Index {
    pub(super) fn add(&mut self, patient: Uuid, position: u64, offset: u64) {
        self.by_patient.entry(patient).or_default().push((position, offset));
        if position.is_multiple_of(SPARSE) {
            self.sparse.push(offset);
        }
    }
}
