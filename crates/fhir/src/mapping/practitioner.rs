//! Practitioner: the registration of a therapist, named, with their HPR number when sent.

use forlop_domain::events::TherapistRegistered;
use forlop_domain::Command;
use uuid::Uuid;

use super::terminology::SYSTEM_HPR;
use super::{Fact, Issues, Placed};
use crate::outcome::{Issue, IssueType};
use crate::resources::{HumanName, Practitioner};

pub(super) fn registration(p: &Placed, r: &Practitioner) -> Result<Vec<Fact>, Issues> {
    let path = p.path.as_str();
    // A therapist without an HPR number (a trainee, a contract therapist the sender has none
    // for) is recorded without one; the number is what links them across record systems.
    let hpr = hpr_number(r);
    let name = r
        .name
        .iter()
        .find_map(HumanName::full)
        .ok_or_else(|| vec![Issue::new(IssueType::Required, format!("{path}.name"), "a therapist needs a name")])?;
    Ok(vec![registered(p.id, name, hpr)])
}

/// A contained Practitioner's registration, when it has both an HPR number and a name: it is
/// a therapist like any other.
pub(super) fn contained_registration(therapist_id: Uuid, r: &Practitioner) -> Option<Fact> {
    let (Some(hpr), Some(name)) = (hpr_number(r), r.name.iter().find_map(HumanName::full)) else { return None };
    Some(registered(therapist_id, name, Some(hpr)))
}

fn hpr_number(r: &Practitioner) -> Option<String> {
    r.identifier.iter().find(|i| i.system.as_deref() == Some(SYSTEM_HPR)).and_then(|i| i.value.clone())
}

fn registered(therapist_id: Uuid, name: String, hpr_number: Option<String>) -> Fact {
    Fact::of(
        therapist_id,
        "registered",
        Command::RegisterTherapist(TherapistRegistered { therapist_id, name, hpr_number }),
    )
}
