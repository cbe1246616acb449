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
//!
//! A name whose own name-based UUID *is* the resource's id, for a type whose ids forlop's state
//! can confirm (`confirmable`), is not written: the id is derived again from the name, and the
//! read model says whether it was recorded. Until its facts are recorded, such a name is held
//! in memory (`RecentNames`), so the next chunk or request already finds it. In a bulk file most
//! resources go by one such name, and the index was most of the import's mapping work.

use std::path::Path;

use uuid::Uuid;

/// forlop's namespace for name-based UUIDs (fixed forever: changing it renames every fact).
pub const NAMESPACE: Uuid = Uuid::from_u128(0x5f0e_a3c1_7d2b_4e9a_9b1c_6a4f_2d8e_0c17);

/// The name-based UUID (v5) of `name`: `Uuid::new_v5`, with a SHA-1 that uses the CPU's SHA
/// instructions where it has them (a bulk import derives several ids per resource).
pub fn uuid_for(name: &str) -> Uuid {
    v5(&[name.as_bytes()])
}

/// `uuid_for("{id}#{what}")`, the id of a fact `what` of the entity `id`, without building the
/// name: an import derives one per event.
pub fn fact_uuid(id: Uuid, what: &str) -> Uuid {
    v5(&[id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes(), b"#", what.as_bytes()])
}

/// The v5 UUID of the name made of `parts`, in forlop's namespace.
fn v5(parts: &[&[u8]]) -> Uuid {
    use sha1::Digest;
    let mut hasher = sha1::Sha1::new();
    hasher.update(NAMESPACE.as_bytes());
    for part in parts {
        hasher.update(part);
    }
    let digest: [u8; 20] = hasher.finalize().into();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// The name of an identifier, as keys and aliases spell it.
pub fn identifier_name(type_name: &str, system: &str, value: &str) -> String {
    format!("{type_name}|{system}|{value}")
}

/// Maps and sets keyed by names, with a fast hash: an import looks names up several times per
/// resource, and the names come from the importer's own records.
pub(crate) type NameMap<V> = std::collections::HashMap<String, V, foldhash::fast::RandomState>;
type NameSet = std::collections::HashSet<String, foldhash::fast::RandomState>;

/// The alias index's page cache: an import's memory must not grow with the file.
const ALIAS_CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// Names kept in `AliasIndex::read` before it starts over.
const READ_CACHE_NAMES: usize = 16 * 1024;

/// The resource type whose recorded ids confirm a derivable `name` (`Type/id`, `Type|system|value`
/// or `Service|system|value`), when forlop's state can tell. Observations and questionnaire
/// responses leave no id of their own in the read model, and an Organization's id comes from
/// its `Service|` name, so their other names are always written.
pub fn confirmable(name: &str) -> Option<&'static str> {
    let end = name.find(['/', '|'])?;
    Some(match &name[..end] {
        "Patient" => "Patient",
        "Practitioner" => "Practitioner",
        "Service" => "Organization",
        "EpisodeOfCare" => "EpisodeOfCare",
        "ServiceRequest" => "ServiceRequest",
        "Encounter" => "Encounter",
        _ => return None,
    })
}

/// Whether the id `name` gives may be a patient's or a patient fact's, and so may be forgotten:
/// not for the names of reference data (practitioners, services), which no erasure touches and
/// which a bulk import looks up for nearly every resource.
pub fn may_name_patient_data(name: &str) -> bool {
    const REFERENCE_DATA: [&str; 6] =
        ["Practitioner/", "Practitioner|", "PractitionerRole", "Organization", "HealthcareService", "Service|"];
    !REFERENCE_DATA.iter().any(|prefix| name.starts_with(prefix))
}

