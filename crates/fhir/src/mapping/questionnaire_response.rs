//! QuestionnaireResponse: the PHQ-9 or GAD-7 form, items named by their LOINC codes (as
//! LOINC's own forms name them), answers as integers or LOINC answer codes.

use forlop_domain::Instrument;

use super::measure::Measured;
use super::terminology::*;
use super::{Fact, Issues, Mapper, Placed};
use crate::outcome::{Issue, IssueType};
use crate::resources::{QuestionnaireItem, QuestionnaireResponse};

impl<'a> Mapper<'a> {
    pub(super) fn questionnaire(&self, p: &'a Placed, r: &'a QuestionnaireResponse) -> Result<Vec<Fact>, Issues> {
        let path = p.path.as_str();
        if r.status != "completed" && r.status != "amended" {
            return Ok(vec![]);
        }
        let mut flat = Vec::new();
        flatten(&r.item, &format!("{path}.item"), &mut flat);
        let code_of = |link: &str| link.trim_start_matches('/').to_owned();
        let form = r.questionnaire.as_deref().unwrap_or_default();
        let mentions = |codes: &[&str]| flat.iter().any(|(_, i)| codes.contains(&code_of(&i.link_id).as_str()));
        let (instrument, items_codes): (Instrument, &'static [&'static str]) =
            if form.contains(PHQ9_PANEL) || mentions(&PHQ9_ITEMS) {
                (Instrument::Phq9, &PHQ9_ITEMS)
            } else if form.contains(GAD7_PANEL) || mentions(&GAD7_ITEMS) {
                (Instrument::Gad7, &GAD7_ITEMS)
            } else {
                return Err(vec![Issue::new(
                    IssueType::NotSupported,
                    format!("{path}.questionnaire"),
                    format!(
                        "forlop records the PHQ-9 ({PHQ9_PANEL}) and GAD-7 ({GAD7_PANEL}) forms, with items named \
                         by their LOINC codes"
                    ),
                )]);
            };
        let answers = items_codes
            .iter()
            .map(|code| {
                let (ipath, item) = flat.iter().find(|(_, i)| code_of(&i.link_id) == *code)?;
                let value = item.answer.first().and_then(|a| {
                    a.value_integer
                        .or_else(|| a.value_coding.as_ref().and_then(|c| c.code.as_deref()).and_then(answer_score))
                });
                Some((format!("{ipath}.answer[0]"), value))
            })
            .collect();
        let measured = Measured {
            instrument,
            items_codes,
            answers,
            items_path: format!("{path}.item"),
            subject: r.subject.as_ref(),
            encounter: r.encounter.as_ref(),
            at: r.authored.as_deref(),
            at_path: format!("{path}.authored"),
            phase: None,
        };
        self.outcome(p, measured)
    }
}

/// Items at any depth, with their FHIRPaths.
fn flatten<'r>(items: &'r [QuestionnaireItem], path: &str, out: &mut Vec<(String, &'r QuestionnaireItem)>) {
    for (n, i) in items.iter().enumerate() {
        let here = format!("{path}[{n}]");
        flatten(&i.item, &format!("{here}.item"), out);
        out.push((here, i));
    }
}
