//! Dashboard analytics: pathway reports, care alerts and service overviews.

use async_graphql::{Enum, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use forlop_engine::policy::Aggregates;
use forlop_projections::alerts as a;
use forlop_projections::reports as r;

/// A count under a stable key: an enum name, `NONE`, `OPEN`, or an age group like `16-24`.
#[derive(SimpleObject, Debug)]
pub struct Count {
    pub key: String,
    pub count: Option<u64>,
    /// True when a count here was withheld from an analyst (below the suppression threshold).
    pub suppressed: bool,
}

/// Summary of a list of values; all figures but `count` are null when it is 0.
#[derive(SimpleObject, Debug)]
pub struct Distribution {
    pub count: Option<u64>,
    pub mean: Option<f64>,
    /// Mean of the two middle values for an even count.
    pub median: Option<f64>,
    /// Nearest rank: the ⌈0.9·n⌉-th smallest value.
    pub p90: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// True when a count here was withheld from an analyst (below the suppression threshold).
    pub suppressed: bool,
}

/// One instrument over a cohort. Intake is an episode's earliest INTAKE score, discharge its
/// latest DISCHARGE score; means are null when their count is 0.
#[derive(SimpleObject, Debug)]
pub struct OutcomeSummary {
    pub intake_count: Option<u64>,
    pub intake_mean: Option<f64>,
    pub discharge_count: Option<u64>,
    pub discharge_mean: Option<f64>,
    /// Episodes with both an intake and a discharge score.
    pub paired_count: Option<u64>,
    /// Mean of (intake − discharge) over paired episodes: positive is improvement.
    pub mean_change: Option<f64>,
    /// Episodes without a pair: episodes − pairedCount.
    pub missing_pairs: Option<u64>,
    /// Paired episodes whose score fell by at least 6 (PHQ-9) or 4 (GAD-7).
    pub reliably_improved: Option<u64>,
    /// Paired episodes at caseness at intake (PHQ-9 ≥ 10, GAD-7 ≥ 8) and below it at discharge.
    pub recovered: Option<u64>,
    /// True when a count here was withheld from an analyst (below the suppression threshold).
    pub suppressed: bool,
}

/// NHS Talking Therapies indicators over episodes paired on both PHQ-9 and GAD-7.
#[derive(SimpleObject, Debug)]
pub struct RecoverySummary {
    /// Episodes paired on both instruments.
    pub eligible: Option<u64>,
    /// PHQ-9 ≥ 10 or GAD-7 ≥ 8 at intake.
    pub at_caseness: Option<u64>,
    /// At caseness at intake, below both thresholds at discharge.
    pub recovered: Option<u64>,
    /// PHQ-9 fell ≥ 6 or GAD-7 fell ≥ 4, and neither rose that much.
    pub reliably_improved: Option<u64>,
    /// PHQ-9 rose ≥ 6 or GAD-7 rose ≥ 4, and neither fell that much.
    pub reliably_deteriorated: Option<u64>,
    /// Recovered and reliably improved.
    pub reliably_recovered: Option<u64>,
    /// recovered / atCaseness; null when none was at caseness.
    pub recovery_rate: Option<f64>,
    /// True when a count here was withheld from an analyst (below the suppression threshold).
    pub suppressed: bool,
}

/// Referrals a service received in a period, by decision as recorded so far.
#[derive(SimpleObject, Debug)]
pub struct ReferralSummary {
    pub received: Option<u64>,
    pub accepted: Option<u64>,
    pub rejected: Option<u64>,
    pub rejected_for_capacity: Option<u64>,
    pub undecided: Option<u64>,
    /// True when a count here was withheld from an analyst (below the suppression threshold).
    pub suppressed: bool,
}

/// Continuity over the cohort's patients, each patient's whole pathway counted once.
#[derive(SimpleObject, Debug)]
pub struct ContinuitySummary {
    pub patients_with_transition: Option<u64>,
    pub transitions: Option<u64>,
    pub transitions_keeping_therapist: Option<u64>,
    pub handovers: Option<u64>,
    pub handovers_without_notification: Option<u64>,
    /// Mean COC over patients whose COC is defined.
    pub mean_coc: Option<f64>,
    /// True when a count here was withheld from an analyst (below the suppression threshold).
    pub suppressed: bool,
}

/// The episodes a service started in [from, to), and what happened in them.
#[derive(SimpleObject, Debug)]
pub struct PathwayReport {
    pub service_id: Uuid,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub episodes: Option<u64>,
    /// Distinct patients.
    pub patients: Option<u64>,
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
    /// The same waits counted in bins of days: `0-6`, `7-13`, `14-27`, `28-55`, `56-83`, `84+`
    /// (under a week, 1–2, 2–4, 4–8, 8–12 and 12 weeks or more).
    pub waiting_histogram: Vec<Count>,
    /// Attended sessions per episode.
    pub sessions_per_episode: Distribution,
    /// Referrals to the service received in [from, to).
    pub referrals: ReferralSummary,
    pub continuity: ContinuitySummary,
    /// True when a count here was withheld from an analyst (below the suppression threshold).
    pub suppressed: bool,
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

/// Small-count suppression for analysts, so that aggregates do not re-identify anyone: counts
/// from 1 to threshold − 1 are withheld (0 is shown: it identifies no one), statistics over fewer
/// values than the threshold are withheld, and where a breakdown would withhold exactly one cell
/// the next smallest non-zero cell is withheld too, so the total cannot give it away.
#[derive(Debug, Clone, Copy)]
pub struct Mask(Aggregates);

impl Mask {
    pub fn new(a: Aggregates) -> Mask {
        Mask(a)
    }

    fn threshold(&self) -> Option<u64> {
        match self.0 {
            Aggregates::Exact => None,
            Aggregates::Suppressed { threshold } => Some(threshold),
        }
    }

    fn hides(&self, n: u64) -> bool {
        self.threshold().is_some_and(|t| n > 0 && n < t)
    }

    fn count(&self, n: u64, suppressed: &mut bool) -> Option<u64> {
        if self.hides(n) {
            *suppressed = true;
            None
        } else {
            Some(n)
        }
    }

    /// A statistic over `n` values.
    fn stat(&self, n: u64, v: Option<f64>) -> Option<f64> {
        if self.threshold().is_some_and(|t| n < t) {
            None
        } else {
            v
        }
    }

    /// A breakdown's cells, with complementary suppression.
    fn breakdown(&self, cells: &[u64]) -> Vec<Option<u64>> {
        let mut hidden: Vec<bool> = cells.iter().map(|&n| self.hides(n)).collect();
        if hidden.iter().filter(|h| **h).count() == 1 {
            let next = (0..cells.len()).filter(|&i| !hidden[i] && cells[i] > 0).min_by_key(|&i| cells[i]);
            if let Some(i) = next {
                hidden[i] = true;
            }
        }
        cells.iter().zip(hidden).map(|(&n, h)| if h { None } else { Some(n) }).collect()
    }

    fn counts(&self, v: Vec<r::Count>) -> Vec<Count> {
        let cells: Vec<u64> = v.iter().map(|c| c.count).collect();
        v.into_iter()
            .zip(self.breakdown(&cells))
            .map(|(c, count)| Count { key: c.key, count, suppressed: count.is_none() })
            .collect()
    }

    pub fn distribution(&self, d: r::Distribution) -> Distribution {
        let mut suppressed = false;
        Distribution {
            count: self.count(d.count, &mut suppressed),
            mean: self.stat(d.count, d.mean),
            median: self.stat(d.count, d.median),
            p90: self.stat(d.count, d.p90),
            min: self.stat(d.count, d.min),
            max: self.stat(d.count, d.max),
            suppressed: suppressed || self.stat(d.count, d.mean).is_none() && d.mean.is_some(),
        }
    }

    fn outcome(&self, o: r::OutcomeSummary) -> OutcomeSummary {
        let mut s = false;
        OutcomeSummary {
            intake_count: self.count(o.intake_count, &mut s),
            intake_mean: self.stat(o.intake_count, o.intake_mean),
            discharge_count: self.count(o.discharge_count, &mut s),
            discharge_mean: self.stat(o.discharge_count, o.discharge_mean),
            paired_count: self.count(o.paired_count, &mut s),
            mean_change: self.stat(o.paired_count, o.mean_change),
            missing_pairs: self.count(o.missing_pairs, &mut s),
            reliably_improved: self.count(o.reliably_improved, &mut s),
            recovered: self.count(o.recovered, &mut s),
            suppressed: s,
        }
    }

    pub fn referrals(&self, x: r::ReferralSummary) -> ReferralSummary {
        let mut s = false;
        // accepted + rejected + undecided = received: a breakdown.
        let cells = self.breakdown(&[x.accepted, x.rejected, x.undecided]);
        s |= cells.iter().any(Option::is_none);
        ReferralSummary {
            received: self.count(x.received, &mut s),
            accepted: cells[0],
            rejected: cells[1],
            undecided: cells[2],
            rejected_for_capacity: if cells[1].is_none() { None } else { self.count(x.rejected_for_capacity, &mut s) },
            suppressed: s,
        }
    }
}

impl PathwayReport {
    pub fn new(service_id: Uuid, from: DateTime<Utc>, to: DateTime<Utc>, x: r::PathwayReport, a: Aggregates) -> Self {
        let m = Mask::new(a);
        let mut s = false;
        let rec = x.recovery;
        let c = x.continuity;
        let recovery = {
            let mut rs = false;
            RecoverySummary {
                eligible: m.count(rec.eligible, &mut rs),
                at_caseness: m.count(rec.at_caseness, &mut rs),
                recovered: m.count(rec.recovered, &mut rs),
                reliably_improved: m.count(rec.reliably_improved, &mut rs),
                reliably_deteriorated: m.count(rec.reliably_deteriorated, &mut rs),
                reliably_recovered: m.count(rec.reliably_recovered, &mut rs),
                recovery_rate: m.stat(rec.at_caseness, rec.recovery_rate),
                suppressed: rs,
            }
        };
        let continuity = {
            let mut cs = false;
            ContinuitySummary {
                patients_with_transition: m.count(c.patients_with_transition, &mut cs),
                transitions: m.count(c.transitions, &mut cs),
                transitions_keeping_therapist: m.count(c.transitions_keeping_therapist, &mut cs),
                handovers: m.count(c.handovers, &mut cs),
                handovers_without_notification: m.count(c.handovers_without_notification, &mut cs),
                mean_coc: m.stat(c.patients_with_transition.max(x.patients), c.mean_coc),
                suppressed: cs,
            }
        };
        PathwayReport {
            service_id,
            from,
            to,
            episodes: m.count(x.episodes, &mut s),
            patients: m.count(x.patients, &mut s),
            gender: m.counts(x.gender),
            referral_sources: m.counts(x.referral_sources),
            end_reasons: m.counts(x.end_reasons),
            age_groups: m.counts(x.age_groups),
            phq9: m.outcome(x.phq9),
            gad7: m.outcome(x.gad7),
            recovery,
            waiting_days: m.distribution(x.waiting_days),
            waiting_histogram: m.counts(x.waiting_histogram),
            sessions_per_episode: m.distribution(x.sessions_per_episode),
            referrals: m.referrals(x.referrals),
            continuity,
            suppressed: s,
        }
    }
}
