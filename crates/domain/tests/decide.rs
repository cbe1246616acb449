//! Given/when/then tests for `decide`: given the events already on a stream, when a command is
//! decided against them (and the reference data the caller looked up), then exactly one event is
//! recorded or the command is refused with a stable error code.
//!
//! Also covers the persisted format: upcasting of old schema versions and payload round-trips.
//!
//! Long because it holds one case for every rule of every command, on shared stream fixtures.

use chrono::{TimeZone, Utc};
use forlop_domain::events::*;
use forlop_domain::*;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Fixed identities
// ---------------------------------------------------------------------------------------------

const P: Uuid = Uuid::from_u128(0x9000);

const RPH: Uuid = Uuid::from_u128(0x5001);
const POL: Uuid = Uuid::from_u128(0x5002);
const WARD: Uuid = Uuid::from_u128(0x5003);
const DAY: Uuid = Uuid::from_u128(0x5004);

const A: Uuid = Uuid::from_u128(0x7001);
const B: Uuid = Uuid::from_u128(0x7002);

const R1: Uuid = Uuid::from_u128(0x1001);
const R2: Uuid = Uuid::from_u128(0x1002);
const E1: Uuid = Uuid::from_u128(0xe001);
const E2: Uuid = Uuid::from_u128(0xe002);
const S1: Uuid = Uuid::from_u128(0x5e5_0001);
const S2: Uuid = Uuid::from_u128(0x5e5_0002);
const S3: Uuid = Uuid::from_u128(0x5e5_0003);
const ADM1: Uuid = Uuid::from_u128(0xad01);
const ADM2: Uuid = Uuid::from_u128(0xad02);

const NOT_FOUND: &str = "NOT_FOUND";
const ALREADY_EXISTS: &str = "ALREADY_EXISTS";
const INVALID_INPUT: &str = "INVALID_INPUT";

// ---------------------------------------------------------------------------------------------
// The given/when/then harness
// ---------------------------------------------------------------------------------------------

/// State of a stream that holds `events`.
fn given(events: &[Event]) -> StreamState {
    StreamState::from_events(events)
}

/// Given `given_events` on the stream and `refs` looked up, deciding `command` yields `expect`:
/// `Ok(event)` for the one event recorded, `Err(code)` for a refusal with that error code.
#[track_caller]
fn check(given_events: &[Event], refs: &References, command: Command, expect: Result<Event, &str>) {
    let shown = format!("{command:?}");
    let got = decide(&given(given_events), refs, command);
    match (got, expect) {
        (Ok(got), Ok(want)) => assert_eq!(got, want, "when {shown}"),
        (Err(err), Err(code)) => {
            assert_eq!(err.code(), code, "when {shown}: refused with {err:?}");
            assert!(!err.to_string().is_empty(), "when {shown}: a refusal explains itself");
        }
        (Ok(got), Err(code)) => panic!("when {shown}: expected {code}, got event {got:?}"),
        (Err(err), Ok(want)) => panic!("when {shown}: expected {want:?}, got {} ({err})", err.code()),
    }
}

/// The common case: deciding the command that records `event` yields `event` itself.
#[track_caller]
fn accepts(given_events: &[Event], refs: &References, event: impl Into<Event>) {
    let event = event.into();
    check(given_events, refs, when(event.clone()), Ok(event));
}

/// Deciding the command that would record `event` is refused with `code`.
#[track_caller]
fn refuses(given_events: &[Event], refs: &References, event: impl Into<Event>, code: &str) {
    check(given_events, refs, when(event.into()), Err(code));
}

/// The command a client sends to record `event` (patient commands on patient P).
fn when(event: impl Into<Event>) -> Command {
    Command::recording(P, event.into())
}

// ---------------------------------------------------------------------------------------------
// Readable builders
// ---------------------------------------------------------------------------------------------

/// A time in 2016, UTC.
fn t(month: u32, day: u32, hour: u32) -> Timestamp {
    Utc.with_ymd_and_hms(2016, month, day, hour, 0, 0).unwrap()
}

fn service(id: Uuid, name: &str, care_level: CareLevel) -> ServiceRegistered {
    ServiceRegistered { service_id: id, name: name.into(), care_level }
}

fn rph() -> ServiceRegistered {
    service(RPH, "Rask psykisk helsehjelp Gamle Oslo", CareLevel::Municipal)
}

fn pol() -> ServiceRegistered {
    service(POL, "DPS poliklinikk", CareLevel::SpecialistOutpatient)
}

fn ward() -> ServiceRegistered {
    service(WARD, "DPS døgnpost", CareLevel::SpecialistInpatient)
}

fn day() -> ServiceRegistered {
    service(DAY, "DPS dagbehandling", CareLevel::SpecialistDay)
}

fn therapist(id: Uuid, hpr: Option<&str>) -> TherapistRegistered {
    TherapistRegistered { therapist_id: id, name: format!("Terapeut {id}"), hpr_number: hpr.map(str::to_owned) }
}

fn patient(birth_year: i32) -> PatientRegistered {
    PatientRegistered { patient_id: P, birth_year, gender: Gender::Female, national_id: None }
}

/// Reference data the caller looked up for the command.
fn refs(service: Option<ServiceRegistered>, therapist: Option<TherapistRegistered>) -> References {
    References { service, therapist }
}

fn no_refs() -> References {
    References::default()
}

fn referral(id: Uuid, service_id: Uuid, received_at: Timestamp) -> ReferralReceived {
    ReferralReceived { referral_id: id, service_id, source: ReferralSource::Gp, received_at }
}

fn accepted(id: Uuid, at: Timestamp) -> ReferralDecided {
    ReferralDecided { referral_id: id, decision: ReferralDecision::Accepted, reason: None, decided_at: at }
}

fn rejected(id: Uuid, reason: Option<RejectionReason>, at: Timestamp) -> ReferralDecided {
    ReferralDecided { referral_id: id, decision: ReferralDecision::Rejected, reason, decided_at: at }
}

fn started(id: Uuid, service_id: Uuid, started_at: Timestamp) -> EpisodeStarted {
    EpisodeStarted { episode_id: id, service_id, referral_id: None, started_at, acute: false }
}

fn started_on(id: Uuid, service_id: Uuid, referral: Uuid, started_at: Timestamp) -> EpisodeStarted {
    EpisodeStarted { referral_id: Some(referral), ..started(id, service_id, started_at) }
}

fn ended(id: Uuid, ended_at: Timestamp) -> EpisodeEnded {
    EpisodeEnded { episode_id: id, reason: EndReason::Completed, ended_at }
}

fn assigned(episode_id: Uuid, therapist_id: Uuid, assigned_at: Timestamp) -> TherapistAssigned {
    TherapistAssigned { episode_id, therapist_id, assigned_at }
}

fn released(episode_id: Uuid, therapist_id: Uuid, released_at: Timestamp) -> TherapistReleased {
    TherapistReleased {
        episode_id,
        therapist_id,
        reason: ReleaseReason::SickLeave,
        patient_notified: false,
        released_at,
    }
}

