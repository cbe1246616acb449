//! Protected national ids by envelope encryption, so that a patient's identity can be destroyed
//! (crypto-shredding) although the events that carry it are immutable.
//!
//! - Each patient has a random 32-byte **data key**. The event log holds the national id only as a
//!   [`Sealed`] value: XChaCha20-Poly1305 under the data key, with a random 24-byte nonce and the
//!   patient id as associated data (so a sealed value cannot be replayed onto another patient).
//! - The data key is stored in the key table ([`forlop_store::key_table::KeyStore`]) only
//!   **wrapped** (sealed) under a key derived from the [`MasterKey`], again bound to the patient id.
//!   The master key is never stored in the table.
//! - [`Vault::forget`] deletes the key record: every sealed copy of the id in the log becomes
//!   undecryptable. sled may keep old record bytes in its segments for a while; they are useless
//!   without the master key, and rotating the master key ([`rotate`]) and destroying the old one
//!   makes them useless for good.
//! - The **blind index** (HMAC-SHA-256 of the id under a key derived from the master key) lets
//!   [`Vault::find`] look a patient up by national id without storing the id in clear. National ids
//!   have little entropy, so the blind index is only as secret as the master key.
//! - The key record also holds the id sealed under the data key, so [`rotate`] can recompute the
//!   blind index under a new master key without reading the event log.
//!
//! Subkeys come from the master key by HKDF-SHA-256 (no salt): `forlop key wrap v1` for wrapping
//! data keys, `forlop blind index v1` for the blind index, `forlop cell key v1` for the record
//! keys of the cell key method that perturbs analysts' aggregates. All key material is zeroized on drop.
//! No error message, `Debug` output or log line contains key material or a national id.
//!
//! Key record layout (version 1): `0x01 ‖ wrapped data key (24-byte nonce ‖ 32-byte key ‖ 16-byte
//! tag) ‖ sealed national id (24-byte nonce ‖ 11 bytes ‖ 16-byte tag)`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use forlop_domain::national_id::{NationalId, NationalIdError};
use forlop_store::key_table::KeyStore;
use forlop_store::StoreError;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;
const RECORD_V1: u8 = 1;

const INFO_WRAP: &[u8] = b"forlop key wrap v1";
const INFO_BLIND: &[u8] = b"forlop blind index v1";
const INFO_CELL_KEY: &[u8] = b"forlop cell key v1";
/// Associated-data labels, so a wrapped key and a sealed id can never stand in for each other.
const AD_DATA_KEY: &[u8] = b"forlop data key v1:";
const AD_NATIONAL_ID: &[u8] = b"forlop national id v1:";

/// Why a vault operation failed. Messages never include key material or national ids.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("master key is not valid base64")]
    MasterKeyEncoding,
    #[error("master key must be exactly 32 bytes")]
    MasterKeyLength,
    #[error("cannot read the master key file")]
    MasterKeyFile(#[source] std::io::Error),
    /// The master key is wrong, or the key record was altered.
    #[error("a data key does not unwrap under this master key")]
    Unwrap,
    /// The key table's keys were wrapped under another master key (an old one, after rotation).
    #[error("this master key does not open the key table (is it the key from before a rotate-key?)")]
    WrongMasterKey,
    /// The sealed value belongs to another patient or key, or was altered.
    #[error("a sealed value does not open under the patient's data key")]
    Open,
    #[error("malformed key record")]
    MalformedRecord,
    #[error("malformed sealed value")]
    MalformedSealed,
    #[error("a sealed national id is not valid: {0}")]
    BadNationalId(#[from] NationalIdError),
    #[error("the national id is already held by another patient")]
    NationalIdInUse,
    /// The key table changed while `rotate` was working; nothing was changed, try again.
    #[error("the key table changed during key rotation")]
    ConcurrentChange,
    #[error("key table: {0}")]
    Store(#[from] StoreError),
    #[error("encryption failed")]
    Encrypt,
}

type DataKey = Zeroizing<[u8; KEY_LEN]>;

fn random_key() -> DataKey {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(key.as_mut());
    key
}

fn associated_data(label: &[u8], patient: Uuid) -> Vec<u8> {
    [label, patient.as_bytes().as_slice()].concat()
}

/// `nonce ‖ ciphertext ‖ tag` under a fresh random nonce.
fn seal_bytes(key: &[u8; KEY_LEN], plaintext: &[u8], ad: &[u8]) -> Result<Vec<u8>, VaultError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let ciphertext = cipher.encrypt(&nonce, Payload { msg: plaintext, aad: ad }).map_err(|_| VaultError::Encrypt)?;
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens `nonce ‖ ciphertext ‖ tag`; `None` when it does not authenticate.
fn open_bytes(key: &[u8; KEY_LEN], sealed: &[u8], ad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: ad }).ok().map(Zeroizing::new)
}

