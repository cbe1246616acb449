//! Pathway analytics over hand-made pathways: `pathway_report` with its helpers (`cohort`,
//! `waiting_days`, `referral_summary`, `open_episodes`) and care alerts. Every figure is worked out
//! by hand from the definitions in the analytics issue.
//!
//! As in `continuity_pathways.rs`, every event is first decided by the domain against its stream,
//! then folded into a `ReadModel` in log order with positions numbered automatically, so each
//! pathway here is one the system would really record.
//!
//! Long because every figure of the report is worked out here by hand, beside the pathways it
//! is worked out from.

use chrono::{Duration, TimeZone, Utc};
use forlop_domain::events::*;
use forlop_domain::*;
use forlop_projections::alerts::{self, AlertKind, AlertThresholds, CareAlert};
use forlop_projections::reports::{
    self, ContinuitySummary, Count, Distribution, OutcomeSummary, PathwayReport, RecoverySummary, ReferralSummary,
    DEFAULT_AGE_BINS,
};
use uuid::Uuid;

mod support;
use support::Log;

// ---------------------------------------------------------------------------------------------
// Fixed identities
// ---------------------------------------------------------------------------------------------

const RPH: Uuid = Uuid::from_u128(0x5001);
const POL: Uuid = Uuid::from_u128(0x5002);
/// A second municipal service, for "other services are excluded".
const OTHER: Uuid = Uuid::from_u128(0x5004);

const A: Uuid = Uuid::from_u128(0x7001);
const B: Uuid = Uuid::from_u128(0x7002);
const C: Uuid = Uuid::from_u128(0x7003);

const P1: Uuid = Uuid::from_u128(0x9001);
const P2: Uuid = Uuid::from_u128(0x9002);
const P3: Uuid = Uuid::from_u128(0x9003);
const P4: Uuid = Uuid::from_u128(0x9004);
const P5: Uuid = Uuid::from_u128(0x9005);

const E1: Uuid = Uuid::from_u128(0xe001);
const E2: Uuid = Uuid::from_u128(0xe002);
const E3: Uuid = Uuid::from_u128(0xe003);
const E4: Uuid = Uuid::from_u128(0xe004);
const E5: Uuid = Uuid::from_u128(0xe005);
const E6: Uuid = Uuid::from_u128(0xe006);
const E7: Uuid = Uuid::from_u128(0xe007);
const E8: Uuid = Uuid::from_u128(0xe008);

const R1: Uuid = Uuid::from_u128(0xf001);
const R2: Uuid = Uuid::from_u128(0xf002);
const R3: Uuid = Uuid::from_u128(0xf003);
const R4: Uuid = Uuid::from_u128(0xf004);
const R5: Uuid = Uuid::from_u128(0xf005);
const R6: Uuid = Uuid::from_u128(0xf006);
const R7: Uuid = Uuid::from_u128(0xf007);
const R8: Uuid = Uuid::from_u128(0xf008);

// ---------------------------------------------------------------------------------------------
// The log: decide, then fold, numbering positions in apply order
// ---------------------------------------------------------------------------------------------

impl Log {
    /// Services RPH and OTHER (MUNICIPAL) and POL (SPECIALIST_OUTPATIENT), therapists A, B and C,
    /// and no patients yet.
    fn new() -> Log {
        let mut log = Log::empty();
        log.record(service(RPH, "Rask psykisk helsehjelp Gamle Oslo", CareLevel::Municipal));
        log.record(service(OTHER, "Rask psykisk helsehjelp Sagene", CareLevel::Municipal));
        log.record(service(POL, "DPS poliklinikk", CareLevel::SpecialistOutpatient));
        for (id, name) in [(A, "A"), (B, "B"), (C, "C")] {
            log.record(TherapistRegistered { therapist_id: id, name: format!("Terapeut {name}"), hpr_number: None });
        }
        log
    }

    /// Records a questionnaire whose items add up to `total`.
    fn outcome(
        &mut self,
        episode_id: Uuid,
        instrument: Instrument,
        phase: MeasurePhase,
        total: u32,
        measured_at: Timestamp,
    ) -> &mut Log {
        let items = items(instrument, total);
        self.record(OutcomeRecorded { episode_id, instrument, phase, items, total, measured_at })
    }

    /// PHQ-9 intake and discharge scores, measured at the start and the end of March.
    fn phq9(&mut self, episode_id: Uuid, intake: u32, discharge: u32) -> &mut Log {
        self.outcome(episode_id, Instrument::Phq9, MeasurePhase::Intake, intake, t(3, 1, 12)).outcome(
            episode_id,
            Instrument::Phq9,
            MeasurePhase::Discharge,
            discharge,
            t(3, 31, 12),
        )
    }

    /// GAD-7 intake and discharge scores, measured at the start and the end of March.
    fn gad7(&mut self, episode_id: Uuid, intake: u32, discharge: u32) -> &mut Log {
        self.outcome(episode_id, Instrument::Gad7, MeasurePhase::Intake, intake, t(3, 1, 12)).outcome(
            episode_id,
            Instrument::Gad7,
            MeasurePhase::Discharge,
            discharge,
            t(3, 31, 12),
        )
    }

    /// The report on RPH's episodes started in [from, to), with the default age bins.
    fn report(&self, from: Timestamp, to: Timestamp) -> PathwayReport {
        reports::pathway_report(&self.model, RPH, from, to, DEFAULT_AGE_BINS).expect("the default bins are valid")
    }

