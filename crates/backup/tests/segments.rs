//! A backup longer than one segment, on the real sled store: it is copied in order, verified
//! across the segment boundary (each stream's versions continue from one file into the next),
//! restored to the same heads, and a damaged second segment is named.

use std::sync::Arc;

use forlop_backup::{BackupWriter, Cut, RestoreOptions, RestoreTarget, Sources, SEGMENT_LINES};
use forlop_store::access_log::FileAccessLog;
use forlop_store::key_table::KeyTable;
use forlop_store::{ExpectedVersion, Metadata, NewEvent, SledOptions, SledStore, StreamAppend};

fn stores(dir: &std::path::Path) -> Sources {
    Sources {
        events: Arc::new(SledStore::open(SledOptions::new(dir)).expect("open sled")),
        access: Arc::new(FileAccessLog::open(&dir.join("access")).expect("open the access log")),
        keys: Arc::new(KeyTable::open(&dir.join("keys")).expect("open the key table")),
    }
}

fn event(n: u64) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::from_u128(u128::from(n) + 1),
        event_type: "SessionRecorded".into(),
        schema_version: 1,
        occurred_at: chrono::DateTime::from_timestamp(1_450_000_000 + n as i64, 0).expect("a time"),
        payload: format!("{{\"n\":{n}}}").into_bytes(),
        metadata: Metadata { actor: "test".into(), ..Default::default() },
        recorded_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_two_segments_verifies_restores_and_names_a_damaged_second_segment() {
    let root = tempfile::tempdir().expect("tempdir");
    let source = stores(&root.path().join("data"));
    let total = SEGMENT_LINES + 5_000;
    // 64 streams written round-robin: every stream crosses the segment boundary.
    let mut n = 0;
    while n < total {
        let parts = (0..4096.min(total - n))
            .map(|i| StreamAppend {
                stream: format!("patient-{:032x}", (n + i) % 64),
                expected: ExpectedVersion::Any,
                events: vec![event(n + i)],
            })
            .collect();
        source.events.append_all(parts).await.expect("append");
        n += 4096.min(total - n);
    }
    let backup = root.path().join("backup");
    let mut writer = BackupWriter::open(&backup, &source).await.expect("open the backup");
    writer.catch_up(&source).await.expect("back up");
    assert_eq!(writer.manifest().events.segments.len(), 2);

    let report = forlop_backup::verify(&backup).expect("verifies");
    assert_eq!(report.events, total);
    let head = source.events.verify().await.expect("source verifies").head_hash;
    assert_eq!(report.events_head, forlop_store::to_hex(&head));

    let restored = stores(&root.path().join("restored"));
    let target = RestoreTarget { events: restored.events.clone(), access: restored.access, keys: restored.keys };
    let options = RestoreOptions { cut: Cut::Position(SEGMENT_LINES + 10), resume: false, check_key: None };
    let outcome = forlop_backup::restore(&backup, &report, &target, options).await.expect("restore");
    assert_eq!(outcome.events, SEGMENT_LINES + 11);
    let source_event = source.events.read_all(SEGMENT_LINES + 10, 1).await.expect("read")[0].hash;
    assert_eq!(restored.events.verify().await.expect("target verifies").head_hash, source_event);

    // One byte of the second segment's payloads changed: that file and position are named.
    let second = &writer.manifest().events.segments[1];
    let path = backup.join(&second.file);
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replacen("{\"n\":65540}", "{\"n\":65541}", 1)).expect("write");
    match forlop_backup::verify(&backup) {
        Err(forlop_backup::BackupError::Damaged { file, position, .. }) => {
            assert_eq!(file, second.file);
            assert_eq!(position, Some(65_540));
        }
        other => panic!("a damaged second segment verified: {other:?}"),
    }
}