/// Whether `command` records the entity `id` itself (a registration, a referral received, an
/// episode started, a session, an admission or stay): once it is recorded, the read model
/// confirms a name that derives `id`.
pub fn records_entity(command: &forlop_domain::Command, id: Uuid) -> bool {
    use forlop_domain::Command::*;
    match command {
        RegisterPatient(e) => e.patient_id == id,
        RegisterTherapist(e) => e.therapist_id == id,
        RegisterService(e) => e.service_id == id,
        other => other.new_id().is_some_and(|n| n.id() == id),
    }
}

/// Names (logical ids, identifiers) to forlop ids, durable in its own sled database.
#[derive(Clone)]
pub struct AliasIndex {
    db: sled::Db,
    /// Derivable names whose facts are being recorded (see the module's documentation).
    recent: std::sync::Arc<parking_lot::Mutex<NameMap<Uuid>>>,
    /// Names read from the index lately. A written name never changes its id, so a copy is
    /// never stale; in an import the same few (practitioners, services) are read per resource.
    read: std::sync::Arc<parking_lot::RwLock<NameMap<Uuid>>>,
    /// Names looked up lately and not written. In a bulk file most references use a derivable
    /// name, which is never written, and a miss descends sled's tree each time. A lookup that
    /// misses holds the lock while it reads, and `insert` removes a name after writing it, so a
    /// name written is never found here afterwards.
    absent: std::sync::Arc<parking_lot::RwLock<NameSet>>,
}

/// Derivable names of one prepared chunk or request, known in memory until dropped, which
/// `Fhir::commit` does once the facts that confirm them are recorded (or refused).
#[derive(Debug, Default)]
pub struct RecentNames {
    index: Option<AliasIndex>,
    names: Vec<String>,
}

impl Drop for RecentNames {
    fn drop(&mut self) {
        if let Some(index) = &self.index {
            let mut recent = index.recent.lock();
            for n in &self.names {
                recent.remove(n);
            }
        }
    }
}

impl std::fmt::Debug for AliasIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AliasIndex({} names, {} recent)", self.db.len(), self.recent.lock().len())
    }
}

impl AliasIndex {
    pub fn open(dir: &Path) -> Result<AliasIndex, sled::Error> {
        // sled caches up to 1 GB by default; names are small and looked up once per reference.
        let db = sled::Config::new().path(dir).cache_capacity(ALIAS_CACHE_BYTES).open()?;
        Ok(AliasIndex { db, recent: Default::default(), read: Default::default(), absent: Default::default() })
    }

    /// The database, shared with the held resources.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The id written for `name`, or held for it while its facts are recorded. A derivable name
    /// recorded before is not here: the caller confirms it (`confirmable`).
    pub fn get(&self, name: &str) -> Result<Option<Uuid>, sled::Error> {
        if let Some(id) = self.recent.lock().get(name) {
            return Ok(Some(*id));
        }
        if let Some(id) = self.read.read().get(name) {
            return Ok(Some(*id));
        }
        if self.absent.read().contains(name) {
            return Ok(None);
        }
        let mut absent = self.absent.write();
        let found =
            self.db.get(name.as_bytes())?.and_then(|v| <[u8; 16]>::try_from(v.as_ref()).ok()).map(Uuid::from_bytes);
        if found.is_none() {
            if absent.len() >= READ_CACHE_NAMES {
                absent.clear();
            }
            absent.insert(name.to_owned());
            return Ok(None);
        }
        drop(absent);
        if let Some(id) = found {
            let mut read = self.read.write();
            if read.len() >= READ_CACHE_NAMES {
                read.clear();
            }
            read.insert(name.to_owned(), id);
        }
        Ok(found)
    }

    /// `get`, read from the index itself rather than from what was read lately: for a name whose
    /// remembered id is a forgotten one, which `insert` may have given to someone new meanwhile
    /// (a read racing that insert can leave the old id remembered).
    pub fn get_again(&self, name: &str) -> Result<Option<Uuid>, sled::Error> {
        self.read.write().remove(name);
        self.get(name)
    }

