//! The event-id index of the sled backend, held in memory and saved beside the log.
//!
//! Idempotent appends look every new event's id up. A sled key per id made nine in ten of the
//! tree's keys, and sled keeps a page-table entry for every 16 keys: at 3.9 M events that was
//! about 200 MB resident and most of the time sled took to open. Here each id costs 9 bytes
//! (its first 4 bytes and its position's low 5, sorted); a hit is confirmed by reading the event
//! at that position, so a shared prefix never mistakes one id for another. At 3.4 M events a new id
//! shares its prefix with a stored one about once in 1,300 lookups, which costs one read.
//!
//! The index is a cache of the log, never the truth: `event-ids.index` in the data directory
//! holds the ids below a position with the chain hash there. At open it is used only if the log
//! still holds that hash at that position and its checksum holds; the events after it (all of
//! them, without a usable file) are scanned. The writer saves it when the store closes and in
//! the background every million events, so a start after a crash scans a bounded tail.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::encoding::*;
use super::read_error;
use crate::hash::{Hash, GENESIS_HASH};
use crate::*;

const MAGIC: &[u8; 8] = b"FORLOPIX";
const FORMAT: u32 = 2;
const FILE: &str = "event-ids.index";
/// Events appended between background saves of the index (`SledOptions::id_index_save_every`).
pub(super) const SAVE_EVERY: u64 = 1_000_000;

/// The first 4 bytes of an id: the sorted part's key.
fn prefix(id: Uuid) -> u32 {
    (id.as_u128() >> 96) as u32
}

#[derive(Debug, Default)]
pub(super) struct IdIndex {
    /// Id prefixes of the ids known at open, sorted; `low` and `high` hold where each is.
    prefixes: Vec<u32>,
    /// A position's low 32 bits, and bits 32 to 40 in `high`: 9 bytes an id with its prefix
    /// rather than 12, which is 10 MB at 3.4 M events.
    low: Vec<u32>,
    high: Vec<u8>,
    /// Ids known at open whose position needs more than 40 bits (past a trillion events), sorted.
    far: Vec<(u32, u64)>,
    /// Ids appended since open, exact.
    recent: HashMap<Uuid, u64, foldhash::fast::RandomState>,
}

/// Positions below this fit `low` and `high`.
const NEAR: u64 = 1 << 40;

impl IdIndex {
    /// Positions that may hold `id`; the caller reads each to confirm.
    pub(super) fn candidates(&self, id: Uuid) -> Vec<u64> {
        let key = prefix(id);
        let start = self.prefixes.partition_point(|p| *p < key);
        let matching = self.prefixes[start..].iter().take_while(|p| **p == key).count();
        let mut found: Vec<u64> = (start..start + matching).map(|i| self.position(i)).collect();
        let far = self.far.partition_point(|(p, _)| *p < key);
        found.extend(self.far[far..].iter().take_while(|(p, _)| *p == key).map(|(_, position)| *position));
        found.extend(self.recent.get(&id));
        found
    }

    fn position(&self, i: usize) -> u64 {
        u64::from(self.low[i]) | u64::from(self.high[i]) << 32
    }

    pub(super) fn insert(&mut self, id: Uuid, position: u64) {
        self.recent.insert(id, position);
    }

    /// Every entry, sorted: what a save writes.
    fn entries(&self) -> Vec<(u32, u64)> {
        let mut all = Vec::with_capacity(self.prefixes.len() + self.far.len() + self.recent.len());
        all.extend(self.prefixes.iter().enumerate().map(|(i, p)| (*p, self.position(i))));
        all.extend_from_slice(&self.far);
        all.extend(self.recent.iter().map(|(id, position)| (prefix(*id), *position)));
        all.sort_unstable();
        all
    }

