//! An outcome measure (PHQ-9 or GAD-7), however it was sent: item scores, the episode it was
//! measured in (through its session Encounter), and its phase.

use chrono::{DateTime, Utc};
use forlop_domain::events::OutcomeRecorded;
use forlop_domain::{Command, Instrument, MeasurePhase};
use uuid::Uuid;

use super::resolving::ResourceRef;
use super::terminology::PHASE_SYSTEM;
use super::{time, EpisodePeriod, Fact, Issues, Mapper, Placed};
use crate::outcome::{Issue, IssueType};
use crate::resources::{Reference, Resource};

/// An outcome measured this close to an episode's start (or end) is its intake (or discharge).
const PHASE_WINDOW_DAYS: i64 = 30;

/// A questionnaire as measured, from an Observation or a QuestionnaireResponse.
pub(super) struct Measured<'a> {
    pub instrument: Instrument,
    pub items_codes: &'static [&'static str],
    /// Per item in the instrument's order: where it was and its score, or None if absent.
    pub answers: Vec<Option<(String, Option<i64>)>>,
    pub items_path: String,
    pub subject: Option<&'a Reference>,
    pub encounter: Option<&'a Reference>,
    pub at: Option<&'a str>,
    pub at_path: String,
    pub phase: Option<MeasurePhase>,
}

impl<'a> Mapper<'a> {
    /// The outcome fact of a measured questionnaire.
    pub(super) fn outcome(&self, p: &'a Placed, m: Measured<'a>) -> Result<Vec<Fact>, Issues> {
        let path = p.path.as_str();
        let mut issues = Vec::new();
        let items = item_scores(&m, &mut issues);
        let patient = self.patient(m.subject, &format!("{path}.subject"), p, &[]).map_err(|i| issues.push(i)).ok();
        let at = time(m.at, &m.at_path).map_err(|i| issues.push(i)).ok();
        let (Some(patient_id), Some(measured_at), true) = (patient, at, issues.is_empty()) else { return Err(issues) };
        let episode_id = self.measured_episode(p, &m, patient_id)?;
        let phase = match m.phase {
            Some(phase) => phase,
            None => self.phase_by_dates(path, episode_id, patient_id, measured_at)?,
        };
        let instrument = m.instrument;
        Ok(vec![Fact::of(
            p.id,
            "outcome",
            Command::RecordOutcome {
                patient_id,
                event: OutcomeRecorded { episode_id, instrument, phase, items, total: 0, measured_at },
            },
        )])
    }

    /// The episode: through the session Encounter (in the Bundle, or recorded).
    fn measured_episode(&self, p: &'a Placed, m: &Measured<'a>, patient_id: Uuid) -> Result<Uuid, Issues> {
        let path = p.path.as_str();
        let enc = m.encounter.ok_or_else(|| {
            vec![Issue::new(
                IssueType::Required,
                format!("{path}.encounter"),
                "an outcome must name the Encounter (session) it was measured at",
            )]
        })?;
        let target = self.resolve(enc, &format!("{path}.encounter"), &["Encounter"], &[], p).map_err(|i| vec![i])?;
        let episode_id = match target.resource {
            Some(ResourceRef::Top(Placed { resource: Resource::Encounter(e), .. })) => e
                .episode_of_care
                .first()
                .and_then(|er| {
                    self.resolve(
                        er,
                        &format!("{path}.encounter (Encounter.episodeOfCare[0])"),
                        &["EpisodeOfCare"],
                        &[],
                        p,
                    )
                    .ok()
                })
                .map(|t| t.id),
            _ => self.lookup.session_episode(patient_id, target.id),
        };
        episode_id.ok_or_else(|| {
            vec![Issue::new(
                IssueType::NotFound,
                format!("{path}.encounter"),
                "the Encounter is neither in this Bundle nor a recorded session",
            )]
        })
    }

    /// The phase an outcome not given one is in, by when it was measured in its episode.
    fn phase_by_dates(
        &self,
        path: &str,
        episode_id: Uuid,
        patient_id: Uuid,
        measured_at: DateTime<Utc>,
    ) -> Result<MeasurePhase, Issues> {
        let window = chrono::Duration::days(PHASE_WINDOW_DAYS);
        match self.episode_period(episode_id, patient_id) {
            Some(EpisodePeriod { start, .. }) if measured_at <= start + window => Ok(MeasurePhase::Intake),
            Some(EpisodePeriod { end: Some(end), .. }) if measured_at + window >= end => Ok(MeasurePhase::Discharge),
            Some(_) => Ok(MeasurePhase::Interim),
            // Not recorded yet: held until it is, in an import.
            None => Err(vec![Issue::new(
                IssueType::NotFound,
                format!("{path}.encounter"),
                format!(
                    "episode {episode_id} is not recorded (yet), so its dates cannot give the phase; send it \
                     first, or give the phase as a category ({PHASE_SYSTEM})"
                ),
            )]),
        }
    }

    /// An episode's dates, from this Bundle or as recorded.
    fn episode_period(&self, episode: Uuid, patient: Uuid) -> Option<EpisodePeriod> {
        let in_scope = self.scope.with_id(episode).next();
        if let Some(Placed { resource: Resource::EpisodeOfCare(e), .. }) = in_scope {
            let start = e.period.as_ref().and_then(|x| x.start.as_deref()).and_then(|s| time(Some(s), "").ok())?;
            let end = e.period.as_ref().and_then(|x| x.end.as_deref()).and_then(|s| time(Some(s), "").ok());
            return Some(EpisodePeriod { start, end });
        }
        self.lookup.episode_period(patient, episode)
    }
}

/// The item scores, in the instrument's order; an issue for each bad one, or for missing ones.
fn item_scores(m: &Measured, issues: &mut Issues) -> Vec<u8> {
    let mut items = Vec::with_capacity(m.items_codes.len());
    for (n, answer) in m.answers.iter().enumerate() {
        let Some((ipath, value)) = answer else { continue };
        match value {
            Some(v @ 0..=3) => items.push(*v as u8),
            Some(v) => issues.push(Issue::new(
                IssueType::Value,
                format!("{ipath}.value[x]"),
                format!("item {} scores {v}; items score 0 to 3", n + 1),
            )),
            None => issues.push(Issue::new(
                IssueType::Required,
                format!("{ipath}.value[x]"),
                "an item needs an integer or a LOINC answer code",
            )),
        }
    }
    if issues.is_empty() && items.len() != m.items_codes.len() {
        issues.push(Issue::new(
            IssueType::Value,
            m.items_path.clone(),
            if items.is_empty() {
                // A total alone is refused rather than recorded as a partial outcome: an
                // outcome's total is always the sum of its recorded items, which audits recompute.
                format!(
                    "{} needs all {} item answers (LOINC {}); a total alone is not recorded, since forlop derives the total from the items",
                    m.instrument.code(),
                    m.items_codes.len(),
                    m.items_codes.join(", "),
                )
            } else {
                format!(
                    "{} needs all {} item answers (LOINC {}); found {}",
                    m.instrument.code(),
                    m.items_codes.len(),
                    m.items_codes.join(", "),
                    items.len()
                )
            },
        ));
    }
    items
}
