//! What aggregates disclose, decided here for every adapter: a report leaves the engine already
//! exact (auditors, admins) or protected (analysts), so no two adapters (GraphQL, FHIR) can
//! differ.
//!
//! Analysts get figures protected against the attacks one makes with many requests:
//! - every count is perturbed by the cell key method (`cell_key`): at most ±`MAX_NOISE`, the same
//!   for the same contributors, unrelated for contributors that differ by one person;
//! - counts from 1 to threshold − 1 are not shown (`Hidden::Small`), and 0 is shown (it identifies
//!   no one); a figure that would give a hidden one back is withheld (`Hidden::Protected`);
//! - means and quantiles carry noise of the order of one person's contribution, and are withheld
//!   over fewer values than the threshold; shares are computed from the perturbed counts;
//! - no minimum or maximum (each is one person's value), medians and p90 only over enough values
//!   that neither is one person's, only the standard age groups, report windows widened to one
//!   calendar month, quarter or year (UTC; `standard_period`) and `asOf` to its month's start,
//!   so moving a window by a day changes nothing and overlapping windows cannot be combined.

pub mod cell_key;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use forlop_projections::reports::{
    self as r, ContinuitySummary, Count, Distribution, OutcomeSummary, PathwayReport, RecoverySummary, ReferralSummary,
    Tally,
};
use uuid::Uuid;

use crate::policy::Aggregates;
pub use crate::record_keys::RecordKeys;
use crate::{Caller, Engine, EngineError};

/// Why a figure is not shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hidden {
    /// A count from 1 to threshold − 1, or a statistic over that few values.
    Small,
    /// Not small itself, but it would give a hidden figure back.
    Protected,
}

/// A count as disclosed: its (possibly perturbed) value, or why it is hidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Figure {
    pub value: Option<u64>,
    pub hidden: Option<Hidden>,
}

impl Figure {
    fn shown(value: u64) -> Figure {
        Figure { value: Some(value), hidden: None }
    }
    fn hidden(why: Hidden) -> Figure {
        Figure { value: None, hidden: Some(why) }
    }
    pub fn is_hidden(&self) -> bool {
        self.hidden.is_some()
    }
}

/// How a report's figures were made, for the reader of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Exact,
    /// The cell key method with small counts under `threshold` hidden.
    CellKey {
        threshold: u64,
    },
}

/// An aggregate as disclosed, with the window it was computed for (snapped to whole months for
/// analysts) and how.
#[derive(Debug, Clone)]
pub struct Disclosed<T> {
    pub value: T,
    pub method: Method,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// True when the window asked for was widened to whole calendar months.
    pub snapped: bool,
}

/// The first instant of the calendar month (UTC) holding `t`.
pub fn month_start(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0).single().expect("the first of a month at midnight UTC exists")
}

/// The first instant of the month after the one holding `t`.
fn next_month_start(t: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if t.month() == 12 { (t.year() + 1, 1) } else { (t.year(), t.month() + 1) };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().expect("the first of a month at midnight UTC exists")
}

/// The standard period an analyst's window is widened to: the smallest calendar month, quarter
/// or year (UTC) that holds [from, to); None when [from, to) crosses a calendar year.
///
/// Why a fixed grid rather than any run of whole months: the noise of two windows is unrelated
/// only if they differ in their contributors, so an analyst who may ask every run of months gets
/// hundreds of overlapping windows, and least squares over them averages the noise away and
/// solves each month (a red-team run recovered one-person months to within a day or two). On the
/// grid each month's episodes are counted in three windows only (its month, quarter and year), so
/// nothing is measured often enough to average out.
pub fn standard_period(from: DateTime<Utc>, to: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    // The last instant the window holds (`to` is exclusive).
    let last = if to > from { to - chrono::Duration::nanoseconds(1) } else { from };
    let month = (month_start(from), next_month_start(from));
    if last < month.1 {
        return Some(month);
    }
    let quarter_start = |t: DateTime<Utc>| {
        let m = (t.month() - 1) / 3 * 3 + 1;
        Utc.with_ymd_and_hms(t.year(), m, 1, 0, 0, 0).single().expect("a quarter's first day exists")
    };
    let q = quarter_start(from);
    let quarter = (q, next_month_start(next_month_start(next_month_start(q))));
    if last < quarter.1 {
        return Some(quarter);
    }
    let year = |y: i32| Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).single().expect("1 January exists");
    (last < year(from.year() + 1)).then(|| (year(from.year()), year(from.year() + 1)))
}

