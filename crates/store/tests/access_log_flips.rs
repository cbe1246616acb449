//! Property: a single flipped bit anywhere in a record of the access log file never panics the
//! reader or `verify`, and `verify` (read-only, `FileAccessLog::verify_dir`) reports it at that
//! record's position; serving never loses a record before it.

use forlop_store::access_log::{AccessLog, AccessOutcome, AccessRecord, FileAccessLog};
use forlop_store::StoreError;
use proptest::prelude::*;
use uuid::Uuid;

fn record(i: u64) -> AccessRecord {
    AccessRecord {
        patient_id: Uuid::from_u128(0x1000 + u128::from(i % 3)),
        actor_sub: format!("user-{i}"),
        actor_name: i.is_multiple_of(2).then(|| "Dr. Test".into()),
        role: "clinician".into(),
        hpr_number: Some("1234567".into()),
        operation: "PatientView".into(),
        fields: "patient".into(),
        outcome: AccessOutcome::Allowed,
        reason: None,
        correlation_id: None,
        at: chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 0).unwrap(),
    }
}

/// Writes `n` records (one group each) and returns each frame's (offset, length) in the file.
fn write_log(dir: &std::path::Path, n: u64) -> Vec<(u64, u64)> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let log = FileAccessLog::open(dir).unwrap();
        for i in 0..n {
            log.append(vec![record(i)]).await.unwrap();
        }
    });
    // Frames follow the 8-byte magic: u32 length, body, 32-byte hash.
    let bytes = std::fs::read(dir.join("records")).unwrap();
    let (mut frames, mut at) = (Vec::new(), 8usize);
    for _ in 0..n {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        frames.push((at as u64, (4 + len + 32) as u64));
        at += 4 + len + 32;
    }
    frames
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_flipped_bit_in_any_record_is_reported_at_its_position(
        n in 1u64..8,
        pick in any::<prop::sample::Index>(),
        within in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let frames = write_log(dir.path(), n);
        let position = pick.index(n as usize);
        let (offset, len) = frames[position];
        let byte = offset + within.index(len as usize) as u64;
        let path = dir.path().join("records");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[byte as usize] ^= 1 << bit;
        std::fs::write(&path, &bytes).unwrap();

        match FileAccessLog::verify_dir(dir.path()) {
            Err(StoreError::Corrupt { position: at, .. }) => prop_assert_eq!(at, position as u64),
            other => prop_assert!(false, "flip at record {} byte {}: {:?}", position, byte, other),
        }
        // Serving opens it (or refuses with a coded error) without panicking, and never loses a
        // record before the damaged one.
        if let Ok(log) = FileAccessLog::open(dir.path()) {
            prop_assert!(log.committed() >= position as u64);
        }
    }
}
