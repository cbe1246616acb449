//! Pathway reports for dashboards: the RPH basis table, outcomes, recovery, waiting times,
//! referrals and continuity, for the episodes a service started in a period. Pure functions of the
//! read model; every definition is the one in the analytics issue.

use std::collections::HashSet;

use chrono::Datelike;
use forlop_domain::events::Timestamp;
use forlop_domain::{
    Attendance, EndReason, Gender, Instrument, MeasurePhase, ReferralDecision, ReferralSource, RejectionReason,
};
use uuid::Uuid;

use crate::read_model::{EpisodeView, PatientView, ReadModel};

/// A count under a stable key (an enum name, `NONE`, `OPEN`, or an age group such as `16-24`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    pub key: String,
    pub count: u64,
}

/// Summary of a list of values; every figure is None when the list is empty.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Distribution {
    pub count: u64,
    pub mean: Option<f64>,
    /// The middle value; the mean of the two middle values for an even count.
    pub median: Option<f64>,
    /// Nearest rank: the ⌈0.9·n⌉-th smallest value.
    pub p90: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Distribution {
    pub fn of(mut values: Vec<f64>) -> Distribution {
        let n = values.len();
        if n == 0 {
            return Distribution::default();
        }
        values.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
        let rank = ((0.9 * n as f64).ceil() as usize).clamp(1, n);
        Distribution {
            count: n as u64,
            mean: Some(values.iter().sum::<f64>() / n as f64),
            median: Some(median),
            p90: Some(values[rank - 1]),
            min: Some(values[0]),
            max: Some(values[n - 1]),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OutcomeSummary {
    pub intake_count: u64,
    pub intake_mean: Option<f64>,
    pub discharge_count: u64,
    pub discharge_mean: Option<f64>,
    pub paired_count: u64,
    /// Mean of (intake − discharge) over paired episodes: positive is improvement.
    pub mean_change: Option<f64>,
    /// Episodes in the cohort without both an intake and a discharge score.
    pub missing_pairs: u64,
    pub reliably_improved: u64,
    pub recovered: u64,
}

/// NHS Talking Therapies indicators over episodes paired on both PHQ-9 and GAD-7.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RecoverySummary {
    pub eligible: u64,
    pub at_caseness: u64,
    pub recovered: u64,
    pub reliably_improved: u64,
    pub reliably_deteriorated: u64,
    pub reliably_recovered: u64,
    /// recovered / atCaseness; None when no episode was at caseness.
    pub recovery_rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReferralSummary {
    pub received: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub rejected_for_capacity: u64,
    pub undecided: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ContinuitySummary {
    pub patients_with_transition: u64,
    pub transitions: u64,
    pub transitions_keeping_therapist: u64,
    pub handovers: u64,
    pub handovers_without_notification: u64,
    /// Mean COC over the cohort's patients whose COC is defined.
    pub mean_coc: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PathwayReport {
    pub episodes: u64,
    pub patients: u64,
    pub gender: Vec<Count>,
    pub referral_sources: Vec<Count>,
    pub end_reasons: Vec<Count>,
    pub age_groups: Vec<Count>,
    pub phq9: OutcomeSummary,
    pub gad7: OutcomeSummary,
    pub recovery: RecoverySummary,
    pub waiting_days: Distribution,
    /// The same waits in bins of weeks (`WAITING_BINS_DAYS`), for a histogram.
    pub waiting_histogram: Vec<Count>,
    pub sessions_per_episode: Distribution,
    pub referrals: ReferralSummary,
    pub continuity: ContinuitySummary,
}

/// Lower bounds, in days, of the waiting-time histogram's bins: under a week, 1–2, 2–4, 4–8,
/// 8–12 and 12 weeks or more.
pub const WAITING_BINS_DAYS: &[u32] = &[0, 7, 14, 28, 56, 84];

/// Counts of `days` per bin of `WAITING_BINS_DAYS`, keyed `0-6`, `7-13`, …, `84+` (every bin
/// listed, empty ones as 0).
pub fn waiting_histogram(days: &[f64]) -> Vec<Count> {
    let bins = WAITING_BINS_DAYS;
    let mut out: Vec<Count> = bins
        .iter()
        .enumerate()
        .map(|(i, b)| Count {
            key: match bins.get(i + 1) {
                Some(next) => format!("{b}-{}", next - 1),
                None => format!("{b}+"),
            },
            count: 0,
        })
        .collect();
    for d in days {
        let i = bins.iter().rposition(|b| *d >= f64::from(*b)).unwrap_or(0);
        out[i].count += 1;
    }
    out
}

/// The RPH report's age groups, as lower bounds.
pub const DEFAULT_AGE_BINS: &[i32] = &[0, 16, 25, 31, 36, 46, 56, 67];

/// Keys for age bins given as increasing lower bounds: `0-15`, `16-24`, …, `67+`. Ages below the
/// first bound, if it is above 0, count under `<first`.
pub fn age_keys(bins: &[i32]) -> Result<Vec<String>, String> {
    if bins.is_empty() || bins.windows(2).any(|w| w[0] >= w[1]) || bins[0] < 0 {
        return Err("ageBins must be non-negative, strictly increasing lower bounds".into());
    }
    let mut keys = Vec::with_capacity(bins.len() + 1);
    if bins[0] > 0 {
        keys.push(format!("<{}", bins[0]));
    }
    for (i, b) in bins.iter().enumerate() {
        keys.push(match bins.get(i + 1) {
            Some(next) => format!("{b}-{}", next - 1),
            None => format!("{b}+"),
        });
    }
    Ok(keys)
}

fn age_index(bins: &[i32], age: i32) -> usize {
    let below = usize::from(bins[0] > 0);
    match bins.iter().rposition(|b| age >= *b) {
        Some(i) => i + below,
        None => 0,
    }
}

/// Counts per key, every key listed. A value of none of the keys (a code a newer forlop stored)
/// is counted under `UNRECOGNISED`, listed only then, so that the counts still add up.
fn counts<K: Copy + PartialEq>(keys: &[(K, &str)], values: impl Iterator<Item = K>) -> Vec<Count> {
    let mut out: Vec<Count> = keys.iter().map(|(_, k)| Count { key: (*k).to_owned(), count: 0 }).collect();
    let mut unrecognised = 0;
    for v in values {
        match keys.iter().position(|(k, _)| *k == v) {
            Some(i) => out[i].count += 1,
            None => unrecognised += 1,
        }
    }
    if unrecognised > 0 {
        out.push(Count { key: forlop_domain::UNRECOGNISED.to_owned(), count: unrecognised });
    }
    out
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u64), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

pub fn days_between(a: Timestamp, b: Timestamp) -> f64 {
    (b - a).num_milliseconds() as f64 / 86_400_000.0
}

/// The episodes `service` started in [from, to), with their patients.
pub fn cohort<'a>(
    model: &'a ReadModel,
    service: Uuid,
    from: Timestamp,
    to: Timestamp,
) -> impl Iterator<Item = (&'a PatientView, &'a EpisodeView)> + 'a {
    // An empty or reversed period selects nothing (a range would panic on a reversed one).
    let to = to.max(from);
    model
        .episodes_by_service
        .get(&service)
        .into_iter()
        .flat_map(move |index| index.range((from, Uuid::nil())..(to, Uuid::nil())))
        .filter_map(move |((_, episode_id), entry)| {
            let p: &PatientView = model.patients.get(&entry.patient_id)?;
            Some((p, p.episode(*episode_id)?))
        })
}

/// Intake (earliest INTAKE) and discharge (latest DISCHARGE) totals of one episode.
pub fn episode_scores(p: &PatientView, episode: Uuid, instrument: Instrument) -> (Option<u32>, Option<u32>) {
    let of = |phase| p.outcomes_of(episode).filter(move |o| o.instrument == instrument && o.phase == phase);
    // Ties in time: the first recorded intake and the last recorded discharge (recording order).
    let intake = of(MeasurePhase::Intake).min_by_key(|o| o.measured_at).map(|o| o.total);
    let discharge = of(MeasurePhase::Discharge).max_by_key(|o| o.measured_at).map(|o| o.total);
    (intake, discharge)
}

fn outcome_summary(scores: &[(Option<u32>, Option<u32>)], instrument: Instrument) -> OutcomeSummary {
    let intakes: Vec<f64> = scores.iter().filter_map(|s| s.0).map(f64::from).collect();
    let discharges: Vec<f64> = scores.iter().filter_map(|s| s.1).map(f64::from).collect();
    let pairs: Vec<(u32, u32)> = scores.iter().filter_map(|s| Some((s.0?, s.1?))).collect();
    let (caseness, reliable) = (instrument.caseness(), instrument.reliable_change());
    OutcomeSummary {
        intake_count: intakes.len() as u64,
        intake_mean: mean(intakes.into_iter()),
        discharge_count: discharges.len() as u64,
        discharge_mean: mean(discharges.into_iter()),
        paired_count: pairs.len() as u64,
        mean_change: mean(pairs.iter().map(|(i, d)| f64::from(*i) - f64::from(*d))),
        missing_pairs: (scores.len() - pairs.len()) as u64,
        reliably_improved: pairs.iter().filter(|(i, d)| i.saturating_sub(*d) >= reliable).count() as u64,
        recovered: pairs.iter().filter(|(i, d)| *i >= caseness && *d < caseness).count() as u64,
    }
}

/// Both instruments' (intake, discharge) for one episode.
type BothScores = ((u32, u32), (u32, u32));

fn recovery_summary(paired: &[BothScores]) -> RecoverySummary {
    let (phq, gad) = (Instrument::Phq9, Instrument::Gad7);
    let mut r = RecoverySummary { eligible: paired.len() as u64, ..RecoverySummary::default() };
    for &((pi, pd), (gi, gd)) in paired {
        let at_caseness = pi >= phq.caseness() || gi >= gad.caseness();
        let recovered = at_caseness && pd < phq.caseness() && gd < gad.caseness();
        let improved = pi.saturating_sub(pd) >= phq.reliable_change() || gi.saturating_sub(gd) >= gad.reliable_change();
        let deteriorated =
            pd.saturating_sub(pi) >= phq.reliable_change() || gd.saturating_sub(gi) >= gad.reliable_change();
        let reliably_improved = improved && !deteriorated;
        r.at_caseness += u64::from(at_caseness);
        r.recovered += u64::from(recovered);
        r.reliably_improved += u64::from(reliably_improved);
        r.reliably_deteriorated += u64::from(deteriorated && !improved);
        r.reliably_recovered += u64::from(recovered && reliably_improved);
    }
    r.recovery_rate = (r.at_caseness > 0).then(|| r.recovered as f64 / r.at_caseness as f64);
    r
}

fn attended(p: &PatientView, episode: Uuid) -> impl Iterator<Item = forlop_domain::events::SessionRecorded> + '_ {
    p.sessions_of(episode).filter(|s| s.attendance == Attendance::Attended)
}

/// Days from the referral's receipt to the first attended session, for an episode with both.
pub fn waiting_days_of(p: &PatientView, e: &EpisodeView) -> Option<f64> {
    let received = p.referral(e.referral_id?)?.received_at;
    let first = attended(p, e.id).min_by_key(|s| s.at)?;
    Some(days_between(received, first.at))
}

/// Referrals `service` received in [from, to), by their decision as recorded so far.
pub fn referral_summary(model: &ReadModel, service: Uuid, from: Timestamp, to: Timestamp) -> ReferralSummary {
    let mut r = ReferralSummary::default();
    let Some(index) = model.referrals_by_service.get(&service) else { return r };
    let to = to.max(from); // a reversed period selects nothing
    for ((_, referral_id), patient_id) in index.range((from, Uuid::nil())..(to, Uuid::nil())) {
        let Some(referral) = model.patients.get(patient_id).and_then(|p| p.referral(*referral_id)) else { continue };
        r.received += 1;
        match referral.decision {
            None => r.undecided += 1,
            Some((ReferralDecision::Accepted, _, _)) => r.accepted += 1,
            Some((ReferralDecision::Rejected, reason, _)) => {
                r.rejected += 1;
                r.rejected_for_capacity += u64::from(reason == Some(RejectionReason::Capacity));
            }
            // A decision a newer forlop recorded: decided, but neither of the two kinds known here.
            Some((ReferralDecision::Unrecognised, _, _)) => {}
        }
    }
    r
}

/// Waiting days for the episodes `service` started in [from, to).
pub fn waiting_days(model: &ReadModel, service: Uuid, from: Timestamp, to: Timestamp) -> Distribution {
    Distribution::of(cohort(model, service, from, to).filter_map(|(p, e)| waiting_days_of(p, e)).collect())
}

/// Episodes at `service` open at `as_of`: started before it and not ended by it.
pub fn open_episodes(model: &ReadModel, service: Uuid, as_of: Timestamp) -> u64 {
    let Some(index) = model.episodes_by_service.get(&service) else { return 0 };
    index.range(..(as_of, Uuid::nil())).filter(|(_, entry)| entry.open_at(as_of)).count() as u64
}

const GENDERS: &[(Gender, &str)] =
    &[(Gender::Female, "FEMALE"), (Gender::Male, "MALE"), (Gender::Other, "OTHER"), (Gender::Unknown, "UNKNOWN")];
const SOURCES: &[(Option<ReferralSource>, &str)] = &[
    (Some(ReferralSource::SelfReferral), "SELF"),
    (Some(ReferralSource::Gp), "GP"),
    (Some(ReferralSource::HealthPersonnel), "HEALTH_PERSONNEL"),
    (Some(ReferralSource::Relative), "RELATIVE"),
    (Some(ReferralSource::Nav), "NAV"),
    (Some(ReferralSource::Other), "OTHER"),
    (None, "NONE"),
];
const END_REASONS: &[(Option<EndReason>, &str)] = &[
    (Some(EndReason::Completed), "COMPLETED"),
    (Some(EndReason::DroppedOut), "DROPPED_OUT"),
    (Some(EndReason::ReferredOnward), "REFERRED_ONWARD"),
    (Some(EndReason::Moved), "MOVED"),
    (Some(EndReason::Other), "OTHER"),
    (None, "OPEN"),
];

pub fn pathway_report(
    model: &ReadModel,
    service: Uuid,
    from: Timestamp,
    to: Timestamp,
    age_bins: &[i32],
) -> Result<PathwayReport, String> {
    let keys = age_keys(age_bins)?;
    let episodes: Vec<(&PatientView, &EpisodeView)> = cohort(model, service, from, to).collect();
    let mut age_groups: Vec<Count> = keys.into_iter().map(|key| Count { key, count: 0 }).collect();
    for (p, e) in &episodes {
        age_groups[age_index(age_bins, e.started_at.year() - p.birth_year)].count += 1;
    }
    let phq: Vec<_> = episodes.iter().map(|(p, e)| episode_scores(p, e.id, Instrument::Phq9)).collect();
    let gad: Vec<_> = episodes.iter().map(|(p, e)| episode_scores(p, e.id, Instrument::Gad7)).collect();
    let both: Vec<BothScores> = phq.iter().zip(&gad).filter_map(|(p, g)| Some(((p.0?, p.1?), (g.0?, g.1?)))).collect();

    let mut seen = HashSet::new();
    let patients: Vec<&PatientView> = episodes.iter().filter(|(p, _)| seen.insert(p.id)).map(|(p, _)| *p).collect();
    let mut continuity = ContinuitySummary::default();
    let mut cocs = Vec::new();
    for p in &patients {
        let c = p.continuity();
        continuity.patients_with_transition += u64::from(c.care_level_transitions > 0);
        continuity.transitions += u64::from(c.care_level_transitions);
        continuity.transitions_keeping_therapist += u64::from(c.transitions_keeping_therapist);
        continuity.handovers += c.handovers.len() as u64;
        continuity.handovers_without_notification += c.handovers.iter().filter(|h| !h.patient_notified).count() as u64;
        cocs.extend(c.indices.coc);
    }
    continuity.mean_coc = mean(cocs.into_iter());

    let waits: Vec<f64> = episodes.iter().filter_map(|(p, e)| waiting_days_of(p, e)).collect();
    Ok(PathwayReport {
        episodes: episodes.len() as u64,
        patients: patients.len() as u64,
        gender: counts(GENDERS, episodes.iter().map(|(p, _)| p.gender)),
        referral_sources: counts(
            SOURCES,
            episodes.iter().map(|(p, e)| e.referral_id.and_then(|r| p.referral(r)).map(|r| r.source)),
        ),
        end_reasons: counts(END_REASONS, episodes.iter().map(|(_, e)| e.ended.as_ref().map(|x| x.reason))),
        age_groups,
        phq9: outcome_summary(&phq, Instrument::Phq9),
        gad7: outcome_summary(&gad, Instrument::Gad7),
        recovery: recovery_summary(&both),
        waiting_histogram: waiting_histogram(&waits),
        waiting_days: Distribution::of(waits),
        sessions_per_episode: Distribution::of(
            episodes.iter().map(|(p, e)| attended(p, e.id).count() as f64).collect(),
        ),
        referrals: referral_summary(model, service, from, to),
        continuity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_fall_into_week_bins_at_their_lower_bounds() {
        let got = waiting_histogram(&[0.0, 6.9, 7.0, 13.5, 14.0, 30.0, 83.9, 84.0, 400.0]);
        let pairs: Vec<(&str, u64)> = got.iter().map(|c| (c.key.as_str(), c.count)).collect();
        assert_eq!(pairs, [("0-6", 2), ("7-13", 2), ("14-27", 1), ("28-55", 1), ("56-83", 1), ("84+", 2)]);
    }

    #[test]
    fn a_code_this_version_does_not_know_is_counted_apart_so_the_counts_add_up() {
        let genders = [Gender::Female, Gender::Unrecognised, Gender::Female];
        let got = counts(GENDERS, genders.into_iter());
        let pairs: Vec<(&str, u64)> = got.iter().map(|c| (c.key.as_str(), c.count)).collect();
        assert_eq!(pairs, [("FEMALE", 2), ("MALE", 0), ("OTHER", 0), ("UNKNOWN", 0), ("UNRECOGNISED", 1)]);
        // Only listed when there is one.
        assert_eq!(counts(GENDERS, [Gender::Male].into_iter()).len(), GENDERS.len());
    }

    #[test]
    fn distribution_definitions() {
        let d = Distribution::of(vec![4.0, 1.0, 3.0]);
        assert_eq!((d.count, d.median, d.p90, d.min, d.max), (3, Some(3.0), Some(4.0), Some(1.0), Some(4.0)));
        assert_eq!(d.mean, Some(8.0 / 3.0));
        let d = Distribution::of(vec![1.0, 2.0, 3.0, 10.0]);
        assert_eq!(d.median, Some(2.5), "even count: mean of the two middle values");
        assert_eq!(d.p90, Some(10.0), "nearest rank ⌈0.9·4⌉ = 4th");
        let d = Distribution::of((1..=10).map(f64::from).collect());
        assert_eq!(d.p90, Some(9.0), "⌈0.9·10⌉ = 9th smallest");
        assert_eq!(Distribution::of(vec![]), Distribution::default());
    }

    #[test]
    fn age_keys_follow_the_bins() {
        assert_eq!(
            age_keys(DEFAULT_AGE_BINS).unwrap(),
            ["0-15", "16-24", "25-30", "31-35", "36-45", "46-55", "56-66", "67+"]
        );
        assert_eq!(age_keys(&[18, 65]).unwrap(), ["<18", "18-64", "65+"]);
        assert!(age_keys(&[16, 16]).is_err());
        assert!(age_keys(&[]).is_err());
        assert_eq!(age_index(DEFAULT_AGE_BINS, 16), 1);
        assert_eq!(age_index(DEFAULT_AGE_BINS, 15), 0);
        assert_eq!(age_index(DEFAULT_AGE_BINS, 90), 7);
        assert_eq!(age_index(&[18, 65], 10), 0);
        assert_eq!(age_index(&[18, 65], 18), 1);
    }

    #[test]
    fn recovery_follows_nhs_talking_therapies() {
        // (PHQ intake, discharge), (GAD intake, discharge)
        let r = recovery_summary(&[
            ((15, 5), (12, 4)),  // at caseness, recovered, reliably improved: reliably recovered
            ((12, 9), (9, 9)),   // at caseness, GAD still at caseness: not recovered; change 3: not reliable
            ((5, 12), (3, 3)),   // not at caseness; PHQ rises 7: reliably deteriorated
            ((20, 10), (2, 10)), // improved on PHQ, deteriorated on GAD: neither reliable
        ]);
        assert_eq!(r.eligible, 4);
        assert_eq!(r.at_caseness, 3);
        assert_eq!(r.recovered, 1);
        assert_eq!(r.reliably_improved, 1);
        assert_eq!(r.reliably_deteriorated, 1);
        assert_eq!(r.reliably_recovered, 1);
        assert_eq!(r.recovery_rate, Some(1.0 / 3.0));
        assert_eq!(recovery_summary(&[]).recovery_rate, None);
    }
}