fn session(id: Uuid, episode_id: Uuid, therapist_id: Uuid, at: Timestamp) -> SessionRecorded {
    SessionRecorded { session_id: id, episode_id, therapist_id, attendance: Attendance::Attended, at }
}

fn admitted(id: Uuid, service_id: Uuid, admitted_at: Timestamp) -> PatientAdmitted {
    PatientAdmitted { admission_id: id, service_id, admitted_at }
}

fn discharged(id: Uuid, discharged_at: Timestamp) -> PatientDischarged {
    PatientDischarged { admission_id: id, discharged_at }
}

fn stay(id: Uuid, service_id: Uuid, admitted_at: Timestamp, discharged_at: Timestamp) -> StayRecorded {
    StayRecorded { admission_id: id, service_id, admitted_at, discharged_at }
}

fn outcome(episode_id: Uuid, instrument: Instrument, items: &[u8], total: u32) -> OutcomeRecorded {
    OutcomeRecorded {
        episode_id,
        instrument,
        phase: MeasurePhase::Intake,
        items: items.to_vec(),
        total,
        measured_at: t(1, 11, 10),
    }
}

/// Patient P is registered.
fn registered() -> Vec<Event> {
    vec![patient(1985).into()]
}

/// Patient P is registered and `events` followed on the stream.
fn registered_then(events: impl IntoIterator<Item = Event>) -> Vec<Event> {
    let mut all = registered();
    all.extend(events);
    all
}

/// Patient P with episode E1 at RPH, started Jan 11 09:00.
fn in_episode(events: impl IntoIterator<Item = Event>) -> Vec<Event> {
    registered_then(std::iter::once(started(E1, RPH, t(1, 11, 9)).into()).chain(events))
}

// ---------------------------------------------------------------------------------------------
// Reference data: services, therapists, patients
// ---------------------------------------------------------------------------------------------

#[test]
fn registering_a_service() {
    let none = no_refs();
    accepts(&[], &none, rph());
    accepts(&[], &none, service(RPH, "x", CareLevel::Municipal));
    accepts(&[], &none, service(RPH, &"x".repeat(200), CareLevel::Municipal));
    refuses(&[rph().into()], &none, rph(), ALREADY_EXISTS);
    // Existence is checked before the input: a second registration is a duplicate, whatever it says.
    refuses(&[rph().into()], &none, service(RPH, "", CareLevel::Municipal), ALREADY_EXISTS);
    refuses(&[], &none, service(RPH, "", CareLevel::Municipal), INVALID_INPUT);
    refuses(&[], &none, service(RPH, "  \t ", CareLevel::Municipal), INVALID_INPUT);
    refuses(&[], &none, service(RPH, &"x".repeat(201), CareLevel::Municipal), INVALID_INPUT);
}

#[test]
fn name_length_is_counted_in_characters() {
    // Names are limited to 200 characters, not bytes: "ø" is two bytes in UTF-8.
    let none = no_refs();
    accepts(&[], &none, service(RPH, &"ø".repeat(200), CareLevel::Municipal));
    refuses(&[], &none, service(RPH, &"ø".repeat(201), CareLevel::Municipal), INVALID_INPUT);
    let long_name = TherapistRegistered { name: "Æ".repeat(101), ..therapist(A, None) };
    accepts(&[], &none, long_name);
}

#[test]
fn registering_a_therapist() {
    let none = no_refs();
    accepts(&[], &none, therapist(A, None));
    accepts(&[], &none, therapist(A, Some("1")));
    accepts(&[], &none, therapist(A, Some("123456789")));
    refuses(&[therapist(A, None).into()], &none, therapist(A, None), ALREADY_EXISTS);
    refuses(&[], &none, TherapistRegistered { name: String::new(), ..therapist(A, None) }, INVALID_INPUT);
    refuses(&[], &none, TherapistRegistered { name: " ".into(), ..therapist(A, None) }, INVALID_INPUT);
    for bad_hpr in ["", "1234567890", "12345678a", " 1234", "1234 ", "-1234", "١٢٣"] {
        refuses(&[], &none, therapist(A, Some(bad_hpr)), INVALID_INPUT);
    }
}

#[test]
fn registering_a_patient() {
    let none = no_refs();
    accepts(&[], &none, patient(1985));
    accepts(&[], &none, patient(1900));
    accepts(&[], &none, patient(2100));
    for gender in Gender::ALL {
        accepts(&[], &none, PatientRegistered { gender: *gender, ..patient(1985) });
    }
    refuses(&registered(), &none, patient(1985), ALREADY_EXISTS);
    refuses(&registered(), &none, patient(1985 + 1000), ALREADY_EXISTS);
    for bad_year in [1899, 2101, 0, -1985, i32::MIN, i32::MAX] {
        refuses(&[], &none, patient(bad_year), INVALID_INPUT);
    }
}

#[test]
fn patient_commands_need_a_registered_patient() {
    // Every reference the commands name is available: only the patient is missing.
    let all = refs(Some(ward()), Some(therapist(A, None)));
    let commands: Vec<Event> = vec![
        referral(R1, WARD, t(1, 4, 9)).into(),
        accepted(R1, t(1, 5, 9)).into(),
        started(E1, WARD, t(1, 11, 9)).into(),
        ended(E1, t(2, 8, 11)).into(),
        assigned(E1, A, t(1, 11, 9)).into(),
        released(E1, A, t(2, 8, 10)).into(),
        session(S1, E1, A, t(1, 11, 10)).into(),
        admitted(ADM1, WARD, t(3, 1, 8)).into(),
        discharged(ADM1, t(3, 5, 12)).into(),
        stay(ADM2, WARD, t(4, 1, 8), t(4, 9, 12)).into(),
        outcome(E1, Instrument::Phq9, &[1; 9], 9).into(),
    ];
    assert_eq!(commands.len(), 11, "one case for every patient command");
    for event in commands {
        refuses(&[], &all, event.clone(), NOT_FOUND);
        // Facts on the stream without its registration do not make the patient exist either.
        refuses(&[started(E1, WARD, t(1, 11, 9)).into()], &all, event, NOT_FOUND);
    }
}

/// Patient P with an accepted referral R1 to the ward, episode E1 on it with therapist A and a
/// session, an open admission ADM1 and an undecided referral R2: a history on which every
/// patient command has something to act on.
fn full_history() -> Vec<Event> {
    registered_then([
        referral(R1, WARD, t(1, 4, 9)).into(),
        accepted(R1, t(1, 5, 9)).into(),
        started_on(E1, WARD, R1, t(1, 11, 9)).into(),
        assigned(E1, A, t(1, 11, 9)).into(),
        session(S1, E1, A, t(1, 11, 10)).into(),
        admitted(ADM1, WARD, t(1, 20, 8)).into(),
        referral(R2, WARD, t(1, 25, 9)).into(),
    ])
}

