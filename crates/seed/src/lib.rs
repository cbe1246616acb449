//! Deterministic synthetic care pathways for demos, tests and benchmarks. No real person is in
//! here: names are drawn from lists of common given and family names, everything else from a
//! seeded random generator. The same seed always yields the same commands, event ids included.

use std::collections::HashMap;

use chrono::{Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use forlop_domain::events::*;
use forlop_domain::*;

mod rph2016;
pub use rph2016::{published, rph2016, SERVICE_NAME as RPH2016_SERVICE};

/// A command with the event id it is recorded under, so seeding twice writes nothing new.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub event_id: Uuid,
    pub command: Command,
}

#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Services and therapists; record these first.
    pub reference: Vec<Seeded>,
    /// One list per patient, in recording order.
    pub patients: Vec<Vec<Seeded>>,
}

impl Dataset {
    pub fn event_count(&self) -> usize {
        self.reference.len() + self.patients.iter().map(Vec::len).sum::<usize>()
    }
}

/// Reference data as the domain needs it to decide patient commands.
#[derive(Debug, Default)]
pub struct Catalog {
    services: HashMap<Uuid, ServiceRegistered>,
    therapists: HashMap<Uuid, TherapistRegistered>,
}

impl Catalog {
    pub fn from_reference(reference: &[Seeded]) -> Catalog {
        let mut c = Catalog::default();
        for s in reference {
            match &s.command {
                Command::RegisterService(e) => {
                    c.services.insert(e.service_id, e.clone());
                }
                Command::RegisterTherapist(e) => {
                    c.therapists.insert(e.therapist_id, e.clone());
                }
                _ => {}
            }
        }
        c
    }

    pub fn references(&self, command: &Command) -> References {
        References {
            service: command.referenced_service().and_then(|id| self.services.get(&id).cloned()),
            therapist: command.referenced_therapist().and_then(|id| self.therapists.get(&id).cloned()),
        }
    }
}

/// Runs one stream's commands through the domain, as the server would, yielding their events.
pub fn decide_stream(catalog: &Catalog, commands: &[Seeded]) -> Result<Vec<(Uuid, Event)>, DomainError> {
    let mut state = StreamState::default();
    let mut out = Vec::with_capacity(commands.len());
    for s in commands {
        let event = decide(&state, &catalog.references(&s.command), s.command.clone())?;
        state.apply(&event);
        out.push((s.event_id, event));
    }
    Ok(out)
}

const GIVEN: &[&str] = &[
    "Ingrid", "Kari", "Nora", "Emma", "Sara", "Ida", "Hanne", "Marit", "Jon", "Ole", "Lars", "Knut", "Per", "Anders",
    "Ali", "Fatima", "Mohammed", "Aisha", "Piotr", "Sofie",
];
const FAMILY: &[&str] = &[
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nilsen",
    "Kristiansen",
    "Jensen",
    "Karlsen",
    "Berg",
    "Haugen",
    "Hagen",
    "Ahmed",
    "Khan",
    "Nowak",
    "Dahl",
    "Lie",
];

pub(crate) struct Gen {
    rng: ChaCha8Rng,
}

