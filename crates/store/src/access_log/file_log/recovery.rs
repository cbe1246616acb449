//! The scan at open: index every frame, and cut off a torn final frame (keeping its bytes
//! aside), or, when auditing, report it and change nothing.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::super::{backend, split};
use super::frames::{claimed_position, frames_from, Frame, Reach};
use super::index::{Index, SPARSE};
use crate::hash::{chain_hash, GENESIS_HASH};
use crate::StoreError;

/// What to do with a final frame that does not chain: a torn write looks just like a damaged
/// last record.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FinalFrame {
    /// Serving: cut it off (the caller keeps its bytes aside), as a write never acknowledged.
    Recover,
    /// Auditing: report it as corrupt, and change nothing.
    Report,
}

/// Scans the whole file: indexes every frame, checks the last one chains, and returns where the
/// next record goes.
pub(super) fn rebuild(file: &File, final_frame: FinalFrame) -> Result<(Index, Reach), StoreError> {
    let mut index = Index::default();
    let mut reach = Reach::EMPTY;
    let mut frames = frames_from(file, reach.offset)?;
    let mut last: Option<Frame> = None;
    let mut before_last = GENESIS_HASH;
    while let Some(frame) = frames.next_frame().map_err(|e| at_position(e, reach.position))? {
        let position = reach.position;
        let corrupt = |reason: &str| StoreError::Corrupt { position, reason: reason.into() };
        if claimed_position(&frame.value) != Some(position) {
            // Only a torn final frame may be unreadable; anything before it is corruption.
            let mut rest = frames_from(file, frame.offset + frame.len())?;
            if rest.next_frame()?.is_none() && final_frame == FinalFrame::Recover {
                tracing::warn!(position, "cutting an unreadable final frame off the access log");
                break;
            }
            return Err(corrupt("frame does not hold the next position"));
        }
        let patient = frame.patient().ok_or_else(|| corrupt("frame too short"))?;
        index.add(patient, position, frame.offset);
        let (body, hash) = split(position, &frame.value)?;
        // Auditing checks the chain as it reads, so that a damaged length is blamed on its own
        // record, not on the next one it misaligns.
        if final_frame == FinalFrame::Report && chain_hash(&reach.hash, body) != hash {
            return Err(corrupt("hash chain broken: content or order changed"));
        }
        before_last = reach.hash;
        reach = Reach { position: position + 1, offset: frame.offset + frame.len(), hash };
        last = Some(frame);
    }
    // Auditing leaves the chain to `verify`, which reports its first break, wherever it is.
    if let Some(frame) = last.filter(|_| final_frame == FinalFrame::Recover) {
        let position = reach.position - 1;
        let (body, hash) = split(position, &frame.value)?;
        if chain_hash(&before_last, body) != hash {
            // Written but never acknowledged: the write was cut short by a crash.
            tracing::warn!(position, "cutting a torn final frame off the access log");
            let entries = index.by_patient.get_mut(&frame.patient().expect("indexed")).expect("indexed");
            entries.pop();
            if position.is_multiple_of(SPARSE) {
                index.sparse.pop();
            }
            reach = Reach { position, offset: frame.offset, hash: before_last };
        }
    }
    if final_frame == FinalFrame::Report {
        // After the last frame come only zeros laid down ahead. Anything else is a frame that
        // could not be read (a damaged length, a torn write): never a silently shorter log.
        let mut rest = Vec::new();
        frames_from(file, reach.offset)?.reader.read_to_end(&mut rest).map_err(backend)?;
        if rest.iter().any(|b| *b != 0) {
            return Err(StoreError::Corrupt {
                position: reach.position,
                reason: "unreadable bytes where this record should start (a damaged length or a torn write)".into(),
            });
        }
    }
    Ok((index, reach))
}

/// A `Corrupt` error from reading frames names the position being read.
pub(super) fn at_position(e: StoreError, position: u64) -> StoreError {
    match e {
        StoreError::Corrupt { position: u64::MAX, reason } => StoreError::Corrupt { position, reason },
        other => other,
    }
}

/// Copies a cut-off final frame (any non-zero bytes after `offset`) to `records.cut-<offset>`
/// before the file is truncated: a torn write and a damaged final record look alike, and an
/// auditor must be able to see which it was.
pub(super) fn keep_cut_bytes(dir: &Path, file: &File, offset: u64) -> Result<(), StoreError> {
    let mut rest = Vec::new();
    frames_from(file, offset)?.reader.read_to_end(&mut rest).map_err(backend)?;
    let written = rest.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    if written > 0 {
        let path = dir.join(format!("records.cut-{offset}"));
        std::fs::write(&path, &rest[..written]).map_err(backend)?;
        tracing::warn!(path = %path.display(), bytes = written, "kept the bytes cut off the access log");
    }
    Ok(())
}
