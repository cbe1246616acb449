//! One patient's pathway, and the episodes, referrals and scores it is made of.

use chrono::{Duration, TimeZone, Utc};
use rand::Rng;
use uuid::Uuid;

use forlop_domain::events::*;
use forlop_domain::*;

use crate::random::Gen;
use crate::sector::Sector;
use crate::Seeded;

/// One patient's pathway: municipal low-threshold help, and for some an onward referral to a DPS,
/// sometimes with a stay on a ward.
pub(crate) fn pathway(g: &mut Gen, s: &Sector) -> Vec<Seeded> {
    let patient_id = g.id();
    let mut out = Vec::new();
    let mut push = |g: &mut Gen, command: Command| out.push(Seeded { event_id: g.id(), command });
    let gender = g.weighted(&[(Gender::Female, 65), (Gender::Male, 33), (Gender::Other, 1), (Gender::Unknown, 1)]);
    let birth_year = g.rng.gen_range(1950..=2006);
    push(g, Command::RegisterPatient(PatientRegistered { patient_id, birth_year, gender, national_id: None }));

    let base = Utc.with_ymd_and_hms(2016, 1, 4, 8, 0, 0).unwrap();
    let received_at = base + g.days(0, 3300);
    let service_id = g.pick(&s.municipal);
    let referral_id = g.id();
    let source = g.weighted(&[
        (ReferralSource::SelfReferral, 70),
        (ReferralSource::HealthPersonnel, 10),
        (ReferralSource::Gp, 10),
        (ReferralSource::Relative, 5),
        (ReferralSource::Nav, 3),
        (ReferralSource::Other, 2),
    ]);
    push(g, received(patient_id, referral_id, service_id, source, received_at));
    let decided_at = received_at + g.days(0, 5);
    if g.chance(0.08) {
        let reason = g.weighted(&[
            (RejectionReason::Capacity, 6),
            (RejectionReason::NotInTargetGroup, 2),
            (RejectionReason::NeedsOtherLevel, 2),
        ]);
        push(g, decided(patient_id, referral_id, Some(reason), decided_at));
        return out;
    }
    push(g, decided(patient_id, referral_id, None, decided_at));

    let therapist = g.pick(&s.municipal_staff);
    let start = decided_at + g.days(1, 30);
    let plan = EpisodePlan::new(patient_id, service_id, Some(referral_id), start, therapist, &s.municipal_staff);
    let (end, onward, last_therapist) = episode(g, &mut push, plan);
    if let (Some(end), true) = (end, onward) {
        onward_to_dps(g, &mut push, s, patient_id, end, last_therapist);
    }
    out
}

pub(crate) fn received(
    patient_id: Uuid,
    referral_id: Uuid,
    service_id: Uuid,
    source: ReferralSource,
    at: Timestamp,
) -> Command {
    Command::ReceiveReferral {
        patient_id,
        event: ReferralReceived { referral_id, service_id, source, received_at: at },
    }
}

/// Accepted without a rejection reason, rejected with one.
pub(crate) fn decided(
    patient_id: Uuid,
    referral_id: Uuid,
    rejection: Option<RejectionReason>,
    at: Timestamp,
) -> Command {
    let decision = if rejection.is_some() { ReferralDecision::Rejected } else { ReferralDecision::Accepted };
    Command::DecideReferral {
        patient_id,
        event: ReferralDecided { referral_id, decision, reason: rejection, decided_at: at },
    }
}

/// An onward GP referral to a DPS outpatient clinic; sometimes refused for capacity, sometimes
/// with a stay on a ward.
pub(crate) fn onward_to_dps(
    g: &mut Gen,
    push: &mut impl FnMut(&mut Gen, Command),
    s: &Sector,
    patient_id: Uuid,
    end: Timestamp,
    last_therapist: Uuid,
) {
    let dps = g.pick(&s.outpatient);
    let referral_id = g.id();
    let received_at = end + g.days(0, 7);
    push(g, received(patient_id, referral_id, dps, ReferralSource::Gp, received_at));
    let decided_at = received_at + g.days(1, 14);
    if g.chance(0.2) {
        push(g, decided(patient_id, referral_id, Some(RejectionReason::Capacity), decided_at));
        return;
    }
    push(g, decided(patient_id, referral_id, None, decided_at));
    // The programme's wish: keep the therapist across levels. Some services manage it.
    let therapist = if g.chance(0.35) { last_therapist } else { g.pick(&s.specialist_staff) };
    let start = decided_at + g.days(3, 60);
    let mut plan = EpisodePlan::new(patient_id, dps, Some(referral_id), start, therapist, &s.specialist_staff);
    plan.ward = g.chance(0.15).then(|| (g.pick(&s.inpatient), g.pick(&s.ward_staff)));
    episode(g, push, plan);
}

