//! Vault tests. National ids: the worked example from the domain notes and synthetic test numbers
//! (month + 80), which belong to no one.

use std::path::Path;

use forlop_store::key_table::KeyTable;

use super::*;

const WORKED: &str = "31129956715";
const SYNTHETIC: &str = "31929980150";
const SYNTHETIC_D: &str = "71929980144";

fn nid(s: &str) -> NationalId {
    NationalId::parse(s).unwrap()
}

fn patient(n: u128) -> Uuid {
    Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0000 + n)
}

fn setup() -> (tempfile::TempDir, KeyTable, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let table = KeyTable::open(dir.path()).unwrap();
    let vault = Vault::new(MasterKey::generate(), Arc::new(table.clone()));
    (dir, table, vault)
}

/// Every file under `dir`, as bytes.
fn all_bytes(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.push(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_no_digits(dir: &Path, id: &str) {
    let files = all_bytes(dir);
    assert!(!files.is_empty());
    for bytes in files {
        assert!(!contains(&bytes, id.as_bytes()), "a key table file holds the national id in clear");
    }
}

#[tokio::test]
async fn protect_then_reveal_round_trips() {
    let (_dir, _table, vault) = setup();
    let sealed = vault.protect(patient(1), &nid(WORKED)).await.unwrap();
    assert!(vault.has_key(patient(1)).await.unwrap());
    assert_eq!(vault.reveal(patient(1), &sealed).await.unwrap(), Some(nid(WORKED)));
    // Sealing is randomised: a second protect gives other bytes, and both still open.
    let again = vault.protect(patient(1), &nid(WORKED)).await.unwrap();
    assert_ne!(again, sealed);
    assert_eq!(vault.reveal(patient(1), &sealed).await.unwrap(), Some(nid(WORKED)));
    assert_eq!(vault.reveal(patient(1), &again).await.unwrap(), Some(nid(WORKED)));
}

#[tokio::test]
async fn find_by_national_id_and_no_confusion_between_patients() {
    let (_dir, _table, vault) = setup();
    let a = vault.protect(patient(1), &nid(WORKED)).await.unwrap();
    let b = vault.protect(patient(2), &nid(SYNTHETIC)).await.unwrap();
    assert_eq!(vault.find(&nid(WORKED)).await.unwrap(), Some(patient(1)));
    assert_eq!(vault.find(&nid(SYNTHETIC)).await.unwrap(), Some(patient(2)));
    assert_eq!(vault.find(&nid(SYNTHETIC_D)).await.unwrap(), None);
    assert_eq!(vault.reveal(patient(2), &b).await.unwrap(), Some(nid(SYNTHETIC)));
    // A sealed value is bound to its patient: it does not open as another patient's.
    assert!(matches!(vault.reveal(patient(2), &a).await, Err(VaultError::Open)));
    assert_eq!(vault.reveal(patient(3), &a).await.unwrap(), None); // no key at all
}

#[tokio::test]
async fn an_id_held_by_another_patient_is_refused_until_forgotten() {
    let (_dir, _table, vault) = setup();
    vault.protect(patient(1), &nid(WORKED)).await.unwrap();
    assert!(matches!(vault.protect(patient(2), &nid(WORKED)).await, Err(VaultError::NationalIdInUse)));
    assert!(!vault.has_key(patient(2)).await.unwrap());
    vault.forget(patient(1)).await.unwrap();
    vault.protect(patient(2), &nid(WORKED)).await.unwrap();
    assert_eq!(vault.find(&nid(WORKED)).await.unwrap(), Some(patient(2)));
}

#[tokio::test]
async fn a_patients_new_id_replaces_the_old_in_the_index() {
    let (_dir, _table, vault) = setup();
    let old = vault.protect(patient(1), &nid(SYNTHETIC_D)).await.unwrap();
    let new = vault.protect(patient(1), &nid(SYNTHETIC)).await.unwrap();
    assert_eq!(vault.find(&nid(SYNTHETIC_D)).await.unwrap(), None);
    assert_eq!(vault.find(&nid(SYNTHETIC)).await.unwrap(), Some(patient(1)));
    // Same data key: both sealed values still open.
    assert_eq!(vault.reveal(patient(1), &old).await.unwrap(), Some(nid(SYNTHETIC_D)));
    assert_eq!(vault.reveal(patient(1), &new).await.unwrap(), Some(nid(SYNTHETIC)));
}

#[tokio::test]
async fn forget_shreds_the_id_and_leaves_no_clear_digits() {
    let (dir, _table, vault) = setup();
    let sealed = vault.protect(patient(1), &nid(WORKED)).await.unwrap();
    let other = vault.protect(patient(2), &nid(SYNTHETIC)).await.unwrap();

    // The event side never holds the digits, neither as bytes nor serialised.
    assert!(!contains(sealed.as_bytes(), WORKED.as_bytes()));
    let json = serde_json::to_string(&sealed).unwrap();
    assert!(!json.contains(WORKED));
    assert_no_digits(dir.path(), WORKED);

    vault.forget(patient(1)).await.unwrap();
    assert!(!vault.has_key(patient(1)).await.unwrap());
    assert_eq!(vault.reveal(patient(1), &sealed).await.unwrap(), None);
    assert_eq!(vault.find(&nid(WORKED)).await.unwrap(), None);
    vault.forget(patient(1)).await.unwrap(); // idempotent
    assert_no_digits(dir.path(), WORKED);

    // The other patient is untouched.
    assert_eq!(vault.reveal(patient(2), &other).await.unwrap(), Some(nid(SYNTHETIC)));
    assert_eq!(vault.find(&nid(SYNTHETIC)).await.unwrap(), Some(patient(2)));
}

#[tokio::test]
async fn forget_is_durable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    let key_text = master.to_base64();
    let sealed = {
        let vault = Vault::new(master, Arc::new(KeyTable::open(dir.path()).unwrap()));
        let sealed = vault.protect(patient(1), &nid(WORKED)).await.unwrap();
        vault.protect(patient(2), &nid(SYNTHETIC)).await.unwrap();
        vault.forget(patient(2)).await.unwrap();
        sealed
    };
    let vault = Vault::new(MasterKey::from_base64(&key_text).unwrap(), Arc::new(KeyTable::open(dir.path()).unwrap()));
    assert_eq!(vault.reveal(patient(1), &sealed).await.unwrap(), Some(nid(WORKED)));
    assert_eq!(vault.find(&nid(SYNTHETIC)).await.unwrap(), None);
    assert!(!vault.has_key(patient(2)).await.unwrap());
}

#[tokio::test]
async fn a_wrong_master_key_fails_to_unwrap() {
    let (_dir, table, vault) = setup();
    let sealed = vault.protect(patient(1), &nid(WORKED)).await.unwrap();
    let wrong = Vault::new(MasterKey::generate(), Arc::new(table));
    assert!(matches!(wrong.reveal(patient(1), &sealed).await, Err(VaultError::Unwrap)));
    assert!(matches!(wrong.protect(patient(1), &nid(WORKED)).await, Err(VaultError::Unwrap)));
    // The blind index is keyed too: the wrong key finds nothing.
    assert_eq!(wrong.find(&nid(WORKED)).await.unwrap(), None);
}

#[tokio::test]
async fn rotate_rewraps_keys_and_the_blind_index() {
    let (dir, table, _) = setup();
    let old_text = MasterKey::generate().to_base64();
    let old = Vault::new(MasterKey::from_base64(&old_text).unwrap(), Arc::new(table.clone()));
    let a = old.protect(patient(1), &nid(WORKED)).await.unwrap();
    let b = old.protect(patient(2), &nid(SYNTHETIC)).await.unwrap();
    old.protect(patient(3), &nid(SYNTHETIC_D)).await.unwrap();
    old.forget(patient(3)).await.unwrap();

    let new_key = MasterKey::generate();
    let new_text = new_key.to_base64();
    let n = rotate(&table, &MasterKey::from_base64(&old_text).unwrap(), &new_key).await.unwrap();
    assert_eq!(n, 2);

    assert!(matches!(old.reveal(patient(1), &a).await, Err(VaultError::Unwrap)));
    assert_eq!(old.find(&nid(WORKED)).await.unwrap(), None);

    let new = Vault::new(MasterKey::from_base64(&new_text).unwrap(), Arc::new(table.clone()));
    assert_eq!(new.reveal(patient(1), &a).await.unwrap(), Some(nid(WORKED)));
    assert_eq!(new.reveal(patient(2), &b).await.unwrap(), Some(nid(SYNTHETIC)));
    assert_eq!(new.find(&nid(WORKED)).await.unwrap(), Some(patient(1)));
    assert_eq!(new.find(&nid(SYNTHETIC)).await.unwrap(), Some(patient(2)));
    assert_eq!(new.find(&nid(SYNTHETIC_D)).await.unwrap(), None);
    // Forgetting after rotation removes the new index entry.
    new.forget(patient(1)).await.unwrap();
    assert_eq!(new.find(&nid(WORKED)).await.unwrap(), None);
    assert_eq!(new.reveal(patient(1), &a).await.unwrap(), None);
    assert_no_digits(dir.path(), WORKED);
}

#[tokio::test]
async fn rotate_with_the_wrong_old_key_changes_nothing() {
    let (_dir, table, vault) = setup();
    let sealed = vault.protect(patient(1), &nid(WORKED)).await.unwrap();
    vault.protect(patient(2), &nid(SYNTHETIC)).await.unwrap();
    let before = table.patients().unwrap();

    let err = rotate(&table, &MasterKey::generate(), &MasterKey::generate()).await.unwrap_err();
    assert!(matches!(err, VaultError::Unwrap), "{err:?}");
    assert_eq!(table.patients().unwrap(), before);
    assert_eq!(vault.reveal(patient(1), &sealed).await.unwrap(), Some(nid(WORKED)));
    assert_eq!(vault.find(&nid(SYNTHETIC)).await.unwrap(), Some(patient(2)));
}

#[tokio::test]
async fn rotate_of_an_empty_table_is_zero() {
    let (_dir, table, _vault) = setup();
    assert_eq!(rotate(&table, &MasterKey::generate(), &MasterKey::generate()).await.unwrap(), 0);
}

#[tokio::test]
async fn debug_leaks_nothing() {
    let (_dir, _table, vault) = setup();
    let key = MasterKey::generate();
    let text = key.to_base64();
    assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
    let sealed = vault.protect(patient(1), &nid(WORKED)).await.unwrap();
    assert_eq!(format!("{sealed:?}"), format!("Sealed({} bytes)", sealed.as_bytes().len()));
    let debug = format!("{vault:?}");
    assert!(debug.contains("MasterKey(<redacted>)"), "{debug}");
    assert!(!debug.contains(&text) && !debug.contains(WORKED) && debug.len() < 200, "{debug}");
    for err in [VaultError::Unwrap, VaultError::Open, VaultError::MasterKeyLength] {
        assert!(!err.to_string().contains(WORKED));
    }
}

#[tokio::test]
async fn master_key_base64() {
    use base64::Engine as _;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
    assert!(matches!(MasterKey::from_base64(&b64(31)), Err(VaultError::MasterKeyLength)));
    assert!(matches!(MasterKey::from_base64(&b64(33)), Err(VaultError::MasterKeyLength)));
    assert!(matches!(MasterKey::from_base64("not base64!"), Err(VaultError::MasterKeyEncoding)));
    let key = MasterKey::from_base64(&format!("  {}\n", b64(32))).unwrap();
    assert_eq!(key.to_base64(), b64(32));
    assert_eq!(key.to_base64().len(), 44); // as `openssl rand -base64 32` prints

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    std::fs::write(&path, format!("{}\n", b64(32))).unwrap();
    let loaded = MasterKey::load(&path).unwrap();
    assert_eq!(loaded.blind_index(&nid(WORKED)), key.blind_index(&nid(WORKED)));
    assert_ne!(MasterKey::generate().blind_index(&nid(WORKED)), key.blind_index(&nid(WORKED)));
    assert_ne!(key.blind_index(&nid(SYNTHETIC)), key.blind_index(&nid(WORKED)));
    assert!(matches!(MasterKey::load(&dir.path().join("missing")), Err(VaultError::MasterKeyFile(_))));
}

#[tokio::test]
async fn sealed_serde_is_one_base64_string() {
    let (_dir, _table, vault) = setup();
    let sealed = vault.protect(patient(1), &nid(WORKED)).await.unwrap();
    let json = serde_json::to_string(&sealed).unwrap();
    assert_eq!(json, format!("\"{}\"", sealed.to_base64()));
    let back: Sealed = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sealed);
    assert_eq!(vault.reveal(patient(1), &back).await.unwrap(), Some(nid(WORKED)));
    assert!(serde_json::from_str::<Sealed>("\"AAAA\"").is_err());
    assert!(serde_json::from_str::<Sealed>("\"%%%\"").is_err());

    // A tampered sealed value does not open.
    let mut bytes = sealed.as_bytes().to_vec();
    *bytes.last_mut().unwrap() ^= 1;
    let tampered = Sealed::from_bytes(bytes).unwrap();
    assert!(matches!(vault.reveal(patient(1), &tampered).await, Err(VaultError::Open)));
}
