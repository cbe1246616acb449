//! The frames of the record file: a body length (u32 LE), a record's canonical bytes, and its
//! chain hash. Read one after another, or encoded for a group of records.

use std::fs::File;
use std::io::{BufReader, Read};

use uuid::Uuid;

use super::super::{backend, encode, AccessRecord};
use super::records_file::MAGIC;
use crate::hash::{chain_hash, Hash, GENESIS_HASH};
use crate::StoreError;

/// Largest frame body accepted when reading: far beyond any valid record (7 fields ≤ 4 KiB).
pub(super) const MAX_BODY: usize = 64 * 1024;

/// Where the next record goes: its position, its offset, and the hash it chains from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reach {
    pub(super) position: u64,
    pub(super) offset: u64,
    pub(super) hash: Hash,
}

impl Reach {
    pub(super) const EMPTY: Reach = Reach { position: 0, offset: MAGIC.len() as u64, hash: GENESIS_HASH };
}

/// One frame as read from the file: its offset and body ++ hash.
pub(super) struct Frame {
    pub(super) offset: u64,
    pub(super) value: Vec<u8>,
}

impl Frame {
    pub(super) fn len(&self) -> u64 {
        4 + self.value.len() as u64
    }

    /// The patient id: the fixed-size last field of the canonical bytes.
    pub(super) fn patient(&self) -> Option<Uuid> {
        let body = self.value.len().checked_sub(32)?;
        Uuid::from_slice(self.value.get(body.checked_sub(16)?..body)?).ok()
    }
}

/// Reads frames one after another from `offset`. Ends at the end of the written frames (a zero
/// length or the end of the file); a frame cut short by the end of the file ends them too.
pub(super) struct Frames<R> {
    pub(super) reader: R,
    offset: u64,
}

impl<R: Read> Frames<R> {
    pub(super) fn next_frame(&mut self) -> Result<Option<Frame>, StoreError> {
        let mut len = [0u8; 4];
        if read_full(&mut self.reader, &mut len)? < 4 {
            return Ok(None);
        }
        let body = u32::from_le_bytes(len) as usize;
        if body == 0 {
            return Ok(None);
        }
        if body > MAX_BODY {
            return Err(StoreError::Corrupt {
                position: u64::MAX,
                reason: format!("frame at byte {} claims {body} bytes", self.offset),
            });
        }
        let mut value = vec![0; body + 32];
        if read_full(&mut self.reader, &mut value)? < value.len() {
            return Ok(None);
        }
        let frame = Frame { offset: self.offset, value };
        self.offset += frame.len();
        Ok(Some(frame))
    }
}

/// Fills `buf` as far as the reader allows; returns the bytes read (short only at end of file).
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, StoreError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(backend(e)),
        }
    }
    Ok(filled)
}

pub(super) fn frames_from(file: &File, offset: u64) -> Result<Frames<BufReader<File>>, StoreError> {
    use std::io::{Seek, SeekFrom};
    let mut f = file.try_clone().map_err(backend)?;
    f.seek(SeekFrom::Start(offset)).map_err(backend)?;
    Ok(Frames { reader: BufReader::with_capacity(256 * 1024, f), offset })
}

/// The position a frame's body claims (its second field, after the format byte).
pub(super) fn claimed_position(value: &[u8]) -> Option<u64> {
    let body = value.get(..value.len().checked_sub(32)?)?;
    postcard::take_from_bytes::<(u8, u64)>(body).ok().map(|((_, position), _)| position)
}

/// Frames one request's records from `reach` on, with their index entries, only if all of them
/// encode. Returns the request's first position.
pub(super) fn encode_frames(
    records: &[AccessRecord],
    bytes: &mut Vec<u8>,
    entries: &mut Vec<(Uuid, u64, u64)>,
    reach: &mut Reach,
) -> Result<u64, StoreError> {
    let mut framed = Vec::with_capacity(records.len() * 200);
    let mut mine = Vec::with_capacity(records.len());
    let mut r = *reach;
    for record in records {
        let start = framed.len();
        framed.extend_from_slice(&[0; 4]);
        framed = encode(record, r.position, framed)?;
        let body = u32::try_from(framed.len() - start - 4).map_err(backend)?;
        framed[start..start + 4].copy_from_slice(&body.to_le_bytes());
        r.hash = chain_hash(&r.hash, &framed[start + 4..]);
        framed.extend_from_slice(&r.hash);
        mine.push((record.patient_id, r.position, r.offset));
        r.position += 1;
        r.offset += (framed.len() - start) as u64;
    }
    bytes.extend_from_slice(&framed);
    entries.extend(mine);
    let first = reach.position;
    *reach = r;
    Ok(first)
}