/// Intake and discharge totals planned for an episode; None leaves a score unrecorded.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlannedScores {
    pub phq9: (Option<u32>, Option<u32>),
    pub gad7: (Option<u32>, Option<u32>),
}

/// What to generate for one episode. Unplanned parts (scores, ending) are drawn at random.
pub(crate) struct EpisodePlan<'a> {
    pub(crate) patient_id: Uuid,
    pub(crate) service_id: Uuid,
    pub(crate) referral_id: Option<Uuid>,
    pub(crate) start: Timestamp,
    pub(crate) therapist: Uuid,
    pub(crate) pool: &'a [Uuid],
    /// The ward and its therapist, for an episode with a stay.
    pub(crate) ward: Option<(Uuid, Uuid)>,
    pub(crate) scores: Option<PlannedScores>,
    pub(crate) end: Option<EndReason>,
}

impl<'a> EpisodePlan<'a> {
    pub(crate) fn new(
        patient_id: Uuid,
        service_id: Uuid,
        referral_id: Option<Uuid>,
        start: Timestamp,
        therapist: Uuid,
        pool: &'a [Uuid],
    ) -> Self {
        EpisodePlan { patient_id, service_id, referral_id, start, therapist, pool, ward: None, scores: None, end: None }
    }
}

/// Records an episode with weekly sessions. Returns its end (None if still open), whether it
/// ended with an onward referral, and the last therapist.
pub(crate) fn episode(
    g: &mut Gen,
    push: &mut impl FnMut(&mut Gen, Command),
    plan: EpisodePlan<'_>,
) -> (Option<Timestamp>, bool, Uuid) {
    let EpisodePlan { patient_id, service_id, referral_id, start, mut therapist, pool, ward, scores, end } = plan;
    let now = Utc.with_ymd_and_hms(2025, 10, 1, 0, 0, 0).unwrap();
    let episode_id = g.id();
    push(
        g,
        Command::StartEpisode {
            patient_id,
            event: EpisodeStarted { episode_id, service_id, referral_id, started_at: start, acute: false },
        },
    );
    push(
        g,
        Command::AssignTherapist {
            patient_id,
            event: TherapistAssigned { episode_id, therapist_id: therapist, assigned_at: start },
        },
    );
    let severity = g.rng.gen_range(0.8..2.4);
    let outcome = |g: &mut Gen, push: &mut dyn FnMut(&mut Gen, Command), instrument: Instrument, phase, at, items| {
        push(
            g,
            Command::RecordOutcome {
                patient_id,
                event: OutcomeRecorded { episode_id, instrument, phase, items, total: 0, measured_at: at },
            },
        );
    };
    // (instrument, planned or drawn total, mean item score when drawn)
    let intakes = match scores {
        Some(p) => [(Instrument::Phq9, p.phq9.0, 0.0), (Instrument::Gad7, p.gad7.0, 0.0)],
        None => [
            (Instrument::Phq9, g.chance(0.75).then_some(u32::MAX), severity),
            (Instrument::Gad7, g.chance(0.65).then_some(u32::MAX), severity * 0.9),
        ],
    };
    for (instrument, total, mean) in intakes {
        if let Some(total) = total {
            let items = g.items_for(instrument, total, mean);
            outcome(g, push, instrument, MeasurePhase::Intake, start, items);
        }
    }
    let dropout = match end {
        Some(reason) => reason == EndReason::DroppedOut,
        None => g.chance(0.15),
    };
    let planned = if dropout { g.rng.gen_range(1..=3) } else { g.rng.gen_range(3..=14) };
    let sick_leave_at = g.chance(0.12).then(|| g.rng.gen_range(1..planned.max(2)));
    let admission_at = ward.map(|_| g.rng.gen_range(1..planned.max(2)));
    let mut t = start + Duration::hours(1);
    let mut open_admission: Option<(Uuid, Timestamp)> = None;
    for i in 0..planned {
        if t > now {
            return (None, false, therapist);
        }
        if sick_leave_at == Some(i) {
            let notified = g.chance(0.5);
            push(
                g,
                Command::ReleaseTherapist {
                    patient_id,
                    event: TherapistReleased {
                        episode_id,
                        therapist_id: therapist,
                        reason: ReleaseReason::SickLeave,
                        patient_notified: notified,
                        released_at: t,
                    },
                },
            );
            t += g.days(1, 21);
            let next = g.pick(pool);
            therapist = if next == therapist {
                pool[(pool.iter().position(|x| *x == next).unwrap() + 1) % pool.len()]
            } else {
                next
            };
            push(
                g,
                Command::AssignTherapist {
                    patient_id,
                    event: TherapistAssigned { episode_id, therapist_id: therapist, assigned_at: t },
                },
            );
            t += Duration::hours(1);
        }
        if let (Some((ward_id, _)), Some(at)) = (ward, admission_at) {
            if at == i {
                let admission_id = g.id();
                push(
                    g,
                    Command::AdmitPatient {
                        patient_id,
                        event: PatientAdmitted { admission_id, service_id: ward_id, admitted_at: t },
                    },
                );
                open_admission = Some((admission_id, t));
            }
        }
        let session_therapist = match (open_admission, ward) {
            (Some(_), Some((_, ward_therapist))) if g.chance(0.6) => ward_therapist,
            _ => therapist,
        };
        let attendance = g.weighted(&[
            (Attendance::Attended, 84),
            (Attendance::NoShow, 7),
            (Attendance::CancelledByPatient, 6),
            (Attendance::CancelledByService, 3),
        ]);
        let session_id = g.id();
        push(
            g,
            Command::RecordSession {
                patient_id,
                event: SessionRecorded { session_id, episode_id, therapist_id: session_therapist, attendance, at: t },
            },
        );
        if let Some((admission_id, admitted)) = open_admission {
            if t - admitted > Duration::days(3) && g.chance(0.5) {
                push(
                    g,
                    Command::DischargePatient {
                        patient_id,
                        event: PatientDischarged { admission_id, discharged_at: t + Duration::hours(2) },
                    },
                );
                open_admission = None;
            }
        }
        t += if open_admission.is_some() { g.days(1, 2) } else { g.days(6, 9) };
    }
    if let Some((admission_id, _)) = open_admission {
        push(g, Command::DischargePatient { patient_id, event: PatientDischarged { admission_id, discharged_at: t } });
    }
    if dropout {
        // Nobody notices at once that a patient has fallen away: the episode is closed weeks later.
        t += g.days(30, 75);
    }
    if t > now {
        return (None, false, therapist);
    }
    let onward = match end {
        Some(reason) => reason == EndReason::ReferredOnward,
        None => !dropout && g.chance(0.25),
    };
    let discharges = match scores {
        Some(p) => [(Instrument::Phq9, p.phq9.1, 0.0), (Instrument::Gad7, p.gad7.1, 0.0)],
        None if dropout => [(Instrument::Phq9, None, 0.0), (Instrument::Gad7, None, 0.0)],
        None => [
            (Instrument::Phq9, g.chance(0.5).then_some(u32::MAX), severity * 0.6),
            (Instrument::Gad7, g.chance(0.45).then_some(u32::MAX), severity * 0.55),
        ],
    };
    for (instrument, total, mean) in discharges {
        if let Some(total) = total {
            let items = g.items_for(instrument, total, mean);
            outcome(g, push, instrument, MeasurePhase::Discharge, t, items);
        }
    }
    push(
        g,
        Command::ReleaseTherapist {
            patient_id,
            event: TherapistReleased {
                episode_id,
                therapist_id: therapist,
                reason: ReleaseReason::EpisodeEnded,
                patient_notified: true,
                released_at: t,
            },
        },
    );
    let reason = end.unwrap_or(if dropout {
        EndReason::DroppedOut
    } else if onward {
        EndReason::ReferredOnward
    } else {
        EndReason::Completed
    });
    push(g, Command::EndEpisode { patient_id, event: EpisodeEnded { episode_id, reason, ended_at: t } });
    (Some(t), onward, therapist)
}
