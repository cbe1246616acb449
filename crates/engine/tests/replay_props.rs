//! Property: whatever sequence of commands clients send (valid or refused), the read model the
//! projector folded incrementally equals the one rebuilt from the log from position 0. That is
//! what makes checkpoints, restarts and a second node's read model trustworthy.

mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use forlop_domain::events::*;
use forlop_domain::*;
use forlop_engine::{Caller, Engine, Principal, RecordOptions, Settings};
use forlop_store::{EventStore, SledOptions, SledStore};
use forlop_vault::MasterKey;
use proptest::prelude::*;
use uuid::Uuid;

const PATIENTS: u128 = 3;
const SERVICES: [CareLevel; 3] =
    [CareLevel::Municipal, CareLevel::SpecialistOutpatient, CareLevel::SpecialistInpatient];
const THERAPISTS: u128 = 3;

fn patient(i: u8) -> Uuid {
    Uuid::from_u128(0x1000 + u128::from(i) % PATIENTS)
}
fn service(i: u8) -> Uuid {
    Uuid::from_u128(0x2000 + u128::from(i) % SERVICES.len() as u128)
}
fn therapist(i: u8) -> Uuid {
    Uuid::from_u128(0x3000 + u128::from(i) % THERAPISTS)
}
/// Small pools of fact ids, so that commands meet each other's facts: two per patient, and now
/// and then another patient's.
fn fact(kind: u128, p: u8, i: u8) -> Uuid {
    let owner = if i >= 7 { p.wrapping_add(1) } else { p };
    Uuid::from_u128((kind << 12) + (u128::from(owner) % PATIENTS) * 4 + u128::from(i % 2))
}
/// Clinical time mostly follows the order of the requests (13 h apart), give or take `jitter`.
fn at(step: usize, jitter: u8) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 8, 0, 0).unwrap() + Duration::hours(step as i64 * 13 + i64::from(jitter) - 8)
}

