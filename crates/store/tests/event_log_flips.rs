//! Property: a flipped byte anywhere in a stored event record, or an append's bytes replaced by
//! arbitrary ones, never panics the decoder, the reads or `verify`; `verify` reports a flip at
//! the position of the event whose bytes it hit.

use forlop_store::{EventStore, ExpectedVersion, Metadata, NewEvent, SledOptions, SledStore, StoreError};
use proptest::prelude::*;
use uuid::Uuid;

fn event(i: u64) -> NewEvent {
    NewEvent {
        id: Uuid::from_u128(0x5000 + u128::from(i)),
        event_type: "SessionRecorded".into(),
        schema_version: 1,
        occurred_at: chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 0).unwrap(),
        payload: format!(r#"{{"n":{i},"note":"synthetic"}}"#).into_bytes(),
        metadata: Metadata { actor: "test".into(), correlation_id: Some(Uuid::from_u128(7)), causation_id: None },
        recorded_at: None,
    }
}

/// Writes `appends` appends of `per` events each, alternating between two streams.
fn write_log(dir: &std::path::Path, appends: u64, per: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let store = SledStore::open(SledOptions::new(dir)).unwrap();
        for a in 0..appends {
            let events = (0..per).map(|k| event(a * per + k)).collect();
            store.append(&format!("stream-{}", a % 2), ExpectedVersion::Any, events).await.unwrap();
        }
    });
}

/// Opens the store and reads and verifies everything, as serving and `forlop verify` would.
fn open_read_verify(dir: &std::path::Path) -> Result<(), StoreError> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let store = SledStore::open(SledOptions::new(dir))?;
        let _ = store.read_all(0, usize::MAX).await;
        let _ = store.read_stream("stream-0", 0, usize::MAX).await;
        let _ = store.event_by_id(Uuid::from_u128(0x5000)).await;
        store.verify().await.map(|_| ())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_flipped_byte_in_any_event_record_is_reported_at_its_position(
        appends in 1u64..4,
        per in 1u64..4,
        pick in any::<prop::sample::Index>(),
        within in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), appends, per);
        let position = pick.index((appends * per) as usize) as u64;
        SledStore::tamper_with(dir.path(), position, |first, value| {
            // Records are [u32 LE length][canonical bytes][32-byte hash]; find the one at `position`.
            let mut offset = 0;
            for _ in first..position {
                let len = u32::from_le_bytes(value[offset..offset + 4].try_into().unwrap()) as usize;
                offset += 4 + len + 32;
            }
            let len = u32::from_le_bytes(value[offset..offset + 4].try_into().unwrap()) as usize;
            value[offset + within.index(4 + len + 32)] ^= mask;
        })
        .unwrap();
        match open_read_verify(dir.path()) {
            Err(StoreError::Corrupt { position: at, .. }) => prop_assert_eq!(at, position),
            other => prop_assert!(false, "flip in the event at {}: {:?}", position, other),
        }
    }

    #[test]
    fn arbitrary_bytes_in_place_of_an_append_are_reported_not_panicked_on(
        appends in 1u64..4,
        pick in 0u64..3,
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), appends, 2);
        let position = (pick % appends) * 2;
        SledStore::tamper_with(dir.path(), position, |_, value| *value = bytes.clone()).unwrap();
        match open_read_verify(dir.path()) {
            Err(StoreError::Corrupt { position: at, .. }) => prop_assert!(at >= position && at < position + 2, "{at}"),
            // The store may refuse to open a log whose last append is unreadable; it must say so.
            Err(other) => prop_assert!(!other.to_string().is_empty()),
            Ok(()) => prop_assert!(false, "replaced bytes went unnoticed"),
        }
    }
}
