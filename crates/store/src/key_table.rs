//! The key table: durable, *deletable* storage for the vault's per-patient key records, kept apart
//! from the append-only event log so that a patient's data key can be destroyed (crypto-shredding)
//! while the events that hold data sealed under it stay untouched.
//!
//! The store knows the records as opaque bytes and the blind index as opaque 32-byte values.
//!
//! Its own sled database, one tree (`keys`), so that every change is one atomic sled transaction:
//! - `K` + patient id (16 bytes)  -> key record (opaque)
//! - `B` + blind index (32 bytes) -> patient id (16 bytes)
//! - `R` + patient id (16 bytes)  -> blind index (32 bytes): the reverse entry, so `forget_patient`
//!   can remove the index entry
//! - `G`                          -> generation (u64 BE), bumped by every write, so key rotation can
//!   refuse to overwrite records written after it read them (`replace_all_at`)
//!
//! Every write is flushed (fsync) before it returns.
//!
//! Deleting is logical at first: sled may keep old values in its log segments until they are
//! rewritten (segment cleaning), and the file system may keep old blocks beyond that. That is why
//! the records hold data keys only *wrapped* by the master key, which never touches this table:
//! a leftover copy of a forgotten record cannot be opened without the master key, and rotating the
//! master key (and destroying the old one) makes every leftover copy permanently unreadable.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use async_trait::async_trait;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use uuid::Uuid;

use crate::{ExpectedVersion, StoreError};

const RECORD: u8 = b'K';
const BLIND: u8 = b'B';
const REVERSE: u8 = b'R';
const GENERATION: &[u8] = b"G";

/// Durable per-patient key records and the blind index. Cheap to clone (clones share the database).
#[derive(Clone)]
pub struct KeyTable {
    db: sled::Db,
    tree: sled::Tree,
}

/// sled's own `Debug` dumps every node of the tree; this one shows nothing stored.
impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable").field("records", &self.tree.scan_prefix([RECORD]).count()).finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

fn record_key(patient: Uuid) -> [u8; 17] {
    let mut k = [RECORD; 17];
    k[1..].copy_from_slice(patient.as_bytes());
    k
}

fn reverse_key(patient: Uuid) -> [u8; 17] {
    let mut k = [REVERSE; 17];
    k[1..].copy_from_slice(patient.as_bytes());
    k
}

fn blind_key(blind_index: &[u8; 32]) -> [u8; 33] {
    let mut k = [BLIND; 33];
    k[1..].copy_from_slice(blind_index);
    k
}

fn uuid_of(bytes: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes).map_err(|_| StoreError::Backend("key table: malformed patient id".into()))
}

fn generation_of(value: Option<&[u8]>) -> Result<u64, StoreError> {
    match value {
        None => Ok(0),
        Some(v) => Ok(u64::from_be_bytes(
            v.try_into().map_err(|_| StoreError::Backend("key table: malformed generation".into()))?,
        )),
    }
}

/// Reads and bumps the generation inside a transaction.
fn bump(tx: &TransactionalTree) -> Result<u64, ConflictableTransactionError<StoreError>> {
    let current = generation_of(tx.get(GENERATION)?.as_deref()).map_err(ConflictableTransactionError::Abort)?;
    tx.insert(GENERATION, &(current + 1).to_be_bytes())?;
    Ok(current)
}

/// Removes the patient's reverse entry and the blind-index entry it names, if that entry still
/// points at this patient (another patient may have taken the index over since).
fn unlink(tx: &TransactionalTree, patient: Uuid) -> Result<(), ConflictableTransactionError<StoreError>> {
    if let Some(blind) = tx.remove(reverse_key(patient).as_slice())? {
        let mut k = [BLIND; 33];
        if blind.len() == 32 {
            k[1..].copy_from_slice(&blind);
            if tx.get(k.as_slice())?.as_deref() == Some(patient.as_bytes().as_slice()) {
                tx.remove(k.as_slice())?;
            }
        }
    }
    Ok(())
}

