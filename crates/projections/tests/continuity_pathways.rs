//! Continuity of care over whole pathways: events are folded into a `ReadModel` in log order, as the
//! server does, and `continuity` is asked of the patient's view.
//!
//! Every event is first decided by the domain against the stream so far, so each pathway here is
//! one the system would really record.
//!
//! Long because each pathway is written out event by event, as a reader checks it by hand.

use chrono::{Duration, TimeZone, Utc};
use forlop_domain::events::*;
use forlop_domain::*;
use forlop_projections::*;
use uuid::Uuid;

mod support;
use support::Log;

// ---------------------------------------------------------------------------------------------
// Fixed identities
// ---------------------------------------------------------------------------------------------

const P: Uuid = Uuid::from_u128(0x9000);

const RPH: Uuid = Uuid::from_u128(0x5001);
const POL: Uuid = Uuid::from_u128(0x5002);
const WARD: Uuid = Uuid::from_u128(0x5003);

const A: Uuid = Uuid::from_u128(0x7001);
const B: Uuid = Uuid::from_u128(0x7002);
const C: Uuid = Uuid::from_u128(0x7003);
const D: Uuid = Uuid::from_u128(0x7004);
const W: Uuid = Uuid::from_u128(0x7005);

const E1: Uuid = Uuid::from_u128(0xe001);
const E2: Uuid = Uuid::from_u128(0xe002);
const E3: Uuid = Uuid::from_u128(0xe003);
const ADM: Uuid = Uuid::from_u128(0xad01);

// ---------------------------------------------------------------------------------------------
// The log: decide, then fold, numbering positions in apply order
// ---------------------------------------------------------------------------------------------

impl Log {
    /// Services RPH (MUNICIPAL), POL (SPECIALIST_OUTPATIENT) and WARD (SPECIALIST_INPATIENT),
    /// therapists A, B, C, D and W, and patient P born 1985, female.
    fn new() -> Log {
        let mut log = Log::empty();
        log.record(service(RPH, "Rask psykisk helsehjelp Gamle Oslo", CareLevel::Municipal));
        log.record(service(POL, "DPS poliklinikk", CareLevel::SpecialistOutpatient));
        log.record(service(WARD, "DPS døgnpost", CareLevel::SpecialistInpatient));
        for (id, name) in [(A, "A"), (B, "B"), (C, "C"), (D, "D"), (W, "W")] {
            log.record(TherapistRegistered { therapist_id: id, name: format!("Terapeut {name}"), hpr_number: None });
        }
        log.patient(P, 1985, Gender::Female);
        log
    }

