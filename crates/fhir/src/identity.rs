//! How a record system's resources become forlop ids, so that the same fact sent twice is the
//! same fact.
//!
//! A resource's **key** is, in order: for a Patient, a keyed pseudonym of its national id (never
//! the number); for a service, the identifier the care-level file maps; otherwise its first
//! identifier with a system and a value; otherwise its logical id (`Type/id`). Its forlop id is
//! the name-based UUID (v5) of that key, and each fact it carries gets an event id derived from
//! the key and the fact, so a resent resource appends nothing.
//!
//! Every other name a resource was sent under (its logical id, its other identifiers) is kept
//! in the alias index beside the log, so a later reference by any of them finds the same id.

use std::path::Path;

use uuid::Uuid;

/// forlop's namespace for name-based UUIDs (fixed forever: changing it renames every fact).
pub const NAMESPACE: Uuid = Uuid::from_u128(0x5f0e_a3c1_7d2b_4e9a_9b1c_6a4f_2d8e_0c17);

pub fn uuid_for(name: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// The name of an identifier, as keys and aliases spell it.
pub fn identifier_name(type_name: &str, system: &str, value: &str) -> String {
    format!("{type_name}|{system}|{value}")
}

/// The alias index's page cache: an import's memory must not grow with the file.
const ALIAS_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Names (logical ids, identifiers) to forlop ids, durable in its own sled database.
#[derive(Clone)]
pub struct AliasIndex {
    db: sled::Db,
}

impl std::fmt::Debug for AliasIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AliasIndex({} names)", self.db.len())
    }
}

impl AliasIndex {
    pub fn open(dir: &Path) -> Result<AliasIndex, sled::Error> {
        // sled caches up to 1 GB by default; names are small and looked up once per reference.
        Ok(AliasIndex { db: sled::Config::new().path(dir).cache_capacity(ALIAS_CACHE_BYTES).open()? })
    }

    /// The database, shared with the held resources.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn get(&self, name: &str) -> Result<Option<Uuid>, sled::Error> {
        Ok(self.db.get(name.as_bytes())?.and_then(|v| <[u8; 16]>::try_from(v.as_ref()).ok()).map(Uuid::from_bytes))
    }

    /// Records `names` for `id`. A name once given keeps its first id: a record system that
    /// reuses a logical id for another resource does not move earlier facts.
    pub fn insert<'a>(&self, named: impl IntoIterator<Item = (&'a [String], Uuid)>) -> Result<(), sled::Error> {
        // Insert-if-absent, one atomic step per name: a name another request gave first keeps its
        // id, and a resent file writes nothing.
        for (names, id) in named {
            for name in names {
                // Err(CompareAndSwapError): the name is known already, and keeps its id.
                let _ = self.db.compare_and_swap(name.as_bytes(), None::<&[u8]>, Some(id.as_bytes().as_slice()))?;
            }
        }
        Ok(())
    }

    /// Makes every insert so far durable (before the facts that rely on them are acknowledged).
    pub fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush().map(|_| ())
    }
}