/// Fewest values a perturbed median or p90 is shown over: with fewer than ten, p90 (the
/// ⌈0.9·n⌉-th smallest) is the largest value.
pub const MIN_QUANTILE_VALUES: u64 = 10;

/// Turns a report's counts into disclosed figures.
#[derive(Debug, Clone, Copy)]
pub struct Discloser(Aggregates);

/// Salts that give each statistic of a cell its own noise.
mod salt {
    pub const MEAN: u64 = 1;
    pub const MEDIAN: u64 = 2;
    pub const P90: u64 = 3;
    pub const CHANGE: u64 = 4;
    pub const COC: u64 = 5;
}

impl Discloser {
    pub fn new(a: Aggregates) -> Discloser {
        Discloser(a)
    }

    pub fn method(&self) -> Method {
        match self.0 {
            Aggregates::Exact => Method::Exact,
            Aggregates::Perturbed { threshold } => Method::CellKey { threshold },
        }
    }

    pub fn count<C: Tally>(&self, c: C) -> Figure {
        let n = c.count();
        match self.0 {
            Aggregates::Exact => Figure::shown(n),
            Aggregates::Perturbed { .. } if n == 0 => Figure::shown(0),
            Aggregates::Perturbed { threshold } if n < threshold => Figure::hidden(Hidden::Small),
            Aggregates::Perturbed { threshold } => Figure::shown(cell_key::perturb_count(n, c.cell_key(), threshold)),
        }
    }

    /// `figure`, unless `guard` is hidden: then it is withheld too, since with the figures beside
    /// it it would give `guard` back.
    fn unless_hidden(&self, figure: Figure, guard: Figure) -> Figure {
        if guard.is_hidden() && !figure.is_hidden() {
            Figure::hidden(Hidden::Protected)
        } else {
            figure
        }
    }

    /// A statistic over the values counted by `c`, none larger in magnitude than `top`.
    fn stat<C: Tally>(&self, value: Option<f64>, c: C, top: f64, salt: u64) -> Option<f64> {
        let value = value?;
        match self.0 {
            Aggregates::Exact => Some(value),
            Aggregates::Perturbed { threshold } if c.count() < threshold => None,
            Aggregates::Perturbed { .. } => Some(cell_key::perturb_stat(value, c.count(), top, c.cell_key(), salt)),
        }
    }

    /// A median or p90: as `stat`, but for perturbed callers only over `MIN_QUANTILE_VALUES`
    /// values or more (times the threshold's share of 5), since over fewer p90 is the largest
    /// value and a median one person's.
    fn quantile<C: Tally>(&self, value: Option<f64>, c: C, top: f64, salt: u64) -> Option<f64> {
        match self.0 {
            Aggregates::Perturbed { threshold } if c.count() < MIN_QUANTILE_VALUES.max(2 * threshold) => None,
            _ => self.stat(value, c, top, salt),
        }
    }

    fn exact(&self) -> bool {
        self.0 == Aggregates::Exact
    }

