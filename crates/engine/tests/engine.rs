//! The engine over a real sled store in a temporary directory.

mod support;

use std::sync::Arc;

use forlop_domain::events::PatientRegistered;
use forlop_domain::{Command, Event, Gender};
use forlop_engine::{new_event, Caller, Engine, Principal, RecordOptions, Settings};
use forlop_store::{EventStore, ExpectedVersion, Metadata, NewEvent, SledOptions, SledStore};
use forlop_vault::MasterKey;
use uuid::Uuid;

fn open(dir: &tempfile::TempDir) -> Arc<dyn EventStore> {
    Arc::new(SledStore::open(SledOptions::new(dir.path())).unwrap())
}

/// The engine over `store`, with its access log and key table beside it in `dir`.
async fn start(dir: &tempfile::TempDir, store: Arc<dyn EventStore>) -> Engine {
    let parts = support::sled_parts(dir.path(), MasterKey::generate(), Settings::default());
    Engine::start(store, parts).await.unwrap()
}

fn admin() -> Caller {
    Caller::new(Principal::anonymous_admin(), None)
}

/// A patient's registration without a national id.
fn registration(patient: Uuid, birth_year: i32, gender: Gender) -> Command {
    Command::RegisterPatient(PatientRegistered { patient_id: patient, birth_year, gender, national_id: None })
}

#[tokio::test]
async fn a_stored_v1_event_is_upcast_when_the_read_model_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let patient = Uuid::from_u128(1);
    {
        // Given a log written by an older forlop, whose PatientRegistered v1 had a free-text "sex".
        let store = open(&dir);
        let v1 = NewEvent {
            id: Uuid::new_v4(),
            event_type: "PatientRegistered".into(),
            schema_version: 1,
            occurred_at: chrono::Utc::now(),
            payload: format!(r#"{{"patient_id":"{patient}","birth_year":1985,"sex":"F"}}"#).into_bytes(),
            metadata: Metadata::default(),
            recorded_at: None,
        };
        store.append(&format!("patient-{patient}"), ExpectedVersion::NoStream, vec![v1]).await.unwrap();
    }
    // When today's build opens it
    let engine = start(&dir, open(&dir)).await;
    // Then the patient reads in today's shape, and new facts can be recorded on top of it.
    let view = engine.model().patients[&patient].clone();
    assert_eq!((view.birth_year, view.gender), (1985, Gender::Female));
    let again = registration(patient, 1990, Gender::Male);
    let err = engine.record(&admin(), again, None, RecordOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), "ALREADY_EXISTS", "the upcast event counts as the registration");
}

#[tokio::test]
async fn the_read_model_follows_the_log_not_the_command_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let engine = start(&dir, store.clone()).await;
    // An event appended straight to the log (as another node or an import would) reaches the read model.
    let id = Uuid::from_u128(9);
    let e = Event::PatientRegistered(PatientRegistered {
        patient_id: id,
        birth_year: 2001,
        gender: Gender::Other,
        national_id: None,
    });
    let r = store
        .append(
            &format!("patient-{id}"),
            ExpectedVersion::NoStream,
            vec![new_event(Uuid::new_v4(), &e, Metadata::default())],
        )
        .await
        .unwrap();
    engine.wait_projected(r.events[0].position).await.unwrap();
    assert_eq!(engine.model().patients[&id].gender, Gender::Other);
    assert_eq!(engine.projected(), store.committed());
}

#[tokio::test]
async fn a_retry_with_the_same_event_id_is_answered_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(&dir, open(&dir)).await;
    let cmd = registration(Uuid::from_u128(3), 1970, Gender::Female);
    let opts = RecordOptions { event_id: Some(Uuid::from_u128(77)), ..RecordOptions::default() };
    let first = engine.record(&admin(), cmd.clone(), None, opts.clone()).await.unwrap();
    let retry = engine.record(&admin(), cmd, None, opts.clone()).await.unwrap();
    assert_eq!(
        (retry.position, retry.stream_version, retry.deduplicated),
        (first.position, first.stream_version, true)
    );
    let other = registration(Uuid::from_u128(3), 1971, Gender::Female);
    assert_eq!(engine.record(&admin(), other, None, opts).await.unwrap_err().code(), "IDEMPOTENCY_CONFLICT");
    assert_eq!(engine.committed(), 1);
}

