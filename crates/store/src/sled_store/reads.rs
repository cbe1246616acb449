//! Reads of committed events: by position, by stream, by id.

use uuid::Uuid;

use super::encoding::*;
use super::{read_error, SledStore};
use crate::*;

impl SledStore {
    pub(super) fn get_position(&self, position: u64) -> Result<Option<RecordedEvent>, StoreError> {
        if position >= self.committed() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(1);
        if let Some((first, value)) = find_append(&self.tree, position)? {
            decode_append(first, &value, position, position + 1, &mut out)?;
        }
        match out.pop() {
            Some(e) => Ok(Some(e)),
            None => Err(StoreError::Corrupt { position, reason: "indexed event is missing".into() }),
        }
    }

    pub(super) fn stream_events(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let prefix = stream_prefix(stream);
        let committed = self.committed();
        // Start at the run holding `from_version`: the last run starting at or before it.
        let start = match self.tree.range(stream_key(&prefix, 0)..=stream_key(&prefix, from_version)).next_back() {
            Some(kv) => kv.map_err(read_error)?.0.to_vec(),
            None => stream_key(&prefix, from_version),
        };
        let mut out = Vec::new();
        for kv in self.tree.range(start..stream_key(&prefix, u64::MAX)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv.map_err(read_error)?;
            let (first_version, first_position, count) = run(&k, &v);
            if first_position >= committed {
                break; // written by a group whose flush has not been acknowledged yet
            }
            let from = first_position + from_version.saturating_sub(first_version);
            let to = (first_position + count).min(from.saturating_add((limit - out.len()) as u64));
            let value = self.tree.get(event_key(first_position)).map_err(read_error)?.ok_or(StoreError::Corrupt {
                position: first_position,
                reason: "stream index points at a missing append".into(),
            })?;
            decode_append(first_position, &value, from, to, &mut out)?;
        }
        Ok(out)
    }

    pub(super) fn log_events(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let end = self.committed();
        if from_position >= end {
            return Ok(Vec::new());
        }
        let end = end.min(from_position.saturating_add(limit as u64));
        let start = find_append(&self.tree, from_position)?.map_or(from_position, |(first, _)| first);
        let mut out = Vec::with_capacity((end - from_position) as usize);
        for kv in self.tree.range(event_key(start)..event_key(end)) {
            let (k, v) = kv.map_err(read_error)?;
            decode_append(be_u64(&k[1..]), &v, from_position, end, &mut out)?;
        }
        Ok(out)
    }

    pub(super) fn last_version(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        let committed = self.committed();
        for kv in self.tree.scan_prefix(stream_prefix(stream)).rev() {
            let (k, v) = kv.map_err(read_error)?;
            let (first_version, first_position, count) = run(&k, &v);
            if first_position < committed {
                return Ok(Some(first_version + count - 1));
            }
        }
        Ok(None)
    }

    pub(super) fn event_with_id(&self, id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let candidates = self.ids.read().candidates(id);
        for position in candidates {
            if let Some(e) = self.get_position(position)?.filter(|e| e.id == id) {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }
}