    pub fn distribution<C: Tally>(&self, d: Distribution<C>) -> Distribution<Figure> {
        let top = d.min.unwrap_or(0.0).abs().max(d.max.unwrap_or(0.0).abs());
        Distribution {
            count: self.count(d.count),
            mean: self.stat(d.mean, d.count, top, salt::MEAN),
            median: self.quantile(d.median, d.count, top, salt::MEDIAN),
            p90: self.quantile(d.p90, d.count, top, salt::P90),
            // Each is one person's value: exact callers only.
            min: d.min.filter(|_| self.exact()),
            max: d.max.filter(|_| self.exact()),
        }
    }

    fn counts<C: Tally>(&self, v: Vec<Count<C>>) -> Vec<Count<Figure>> {
        v.into_iter().map(|c| Count { key: c.key, count: self.count(c.count) }).collect()
    }

    fn outcome<C: Tally>(&self, o: OutcomeSummary<C>, top: f64) -> OutcomeSummary<Figure> {
        let paired = self.count(o.paired_count);
        OutcomeSummary {
            intake_count: self.count(o.intake_count),
            intake_mean: self.stat(o.intake_mean, o.intake_count, top, salt::MEAN),
            discharge_count: self.count(o.discharge_count),
            discharge_mean: self.stat(o.discharge_mean, o.discharge_count, top, salt::MEAN),
            paired_count: paired,
            mean_change: self.stat(o.mean_change, o.paired_count, top, salt::CHANGE),
            // episodes − missingPairs would give a hidden pairedCount back.
            missing_pairs: self.unless_hidden(self.count(o.missing_pairs), paired),
            reliably_improved: self.count(o.reliably_improved),
            recovered: self.count(o.recovered),
        }
    }

    fn recovery<C: Tally>(&self, x: RecoverySummary<C>) -> RecoverySummary<Figure> {
        let (at_caseness, recovered) = (self.count(x.at_caseness), self.count(x.recovered));
        let recovery_rate = if self.exact() {
            x.recovery_rate
        } else {
            // A share of the shown counts, so it gives back nothing they do not.
            match (recovered.value, at_caseness.value) {
                (Some(r), Some(a)) if a > 0 => Some(((r as f64 / a as f64).min(1.0) * 1000.0).round() / 1000.0),
                _ => None,
            }
        };
        RecoverySummary {
            eligible: self.count(x.eligible),
            at_caseness,
            recovered,
            reliably_improved: self.count(x.reliably_improved),
            reliably_deteriorated: self.count(x.reliably_deteriorated),
            reliably_recovered: self.count(x.reliably_recovered),
            recovery_rate,
        }
    }

    pub fn referrals<C: Tally>(&self, x: ReferralSummary<C>) -> ReferralSummary<Figure> {
        ReferralSummary {
            received: self.count(x.received),
            accepted: self.count(x.accepted),
            rejected: self.count(x.rejected),
            rejected_for_capacity: self.count(x.rejected_for_capacity),
            undecided: self.count(x.undecided),
        }
    }

    fn continuity<C: Tally>(&self, c: ContinuitySummary<C>, patients: C) -> ContinuitySummary<Figure> {
        ContinuitySummary {
            patients_with_transition: self.count(c.patients_with_transition),
            transitions: self.count(c.transitions),
            transitions_keeping_therapist: self.count(c.transitions_keeping_therapist),
            handovers: self.count(c.handovers),
            handovers_without_notification: self.count(c.handovers_without_notification),
            // COC lies in [0, 1].
            mean_coc: self.stat(c.mean_coc, patients, 1.0, salt::COC),
        }
    }

    pub fn report<C: Tally>(&self, x: PathwayReport<C>) -> PathwayReport<Figure> {
        // Items score 0 to 3, so a total (and a change) is at most three per item.
        let top = |i: forlop_domain::Instrument| 3.0 * i.item_count() as f64;
        let (phq_top, gad_top) = (top(forlop_domain::Instrument::Phq9), top(forlop_domain::Instrument::Gad7));
        PathwayReport {
            episodes: self.count(x.episodes),
            patients: self.count(x.patients),
            gender: self.counts(x.gender),
            referral_sources: self.counts(x.referral_sources),
            end_reasons: self.counts(x.end_reasons),
            age_groups: self.counts(x.age_groups),
            phq9: self.outcome(x.phq9, phq_top),
            gad7: self.outcome(x.gad7, gad_top),
            recovery: self.recovery(x.recovery),
            waiting_days: self.distribution(x.waiting_days),
            waiting_histogram: self.counts(x.waiting_histogram),
            sessions_per_episode: self.distribution(x.sessions_per_episode),
            referrals: self.referrals(x.referrals),
            continuity: self.continuity(x.continuity, x.patients),
        }
    }
}

