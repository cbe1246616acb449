//! Observation: a PHQ-9 or GAD-7 outcome, its items as components.

use forlop_domain::text::quote;
use forlop_domain::{Instrument, MeasurePhase};

use super::measure::Measured;
use super::terminology::*;
use super::{Fact, Issues, Mapper, Placed};
use crate::outcome::{Issue, IssueType};
use crate::resources::Observation;

impl<'a> Mapper<'a> {
    pub(super) fn observation(&self, p: &'a Placed, r: &'a Observation) -> Result<Vec<Fact>, Issues> {
        let path = p.path.as_str();
        let (instrument, items_codes): (Instrument, &'static [&'static str]) =
            if r.code.has(LOINC, PHQ9_TOTAL) || r.code.has(LOINC, PHQ9_PANEL) {
                (Instrument::Phq9, &PHQ9_ITEMS)
            } else if r.code.has(LOINC, GAD7_TOTAL) || r.code.has(LOINC, GAD7_PANEL) {
                (Instrument::Gad7, &GAD7_ITEMS)
            } else {
                return Err(vec![Issue::new(
                    IssueType::NotSupported,
                    format!("{path}.code"),
                    format!("forlop records PHQ-9 ({LOINC}|{PHQ9_TOTAL}) and GAD-7 ({LOINC}|{GAD7_TOTAL}) outcomes"),
                )]);
            };
        if matches!(r.status.as_str(), "registered" | "preliminary" | "cancelled" | "entered-in-error" | "unknown") {
            return Ok(vec![]);
        }
        let answers = items_codes
            .iter()
            .map(|code| {
                let (ci, c) = r.component.iter().enumerate().find(|(_, c)| c.code.has(LOINC, code))?;
                let value = match (&c.value_integer, &c.value_codeable_concept) {
                    (Some(v), _) => Some(*v),
                    (None, Some(cc)) => cc.codes().find_map(answer_score),
                    (None, None) => None,
                };
                Some((format!("{path}.component[{ci}]"), value))
            })
            .collect();
        let measured = Measured {
            instrument,
            items_codes,
            answers,
            items_path: format!("{path}.component"),
            subject: r.subject.as_ref(),
            encounter: r.encounter.as_ref(),
            at: r.effective_date_time.as_deref(),
            at_path: format!("{path}.effectiveDateTime"),
            phase: phase(r, path)?,
        };
        self.outcome(p, measured)
    }
}

/// The phase the category gives in forlop's code system, if it gives one.
fn phase(r: &Observation, path: &str) -> Result<Option<MeasurePhase>, Issues> {
    let code = r
        .category
        .iter()
        .flat_map(|c| &c.coding)
        .find(|c| c.system.as_deref() == Some(PHASE_SYSTEM))
        .and_then(|c| c.code.as_deref());
    match code {
        Some("intake") => Ok(Some(MeasurePhase::Intake)),
        Some("interim") => Ok(Some(MeasurePhase::Interim)),
        Some("discharge") => Ok(Some(MeasurePhase::Discharge)),
        Some(other) => Err(vec![Issue::new(
            IssueType::CodeInvalid,
            format!("{path}.category"),
            format!("{} is not intake, interim or discharge", quote(other)),
        )]),
        None => Ok(None),
    }
}
