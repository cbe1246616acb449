//! Organization and HealthcareService: the registration of a service the care-level file maps.

use forlop_domain::events::ServiceRegistered;
use forlop_domain::Command;

use super::{Fact, Issues, Placed};
use crate::outcome::{Issue, IssueType};
use crate::resources::Organization;

pub(super) fn registration(p: &Placed, r: &Organization) -> Result<Vec<Fact>, Issues> {
    // An unmapped Organization (a GP's office, say) is not a service: nothing to record.
    let Some(care_level) = p.care_level else { return Ok(vec![]) };
    let name =
        r.name.clone().filter(|n| !n.trim().is_empty()).ok_or_else(|| {
            vec![Issue::new(IssueType::Required, format!("{}.name", p.path), "a service needs a name")]
        })?;
    Ok(vec![Fact::of(
        p.id,
        "registered",
        Command::RegisterService(ServiceRegistered { service_id: p.id, name, care_level }),
    )])
}
