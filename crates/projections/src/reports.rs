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

use crate::tally::tally;
pub use crate::tally::{Count, Distribution, Keyed, RecordKeys, Tally, NO_KEYS};

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OutcomeSummary<C = u64> {
    pub intake_count: C,
    pub intake_mean: Option<f64>,
    pub discharge_count: C,
    pub discharge_mean: Option<f64>,
    pub paired_count: C,
    /// Mean of (intake − discharge) over paired episodes: positive is improvement.
    pub mean_change: Option<f64>,
    /// Episodes in the cohort without both an intake and a discharge score.
    pub missing_pairs: C,
    pub reliably_improved: C,
    pub recovered: C,
}

/// NHS Talking Therapies indicators over episodes paired on both PHQ-9 and GAD-7.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RecoverySummary<C = u64> {
    pub eligible: C,
    pub at_caseness: C,
    pub recovered: C,
    pub reliably_improved: C,
    pub reliably_deteriorated: C,
    pub reliably_recovered: C,
    /// recovered / atCaseness; None when no episode was at caseness.
    pub recovery_rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReferralSummary<C = u64> {
    pub received: C,
    pub accepted: C,
    pub rejected: C,
    pub rejected_for_capacity: C,
    pub undecided: C,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ContinuitySummary<C = u64> {
    pub patients_with_transition: C,
    pub transitions: C,
    pub transitions_keeping_therapist: C,
    pub handovers: C,
    pub handovers_without_notification: C,
    /// Mean COC over the cohort's patients whose COC is defined.
    pub mean_coc: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PathwayReport<C = u64> {
    pub episodes: C,
    pub patients: C,
    pub gender: Vec<Count<C>>,
    pub referral_sources: Vec<Count<C>>,
    pub end_reasons: Vec<Count<C>>,
    pub age_groups: Vec<Count<C>>,
    pub phq9: OutcomeSummary<C>,
    pub gad7: OutcomeSummary<C>,
    pub recovery: RecoverySummary<C>,
    pub waiting_days: Distribution<C>,
    /// The same waits in bins of weeks (`WAITING_BINS_DAYS`), for a histogram.
    pub waiting_histogram: Vec<Count<C>>,
    pub sessions_per_episode: Distribution<C>,
    pub referrals: ReferralSummary<C>,
    pub continuity: ContinuitySummary<C>,
}

/// Lower bounds, in days, of the waiting-time histogram's bins: under a week, 1–2, 2–4, 4–8,
/// 8–12 and 12 weeks or more.
pub const WAITING_BINS_DAYS: &[u32] = &[0, 7, 14, 28, 56, 84];

/// Counts of `days` per bin of `WAITING_BINS_DAYS`, keyed `0-6`, `7-13`, …, `84+` (every bin
/// listed, empty ones as 0).
pub fn waiting_histogram(days: &[f64]) -> Vec<Count> {
    let days: Vec<(f64, Uuid)> = days.iter().map(|d| (*d, Uuid::nil())).collect();
    waiting_histogram_tallied(&days, NO_KEYS)
}

fn waiting_histogram_tallied<C: Tally>(days: &[(f64, Uuid)], keys: RecordKeys) -> Vec<Count<C>> {
    let bins = WAITING_BINS_DAYS;
    let mut out: Vec<Count<C>> = bins
        .iter()
        .enumerate()
        .map(|(i, b)| Count {
            key: match bins.get(i + 1) {
                Some(next) => format!("{b}-{}", next - 1),
                None => format!("{b}+"),
            },
            count: C::default(),
        })
        .collect();
    for (d, id) in days {
        let i = bins.iter().rposition(|b| *d >= f64::from(*b)).unwrap_or(0);
        out[i].count.add(keys(*id), 1);
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

/// Counts per key, every key listed, of values given with their record's id. A value of none of
/// the keys (a code a newer forlop stored) is counted under `UNRECOGNISED`, listed only then, so
/// that the counts still add up.
fn counts<K: Copy + PartialEq, C: Tally>(
    table: &[(K, &str)],
    values: impl Iterator<Item = (K, Uuid)>,
    keys: RecordKeys,
) -> Vec<Count<C>> {
    let mut out: Vec<Count<C>> =
        table.iter().map(|(_, k)| Count { key: (*k).to_owned(), count: C::default() }).collect();
    let mut unrecognised = C::default();
    for (v, id) in values {
        match table.iter().position(|(k, _)| *k == v) {
            Some(i) => out[i].count.add(keys(id), 1),
            None => unrecognised.add(keys(id), 1),
        }
    }
    if unrecognised.count() > 0 {
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

/// One episode's (intake, discharge) on one instrument, with the episode's id.
type Scores = (Uuid, (Option<u32>, Option<u32>));

fn outcome_summary<C: Tally>(scores: &[Scores], instrument: Instrument, keys: RecordKeys) -> OutcomeSummary<C> {
    let intakes: Vec<(Uuid, f64)> = scores.iter().filter_map(|(e, s)| Some((*e, f64::from(s.0?)))).collect();
    let discharges: Vec<(Uuid, f64)> = scores.iter().filter_map(|(e, s)| Some((*e, f64::from(s.1?)))).collect();
    let pairs: Vec<(Uuid, u32, u32)> = scores.iter().filter_map(|(e, s)| Some((*e, s.0?, s.1?))).collect();
    let (caseness, reliable) = (instrument.caseness(), instrument.reliable_change());
    let paired: std::collections::HashSet<Uuid> = pairs.iter().map(|p| p.0).collect();
    OutcomeSummary {
        intake_count: tally(intakes.iter().map(|x| x.0), keys),
        intake_mean: mean(intakes.iter().map(|x| x.1)),
        discharge_count: tally(discharges.iter().map(|x| x.0), keys),
        discharge_mean: mean(discharges.iter().map(|x| x.1)),
        paired_count: tally(pairs.iter().map(|p| p.0), keys),
        mean_change: mean(pairs.iter().map(|(_, i, d)| f64::from(*i) - f64::from(*d))),
        missing_pairs: tally(scores.iter().map(|s| s.0).filter(|e| !paired.contains(e)), keys),
        reliably_improved: tally(pairs.iter().filter(|(_, i, d)| i.saturating_sub(*d) >= reliable).map(|p| p.0), keys),
        recovered: tally(pairs.iter().filter(|(_, i, d)| *i >= caseness && *d < caseness).map(|p| p.0), keys),
    }
}

/// Both instruments' (intake, discharge) for one episode.
type BothScores = ((u32, u32), (u32, u32));

#[cfg(test)]
fn recovery_summary(paired: &[BothScores]) -> RecoverySummary {
    let paired: Vec<(Uuid, BothScores)> = paired.iter().map(|b| (Uuid::nil(), *b)).collect();
    recovery_tallied(&paired, NO_KEYS)
}

fn recovery_tallied<C: Tally>(paired: &[(Uuid, BothScores)], keys: RecordKeys) -> RecoverySummary<C> {
    let (phq, gad) = (Instrument::Phq9, Instrument::Gad7);
    let mut r =
        RecoverySummary::<C> { eligible: tally(paired.iter().map(|p| p.0), keys), ..RecoverySummary::default() };
    for &(episode, ((pi, pd), (gi, gd))) in paired {
        let k = keys(episode);
        let at_caseness = pi >= phq.caseness() || gi >= gad.caseness();
        let recovered = at_caseness && pd < phq.caseness() && gd < gad.caseness();
        let improved = pi.saturating_sub(pd) >= phq.reliable_change() || gi.saturating_sub(gd) >= gad.reliable_change();
        let deteriorated =
            pd.saturating_sub(pi) >= phq.reliable_change() || gd.saturating_sub(gi) >= gad.reliable_change();
        let reliably_improved = improved && !deteriorated;
        r.at_caseness.add(k, u64::from(at_caseness));
        r.recovered.add(k, u64::from(recovered));
        r.reliably_improved.add(k, u64::from(reliably_improved));
        r.reliably_deteriorated.add(k, u64::from(deteriorated && !improved));
        r.reliably_recovered.add(k, u64::from(recovered && reliably_improved));
    }
    let (at, rec) = (r.at_caseness.count(), r.recovered.count());
    r.recovery_rate = (at > 0).then(|| rec as f64 / at as f64);
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
    referral_summary_tallied(model, service, from, to, NO_KEYS)
}

/// `referral_summary`, each referral counted with its record key.
pub fn referral_summary_tallied<C: Tally>(
    model: &ReadModel,
    service: Uuid,
    from: Timestamp,
    to: Timestamp,
    keys: RecordKeys,
) -> ReferralSummary<C> {
    let mut r = ReferralSummary::<C>::default();
    let Some(index) = model.referrals_by_service.get(&service) else { return r };
    let to = to.max(from); // a reversed period selects nothing
    for ((_, referral_id), patient_id) in index.range((from, Uuid::nil())..(to, Uuid::nil())) {
        let Some(referral) = model.patients.get(patient_id).and_then(|p| p.referral(*referral_id)) else { continue };
        let k = keys(*referral_id);
        r.received.add(k, 1);
        match referral.decision {
            None => r.undecided.add(k, 1),
            Some((ReferralDecision::Accepted, _, _)) => r.accepted.add(k, 1),
            Some((ReferralDecision::Rejected, reason, _)) => {
                r.rejected.add(k, 1);
                r.rejected_for_capacity.add(k, u64::from(reason == Some(RejectionReason::Capacity)));
            }
            // A decision a newer forlop recorded: decided, but neither of the two kinds known here.
            Some((ReferralDecision::Unrecognised, _, _)) => {}
        }
    }
    r
}

/// Waiting days for the episodes `service` started in [from, to).
pub fn waiting_days(model: &ReadModel, service: Uuid, from: Timestamp, to: Timestamp) -> Distribution {
    waiting_days_tallied(model, service, from, to, NO_KEYS)
}

/// `waiting_days`, each episode counted with its record key.
pub fn waiting_days_tallied<C: Tally>(
    model: &ReadModel,
    service: Uuid,
    from: Timestamp,
    to: Timestamp,
    keys: RecordKeys,
) -> Distribution<C> {
    Distribution::of_tallied(
        cohort(model, service, from, to).filter_map(|(p, e)| Some((waiting_days_of(p, e)?, e.id))).collect(),
        keys,
    )
}

/// Episodes at `service` open at `as_of`: started before it and not ended by it.
pub fn open_episodes(model: &ReadModel, service: Uuid, as_of: Timestamp) -> u64 {
    open_episodes_tallied(model, service, as_of, NO_KEYS)
}

/// `open_episodes`, each episode counted with its record key.
pub fn open_episodes_tallied<C: Tally>(model: &ReadModel, service: Uuid, as_of: Timestamp, keys: RecordKeys) -> C {
    let Some(index) = model.episodes_by_service.get(&service) else { return C::default() };
    tally(index.range(..(as_of, Uuid::nil())).filter(|(_, entry)| entry.open_at(as_of)).map(|((_, id), _)| *id), keys)
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
    pathway_report_tallied(model, service, from, to, age_bins, NO_KEYS)
}

/// `pathway_report`, each count made with its contributors' record keys: episodes count by the
/// episode's id, patients and continuity by the patient's, referrals by the referral's.
pub fn pathway_report_tallied<C: Tally>(
    model: &ReadModel,
    service: Uuid,
    from: Timestamp,
    to: Timestamp,
    age_bins: &[i32],
    keys: RecordKeys,
) -> Result<PathwayReport<C>, String> {
    let bin_keys = age_keys(age_bins)?;
    let episodes: Vec<(&PatientView, &EpisodeView)> = cohort(model, service, from, to).collect();
    let mut age_groups: Vec<Count<C>> = bin_keys.into_iter().map(|key| Count { key, count: C::default() }).collect();
    for (p, e) in &episodes {
        age_groups[age_index(age_bins, e.started_at.year() - p.birth_year)].count.add(keys(e.id), 1);
    }
    let phq: Vec<Scores> = episodes.iter().map(|(p, e)| (e.id, episode_scores(p, e.id, Instrument::Phq9))).collect();
    let gad: Vec<Scores> = episodes.iter().map(|(p, e)| (e.id, episode_scores(p, e.id, Instrument::Gad7))).collect();
    let both: Vec<(Uuid, BothScores)> =
        phq.iter().zip(&gad).filter_map(|((e, p), (_, g))| Some((*e, ((p.0?, p.1?), (g.0?, g.1?))))).collect();

    let mut seen = HashSet::new();
    let patients: Vec<&PatientView> = episodes.iter().filter(|(p, _)| seen.insert(p.id)).map(|(p, _)| *p).collect();
    let mut continuity = ContinuitySummary::<C>::default();
    let mut cocs = Vec::new();
    for p in &patients {
        let (c, k) = (p.continuity(), keys(p.id));
        continuity.patients_with_transition.add(k, u64::from(c.care_level_transitions > 0));
        continuity.transitions.add(k, u64::from(c.care_level_transitions));
        continuity.transitions_keeping_therapist.add(k, u64::from(c.transitions_keeping_therapist));
        continuity.handovers.add(k, c.handovers.len() as u64);
        continuity
            .handovers_without_notification
            .add(k, c.handovers.iter().filter(|h| !h.patient_notified).count() as u64);
        cocs.extend(c.indices.coc);
    }
    continuity.mean_coc = mean(cocs.into_iter());

    let waits: Vec<(f64, Uuid)> = episodes.iter().filter_map(|(p, e)| Some((waiting_days_of(p, e)?, e.id))).collect();
    Ok(PathwayReport {
        episodes: tally(episodes.iter().map(|(_, e)| e.id), keys),
        patients: tally(patients.iter().map(|p| p.id), keys),
        gender: counts(GENDERS, episodes.iter().map(|(p, e)| (p.gender, e.id)), keys),
        referral_sources: counts(
            SOURCES,
            episodes.iter().map(|(p, e)| (e.referral_id.and_then(|r| p.referral(r)).map(|r| r.source), e.id)),
            keys,
        ),
        end_reasons: counts(
            END_REASONS,
            episodes.iter().map(|(_, e)| (e.ended.as_ref().map(|x| x.reason), e.id)),
            keys,
        ),
        age_groups,
        phq9: outcome_summary(&phq, Instrument::Phq9, keys),
        gad7: outcome_summary(&gad, Instrument::Gad7, keys),
        recovery: recovery_tallied(&both, keys),
        waiting_histogram: waiting_histogram_tallied(&waits, keys),
        waiting_days: Distribution::of_tallied(waits, keys),
        sessions_per_episode: Distribution::of_tallied(
            episodes.iter().map(|(p, e)| (attended(p, e.id).count() as f64, e.id)).collect(),
            keys,
        ),
        referrals: referral_summary_tallied(model, service, from, to, keys),
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
        let got: Vec<Count> = counts(GENDERS, genders.into_iter().map(|g| (g, Uuid::nil())), NO_KEYS);
        let pairs: Vec<(&str, u64)> = got.iter().map(|c| (c.key.as_str(), c.count)).collect();
        assert_eq!(pairs, [("FEMALE", 2), ("MALE", 0), ("OTHER", 0), ("UNKNOWN", 0), ("UNRECOGNISED", 1)]);
        // Only listed when there is one.
        let male: Vec<Count> = counts(GENDERS, [(Gender::Male, Uuid::nil())].into_iter(), NO_KEYS);
        assert_eq!(male.len(), GENDERS.len());
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
