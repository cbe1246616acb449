//! Dashboard analytics: pathway reports, care alerts and service overviews. What a figure
//! discloses is decided in the engine (`forlop_engine::disclosure`); this file only names it.

use async_graphql::{Enum, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use forlop_engine::disclosure::{self as d, Disclosed, Figure};
use forlop_projections::alerts as a;
use forlop_projections::reports as r;

/// Why a figure is null for this caller.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum HiddenReason {
    /// A count from 1 to the suppression threshold − 1 (shown as "<5"), or a statistic over that few values.
    Small,
    /// Not small itself, but withheld because with the figures beside it it would give a small one back.
    Protected,
}

impl From<d::Hidden> for HiddenReason {
    fn from(h: d::Hidden) -> Self {
        match h {
            d::Hidden::Small => HiddenReason::Small,
            d::Hidden::Protected => HiddenReason::Protected,
        }
    }
}

/// A figure of the object it is listed in that is withheld, and why.
#[derive(SimpleObject, Debug, Clone)]
pub struct HiddenFigure {
    /// The field's name, as in the schema (`missingPairs`).
    pub field: String,
    pub reason: HiddenReason,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum DisclosureMethod {
    /// Exact figures (auditors and admins).
    Exact,
    /// The cell key method (analysts): every count perturbed by at most `maxNoise`, counts from 1
    /// to `threshold` − 1 hidden, means and quantiles with noise, no minima or maxima, windows in
    /// whole calendar months.
    CellKey,
}

/// How the figures of an answer were made.
#[derive(SimpleObject, Debug)]
pub struct Disclosure {
    pub method: DisclosureMethod,
    /// Counts from 1 to threshold − 1 are hidden (null for exact figures).
    pub threshold: Option<u64>,
    /// A shown count is within ± this of the true count (0 for exact figures).
    pub max_noise: u64,
    /// True when the window asked for was widened to whole calendar months (UTC): `from` and
    /// `to` of the answer are the window used.
    pub snapped_to_months: bool,
    /// What the figures mean, in one sentence for a reader.
    pub note: String,
}

impl Disclosure {
    pub fn of<T>(x: &Disclosed<T>) -> Disclosure {
        match x.method {
            d::Method::Exact => Disclosure {
                method: DisclosureMethod::Exact,
                threshold: None,
                max_noise: 0,
                snapped_to_months: false,
                note: "exact figures".into(),
            },
            d::Method::CellKey { threshold } => Disclosure {
                method: DisclosureMethod::CellKey,
                threshold: Some(threshold),
                max_noise: d::cell_key::MAX_NOISE,
                snapped_to_months: x.snapped,
                note: format!(
                    "counts are perturbed by up to ±{} (the same query always gives the same answer), counts from 1 to {} \
                     are hidden, means and quantiles carry noise of the order of one person's value, and the \
                     period is whole calendar months",
                    d::cell_key::MAX_NOISE,
                    threshold.saturating_sub(1)
                ),
            },
        }
    }
}

/// Collects the hidden figures of one object as its fields are disclosed.
#[derive(Default)]
struct Withheld(Vec<HiddenFigure>);

impl Withheld {
    fn count(&mut self, field: &str, f: Figure) -> Option<u64> {
        if let Some(h) = f.hidden {
            self.0.push(HiddenFigure { field: field.to_owned(), reason: h.into() });
        }
        f.value
    }
    /// A statistic over the values of `basis`: hidden as small when its basis is not shown.
    fn stat(&mut self, field: &str, v: Option<f64>, basis: Figure) -> Option<f64> {
        if v.is_none() && basis.is_hidden() {
            self.0.push(HiddenFigure { field: field.to_owned(), reason: HiddenReason::Small });
        }
        v
    }
    fn suppressed(&self) -> bool {
        !self.0.is_empty()
    }
}

/// A count under a stable key: an enum name, `NONE`, `OPEN`, or an age group like `16-24`.
#[derive(SimpleObject, Debug)]
pub struct Count {
    pub key: String,
    pub count: Option<u64>,
    /// True when the count is withheld from this caller (see `hidden`).
    pub suppressed: bool,
    /// Why the count is null; null when it is shown.
    pub hidden: Option<HiddenReason>,
}

fn counts(v: Vec<r::Count<Figure>>) -> Vec<Count> {
    v.into_iter()
        .map(|c| Count {
            key: c.key,
            count: c.count.value,
            suppressed: c.count.is_hidden(),
            hidden: c.count.hidden.map(Into::into),
        })
        .collect()
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
    /// Exact figures only (auditors, admins): one person's value, never shown to analysts.
    pub min: Option<f64>,
    /// Exact figures only, as `min`.
    pub max: Option<f64>,
    /// True when a figure here is withheld from this caller (see `hidden`).
    pub suppressed: bool,
    pub hidden: Vec<HiddenFigure>,
}

impl From<r::Distribution<Figure>> for Distribution {
    fn from(x: r::Distribution<Figure>) -> Self {
        let mut w = Withheld::default();
        Distribution {
            count: w.count("count", x.count),
            mean: w.stat("mean", x.mean, x.count),
            median: w.stat("median", x.median, x.count),
            p90: w.stat("p90", x.p90, x.count),
            min: x.min,
            max: x.max,
            suppressed: w.suppressed(),
            hidden: w.0,
        }
    }
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
    /// Episodes without a pair: episodes − pairedCount. Withheld whenever pairedCount is.
    pub missing_pairs: Option<u64>,
    /// Paired episodes whose score fell by at least 6 (PHQ-9) or 4 (GAD-7).
    pub reliably_improved: Option<u64>,
    /// Paired episodes at caseness at intake (PHQ-9 ≥ 10, GAD-7 ≥ 8) and below it at discharge.
    pub recovered: Option<u64>,
    /// True when a figure here is withheld from this caller (see `hidden`).
    pub suppressed: bool,
    pub hidden: Vec<HiddenFigure>,
}

impl From<r::OutcomeSummary<Figure>> for OutcomeSummary {
    fn from(o: r::OutcomeSummary<Figure>) -> Self {
        let mut w = Withheld::default();
        OutcomeSummary {
            intake_count: w.count("intakeCount", o.intake_count),
            intake_mean: w.stat("intakeMean", o.intake_mean, o.intake_count),
            discharge_count: w.count("dischargeCount", o.discharge_count),
            discharge_mean: w.stat("dischargeMean", o.discharge_mean, o.discharge_count),
            paired_count: w.count("pairedCount", o.paired_count),
            mean_change: w.stat("meanChange", o.mean_change, o.paired_count),
            missing_pairs: w.count("missingPairs", o.missing_pairs),
            reliably_improved: w.count("reliablyImproved", o.reliably_improved),
            recovered: w.count("recovered", o.recovered),
            suppressed: w.suppressed(),
            hidden: w.0,
        }
    }
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
    /// recovered / atCaseness (for analysts, of the shown counts); null when none was at caseness.
    pub recovery_rate: Option<f64>,
    /// True when a figure here is withheld from this caller (see `hidden`).
    pub suppressed: bool,
    pub hidden: Vec<HiddenFigure>,
}

impl From<r::RecoverySummary<Figure>> for RecoverySummary {
    fn from(x: r::RecoverySummary<Figure>) -> Self {
        let mut w = Withheld::default();
        RecoverySummary {
            eligible: w.count("eligible", x.eligible),
            at_caseness: w.count("atCaseness", x.at_caseness),
            recovered: w.count("recovered", x.recovered),
            reliably_improved: w.count("reliablyImproved", x.reliably_improved),
            reliably_deteriorated: w.count("reliablyDeteriorated", x.reliably_deteriorated),
            reliably_recovered: w.count("reliablyRecovered", x.reliably_recovered),
            recovery_rate: x.recovery_rate,
            suppressed: w.suppressed(),
            hidden: w.0,
        }
    }
}

/// Referrals a service received in a period, by decision as recorded so far.
#[derive(SimpleObject, Debug)]
pub struct ReferralSummary {
    pub received: Option<u64>,
    pub accepted: Option<u64>,
    pub rejected: Option<u64>,
    pub rejected_for_capacity: Option<u64>,
    pub undecided: Option<u64>,
    /// True when a figure here is withheld from this caller (see `hidden`).
    pub suppressed: bool,
    pub hidden: Vec<HiddenFigure>,
}

impl From<r::ReferralSummary<Figure>> for ReferralSummary {
    fn from(x: r::ReferralSummary<Figure>) -> Self {
        let mut w = Withheld::default();
        ReferralSummary {
            received: w.count("received", x.received),
            accepted: w.count("accepted", x.accepted),
            rejected: w.count("rejected", x.rejected),
            rejected_for_capacity: w.count("rejectedForCapacity", x.rejected_for_capacity),
            undecided: w.count("undecided", x.undecided),
            suppressed: w.suppressed(),
            hidden: w.0,
        }
    }
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
    /// True when a figure here is withheld from this caller (see `hidden`).
    pub suppressed: bool,
    pub hidden: Vec<HiddenFigure>,
}

impl ContinuitySummary {
    fn new(c: r::ContinuitySummary<Figure>, patients: Figure) -> Self {
        let mut w = Withheld::default();
        ContinuitySummary {
            patients_with_transition: w.count("patientsWithTransition", c.patients_with_transition),
            transitions: w.count("transitions", c.transitions),
            transitions_keeping_therapist: w.count("transitionsKeepingTherapist", c.transitions_keeping_therapist),
            handovers: w.count("handovers", c.handovers),
            handovers_without_notification: w.count("handoversWithoutNotification", c.handovers_without_notification),
            mean_coc: w.stat("meanCoc", c.mean_coc, patients),
            suppressed: w.suppressed(),
            hidden: w.0,
        }
    }
}

/// The episodes a service started in [from, to), and what happened in them.
#[derive(SimpleObject, Debug)]
pub struct PathwayReport {
    pub service_id: Uuid,
    /// The window the report covers: as asked for, or widened to whole months for analysts
    /// (`disclosure.snappedToMonths`).
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// How the figures were made: exact, or perturbed by the cell key method.
    pub disclosure: Disclosure,
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
    /// True when `episodes` or `patients` is withheld from this caller (see `hidden`).
    pub suppressed: bool,
    pub hidden: Vec<HiddenFigure>,
}

impl PathwayReport {
    pub fn new(service_id: Uuid, x: Disclosed<r::PathwayReport<Figure>>) -> Self {
        let disclosure = Disclosure::of(&x);
        let (from, to, x) = (x.from, x.to, x.value);
        let mut w = Withheld::default();
        PathwayReport {
            service_id,
            from,
            to,
            disclosure,
            episodes: w.count("episodes", x.episodes),
            patients: w.count("patients", x.patients),
            gender: counts(x.gender),
            referral_sources: counts(x.referral_sources),
            end_reasons: counts(x.end_reasons),
            age_groups: counts(x.age_groups),
            phq9: x.phq9.into(),
            gad7: x.gad7.into(),
            recovery: x.recovery.into(),
            waiting_days: x.waiting_days.into(),
            waiting_histogram: counts(x.waiting_histogram),
            sessions_per_episode: x.sessions_per_episode.into(),
            referrals: x.referrals.into(),
            continuity: ContinuitySummary::new(x.continuity, x.patients),
            suppressed: w.suppressed(),
            hidden: w.0,
        }
    }
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
