//! How events are laid out in the sled tree: keys, the canonical record bytes and their hash.

use chrono::DateTime;
use uuid::Uuid;

use super::read_error;
pub(crate) use crate::plan::Canonical;
use crate::*;

pub(super) const EVENT: u8 = b'E';
pub(super) const STREAM: u8 = b'S';
pub(super) fn event_key(position: u64) -> [u8; 9] {
    let mut k = [EVENT; 9];
    k[1..].copy_from_slice(&position.to_be_bytes());
    k
}

pub(super) fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 10);
    k.push(STREAM);
    k.extend_from_slice(stream.as_bytes());
    k.push(0);
    k
}

pub(super) fn stream_key(prefix: &[u8], version: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&version.to_be_bytes());
    k
}

pub(super) fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().expect("8-byte big-endian value"))
}

/// A run of one append's events in one stream: (first version, first position, count).
pub(super) fn run(key: &[u8], value: &[u8]) -> (u64, u64, u64) {
    let first_version = be_u64(&key[key.len() - 8..]);
    let count = u32::from_be_bytes(value[8..12].try_into().expect("run count")) as u64;
    (first_version, be_u64(value), count)
}

pub(super) fn run_value(first_position: u64, count: usize) -> [u8; 12] {
    let mut v = [0; 12];
    v[..8].copy_from_slice(&first_position.to_be_bytes());
    v[8..].copy_from_slice(&(count as u32).to_be_bytes());
    v
}

/// Splits an append's value into (canonical bytes, hash) per event. `first` is the append's first
/// position, for error messages.
pub(super) fn records(first: u64, value: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), StoreError>> {
    let mut rest = value;
    let mut position = first;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let corrupt = |reason: &str| StoreError::Corrupt { position, reason: reason.into() };
        let item = (|| {
            let len = u32::from_le_bytes(rest.get(..4).ok_or_else(|| corrupt("truncated record"))?.try_into().unwrap());
            let end = 4 + len as usize;
            let body = rest.get(4..end).ok_or_else(|| corrupt("truncated record"))?;
            let hash = rest.get(end..end + 32).ok_or_else(|| corrupt("record without hash"))?;
            rest = &rest[end + 32..];
            Ok((body, hash))
        })();
        if item.is_err() {
            rest = &[];
        }
        position += 1;
        Some(item)
    })
}

/// Decodes one record found at `position`.
pub(super) fn decode(position: u64, body: &[u8], hash: &[u8]) -> Result<RecordedEvent, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let c: Canonical = postcard::from_bytes(body).map_err(|e| corrupt(format!("undecodable record: {e}")))?;
    Ok(RecordedEvent {
        id: Uuid::from_bytes(c.id),
        stream: c.stream.to_owned(),
        version: c.version,
        position: c.position,
        event_type: c.event_type.to_owned(),
        schema_version: c.schema_version,
        occurred_at: DateTime::from_timestamp_nanos(c.occurred_at_ns),
        recorded_at: DateTime::from_timestamp_nanos(c.recorded_at_ns),
        metadata: Metadata {
            actor: c.actor.to_owned(),
            correlation_id: c.correlation_id.map(Uuid::from_bytes),
            causation_id: c.causation_id.map(Uuid::from_bytes),
        },
        payload: c.payload.to_vec(),
        hash: hash.try_into().map_err(|_| corrupt("hash is not 32 bytes".into()))?,
    })
}

/// The append holding `position`: its first position and value.
pub(super) fn find_append(tree: &sled::Tree, position: u64) -> Result<Option<(u64, sled::IVec)>, StoreError> {
    match tree.range(event_key(0)..=event_key(position)).next_back() {
        None => Ok(None),
        Some(kv) => {
            let (k, v) = kv.map_err(read_error)?;
            Ok(Some((be_u64(&k[1..]), v)))
        }
    }
}

/// Decodes the events of one append with positions in `[from, to)`, into `out`.
pub(super) fn decode_append(
    first: u64,
    value: &[u8],
    from: u64,
    to: u64,
    out: &mut Vec<RecordedEvent>,
) -> Result<(), StoreError> {
    for (i, r) in records(first, value).enumerate() {
        let position = first + i as u64;
        if position >= to {
            break;
        }
        if position >= from {
            let (body, hash) = r?;
            out.push(decode(position, body, hash)?);
        }
    }
    Ok(())
}