/// The master key: 32 random bytes, kept outside the key table (a file or a secret store).
/// Zeroized on drop; `Debug` is redacted.
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl MasterKey {
    /// A fresh random key (from the operating system's CSPRNG).
    pub fn generate() -> MasterKey {
        MasterKey(random_key())
    }

    /// Parses standard base64 (as `openssl rand -base64 32` prints), ignoring surrounding
    /// whitespace; it must decode to exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<MasterKey, VaultError> {
        let bytes = Zeroizing::new(BASE64.decode(text.trim()).map_err(|_| VaultError::MasterKeyEncoding)?);
        if bytes.len() != KEY_LEN {
            return Err(VaultError::MasterKeyLength);
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&bytes);
        Ok(MasterKey(key))
    }

    /// Reads a file holding the key in base64.
    pub fn load(path: &Path) -> Result<MasterKey, VaultError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(VaultError::MasterKeyFile)?);
        MasterKey::from_base64(&text)
    }

    /// The key in standard base64 with padding, for writing a key file. Handle with care.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.as_ref())
    }

    /// The blind index of a national id: HMAC-SHA-256 of its digits under a key derived from the
    /// master key with HKDF-SHA-256 (info `forlop blind index v1`).
    pub fn blind_index(&self, id: &NationalId) -> [u8; 32] {
        let key = self.subkey(INFO_BLIND);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()).expect("HMAC takes keys of any length");
        mac.update(id.as_str().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The keyer of record keys for the cell key method: see `RecordKeyer`.
    pub fn record_keyer(&self) -> RecordKeyer {
        let key = self.subkey(INFO_CELL_KEY);
        RecordKeyer(<Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()).expect("HMAC takes keys of any length"))
    }

    fn subkey(&self, info: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        Hkdf::<Sha256>::new(None, self.0.as_ref()).expand(info, out.as_mut()).expect("32 bytes is a valid HKDF length");
        out
    }

    /// Checks that this master key opens one stored key record (the patient's): `WrongMasterKey`
    /// if it does not. Lets a copy of the key table (a backup) be checked before it is restored.
    pub fn check_record(&self, patient: Uuid, record: &[u8]) -> Result<(), VaultError> {
        let record = KeyRecord::decode(record)?;
        match self.unwrap_key(patient, &record.wrapped_key) {
            Ok(_) => Ok(()),
            Err(VaultError::Unwrap) => Err(VaultError::WrongMasterKey),
            Err(e) => Err(e),
        }
    }

    fn wrap(&self, patient: Uuid, data_key: &[u8; KEY_LEN]) -> Result<Vec<u8>, VaultError> {
        seal_bytes(&self.subkey(INFO_WRAP), data_key, &associated_data(AD_DATA_KEY, patient))
    }

    fn unwrap_key(&self, patient: Uuid, wrapped: &[u8]) -> Result<DataKey, VaultError> {
        let plain = open_bytes(&self.subkey(INFO_WRAP), wrapped, &associated_data(AD_DATA_KEY, patient))
            .ok_or(VaultError::Unwrap)?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if plain.len() != KEY_LEN {
            return Err(VaultError::MalformedRecord);
        }
        key.copy_from_slice(&plain);
        Ok(key)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Gives each record (an episode, patient or referral, by id) its secret record key for the cell
/// key method: the first 8 bytes of HMAC-SHA-256 of the id under a key derived from the master
/// key. Every node sharing the master key gives the same keys, so the same query gets the same
/// perturbed answer everywhere; without the master key the keys cannot be computed.
#[derive(Clone)]
pub struct RecordKeyer(Hmac<Sha256>);

impl RecordKeyer {
    pub fn key(&self, id: Uuid) -> u64 {
        let mut mac = self.0.clone();
        mac.update(id.as_bytes());
        let out = mac.finalize().into_bytes();
        u64::from_le_bytes(out[..8].try_into().expect("a SHA-256 MAC has 32 bytes"))
    }
}

impl fmt::Debug for RecordKeyer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecordKeyer(<redacted>)")
    }
}

/// A sealed value: `nonce ‖ ciphertext ‖ tag`. Serialised with serde as one base64 string.
/// `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(Vec<u8>);