    /// The index of `entries`, sorted. Built from a save's entries it is also the compacted
    /// index: the ids appended since open folded into the sorted part (9 bytes each instead of
    /// a hash map entry), so a long-running store's index grows as its file does.
    pub(super) fn of_sorted(entries: &[(u32, u64)]) -> IdIndex {
        let near = || entries.iter().filter(|(_, position)| *position < NEAR);
        IdIndex {
            prefixes: near().map(|(p, _)| *p).collect(),
            low: near().map(|(_, position)| *position as u32).collect(),
            high: near().map(|(_, position)| (*position >> 32) as u8).collect(),
            far: entries.iter().filter(|(_, position)| *position >= NEAR).copied().collect(),
            recent: Default::default(),
        }
    }
}

/// The index file of the store at `dir`.
pub(super) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// A saved index, read from its file or copied out of the index to be written (so the writer
/// can go on meanwhile): the ids of the events below `position`, whose last has chain hash
/// `head`, sorted.
pub(super) struct Saved {
    position: u64,
    head: Hash,
    pub(super) entries: Vec<(u32, u64)>,
}

/// Reads and checks the file at `path` (without the log); None, with a warning, if it is
/// missing, damaged or of another format.
pub(super) fn read(path: &Path) -> Option<Saved> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return ignored(path, &e.to_string()),
    };
    let (body, sum) = bytes.split_at(bytes.len().saturating_sub(32));
    if sum.len() != 32 || Sha256::digest(body)[..] != *sum {
        return ignored(path, "checksum does not match");
    }
    let mut input = body;
    let mut header = [0u8; 8 + 4 + 8 + 32 + 8];
    if input.read_exact(&mut header).is_err() || header[..8] != *MAGIC {
        return ignored(path, "not an event-id index");
    }
    let le = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    if u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) != FORMAT {
        return ignored(path, "another format");
    }
    let (position, count) = (le(12), le(52));
    let head: Hash = header[20..52].try_into().expect("32 bytes");
    if input.len() as u64 != count.saturating_mul(12) {
        return ignored(path, "length does not match its count");
    }
    let entries = input
        .chunks_exact(12)
        .map(|c| {
            (u32::from_le_bytes(c[..4].try_into().expect("4 bytes")), u64::from_le_bytes(c[4..].try_into().expect("8")))
        })
        .collect();
    Some(Saved { position, head, entries })
}

fn ignored<T>(path: &Path, why: &str) -> Option<T> {
    tracing::warn!(path = %path.display(), reason = why, "event-id index ignored; the log is scanned for its ids");
    None
}

/// The index of the events below `end` in `tree`: `saved` if the log holds its head hash at its
/// position, plus the ids of the events after it; and the position the file on disk covers (0
/// without a usable one), so the writer knows how much a save would spare the next open.
pub(super) fn build(tree: &sled::Tree, saved: Option<Saved>, end: u64) -> Result<(IdIndex, u64), StoreError> {
    let started = std::time::Instant::now();
    let saved = match saved {
        Some(s) if s.position <= end && head_at(tree, s.position)? == Some(s.head) => Some(s),
        Some(_) => {
            tracing::warn!("event-id index belongs to another or an older log; the log is scanned for its ids");
            None
        }
        None => None,
    };
    let (from, mut sorted) = saved.map_or((0, Vec::new()), |s| (s.position, s.entries));
    if from < end {
        let tail_start = sorted.len();
        let first = find_append(tree, from)?.map_or(from, |(first, _)| first);
        for kv in tree.range(event_key(first)..event_key(end)) {
            let (k, v) = kv.map_err(read_error)?;
            let first = be_u64(&k[1..]);
            for (i, r) in records(first, &v).enumerate() {
                let position = first + i as u64;
                if position < from {
                    continue;
                }
                let (body, hash) = r?;
                sorted.push((prefix(decode(position, body, hash)?.id), position));
            }
        }
        // Two sorted runs (the file's, then the tail's in log order): the stable sort merges
        // runs it finds already in order.
        sorted[tail_start..].sort_unstable();
        sorted.sort();
    }
    tracing::info!(
        ids = sorted.len(),
        scanned = end - from,
        ms = started.elapsed().as_millis() as u64,
        "event-id index ready"
    );
    Ok((IdIndex::of_sorted(&sorted), from))
}