    /// Records `names` for `id`. A name once given keeps its first id: a record system that
    /// reuses a logical id for another resource does not move earlier facts. The exception is a
    /// name whose id is `forgotten` (a forgotten patient's, or a fact of theirs): it names no one
    /// any more, and is given to `id`, the person it is sent for now. With `recorded`
    /// (the resource's facts record the entity `id`), derivable names are held in the returned
    /// `RecentNames` instead, until it is dropped. `derived_from`, when given, is the name `id`
    /// was derived from (no other name derives it), which spares deriving each name again.
    pub fn insert<'a>(
        &self,
        named: impl IntoIterator<Item = (&'a [String], Option<usize>, Uuid, bool)>,
        forgotten: &dyn Fn(Uuid) -> bool,
    ) -> Result<RecentNames, sled::Error> {
        let mut held = RecentNames { index: Some(self.clone()), names: Vec::new() };
        for (names, derived_from, id, recorded) in named {
            for name in names {
                // By name, not position: a fullUrl may repeat the logical name.
                let derives = match derived_from {
                    Some(from) => names[from] == *name,
                    None => uuid_for(name) == id,
                };
                if recorded && derives && confirmable(name).is_some() {
                    let mut recent = self.recent.lock();
                    if !recent.contains_key(name) {
                        recent.insert(name.clone(), id);
                        held.names.push(name.clone());
                    }
                    continue;
                }
                // Insert-if-absent, one atomic step per name: a name another request gave first
                // keeps its id (Err(CompareAndSwapError)), and a resent file writes nothing.
                let mut current = None::<sled::IVec>;
                while let Err(refused) =
                    self.db.compare_and_swap(name.as_bytes(), current.as_deref(), Some(id.as_bytes().as_slice()))?
                {
                    // Taken over only from a forgotten id, and atomically: if another request
                    // moved it meanwhile, look again.
                    let Some(held) = refused.current else {
                        current = None;
                        continue;
                    };
                    match <[u8; 16]>::try_from(held.as_ref()).map(Uuid::from_bytes) {
                        Ok(old) if old != id && forgotten(old) => current = Some(held),
                        _ => break,
                    }
                }
                if current.is_some() {
                    self.read.write().remove(name.as_str());
                }
                self.absent.write().remove(name.as_str());
            }
        }
        Ok(held)
    }

    /// Makes every insert so far durable (before the facts that rely on them are acknowledged).
    pub fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_for_is_the_standard_name_based_uuid() {
        for name in ["", "Patient/p0", "Practitioner|urn:oid:2.16.578.1.12.4.1.4.4|9144889", &"x".repeat(200)] {
            assert_eq!(uuid_for(name), Uuid::new_v5(&NAMESPACE, name.as_bytes()), "{name}");
        }
        assert_eq!(uuid_for("Patient/p0").get_version_num(), 5);
        let id = uuid_for("Encounter/e-1");
        assert_eq!(fact_uuid(id, "session"), uuid_for(&format!("{id}#session")));
    }

