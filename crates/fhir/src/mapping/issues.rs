//! The issues mapping finds more than once: a reference to nothing known, a service outside
//! the care-level mapping.

use forlop_domain::text::quote;

use crate::outcome::{Issue, IssueType};
use crate::resources::Identifier;

/// Every issue a resource has, reported together.
pub type Issues = Vec<Issue>;

/// A reference to something neither in this Bundle nor recorded before (held, in an import).
pub(super) fn never_seen(path: &str, what: &str) -> Issue {
    Issue::new(
        IssueType::NotFound,
        path,
        format!(
            "{} is neither in this Bundle nor recorded before; send it first, or in the same Bundle",
            quote(what).trim_matches('"')
        ),
    )
}

/// A service none of whose identifiers the care-level file maps.
pub(super) fn unmapped(path: &str, identifiers: &[Identifier]) -> Issue {
    let given: Vec<String> = identifiers
        .iter()
        .map(|i| format!("{}|{}", i.system.as_deref().unwrap_or(""), i.value.as_deref().unwrap_or("")))
        .collect();
    Issue::new(
        IssueType::NotFound,
        format!("{path}.identifier"),
        format!(
            "no identifier of this service is in the care-level mapping (--fhir-care-levels); given: {}",
            if given.is_empty() { "none".to_owned() } else { given.join(", ") }
        ),
    )
}