/// Writes the patient's record and, if given, their blind-index entry (see `put_patient`).
fn put_in(
    tx: &TransactionalTree,
    patient: Uuid,
    record: &[u8],
    blind_index: &Option<[u8; 32]>,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    bump(tx)?;
    unlink(tx, patient)?;
    if let Some(blind) = &blind_index {
        let bk = blind_key(blind);
        if let Some(previous) = tx.get(bk.as_slice())? {
            // Another patient held this index value: drop its now-stale reverse entry.
            if previous.as_ref() != patient.as_bytes() && previous.len() == 16 {
                let other = Uuid::from_slice(&previous).map_err(|_| {
                    ConflictableTransactionError::Abort(StoreError::Backend("key table: malformed patient id".into()))
                })?;
                tx.remove(reverse_key(other).as_slice())?;
            }
        }
        tx.insert(bk.as_slice(), patient.as_bytes())?;
        tx.insert(reverse_key(patient).as_slice(), blind.as_slice())?;
    }
    tx.insert(record_key(patient).as_slice(), record)?;
    Ok(())
}

impl KeyTable {
    /// Opens (or creates) the key table in its own directory.
    pub fn open(path: &Path) -> Result<KeyTable, StoreError> {
        // Every write flushes itself; without a timer thread the file lock is released as soon as
        // the table is dropped, so a reopen in the same process never finds it still held.
        let db = crate::sled_open::open(&sled::Config::new().path(path).flush_every_ms(None)).map_err(backend)?;
        let tree = db.open_tree("keys").map_err(backend)?;
        Ok(KeyTable { db, tree })
    }