    #[test]
    fn a_name_that_derives_its_recorded_id_is_held_in_memory_and_the_others_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let index = AliasIndex::open(dir.path()).unwrap();
        let (own, by_identifier) = ("Encounter/e-1".to_owned(), "Encounter|urn:example:visit|77".to_owned());
        let id = uuid_for(&own);
        let observation = "Observation/o-1".to_owned();
        let names = [own.clone(), by_identifier.clone()];
        let observations = [observation.clone()];
        let held = index
            .insert([(&names[..], None, id, true), (&observations[..], Some(0), uuid_for(&observation), true)], &|_| {
                false
            })
            .unwrap();
        // Derivable and confirmable: found while its facts are recorded, never written.
        assert_eq!(index.get(&own).unwrap(), Some(id));
        assert!(index.db.get(own.as_bytes()).unwrap().is_none());
        // Another name of the same resource, and an Observation's (no id in the read model): written.
        assert_eq!(index.db.get(by_identifier.as_bytes()).unwrap().as_deref(), Some(id.as_bytes().as_slice()));
        assert!(index.db.get(observation.as_bytes()).unwrap().is_some());
        drop(held);
        // From now on the read model confirms it (`Lookup::alias`); the index no longer answers.
        assert_eq!(index.get(&own).unwrap(), None);
        assert_eq!(index.get(&by_identifier).unwrap(), Some(id));
    }

    #[test]
    fn a_name_repeated_as_the_full_url_is_held_like_the_name_the_id_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let index = AliasIndex::open(dir.path()).unwrap();
        let own = "Patient/p-1".to_owned();
        let names = [own.clone(), own.clone()];
        let _held = index.insert([(&names[..], Some(1), uuid_for(&own), true)], &|_| false).unwrap();
        assert!(index.db.get(own.as_bytes()).unwrap().is_none(), "neither copy is written");
        assert_eq!(index.get(&own).unwrap(), Some(uuid_for(&own)));
    }

    #[test]
    fn a_derivable_name_is_written_when_its_facts_do_not_record_that_id() {
        let dir = tempfile::tempdir().unwrap();
        let index = AliasIndex::open(dir.path()).unwrap();
        // A planned EpisodeOfCare records nothing yet: the read model could not confirm it.
        let name = "EpisodeOfCare/planned".to_owned();
        let held = index.insert([(&[name.clone()][..], Some(0), uuid_for(&name), false)], &|_| false).unwrap();
        drop(held);
        assert_eq!(index.get(&name).unwrap(), Some(uuid_for(&name)));
    }

    #[test]
    fn a_name_looked_up_before_it_was_written_is_found_once_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let index = AliasIndex::open(dir.path()).unwrap();
        // A Practitioner referred to by its HPR number before anyone sent it: a miss, remembered.
        let name = "Practitioner|urn:oid:2.16.578.1.12.4.1.4.4|9144889".to_owned();
        let id = uuid_for("Practitioner/pr-1");
        assert_eq!(index.get(&name).unwrap(), None);
        assert_eq!(index.get(&name).unwrap(), None);
        // Then the Practitioner arrives under its logical id with that identifier: written, and
        // the next lookup finds it, not the remembered miss.
        let names = ["Practitioner/pr-1".to_owned(), name.clone()];
        drop(index.insert([(&names[..], Some(0), id, true)], &|_| false).unwrap());
        assert_eq!(index.get(&name).unwrap(), Some(id));
        // Its clones (one per request) share what it remembers.
        assert_eq!(index.clone().get(&name).unwrap(), Some(id));
    }

    #[test]
    fn a_name_of_a_forgotten_id_is_given_to_its_new_bearer_and_no_other_name_moves() {
        let dir = tempfile::tempdir().unwrap();
        let index = AliasIndex::open(dir.path()).unwrap();
        let (mrn, other) = ("Patient|urn:example:mrn|42".to_owned(), "Patient|urn:example:mrn|43".to_owned());
        let (old, live, new) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        drop(
            index
                .insert([(&[mrn.clone()][..], None, old, true), (&[other.clone()][..], None, live, true)], &|_| false)
                .unwrap(),
        );
        assert_eq!(index.get(&mrn).unwrap(), Some(old), "read once, so the cached copy must go too");
        // `old` is forgotten: its name is given to `new`; `live`'s keeps its first id.
        let forgotten = |id: Uuid| id == old;
        drop(index.insert([(&[mrn.clone(), other.clone()][..], None, new, true)], &forgotten).unwrap());
        assert_eq!(index.get(&mrn).unwrap(), Some(new));
        assert_eq!(index.get(&other).unwrap(), Some(live));
        // Sent again, nothing moves.
        drop(index.insert([(&[mrn.clone()][..], None, Uuid::from_u128(4), true)], &forgotten).unwrap());
        assert_eq!(index.get(&mrn).unwrap(), Some(new));
    }
}
