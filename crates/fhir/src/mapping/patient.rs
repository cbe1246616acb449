//! Patient: the registration of a patient, with their national id when they carry one.

use forlop_domain::events::PatientRegistered;
use forlop_domain::text::quote;
use forlop_domain::{Command, Gender};

use super::{Fact, Issues, Placed};
use crate::outcome::{Issue, IssueType};
use crate::resources::Patient;

pub(super) fn registration(p: &Placed, r: &Patient) -> Result<Vec<Fact>, Issues> {
    let path = p.path.as_str();
    let birth_year =
        r.birth_date.as_deref().and_then(|d| d.get(..4)).and_then(|y| y.parse::<i32>().ok()).ok_or_else(|| {
            vec![Issue::new(
                IssueType::Required,
                format!("{path}.birthDate"),
                "a birth date (at least the year) is required",
            )]
        })?;
    let gender = match r.gender.as_deref() {
        Some("female") => Gender::Female,
        Some("male") => Gender::Male,
        Some("other") => Gender::Other,
        Some("unknown") | None => Gender::Unknown,
        Some(other) => {
            return Err(vec![Issue::new(
                IssueType::CodeInvalid,
                format!("{path}.gender"),
                format!("{} is not male, female, other or unknown", quote(other)),
            )])
        }
    };
    let mut f = Fact::of(
        p.id,
        "registered",
        Command::RegisterPatient(PatientRegistered { patient_id: p.id, birth_year, gender, national_id: None }),
    );
    f.national_id = p.national_id.clone();
    Ok(vec![f])
}