/// One client request, in terms of the pools above.
#[derive(Debug, Clone)]
enum Op {
    Referral { p: u8, r: u8, s: u8, d: u8, source: u8 },
    Decide { p: u8, r: u8, accept: bool, d: u8 },
    Start { p: u8, e: u8, s: u8, r: Option<u8>, d: u8, acute: bool },
    End { p: u8, e: u8, d: u8, reason: u8 },
    Assign { p: u8, e: u8, t: u8, d: u8 },
    Release { p: u8, e: u8, t: u8, d: u8, reason: u8, notified: bool },
    Session { p: u8, e: u8, t: u8, d: u8, attendance: u8 },
    Admit { p: u8, a: u8, s: u8, d: u8 },
    Discharge { p: u8, a: u8, d: u8 },
    Outcome { p: u8, e: u8, gad: bool, phase: u8, d: u8, score: u8 },
    Forget { p: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    let n = || 0u8..8;
    let d = || 0u8..16;
    prop_oneof![
        12 => (n(), n(), n(), d(), n()).prop_map(|(p, r, s, d, source)| Op::Referral { p, r, s, d, source }),
        12 => (n(), n(), any::<bool>(), d()).prop_map(|(p, r, accept, d)| Op::Decide { p, r, accept, d }),
        12 => (n(), n(), n(), proptest::option::of(n()), d(), any::<bool>())
            .prop_map(|(p, e, s, r, d, acute)| Op::Start { p, e, s, r, d, acute }),
        4 => (n(), n(), d(), n()).prop_map(|(p, e, d, reason)| Op::End { p, e, d, reason }),
        12 => (n(), n(), n(), d()).prop_map(|(p, e, t, d)| Op::Assign { p, e, t, d }),
        4 => (n(), n(), n(), d(), n(), any::<bool>())
            .prop_map(|(p, e, t, d, reason, notified)| Op::Release { p, e, t, d, reason, notified }),
        20 => (n(), n(), n(), d(), n()).prop_map(|(p, e, t, d, attendance)| Op::Session { p, e, t, d, attendance }),
        4 => (n(), n(), n(), d()).prop_map(|(p, a, s, d)| Op::Admit { p, a, s, d }),
        4 => (n(), n(), d()).prop_map(|(p, a, d)| Op::Discharge { p, a, d }),
        8 => (n(), n(), any::<bool>(), n(), d(), 0u8..4)
            .prop_map(|(p, e, gad, phase, d, score)| Op::Outcome { p, e, gad, phase, d, score }),
        // Rare: an erased patient takes no more facts.
        1 => n().prop_map(|p| Op::Forget { p }),
    ]
}

fn pick<T: Copy>(all: &[T], i: u8) -> T {
    all[usize::from(i) % all.len()]
}

fn command(op: &Op, step: usize) -> Command {
    match *op {
        Op::Referral { p, r, s, d, source } => Command::ReceiveReferral {
            patient_id: patient(p),
            event: ReferralReceived {
                referral_id: fact(1, p, r),
                service_id: service(s),
                source: pick(ReferralSource::ALL, source),
                received_at: at(step, d),
            },
        },
        Op::Decide { p, r, accept, d } => Command::DecideReferral {
            patient_id: patient(p),
            event: ReferralDecided {
                referral_id: fact(1, p, r),
                decision: if accept { ReferralDecision::Accepted } else { ReferralDecision::Rejected },
                reason: (!accept).then_some(RejectionReason::Capacity),
                decided_at: at(step, d),
            },
        },
        Op::Start { p, e, s, r, d, acute } => Command::StartEpisode {
            patient_id: patient(p),
            event: EpisodeStarted {
                episode_id: fact(2, p, e),
                service_id: service(s),
                referral_id: r.map(|r| fact(1, p, r)),
                started_at: at(step, d),
                acute,
            },
        },
        Op::End { p, e, d, reason } => Command::EndEpisode {
            patient_id: patient(p),
            event: EpisodeEnded {
                episode_id: fact(2, p, e),
                reason: pick(EndReason::ALL, reason),
                ended_at: at(step, d),
            },
        },
        Op::Assign { p, e, t, d } => Command::AssignTherapist {
            patient_id: patient(p),
            event: TherapistAssigned {
                episode_id: fact(2, p, e),
                therapist_id: therapist(t),
                assigned_at: at(step, d),
            },
        },
        Op::Release { p, e, t, d, reason, notified } => Command::ReleaseTherapist {
            patient_id: patient(p),
            event: TherapistReleased {
                episode_id: fact(2, p, e),
                therapist_id: therapist(t),
                reason: pick(ReleaseReason::ALL, reason),
                patient_notified: notified,
                released_at: at(step, d),
            },
        },
        Op::Session { p, e, t, d, attendance } => Command::RecordSession {
            patient_id: patient(p),
            event: SessionRecorded {
                session_id: Uuid::from_u128(0x9000_0000 + step as u128),
                episode_id: fact(2, p, e),
                therapist_id: therapist(t),
                attendance: pick(Attendance::ALL, attendance),
                at: at(step, d),
            },
        },
        Op::Admit { p, a, s, d } => Command::AdmitPatient {
            patient_id: patient(p),
            event: PatientAdmitted { admission_id: fact(3, p, a), service_id: service(s), admitted_at: at(step, d) },
        },
        Op::Discharge { p, a, d } => Command::DischargePatient {
            patient_id: patient(p),
            event: PatientDischarged { admission_id: fact(3, p, a), discharged_at: at(step, d) },
        },
        Op::Outcome { p, e, gad, phase, d, score } => {
            let instrument = if gad { Instrument::Gad7 } else { Instrument::Phq9 };
            Command::RecordOutcome {
                patient_id: patient(p),
                event: OutcomeRecorded {
                    episode_id: fact(2, p, e),
                    instrument,
                    phase: pick(MeasurePhase::ALL, phase),
                    items: vec![score; instrument.item_count()],
                    total: 0,
                    measured_at: at(step, d),
                },
            }
        }
        Op::Forget { p } => Command::ForgetPatient(PatientForgotten { patient_id: patient(p) }),
    }
}

fn prelude() -> Vec<Command> {
    let mut out = Vec::new();
    for (i, level) in SERVICES.iter().enumerate() {
        let service_id = service(i as u8);
        out.push(Command::RegisterService(ServiceRegistered {
            service_id,
            name: format!("Tjeneste {i}"),
            care_level: *level,
        }));
    }
    for i in 0..THERAPISTS as u8 {
        let therapist_id = therapist(i);
        out.push(Command::RegisterTherapist(TherapistRegistered {
            therapist_id,
            name: format!("Terapeut {i}"),
            hpr_number: None,
        }));
    }
    for i in 0..PATIENTS as u8 {
        let patient_id = patient(i);
        out.push(Command::RegisterPatient(PatientRegistered {
            patient_id,
            birth_year: 1980 + i32::from(i),
            gender: Gender::Female,
            national_id: None,
        }));
    }
    out
}

/// Sends every command; returns how many were recorded.
async fn send_all(engine: &Engine, ops: &[Op]) -> usize {
    let admin = Caller::new(Principal::anonymous_admin(), None);
    let commands = prelude().into_iter().chain(ops.iter().enumerate().map(|(i, op)| command(op, i)));
    let mut recorded = 0;
    for c in commands {
        match engine.record(&admin, c.clone(), None, RecordOptions::default()).await {
            Ok(_) => recorded += 1,
            Err(e) => assert!(
                matches!(e.code(), "INVALID_INPUT" | "NOT_FOUND" | "ALREADY_EXISTS" | "CONFLICT"),
                "{c:?} was refused as {}: {e}",
                e.code()
            ),
        }
    }
    recorded
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_incrementally_folded_read_model_equals_a_replay_of_the_log(ops in prop::collection::vec(op(), 1..80)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn EventStore> = Arc::new(SledStore::open(SledOptions::new(dir.path())).unwrap());
            let parts = support::sled_parts(dir.path(), MasterKey::generate(), Settings::default());
            let engine = Engine::start(store.clone(), parts).await.unwrap();
            let recorded = send_all(&engine, &ops).await;
            let incremental = engine.model();
            prop_assert_eq!(incremental.position, store.committed());
            prop_assert_eq!(store.committed() as usize, recorded);
            let replayed = forlop_engine::rebuild(&store).await.unwrap();
            prop_assert!(*incremental == replayed, "incremental and replayed read models differ after {:?}", ops);
            // A checkpoint of it loads back as the same model (the binary encoding of codes and
            // times, and the indexes rebuilt from the patients).
            let head = store.read_all(store.committed() - 1, 1).await.unwrap()[0].hash;
            let path = dir.path().join("props.checkpoint");
            forlop_engine::checkpoint::write(&path, &incremental, head).unwrap();
            let loaded = forlop_engine::checkpoint::load(&path, &store).await.expect("the checkpoint loads");
            prop_assert!(loaded == replayed, "a checkpoint round trip changed the read model");
            engine.stop();
            Ok(())
        })?;
    }
}
