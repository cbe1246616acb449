//! The `rph2016` profile: a synthetic cohort at one municipal low-threshold service whose basis
//! figures match the published table of the 2016 report on Rask psykisk helsehjelp in Bydel
//! Gamle Oslo (see domain.md), plus onward referrals to a DPS and its ward. The people are
//! invented; only the aggregate figures are the report's.

use chrono::{Duration, TimeZone, Utc};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use forlop_domain::events::*;
use forlop_domain::*;

use crate::pathway::{decided, episode, onward_to_dps, received, EpisodePlan, PlannedScores};
use crate::random::Gen;
use crate::sector::{register_service, register_staff, Sector};
use crate::{Dataset, Seeded};

/// The published figures the profile reproduces.
pub mod published {
    pub const EPISODES: usize = 304;
    pub const FEMALE: usize = 199;
    pub const MALE: usize = 101;
    pub const UNKNOWN_GENDER: usize = 4;
    pub const SELF_REFERRED: usize = 236;
    pub const FROM_HEALTH_PERSONNEL: usize = 30;
    pub const FROM_RELATIVES: usize = 11;
    pub const PHQ9_PAIRS: usize = 73;
    pub const GAD7_PAIRS: usize = 66;
    pub const PHQ9_INTAKE_MEAN: f64 = 13.5;
    pub const PHQ9_DISCHARGE_MEAN: f64 = 8.6;
    pub const PHQ9_MEAN_CHANGE: f64 = 4.3;
    pub const GAD7_INTAKE_MEAN: f64 = 11.1;
    pub const GAD7_DISCHARGE_MEAN: f64 = 6.8;
}

/// Name of the cohort's service.
pub const SERVICE_NAME: &str = "Rask psykisk helsehjelp Gamle Oslo";
/// PHQ-9 intakes without a discharge score: the report's missing registrations, mostly dropouts.
const PHQ9_INTAKE_ONLY: usize = 60;
/// Referrals the service turned down in 2016 (no episode).
const REJECTED: [(RejectionReason, usize); 3] =
    [(RejectionReason::Capacity, 10), (RejectionReason::NotInTargetGroup, 3), (RejectionReason::NeedsOtherLevel, 2)];

/// The random stream this profile draws from (the `city` profile uses stream 0).
const PROFILE_STREAM: u64 = 2016;

fn exact(n: usize, mean: f64) -> i64 {
    (n as f64 * mean).round() as i64
}