#[test]
fn a_forgotten_patient_takes_no_more_facts_and_is_refused_as_an_unknown_patient_is() {
    const R3: Uuid = Uuid::from_u128(0x1003);
    let ward_a = refs(Some(ward()), Some(therapist(A, None)));
    let ward_b = refs(Some(ward()), Some(therapist(B, None)));
    let emergency = EpisodeStarted { acute: true, ..started(E2, WARD, t(2, 1, 9)) };
    // One command of every patient kind, each taken by the history before erasure (with the
    // open admission discharged first for a new one).
    let discharge: Event = discharged(ADM1, t(1, 28, 8)).into();
    let commands: Vec<(Event, &References, Option<Event>)> = vec![
        (referral(R3, WARD, t(2, 1, 9)).into(), &ward_a, None),
        (accepted(R2, t(2, 1, 9)).into(), &ward_a, None),
        (emergency.into(), &ward_a, None),
        (ended(E1, t(2, 8, 11)).into(), &ward_a, None),
        (assigned(E1, B, t(1, 12, 9)).into(), &ward_b, None),
        (released(E1, A, t(2, 8, 10)).into(), &ward_a, None),
        (session(S2, E1, A, t(1, 18, 10)).into(), &ward_a, None),
        (admitted(ADM2, WARD, t(3, 1, 8)).into(), &ward_a, Some(discharge.clone())),
        (discharge.clone(), &ward_a, None),
        (stay(ADM2, WARD, t(1, 1, 8), t(1, 5, 8)).into(), &ward_a, None),
        (outcome(E1, Instrument::Phq9, &[1; 9], 9).into(), &ward_a, None),
        (PatientForgotten { patient_id: P }.into(), &ward_a, None),
    ];
    assert_eq!(commands.len(), 12, "one case for every patient command");
    for (event, refs, first) in commands {
        let mut history = full_history();
        history.extend(first);
        assert!(decide(&given(&history), refs, when(event.clone())).is_ok(), "{event:?} is taken before erasure");
        history.push(PatientForgotten { patient_id: P }.into());
        let refused = decide(&given(&history), refs, when(event.clone())).expect_err("taken after erasure");
        let unknown = decide(&given(&[]), refs, when(event.clone())).expect_err("taken for no patient");
        assert_eq!(refused.code(), NOT_FOUND, "{event:?}");
        // Word for word: the refusal tells no one the patient was there and asked to be forgotten.
        assert_eq!(refused, unknown, "{event:?}");
    }
    // The id itself is never given out again: registering it is refused as for any patient.
    let mut forgotten = full_history();
    forgotten.push(PatientForgotten { patient_id: P }.into());
    refuses(&forgotten, &no_refs(), patient(1985), ALREADY_EXISTS);
}

#[test]
fn a_refusal_without_its_records_keeps_its_code_and_quotes_nothing_recorded() {
    let a = refs(Some(ward()), Some(therapist(A, None)));
    let history = full_history();
    let recorded_start = t(1, 11, 9).to_string();
    let cases: Vec<(Event, &[&str])> = vec![
        // Before the episode's start: the start is a recorded fact.
        (session(S2, E1, A, t(1, 10, 9)).into(), &["before the episode's startedAt"]),
        // Overlapping the open admission: its id is another fact.
        (stay(ADM2, WARD, t(1, 1, 8), t(3, 1, 8)).into(), &["overlaps a recorded stay"]),
        (admitted(ADM2, WARD, t(3, 1, 8)).into(), &["overlaps a recorded stay"]),
        // The referral already opened E1: E1 is not the command's.
        (started_on(E2, WARD, R1, t(2, 1, 9)).into(), &["already opened an episode"]),
        (accepted(R1, t(1, 6, 9)).into(), &["already decided"]),
    ];
    for (event, says) in cases {
        let full = decide(&given(&history), &a, when(event.clone())).expect_err("refused");
        let plain = full.without_records();
        assert_eq!(plain.code(), full.code(), "{event:?}");
        let text = plain.to_string();
        for s in says {
            assert!(text.contains(s), "{event:?}: {text}");
        }
        for secret in [recorded_start.as_str(), &ADM1.to_string(), &E1.to_string()] {
            assert!(!text.contains(secret), "{event:?}: {text} quotes {secret}");
        }
        assert!(!text.contains("recorded:"), "{text}");
    }
    // The full message still quotes it, for a caller who may read the patient.
    let full = decide(&given(&history), &a, when(session(S2, E1, A, t(1, 10, 9)))).unwrap_err();
    assert!(full.to_string().contains(&recorded_start), "{full}");
    // A refusal about the command alone is the same either way.
    let own = decide(&given(&history), &a, when(outcome(E1, Instrument::Phq9, &[1; 8], 8))).unwrap_err();
    assert_eq!(own.without_records(), own);
}

// ---------------------------------------------------------------------------------------------
// Referrals
// ---------------------------------------------------------------------------------------------

#[test]
fn receiving_a_referral() {
    let to_pol = refs(Some(pol()), None);
    accepts(&registered(), &to_pol, referral(R1, POL, t(1, 4, 9)));
    for source in ReferralSource::ALL {
        accepts(&registered(), &to_pol, ReferralReceived { source: *source, ..referral(R1, POL, t(1, 4, 9)) });
    }
    // The caller found no service, or a different one than the command names.
    refuses(&registered(), &no_refs(), referral(R1, POL, t(1, 4, 9)), NOT_FOUND);
    refuses(&registered(), &refs(Some(rph()), None), referral(R1, POL, t(1, 4, 9)), NOT_FOUND);

    let one = registered_then([referral(R1, POL, t(1, 4, 9)).into()]);
    refuses(&one, &to_pol, referral(R1, POL, t(1, 20, 9)), ALREADY_EXISTS);
    accepts(&one, &to_pol, referral(R2, POL, t(1, 20, 9)));
}

#[test]
fn deciding_a_referral() {
    let none = no_refs();
    let received = registered_then([referral(R1, POL, t(1, 4, 9)).into()]);
    accepts(&received, &none, accepted(R1, t(1, 5, 9)));
    accepts(&received, &none, rejected(R1, Some(RejectionReason::Capacity), t(1, 5, 9)));
    // A decision on the day of receipt, at the same instant, is not before it.
    accepts(&received, &none, accepted(R1, t(1, 4, 9)));

    refuses(&registered(), &none, accepted(R1, t(1, 5, 9)), NOT_FOUND);
    refuses(&received, &none, accepted(R2, t(1, 5, 9)), NOT_FOUND);

    refuses(&received, &none, rejected(R1, None, t(1, 5, 9)), INVALID_INPUT);
    let accepted_with_reason = ReferralDecided { reason: Some(RejectionReason::Other), ..accepted(R1, t(1, 5, 9)) };
    refuses(&received, &none, accepted_with_reason, INVALID_INPUT);
    refuses(&received, &none, accepted(R1, t(1, 3, 9)), INVALID_INPUT);

    // A referral is decided once: neither the same decision again nor a change of mind.
    let decided = registered_then([referral(R1, POL, t(1, 4, 9)).into(), accepted(R1, t(1, 5, 9)).into()]);
    refuses(&decided, &none, accepted(R1, t(1, 6, 9)), INVALID_INPUT);
    refuses(&decided, &none, rejected(R1, Some(RejectionReason::Capacity), t(1, 6, 9)), INVALID_INPUT);
    let was_rejected = registered_then([
        referral(R1, POL, t(1, 4, 9)).into(),
        rejected(R1, Some(RejectionReason::Capacity), t(1, 5, 9)).into(),
    ]);
    refuses(&was_rejected, &none, accepted(R1, t(1, 6, 9)), INVALID_INPUT);
}