#[tokio::test]
async fn an_event_type_from_a_newer_version_neither_stops_deciding_nor_replay() {
    let dir = tempfile::tempdir().unwrap();
    let patient = Uuid::from_u128(5);
    let store = open(&dir);
    let engine = start(&dir, store.clone()).await;
    let register = registration(patient, 1980, Gender::Male);
    engine.record(&admin(), register, None, RecordOptions::default()).await.unwrap();
    // A newer forlop wrote a type this build does not know into the patient's stream.
    let future = NewEvent {
        id: Uuid::new_v4(),
        event_type: "PatientMovedAbroad".into(),
        schema_version: 1,
        occurred_at: chrono::Utc::now(),
        payload: br#"{"country":"SE"}"#.to_vec(),
        metadata: Metadata::default(),
        recorded_at: None,
    };
    let r = store.append(&format!("patient-{patient}"), ExpectedVersion::Any, vec![future]).await.unwrap();
    engine.wait_projected(r.events[0].position).await.unwrap();
    // The stream can still be decided on, and the read model kept the patient.
    let forget = Command::ForgetPatient(forlop_domain::events::PatientForgotten { patient_id: patient });
    engine.record(&admin(), forget, None, RecordOptions::default()).await.unwrap();
    assert!(engine.model().patients[&patient].forgotten);
    // And a fresh replay of the same log succeeds.
    let model = forlop_engine::rebuild(&store).await.unwrap();
    assert_eq!(model.position, 3);
}

#[tokio::test]
async fn a_code_from_a_newer_version_reads_as_unrecognised_and_neither_stops_deciding_nor_replay() {
    let dir = tempfile::tempdir().unwrap();
    let patient = Uuid::from_u128(6);
    let store = open(&dir);
    // A newer forlop registered a patient with a gender code this build does not know.
    let future = NewEvent {
        id: Uuid::new_v4(),
        event_type: "PatientRegistered".into(),
        schema_version: 2,
        occurred_at: chrono::Utc::now(),
        payload: format!(r#"{{"patient_id":"{patient}","birth_year":1980,"gender":"NON_BINARY"}}"#).into_bytes(),
        metadata: Metadata::default(),
        recorded_at: None,
    };
    store.append(&format!("patient-{patient}"), ExpectedVersion::NoStream, vec![future]).await.unwrap();
    let engine = start(&dir, store.clone()).await;
    // The read model keeps the patient, with the code shown as unrecognised ...
    assert_eq!(engine.model().patients[&patient].gender, Gender::Unrecognised);
    // ... the stream can still be decided on (the registration counts) ...
    let again = registration(patient, 1980, Gender::Male);
    let err = engine.record(&admin(), again, None, RecordOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), "ALREADY_EXISTS");
    // ... and nobody can record the placeholder itself.
    let placeholder = registration(Uuid::from_u128(7), 1980, Gender::Unrecognised);
    let err = engine.record(&admin(), placeholder, None, RecordOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), "INVALID_INPUT");
    assert!(err.to_string().contains("gender"), "{err}");
    assert_eq!(store.committed(), 1, "nothing appended");
}

#[tokio::test]
async fn a_reader_holding_a_snapshot_never_delays_a_mutation_and_keeps_its_consistent_view() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(&dir, open(&dir)).await;
    let register = |n: u128| registration(Uuid::from_u128(n), 1970, Gender::Female);
    engine.record(&admin(), register(1), None, RecordOptions::default()).await.unwrap();
    // A long report holds the snapshot it started with for its whole computation ...
    let report_snapshot = engine.model();
    // ... while writers go on: each mutation answers once its event is in the published
    // snapshot (read-your-writes), without waiting for the report.
    for n in 2..=50 {
        engine.record(&admin(), register(n), None, RecordOptions::default()).await.unwrap();
        assert!(engine.model().patients.contains_key(&Uuid::from_u128(n)));
    }
    // The report's snapshot is unchanged: one consistent prefix of the log.
    assert_eq!(report_snapshot.patients.len(), 1);
    assert_eq!(report_snapshot.position, 1);
    let now = engine.model();
    assert_eq!((now.patients.len(), now.position), (50, 50));
}