impl Gen {
    fn id(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.rng.gen()).into_uuid()
    }
    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }
    fn days(&mut self, lo: i64, hi: i64) -> Duration {
        Duration::minutes(self.rng.gen_range(lo * 1440..=hi * 1440))
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.gen_range(0..xs.len())]
    }
    fn weighted<T: Clone>(&mut self, xs: &[(T, u32)]) -> T {
        let total: u32 = xs.iter().map(|x| x.1).sum();
        let mut r = self.rng.gen_range(0..total);
        for (x, w) in xs {
            if r < *w {
                return x.clone();
            }
            r -= w;
        }
        xs[0].0.clone()
    }
    fn name(&mut self) -> String {
        format!("{} {}", self.pick(GIVEN), self.pick(FAMILY))
    }
    fn items(&mut self, n: usize, mean: f64) -> Vec<u8> {
        (0..n).map(|_| (mean + self.rng.gen_range(-1.0..1.0)).round().clamp(0.0, 3.0) as u8).collect()
    }
    /// Item scores for `total` (u32::MAX: drawn around `mean` instead).
    fn items_for(&mut self, instrument: Instrument, total: u32, mean: f64) -> Vec<u8> {
        let n = instrument.item_count();
        if total == u32::MAX {
            return self.items(n, mean);
        }
        let mut items = vec![0u8; n];
        for _ in 0..total.min(3 * n as u32) {
            let open: Vec<usize> = (0..n).filter(|i| items[*i] < 3).collect();
            items[open[self.rng.gen_range(0..open.len())]] += 1;
        }
        items
    }
    /// Integers within per-element bounds that add up to `sum`, scattered around their mean.
    fn totals(&mut self, sum: i64, bounds: &[(i64, i64)]) -> Vec<i64> {
        let (lo_sum, hi_sum): (i64, i64) = bounds.iter().fold((0, 0), |(a, b), (lo, hi)| (a + lo, b + hi));
        assert!(lo_sum <= sum && sum <= hi_sum, "impossible totals");
        let mean = sum as f64 / bounds.len() as f64;
        let mut v: Vec<i64> = bounds
            .iter()
            .map(|&(lo, hi)| {
                let spread = ((hi - lo) as f64 / 4.0).max(1.0);
                ((mean + self.rng.gen_range(-spread..spread)).round() as i64).clamp(lo, hi)
            })
            .collect();
        let mut diff = sum - v.iter().sum::<i64>();
        while diff != 0 {
            let i = self.rng.gen_range(0..v.len());
            let step = diff.signum();
            if (bounds[i].0..=bounds[i].1).contains(&(v[i] + step)) {
                v[i] += step;
                diff -= step;
            }
        }
        v
    }
}

/// The services and staff of a synthetic Oslo sector.
#[derive(Debug, Clone)]
pub struct Sector {
    pub municipal: Vec<Uuid>,
    pub outpatient: Vec<Uuid>,
    pub day: Vec<Uuid>,
    pub inpatient: Vec<Uuid>,
    pub municipal_staff: Vec<Uuid>,
    pub specialist_staff: Vec<Uuid>,
    pub ward_staff: Vec<Uuid>,
}

fn register_service(g: &mut Gen, reference: &mut Vec<Seeded>, name: &str, level: CareLevel) -> Uuid {
    let id = g.id();
    reference.push(Seeded {
        event_id: g.id(),
        command: Command::RegisterService(ServiceRegistered { service_id: id, name: name.into(), care_level: level }),
    });
    id
}

fn register_staff(g: &mut Gen, reference: &mut Vec<Seeded>, n: usize) -> Vec<Uuid> {
    (0..n)
        .map(|_| {
            let id = g.id();
            let hpr = g.rng.gen_range(1_000_000..9_999_999u32).to_string();
            let name = g.name();
            reference.push(Seeded {
                event_id: g.id(),
                command: Command::RegisterTherapist(TherapistRegistered {
                    therapist_id: id,
                    name,
                    hpr_number: Some(hpr),
                }),
            });
            id
        })
        .collect()
}

/// Generates `patients` synthetic pathways from `seed`.
pub fn demo(seed: u64, patients: usize) -> Dataset {
    let mut g = Gen { rng: ChaCha8Rng::seed_from_u64(seed) };
    let mut reference = Vec::new();
    let r = &mut reference;
    let municipal = vec![
        register_service(&mut g, r, "Rask psykisk helsehjelp Grünerløkka", CareLevel::Municipal),
        register_service(&mut g, r, "Rask psykisk helsehjelp Sagene", CareLevel::Municipal),
        register_service(&mut g, r, "Psykisk helseteam Søndre Nordstrand", CareLevel::Municipal),
    ];
    let outpatient = vec![
        register_service(&mut g, r, "DPS Vest poliklinikk", CareLevel::SpecialistOutpatient),
        register_service(&mut g, r, "DPS Nord poliklinikk", CareLevel::SpecialistOutpatient),
    ];
    let day = vec![register_service(&mut g, r, "DPS Vest dagbehandling", CareLevel::SpecialistDay)];
    let inpatient = vec![
        register_service(&mut g, r, "DPS Vest døgnpost", CareLevel::SpecialistInpatient),
        register_service(&mut g, r, "DPS Nord døgnpost", CareLevel::SpecialistInpatient),
    ];
    let scale = (patients / 50).clamp(4, 400);
    let sector = Sector {
        municipal_staff: register_staff(&mut g, r, scale),
        specialist_staff: register_staff(&mut g, r, scale),
        ward_staff: register_staff(&mut g, r, (scale / 2).max(2)),
        municipal,
        outpatient,
        day,
        inpatient,
    };
    let patients = (0..patients).map(|_| pathway(&mut g, &sector)).collect();
    Dataset { reference, patients }
}