/// The chain hash of the event before `position` (the genesis hash for 0), if the log holds it.
fn head_at(tree: &sled::Tree, position: u64) -> Result<Option<Hash>, StoreError> {
    let Some(before) = position.checked_sub(1) else { return Ok(Some(GENESIS_HASH)) };
    let Some((first, value)) = find_append(tree, before)? else { return Ok(None) };
    let head = match records(first, &value).nth((before - first) as usize) {
        Some(r) => r?.1.try_into().ok(),
        None => None,
    };
    Ok(head)
}

impl IdIndex {
    /// The index as a save writes it, for the events below `position` (chain hash `head`).
    pub(super) fn snapshot(&self, position: u64, head: Hash) -> Saved {
        Saved { position, head, entries: self.entries() }
    }
}

/// Writes `s` to `path` atomically: a temporary file, fsynced, renamed over the old one.
pub(super) fn write(path: &Path, s: &Saved) -> std::io::Result<()> {
    let started = std::time::Instant::now();
    let mut bytes = Vec::with_capacity(60 + s.entries.len() * 12 + 32);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT.to_le_bytes());
    bytes.extend_from_slice(&s.position.to_le_bytes());
    bytes.extend_from_slice(&s.head);
    bytes.extend_from_slice(&(s.entries.len() as u64).to_le_bytes());
    for (p, position) in &s.entries {
        bytes.extend_from_slice(&p.to_le_bytes());
        bytes.extend_from_slice(&position.to_le_bytes());
    }
    let sum = Sha256::digest(&bytes);
    bytes.extend_from_slice(&sum);
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    tracing::info!(
        ids = s.entries.len(),
        events = s.position,
        ms = started.elapsed().as_millis() as u64,
        "event-id index saved"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sharing_a_prefix_are_both_candidates_and_recent_ids_are_found() {
        let a = Uuid::from_u128((7u128 << 96) | 1);
        let b = Uuid::from_u128((7u128 << 96) | 2);
        let c = Uuid::from_u128(9u128 << 96);
        let mut index = IdIndex::of_sorted(&[(7, 10), (7, 11), (8, 12)]);
        index.insert(c, 13);
        assert_eq!(index.candidates(a), vec![10, 11]);
        assert_eq!(index.candidates(b), vec![10, 11]);
        assert_eq!(index.candidates(c), vec![13]);
        assert!(index.candidates(Uuid::from_u128(1)).is_empty());
        assert_eq!(index.entries(), vec![(7, 10), (7, 11), (8, 12), (9, 13)]);
        let compacted = IdIndex::of_sorted(&index.snapshot(14, [0; 32]).entries);
        assert!(compacted.recent.is_empty());
        assert_eq!(compacted.candidates(c), vec![13], "an id folded into the sorted part is still found");
        assert_eq!(compacted.candidates(a), vec![10, 11]);
    }

    #[test]
    fn positions_past_forty_bits_are_kept_whole() {
        let (near, far) = ((1u64 << 40) - 1, (1u64 << 40) + 5);
        let index = IdIndex::of_sorted(&[(7, 3), (7, far), (7, near), (8, u64::MAX)]);
        let mut found = index.candidates(Uuid::from_u128(7u128 << 96));
        found.sort_unstable();
        assert_eq!(found, vec![3, near, far]);
        assert_eq!(index.candidates(Uuid::from_u128(8u128 << 96)), vec![u64::MAX]);
        assert_eq!(index.entries(), vec![(7, 3), (7, near), (7, far), (8, u64::MAX)]);
    }

    #[test]
    fn a_saved_index_reads_back_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        let s = Saved { position: 3, head: [5; 32], entries: vec![(1, 0), (2, 2), (3, 1)] };
        write(&file, &s).unwrap();
        let back = read(&file).expect("reads back");
        assert_eq!((back.position, back.head, back.entries), (3, [5; 32], vec![(1, 0), (2, 2), (3, 1)]));
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[70] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(read(&file).is_none(), "a flipped bit fails the checksum");
        std::fs::write(&file, b"FORLOPIX").unwrap();
        assert!(read(&file).is_none(), "a truncated file is refused");
    }
}
