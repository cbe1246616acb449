//! Reads of the log: one patient's records through the index, or all records from a position
//! through the sparse offsets.

use std::os::unix::fs::FileExt;

use uuid::Uuid;

use super::super::{decode, AccessFilter, StoredAccessRecord};
use super::frames::{frames_from, MAX_BODY};
use super::index::SPARSE;
use super::records_file::MAGIC;
use super::FileAccessLog;
use crate::StoreError;

impl FileAccessLog {
    /// Reads and decodes the frame at `offset`, which must hold `position`.
    fn read_at(&self, position: u64, offset: u64) -> Result<StoredAccessRecord, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt { position, reason };
        let mut len = [0u8; 4];
        self.file.read_exact_at(&mut len, offset).map_err(|e| corrupt(format!("index points past the file: {e}")))?;
        let body = u32::from_le_bytes(len) as usize;
        if body == 0 || body > MAX_BODY {
            return Err(corrupt(format!("frame claims {body} bytes")));
        }
        let mut value = vec![0; body + 32];
        self.file.read_exact_at(&mut value, offset + 4).map_err(|e| corrupt(format!("truncated frame: {e}")))?;
        decode(position, &value)
    }

    pub(super) fn query_patient(
        &self,
        patient: Uuid,
        filter: &AccessFilter,
        (start, end): (u64, u64),
        limit: usize,
    ) -> Result<Vec<StoredAccessRecord>, StoreError> {
        let entries: Vec<(u64, u64)> = {
            let index = self.shared.index();
            let all = index.by_patient.get(&patient).map(Vec::as_slice).unwrap_or_default();
            let from = all.partition_point(|(p, _)| *p < start);
            all[from..].iter().take_while(|(p, _)| *p < end).copied().collect()
        };
        let mut out = Vec::new();
        for (position, offset) in entries {
            let stored = self.read_at(position, offset)?;
            if stored.record.patient_id != patient {
                return Err(StoreError::Corrupt {
                    position,
                    reason: format!("patient index for {patient} points at another patient's record"),
                });
            }
            if filter.matches(&stored.record) {
                out.push(stored);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub(super) fn query_all(
        &self,
        filter: &AccessFilter,
        (start, end): (u64, u64),
        limit: usize,
    ) -> Result<Vec<StoredAccessRecord>, StoreError> {
        // Start at the last sparse offset at or before `start` and read forward.
        let anchor = start / SPARSE;
        let offset = self.shared.index().sparse.get(anchor as usize).copied().unwrap_or(MAGIC.len() as u64);
        let mut position = if offset == MAGIC.len() as u64 { 0 } else { anchor * SPARSE };
        let mut frames = frames_from(&self.file, offset)?;
        let mut out = Vec::new();
        while position < end && out.len() < limit {
            let Some(frame) = frames.next_frame()? else {
                return Err(StoreError::Corrupt { position, reason: "record missing from the file".into() });
            };
            if position >= start {
                let stored = decode(position, &frame.value)?;
                if filter.matches(&stored.record) {
                    out.push(stored);
                }
            }
            position += 1;
        }
        Ok(out)
    }
}