// ---------------------------------------------------------------------------------------------
// Episodes
// ---------------------------------------------------------------------------------------------

#[test]
fn starting_an_episode() {
    let at_rph = refs(Some(rph()), None);
    let at_pol = refs(Some(pol()), None);
    accepts(&registered(), &at_rph, started(E1, RPH, t(1, 11, 9)));
    refuses(&registered(), &no_refs(), started(E1, RPH, t(1, 11, 9)), NOT_FOUND);
    refuses(&registered(), &at_pol, started(E1, RPH, t(1, 11, 9)), NOT_FOUND);
    refuses(&in_episode([]), &at_rph, started(E1, RPH, t(2, 11, 9)), ALREADY_EXISTS);
    accepts(&in_episode([]), &at_rph, started(E2, RPH, t(2, 11, 9)));
}

#[test]
fn starting_an_episode_on_a_referral() {
    let at_pol = refs(Some(pol()), None);
    let undecided = registered_then([referral(R1, POL, t(1, 4, 9)).into()]);
    let was_accepted = registered_then([referral(R1, POL, t(1, 4, 9)).into(), accepted(R1, t(1, 5, 9)).into()]);
    let was_rejected = registered_then([
        referral(R1, POL, t(1, 4, 9)).into(),
        rejected(R1, Some(RejectionReason::Capacity), t(1, 5, 9)).into(),
    ]);

    accepts(&was_accepted, &at_pol, started_on(E1, POL, R1, t(1, 11, 9)));
    // A start at the instant of the decision is not before it.
    accepts(&was_accepted, &at_pol, started_on(E1, POL, R1, t(1, 5, 9)));
    // An undecided referral must be accepted first; a start before the decision is refused.
    refuses(&undecided, &at_pol, started_on(E1, POL, R1, t(1, 11, 9)), INVALID_INPUT);
    refuses(&was_accepted, &at_pol, started_on(E1, POL, R1, t(1, 5, 8)), INVALID_INPUT);
    // A referral opens one episode.
    let opened = registered_then([
        referral(R1, POL, t(1, 4, 9)).into(),
        accepted(R1, t(1, 5, 9)).into(),
        started_on(E1, POL, R1, t(1, 11, 9)).into(),
    ]);
    refuses(&opened, &at_pol, started_on(E2, POL, R1, t(2, 11, 9)), INVALID_INPUT);

    refuses(&registered(), &at_pol, started_on(E1, POL, R1, t(1, 11, 9)), NOT_FOUND);
    refuses(&was_accepted, &at_pol, started_on(E1, POL, R2, t(1, 11, 9)), NOT_FOUND);
    refuses(&was_rejected, &at_pol, started_on(E1, POL, R1, t(1, 11, 9)), INVALID_INPUT);
    refuses(&was_accepted, &at_pol, started_on(E1, POL, R1, t(1, 4, 8)), INVALID_INPUT);
    // The referral was sent to POL, not RPH.
    refuses(&was_accepted, &refs(Some(rph()), None), started_on(E1, RPH, R1, t(1, 11, 9)), INVALID_INPUT);
}

#[test]
fn a_specialist_episode_needs_a_referral_unless_it_is_an_emergency_admission() {
    refuses(&registered(), &refs(Some(pol()), None), started(E1, POL, t(1, 11, 9)), INVALID_INPUT);
    refuses(&registered(), &refs(Some(ward()), None), started(E1, WARD, t(1, 11, 9)), INVALID_INPUT);
    let acute = EpisodeStarted { acute: true, ..started(E1, WARD, t(1, 11, 9)) };
    accepts(&registered(), &refs(Some(ward()), None), acute);
    // Municipal low-threshold services take patients without a referral.
    accepts(&registered(), &refs(Some(rph()), None), started(E1, RPH, t(1, 11, 9)));
}

#[test]
fn ending_an_episode() {
    let none = no_refs();
    accepts(&in_episode([]), &none, ended(E1, t(2, 8, 11)));
    accepts(&in_episode([]), &none, ended(E1, t(1, 11, 9)));
    for reason in EndReason::ALL {
        accepts(&in_episode([]), &none, EpisodeEnded { reason: *reason, ..ended(E1, t(2, 8, 11)) });
    }
    refuses(&registered(), &none, ended(E1, t(2, 8, 11)), NOT_FOUND);
    refuses(&in_episode([]), &none, ended(E2, t(2, 8, 11)), NOT_FOUND);
    refuses(&in_episode([ended(E1, t(2, 8, 11)).into()]), &none, ended(E1, t(2, 9, 11)), INVALID_INPUT);
    refuses(&in_episode([]), &none, ended(E1, t(1, 11, 8)), INVALID_INPUT);
}

#[test]
fn an_episode_does_not_end_before_its_last_session() {
    let none = no_refs();
    // Sessions Jan 11 and Feb 1, the Jan 11 one recorded late: the last session is the latest in
    // clinical time, not the last recorded.
    let with_sessions = in_episode([session(S2, E1, A, t(2, 1, 10)).into(), session(S1, E1, A, t(1, 11, 10)).into()]);
    refuses(&with_sessions, &none, ended(E1, t(1, 25, 10)), INVALID_INPUT);
    refuses(&with_sessions, &none, ended(E1, t(2, 1, 9)), INVALID_INPUT);
    accepts(&with_sessions, &none, ended(E1, t(2, 1, 10)));
    accepts(&with_sessions, &none, ended(E1, t(2, 8, 11)));
    // A session the patient missed still took place in the episode.
    let no_show = SessionRecorded { attendance: Attendance::NoShow, ..session(S1, E1, A, t(1, 25, 10)) };
    refuses(&in_episode([no_show.into()]), &none, ended(E1, t(1, 20, 10)), INVALID_INPUT);
    // Sessions in another episode do not hold this one open.
    let elsewhere = in_episode([started(E2, POL, t(1, 11, 9)).into(), session(S1, E2, A, t(3, 1, 10)).into()]);
    accepts(&elsewhere, &none, ended(E1, t(2, 8, 11)));
}

#[test]
fn an_episode_cannot_end_before_an_assignment_already_recorded() {
    let a = refs(None, Some(therapist(A, None)));
    let none = no_refs();
    // A was assigned on Feb 10. The episode is then ended on Feb 8, before that assignment.
    let assigned_feb_10 = in_episode([assigned(E1, A, t(2, 10, 9)).into()]);
    // Like sessions, assignments must lie within the episode whichever is recorded first.
    refuses(&assigned_feb_10, &none, ended(E1, t(2, 8, 11)), INVALID_INPUT);
    // The same facts in the other order are refused.
    let ended_feb_8 = in_episode([ended(E1, t(2, 8, 11)).into()]);
    refuses(&ended_feb_8, &a, assigned(E1, A, t(2, 10, 9)), INVALID_INPUT);

    // Related: a release lies within its episode too (it may be recorded late, but it is dated
    // when it happened), so it cannot be dated after the episode ended.
    let with_a_then_ended = in_episode([assigned(E1, A, t(1, 11, 9)).into(), ended(E1, t(2, 8, 11)).into()]);
    refuses(&with_a_then_ended, &none, released(E1, A, t(3, 1, 9)), INVALID_INPUT);
    accepts(&with_a_then_ended, &none, released(E1, A, t(2, 8, 11)));
}

