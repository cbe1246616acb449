//! The one-time migration of an access log that an earlier version kept in sled.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::super::{backend, be_u64, split};
use super::records_file::{MAGIC, RECORDS};
use crate::StoreError;

/// Earlier versions kept the access log in a sled database directly in `dir`, with the same
/// canonical bytes and hashes under `R` + position. Copies those records into a new record file
/// (written under a temporary name, renamed when durable), then moves the old database aside.
pub(super) fn migrate_from_sled(dir: &Path) -> Result<(), StoreError> {
    let old = dir.join("db");
    if !old.exists() || dir.join(RECORDS).exists() {
        return Ok(());
    }
    let db = crate::sled_open::open(&sled::Config::new().path(dir).flush_every_ms(None)).map_err(backend)?;
    let tree = db.open_tree("access").map_err(backend)?;
    let partial = dir.join("records.migrating");
    let mut out = std::io::BufWriter::new(File::create(&partial).map_err(backend)?);
    out.write_all(MAGIC).map_err(backend)?;
    let mut n = 0u64;
    for kv in tree.scan_prefix([b'R']) {
        let (k, v) = kv.map_err(backend)?;
        let position = be_u64(&k[1..]);
        if position != n {
            return Err(StoreError::Corrupt {
                position: n,
                reason: format!("gap: next stored position is {position}"),
            });
        }
        let (body, _) = split(position, &v)?;
        let len = u32::try_from(body.len()).map_err(backend)?;
        out.write_all(&len.to_le_bytes()).map_err(backend)?;
        out.write_all(&v).map_err(backend)?;
        n += 1;
    }
    let file = out.into_inner().map_err(|e| backend(e.error()))?;
    file.sync_all().map_err(backend)?;
    drop((tree, db));
    std::fs::rename(&partial, dir.join(RECORDS)).map_err(backend)?;
    let aside = dir.join("sled-before-migration");
    std::fs::create_dir_all(&aside).map_err(backend)?;
    for name in ["conf", "db", "snap", "blobs"] {
        let from = dir.join(name);
        if from.exists() {
            std::fs::rename(&from, aside.join(name)).map_err(backend)?;
        }
    }
    for entry in std::fs::read_dir(dir).map_err(backend)? {
        let entry = entry.map_err(backend)?;
        if entry.file_name().to_string_lossy().starts_with("snap.") {
            std::fs::rename(entry.path(), aside.join(entry.file_name())).map_err(backend)?;
        }
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(backend)?;
    tracing::warn!(records = n, old = %aside.display(), "migrated the access log from sled to its record file");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::FileAccessLog;
    use crate::access_log::{encode, AccessFilter, AccessLog, AccessOutcome, AccessRecord};
    use crate::hash::{chain_hash, GENESIS_HASH};
    use uuid::Uuid;

    #[tokio::test]
    async fn an_access_log_kept_in_sled_by_an_earlier_version_is_migrated_with_its_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let p = Uuid::new_v4();
        let mut hash = GENESIS_HASH;
        {
            // The earlier layout: `R` + position -> canonical bytes ++ chain hash.
            let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open().unwrap();
            let tree = db.open_tree("access").unwrap();
            for position in 0..3u64 {
                let r = AccessRecord {
                    patient_id: p,
                    actor_sub: format!("sub{position}"),
                    actor_name: None,
                    role: "auditor".into(),
                    hpr_number: None,
                    operation: "Q".into(),
                    fields: "patient".into(),
                    outcome: AccessOutcome::Allowed,
                    reason: None,
                    correlation_id: None,
                    at: chrono::Utc::now(),
                };
                let mut value = encode(&r, position, Vec::new()).unwrap();
                hash = chain_hash(&hash, &value);
                value.extend_from_slice(&hash);
                let mut key = vec![b'R'];
                key.extend_from_slice(&position.to_be_bytes());
                tree.insert(key, value).unwrap();
            }
            db.flush().unwrap();
        }
        let log = FileAccessLog::open(dir.path()).unwrap();
        let report = log.verify().await.unwrap();
        assert_eq!((report.records, report.head_hash), (3, hash));
        let mine = log.query(&AccessFilter { patient_id: Some(p), ..Default::default() }, None, 10).await.unwrap();
        assert_eq!(mine.iter().map(|r| r.record.actor_sub.as_str()).collect::<Vec<_>>(), ["sub0", "sub1", "sub2"]);
        assert!(dir.path().join("sled-before-migration").join("db").exists());
        drop(log);
        // Opening again does not migrate twice.
        assert_eq!(FileAccessLog::open(dir.path()).unwrap().committed(), 3);
    }
}