    /// The patient's key record, if any.
    pub fn get_patient(&self, patient: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(record_key(patient)).map_err(backend)?.map(|v| v.to_vec()))
    }

    /// Stores the record and, if given, the blind-index entry pointing at the patient; durable
    /// (flushed) before returning. A previous blind-index entry of this patient is removed; a
    /// blind-index entry of another patient with the same value is taken over (last writer wins).
    pub fn put_patient(&self, patient: Uuid, record: &[u8], blind_index: Option<[u8; 32]>) -> Result<(), StoreError> {
        self.tree.transaction(|tx| put_in(tx, patient, record, &blind_index)).map_err(tx_error)?;
        self.flush()
    }

    /// `put_patient`, but only if the patient has no record yet; false (and nothing written)
    /// if one exists. Creating a patient's first data key this way means two writers can never
    /// both create one.
    pub fn insert_patient(
        &self,
        patient: Uuid,
        record: &[u8],
        blind_index: Option<[u8; 32]>,
    ) -> Result<bool, StoreError> {
        let inserted = self
            .tree
            .transaction(|tx| {
                if tx.get(record_key(patient).as_slice())?.is_some() {
                    return Ok(false);
                }
                put_in(tx, patient, record, &blind_index)?;
                Ok(true)
            })
            .map_err(tx_error)?;
        if inserted {
            self.flush()?;
        }
        Ok(inserted)
    }

    /// The patient a blind-index value points at. The caller must still check that the patient
    /// has a record: a caller must treat an entry whose patient has no record as not found.
    pub fn find_blind_index(&self, blind_index: &[u8; 32]) -> Result<Option<Uuid>, StoreError> {
        match self.tree.get(blind_key(blind_index)).map_err(backend)? {
            Some(v) => Ok(Some(uuid_of(&v)?)),
            None => Ok(None),
        }
    }

    /// Deletes the patient's record and every blind-index entry pointing at them; durable before
    /// returning. Idempotent.
    pub fn forget_patient(&self, patient: Uuid) -> Result<(), StoreError> {
        self.tree
            .transaction(|tx| {
                bump(tx)?;
                unlink(tx, patient)?;
                tx.remove(record_key(patient).as_slice())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    /// Every (patient, record), in patient-id byte order, for key rotation.
    pub fn patients(&self) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError> {
        self.tree
            .scan_prefix([RECORD])
            .map(|kv| {
                let (k, v) = kv.map_err(backend)?;
                Ok((uuid_of(&k[1..])?, v.to_vec()))
            })
            .collect()
    }

    /// Every (patient, record, blind index), in patient-id byte order, to copy the table.
    pub fn entries(&self) -> Result<Vec<KeyEntry>, StoreError> {
        let mut out = Vec::new();
        for (patient, record) in self.patients()? {
            let blind = match self.tree.get(reverse_key(patient)).map_err(backend)? {
                Some(b) => {
                    Some(<[u8; 32]>::try_from(b.as_ref()).map_err(|_| backend("key table: malformed blind index"))?)
                }
                None => None,
            };
            out.push((patient, record, blind));
        }
        Ok(out)
    }

    /// A number that changes with every write (put, forget, replace). Read it before `patients`
    /// and pass it to `replace_all_at` so that no write in between is lost.
    pub fn generation(&self) -> Result<u64, StoreError> {
        generation_of(self.tree.get(GENERATION).map_err(backend)?.as_deref())
    }

    /// Replaces every record and the whole blind index atomically (one sled transaction, then a
    /// flush), for key rotation. Records not in `records` are deleted. If several records carry
    /// the same blind index, the last one gets it.
    pub fn replace_all(&self, records: Vec<(Uuid, Vec<u8>, Option<[u8; 32]>)>) -> Result<(), StoreError> {
        self.replace(None, records)
    }

    /// `replace_all`, but only if the table's `generation` is still `expected`; otherwise nothing
    /// changes and the error is `WrongExpectedVersion` on the stream name `key_table`.
    pub fn replace_all_at(
        &self,
        expected: u64,
        records: Vec<(Uuid, Vec<u8>, Option<[u8; 32]>)>,
    ) -> Result<(), StoreError> {
        self.replace(Some(expected), records)
    }

    fn replace(
        &self,
        expected: Option<u64>,
        records: Vec<(Uuid, Vec<u8>, Option<[u8; 32]>)>,
    ) -> Result<(), StoreError> {
        // sled transactions cannot scan, so the keys to delete are listed first. A write between
        // this scan and the transaction bumps the generation, which the transaction reads: with
        // `expected` that aborts; without, the write may be left over (so rotation uses `expected`).
        let mut existing: Vec<sled::IVec> = Vec::new();
        for prefix in [RECORD, BLIND, REVERSE] {
            for k in self.tree.scan_prefix([prefix]).keys() {
                existing.push(k.map_err(backend)?);
            }
        }

        let mut batch = sled::Batch::default();
        let mut written: HashSet<Vec<u8>> = HashSet::new();
        let mut owner: HashMap<[u8; 32], Uuid> = HashMap::new();
        for (patient, _, blind) in &records {
            if let Some(blind) = blind {
                owner.insert(*blind, *patient);
            }
        }
        for (patient, record, blind) in &records {
            batch.insert(record_key(*patient).as_slice(), record.as_slice());
            written.insert(record_key(*patient).to_vec());
            if let Some(blind) = blind {
                if owner.get(blind) == Some(patient) {
                    batch.insert(blind_key(blind).as_slice(), patient.as_bytes().as_slice());
                    batch.insert(reverse_key(*patient).as_slice(), blind.as_slice());
                    written.insert(blind_key(blind).to_vec());
                    written.insert(reverse_key(*patient).to_vec());
                }
            }
        }
        for k in existing {
            if !written.contains(k.as_ref()) {
                batch.remove(k);
            }
        }

        self.tree
            .transaction(|tx| {
                let current = bump(tx)?;
                if let Some(expected) = expected {
                    if current != expected {
                        return Err(ConflictableTransactionError::Abort(StoreError::WrongExpectedVersion {
                            stream: "key_table".into(),
                            expected: ExpectedVersion::Exact(expected),
                            current: Some(current),
                        }));
                    }
                }
                tx.apply_batch(&batch)?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}

/// One patient's key record and blind index, as `KeyStore::replace_all_at` takes them.
pub type KeyEntry = (Uuid, Vec<u8>, Option<[u8; 32]>);

/// Durable, deletable storage of the vault's key records and blind index: the sled `KeyTable`
/// embedded, or `PgKeyTable` beside the PostgreSQL event log, so every node shares one.
/// Semantics as documented on `KeyTable`'s methods of the same names.
#[async_trait]
pub trait KeyStore: Send + Sync + std::fmt::Debug + 'static {
    async fn get_patient(&self, patient: Uuid) -> Result<Option<Vec<u8>>, StoreError>;
    async fn put_patient(&self, patient: Uuid, record: &[u8], blind_index: Option<[u8; 32]>) -> Result<(), StoreError>;
    async fn insert_patient(
        &self,
        patient: Uuid,
        record: &[u8],
        blind_index: Option<[u8; 32]>,
    ) -> Result<bool, StoreError>;
    async fn find_blind_index(&self, blind_index: &[u8; 32]) -> Result<Option<Uuid>, StoreError>;
    async fn forget_patient(&self, patient: Uuid) -> Result<(), StoreError>;
    async fn patients(&self) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError>;
    /// One (patient, record), any: enough to check that a master key opens the table.
    async fn any_patient(&self) -> Result<Option<(Uuid, Vec<u8>)>, StoreError>;
    async fn generation(&self) -> Result<u64, StoreError>;
    /// Every (patient, record, blind index), in patient-id byte order: a copy of the table for a
    /// backup or a migration. Read `generation` before it to know which writes it includes.
    async fn entries(&self) -> Result<Vec<KeyEntry>, StoreError>;
    async fn replace_all_at(&self, expected: u64, records: Vec<KeyEntry>) -> Result<(), StoreError>;
}

#[async_trait]
impl KeyStore for KeyTable {
    async fn get_patient(&self, patient: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        KeyTable::get_patient(self, patient)
    }
    async fn put_patient(&self, patient: Uuid, record: &[u8], blind_index: Option<[u8; 32]>) -> Result<(), StoreError> {
        KeyTable::put_patient(self, patient, record, blind_index)
    }
    async fn insert_patient(
        &self,
        patient: Uuid,
        record: &[u8],
        blind_index: Option<[u8; 32]>,
    ) -> Result<bool, StoreError> {
        KeyTable::insert_patient(self, patient, record, blind_index)
    }
    async fn find_blind_index(&self, blind_index: &[u8; 32]) -> Result<Option<Uuid>, StoreError> {
        KeyTable::find_blind_index(self, blind_index)
    }
    async fn forget_patient(&self, patient: Uuid) -> Result<(), StoreError> {
        KeyTable::forget_patient(self, patient)
    }
    async fn patients(&self) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError> {
        KeyTable::patients(self)
    }
    async fn any_patient(&self) -> Result<Option<(Uuid, Vec<u8>)>, StoreError> {
        match self.tree.scan_prefix([RECORD]).next() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv.map_err(backend)?;
                Ok(Some((uuid_of(&k[1..])?, v.to_vec())))
            }
        }
    }
    async fn generation(&self) -> Result<u64, StoreError> {
        KeyTable::generation(self)
    }
    async fn entries(&self) -> Result<Vec<KeyEntry>, StoreError> {
        KeyTable::entries(self)
    }
    async fn replace_all_at(&self, expected: u64, records: Vec<KeyEntry>) -> Result<(), StoreError> {
        KeyTable::replace_all_at(self, expected, records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (tempfile::TempDir, KeyTable) {
        let dir = tempfile::tempdir().unwrap();
        let table = KeyTable::open(&dir.path().join("keys")).unwrap();
        (dir, table)
    }

    fn p(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn key_table_put_get_find_forget() {
        let (_dir, t) = table();
        assert_eq!(t.get_patient(p(1)).unwrap(), None);
        t.put_patient(p(1), b"record one", Some([1; 32])).unwrap();
        t.put_patient(p(2), b"record two", Some([2; 32])).unwrap();
        t.put_patient(p(3), b"record three", None).unwrap();

        assert_eq!(t.get_patient(p(1)).unwrap().as_deref(), Some(&b"record one"[..]));
        assert_eq!(t.find_blind_index(&[1; 32]).unwrap(), Some(p(1)));
        assert_eq!(t.find_blind_index(&[2; 32]).unwrap(), Some(p(2)));
        assert_eq!(t.find_blind_index(&[3; 32]).unwrap(), None);

        t.forget_patient(p(1)).unwrap();
        assert_eq!(t.get_patient(p(1)).unwrap(), None);
        assert_eq!(t.find_blind_index(&[1; 32]).unwrap(), None);
        assert_eq!(t.find_blind_index(&[2; 32]).unwrap(), Some(p(2)));
        t.forget_patient(p(1)).unwrap(); // idempotent
        t.forget_patient(p(9)).unwrap(); // unknown patient

        let all = t.patients().unwrap();
        assert_eq!(all, vec![(p(2), b"record two".to_vec()), (p(3), b"record three".to_vec())]);
    }

    #[test]
    fn key_table_put_replaces_the_patients_old_blind_index() {
        let (_dir, t) = table();
        t.put_patient(p(1), b"a", Some([1; 32])).unwrap();
        t.put_patient(p(1), b"b", Some([7; 32])).unwrap();
        assert_eq!(t.find_blind_index(&[1; 32]).unwrap(), None);
        assert_eq!(t.find_blind_index(&[7; 32]).unwrap(), Some(p(1)));
        t.put_patient(p(1), b"c", None).unwrap();
        assert_eq!(t.find_blind_index(&[7; 32]).unwrap(), None);
        assert_eq!(t.get_patient(p(1)).unwrap().as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn key_table_forget_leaves_an_index_taken_over_by_another_patient() {
        let (_dir, t) = table();
        t.put_patient(p(1), b"a", Some([1; 32])).unwrap();
        t.put_patient(p(2), b"b", Some([1; 32])).unwrap();
        assert_eq!(t.find_blind_index(&[1; 32]).unwrap(), Some(p(2)));
        t.forget_patient(p(1)).unwrap();
        assert_eq!(t.find_blind_index(&[1; 32]).unwrap(), Some(p(2)));
        t.forget_patient(p(2)).unwrap();
        assert_eq!(t.find_blind_index(&[1; 32]).unwrap(), None);
    }

    #[test]
    fn key_table_debug_shows_no_contents() {
        let (_dir, t) = table();
        t.put_patient(p(1), b"secret-record", Some([0xab; 32])).unwrap();
        let debug = format!("{t:?}");
        assert!(debug.starts_with("KeyTable"), "{debug}");
        assert_eq!(debug, "KeyTable { records: 1, .. }");
    }

    #[test]
    fn key_table_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let t = KeyTable::open(dir.path()).unwrap();
            t.put_patient(p(1), b"a", Some([1; 32])).unwrap();
            t.put_patient(p(2), b"b", Some([2; 32])).unwrap();
            t.forget_patient(p(2)).unwrap();
        }
        let t = KeyTable::open(dir.path()).unwrap();
        assert_eq!(t.get_patient(p(1)).unwrap().as_deref(), Some(&b"a"[..]));
        assert_eq!(t.find_blind_index(&[1; 32]).unwrap(), Some(p(1)));
        assert_eq!(t.get_patient(p(2)).unwrap(), None);
        assert_eq!(t.find_blind_index(&[2; 32]).unwrap(), None);
    }

    #[test]
    fn key_table_replace_all_replaces_records_and_index() {
        let (_dir, t) = table();
        t.put_patient(p(1), b"a", Some([1; 32])).unwrap();
        t.put_patient(p(2), b"b", Some([2; 32])).unwrap();
        t.put_patient(p(3), b"c", Some([3; 32])).unwrap();
        t.replace_all(vec![(p(1), b"A".to_vec(), Some([11; 32])), (p(2), b"B".to_vec(), None)]).unwrap();

        assert_eq!(t.patients().unwrap(), vec![(p(1), b"A".to_vec()), (p(2), b"B".to_vec())]);
        for old in [[1; 32], [2; 32], [3; 32]] {
            assert_eq!(t.find_blind_index(&old).unwrap(), None);
        }
        assert_eq!(t.find_blind_index(&[11; 32]).unwrap(), Some(p(1)));
        // The reverse entries follow: forgetting removes the new index entry.
        t.forget_patient(p(1)).unwrap();
        assert_eq!(t.find_blind_index(&[11; 32]).unwrap(), None);
    }

    #[test]
    fn key_table_replace_all_at_refuses_a_stale_generation() {
        let (_dir, t) = table();
        t.put_patient(p(1), b"a", Some([1; 32])).unwrap();
        let generation = t.generation().unwrap();
        let snapshot = t.patients().unwrap();
        t.put_patient(p(2), b"b", Some([2; 32])).unwrap(); // written after the snapshot

        let rewritten = snapshot.into_iter().map(|(id, r)| (id, [r, b"'".to_vec()].concat(), None)).collect();
        let err = t.replace_all_at(generation, rewritten).unwrap_err();
        assert!(matches!(err, StoreError::WrongExpectedVersion { .. }), "{err:?}");
        assert_eq!(t.get_patient(p(1)).unwrap().as_deref(), Some(&b"a"[..]));
        assert_eq!(t.get_patient(p(2)).unwrap().as_deref(), Some(&b"b"[..]));
        assert_eq!(t.find_blind_index(&[1; 32]).unwrap(), Some(p(1)));

        let generation = t.generation().unwrap();
        t.replace_all_at(generation, vec![(p(1), b"A".to_vec(), None)]).unwrap();
        assert_eq!(t.patients().unwrap(), vec![(p(1), b"A".to_vec())]);
        assert_ne!(t.generation().unwrap(), generation);
    }
}
