//! Full verification of the log: positions, hash chain, stream versions, the stream index and
//! unique event ids.

use std::collections::HashMap;

use super::encoding::*;
use super::{read_error, SledStore};
use crate::hash::{chain_hash, GENESIS_HASH};
use crate::*;

impl SledStore {
    pub(super) fn verify_log(&self) -> Result<VerifyReport, StoreError> {
        verify_tree(&self.tree, Some(self.committed()))
    }
}

/// Verifies the events stored in `tree` below `end` (all of them if None).
pub(super) fn verify_tree(tree: &sled::Tree, end: Option<u64>) -> Result<VerifyReport, StoreError> {
    let mut previous = GENESIS_HASH;
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut expected_position = 0u64;
    // Event id -> its position: an id must be stored once.
    let mut ids: HashMap<u128, u64> = HashMap::new();
    for kv in tree.range(event_key(0)..event_key(end.unwrap_or(u64::MAX))) {
        let (k, v) = kv.map_err(read_error)?;
        let first = be_u64(&k[1..]);
        if first != expected_position {
            return Err(StoreError::Corrupt {
                position: expected_position,
                reason: format!("gap: next stored position is {first}"),
            });
        }
        let mut run_start: Option<(String, u64)> = None;
        for r in records(first, &v) {
            let position = expected_position;
            let corrupt = |reason: String| StoreError::Corrupt { position, reason };
            let (body, hash) = r?;
            let e = decode(position, body, hash)?;
            if e.position != position {
                return Err(corrupt(format!("record claims position {}", e.position)));
            }
            if chain_hash(&previous, body) != e.hash {
                return Err(corrupt("hash chain broken: content or order changed".into()));
            }
            let want = versions.get(&e.stream).map_or(0, |v| v + 1);
            if e.version != want {
                return Err(corrupt(format!("stream {} version {} where {want} was due", e.stream, e.version)));
            }
            match &run_start {
                None => run_start = Some((e.stream.clone(), e.version)),
                Some((stream, _)) if *stream != e.stream => {
                    return Err(corrupt("one append holds events of two streams".into()))
                }
                Some(_) => {}
            }
            if let Some(first) = ids.insert(e.id.as_u128(), position) {
                return Err(corrupt(format!("event id {} is also stored at position {first}", e.id)));
            }
            versions.insert(e.stream, e.version);
            previous = e.hash;
            expected_position += 1;
        }
        let Some((stream, first_version)) = run_start else {
            return Err(StoreError::Corrupt { position: first, reason: "empty append".into() });
        };
        let indexed = tree.get(stream_key(&stream_prefix(&stream), first_version)).map_err(read_error)?;
        // A damaged index value of the wrong length must be reported, not sliced.
        let placing = indexed
            .as_deref()
            .filter(|v| v.len() == 12)
            .map(|v| (be_u64(v), u32::from_be_bytes(v[8..12].try_into().unwrap()) as u64));
        if placing != Some((first, expected_position - first)) {
            return Err(StoreError::Corrupt {
                position: first,
                reason: "stream index does not match the append".into(),
            });
        }
    }
    if end.is_some_and(|end| expected_position != end) {
        return Err(StoreError::Corrupt { position: expected_position, reason: "event missing".into() });
    }
    Ok(VerifyReport { events: expected_position, streams: versions.len() as u64, head_hash: previous })
}
