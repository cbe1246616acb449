//! Dashboard analytics: pathway reports, care alerts and service overviews.

use async_graphql::{Enum, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use forlop_projections::alerts as a;
use forlop_projections::reports as r;

/// A count under a stable key: an enum name, `NONE`, `OPEN`, or an age group like `16-24`.
#[derive(SimpleObject, Debug)]
pub struct Count {
    pub key: String,
    pub count: u64,
}

/// Summary of a list of values; all figures but `count` are null when it is 0.
#[derive(SimpleObject, Debug)]
pub struct Distribution {
    pub count: u64,
    pub mean: Option<f64>,
    /// Mean of the two middle values for an even count.
    pub median: Option<f64>,
    /// Nearest rank: the ⌈0.9·n⌉-th smallest value.
    pub p90: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// One instrument over a cohort. Intake is an episode's earliest INTAKE score, discharge its
/// latest DISCHARGE score; means are null when their count is 0.
#[derive(SimpleObject, Debug)]
pub struct OutcomeSummary {
    pub intake_count: u64,
    pub intake_mean: Option<f64>,
    pub discharge_count: u64,
    pub discharge_mean: Option<f64>,
    /// Episodes with both an intake and a discharge score.
    pub paired_count: u64,
    /// Mean of (intake − discharge) over paired episodes: positive is improvement.
    pub mean_change: Option<f64>,
    /// Episodes without a pair: episodes − pairedCount.
    pub missing_pairs: u64,
    /// Paired episodes whose score fell by at least 6 (PHQ-9) or 4 (GAD-7).
    pub reliably_improved: u64,
    /// Paired episodes at caseness at intake (PHQ-9 ≥ 10, GAD-7 ≥ 8) and below it at discharge.
    pub recovered: u64,
}

/// NHS Talking Therapies indicators over episodes paired on both PHQ-9 and GAD-7.
#[derive(SimpleObject, Debug)]
pub struct RecoverySummary {
    /// Episodes paired on both instruments.
    pub eligible: u64,
    /// PHQ-9 ≥ 10 or GAD-7 ≥ 8 at intake.
    pub at_caseness: u64,
    /// At caseness at intake, below both thresholds at discharge.
    pub recovered: u64,
    /// PHQ-9 fell ≥ 6 or GAD-7 fell ≥ 4, and neither rose that much.
    pub reliably_improved: u64,
    /// PHQ-9 rose ≥ 6 or GAD-7 rose ≥ 4, and neither fell that much.
    pub reliably_deteriorated: u64,
    /// Recovered and reliably improved.
    pub reliably_recovered: u64,
    /// recovered / atCaseness; null when none was at caseness.
    pub recovery_rate: Option<f64>,
}

/// Referrals a service received in a period, by decision as recorded so far.
#[derive(SimpleObject, Debug)]
pub struct ReferralSummary {
    pub received: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub rejected_for_capacity: u64,
    pub undecided: u64,
}

/// Continuity over the cohort's patients, each patient's whole pathway counted once.
#[derive(SimpleObject, Debug)]
pub struct ContinuitySummary {
    pub patients_with_transition: u64,
    pub transitions: u64,
    pub transitions_keeping_therapist: u64,
    pub handovers: u64,
    pub handovers_without_notification: u64,
    /// Mean COC over patients whose COC is defined.
    pub mean_coc: Option<f64>,
}

/// The episodes a service started in [from, to), and what happened in them.
#[derive(SimpleObject, Debug)]
pub struct PathwayReport {
    pub service_id: Uuid,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub episodes: u64,
    /// Distinct patients.
    pub patients: u64,
    /// Counted per episode, like every list below (a patient with two episodes counts twice).
    pub gender: Vec<Count>,
    /// By the source of the episode's referral; NONE for episodes started without one.
    pub referral_sources: Vec<Count>,
    /// OPEN for episodes not ended.
    pub end_reasons: Vec<Count>,
    /// Age = year of startedAt − birthYear.
    pub age_groups: Vec<Count>,
    pub phq9: OutcomeSummary,
    pub gad7: OutcomeSummary,
    pub recovery: RecoverySummary,
    /// Days from the referral's receipt to the first attended session.
    pub waiting_days: Distribution,
    /// Attended sessions per episode.
    pub sessions_per_episode: Distribution,
    /// Referrals to the service received in [from, to).
    pub referrals: ReferralSummary,
    pub continuity: ContinuitySummary,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_projections::alerts::AlertKind")]
pub enum CareAlertKind {
    /// No therapist assigned for longer than `unassignedDays`.
    Unassigned,
    /// No attended session for longer than `inactiveDays`: the patient may have fallen away.
    Inactive,
    /// A therapist was released in the last 30 days and the patient was not told.
    HandoverNotNotified,
}

#[derive(SimpleObject, Debug)]
pub struct CareAlert {
    pub kind: CareAlertKind,
    pub patient_id: Uuid,
    pub episode_id: Uuid,
    pub service_id: Uuid,
    /// When the condition began.
    pub since: DateTime<Utc>,
    /// Days from `since` to the time the alert was evaluated at.
    pub days: f64,
}

fn counts(v: Vec<r::Count>) -> Vec<Count> {
    v.into_iter().map(|c| Count { key: c.key, count: c.count }).collect()
}

impl From<r::Distribution> for Distribution {
    fn from(d: r::Distribution) -> Self {
        Distribution { count: d.count, mean: d.mean, median: d.median, p90: d.p90, min: d.min, max: d.max }
    }
}

impl From<r::OutcomeSummary> for OutcomeSummary {
    fn from(o: r::OutcomeSummary) -> Self {
        OutcomeSummary {
            intake_count: o.intake_count,
            intake_mean: o.intake_mean,
            discharge_count: o.discharge_count,
            discharge_mean: o.discharge_mean,
            paired_count: o.paired_count,
            mean_change: o.mean_change,
            missing_pairs: o.missing_pairs,
            reliably_improved: o.reliably_improved,
            recovered: o.recovered,
        }
    }
}

impl From<r::ReferralSummary> for ReferralSummary {
    fn from(s: r::ReferralSummary) -> Self {
        ReferralSummary {
            received: s.received,
            accepted: s.accepted,
            rejected: s.rejected,
            rejected_for_capacity: s.rejected_for_capacity,
            undecided: s.undecided,
        }
    }
}

impl From<a::CareAlert> for CareAlert {
    fn from(x: a::CareAlert) -> Self {
        CareAlert {
            kind: x.kind.into(),
            patient_id: x.patient_id,
            episode_id: x.episode_id,
            service_id: x.service_id,
            since: x.since,
            days: x.days,
        }
    }
}

impl PathwayReport {
    pub fn new(service_id: Uuid, from: DateTime<Utc>, to: DateTime<Utc>, x: r::PathwayReport) -> Self {
        let rec = x.recovery;
        let c = x.continuity;
        PathwayReport {
            service_id,
            from,
            to,
            episodes: x.episodes,
            patients: x.patients,
            gender: counts(x.gender),
            referral_sources: counts(x.referral_sources),
            end_reasons: counts(x.end_reasons),
            age_groups: counts(x.age_groups),
            phq9: x.phq9.into(),
            gad7: x.gad7.into(),
            recovery: RecoverySummary {
                eligible: rec.eligible,
                at_caseness: rec.at_caseness,
                recovered: rec.recovered,
                reliably_improved: rec.reliably_improved,
                reliably_deteriorated: rec.reliably_deteriorated,
                reliably_recovered: rec.reliably_recovered,
                recovery_rate: rec.recovery_rate,
            },
            waiting_days: x.waiting_days.into(),
            sessions_per_episode: x.sessions_per_episode.into(),
            referrals: x.referrals.into(),
            continuity: ContinuitySummary {
                patients_with_transition: c.patients_with_transition,
                transitions: c.transitions,
                transitions_keeping_therapist: c.transitions_keeping_therapist,
                handovers: c.handovers,
                handovers_without_notification: c.handovers_without_notification,
                mean_coc: c.mean_coc,
            },
        }
    }
}