// ---------------------------------------------------------------------------------------------
// Therapists on an episode
// ---------------------------------------------------------------------------------------------

#[test]
fn assigning_a_therapist() {
    let a = refs(None, Some(therapist(A, None)));
    let b = refs(None, Some(therapist(B, None)));
    accepts(&in_episode([]), &a, assigned(E1, A, t(1, 11, 9)));
    refuses(&in_episode([]), &no_refs(), assigned(E1, A, t(1, 11, 9)), NOT_FOUND);
    refuses(&in_episode([]), &b, assigned(E1, A, t(1, 11, 9)), NOT_FOUND);
    refuses(&in_episode([]), &a, assigned(E2, A, t(1, 11, 9)), NOT_FOUND);

    let with_a = in_episode([assigned(E1, A, t(1, 11, 9)).into()]);
    refuses(&with_a, &a, assigned(E1, A, t(1, 12, 9)), ALREADY_EXISTS);
    accepts(&with_a, &b, assigned(E1, B, t(1, 12, 9)));
    // A therapist released from the episode may come back.
    let a_released = in_episode([assigned(E1, A, t(1, 11, 9)).into(), released(E1, A, t(1, 20, 9)).into()]);
    accepts(&a_released, &a, assigned(E1, A, t(2, 1, 9)));
    // Being assigned in one episode says nothing about another.
    let other_episode = in_episode([assigned(E1, A, t(1, 11, 9)).into(), started(E2, POL, t(2, 1, 9)).into()]);
    accepts(&other_episode, &a, assigned(E2, A, t(2, 1, 9)));

    // Within the episode, bounds included.
    refuses(&in_episode([]), &a, assigned(E1, A, t(1, 11, 8)), INVALID_INPUT);
    let closed = in_episode([ended(E1, t(2, 8, 11)).into()]);
    refuses(&closed, &a, assigned(E1, A, t(2, 8, 12)), INVALID_INPUT);
    accepts(&closed, &a, assigned(E1, A, t(2, 8, 11)));
}