/// One patient's pathway: municipal low-threshold help, and for some an onward referral to a DPS,
/// sometimes with a stay on a ward.
fn pathway(g: &mut Gen, s: &Sector) -> Vec<Seeded> {
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

fn received(patient_id: Uuid, referral_id: Uuid, service_id: Uuid, source: ReferralSource, at: Timestamp) -> Command {
    Command::ReceiveReferral {
        patient_id,
        event: ReferralReceived { referral_id, service_id, source, received_at: at },
    }
}

/// Accepted without a rejection reason, rejected with one.
fn decided(patient_id: Uuid, referral_id: Uuid, rejection: Option<RejectionReason>, at: Timestamp) -> Command {
    let decision = if rejection.is_some() { ReferralDecision::Rejected } else { ReferralDecision::Accepted };
    Command::DecideReferral {
        patient_id,
        event: ReferralDecided { referral_id, decision, reason: rejection, decided_at: at },
    }
}

/// An onward GP referral to a DPS outpatient clinic; sometimes refused for capacity, sometimes
/// with a stay on a ward.
fn onward_to_dps(
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
struct EpisodePlan<'a> {
    patient_id: Uuid,
    service_id: Uuid,
    referral_id: Option<Uuid>,
    start: Timestamp,
    therapist: Uuid,
    pool: &'a [Uuid],
    /// The ward and its therapist, for an episode with a stay.
    ward: Option<(Uuid, Uuid)>,
    scores: Option<PlannedScores>,
    end: Option<EndReason>,
}

impl<'a> EpisodePlan<'a> {
    fn new(
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
fn episode(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_never_share_an_id() {
        let ids = |d: &Dataset| {
            d.reference
                .iter()
                .chain(d.patients.iter().flatten())
                .map(|s| s.event_id)
                .collect::<std::collections::HashSet<_>>()
        };
        let (city, rph) = (ids(&demo(2016, 200)), ids(&rph2016(2016)));
        assert!(city.is_disjoint(&rph), "the demo loads both profiles with one seed");
    }

    #[test]
    fn same_seed_same_dataset() {
        let a = demo(7, 50);
        let b = demo(7, 50);
        let ids = |d: &Dataset| d.patients.iter().flatten().map(|s| s.event_id).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        assert_ne!(ids(&a), ids(&demo(8, 50)));
    }

    #[test]
    fn every_generated_command_passes_the_domain_rules() {
        for seed in 0..5 {
            let d = demo(seed, 400);
            let catalog = Catalog::from_reference(&d.reference);
            for r in &d.reference {
                decide(&StreamState::default(), &References::default(), r.command.clone()).unwrap();
            }
            for p in &d.patients {
                if let Err(e) = decide_stream(&catalog, p) {
                    panic!("seed {seed}: {e}: {p:#?}");
                }
            }
            let rph = rph2016(seed);
            let catalog = Catalog::from_reference(&rph.reference);
            for p in &rph.patients {
                if let Err(e) = decide_stream(&catalog, p) {
                    panic!("rph2016 seed {seed}: {e}: {p:#?}");
                }
            }
            let sessions =
                d.patients.iter().flatten().filter(|s| matches!(s.command, Command::RecordSession { .. })).count();
            assert!(sessions > 400 * 3, "pathways have sessions: {sessions}");
        }
    }
}