#[test]
fn the_projector_checkpoints_in_the_background_every_n_events_and_a_crash_restarts_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("readmodel.checkpoint");
    // The first process: its runtime is dropped without a clean shutdown, as a crash would.
    let crashed = tokio::runtime::Runtime::new().unwrap();
    crashed.block_on(async {
        let settings = Settings { checkpoint_every: 10, ..Settings::default() };
        let parts = support::sled_parts(dir.path(), MasterKey::generate(), settings);
        let engine = Engine::start(open(&dir), parts).await.unwrap();
        for n in 1..=25 {
            let cmd = registration(Uuid::from_u128(n), 1980, Gender::Male);
            engine.record(&admin(), cmd, None, RecordOptions::default()).await.unwrap();
        }
        let at = tokio::time::timeout(std::time::Duration::from_secs(20), engine.wait_checkpointed(20))
            .await
            .expect("a background checkpoint within 20 s")
            .unwrap();
        assert!((20..=25).contains(&at), "{at}");
    });
    drop(crashed);

    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = open(&dir);
        let model =
            forlop_engine::checkpoint::load(&checkpoint, &store).await.expect("the background checkpoint loads");
        assert!(model.position >= 20 && model.patients.len() as u64 == model.position, "{}", model.position);
        // A restart loads it and replays only the tail.
        let engine = start(&dir, store).await;
        assert_eq!(engine.model().patients.len(), 25);
    });
}

#[tokio::test]
async fn a_burst_of_thousands_of_events_is_folded_whole_by_the_live_projector() {
    // Given a running engine, and then 5,000 registrations committed by one append, so the
    // projector meets them as one long burst across several snapshot publications
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let engine = start(&dir, store.clone()).await;
    let registrations = |ns: std::ops::RangeInclusive<u128>| -> Vec<forlop_store::StreamAppend> {
        ns.map(|n| {
            let e = Event::PatientRegistered(PatientRegistered {
                patient_id: Uuid::from_u128(n),
                birth_year: 1980,
                gender: Gender::Female,
                national_id: None,
            });
            forlop_store::StreamAppend {
                stream: format!("patient-{}", Uuid::from_u128(n)),
                expected: ExpectedVersion::NoStream,
                events: vec![new_event(Uuid::new_v4(), &e, Metadata::default())],
            }
        })
        .collect()
    };
    store.append_all(registrations(1..=5_000)).await.unwrap();
    // When the live model has folded the last of them
    engine.wait_projected(4_999).await.unwrap();
    // Then it holds every one, as a rebuild from the log does: none is lost where the burst
    // crosses a publication
    let live = engine.model();
    assert_eq!((live.position, live.patients.len()), (5_000, 5_000));
    let missing: Vec<u128> = (1..=5_000u128).filter(|n| !live.patients.contains_key(&Uuid::from_u128(*n))).collect();
    assert!(missing.is_empty(), "patients missing from the live model: {missing:?}");
    // And a burst whose last event falls on a publication boundary (position 5,120) releases the
    // mutation waiting for it: nothing later may be needed to publish it.
    store.append_all(registrations(5_001..=5_121)).await.unwrap();
    let waited = tokio::time::timeout(std::time::Duration::from_secs(10), engine.wait_projected(5_120)).await;
    assert!(waited.is_ok(), "the event at 5,120 was never published");
    assert_eq!(engine.model().patients.len(), 5_121);
}

#[tokio::test]
async fn a_stopping_engine_rewrites_its_checkpoint_only_when_it_folded_events_since() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("readmodel.checkpoint");
    let register = |n: u128| registration(Uuid::from_u128(n), 1980, Gender::Male);
    // A checkpoint is written atomically (a new file renamed over the old): its inode says
    // whether a stop rewrote it.
    let run = |record: Vec<u128>| {
        let dir = &dir;
        async move {
            let store = open(dir);
            let engine = start(dir, store.clone()).await;
            for n in record {
                engine.record(&admin(), register(n), None, RecordOptions::default()).await.unwrap();
            }
            let position = engine.checkpoint().await.unwrap();
            engine.stop();
            drop(engine);
            // The stopped projector lets go of the store once its task is dropped.
            while Arc::strong_count(&store) > 1 {
                tokio::task::yield_now().await;
            }
            position
        }
    };
    assert_eq!(run(vec![1, 2, 3]).await, 3);
    let written = std::fs::metadata(&checkpoint).unwrap().ino();
    // An idle start and stop leaves the checkpoint on disk as it is...
    assert_eq!(run(vec![]).await, 3);
    assert_eq!(std::fs::metadata(&checkpoint).unwrap().ino(), written);
    // ...and one that recorded a fact writes it anew, for the next start to load.
    assert_eq!(run(vec![4]).await, 4);
    assert_ne!(std::fs::metadata(&checkpoint).unwrap().ino(), written);
    let model = forlop_engine::checkpoint::load(&checkpoint, &open(&dir)).await.expect("the checkpoint loads");
    assert_eq!(model.position, 4);
}