pub fn rph2016(seed: u64) -> Dataset {
    use published::*;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // A stream of its own, so no id collides with the `city` profile's for the same seed.
    rng.set_stream(PROFILE_STREAM);
    let mut g = Gen { rng };
    let mut reference = Vec::new();
    let rph = register_service(&mut g, &mut reference, SERVICE_NAME, CareLevel::Municipal);
    let dps = register_service(&mut g, &mut reference, "DPS Øst poliklinikk", CareLevel::SpecialistOutpatient);
    let ward = register_service(&mut g, &mut reference, "DPS Øst døgnpost", CareLevel::SpecialistInpatient);
    let sector = Sector {
        municipal: vec![rph],
        outpatient: vec![dps],
        day: vec![],
        inpatient: vec![ward],
        municipal_staff: register_staff(&mut g, &mut reference, 8),
        specialist_staff: register_staff(&mut g, &mut reference, 10),
        ward_staff: register_staff(&mut g, &mut reference, 4),
    };

    let mut genders: Vec<Gender> = [(Gender::Female, FEMALE), (Gender::Male, MALE), (Gender::Unknown, UNKNOWN_GENDER)]
        .iter()
        .flat_map(|&(x, n)| std::iter::repeat_n(x, n))
        .collect();
    let mut sources: Vec<Option<ReferralSource>> = [
        (Some(ReferralSource::SelfReferral), SELF_REFERRED),
        (Some(ReferralSource::HealthPersonnel), FROM_HEALTH_PERSONNEL),
        (Some(ReferralSource::Relative), FROM_RELATIVES),
        (None, EPISODES - SELF_REFERRED - FROM_HEALTH_PERSONNEL - FROM_RELATIVES),
    ]
    .iter()
    .flat_map(|&(x, n)| std::iter::repeat_n(x, n))
    .collect();
    genders.shuffle(&mut g.rng);
    sources.shuffle(&mut g.rng);

    // Outcome plans with the published means. Paired PHQ-9: change 4.3 on average; the unpaired
    // intakes (dropouts, more severe) lift the intake mean over all intakes to 13.5.
    let phq_pair_intake = g.totals(exact(PHQ9_PAIRS, PHQ9_DISCHARGE_MEAN + PHQ9_MEAN_CHANGE), &[(6, 24); PHQ9_PAIRS]);
    // change = intake − discharge, with the discharge kept within 0..=27
    let bounds: Vec<_> = phq_pair_intake.iter().map(|&i| ((i - 27).max(-3), i.min(12))).collect();
    let changes = g.totals(exact(PHQ9_PAIRS, PHQ9_MEAN_CHANGE), &bounds);
    let phq_pair_discharge: Vec<i64> = phq_pair_intake.iter().zip(&changes).map(|(i, c)| i - c).collect();
    let all_intakes = exact(PHQ9_PAIRS + PHQ9_INTAKE_ONLY, PHQ9_INTAKE_MEAN);
    let phq_only = g.totals(all_intakes - phq_pair_intake.iter().sum::<i64>(), &[(6, 27); PHQ9_INTAKE_ONLY]);
    let gad_intake = g.totals(exact(GAD7_PAIRS, GAD7_INTAKE_MEAN), &[(4, 20); GAD7_PAIRS]);
    let bounds: Vec<_> = gad_intake.iter().map(|&i| ((i - 21).max(-2), i.min(10))).collect();
    let gad_changes = g.totals(exact(GAD7_PAIRS, GAD7_INTAKE_MEAN) - exact(GAD7_PAIRS, GAD7_DISCHARGE_MEAN), &bounds);
    let mut plans = vec![PlannedScores::default(); EPISODES];
    for i in 0..PHQ9_PAIRS {
        plans[i].phq9 = (Some(phq_pair_intake[i] as u32), Some(phq_pair_discharge[i] as u32));
    }
    for i in 0..GAD7_PAIRS {
        plans[i].gad7 = (Some(gad_intake[i] as u32), Some((gad_intake[i] - gad_changes[i]) as u32));
    }
    for (i, total) in phq_only.iter().enumerate() {
        plans[PHQ9_PAIRS + i].phq9 = (Some(*total as u32), None);
    }
    plans.shuffle(&mut g.rng);

    let year = Utc.with_ymd_and_hms(2016, 1, 4, 9, 0, 0).unwrap();
    let mut patients = Vec::with_capacity(EPISODES + 15);
    for i in 0..EPISODES {
        let mut out = Vec::new();
        let mut push = |g: &mut Gen, command: Command| out.push(Seeded { event_id: g.id(), command });
        let patient_id = g.id();
        let age = g.weighted(&[
            (18..25, 25),
            (25..31, 20),
            (31..36, 12),
            (36..46, 18),
            (46..56, 13),
            (56..67, 8),
            (67..80, 4),
        ]);
        // Starts from late January, so every referral of the cohort is received within 2016.
        let start = year + Duration::days(21) + Duration::minutes(g.rng.gen_range(0..330 * 1440));
        let birth_year = 2016 - g.rng.gen_range(age);
        push(
            &mut g,
            Command::RegisterPatient(PatientRegistered {
                patient_id,
                birth_year,
                gender: genders[i],
                national_id: None,
            }),
        );
        let referral_id = sources[i].map(|source| {
            let referral_id = g.id();
            let received_at = start - g.days(1, 21);
            push(&mut g, received(patient_id, referral_id, rph, source, received_at));
            let decided_at = received_at + Duration::hours(g.rng.gen_range(1..20));
            push(&mut g, decided(patient_id, referral_id, None, decided_at));
            referral_id
        });
        let scores = plans[i];
        let end = match scores {
            PlannedScores { phq9: (Some(_), Some(_)), .. } | PlannedScores { gad7: (Some(_), Some(_)), .. } => {
                if g.chance(0.3) {
                    EndReason::ReferredOnward
                } else {
                    EndReason::Completed
                }
            }
            PlannedScores { phq9: (Some(_), None), .. } => EndReason::DroppedOut,
            _ => g.weighted(&[
                (EndReason::Completed, 45),
                (EndReason::DroppedOut, 35),
                (EndReason::ReferredOnward, 10),
                (EndReason::Moved, 5),
                (EndReason::Other, 5),
            ]),
        };
        let therapist = g.pick(&sector.municipal_staff);
        let mut plan = EpisodePlan::new(patient_id, rph, referral_id, start, therapist, &sector.municipal_staff);
        plan.scores = Some(scores);
        plan.end = Some(end);
        let (ended, onward, last) = episode(&mut g, &mut push, plan);
        if let (Some(ended), true) = (ended, onward) {
            onward_to_dps(&mut g, &mut push, &sector, patient_id, ended, last);
        }
        patients.push(out);
    }
    for (reason, n) in REJECTED {
        for _ in 0..n {
            let mut out = Vec::new();
            let patient_id = g.id();
            let received_at = year + Duration::minutes(g.rng.gen_range(0..350 * 1440));
            let birth_year = g.rng.gen_range(1950..=1998);
            let gender = g.weighted(&[(Gender::Female, 2), (Gender::Male, 1)]);
            let referral_id = g.id();
            let decided_at = received_at + Duration::days(2);
            for command in [
                Command::RegisterPatient(PatientRegistered { patient_id, birth_year, gender, national_id: None }),
                received(patient_id, referral_id, rph, ReferralSource::SelfReferral, received_at),
                decided(patient_id, referral_id, Some(reason), decided_at),
            ] {
                out.push(Seeded { event_id: g.id(), command });
            }
            patients.push(out);
        }
    }
    Dataset { reference, patients }
}
