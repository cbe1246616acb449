//! The audit of a log: the whole chain recomputed, and the index checked against the file.

use std::collections::HashMap;
use std::fs::File;

use uuid::Uuid;

use super::super::{decode, split, AccessVerifyReport};
use super::frames::frames_from;
use super::records_file::MAGIC;
use super::recovery::at_position;
use super::shared::Shared;
use crate::hash::{chain_hash, GENESIS_HASH};
use crate::StoreError;

/// Checks records `[0, committed)`: gapless positions, decodable, hash chain intact, the chain
/// ending at the head hash, and each record in the patient index at its offset and nowhere else.
pub(super) fn verify(file: &File, shared: &Shared) -> Result<AccessVerifyReport, StoreError> {
    let (end, head) = shared.head();
    let mut frames = frames_from(file, MAGIC.len() as u64)?;
    let mut previous = GENESIS_HASH;
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    for position in 0..end {
        let corrupt = |reason: &str| StoreError::Corrupt { position, reason: reason.into() };
        let frame =
            frames.next_frame().map_err(|e| at_position(e, position))?.ok_or_else(|| corrupt("record missing"))?;
        let (body, hash) = split(position, &frame.value)?;
        if chain_hash(&previous, body) != hash {
            return Err(corrupt("hash chain broken: content or order changed"));
        }
        let stored = decode(position, &frame.value)?;
        let patient = stored.record.patient_id;
        let nth = seen.entry(patient).or_default();
        let indexed = shared.index().by_patient.get(&patient).and_then(|v| v.get(*nth).copied());
        if indexed != Some((position, frame.offset)) {
            return Err(corrupt("record is missing from the patient index"));
        }
        *nth += 1;
        previous = hash;
    }
    if previous != head {
        return Err(StoreError::Corrupt {
            position: end.saturating_sub(1),
            reason: "stored chain does not end at the head hash".into(),
        });
    }
    Ok(AccessVerifyReport { records: end, head_hash: previous })
}