mod transactions {
    use super::*;
    use forlop_domain::events::{ReferralReceived, ServiceRegistered};
    use forlop_domain::{CareLevel, ReferralSource};
    use forlop_engine::{Transacted, TransactionItem};

    /// An engine over a fresh sled store; the directory lives as long as the first element.
    async fn engine_in_tempdir() -> (tempfile::TempDir, Arc<dyn EventStore>, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let engine = start(&dir, store.clone()).await;
        (dir, store, engine)
    }

    fn register_service(service: Uuid, care_level: CareLevel) -> Command {
        Command::RegisterService(ServiceRegistered { service_id: service, name: "DPS".into(), care_level })
    }

    fn item(command: Command) -> TransactionItem {
        TransactionItem { command, event_id: Uuid::new_v4(), national_id: None, may_exist: false }
    }

    fn register(patient: Uuid) -> Command {
        registration(patient, 1980, Gender::Female)
    }

    fn referral(patient: Uuid, service: Uuid, day: u32) -> Command {
        use chrono::TimeZone;
        Command::ReceiveReferral {
            patient_id: patient,
            event: ReferralReceived {
                referral_id: Uuid::new_v4(),
                service_id: service,
                source: ReferralSource::Gp,
                received_at: chrono::Utc.with_ymd_and_hms(2016, 1, 1 + day % 28, 9, 0, 0).unwrap(),
            },
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_last_fact_records_none_and_a_service_registered_earlier_in_it_counts() {
        let (_dir, store, engine) = engine_in_tempdir().await;
        let (service, patient) = (Uuid::new_v4(), Uuid::new_v4());
        let register_service = register_service(service, CareLevel::SpecialistOutpatient);
        // The referral to a service that does not exist is refused: nothing of the three is kept.
        let refused =
            vec![item(register_service.clone()), item(register(patient)), item(referral(patient, Uuid::new_v4(), 1))];
        let err = engine.record_transaction(&admin(), refused).await.unwrap_err();
        assert_eq!(err.item, Some(2), "{:?}", err.error);
        assert_eq!(store.committed(), 0, "{:?}", err.error);

        // The same with the service registered in the transaction itself: all three, in order.
        let items = vec![item(register_service), item(register(patient)), item(referral(patient, service, 1))];
        let done = engine.record_transaction(&admin(), items.clone()).await.unwrap();
        let positions: Vec<u64> = done
            .iter()
            .map(|t| match t {
                Transacted::Recorded(r) => r.position,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(positions, vec![0, 1, 2]);
        assert_eq!(engine.model().patients[&patient].referrals.len(), 1, "readable when answered");
        // Sent again, every fact is answered from the log.
        let again = engine.record_transaction(&admin(), items).await.unwrap();
        assert!(again.iter().all(|t| matches!(t, Transacted::Recorded(r) if r.deduplicated)), "{again:?}");
        assert_eq!(store.committed(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_transaction_leaves_no_national_id_behind() {
        let (_dir, store, engine) = engine_in_tempdir().await;
        // Synthetic (month + 80).
        let nid = forlop_domain::national_id::NationalId::parse("15918510033").unwrap();
        let (p, q) = (Uuid::new_v4(), Uuid::new_v4());
        let registration = TransactionItem { national_id: Some(nid.clone()), ..item(register(p)) };
        let refused = vec![registration, item(referral(p, Uuid::new_v4(), 1))];
        let err = engine.record_transaction(&admin(), refused).await.unwrap_err();
        assert_eq!(err.item, Some(1), "{:?}", err.error);
        // The number was never given to `p`: another patient may register with it.
        let r = engine.record(&admin(), register(q), Some(nid), RecordOptions::default()).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(store.committed(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transactions_over_the_same_streams_in_opposite_orders_all_land_without_deadlock() {
        let (_dir, store, engine) = engine_in_tempdir().await;
        let (service, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let setup = vec![item(register_service(service, CareLevel::Municipal)), item(register(a)), item(register(b))];
        engine.record_transaction(&admin(), setup).await.unwrap();
        const PAIRS: u32 = 40;
        let runs = (0..PAIRS).flat_map(|n| {
            let forward = vec![item(referral(a, service, n)), item(referral(b, service, n))];
            let backward = vec![item(referral(b, service, n)), item(referral(a, service, n))];
            [forward, backward].map(|items| {
                let engine = engine.clone();
                tokio::spawn(async move { engine.record_transaction(&admin(), items).await })
            })
        });
        let all = futures::future::join_all(runs);
        // A deadline, not a wait: the turns are taken in one order, so this never comes close.
        let results = tokio::time::timeout(std::time::Duration::from_secs(60), all).await.expect("no deadlock");
        for r in results {
            r.unwrap().unwrap();
        }
        let model = engine.model();
        assert_eq!(model.patients[&a].referrals.len(), 2 * PAIRS as usize);
        assert_eq!(model.patients[&b].referrals.len(), 2 * PAIRS as usize);
        assert_eq!(store.verify().await.unwrap().events, 3 + 4 * u64::from(PAIRS));
    }

    fn batch(command: Command) -> forlop_engine::BatchItem {
        forlop_engine::BatchItem { command, event_id: Uuid::new_v4(), group: 0 }
    }

    /// A bulk import writes its next chunk while the read model folds the one before: a second
    /// batch on the same patient lands while the first is unpublished, the ids the first
    /// claimed stay claimed until `published`, and then every event is readable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_recorded_unpublished_is_durable_keeps_its_ids_and_is_readable_once_published() {
        let (_dir, store, engine) = engine_in_tempdir().await;
        let (service, patient, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        engine
            .record(&admin(), register_service(service, CareLevel::Municipal), None, Default::default())
            .await
            .unwrap();
        engine.record(&admin(), register(other), None, Default::default()).await.unwrap();
        let first_referral = referral(patient, service, 1);
        let (first, first_waits) = engine
            .record_batch_unpublished(&admin(), vec![batch(register(patient)), batch(first_referral.clone())])
            .await;
        assert!(first.iter().all(|r| r.as_ref().is_ok_and(|r| !r.deduplicated)), "{first:?}");
        // The same referral id for another patient is refused while the first batch holds it.
        let Command::ReceiveReferral { event, .. } = first_referral else { unreachable!() };
        let stolen = Command::ReceiveReferral { patient_id: other, event: event.clone() };
        let refused = engine.record(&admin(), stolen, None, Default::default()).await;
        assert!(refused.is_err_and(|e| e.to_string().contains("already used by another patient")));
        // The same patient's next batch, decided before the first is folded.
        let (second, second_waits) =
            engine.record_batch_unpublished(&admin(), vec![batch(referral(patient, service, 2))]).await;
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].as_ref().unwrap().stream_version, 2);
        engine.published(first_waits.and(second_waits)).await.unwrap();
        let model = engine.model();
        assert_eq!(model.patients[&patient].referrals.len(), 2);
        assert_eq!(store.verify().await.unwrap().events, 5);
        // Published, the id is the first patient's in the read model: still refused for another.
        let stolen = Command::ReceiveReferral { patient_id: other, event };
        assert!(engine.record(&admin(), stolen, None, Default::default()).await.is_err());
    }
}

#[tokio::test]
async fn a_read_settled_later_has_its_access_record_in_the_log_when_settle_returns() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(&dir, open(&dir)).await;
    let patient = Uuid::from_u128(7);
    let register = registration(patient, 1970, Gender::Female);
    engine.record(&admin(), register, None, RecordOptions::default()).await.unwrap();
    let before = engine.access_log().committed();
    // The grant comes back before the record is known to be durable ...
    let (caller, pending) = admin().settling_later();
    let grant = engine.read_patient(&caller, patient, None, None, "patient").await.unwrap().unwrap();
    assert_eq!(grant.id(), patient);
    // ... and once `settle` returns, the record is in the log, naming the caller and the read.
    pending.settle().await.unwrap();
    assert_eq!(engine.access_log().committed(), before + 1);
    let filter = forlop_store::access_log::AccessFilter { patient_id: Some(patient), ..Default::default() };
    let records = engine.access_log().query(&filter, None, 10).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].record.fields, "patient");
    // A second settle has nothing left to wait for.
    pending.settle().await.unwrap();
}