    fn continuity(&self) -> Continuity {
        continuity(&self.model.patients[&P])
    }
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

/// An episode without a referral: these pathways are about continuity, so the specialist
/// episodes (DPS clinic and ward) come as emergency admissions rather than through referrals,
/// which `decide.rs` and the analytics tests cover.
fn started(id: Uuid, service_id: Uuid, started_at: Timestamp) -> EpisodeStarted {
    EpisodeStarted { episode_id: id, service_id, referral_id: None, started_at, acute: service_id != RPH }
}

fn ended(id: Uuid, ended_at: Timestamp) -> EpisodeEnded {
    EpisodeEnded { episode_id: id, reason: EndReason::Completed, ended_at }
}

fn assigned(episode_id: Uuid, therapist_id: Uuid, assigned_at: Timestamp) -> TherapistAssigned {
    TherapistAssigned { episode_id, therapist_id, assigned_at }
}

fn released(
    episode_id: Uuid,
    therapist_id: Uuid,
    reason: ReleaseReason,
    patient_notified: bool,
    released_at: Timestamp,
) -> TherapistReleased {
    TherapistReleased { episode_id, therapist_id, reason, patient_notified, released_at }
}

fn admitted(at: Timestamp) -> PatientAdmitted {
    PatientAdmitted { admission_id: ADM, service_id: WARD, admitted_at: at }
}

fn discharged(at: Timestamp) -> PatientDischarged {
    PatientDischarged { admission_id: ADM, discharged_at: at }
}

fn segment(care_level: CareLevel, from: Timestamp, to: Timestamp, therapist_ids: &[Uuid], sessions: u32) -> Segment {
    Segment { care_level, from, to, therapist_ids: therapist_ids.to_vec(), sessions }
}

#[track_caller]
fn assert_close(got: Option<f64>, want: f64) {
    let got = got.expect("index is defined");
    assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
}

/// The care levels of the segments, in order.
fn care_levels(c: &Continuity) -> Vec<CareLevel> {
    c.segments.iter().map(|s| s.care_level).collect()
}

// ---------------------------------------------------------------------------------------------
// The hand-worked pathway
// ---------------------------------------------------------------------------------------------

/// Patient P's 2016 pathway: RPH with A, then DPS outpatient with A, a short stay on the ward
/// with W and A, and B after A's sick leave. With `late_entry`, A's Feb 22 session is recorded
/// last, after everything else; without it, in its clinical place.
fn hand_worked_pathway(late_entry: bool) -> Log {
    let mut log = Log::new();
    log.record(started(E1, RPH, t(1, 11, 9)))
        .record(assigned(E1, A, t(1, 11, 9)))
        .attended(E1, A, t(1, 11, 10))
        .attended(E1, A, t(1, 18, 10))
        .session(E1, A, Attendance::NoShow, t(1, 25, 10))
        .attended(E1, A, t(2, 1, 10))
        .record(released(E1, A, ReleaseReason::EpisodeEnded, true, t(2, 8, 10)))
        .record(ended(E1, t(2, 8, 11)))
        .record(started(E2, POL, t(2, 15, 9)))
        .record(assigned(E2, A, t(2, 15, 9)))
        .attended(E2, A, t(2, 15, 10));
    if !late_entry {
        log.attended(E2, A, t(2, 22, 10));
    }
    log.record(admitted(t(3, 1, 8)))
        .attended(E2, W, t(3, 2, 10))
        .attended(E2, A, t(3, 3, 10))
        .record(discharged(t(3, 5, 12)))
        .record(released(E2, A, ReleaseReason::SickLeave, false, t(3, 7, 9)))
        .record(assigned(E2, B, t(3, 12, 9)))
        .attended(E2, B, t(3, 14, 10))
        .attended(E2, B, t(3, 21, 10));
    if late_entry {
        log.attended(E2, A, t(2, 22, 10));
    }
    log
}

#[test]
fn hand_worked_pathway_gives_every_figure() {
    let c = hand_worked_pathway(true).continuity();

    assert_eq!(c.attended_sessions, 9);
    assert_eq!(c.distinct_therapists, 3);
    assert_eq!(
        c.segments,
        vec![
            segment(CareLevel::Municipal, t(1, 11, 10), t(2, 1, 10), &[A], 3),
            segment(CareLevel::SpecialistOutpatient, t(2, 15, 10), t(2, 22, 10), &[A], 2),
            segment(CareLevel::SpecialistInpatient, t(3, 2, 10), t(3, 3, 10), &[W, A], 2),
            segment(CareLevel::SpecialistOutpatient, t(3, 14, 10), t(3, 21, 10), &[B], 2),
        ]
    );
    // RPH -> DPS keeps A, the admission keeps A, the discharge hands over to B.
    assert_eq!(c.care_level_transitions, 3);
    assert_eq!(c.transitions_keeping_therapist, 2);
    assert_eq!(c.same_therapist_across_care_levels, Some(false));

    // Clinical order of therapists: A A A A A W A B B, so n = {A: 6, W: 1, B: 2}.
    assert_close(c.indices.coc, 32.0 / 72.0);
    assert_close(c.indices.upc, 6.0 / 9.0);
    assert_close(c.indices.secon, 5.0 / 8.0);
    assert_close(c.indices.mmci, (1.0 - 3.0 / 9.1) / (1.0 - 1.0 / 9.1));

    assert_eq!(
        c.handovers,
        vec![
            Handover {
                episode_id: E1,
                from_therapist_id: A,
                to_therapist_id: None,
                reason: ReleaseReason::EpisodeEnded,
                patient_notified: true,
                released_at: t(2, 8, 10),
                gap_days: None,
            },
            Handover {
                episode_id: E2,
                from_therapist_id: A,
                to_therapist_id: Some(B),
                reason: ReleaseReason::SickLeave,
                patient_notified: false,
                released_at: t(3, 7, 9),
                gap_days: Some(5.0),
            },
        ]
    );
}

#[test]
fn hand_worked_pathway_read_model() {
    let log = hand_worked_pathway(true);
    let p = &log.model.patients[&P];
    // 9 registrations (3 services, 5 therapists, the patient), then 20 facts on P's stream.
    assert_eq!(log.model.position, 29);
    assert_eq!(p.version, 21, "the registration and 20 facts");
    assert_eq!(p.sessions().len(), 10, "the no-show is kept in the view");
    assert_eq!(
        p.episodes.iter().map(|e| e.care_level).collect::<Vec<_>>(),
        [CareLevel::Municipal, CareLevel::SpecialistOutpatient]
    );
    assert_eq!(p.admissions.len(), 1);
    assert_eq!(p.admissions[0].discharged_at, Some(t(3, 5, 12)));
    // The late entry is the last recorded, although it is the fifth attended session clinically.
    let late = p.sessions().last().unwrap();
    assert_eq!(late.at, t(2, 22, 10));
    // Every assignment of A was ended by its release; B is still assigned.
    let open: Vec<_> = p.assignments.iter().filter(|a| a.released_at.is_none()).map(|a| a.therapist_id).collect();
    assert_eq!(open, [B]);
}

// ---------------------------------------------------------------------------------------------
// Recording order versus clinical order
// ---------------------------------------------------------------------------------------------

#[test]
fn late_recorded_session_gives_the_in_order_answer() {
    let late = hand_worked_pathway(true);
    let in_order = hand_worked_pathway(false);
    // The logs differ (the session sits at another place in recording order)...
    let place_of_feb_22 = |log: &Log| log.model.patients[&P].sessions().position(|s| s.at == t(2, 22, 10));
    assert_ne!(place_of_feb_22(&late), place_of_feb_22(&in_order));
    // ...but the answer is the same, to the last bit.
    assert_eq!(late.continuity(), in_order.continuity());

    // Sessions recorded newest first are read in clinical order too: A A B, not B A A.
    let mut reversed = Log::new();
    reversed.record(started(E1, RPH, t(1, 11, 9)));
    reversed.attended(E1, B, t(1, 25, 10)).attended(E1, A, t(1, 18, 10)).attended(E1, A, t(1, 11, 10));
    let c = reversed.continuity();
    assert_close(c.indices.secon, 0.5);
    assert_eq!(c.segments, vec![segment(CareLevel::Municipal, t(1, 11, 10), t(1, 25, 10), &[A, B], 3)]);
}

#[test]
fn a_late_admission_reclassifies_earlier_sessions() {
    // The stay is recorded after the sessions it contains: they still count as inpatient care.
    let mut log = Log::new();
    log.record(started(E1, POL, t(2, 15, 9)))
        .attended(E1, A, t(2, 15, 10))
        .attended(E1, A, t(3, 2, 10))
        .attended(E1, A, t(3, 8, 10))
        .record(admitted(t(3, 1, 8)))
        .record(discharged(t(3, 5, 12)));
    let c = log.continuity();
    assert_eq!(
        care_levels(&c),
        [CareLevel::SpecialistOutpatient, CareLevel::SpecialistInpatient, CareLevel::SpecialistOutpatient]
    );
    assert_eq!(c.care_level_transitions, 2);
    assert_eq!(c.same_therapist_across_care_levels, Some(true));
}

#[test]
fn ties_in_clinical_time_are_broken_by_recording_order() {
    // A at 10:00, then A and B both at 11:00 (say a joint session entered as two).
    let tied = |first: Uuid, second: Uuid| {
        let mut log = Log::new();
        log.record(started(E1, RPH, t(1, 11, 9)))
            .attended(E1, A, t(1, 11, 10))
            .attended(E1, first, t(1, 11, 11))
            .attended(E1, second, t(1, 11, 11));
        log.continuity()
    };
    let a_first = tied(A, B); // A A B
    let b_first = tied(B, A); // A B A
    assert_close(a_first.indices.secon, 0.5);
    assert_close(b_first.indices.secon, 0.0);
    // The other indices do not depend on order.
    assert_eq!(a_first.indices.coc, b_first.indices.coc);
    assert_eq!(a_first.indices.upc, b_first.indices.upc);
    assert_eq!(a_first.indices.mmci, b_first.indices.mmci);
    assert_close(a_first.indices.coc, 2.0 / 6.0);
    assert_eq!(a_first.segments[0].therapist_ids, [A, B]);
    assert_eq!(b_first.segments[0].therapist_ids, [A, B]);
    // Replaying the same log gives the same answer: the tie-break is reproducible.
    assert_eq!(tied(B, A), b_first);
}

#[test]
fn ties_at_a_care_level_boundary_follow_recording_order() {
    // A session at the admission instant is inpatient; which therapist carries the transition
    // depends only on which of two simultaneous outpatient sessions was recorded last.
    let tied = |first: Uuid, second: Uuid| {
        let mut log = Log::new();
        log.record(started(E1, POL, t(2, 15, 9)))
            .attended(E1, first, t(2, 20, 10))
            .attended(E1, second, t(2, 20, 10))
            .record(admitted(t(3, 1, 8)))
            .attended(E1, A, t(3, 1, 8));
        log.continuity()
    };
    assert_eq!(tied(B, A).same_therapist_across_care_levels, Some(true));
    assert_eq!(tied(A, B).same_therapist_across_care_levels, Some(false));
}

// ---------------------------------------------------------------------------------------------
// What counts as a session
// ---------------------------------------------------------------------------------------------

#[test]
fn sessions_not_attended_are_ignored() {
    let base = |log: &mut Log| {
        log.record(started(E1, RPH, t(1, 11, 9))).attended(E1, A, t(1, 11, 10)).attended(E1, A, t(1, 25, 10));
    };
    let mut only_attended = Log::new();
    base(&mut only_attended);

    let mut with_misses = Log::new();
    base(&mut with_misses);
    with_misses
        .session(E1, B, Attendance::NoShow, t(1, 18, 10))
        .session(E1, C, Attendance::CancelledByPatient, t(1, 20, 10))
        .session(E1, B, Attendance::CancelledByService, t(1, 22, 10))
        // A missed appointment during a stay does not make a stay segment either.
        .record(admitted(t(2, 1, 8)))
        .session(E1, W, Attendance::NoShow, t(2, 2, 10))
        .record(discharged(t(2, 5, 12)));

    let c = with_misses.continuity();
    assert_eq!(with_misses.model.patients[&P].sessions().len(), 6);
    assert_eq!(c.attended_sessions, 2);
    assert_eq!(c.distinct_therapists, 1);
    assert_eq!(c.segments, vec![segment(CareLevel::Municipal, t(1, 11, 10), t(1, 25, 10), &[A], 2)]);
    assert_eq!(c.care_level_transitions, 0);
    for index in [c.indices.coc, c.indices.upc, c.indices.secon, c.indices.mmci] {
        assert_close(index, 1.0);
    }
    assert_eq!(c, only_attended.continuity());
}

#[test]
fn admission_window_is_half_open() {
    // Outpatient episode at POL; on the ward from Mar 1 08:00 until Mar 5 12:00.
    let mut log = Log::new();
    let just_before_discharge = t(3, 5, 12) - Duration::seconds(1);
    log.record(started(E1, POL, t(2, 15, 9)))
        .record(admitted(t(3, 1, 8)))
        .record(discharged(t(3, 5, 12)))
        .attended(E1, A, t(3, 1, 8) - Duration::seconds(1))
        .attended(E1, A, t(3, 1, 8))
        .attended(E1, W, just_before_discharge)
        .attended(E1, W, t(3, 5, 12));
    let c = log.continuity();
    assert_eq!(
        c.segments,
        vec![
            segment(
                CareLevel::SpecialistOutpatient,
                t(3, 1, 8) - Duration::seconds(1),
                t(3, 1, 8) - Duration::seconds(1),
                &[A],
                1
            ),
            segment(CareLevel::SpecialistInpatient, t(3, 1, 8), just_before_discharge, &[A, W], 2),
            segment(CareLevel::SpecialistOutpatient, t(3, 5, 12), t(3, 5, 12), &[W], 1),
        ]
    );
    assert_eq!(c.care_level_transitions, 2);
    assert_eq!(c.transitions_keeping_therapist, 2);
    assert_eq!(c.same_therapist_across_care_levels, Some(true));
}

#[test]
fn an_open_admission_lasts_until_now() {
    // Admitted from a municipal episode and not yet discharged: later sessions are inpatient.
    let mut log = Log::new();
    log.record(started(E1, RPH, t(1, 11, 9)))
        .attended(E1, A, t(1, 11, 10))
        .record(admitted(t(2, 1, 8)))
        .attended(E1, A, t(2, 2, 10))
        .attended(E1, W, t(12, 31, 10));
    let c = log.continuity();
    assert_eq!(care_levels(&c), [CareLevel::Municipal, CareLevel::SpecialistInpatient]);
    assert_eq!(c.segments[1].therapist_ids, [A, W]);
    assert_eq!(c.same_therapist_across_care_levels, Some(true));
}

#[test]
fn same_therapist_across_care_levels_needs_a_transition() {
    // Two episodes at the same level with a change of therapist: one segment, no transition.
    let mut log = Log::new();
    log.record(started(E1, RPH, t(1, 11, 9)))
        .attended(E1, A, t(1, 11, 10))
        .attended(E1, B, t(1, 18, 10))
        .record(ended(E1, t(2, 1, 9)))
        .record(started(E2, RPH, t(2, 8, 9)))
        .attended(E2, A, t(2, 8, 10));
    let c = log.continuity();
    assert_eq!(c.care_level_transitions, 0);
    assert_eq!(c.transitions_keeping_therapist, 0);
    assert_eq!(c.same_therapist_across_care_levels, None);
    assert_eq!(c.segments, vec![segment(CareLevel::Municipal, t(1, 11, 10), t(2, 8, 10), &[A, B], 3)]);

    // One transition with A on both sides, for contrast: Some(true).
    log.record(started(E3, POL, t(3, 1, 9))).attended(E3, A, t(3, 1, 10));
    let c = log.continuity();
    assert_eq!(c.care_level_transitions, 1);
    assert_eq!(c.same_therapist_across_care_levels, Some(true));

    // No sessions at all: no transition either.
    assert_eq!(Log::new().continuity().same_therapist_across_care_levels, None);
}

#[test]
fn a_transition_keeps_the_therapist_only_if_the_last_one_before_it_continues() {
    // Municipal A then B; outpatient A only. A is in the next segment but B saw the patient last.
    let mut log = Log::new();
    log.record(started(E1, RPH, t(1, 11, 9)))
        .attended(E1, A, t(1, 11, 10))
        .attended(E1, B, t(1, 18, 10))
        .record(started(E2, POL, t(2, 1, 9)))
        .attended(E2, A, t(2, 1, 10));
    let c = log.continuity();
    assert_eq!(c.care_level_transitions, 1);
    assert_eq!(c.transitions_keeping_therapist, 0);
    assert_eq!(c.same_therapist_across_care_levels, Some(false));
}

#[test]
fn indices_need_two_attended_sessions() {
    let undefined = Indices { coc: None, upc: None, secon: None, mmci: None };

    let empty = Log::new().continuity();
    assert_eq!(empty.attended_sessions, 0);
    assert_eq!(empty.distinct_therapists, 0);
    assert_eq!(empty.indices, undefined);
    assert!(empty.segments.is_empty());
    assert!(empty.handovers.is_empty());

    let mut one = Log::new();
    one.record(started(E1, RPH, t(1, 11, 9)))
        .attended(E1, A, t(1, 11, 10))
        .session(E1, A, Attendance::NoShow, t(1, 18, 10))
        .session(E1, B, Attendance::CancelledByPatient, t(1, 25, 10));
    let c = one.continuity();
    assert_eq!(c.attended_sessions, 1);
    assert_eq!(c.distinct_therapists, 1);
    assert_eq!(c.indices, undefined);
    assert_eq!(c.segments, vec![segment(CareLevel::Municipal, t(1, 11, 10), t(1, 11, 10), &[A], 1)]);

    // The second attended session defines them all.
    one.attended(E1, A, t(2, 1, 10));
    let c = one.continuity();
    for index in [c.indices.coc, c.indices.upc, c.indices.secon, c.indices.mmci] {
        assert_close(index, 1.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Handovers
// ---------------------------------------------------------------------------------------------

/// The handovers of patient P as (from, to, gapDays), in order of release.
fn handovers(log: &Log) -> Vec<(Uuid, Option<Uuid>, Option<f64>)> {
    log.continuity().handovers.into_iter().map(|h| (h.from_therapist_id, h.to_therapist_id, h.gap_days)).collect()
}

fn sick_leave(episode_id: Uuid, therapist_id: Uuid, at: Timestamp) -> TherapistReleased {
    released(episode_id, therapist_id, ReleaseReason::SickLeave, false, at)
}

#[test]
fn handover_to_a_therapist_already_active_is_immediate() {
    let mut log = Log::new();
    log.record(started(E1, POL, t(1, 1, 9)))
        .record(started(E2, RPH, t(1, 1, 9)))
        .record(assigned(E1, A, t(1, 1, 9)))
        .record(assigned(E1, B, t(1, 2, 9)))
        .record(assigned(E1, C, t(1, 3, 9)))
        // D came and went before the release: not active.
        .record(assigned(E1, D, t(1, 4, 9)))
        .record(sick_leave(E1, D, t(1, 6, 9)))
        // W is more recent, but in another episode.
        .record(assigned(E2, W, t(1, 8, 9)))
        .record(sick_leave(E1, A, t(1, 10, 9)))
        // Assigned after the release, but an active therapist already took over.
        .record(assigned(E1, D, t(1, 12, 9)));
    let c = log.continuity();
    let a = c.handovers.iter().find(|h| h.from_therapist_id == A).unwrap();
    assert_eq!(a.to_therapist_id, Some(C), "the most recently assigned of B and C");
    assert_eq!(a.gap_days, Some(0.0));
    assert_eq!(a.episode_id, E1);
    assert_eq!(handovers(&log), [(D, Some(C), Some(0.0)), (A, Some(C), Some(0.0))]);
}

#[test]
fn handover_to_a_therapist_assigned_at_the_release_instant_is_immediate() {
    let mut log = Log::new();
    log.record(started(E1, POL, t(1, 1, 9)))
        .record(assigned(E1, A, t(1, 1, 9)))
        .record(assigned(E1, B, t(1, 2, 9)))
        .record(assigned(E1, C, t(1, 10, 9)))
        .record(sick_leave(E1, A, t(1, 10, 9)));
    assert_eq!(handovers(&log), [(A, Some(C), Some(0.0))]);

    // Two therapists assigned at the same instant: the one recorded last counts as most recent.
    let mut log = Log::new();
    log.record(started(E1, POL, t(1, 1, 9)))
        .record(assigned(E1, A, t(1, 1, 9)))
        .record(assigned(E1, C, t(1, 2, 9)))
        .record(assigned(E1, B, t(1, 2, 9)))
        .record(sick_leave(E1, A, t(1, 10, 9)));
    assert_eq!(handovers(&log), [(A, Some(B), Some(0.0))]);
}

#[test]
fn a_therapist_who_returns_and_leaves_again_is_no_longer_active() {
    // B covers twice (Jan 1-5 and Jan 8-20); when A leaves on Jan 25 nobody is left.
    let mut log = Log::new();
    log.record(started(E1, POL, t(1, 1, 9)))
        .record(assigned(E1, A, t(1, 1, 9)))
        .record(assigned(E1, B, t(1, 1, 9)))
        .record(sick_leave(E1, B, t(1, 5, 9)))
        .record(assigned(E1, B, t(1, 8, 9)))
        .record(sick_leave(E1, B, t(1, 20, 9)))
        .record(sick_leave(E1, A, t(1, 25, 9)));
    let p = &log.model.patients[&P];
    let b_spells: Vec<_> =
        p.assignments.iter().filter(|a| a.therapist_id == B).map(|a| (a.assigned_at, a.released_at)).collect();
    assert_eq!(b_spells, [(t(1, 1, 9), Some(t(1, 5, 9))), (t(1, 8, 9), Some(t(1, 20, 9)))]);
    assert_eq!(handovers(&log), [(B, Some(A), Some(0.0)), (B, Some(A), Some(0.0)), (A, None, None)]);
}

#[test]
fn handover_without_a_successor() {
    let mut log = Log::new();
    log.record(started(E1, RPH, t(1, 1, 9)))
        .record(started(E2, POL, t(1, 1, 9)))
        .record(assigned(E1, A, t(1, 1, 9)))
        .record(released(E1, A, ReleaseReason::LeftPosition, true, t(1, 10, 9)))
        // Someone assigned in another episode after the release does not take over this one.
        .record(assigned(E2, B, t(1, 12, 9)));
    let c = log.continuity();
    assert_eq!(
        c.handovers,
        vec![Handover {
            episode_id: E1,
            from_therapist_id: A,
            to_therapist_id: None,
            reason: ReleaseReason::LeftPosition,
            patient_notified: true,
            released_at: t(1, 10, 9),
            gap_days: None,
        }]
    );
}

#[test]
fn handover_to_a_later_successor_counts_the_gap_in_days() {
    let mut log = Log::new();
    log.record(started(E1, POL, t(3, 1, 9)))
        .record(assigned(E1, A, t(3, 1, 9)))
        .record(sick_leave(E1, A, t(3, 7, 9)))
        // Recorded out of order: C on Mar 10 before B on Mar 8 21:00. The earliest takes over.
        .record(assigned(E1, C, t(3, 10, 9)))
        .record(assigned(E1, B, t(3, 8, 21)));
    assert_eq!(handovers(&log), [(A, Some(B), Some(1.5))]);

    // A gap of minutes is a fraction of a day too.
    let mut log = Log::new();
    log.record(started(E1, POL, t(3, 1, 9)))
        .record(assigned(E1, A, t(3, 1, 9)))
        .record(sick_leave(E1, A, t(3, 7, 9)))
        .record(assigned(E1, B, t(3, 7, 9) + Duration::minutes(36)));
    assert_eq!(handovers(&log), [(A, Some(B), Some(0.025))]);
}

#[test]
fn handovers_are_listed_in_order_of_release() {
    // The Feb release is recorded after the Mar one (the two episodes are run in parallel).
    let mut log = Log::new();
    log.record(started(E1, RPH, t(1, 11, 9)))
        .record(started(E2, POL, t(1, 11, 9)))
        .record(assigned(E1, A, t(1, 11, 9)))
        .record(assigned(E2, B, t(1, 11, 9)))
        .record(sick_leave(E2, B, t(3, 7, 9)))
        .record(released(E1, A, ReleaseReason::Transfer, true, t(2, 8, 10)))
        .record(assigned(E1, C, t(2, 9, 10)));
    let c = log.continuity();
    let order: Vec<_> = c.handovers.iter().map(|h| (h.episode_id, h.released_at)).collect();
    assert_eq!(order, [(E1, t(2, 8, 10)), (E2, t(3, 7, 9))]);
    assert_eq!(handovers(&log), [(A, Some(C), Some(1.0)), (B, None, None)]);
}

#[test]
fn sessions_at_the_same_time_count_in_recording_order() {
    // A then B at 10:00 on the 18th, then B: one change of provider in two steps (SECON 1/2).
    // Read in the other order (B, A, B) it would be two changes (SECON 0).
    let mut log = Log::new();
    log.record(started(E1, RPH, t(1, 11, 9)));
    log.attended(E1, A, t(1, 18, 10)).attended(E1, B, t(1, 18, 10)).attended(E1, B, t(1, 25, 10));
    assert_close(log.continuity().indices.secon, 0.5);
    let mut other = Log::new();
    other.record(started(E1, RPH, t(1, 11, 9)));
    other.attended(E1, B, t(1, 18, 10)).attended(E1, A, t(1, 18, 10)).attended(E1, B, t(1, 25, 10));
    assert_close(other.continuity().indices.secon, 0.0);
}

#[test]
fn the_read_model_gives_back_each_session_and_outcome_as_recorded() {
    let mut log = hand_worked_pathway(false);
    log.on(P).record(OutcomeRecorded {
        episode_id: E2,
        instrument: Instrument::Phq9,
        phase: MeasurePhase::Discharge,
        items: vec![0, 1, 2, 3, 0, 1, 2, 3, 1],
        total: 13,
        measured_at: t(3, 21, 11),
    });
    let p = &log.model.patients[&P];
    // Sessions keep their episode and therapist as indexes; read back, they are the ids recorded.
    let recorded: Vec<(Uuid, Uuid, Attendance, Timestamp)> =
        p.sessions().map(|s| (s.episode_id, s.therapist_id, s.attendance, s.at)).collect();
    assert_eq!(
        recorded[..3],
        [
            (E1, A, Attendance::Attended, t(1, 11, 10)),
            (E1, A, Attendance::Attended, t(1, 18, 10)),
            (E1, A, Attendance::NoShow, t(1, 25, 10))
        ]
    );
    assert_eq!(recorded[6], (E2, W, Attendance::Attended, t(3, 2, 10)));
    assert_eq!(recorded.last(), Some(&(E2, B, Attendance::Attended, t(3, 21, 10))));
    let ids: Vec<Uuid> = p.sessions().map(|s| s.session_id).collect();
    assert_eq!(ids, (1..=10).map(|n| Uuid::from_u128(0x5e55_0000 + n)).collect::<Vec<_>>());
    // Each therapist is listed once, in order of first session.
    assert_eq!(*p.therapists, [A, W, B]);
    let o = &p.outcomes[0];
    assert_eq!(
        (p.outcome_episode_id(o), o.instrument, o.phase, o.total),
        (E2, Instrument::Phq9, MeasurePhase::Discharge, 13)
    );
    assert_eq!(o.items(), [0, 1, 2, 3, 0, 1, 2, 3, 1]);
    assert_eq!(p.outcomes_of(E2).count(), 1);
    assert_eq!(p.outcomes_of(E1).count(), 0);
}