impl Sealed {
    /// The raw bytes (`nonce ‖ ciphertext ‖ tag`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Takes raw bytes as produced by `as_bytes`; they must at least hold a nonce and a tag.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Sealed, VaultError> {
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::MalformedSealed);
        }
        Ok(Sealed(bytes))
    }

    /// Base64 (standard, padded), the serde form.
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.0)
    }

    pub fn from_base64(text: &str) -> Result<Sealed, VaultError> {
        Sealed::from_bytes(BASE64.decode(text.trim()).map_err(|_| VaultError::MalformedSealed)?)
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

impl serde::Serialize for Sealed {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> serde::Deserialize<'de> for Sealed {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Sealed, D::Error> {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
        Sealed::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// A parsed key record (version 1).
struct KeyRecord {
    wrapped_key: Vec<u8>,
    sealed_id: Vec<u8>,
}

impl KeyRecord {
    fn encode(&self) -> Vec<u8> {
        [&[RECORD_V1][..], &self.wrapped_key, &self.sealed_id].concat()
    }

    fn decode(bytes: &[u8]) -> Result<KeyRecord, VaultError> {
        match bytes.split_first() {
            Some((&RECORD_V1, rest)) if rest.len() >= WRAPPED_LEN + NONCE_LEN + TAG_LEN => {
                let (wrapped, sealed) = rest.split_at(WRAPPED_LEN);
                Ok(KeyRecord { wrapped_key: wrapped.to_vec(), sealed_id: sealed.to_vec() })
            }
            _ => Err(VaultError::MalformedRecord),
        }
    }
}

fn seal_id(data_key: &[u8; KEY_LEN], patient: Uuid, id: &NationalId) -> Result<Vec<u8>, VaultError> {
    seal_bytes(data_key, id.as_str().as_bytes(), &associated_data(AD_NATIONAL_ID, patient))
}

fn open_id(data_key: &[u8; KEY_LEN], patient: Uuid, sealed: &[u8]) -> Result<NationalId, VaultError> {
    let plain = open_bytes(data_key, sealed, &associated_data(AD_NATIONAL_ID, patient)).ok_or(VaultError::Open)?;
    let text = std::str::from_utf8(&plain).map_err(|_| VaultError::MalformedSealed)?;
    Ok(NationalId::parse(text)?)
}

/// Seals and reveals national ids; forgets patients by destroying their data keys.
///
/// Clones share the master key, the key table and a write lock. Vaults in several processes may
/// share one key table (PostgreSQL): a patient's first data key is only ever inserted where none
/// exists (`KeyStore::insert_patient`), so two of them cannot both create one.
#[derive(Clone)]
pub struct Vault {
    master: Arc<MasterKey>,
    table: Arc<dyn KeyStore>,
    writes: Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault").field("master", &self.master).field("table", &self.table).finish()
    }
}

impl Vault {
    pub fn new(master: MasterKey, table: Arc<dyn KeyStore>) -> Vault {
        Vault { master: Arc::new(master), table, writes: Arc::new(tokio::sync::Mutex::new(())) }
    }

    /// The keyed blind index of `id` (HMAC-SHA-256 under a key derived from the master key): a
    /// stable pseudonym that reveals nothing about the number without the master key.
    pub fn blind_index(&self, id: &NationalId) -> [u8; 32] {
        self.master.blind_index(id)
    }

    /// The keyer of record keys for the cell key method.
    pub fn record_keyer(&self) -> RecordKeyer {
        self.master.record_keyer()
    }

    /// Creates the patient's data key (or reuses the existing one), wraps it under the master key,
    /// stores the key record and the blind index (durable), and returns the national id sealed
    /// under the data key, to be stored in the event. Protecting a new id for the same patient
    /// replaces the id in the key record and the blind index.
    ///
    /// Fails with `NationalIdInUse` if another patient with a live key holds the same id.
    pub async fn protect(&self, patient: Uuid, id: &NationalId) -> Result<Sealed, VaultError> {
        let _guard = self.writes.lock().await;
        let blind = self.master.blind_index(id);
        if let Some(holder) = self.find_by_blind(&blind).await? {
            if holder != patient {
                return Err(VaultError::NationalIdInUse);
            }
        }
        // A patient's first data key is created only where none exists yet: if another node
        // (another process on the same key table) creates it first, use theirs.
        loop {
            let (data_key, wrapped_key, existing) = match self.table.get_patient(patient).await? {
                Some(bytes) => {
                    let record = KeyRecord::decode(&bytes)?;
                    (self.master.unwrap_key(patient, &record.wrapped_key)?, record.wrapped_key, true)
                }
                None => {
                    let key = random_key();
                    let wrapped = self.master.wrap(patient, &key)?;
                    (key, wrapped, false)
                }
            };
            let record = KeyRecord { wrapped_key, sealed_id: seal_id(&data_key, patient, id)? }.encode();
            if existing {
                self.table.put_patient(patient, &record, Some(blind)).await?;
            } else if !self.table.insert_patient(patient, &record, Some(blind)).await? {
                continue;
            }
            return Ok(Sealed(seal_id(&data_key, patient, id)?));
        }
    }

    /// Opens a sealed national id; `Ok(None)` when the patient's key has been destroyed.
    pub async fn reveal(&self, patient: Uuid, sealed: &Sealed) -> Result<Option<NationalId>, VaultError> {
        let Some(data_key) = self.data_key(patient).await? else { return Ok(None) };
        open_id(&data_key, patient, &sealed.0).map(Some)
    }

    /// The patient holding this national id, via the blind index; `None` if unknown or forgotten.
    pub async fn find(&self, id: &NationalId) -> Result<Option<Uuid>, VaultError> {
        self.find_by_blind(&self.master.blind_index(id)).await
    }

    /// Destroys the patient's data key and blind-index entries (crypto-shredding), durably.
    /// Idempotent.
    pub async fn forget(&self, patient: Uuid) -> Result<(), VaultError> {
        let _guard = self.writes.lock().await;
        self.table.forget_patient(patient).await?;
        Ok(())
    }

    /// Checks that the master key opens the key table: that it unwraps a stored data key. An
    /// empty table opens under any key. `WrongMasterKey` otherwise, so that a server started with
    /// an old key (after `rotate-key`) refuses to start instead of answering every national-id
    /// lookup with nothing.
    pub async fn check_master_key(&self) -> Result<(), VaultError> {
        let Some((patient, bytes)) = self.table.any_patient().await? else { return Ok(()) };
        self.master.check_record(patient, &bytes)
    }

    /// The key table itself, for a backup to copy (the records in it are wrapped keys only).
    pub fn key_table(&self) -> Arc<dyn KeyStore> {
        self.table.clone()
    }

    /// True when the patient has a live data key.
    pub async fn has_key(&self, patient: Uuid) -> Result<bool, VaultError> {
        Ok(self.table.get_patient(patient).await?.is_some())
    }

    async fn data_key(&self, patient: Uuid) -> Result<Option<DataKey>, VaultError> {
        match self.table.get_patient(patient).await? {
            None => Ok(None),
            Some(bytes) => {
                let record = KeyRecord::decode(&bytes)?;
                Ok(Some(self.master.unwrap_key(patient, &record.wrapped_key)?))
            }
        }
    }

    /// An index entry whose patient has no key record is treated as not found.
    async fn find_by_blind(&self, blind: &[u8; 32]) -> Result<Option<Uuid>, VaultError> {
        match self.table.find_blind_index(blind).await? {
            Some(patient) if self.has_key(patient).await? => Ok(Some(patient)),
            _ => Ok(None),
        }
    }
}

/// Rewraps every data key from `old` to `new` and recomputes the blind index under `new`, in one
/// atomic replacement of the key table. The key records hold the national id sealed under the data
/// key, so rotation does not need the event log; data keys (and so every sealed value in the log)
/// stay the same. Fails without changing anything if any record does not open under `old`, or if
/// the table is written meanwhile (`ConcurrentChange`). Returns the number of keys rewrapped.
///
/// Run it while no `Vault` with the old key is writing to the table (for example before the
/// service starts), then use `new` from then on and destroy `old`.
pub async fn rotate(table: &dyn KeyStore, old: &MasterKey, new: &MasterKey) -> Result<usize, VaultError> {
    let generation = table.generation().await?;
    let mut replaced = Vec::new();
    for (patient, bytes) in table.patients().await? {
        let record = KeyRecord::decode(&bytes)?;
        let data_key = old.unwrap_key(patient, &record.wrapped_key)?;
        let id = open_id(&data_key, patient, &record.sealed_id)?;
        let rewrapped = KeyRecord { wrapped_key: new.wrap(patient, &data_key)?, sealed_id: record.sealed_id };
        replaced.push((patient, rewrapped.encode(), Some(new.blind_index(&id))));
    }
    let count = replaced.len();
    match table.replace_all_at(generation, replaced).await {
        Ok(()) => Ok(count),
        Err(StoreError::WrongExpectedVersion { .. }) => Err(VaultError::ConcurrentChange),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
