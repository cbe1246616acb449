//! FHIR's dateTime and date, as the instants the domain records.

use chrono::{DateTime, NaiveDate, Utc};
use forlop_domain::text::quote;

use crate::outcome::{Issue, IssueType};

/// A FHIR dateTime (or date) as a UTC instant. A date alone is taken as midnight UTC; a
/// dateTime must carry its offset, as R4 requires when a time is given.
pub fn time(text: Option<&str>, path: &str) -> Result<DateTime<Utc>, Issue> {
    let text = text.ok_or_else(|| Issue::new(IssueType::Required, path, "a date and time is required"))?;
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    Err(Issue::new(
        IssueType::Value,
        path,
        format!("{} is not a FHIR dateTime with an offset, nor a date", quote(text)),
    ))
}