#[test]
fn releasing_a_therapist() {
    let none = no_refs();
    let with_a = in_episode([assigned(E1, A, t(1, 11, 9)).into()]);
    accepts(&with_a, &none, released(E1, A, t(2, 8, 10)));
    accepts(&with_a, &none, released(E1, A, t(1, 11, 9)));
    for reason in ReleaseReason::ALL {
        let notified = TherapistReleased { reason: *reason, patient_notified: true, ..released(E1, A, t(2, 8, 10)) };
        accepts(&with_a, &none, notified);
    }
    refuses(&with_a, &none, released(E2, A, t(2, 8, 10)), NOT_FOUND);
    refuses(&with_a, &none, released(E1, B, t(2, 8, 10)), INVALID_INPUT);
    refuses(&in_episode([]), &none, released(E1, A, t(2, 8, 10)), INVALID_INPUT);
    refuses(&with_a, &none, released(E1, A, t(1, 11, 8)), INVALID_INPUT);

    // Released once: a second release has no assignment left to end.
    let a_released = in_episode([assigned(E1, A, t(1, 11, 9)).into(), released(E1, A, t(1, 20, 9)).into()]);
    refuses(&a_released, &none, released(E1, A, t(1, 21, 9)), INVALID_INPUT);
    // Assigned again: the release is checked against the assignment still open.
    let a_back = in_episode([
        assigned(E1, A, t(1, 11, 9)).into(),
        released(E1, A, t(1, 20, 9)).into(),
        assigned(E1, A, t(2, 1, 9)).into(),
    ]);
    refuses(&a_back, &none, released(E1, A, t(1, 25, 9)), INVALID_INPUT);
    accepts(&a_back, &none, released(E1, A, t(2, 2, 9)));
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

#[test]
fn recording_a_session() {
    let a = refs(None, Some(therapist(A, None)));
    accepts(&in_episode([]), &a, session(S1, E1, A, t(1, 11, 10)));
    for attendance in Attendance::ALL {
        let s = SessionRecorded { attendance: *attendance, ..session(S1, E1, A, t(1, 11, 10)) };
        accepts(&in_episode([]), &a, s);
    }
    // A therapist need not be assigned to the episode to hold a session in it (ward staff).
    accepts(&in_episode([assigned(E1, B, t(1, 11, 9)).into()]), &a, session(S1, E1, A, t(1, 11, 10)));

    refuses(&in_episode([]), &no_refs(), session(S1, E1, A, t(1, 11, 10)), NOT_FOUND);
    refuses(&in_episode([]), &refs(None, Some(therapist(B, None))), session(S1, E1, A, t(1, 11, 10)), NOT_FOUND);
    refuses(&in_episode([]), &a, session(S1, E2, A, t(1, 11, 10)), NOT_FOUND);

    // Session ids are unique for the patient, across episodes.
    let one = in_episode([started(E2, RPH, t(1, 11, 9)).into(), session(S1, E1, A, t(1, 11, 10)).into()]);
    refuses(&one, &a, session(S1, E1, A, t(1, 18, 10)), ALREADY_EXISTS);
    refuses(&one, &a, session(S1, E2, A, t(1, 18, 10)), ALREADY_EXISTS);
    accepts(&one, &a, session(S2, E1, A, t(1, 18, 10)));
}

#[test]
fn a_session_falls_within_its_episode() {
    let a = refs(None, Some(therapist(A, None)));
    let open = in_episode([]);
    let closed = in_episode([ended(E1, t(2, 8, 11)).into()]);
    // The episode runs from Jan 11 09:00 to Feb 8 11:00, both bounds included.
    accepts(&open, &a, session(S1, E1, A, t(1, 11, 9)));
    accepts(&open, &a, session(S1, E1, A, t(12, 31, 9)));
    refuses(&open, &a, session(S1, E1, A, t(1, 11, 8)), INVALID_INPUT);
    accepts(&closed, &a, session(S1, E1, A, t(1, 11, 9)));
    accepts(&closed, &a, session(S1, E1, A, t(2, 8, 11)));
    refuses(&closed, &a, session(S1, E1, A, t(1, 11, 8)), INVALID_INPUT);
    refuses(&closed, &a, session(S1, E1, A, t(2, 8, 12)), INVALID_INPUT);
    let one_second_late = Utc.with_ymd_and_hms(2016, 2, 8, 11, 0, 1).unwrap();
    refuses(&closed, &a, session(S1, E1, A, one_second_late), INVALID_INPUT);
}

// ---------------------------------------------------------------------------------------------
// Admissions
// ---------------------------------------------------------------------------------------------

#[test]
fn admitting_a_patient() {
    let at_ward = refs(Some(ward()), None);
    accepts(&registered(), &at_ward, admitted(ADM1, WARD, t(3, 1, 8)));
    refuses(&registered(), &no_refs(), admitted(ADM1, WARD, t(3, 1, 8)), NOT_FOUND);
    refuses(&registered(), &refs(Some(pol()), None), admitted(ADM1, WARD, t(3, 1, 8)), NOT_FOUND);
    // Only an inpatient service admits.
    for (other, id) in [(rph(), RPH), (pol(), POL), (day(), DAY)] {
        refuses(&registered(), &refs(Some(other), None), admitted(ADM1, id, t(3, 1, 8)), INVALID_INPUT);
    }
    let stay = registered_then([admitted(ADM1, WARD, t(3, 1, 8)).into(), discharged(ADM1, t(3, 5, 12)).into()]);
    refuses(&stay, &at_ward, admitted(ADM1, WARD, t(4, 1, 8)), ALREADY_EXISTS);
}

#[test]
fn admissions_do_not_overlap() {
    let at_ward = refs(Some(ward()), None);
    // An open stay overlaps any new one, before or after its start.
    let open = registered_then([admitted(ADM1, WARD, t(3, 1, 8)).into()]);
    refuses(&open, &at_ward, admitted(ADM2, WARD, t(3, 3, 8)), INVALID_INPUT);
    refuses(&open, &at_ward, admitted(ADM2, WARD, t(12, 1, 8)), INVALID_INPUT);
    refuses(&open, &at_ward, admitted(ADM2, WARD, t(2, 1, 8)), INVALID_INPUT);

    // A stay from Mar 1 08:00 to Mar 5 12:00, as a half-open interval.
    let stay = registered_then([admitted(ADM1, WARD, t(3, 1, 8)).into(), discharged(ADM1, t(3, 5, 12)).into()]);
    refuses(&stay, &at_ward, admitted(ADM2, WARD, t(3, 1, 8)), INVALID_INPUT);
    refuses(&stay, &at_ward, admitted(ADM2, WARD, t(3, 3, 8)), INVALID_INPUT);
    refuses(&stay, &at_ward, admitted(ADM2, WARD, t(3, 5, 11)), INVALID_INPUT);
    // The new stay is open-ended when recorded, so it overlaps a stay that was discharged later.
    refuses(&stay, &at_ward, admitted(ADM2, WARD, t(2, 1, 8)), INVALID_INPUT);
    accepts(&stay, &at_ward, admitted(ADM2, WARD, t(3, 5, 12)));
    accepts(&stay, &at_ward, admitted(ADM2, WARD, t(4, 1, 8)));
}

#[test]
fn a_past_stay_is_checked_against_both_ends_in_either_recording_order() {
    let at_ward = refs(Some(ward()), None);
    const ADM3: Uuid = Uuid::from_u128(0xad03);
    // A later stay recorded first (Apr 1–9): a historical stay before it can still be recorded,
    // which an open-ended admission could not.
    let later = registered_then([stay(ADM1, WARD, t(4, 1, 8), t(4, 9, 12)).into()]);
    accepts(&later, &at_ward, stay(ADM2, WARD, t(3, 1, 8), t(3, 5, 12)));
    accepts(&later, &at_ward, stay(ADM2, WARD, t(3, 1, 8), t(4, 1, 8)));
    refuses(&later, &at_ward, admitted(ADM2, WARD, t(3, 1, 8)), INVALID_INPUT);
    // Overlaps at either end, or around it.
    refuses(&later, &at_ward, stay(ADM2, WARD, t(3, 30, 8), t(4, 2, 8)), INVALID_INPUT);
    refuses(&later, &at_ward, stay(ADM2, WARD, t(4, 8, 8), t(4, 20, 8)), INVALID_INPUT);
    refuses(&later, &at_ward, stay(ADM2, WARD, t(3, 1, 8), t(5, 1, 8)), INVALID_INPUT);
    // An open admission overlaps every stay that ends after it starts.
    let open = registered_then([admitted(ADM1, WARD, t(3, 1, 8)).into()]);
    refuses(&open, &at_ward, stay(ADM2, WARD, t(3, 10, 8), t(3, 12, 8)), INVALID_INPUT);
    accepts(&open, &at_ward, stay(ADM2, WARD, t(2, 1, 8), t(3, 1, 8)));
    // Its own rules: an inpatient service, an end after the start, a new id.
    refuses(&later, &refs(Some(pol()), None), stay(ADM3, POL, t(1, 1, 8), t(1, 2, 8)), INVALID_INPUT);
    refuses(&later, &at_ward, stay(ADM3, WARD, t(1, 2, 8), t(1, 2, 8)), INVALID_INPUT);
    refuses(&later, &at_ward, stay(ADM1, WARD, t(1, 1, 8), t(1, 2, 8)), ALREADY_EXISTS);
    // And it is discharged already.
    let done = registered_then([stay(ADM1, WARD, t(4, 1, 8), t(4, 9, 12)).into()]);
    refuses(&done, &no_refs(), discharged(ADM1, t(4, 10, 8)), INVALID_INPUT);
}

#[test]
fn discharging_a_patient() {
    let none = no_refs();
    let open = registered_then([admitted(ADM1, WARD, t(3, 1, 8)).into()]);
    accepts(&open, &none, discharged(ADM1, t(3, 5, 12)));
    accepts(&open, &none, discharged(ADM1, Utc.with_ymd_and_hms(2016, 3, 1, 8, 0, 1).unwrap()));
    refuses(&registered(), &none, discharged(ADM1, t(3, 5, 12)), NOT_FOUND);
    refuses(&open, &none, discharged(ADM2, t(3, 5, 12)), NOT_FOUND);
    refuses(&open, &none, discharged(ADM1, t(3, 1, 8)), INVALID_INPUT);
    refuses(&open, &none, discharged(ADM1, t(2, 28, 8)), INVALID_INPUT);
    let stay = registered_then([admitted(ADM1, WARD, t(3, 1, 8)).into(), discharged(ADM1, t(3, 5, 12)).into()]);
    refuses(&stay, &none, discharged(ADM1, t(3, 6, 12)), INVALID_INPUT);
}

// ---------------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------------

/// Deciding an outcome with `items` records the same outcome with the total derived from them,
/// whatever total the command carried.
#[track_caller]
fn outcome_total(instrument: Instrument, items: &[u8], claimed: u32, want: u32) {
    check(
        &in_episode([]),
        &no_refs(),
        when(outcome(E1, instrument, items, claimed)),
        Ok(outcome(E1, instrument, items, want).into()),
    );
}

#[test]
fn outcome_total_is_derived_from_items() {
    outcome_total(Instrument::Phq9, &[2, 2, 1, 2, 1, 1, 2, 1, 1], 99, 13);
    outcome_total(Instrument::Phq9, &[0; 9], 5, 0);
    outcome_total(Instrument::Phq9, &[3; 9], 0, 27);
    outcome_total(Instrument::Gad7, &[1, 2, 1, 2, 1, 2, 2], 0, 11);
    outcome_total(Instrument::Gad7, &[3; 7], 27, 21);
}

#[test]
fn outcome_items_must_fit_the_instrument() {
    let none = no_refs();
    let ep = in_episode([]);
    refuses(&registered(), &none, outcome(E1, Instrument::Phq9, &[1; 9], 9), NOT_FOUND);
    refuses(&ep, &none, outcome(E2, Instrument::Phq9, &[1; 9], 9), NOT_FOUND);
    refuses(&ep, &none, outcome(E1, Instrument::Phq9, &[1; 8], 8), INVALID_INPUT);
    refuses(&ep, &none, outcome(E1, Instrument::Phq9, &[1; 10], 10), INVALID_INPUT);
    refuses(&ep, &none, outcome(E1, Instrument::Phq9, &[], 0), INVALID_INPUT);
    refuses(&ep, &none, outcome(E1, Instrument::Gad7, &[1; 9], 9), INVALID_INPUT);
    refuses(&ep, &none, outcome(E1, Instrument::Gad7, &[1; 6], 6), INVALID_INPUT);
    // Items are scored 0 to 3.
    refuses(&ep, &none, outcome(E1, Instrument::Phq9, &[0, 0, 0, 4, 0, 0, 0, 0, 0], 4), INVALID_INPUT);
    refuses(&ep, &none, outcome(E1, Instrument::Gad7, &[1, 1, 1, 1, 1, 1, 4], 10), INVALID_INPUT);
    refuses(&ep, &none, outcome(E1, Instrument::Gad7, &[255, 1, 1, 1, 1, 1, 1], 0), INVALID_INPUT);
    // An outcome may still be recorded on an ended episode (discharge measures come late).
    let closed = in_episode([ended(E1, t(2, 8, 11)).into()]);
    for phase in MeasurePhase::ALL {
        let measured = OutcomeRecorded { phase: *phase, ..outcome(E1, Instrument::Gad7, &[0; 7], 0) };
        accepts(&closed, &none, measured);
    }
}

// ---------------------------------------------------------------------------------------------
// Command routing
// ---------------------------------------------------------------------------------------------

#[test]
fn commands_name_their_stream_and_references() {
    assert_eq!(when(rph()).stream(), StreamRef::Service(RPH));
    assert_eq!(when(therapist(A, None)).stream(), StreamRef::Therapist(A));
    assert_eq!(when(patient(1985)).stream(), StreamRef::Patient(P));
    assert_eq!(when(session(S1, E1, A, t(1, 11, 10))).stream(), StreamRef::Patient(P));

    let cases: Vec<(Command, Option<Uuid>, Option<Uuid>)> = vec![
        (when(referral(R1, POL, t(1, 4, 9))), Some(POL), None),
        (when(started(E1, RPH, t(1, 11, 9))), Some(RPH), None),
        (when(admitted(ADM1, WARD, t(3, 1, 8))), Some(WARD), None),
        (when(assigned(E1, A, t(1, 11, 9))), None, Some(A)),
        (when(session(S3, E1, B, t(1, 11, 10))), None, Some(B)),
        (when(released(E1, A, t(1, 11, 9))), None, None),
        (when(discharged(ADM1, t(3, 5, 12))), None, None),
        (when(rph()), None, None),
    ];
    for (command, service, therapist) in cases {
        assert_eq!(command.referenced_service(), service, "{command:?}");
        assert_eq!(command.referenced_therapist(), therapist, "{command:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Persisted format: upcasting and round-trips
// ---------------------------------------------------------------------------------------------

/// Decoding a v1 `PatientRegistered` payload whose `sex` field is `sex_json` (or absent) yields v2
/// with `gender`.
#[track_caller]
fn upcasts(sex_json: Option<&str>, gender: Gender) {
    let payload = match sex_json {
        Some(sex) => format!(r#"{{"patient_id":"{P}","birth_year":1985,"sex":{sex}}}"#),
        None => format!(r#"{{"patient_id":"{P}","birth_year":1985}}"#),
    };
    let event = Event::decode("PatientRegistered", 1, payload.as_bytes()).expect("v1 decodes");
    assert_eq!(
        event,
        Event::PatientRegistered(PatientRegistered { patient_id: P, birth_year: 1985, gender, national_id: None })
    );
    assert_eq!(event.schema_version(), 2, "upcast to the current version");
    assert_eq!(event.event_type(), "PatientRegistered");
}

#[test]
fn patient_registered_v1_is_upcast() {
    let event = Event::decode(
        "PatientRegistered",
        1,
        br#"{"patient_id":"00000000-0000-0000-0000-000000009000","birth_year":1985,"sex":"F"}"#,
    )
    .expect("v1 decodes");
    assert_eq!(event, patient(1985).into());

    upcasts(Some(r#""F""#), Gender::Female);
    upcasts(Some(r#""f""#), Gender::Female);
    upcasts(Some(r#""K""#), Gender::Female); // kvinne
    upcasts(Some(r#"" F ""#), Gender::Female);
    upcasts(Some(r#""M""#), Gender::Male);
    upcasts(Some(r#""m""#), Gender::Male);
    upcasts(None, Gender::Unknown);
    upcasts(Some("null"), Gender::Unknown);
    upcasts(Some(r#""""#), Gender::Unknown);
    upcasts(Some(r#""X""#), Gender::Other);
}

#[test]
fn unknown_types_and_versions_are_refused() {
    let cases = [
        ("PatientRegistered", 0),
        ("PatientRegistered", 3),
        ("SessionRecorded", 2),
        ("SessionRecorded", 0),
        ("ServiceRegistered", 2),
        ("PatientMoved", 1),
        ("sessionrecorded", 1),
        ("", 1),
    ];
    for (event_type, version) in cases {
        match Event::decode(event_type, version, b"{}") {
            Err(DecodeError::UnknownType { event_type: got_type, schema_version }) => {
                assert_eq!((got_type.as_str(), schema_version), (event_type, version));
            }
            other => panic!("{event_type} v{version}: expected UnknownType, got {other:?}"),
        }
    }
}

#[test]
fn malformed_payloads_are_refused() {
    let p = format!("{P}");
    let cases: Vec<(&str, u16, String)> = vec![
        ("SessionRecorded", 1, "{}".into()),
        ("SessionRecorded", 1, "not json".into()),
        ("SessionRecorded", 1, String::new()),
        ("PatientRegistered", 2, format!(r#"{{"patient_id":"{p}","birth_year":1985,"gender":7}}"#)),
        ("PatientRegistered", 2, format!(r#"{{"patient_id":"{p}","birth_year":1985}}"#)),
        ("PatientRegistered", 1, format!(r#"{{"patient_id":"{p}","birth_year":"1985","sex":"F"}}"#)),
        ("PatientRegistered", 1, r#"{"patient_id":"P","birth_year":1985}"#.into()),
        ("PatientRegistered", 1, format!(r#"{{"patient_id":"{p}","birth_year":1985,"sex":7}}"#)),
        ("OutcomeRecorded", 1, r#"{"items":[1,2,3]}"#.into()),
    ];
    for (event_type, version, payload) in cases {
        let err = Event::decode(event_type, version, payload.as_bytes())
            .expect_err(&format!("{event_type} v{version} {payload} is malformed"));
        assert!(
            matches!(&err, DecodeError::Malformed { event_type: got, schema_version, .. }
                if got == event_type && *schema_version == version),
            "{event_type} v{version} {payload}: expected Malformed, got {err:?}"
        );
        assert!(err.to_string().contains(event_type), "{err}");
    }
}

#[test]
fn a_code_this_version_does_not_know_decodes_as_unrecognised() {
    // A newer writer's gender code is shown as such, not refused as malformed; an old code that
    // was never a gender (the v1 "F") is no different.
    for code in ["NON_BINARY", "F"] {
        let payload = format!(r#"{{"patient_id":"{P}","birth_year":1985,"gender":"{code}"}}"#);
        match Event::decode("PatientRegistered", 2, payload.as_bytes()).unwrap() {
            Event::PatientRegistered(e) => assert_eq!(e.gender, Gender::Unrecognised),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(Gender::Unrecognised.code(), "UNRECOGNISED");
    assert!(!Gender::ALL.contains(&Gender::Unrecognised), "reports list recordable codes");
}

/// One instance of every event the current build writes, optional fields both ways.
fn every_event() -> Vec<Event> {
    let precise = Utc.with_ymd_and_hms(2016, 3, 7, 9, 15, 30).unwrap() + chrono::Duration::nanoseconds(123_456_789);
    vec![
        rph().into(),
        ward().into(),
        therapist(A, None).into(),
        therapist(B, Some("123456789")).into(),
        patient(1985).into(),
        PatientRegistered { gender: Gender::Unknown, ..patient(1900) }.into(),
        referral(R1, POL, t(1, 4, 9)).into(),
        accepted(R1, t(1, 5, 9)).into(),
        rejected(R2, Some(RejectionReason::NotInTargetGroup), t(1, 5, 9)).into(),
        started(E1, RPH, t(1, 11, 9)).into(),
        started_on(E2, POL, R1, t(2, 15, 9)).into(),
        ended(E1, t(2, 8, 11)).into(),
        assigned(E1, A, t(1, 11, 9)).into(),
        TherapistReleased { reason: ReleaseReason::EpisodeEnded, patient_notified: true, ..released(E1, A, precise) }
            .into(),
        session(S1, E1, A, t(1, 11, 10)).into(),
        SessionRecorded { attendance: Attendance::CancelledByService, ..session(S2, E1, B, precise) }.into(),
        admitted(ADM1, WARD, t(3, 1, 8)).into(),
        discharged(ADM1, t(3, 5, 12)).into(),
        stay(ADM2, WARD, t(4, 1, 8), t(4, 9, 12)).into(),
        outcome(E1, Instrument::Phq9, &[2, 2, 1, 2, 1, 1, 2, 1, 1], 13).into(),
        OutcomeRecorded { phase: MeasurePhase::Discharge, ..outcome(E1, Instrument::Gad7, &[0; 7], 0) }.into(),
    ]
}

/// The envelope names of the current events; a new variant fails to compile here until listed.
fn expected_envelope(event: &Event) -> (&'static str, u16) {
    match event {
        Event::ServiceRegistered(_) => ("ServiceRegistered", 1),
        Event::TherapistRegistered(_) => ("TherapistRegistered", 1),
        Event::PatientRegistered(_) => ("PatientRegistered", 2),
        Event::ReferralReceived(_) => ("ReferralReceived", 1),
        Event::ReferralDecided(_) => ("ReferralDecided", 1),
        Event::EpisodeStarted(_) => ("EpisodeStarted", 1),
        Event::EpisodeEnded(_) => ("EpisodeEnded", 1),
        Event::TherapistAssigned(_) => ("TherapistAssigned", 1),
        Event::TherapistReleased(_) => ("TherapistReleased", 1),
        Event::SessionRecorded(_) => ("SessionRecorded", 1),
        Event::PatientAdmitted(_) => ("PatientAdmitted", 1),
        Event::PatientDischarged(_) => ("PatientDischarged", 1),
        Event::StayRecorded(_) => ("StayRecorded", 1),
        Event::OutcomeRecorded(_) => ("OutcomeRecorded", 1),
        Event::PatientForgotten(_) => ("PatientForgotten", 1),
    }
}

#[test]
fn every_current_event_round_trips() {
    let events = every_event();
    let mut types: Vec<&str> = events.iter().map(Event::event_type).collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(types.len(), 14, "every event type is covered: {types:?}");

    for event in events {
        assert_eq!((event.event_type(), event.schema_version()), expected_envelope(&event));
        let payload = event.to_payload();
        let decoded = Event::decode(event.event_type(), event.schema_version(), &payload)
            .unwrap_or_else(|e| panic!("{event:?} does not decode: {e}"));
        assert_eq!(decoded, event);
        // Canonical: encoding the decoded event gives the same bytes.
        assert_eq!(decoded.to_payload(), payload);
    }
}

#[test]
fn a_placeholder_id_or_an_unrecognised_code_in_any_field_of_any_event_is_found() {
    // Each field of each event type, set in its stored JSON to what must be refused, and read back.
    let codes = ["care_level", "gender", "source", "decision", "reason", "attendance", "instrument", "phase"];
    let mut checked = 0;
    for event in every_event() {
        assert_eq!(event.first_bad_field(), None, "{event:?}");
        let payload: serde_json::Value = serde_json::from_slice(&event.to_payload()).unwrap();
        for (field, value) in payload.as_object().unwrap() {
            let bad: Vec<serde_json::Value> =
                if field.ends_with("_id") && value.as_str().is_some_and(|v| v.parse::<Uuid>().is_ok()) {
                    vec![Uuid::nil().to_string().into(), Uuid::max().to_string().into()]
                } else if codes.contains(&field.as_str()) && value.is_string() {
                    vec!["NOT_A_CODE_THIS_VERSION_KNOWS".into()]
                } else {
                    continue;
                };
            for b in bad {
                let mut changed = payload.clone();
                changed[field] = b;
                let bytes = serde_json::to_vec(&changed).unwrap();
                let read = Event::decode(event.event_type(), event.schema_version(), &bytes).unwrap();
                let found = read.first_bad_field().unwrap_or_else(|| panic!("{field} of {read:?} passed"));
                assert!(found.starts_with(&format!("{field}: ")), "{found}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "{checked}");
}

#[test]
fn payloads_are_json_of_the_event_fields() {
    let payload: serde_json::Value = serde_json::from_slice(&Event::from(patient(1985)).to_payload()).unwrap();
    assert_eq!(payload, serde_json::json!({ "patient_id": P, "birth_year": 1985, "gender": "FEMALE" }));
    // Absent options are left out, not written as null.
    let payload: serde_json::Value = serde_json::from_slice(&Event::from(therapist(A, None)).to_payload()).unwrap();
    assert!(payload.get("hpr_number").is_none(), "{payload}");
    let payload: serde_json::Value =
        serde_json::from_slice(&Event::from(started(E1, RPH, t(1, 11, 9))).to_payload()).unwrap();
    assert!(payload.get("referral_id").is_none(), "{payload}");
    assert_eq!(payload["started_at"], "2016-01-11T09:00:00Z");
}