    /// The alerts of one episode of the current patient as of `as_of`: (kind, since, days).
    fn alerts_of(&self, episode_id: Uuid, as_of: Timestamp, t: AlertThresholds) -> Vec<(AlertKind, Timestamp, f64)> {
        let p = &self.model.patients[&self.patient];
        let e = p.episode(episode_id).expect("the episode is the current patient's");
        alerts::episode_alerts(p, e, as_of, t).into_iter().map(|a| (a.kind, a.since, a.days)).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Readable builders
// ---------------------------------------------------------------------------------------------

/// A time in 2016, UTC (a leap year: February has 29 days).
fn t(month: u32, day: u32, hour: u32) -> Timestamp {
    Utc.with_ymd_and_hms(2016, month, day, hour, 0, 0).unwrap()
}

/// Midnight UTC on a date in any year.
fn ymd(year: i32, month: u32, day: u32) -> Timestamp {
    Utc.with_ymd_and_hms(year, month, day, 0, 0, 0).unwrap()
}

/// Items scored 0 to 3 adding up to `total`: 3s first, then the rest.
fn items(instrument: Instrument, total: u32) -> Vec<u8> {
    let n = instrument.item_count() as u32;
    assert!(total <= 3 * n, "{instrument} totals at most {}", 3 * n);
    (0..n).map(|i| total.saturating_sub(3 * i).min(3) as u8).collect()
}

fn service(id: Uuid, name: &str, care_level: CareLevel) -> ServiceRegistered {
    ServiceRegistered { service_id: id, name: name.into(), care_level }
}

fn received(referral_id: Uuid, service_id: Uuid, source: ReferralSource, received_at: Timestamp) -> ReferralReceived {
    ReferralReceived { referral_id, service_id, source, received_at }
}

fn accepted(referral_id: Uuid, decided_at: Timestamp) -> ReferralDecided {
    ReferralDecided { referral_id, decision: ReferralDecision::Accepted, reason: None, decided_at }
}

fn rejected(referral_id: Uuid, reason: RejectionReason, decided_at: Timestamp) -> ReferralDecided {
    ReferralDecided { referral_id, decision: ReferralDecision::Rejected, reason: Some(reason), decided_at }
}

fn started(id: Uuid, service_id: Uuid, started_at: Timestamp) -> EpisodeStarted {
    EpisodeStarted { episode_id: id, service_id, referral_id: None, started_at, acute: false }
}

/// A specialist episode without a referral: an emergency admission (øyeblikkelig hjelp).
fn started_acute(id: Uuid, service_id: Uuid, started_at: Timestamp) -> EpisodeStarted {
    EpisodeStarted { acute: true, ..started(id, service_id, started_at) }
}

fn started_from(id: Uuid, service_id: Uuid, referral_id: Uuid, started_at: Timestamp) -> EpisodeStarted {
    EpisodeStarted { episode_id: id, service_id, referral_id: Some(referral_id), started_at, acute: false }
}

fn ended(id: Uuid, reason: EndReason, ended_at: Timestamp) -> EpisodeEnded {
    EpisodeEnded { episode_id: id, reason, ended_at }
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

/// Expected counts, in order.
fn counts(expected: &[(&str, u64)]) -> Vec<Count> {
    expected.iter().map(|(key, count)| Count { key: (*key).to_owned(), count: *count }).collect()
}

fn zero_counts(keys: &[&str]) -> Vec<Count> {
    keys.iter().map(|key| Count { key: (*key).to_owned(), count: 0 }).collect()
}

const GENDER_KEYS: &[&str] = &["FEMALE", "MALE", "OTHER", "UNKNOWN"];
const SOURCE_KEYS: &[&str] = &["SELF", "GP", "HEALTH_PERSONNEL", "RELATIVE", "NAV", "OTHER", "NONE"];
const END_REASON_KEYS: &[&str] = &["COMPLETED", "DROPPED_OUT", "REFERRED_ONWARD", "MOVED", "OTHER", "OPEN"];
const DEFAULT_AGE_KEYS: &[&str] = &["0-15", "16-24", "25-30", "31-35", "36-45", "46-55", "56-66", "67+"];

#[track_caller]
fn assert_close(got: Option<f64>, want: f64) {
    let got = got.expect("the figure is defined");
    assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
}

/// The evaluation time of the alert tests: 1 March 2016, noon.
fn as_of() -> Timestamp {
    t(3, 1, 12)
}

// ---------------------------------------------------------------------------------------------
// Cohort selection
// ---------------------------------------------------------------------------------------------

#[test]
fn given_episodes_around_the_period_when_reported_then_the_cohort_is_half_open_and_at_the_service() {
    let (from, to) = (t(1, 1, 0), t(7, 1, 0));
    let mut log = Log::new();
    log.patient(P1, 1980, Gender::Female)
        .record(started(E1, RPH, from)) // exactly at `from`: in
        .record(started(E2, RPH, t(3, 1, 9))); // the same patient again: in
    log.patient(P2, 1990, Gender::Male)
        .record(started(E3, RPH, to)) // exactly at `to`: out
        .record(started(E4, RPH, from - Duration::seconds(1))); // a second before `from`: out
    log.patient(P3, 1970, Gender::Other)
        .record(started(E5, OTHER, t(2, 1, 9))) // another service: out
        .record(started_acute(E6, POL, t(2, 1, 9)));
    log.patient(P4, 2000, Gender::Unknown).record(started(E7, RPH, to - Duration::seconds(1))); // last second: in

    let cohort: Vec<_> = reports::cohort(&log.model, RPH, from, to).map(|(p, e)| (p.id, e.id)).collect();
    assert_eq!(cohort, [(P1, E1), (P1, E2), (P4, E7)], "by start time");

    let r = log.report(from, to);
    assert_eq!(r.episodes, 3);
    assert_eq!(r.patients, 2, "P1's two episodes count one patient");

    let other = reports::pathway_report(&log.model, OTHER, from, to, DEFAULT_AGE_BINS).unwrap();
    assert_eq!((other.episodes, other.patients), (1, 1));
    // An empty period (from == to) selects nothing.
    assert_eq!(log.report(from, from).episodes, 0);
}

// ---------------------------------------------------------------------------------------------
// The basis table: gender, referral sources, end reasons, age groups
// ---------------------------------------------------------------------------------------------

#[test]
fn given_a_mixed_cohort_when_reported_then_gender_sources_and_end_reasons_list_every_key_in_order() {
    let (from, to) = (t(1, 1, 0), t(7, 1, 0));
    let mut log = Log::new();
    log.patient(P1, 1980, Gender::Female)
        .record(received(R1, RPH, ReferralSource::Gp, t(1, 4, 9)))
        .record(accepted(R1, t(1, 5, 9)))
        .record(started_from(E1, RPH, R1, t(1, 11, 9)))
        .record(ended(E1, EndReason::Completed, t(3, 1, 9)))
        .record(started(E2, RPH, t(4, 1, 9))); // no referral, still open
    log.patient(P2, 1990, Gender::Other)
        .record(received(R2, RPH, ReferralSource::Nav, t(2, 1, 9)))
        .record(accepted(R2, t(2, 8, 9)))
        .record(started_from(E3, RPH, R2, t(2, 8, 9))) // the referral is still undecided
        .record(ended(E3, EndReason::DroppedOut, t(2, 20, 9)));
    // At another service: none of its keys count.
    log.patient(P3, 1970, Gender::Male)
        .record(received(R3, OTHER, ReferralSource::SelfReferral, t(2, 1, 9)))
        .record(accepted(R3, t(2, 2, 9)))
        .record(started_from(E4, OTHER, R3, t(2, 2, 9)))
        .record(ended(E4, EndReason::Moved, t(2, 3, 9)));

    let r = log.report(from, to);
    assert_eq!((r.episodes, r.patients), (3, 2));
    // Gender is counted per episode of the cohort (P1 twice), so it adds up to `episodes`.
    assert_eq!(r.gender, counts(&[("FEMALE", 2), ("MALE", 0), ("OTHER", 1), ("UNKNOWN", 0)]));
    assert_eq!(
        r.referral_sources,
        counts(&[
            ("SELF", 0),
            ("GP", 1),
            ("HEALTH_PERSONNEL", 0),
            ("RELATIVE", 0),
            ("NAV", 1),
            ("OTHER", 0),
            ("NONE", 1)
        ])
    );
    assert_eq!(
        r.end_reasons,
        counts(&[
            ("COMPLETED", 1),
            ("DROPPED_OUT", 1),
            ("REFERRED_ONWARD", 0),
            ("MOVED", 0),
            ("OTHER", 0),
            ("OPEN", 1)
        ])
    );
}

#[test]
fn given_birth_years_at_the_bin_edges_when_reported_then_age_is_start_year_minus_birth_year() {
    // (birth year, start): age = year(startedAt) − birthYear, whatever the birthday.
    let cases: &[(i32, Timestamp, &str)] = &[
        (2001, t(1, 1, 1), "0-15"),                 // 15
        (2016, t(6, 1, 9), "0-15"),                 // 0
        (2000, ymd(2016, 1, 1), "16-24"),           // 16 on New Year's Day
        (2000, t(12, 31, 23), "16-24"),             // 16 on New Year's Eve
        (1992, t(6, 2, 9), "16-24"),                // 24
        (1991, t(6, 3, 9), "25-30"),                // 25
        (1985, t(6, 4, 9), "31-35"),                // 31
        (1980, t(6, 5, 9), "36-45"),                // 36
        (1950, t(6, 6, 9), "56-66"),                // 66
        (1949, t(6, 7, 9), "67+"),                  // 67
        (1916, t(6, 8, 9), "67+"),                  // 100
        (1940, ymd(2015, 12, 31), "out of period"), // not in the cohort
    ];
    let mut log = Log::new();
    for (i, (birth_year, start, _)) in cases.iter().enumerate() {
        let i = i as u128;
        log.patient(Uuid::from_u128(0x9100 + i), *birth_year, Gender::Unknown).record(started(
            Uuid::from_u128(0xe100 + i),
            RPH,
            *start,
        ));
    }
    let r = log.report(ymd(2016, 1, 1), ymd(2017, 1, 1));
    assert_eq!(r.episodes, 11);
    assert_eq!(
        r.age_groups,
        counts(&[
            ("0-15", 2),
            ("16-24", 3),
            ("25-30", 1),
            ("31-35", 1),
            ("36-45", 1),
            ("46-55", 0),
            ("56-66", 1),
            ("67+", 2)
        ])
    );
    // Each case lands where the table says (one patient at a time).
    for (i, (_, start, key)) in cases.iter().enumerate().filter(|(_, c)| c.2 != "out of period") {
        let episode = Uuid::from_u128(0xe100 + i as u128);
        let next = *start + Duration::seconds(1);
        let r = log.report(*start, next);
        assert_eq!(r.episodes, 1, "only episode {episode} starts at {start}");
        let got: Vec<&str> = r.age_groups.iter().filter(|c| c.count == 1).map(|c| c.key.as_str()).collect();
        assert_eq!(got, [*key], "episode {episode}");
    }
}

#[test]
fn given_custom_age_bins_when_reported_then_keys_start_below_the_first_bound() {
    let mut log = Log::new();
    for (i, birth_year) in [1999, 1998, 1952, 1951, 2016].into_iter().enumerate() {
        let i = i as u128;
        log.patient(Uuid::from_u128(0x9100 + i), birth_year, Gender::Female).record(started(
            Uuid::from_u128(0xe100 + i),
            RPH,
            t(6, 1, 9),
        ));
    }
    // Ages 17, 18, 64, 65 and 0.
    let r = reports::pathway_report(&log.model, RPH, ymd(2016, 1, 1), ymd(2017, 1, 1), &[18, 65]).unwrap();
    assert_eq!(r.age_groups, counts(&[("<18", 2), ("18-64", 2), ("65+", 1)]));

    let r = reports::pathway_report(&log.model, RPH, ymd(2016, 1, 1), ymd(2017, 1, 1), &[0]).unwrap();
    assert_eq!(r.age_groups, counts(&[("0+", 5)]));

    assert_eq!(reports::age_keys(DEFAULT_AGE_BINS).unwrap(), DEFAULT_AGE_KEYS);
    assert_eq!(reports::age_keys(&[18, 65]).unwrap(), ["<18", "18-64", "65+"]);
    assert_eq!(reports::age_keys(&[5, 6, 10]).unwrap(), ["<5", "5-5", "6-9", "10+"]);
}

#[test]
fn given_invalid_age_bins_when_reported_then_it_is_an_error() {
    let mut log = Log::new();
    log.patient(P1, 1980, Gender::Female).record(started(E1, RPH, t(6, 1, 9)));
    let bad: &[&[i32]] = &[&[], &[16, 16], &[25, 16], &[0, 16, 10], &[-1, 16], &[-5]];
    for bins in bad {
        let got = reports::pathway_report(&log.model, RPH, ymd(2016, 1, 1), ymd(2017, 1, 1), bins);
        assert_eq!(
            got,
            Err("ageBins must be non-negative, strictly increasing lower bounds".to_owned()),
            "bins {bins:?}"
        );
        assert!(reports::age_keys(bins).is_err(), "bins {bins:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------------

#[test]
fn given_phq9_scores_recorded_out_of_order_when_reported_then_earliest_intake_and_latest_discharge_count() {
    use Instrument::{Gad7, Phq9};
    use MeasurePhase::{Discharge, Intake, Interim};
    let mut log = Log::new();
    log.patient(P1, 1980, Gender::Female)
        // E1: intake 20 (the earliest, recorded late), discharge 8 (the latest, recorded first).
        .record(started(E1, RPH, t(1, 10, 9)))
        .outcome(E1, Phq9, Interim, 27, t(1, 10, 10))
        .outcome(E1, Phq9, Discharge, 8, t(5, 1, 9))
        .outcome(E1, Phq9, Intake, 25, t(1, 20, 9))
        .outcome(E1, Phq9, Intake, 20, t(1, 10, 9))
        .outcome(E1, Phq9, Discharge, 12, t(4, 20, 9))
        .outcome(E1, Phq9, Interim, 0, t(6, 1, 9))
        .outcome(E1, Gad7, Intake, 21, t(1, 10, 9)) // another instrument
        // E2: (15, 9), a drop of exactly 6. Ties in time go by recording order: the first intake
        // and the last discharge.
        .record(started(E2, RPH, t(1, 11, 9)))
        .outcome(E2, Phq9, Intake, 15, t(1, 11, 9))
        .outcome(E2, Phq9, Intake, 18, t(1, 11, 9))
        .outcome(E2, Phq9, Discharge, 4, t(4, 11, 9))
        .outcome(E2, Phq9, Discharge, 9, t(4, 11, 9))
        // E3: (15, 10): a drop of 5, and exactly at caseness at discharge.
        .record(started(E3, RPH, t(1, 12, 9)))
        .phq9(E3, 15, 10)
        // E4: (9, 3): a drop of 6, but not at caseness at intake.
        .record(started(E4, RPH, t(1, 13, 9)))
        .phq9(E4, 9, 3)
        // E5: intake only; E6: discharge only; E7: an interim score only.
        .record(started(E5, RPH, t(1, 14, 9)))
        .outcome(E5, Phq9, Intake, 12, t(1, 14, 9))
        .record(started(E6, RPH, t(1, 15, 9)))
        .outcome(E6, Phq9, Discharge, 4, t(4, 15, 9))
        .record(started(E7, RPH, t(1, 16, 9)))
        .outcome(E7, Phq9, Interim, 14, t(2, 16, 9));

    assert_eq!(reports::episode_scores(&log.model.patients[&P1], E1, Phq9), (Some(20), Some(8)));
    assert_eq!(reports::episode_scores(&log.model.patients[&P1], E2, Phq9), (Some(15), Some(9)));
    assert_eq!(reports::episode_scores(&log.model.patients[&P1], E7, Phq9), (None, None));

    let r = log.report(t(1, 1, 0), t(7, 1, 0));
    assert_eq!(r.episodes, 7);
    assert_eq!(
        r.phq9,
        OutcomeSummary {
            intake_count: 5,
            intake_mean: Some(71.0 / 5.0), // 20 + 15 + 15 + 9 + 12
            discharge_count: 5,
            discharge_mean: Some(34.0 / 5.0), // 8 + 9 + 10 + 3 + 4
            paired_count: 4,
            mean_change: Some(29.0 / 4.0), // 12 + 6 + 5 + 6
            missing_pairs: 3,
            reliably_improved: 3, // E1, E2 (exactly 6) and E4; not E3 (5)
            recovered: 2,         // E1 and E2; not E3 (10 at discharge) nor E4 (9 at intake)
        }
    );
    assert_eq!(
        r.gad7,
        OutcomeSummary {
            intake_count: 1,
            intake_mean: Some(21.0),
            discharge_count: 0,
            discharge_mean: None,
            paired_count: 0,
            mean_change: None,
            missing_pairs: 7,
            reliably_improved: 0,
            recovered: 0,
        }
    );
}

#[test]
fn given_gad7_scores_at_the_thresholds_when_reported_then_a_drop_of_4_is_reliable_and_8_is_caseness() {
    let mut log = Log::new();
    log.patient(P1, 1980, Gender::Female);
    // (intake, discharge) per episode.
    let scores = [
        (E1, 12, 8), // drop 4: reliable; exactly 8 at discharge: not recovered
        (E2, 12, 7), // drop 5: reliable; recovered
        (E3, 10, 7), // drop 3: not reliable; recovered
        (E4, 7, 3),  // drop 4: reliable; not at caseness at intake
        (E5, 5, 9),  // a rise of 4
    ];
    for (i, (episode, intake, discharge)) in scores.into_iter().enumerate() {
        log.record(started(episode, RPH, t(2, 1 + i as u32, 9))).gad7(episode, intake, discharge);
    }
    let r = log.report(t(1, 1, 0), t(7, 1, 0));
    assert_eq!(
        r.gad7,
        OutcomeSummary {
            intake_count: 5,
            intake_mean: Some(46.0 / 5.0),
            discharge_count: 5,
            discharge_mean: Some(34.0 / 5.0),
            paired_count: 5,
            mean_change: Some(12.0 / 5.0), // 4 + 5 + 3 + 4 − 4
            missing_pairs: 0,
            reliably_improved: 3,
            recovered: 2,
        }
    );
    // Nobody filled in a PHQ-9: nothing counted, means undefined, every episode misses its pair.
    assert_eq!(
        r.phq9,
        OutcomeSummary {
            intake_count: 0,
            intake_mean: None,
            discharge_count: 0,
            discharge_mean: None,
            paired_count: 0,
            mean_change: None,
            missing_pairs: 5,
            reliably_improved: 0,
            recovered: 0,
        }
    );
}

#[test]
fn given_episodes_paired_on_one_or_both_instruments_when_reported_then_recovery_counts_only_both() {
    let mut log = Log::new();
    log.patient(P1, 1980, Gender::Female)
        // At caseness, recovered, both fall reliably: reliably recovered.
        .record(started(E1, RPH, t(2, 1, 9)))
        .phq9(E1, 15, 5)
        .gad7(E1, 12, 4)
        // At caseness on GAD-7 only; GAD-7 exactly 8 at discharge: not recovered. Changes of 0 and 1.
        .record(started(E2, RPH, t(2, 2, 9)))
        .phq9(E2, 9, 9)
        .gad7(E2, 9, 8)
        // Not at caseness; PHQ-9 rises 7: reliably deteriorated.
        .record(started(E3, RPH, t(2, 3, 9)))
        .phq9(E3, 5, 12)
        .gad7(E3, 3, 3)
        // At caseness; PHQ-9 falls 7 while GAD-7 rises 4 (to 8): neither reliable, not recovered.
        .record(started(E4, RPH, t(2, 4, 9)))
        .phq9(E4, 16, 9)
        .gad7(E4, 4, 8)
        // At caseness on PHQ-9 only; recovered, but changes of 3 and 0 are not reliable.
        .record(started(E5, RPH, t(2, 5, 9)))
        .phq9(E5, 11, 8)
        .gad7(E5, 7, 7)
        // PHQ-9 paired, GAD-7 intake only: not eligible.
        .record(started(E7, RPH, t(2, 7, 9)))
        .phq9(E7, 20, 2)
        .outcome(E7, Instrument::Gad7, MeasurePhase::Intake, 15, t(3, 1, 12))
        // GAD-7 paired, no PHQ-9: not eligible.
        .record(started(E8, RPH, t(2, 8, 9)))
        .gad7(E8, 12, 2)
        // Started in May: not at caseness (9 and 7), both fall reliably (6 and 5).
        .record(started(E6, RPH, t(5, 1, 9)))
        .outcome(E6, Instrument::Phq9, MeasurePhase::Intake, 9, t(5, 1, 10))
        .outcome(E6, Instrument::Gad7, MeasurePhase::Intake, 7, t(5, 1, 10))
        .outcome(E6, Instrument::Phq9, MeasurePhase::Discharge, 3, t(5, 31, 10))
        .outcome(E6, Instrument::Gad7, MeasurePhase::Discharge, 2, t(5, 31, 10));

    let r = log.report(t(1, 1, 0), t(7, 1, 0));
    assert_eq!(r.episodes, 8);
    assert_eq!(
        r.recovery,
        RecoverySummary {
            eligible: 6,
            at_caseness: 4,           // E1, E2, E4, E5
            recovered: 2,             // E1, E5
            reliably_improved: 2,     // E1, E6
            reliably_deteriorated: 1, // E3
            reliably_recovered: 1,    // E1
            recovery_rate: Some(0.5),
        }
    );

    // May alone: one eligible episode, none at caseness, so no recovery rate.
    let may = log.report(t(5, 1, 0), t(6, 1, 0));
    assert_eq!(
        may.recovery,
        RecoverySummary {
            eligible: 1,
            at_caseness: 0,
            recovered: 0,
            reliably_improved: 1,
            reliably_deteriorated: 0,
            reliably_recovered: 0,
            recovery_rate: None,
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Waiting days and sessions per episode
// ---------------------------------------------------------------------------------------------

/// Six RPH episodes: waiting days 10.5, 1.25, none, none, 3 and 20; attended sessions 2, 1, 3, 0,
/// 4 and 1. Only the last starts in April.
fn waiting_pathways() -> Log {
    let mut log = Log::new();
    log.patient(P1, 1980, Gender::Female)
        // Referred Jan 4 09:00; a no-show first; first attended Jan 14 21:00, recorded last.
        .record(received(R1, RPH, ReferralSource::Gp, t(1, 4, 9)))
        .record(accepted(R1, t(1, 5, 9)))
        .record(started_from(E1, RPH, R1, t(1, 10, 9)))
        .session(E1, A, Attendance::NoShow, t(1, 11, 9))
        .attended(E1, A, t(1, 18, 21))
        .attended(E1, A, t(1, 14, 21));
    log.patient(P2, 1990, Gender::Male)
        // Referred Feb 1 00:00, a cancelled session, then attended Feb 2 06:00: 1.25 days.
        .record(received(R2, RPH, ReferralSource::SelfReferral, t(2, 1, 0)))
        .record(accepted(R2, t(2, 1, 0)))
        .record(started_from(E2, RPH, R2, t(2, 1, 0)))
        .session(E2, A, Attendance::CancelledByService, t(2, 1, 12))
        .attended(E2, A, t(2, 2, 6))
        // No referral: three sessions but no waiting time.
        .record(started(E3, RPH, t(2, 10, 9)))
        .attended(E3, B, t(2, 10, 10))
        .attended(E3, B, t(2, 17, 10))
        .attended(E3, B, t(2, 24, 10));
    log.patient(P3, 1975, Gender::Female)
        // Referred, but only a no-show: no waiting time, no sessions.
        .record(received(R4, RPH, ReferralSource::Nav, t(2, 15, 9)))
        .record(accepted(R4, t(2, 20, 9)))
        .record(started_from(E4, RPH, R4, t(2, 20, 9)))
        .session(E4, C, Attendance::NoShow, t(2, 21, 9))
        // Referred Mar 1 00:00, first attended Mar 4 00:00: 3 days; four sessions.
        .record(received(R5, RPH, ReferralSource::Gp, t(3, 1, 0)))
        .record(accepted(R5, t(3, 2, 0)))
        .record(started_from(E5, RPH, R5, t(3, 2, 0)))
        .attended(E5, C, t(3, 4, 0))
        .attended(E5, C, t(3, 11, 0))
        .attended(E5, C, t(3, 18, 0))
        .attended(E5, C, t(3, 25, 0));
    log.patient(P4, 1965, Gender::Other)
        // Referred Apr 1 00:00, first attended Apr 21 00:00: 20 days.
        .record(received(R6, RPH, ReferralSource::Relative, t(4, 1, 0)))
        .record(accepted(R6, t(4, 10, 0)))
        .record(started_from(E6, RPH, R6, t(4, 10, 0)))
        .attended(E6, A, t(4, 21, 0));
    log
}

#[test]
fn given_an_odd_cohort_when_reported_then_waiting_and_sessions_distributions_are_exact() {
    let log = waiting_pathways();
    let (from, to) = (t(1, 1, 0), t(4, 1, 0));
    let r = log.report(from, to);
    assert_eq!(r.episodes, 5);
    // Waiting days 10.5, 1.25 and 3: p90 is the ⌈2.7⌉ = 3rd smallest.
    let waiting = Distribution {
        count: 3,
        mean: Some(14.75 / 3.0),
        median: Some(3.0),
        p90: Some(10.5),
        min: Some(1.25),
        max: Some(10.5),
    };
    assert_eq!(r.waiting_days, waiting);
    assert_eq!(reports::waiting_days(&log.model, RPH, from, to), waiting);
    // Sessions 2, 1, 3, 0 and 4, the episode without sessions included: p90 is the ⌈4.5⌉ = 5th.
    assert_eq!(
        r.sessions_per_episode,
        Distribution { count: 5, mean: Some(2.0), median: Some(2.0), p90: Some(4.0), min: Some(0.0), max: Some(4.0) }
    );
}

#[test]
fn given_an_even_cohort_when_reported_then_the_median_averages_the_two_middle_values() {
    let log = waiting_pathways();
    let (from, to) = (t(1, 1, 0), t(7, 1, 0));
    let r = log.report(from, to);
    assert_eq!(r.episodes, 6);
    // Waiting days 1.25, 3, 10.5, 20: median (3 + 10.5) / 2, p90 the ⌈3.6⌉ = 4th.
    let waiting = Distribution {
        count: 4,
        mean: Some(34.75 / 4.0),
        median: Some(6.75),
        p90: Some(20.0),
        min: Some(1.25),
        max: Some(20.0),
    };
    assert_eq!(r.waiting_days, waiting);
    assert_eq!(reports::waiting_days(&log.model, RPH, from, to), waiting);
    // Sessions 0, 1, 1, 2, 3, 4: median 1.5, p90 the ⌈5.4⌉ = 6th.
    assert_eq!(
        r.sessions_per_episode,
        Distribution {
            count: 6,
            mean: Some(11.0 / 6.0),
            median: Some(1.5),
            p90: Some(4.0),
            min: Some(0.0),
            max: Some(4.0)
        }
    );
}

#[test]
fn given_single_episodes_when_waiting_is_asked_then_it_runs_from_referral_to_first_attended_session() {
    let log = waiting_pathways();
    let days = |patient: Uuid, episode: Uuid| {
        let p = &log.model.patients[&patient];
        reports::waiting_days_of(p, p.episode(episode).unwrap())
    };
    assert_eq!(days(P1, E1), Some(10.5), "the late-recorded Jan 14 session, not the no-show or Jan 18");
    assert_eq!(days(P2, E2), Some(1.25));
    assert_eq!(days(P2, E3), None, "no referral");
    assert_eq!(days(P3, E4), None, "no attended session");
    assert_eq!(days(P3, E5), Some(3.0));
    // A cohort of one: every figure is that value.
    assert_eq!(
        reports::waiting_days(&log.model, RPH, t(4, 1, 0), t(5, 1, 0)),
        Distribution {
            count: 1,
            mean: Some(20.0),
            median: Some(20.0),
            p90: Some(20.0),
            min: Some(20.0),
            max: Some(20.0)
        }
    );
    // Nobody waited at another service.
    assert_eq!(
        reports::waiting_days(&log.model, OTHER, t(1, 1, 0), t(7, 1, 0)),
        Distribution { count: 0, mean: None, median: None, p90: None, min: None, max: None }
    );
}

#[test]
fn given_lists_of_values_when_summarised_then_p90_is_the_nearest_rank() {
    // ⌈0.9·n⌉-th smallest of 1..=n.
    for (n, rank) in [(1u32, 1u32), (2, 2), (9, 9), (10, 9), (11, 10), (19, 18), (20, 18), (21, 19), (100, 90)] {
        let d = Distribution::of((1..=n).rev().map(f64::from).collect());
        assert_eq!(d.p90, Some(f64::from(rank)), "n = {n}");
        assert_eq!((d.count, d.min, d.max), (u64::from(n), Some(1.0), Some(f64::from(n))));
    }
    assert_eq!(Distribution::of(vec![7.0, -1.0]).median, Some(3.0));
    assert_eq!(
        Distribution::of(vec![]),
        Distribution { count: 0, mean: None, median: None, p90: None, min: None, max: None }
    );
}

// ---------------------------------------------------------------------------------------------
// Referrals
// ---------------------------------------------------------------------------------------------

#[test]
fn given_referrals_around_the_period_when_summarised_then_those_received_in_it_count_by_decision() {
    let (from, to) = (t(1, 1, 0), t(7, 1, 0));
    let mut log = Log::new();
    log.patient(P1, 1980, Gender::Female)
        .record(received(R1, RPH, ReferralSource::Gp, from)) // exactly at `from`: in
        .record(accepted(R1, t(1, 3, 9)))
        .record(received(R2, RPH, ReferralSource::Gp, t(2, 1, 9)))
        .record(rejected(R2, RejectionReason::Capacity, t(2, 2, 9)))
        .record(received(R3, RPH, ReferralSource::Nav, t(3, 1, 9)))
        .record(rejected(R3, RejectionReason::NotInTargetGroup, t(3, 2, 9)))
        .record(received(R4, RPH, ReferralSource::Relative, t(4, 1, 9))) // undecided
        // Received in the period, decided after it: the decision as recorded so far counts.
        .record(received(R5, RPH, ReferralSource::SelfReferral, t(6, 30, 9)))
        .record(rejected(R5, RejectionReason::Capacity, t(7, 5, 9)));
    log.patient(P2, 1990, Gender::Male)
        .record(received(R6, RPH, ReferralSource::Gp, to)) // exactly at `to`: out
        .record(accepted(R6, to))
        .record(received(R7, RPH, ReferralSource::Gp, from - Duration::seconds(1))) // before: out
        .record(rejected(R7, RejectionReason::Capacity, from))
        .record(received(R8, OTHER, ReferralSource::Gp, t(2, 1, 9))) // another service: out
        .record(accepted(R8, t(2, 1, 10)));

    let expected = ReferralSummary { received: 5, accepted: 1, rejected: 3, rejected_for_capacity: 2, undecided: 1 };
    assert_eq!(reports::referral_summary(&log.model, RPH, from, to), expected);
    // The report counts the referrals even though no episode started: they are not the cohort's.
    let r = log.report(from, to);
    assert_eq!(r.episodes, 0);
    assert_eq!(r.referrals, expected);

    assert_eq!(
        reports::referral_summary(&log.model, OTHER, from, to),
        ReferralSummary { received: 1, accepted: 1, rejected: 0, rejected_for_capacity: 0, undecided: 0 }
    );
    assert_eq!(
        reports::referral_summary(&log.model, POL, from, to),
        ReferralSummary { received: 0, accepted: 0, rejected: 0, rejected_for_capacity: 0, undecided: 0 }
    );
}

// ---------------------------------------------------------------------------------------------
// Continuity over the cohort's patients
// ---------------------------------------------------------------------------------------------

#[test]
fn given_patients_with_whole_pathways_when_reported_then_each_continuity_counts_once() {
    let mut log = Log::new();
    // P1: two RPH episodes in the cohort, and an outpatient episode at POL between them.
    // Sessions A A | A B | B: municipal, outpatient, municipal; both transitions keep the therapist.
    log.patient(P1, 1985, Gender::Female)
        .record(started(E1, RPH, t(1, 11, 9)))
        .record(assigned(E1, A, t(1, 11, 9)))
        .attended(E1, A, t(1, 11, 10))
        .attended(E1, A, t(1, 18, 10))
        .record(released(E1, A, ReleaseReason::EpisodeEnded, true, t(2, 1, 9)))
        .record(ended(E1, EndReason::ReferredOnward, t(2, 1, 9)))
        .record(started_acute(E2, POL, t(2, 8, 9)))
        .record(assigned(E2, A, t(2, 8, 9)))
        .record(assigned(E2, B, t(2, 8, 9)))
        .attended(E2, A, t(2, 15, 10))
        .record(released(E2, A, ReleaseReason::SickLeave, false, t(2, 20, 9)))
        .attended(E2, B, t(2, 22, 10));
    // P2: one session (COC undefined) and a release without notice and without successor.
    log.patient(P2, 1990, Gender::Male)
        .record(started(E4, RPH, t(3, 1, 9)))
        .record(assigned(E4, C, t(3, 1, 9)))
        .attended(E4, C, t(3, 2, 10))
        .record(released(E4, C, ReleaseReason::LeftPosition, false, t(3, 10, 9)));
    // P3: A then B: COC 0.
    log.patient(P3, 1975, Gender::Female).record(started(E5, RPH, t(3, 1, 9))).attended(E5, A, t(3, 2, 10)).attended(
        E5,
        B,
        t(3, 9, 10),
    );
    // P1 again, interleaved with the others in the log: back at RPH in April with B.
    log.on(P1).record(started(E3, RPH, t(4, 1, 9))).attended(E3, B, t(4, 5, 10));
    // P4: started at RPH before the period, so not in the cohort, with a transition and an
    // unnotified release that must not count.
    log.patient(P4, 1960, Gender::Male)
        .record(started(E6, RPH, ymd(2015, 12, 1)))
        .attended(E6, A, ymd(2015, 12, 2))
        .record(started_acute(E7, POL, t(1, 5, 9)))
        .record(assigned(E7, B, t(1, 5, 9)))
        .attended(E7, B, t(1, 6, 10))
        .record(released(E7, B, ReleaseReason::SickLeave, false, t(1, 20, 9)));

    let c1 = log.model.patients[&P1].continuity();
    assert_eq!((c1.care_level_transitions, c1.transitions_keeping_therapist, c1.handovers.len()), (2, 2, 2));
    assert_close(c1.indices.coc, 0.4); // A×3, B×2: (9 + 4 − 5) / (5·4)

    let r = log.report(t(1, 1, 0), t(7, 1, 0));
    assert_eq!((r.episodes, r.patients), (4, 3));
    let c = r.continuity;
    assert_eq!(c.patients_with_transition, 1);
    assert_eq!(c.transitions, 2, "P1's continuity once, although two of its episodes are in the cohort");
    assert_eq!(c.transitions_keeping_therapist, 2);
    assert_eq!(c.handovers, 3, "P1's two (one at POL) and P2's one");
    assert_eq!(c.handovers_without_notification, 2);
    assert_close(c.mean_coc, 0.2); // (0.4 + 0.0) / 2; P2's undefined COC is left out
}

// ---------------------------------------------------------------------------------------------
// Empty cohorts and reversed periods
// ---------------------------------------------------------------------------------------------

fn empty_report() -> PathwayReport {
    let no_outcomes = OutcomeSummary {
        intake_count: 0,
        intake_mean: None,
        discharge_count: 0,
        discharge_mean: None,
        paired_count: 0,
        mean_change: None,
        missing_pairs: 0,
        reliably_improved: 0,
        recovered: 0,
    };
    let nothing = Distribution { count: 0, mean: None, median: None, p90: None, min: None, max: None };
    PathwayReport {
        episodes: 0,
        patients: 0,
        gender: zero_counts(GENDER_KEYS),
        referral_sources: zero_counts(SOURCE_KEYS),
        end_reasons: zero_counts(END_REASON_KEYS),
        age_groups: zero_counts(DEFAULT_AGE_KEYS),
        phq9: no_outcomes,
        gad7: no_outcomes,
        recovery: RecoverySummary {
            eligible: 0,
            at_caseness: 0,
            recovered: 0,
            reliably_improved: 0,
            reliably_deteriorated: 0,
            reliably_recovered: 0,
            recovery_rate: None,
        },
        waiting_days: nothing,
        waiting_histogram: zero_counts(&["0-6", "7-13", "14-27", "28-55", "56-83", "84+"]),
        sessions_per_episode: nothing,
        referrals: ReferralSummary { received: 0, accepted: 0, rejected: 0, rejected_for_capacity: 0, undecided: 0 },
        continuity: ContinuitySummary {
            patients_with_transition: 0,
            transitions: 0,
            transitions_keeping_therapist: 0,
            handovers: 0,
            handovers_without_notification: 0,
            mean_coc: None,
        },
    }
}

#[test]
fn given_no_episode_in_the_period_when_reported_then_counts_are_zero_means_null_and_every_key_present() {
    let mut log = Log::new();
    // A full pathway, but in 2015.
    log.patient(P1, 1980, Gender::Female)
        .record(received(R1, RPH, ReferralSource::Gp, ymd(2015, 3, 1)))
        .record(accepted(R1, ymd(2015, 3, 2)))
        .record(started_from(E1, RPH, R1, ymd(2015, 3, 2)))
        .attended(E1, A, ymd(2015, 3, 3))
        .attended(E1, A, ymd(2015, 3, 10))
        .outcome(E1, Instrument::Phq9, MeasurePhase::Intake, 20, ymd(2015, 3, 3))
        .outcome(E1, Instrument::Phq9, MeasurePhase::Discharge, 5, ymd(2015, 3, 10))
        .record(ended(E1, EndReason::Completed, ymd(2015, 4, 1)));

    assert_eq!(log.report(t(1, 1, 0), t(7, 1, 0)), empty_report());
    // A service nobody has used yet, and an empty period, give the same.
    let pol = reports::pathway_report(&log.model, POL, t(1, 1, 0), t(7, 1, 0), DEFAULT_AGE_BINS).unwrap();
    assert_eq!(pol, empty_report());
    assert_eq!(log.report(ymd(2015, 3, 2), ymd(2015, 3, 2)), empty_report());
    // The 2015 period itself is not empty.
    assert_eq!(log.report(ymd(2015, 1, 1), ymd(2016, 1, 1)).episodes, 1);
}

#[test]
fn given_a_period_whose_end_is_before_its_start_when_reported_then_nothing_is_selected() {
    let mut log = Log::new();
    log.patient(P1, 1980, Gender::Female)
        .record(received(R1, RPH, ReferralSource::Gp, t(3, 1, 9)))
        .record(accepted(R1, t(3, 2, 9)))
        .record(started_from(E1, RPH, R1, t(3, 2, 9)));
    let (from, to) = (t(7, 1, 0), t(1, 1, 0));
    let model = &log.model;
    // A reversed period selects nothing: empty answers, never a panic.
    assert_eq!(reports::pathway_report(model, RPH, from, to, DEFAULT_AGE_BINS), Ok(empty_report()));
    assert_eq!(reports::waiting_days(model, RPH, from, to).count, 0);
    assert_eq!(reports::referral_summary(model, RPH, from, to), reports::ReferralSummary::default());
    assert_eq!(reports::pathway_report(model, POL, from, to, DEFAULT_AGE_BINS), Ok(empty_report()));
}

// ---------------------------------------------------------------------------------------------
// Open episodes
// ---------------------------------------------------------------------------------------------

#[test]
fn given_episodes_starting_and_ending_around_as_of_when_counted_then_open_means_started_before_and_not_ended_by_it() {
    let mut log = Log::new();
    log.patient(P1, 1980, Gender::Female)
        .record(started(E1, RPH, t(1, 1, 9))) // open
        .record(started(E2, RPH, t(1, 1, 9)))
        .record(ended(E2, EndReason::Completed, t(2, 1, 9))) // ended before
        .record(started(E3, RPH, t(1, 1, 9)))
        .record(ended(E3, EndReason::DroppedOut, as_of())) // ended exactly at as_of
        .record(started(E4, RPH, t(1, 1, 9)))
        .record(ended(E4, EndReason::Moved, t(4, 1, 9))) // an end dated after as_of is ignored
        .record(started(E5, RPH, as_of())) // started exactly at as_of
        .record(started(E6, RPH, t(3, 5, 9))) // started after
        .record(started(E7, OTHER, t(1, 1, 9))); // another service

    assert_eq!(reports::open_episodes(&log.model, RPH, as_of()), 2, "E1 and E4");
    assert_eq!(reports::open_episodes(&log.model, RPH, as_of() + Duration::seconds(1)), 3, "E1, E4 and E5");
    assert_eq!(reports::open_episodes(&log.model, RPH, t(4, 1, 9)), 3, "E1, E5 and E6; E4 ended");
    assert_eq!(reports::open_episodes(&log.model, RPH, t(1, 1, 9)), 0, "none started before");
    assert_eq!(reports::open_episodes(&log.model, OTHER, as_of()), 1);
    assert_eq!(reports::open_episodes(&log.model, POL, as_of()), 0);

    // The alerts use the same notion of open.
    let p = &log.model.patients[&P1];
    let open: Vec<Uuid> = p.episodes.iter().filter(|e| alerts::open_at(e, as_of())).map(|e| e.id).collect();
    assert_eq!(open, [E1, E4, E7]);
}

// ---------------------------------------------------------------------------------------------
// Care alerts
// ---------------------------------------------------------------------------------------------

#[test]
fn given_an_episode_never_assigned_when_alerts_are_asked_then_unassigned_since_start_after_more_than_7_days() {
    let d = AlertThresholds::default();
    assert_eq!(d, AlertThresholds { unassigned_days: 7.0, inactive_days: 28.0 });
    let mut log = Log::new();
    log.patient(P1, 1980, Gender::Female)
        .record(started(E1, RPH, t(2, 20, 12))) // 10 days before as_of
        .record(started(E2, RPH, t(2, 23, 12))) // exactly 7 days
        .record(started(E3, RPH, t(2, 23, 12) - Duration::minutes(1))); // 7 days and a minute

    assert_eq!(log.alerts_of(E1, as_of(), d), [(AlertKind::Unassigned, t(2, 20, 12), 10.0)]);
    assert_eq!(log.alerts_of(E2, as_of(), d), [], "exactly the threshold is not more than it");
    assert_eq!(
        log.alerts_of(E3, as_of(), d),
        [(AlertKind::Unassigned, t(2, 23, 12) - Duration::minutes(1), 10081.0 / 1440.0)]
    );
    // Other thresholds move the line.
    let strict = AlertThresholds { unassigned_days: 6.0, inactive_days: 28.0 };
    assert_eq!(log.alerts_of(E2, as_of(), strict), [(AlertKind::Unassigned, t(2, 23, 12), 7.0)]);
    let lax = AlertThresholds { unassigned_days: 10.0, inactive_days: 28.0 };
    assert_eq!(log.alerts_of(E1, as_of(), lax), []);
}

#[test]
fn given_releases_and_late_assignments_when_alerts_are_asked_then_unassigned_runs_from_the_last_release() {
    let d = AlertThresholds::default();
    let mut log = Log::new();
    log.patient(P1, 1980, Gender::Female)
        // Released Feb 20 noon, nobody after: unassigned for 10 days since the release.
        .record(started(E1, RPH, t(2, 1, 0)))
        .record(assigned(E1, A, t(2, 1, 0)))
        .attended(E1, A, t(2, 15, 12))
        .record(released(E1, A, ReleaseReason::PositionEnded, true, t(2, 20, 12)))
        // The same, but B took over the next day: no alert.
        .record(started(E2, RPH, t(2, 1, 0)))
        .record(assigned(E2, A, t(2, 1, 0)))
        .attended(E2, A, t(2, 15, 12))
        .record(released(E2, A, ReleaseReason::PositionEnded, true, t(2, 20, 12)))
        .record(assigned(E2, B, t(2, 21, 12)))
        // The same, but B is assigned only on Mar 2, after as_of.
        .record(started(E3, RPH, t(2, 1, 0)))
        .record(assigned(E3, A, t(2, 1, 0)))
        .attended(E3, A, t(2, 15, 12))
        .record(released(E3, A, ReleaseReason::PositionEnded, true, t(2, 20, 12)))
        .record(assigned(E3, B, t(3, 2, 12)))
        // Never assigned until Mar 5: unassigned since the start, 29.5 days.
        .record(started(E4, RPH, t(2, 1, 0)))
        .attended(E4, A, t(2, 15, 12))
        .record(assigned(E4, A, t(3, 5, 0)))
        // Assigned, and released only on Mar 5 (without notice): still assigned at as_of.
        .record(started(E5, RPH, t(2, 1, 0)))
        .record(assigned(E5, A, t(2, 1, 0)))
        .attended(E5, A, t(2, 15, 12))
        .record(released(E5, A, ReleaseReason::SickLeave, false, t(3, 5, 12)));

    assert_eq!(log.alerts_of(E1, as_of(), d), [(AlertKind::Unassigned, t(2, 20, 12), 10.0)]);
    assert_eq!(log.alerts_of(E2, as_of(), d), []);
    assert_eq!(log.alerts_of(E3, as_of(), d), [(AlertKind::Unassigned, t(2, 20, 12), 10.0)]);
    assert_eq!(log.alerts_of(E3, t(3, 2, 12), d), [], "from Mar 2 noon B is assigned");
    assert_eq!(log.alerts_of(E4, as_of(), d), [(AlertKind::Unassigned, t(2, 1, 0), 29.5)]);
    assert_eq!(log.alerts_of(E4, t(3, 5, 0), d), []);
    assert_eq!(log.alerts_of(E5, as_of(), d), [], "the release is after as_of");
    // A day after that release: told nothing, but only 1 day without a therapist.
    assert_eq!(log.alerts_of(E5, t(3, 6, 12), d), [(AlertKind::HandoverNotNotified, t(3, 5, 12), 1.0)]);
    // Nine days after: unassigned (since the release) as well; 28 days since the last session
    // is not yet inactive.
    assert_eq!(
        log.alerts_of(E5, t(3, 14, 12), d),
        [(AlertKind::Unassigned, t(3, 5, 12), 9.0), (AlertKind::HandoverNotNotified, t(3, 5, 12), 9.0)]
    );
}

#[test]
fn given_sessions_around_as_of_when_alerts_are_asked_then_inactive_runs_from_the_last_attended_one() {
    let d = AlertThresholds::default();
    let mut log = Log::new();
    log.patient(P1, 1980, Gender::Female)
        // Last attended Jan 20 noon; later a no-show and a cancellation; the next after as_of.
        .record(started(E1, RPH, t(1, 1, 12)))
        .record(assigned(E1, A, t(1, 1, 12)))
        .attended(E1, A, t(1, 20, 12))
        .session(E1, A, Attendance::NoShow, t(2, 20, 12))
        .session(E1, A, Attendance::CancelledByPatient, t(2, 25, 12))
        .attended(E1, A, t(3, 5, 12))
        // No attended session at all (E1's sessions are another episode's): since the start.
        .record(started(E2, RPH, t(1, 1, 12)))
        .record(assigned(E2, A, t(1, 1, 12)))
        // Exactly 28 days since the last attended session: no alert.
        .record(started(E3, RPH, t(1, 1, 12)))
        .record(assigned(E3, A, t(1, 1, 12)))
        .attended(E3, A, t(2, 2, 12))
        // 28 days and a minute.
        .record(started(E4, RPH, t(1, 1, 12)))
        .record(assigned(E4, A, t(1, 1, 12)))
        .attended(E4, A, t(2, 2, 12) - Duration::minutes(1));

    assert_eq!(log.alerts_of(E1, as_of(), d), [(AlertKind::Inactive, t(1, 20, 12), 41.0)]);
    assert_eq!(log.alerts_of(E1, t(3, 6, 12), d), [], "the Mar 5 session counts from then on");
    assert_eq!(log.alerts_of(E2, as_of(), d), [(AlertKind::Inactive, t(1, 1, 12), 60.0)]);
    assert_eq!(log.alerts_of(E3, as_of(), d), []);
    assert_eq!(
        log.alerts_of(E4, as_of(), d),
        [(AlertKind::Inactive, t(2, 2, 12) - Duration::minutes(1), 40321.0 / 1440.0)]
    );
    let lax = AlertThresholds { unassigned_days: 7.0, inactive_days: 41.0 };
    assert_eq!(log.alerts_of(E1, as_of(), lax), []);
}

#[test]
fn given_releases_without_notice_when_alerts_are_asked_then_those_in_the_last_30_days_alert() {
    let d = AlertThresholds::default();
    let mut log = Log::new();
    // Every episode keeps B assigned and sees B every few weeks, so only handovers can alert.
    let episode = |log: &mut Log, id: Uuid| {
        log.record(started(id, RPH, t(1, 1, 12)))
            .record(assigned(id, A, t(1, 1, 12)))
            .record(assigned(id, B, t(1, 1, 12)))
            .attended(id, B, t(1, 20, 12))
            .attended(id, B, t(2, 5, 12))
            .attended(id, B, t(2, 25, 12));
    };
    log.patient(P1, 1980, Gender::Female);
    episode(&mut log, E1);
    log.record(released(E1, A, ReleaseReason::SickLeave, false, t(1, 31, 12))); // 30 days: alert
    episode(&mut log, E2);
    log.record(released(E2, A, ReleaseReason::SickLeave, false, t(1, 30, 12))); // 31 days: none
    episode(&mut log, E3);
    log.record(released(E3, A, ReleaseReason::SickLeave, true, t(2, 20, 12))); // notified: none
    episode(&mut log, E4);
    log.record(assigned(E4, C, t(1, 1, 12)))
        .record(released(E4, C, ReleaseReason::Transfer, false, t(2, 25, 12)))
        .record(released(E4, A, ReleaseReason::LeftPosition, false, t(2, 10, 12))); // two alerts

    assert_eq!(log.alerts_of(E1, as_of(), d), [(AlertKind::HandoverNotNotified, t(1, 31, 12), 30.0)]);
    assert_eq!(log.alerts_of(E2, as_of(), d), []);
    assert_eq!(log.alerts_of(E3, as_of(), d), []);
    assert_eq!(
        log.alerts_of(E4, as_of(), d),
        [(AlertKind::HandoverNotNotified, t(2, 25, 12), 5.0), (AlertKind::HandoverNotNotified, t(2, 10, 12), 20.0)]
    );
    assert_eq!(log.alerts_of(E4, t(2, 20, 12), d), [(AlertKind::HandoverNotNotified, t(2, 10, 12), 10.0)]);
    assert_eq!(log.alerts_of(E1, t(1, 31, 12), d), [(AlertKind::HandoverNotNotified, t(1, 31, 12), 0.0)]);
}

#[test]
fn given_episodes_ended_or_not_yet_started_when_alerts_are_asked_then_only_open_ones_alert() {
    let d = AlertThresholds::default();
    let mut log = Log::new();
    log.patient(P1, 1980, Gender::Female)
        // Unassigned and inactive for ages, but ended before as_of.
        .record(started(E1, RPH, t(1, 1, 12)))
        .record(ended(E1, EndReason::DroppedOut, t(2, 1, 12)))
        // Ended exactly at as_of.
        .record(started(E2, RPH, t(1, 1, 12)))
        .record(ended(E2, EndReason::Completed, as_of()))
        // Ended after as_of: still open then.
        .record(started(E3, RPH, t(1, 1, 12)))
        .record(ended(E3, EndReason::Completed, t(3, 10, 12)))
        // Started exactly at as_of.
        .record(started(E4, RPH, as_of()))
        // A recent release without notice, but the episode has ended.
        .record(started(E5, RPH, t(2, 1, 12)))
        .record(assigned(E5, A, t(2, 1, 12)))
        .attended(E5, A, t(2, 15, 12))
        .record(released(E5, A, ReleaseReason::EpisodeEnded, false, t(2, 20, 12)))
        .record(ended(E5, EndReason::Completed, t(2, 20, 12)));

    assert_eq!(log.alerts_of(E1, as_of(), d), []);
    assert_eq!(log.alerts_of(E2, as_of(), d), []);
    assert_eq!(
        log.alerts_of(E3, as_of(), d),
        [(AlertKind::Unassigned, t(1, 1, 12), 60.0), (AlertKind::Inactive, t(1, 1, 12), 60.0)]
    );
    assert_eq!(log.alerts_of(E4, as_of(), d), []);
    assert_eq!(log.alerts_of(E5, as_of(), d), []);
    // E5 ended at the instant of the release: it was never open with the release behind it.
    assert_eq!(log.alerts_of(E5, t(2, 20, 12), d), []);

    let all = alerts::care_alerts(&log.model, as_of(), None, d);
    let episodes: Vec<_> = all.iter().map(|a| (a.kind, a.episode_id)).collect();
    assert_eq!(episodes, [(AlertKind::Unassigned, E3), (AlertKind::Inactive, E3)]);
}

fn alert(
    kind: AlertKind,
    patient_id: Uuid,
    episode_id: Uuid,
    service_id: Uuid,
    since: Timestamp,
    days: f64,
) -> CareAlert {
    CareAlert { kind, patient_id, episode_id, service_id, since, days }
}

/// Four patients with open episodes at RPH and OTHER, and three that give no alert.
fn ward() -> Log {
    let mut log = Log::new();
    // Unassigned for 10 days.
    log.patient(P1, 1980, Gender::Female).record(started(E1, RPH, t(2, 20, 12)));
    // Unassigned for 20 days; seen 19 days ago.
    log.patient(P2, 1990, Gender::Male).record(started(E2, RPH, t(2, 10, 12))).attended(E2, A, t(2, 11, 12));
    // At OTHER: A released without notice 10 days ago, nobody since, never seen.
    log.patient(P3, 1975, Gender::Other)
        .record(started(E3, OTHER, t(1, 1, 12)))
        .record(assigned(E3, A, t(1, 1, 12)))
        .record(released(E3, A, ReleaseReason::SickLeave, false, t(2, 20, 12)));
    // Assigned, last seen 50 days ago.
    log.patient(P4, 1965, Gender::Female)
        .record(started(E4, RPH, t(1, 1, 12)))
        .record(assigned(E4, B, t(1, 1, 12)))
        .attended(E4, B, t(1, 11, 12));
    // Ended, starting at as_of, starting after it: no alerts.
    log.patient(P5, 1955, Gender::Male)
        .record(started(E5, RPH, t(1, 1, 12)))
        .record(ended(E5, EndReason::Moved, t(2, 25, 12)))
        .record(started(E6, RPH, as_of()))
        .record(started(E7, RPH, t(3, 5, 12)));
    log
}

#[test]
fn given_a_ward_when_all_alerts_are_asked_then_they_are_sorted_by_kind_then_longest_standing() {
    let log = ward();
    let d = AlertThresholds::default();
    assert_eq!(
        alerts::care_alerts(&log.model, as_of(), None, d),
        [
            alert(AlertKind::Unassigned, P2, E2, RPH, t(2, 10, 12), 20.0),
            // Equal days: by episode id.
            alert(AlertKind::Unassigned, P1, E1, RPH, t(2, 20, 12), 10.0),
            alert(AlertKind::Unassigned, P3, E3, OTHER, t(2, 20, 12), 10.0),
            alert(AlertKind::Inactive, P3, E3, OTHER, t(1, 1, 12), 60.0),
            alert(AlertKind::Inactive, P4, E4, RPH, t(1, 11, 12), 50.0),
            alert(AlertKind::HandoverNotNotified, P3, E3, OTHER, t(2, 20, 12), 10.0),
        ]
    );
    assert_eq!(
        [AlertKind::Unassigned, AlertKind::Inactive, AlertKind::HandoverNotNotified].map(AlertKind::code),
        ["UNASSIGNED", "INACTIVE", "HANDOVER_NOT_NOTIFIED"]
    );
}

#[test]
fn given_a_ward_when_alerts_are_asked_for_one_service_then_only_its_episodes_alert() {
    let log = ward();
    let d = AlertThresholds::default();
    assert_eq!(
        alerts::care_alerts(&log.model, as_of(), Some(RPH), d),
        [
            alert(AlertKind::Unassigned, P2, E2, RPH, t(2, 10, 12), 20.0),
            alert(AlertKind::Unassigned, P1, E1, RPH, t(2, 20, 12), 10.0),
            alert(AlertKind::Inactive, P4, E4, RPH, t(1, 11, 12), 50.0),
        ]
    );
    assert_eq!(
        alerts::care_alerts(&log.model, as_of(), Some(OTHER), d),
        [
            alert(AlertKind::Unassigned, P3, E3, OTHER, t(2, 20, 12), 10.0),
            alert(AlertKind::Inactive, P3, E3, OTHER, t(1, 1, 12), 60.0),
            alert(AlertKind::HandoverNotNotified, P3, E3, OTHER, t(2, 20, 12), 10.0),
        ]
    );
    assert_eq!(alerts::care_alerts(&log.model, as_of(), Some(POL), d), []);
    // Looser thresholds leave the longest-standing only; the handover window is fixed.
    let lax = AlertThresholds { unassigned_days: 25.0, inactive_days: 55.0 };
    assert_eq!(
        alerts::care_alerts(&log.model, as_of(), None, lax),
        [
            alert(AlertKind::Inactive, P3, E3, OTHER, t(1, 1, 12), 60.0),
            alert(AlertKind::HandoverNotNotified, P3, E3, OTHER, t(2, 20, 12), 10.0),
        ]
    );
    // Before anything was open, nothing alerts.
    assert_eq!(alerts::care_alerts(&log.model, t(1, 1, 12), None, d), []);
}