impl Engine {
    /// How this caller's aggregates are disclosed, after checking they may see them at all.
    fn discloser(&self, caller: &Caller) -> Result<Discloser, EngineError> {
        Ok(Discloser::new(self.aggregates(caller)?))
    }

    /// The window a caller's aggregate is computed over: for perturbed callers the standard
    /// period holding it, and a window across a calendar year is refused.
    fn window(
        d: &Discloser,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>, bool), EngineError> {
        if d.exact() {
            return Ok((from, to, false));
        }
        let (f, t) = standard_period(from, to).ok_or_else(|| {
            EngineError::forbidden(
                "an analyst's figures cover one calendar month, quarter or year (UTC), and this period crosses a \
                 year: ask for each year in turn",
            )
        })?;
        Ok((f, t, (f, t) != (from, to)))
    }

    /// Runs `compute` on the analysis threads with record keys when the caller's figures are to
    /// be perturbed (exact callers pay for none).
    async fn tallied<T: Send + 'static>(
        &self,
        d: &Discloser,
        exact: impl FnOnce(&forlop_projections::ReadModel) -> T + Send + 'static,
        keyed: impl FnOnce(&forlop_projections::ReadModel, r::RecordKeys) -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        if d.exact() {
            return self.analyse(exact).await;
        }
        let keys = self.record_keys.clone();
        self.analyse(move |model| keyed(model, &|id| keys.key(id))).await
    }

    /// The pathway report of `service` for the episodes started in [from, to), as the caller may
    /// see it. `age_bins` (lower bounds) only for exact callers; analysts get the standard groups.
    pub async fn pathway_report(
        &self,
        caller: &Caller,
        service: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        age_bins: Option<Vec<i32>>,
    ) -> Result<Disclosed<PathwayReport<Figure>>, EngineError> {
        let d = self.discloser(caller)?;
        if age_bins.is_some() && !d.exact() {
            return Err(EngineError::forbidden(
                "ageBins is for auditors and admins: overlapping custom age groups would isolate one age; \
                 leave it out for the standard groups",
            ));
        }
        self.known_service(service)?;
        let (from, to, snapped) = Self::window(&d, from, to)?;
        let bins = age_bins.unwrap_or_else(|| r::DEFAULT_AGE_BINS.to_vec());
        let bins2 = bins.clone();
        let report = self
            .tallied(
                &d,
                move |m| r::pathway_report(m, service, from, to, &bins).map(|x| d.report(x)),
                move |m, keys| {
                    r::pathway_report_tallied::<r::Keyed>(m, service, from, to, &bins2, keys).map(|x| d.report(x))
                },
            )
            .await?
            .map_err(EngineError::invalid)?;
        Ok(Disclosed { value: report, method: d.method(), from, to, snapped })
    }

    /// Episodes of `service` open at `as_of` (for perturbed callers: at the start of its month).
    pub async fn open_episodes(
        &self,
        caller: &Caller,
        service: Uuid,
        as_of: DateTime<Utc>,
    ) -> Result<Disclosed<Figure>, EngineError> {
        let d = self.discloser(caller)?;
        let at = if d.exact() { as_of } else { month_start(as_of) };
        let figure = self
            .tallied(
                &d,
                move |m| d.count(r::open_episodes(m, service, at)),
                move |m, keys| d.count(r::open_episodes_tallied::<r::Keyed>(m, service, at, keys)),
            )
            .await?;
        Ok(Disclosed { value: figure, method: d.method(), from: at, to: at, snapped: at != as_of })
    }

    /// Waiting days of the episodes `service` started in [from, to).
    pub async fn waiting_days(
        &self,
        caller: &Caller,
        service: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Disclosed<Distribution<Figure>>, EngineError> {
        let d = self.discloser(caller)?;
        let (from, to, snapped) = Self::window(&d, from, to)?;
        let value = self
            .tallied(
                &d,
                move |m| d.distribution(r::waiting_days(m, service, from, to)),
                move |m, keys| d.distribution(r::waiting_days_tallied::<r::Keyed>(m, service, from, to, keys)),
            )
            .await?;
        Ok(Disclosed { value, method: d.method(), from, to, snapped })
    }

    /// Referrals `service` received in [from, to), by decision.
    pub async fn referral_outcomes(
        &self,
        caller: &Caller,
        service: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Disclosed<ReferralSummary<Figure>>, EngineError> {
        let d = self.discloser(caller)?;
        let (from, to, snapped) = Self::window(&d, from, to)?;
        let value = self
            .tallied(
                &d,
                move |m| d.referrals(r::referral_summary(m, service, from, to)),
                move |m, keys| d.referrals(r::referral_summary_tallied::<r::Keyed>(m, service, from, to, keys)),
            )
            .await?;
        Ok(Disclosed { value, method: d.method(), from, to, snapped })
    }

    pub(crate) fn known_service(&self, id: Uuid) -> Result<(), EngineError> {
        if self.model().services.contains_key(&id) {
            Ok(())
        } else {
            Err(forlop_domain::DomainError::NotFound(format!("service {id} not found")).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn windows_widen_to_the_smallest_standard_period() {
        let p = |f: &str, to: &str| standard_period(t(f), t(to));
        let period = |f: &str, to: &str| Some((t(f), t(to)));
        assert_eq!(
            p("2016-03-02T00:00:00Z", "2016-03-20T00:00:00Z"),
            period("2016-03-01T00:00:00Z", "2016-04-01T00:00:00Z")
        );
        assert_eq!(
            p("2016-03-01T00:00:00Z", "2016-04-01T00:00:00Z"),
            period("2016-03-01T00:00:00Z", "2016-04-01T00:00:00Z")
        );
        assert_eq!(
            p("2016-02-10T00:00:00Z", "2016-03-10T00:00:00Z"),
            period("2016-01-01T00:00:00Z", "2016-04-01T00:00:00Z")
        );
        assert_eq!(
            p("2016-01-01T00:00:00Z", "2016-06-10T00:00:00Z"),
            period("2016-01-01T00:00:00Z", "2017-01-01T00:00:00Z")
        );
        assert_eq!(
            p("2016-12-31T23:00:00Z", "2016-12-31T23:30:00Z"),
            period("2016-12-01T00:00:00Z", "2017-01-01T00:00:00Z")
        );
        assert_eq!(
            p("2016-01-01T00:00:00Z", "2017-01-01T00:00:00Z"),
            period("2016-01-01T00:00:00Z", "2017-01-01T00:00:00Z")
        );
        // D and D + 1 give one window.
        assert_eq!(
            p("2016-01-01T00:00:00Z", "2016-06-10T00:00:00Z"),
            p("2016-01-01T00:00:00Z", "2016-06-11T00:00:00Z")
        );
        // Across a year: no standard period holds it.
        assert_eq!(p("2016-06-01T00:00:00Z", "2017-06-01T00:00:00Z"), None);
        assert_eq!(p("2016-01-01T00:00:00Z", "2017-01-01T00:00:01Z"), None);
        assert_eq!(month_start(t("2016-02-29T10:00:00Z")), t("2016-02-01T00:00:00Z"));
    }

    #[test]
    fn analysts_see_no_small_count_and_no_extreme() {
        let d = Discloser::new(Aggregates::Perturbed { threshold: 5 });
        for n in 1..5 {
            assert_eq!(d.count(r::Keyed { count: n, key: 77 }), Figure::hidden(Hidden::Small));
        }
        assert_eq!(d.count(r::Keyed { count: 0, key: 77 }), Figure::shown(0));
        let dist = Distribution {
            count: r::Keyed { count: 40, key: 9 },
            min: Some(1.0),
            max: Some(90.0),
            ..Default::default()
        };
        let shown = d.distribution(dist);
        assert_eq!((shown.min, shown.max), (None, None));
        let exact = Discloser::new(Aggregates::Exact).distribution(dist);
        assert_eq!((exact.min, exact.max), (Some(1.0), Some(90.0)));
    }

    #[test]
    fn quantiles_need_ten_values_for_analysts_so_p90_is_never_the_largest() {
        let d = Discloser::new(Aggregates::Perturbed { threshold: 5 });
        let dist = |n| Distribution {
            count: r::Keyed { count: n, key: 3 },
            mean: Some(40.0),
            median: Some(30.0),
            p90: Some(67.0),
            min: Some(1.0),
            max: Some(67.0),
        };
        let small = d.distribution(dist(7));
        assert!(small.mean.is_some(), "a mean over 7 values is shown, with noise");
        assert_eq!((small.median, small.p90), (None, None), "over 7 values p90 is the maximum");
        let large = d.distribution(dist(10));
        assert!(large.median.is_some() && large.p90.is_some());
    }

    #[test]
    fn missing_pairs_is_withheld_with_a_hidden_paired_count() {
        let d = Discloser::new(Aggregates::Perturbed { threshold: 5 });
        let k = |count| r::Keyed { count, key: 5 };
        let o = OutcomeSummary { paired_count: k(3), missing_pairs: k(40), intake_count: k(43), ..Default::default() };
        let shown = d.outcome(o, 27.0);
        assert_eq!(shown.paired_count, Figure::hidden(Hidden::Small));
        assert_eq!(shown.missing_pairs, Figure::hidden(Hidden::Protected));
    }

    /// The differencing attack, in the small: two cohorts that differ by one person, each record
    /// key drawn afresh per trial (as each installation's master key gives other keys).
    #[test]
    fn a_one_contributor_difference_does_not_give_the_contributor_back() {
        let d = Discloser::new(Aggregates::Perturbed { threshold: 5 });
        let person = 28.65;
        let (mut close, mut exact_count) = (0, 0);
        let trials = 2000u64;
        for trial in 0..trials {
            let ids: Vec<Uuid> = (0..101u128).map(|i| Uuid::from_u128((u128::from(trial) << 64) | i)).collect();
            let values: Vec<(f64, Uuid)> =
                ids.iter().enumerate().map(|(i, id)| (if i == 100 { person } else { (i % 60) as f64 }, *id)).collect();
            let keys = |id: Uuid| cell_key::uniform(id.as_u128() as u64 ^ (id.as_u128() >> 64) as u64, 99).to_bits();
            let a = d.distribution(Distribution::<r::Keyed>::of_tallied(values[..100].to_vec(), &keys));
            let b = d.distribution(Distribution::<r::Keyed>::of_tallied(values.clone(), &keys));
            let (na, nb) = (a.count.value.unwrap() as f64, b.count.value.unwrap() as f64);
            let estimate = nb * b.mean.unwrap() - na * a.mean.unwrap();
            close += u64::from((estimate - person).abs() < 1.0);
            exact_count += u64::from(nb - na == 1.0);
        }
        // Exact figures would give the value back in every trial; here within a day in few.
        assert!(close * 20 < trials, "the value came back within a day in {close} of {trials} trials");
        assert!(exact_count * 2 < trials, "the counts differed by exactly one in {exact_count} of {trials} trials");
    }
}
