//! A Bundle entry's `request`, as FHIR's RESTful rules give it: `POST Type` creates (or, with
//! `ifNoneExist`, does nothing when a match exists), `PUT Type/id` updates the resource of that
//! logical id. forlop records facts, so both append only what is new; deleting and reading
//! entries are not taken.

use forlop_domain::text::quote;
use uuid::Uuid;

use crate::identity::{confirmable, identifier_name, uuid_for};
use crate::mapping::Lookup;
use crate::outcome::{Issue, IssueType};
use crate::query::{query_params, sole_identifier};
use crate::resources::{EntryRequest, Resource};

/// What to do with an entry once its request is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Requested {
    /// Place and record it.
    Record,
    /// `ifNoneExist` matched this resource: nothing is recorded.
    Exists(Uuid),
}

/// Checks `request` (at `path`, the entry's resource) against `resource`.
pub(super) fn requested(
    request: Option<&EntryRequest>,
    resource: &Resource,
    path: &str,
    lookup: &dyn Lookup,
) -> Result<Requested, Issue> {
    let Some(r) = request else { return Ok(Requested::Record) };
    let at = format!("{}.request", path.strip_suffix(".resource").unwrap_or(path));
    let t = resource.type_name();
    let url = r.url.trim_matches('/');
    match r.method.as_str() {
        "POST" => {
            let (target, _) = url.split_once('?').unwrap_or((url, ""));
            if !target.is_empty() && target != t {
                return Err(Issue::new(
                    IssueType::Value,
                    format!("{at}.url"),
                    format!("POST to {} carries {}", quote(target), crate::mapping::article(t)),
                ));
            }
            match r.if_none_exist.as_deref() {
                Some(query) => if_none_exist(t, query, &format!("{at}.ifNoneExist"), lookup),
                None => Ok(Requested::Record),
            }
        }
        "PUT" => {
            let (target, id) = url.rsplit_once('/').unwrap_or((url, ""));
            let target = target.rsplit('/').next().unwrap_or(target);
            if target != t || id.is_empty() || id.contains('?') {
                return Err(Issue::new(
                    IssueType::NotSupported,
                    format!("{at}.url"),
                    format!("PUT takes {t}/id (conditional updates are not supported); got {}", quote(url)),
                ));
            }
            // FHIR's update: the body's id must be the URL's.
            if resource.id() != Some(id) {
                return Err(Issue::new(
                    IssueType::Value,
                    format!("{path}.id"),
                    format!("PUT {t}/{id} needs the resource's id to be {}", quote(id)),
                ));
            }
            Ok(Requested::Record)
        }
        other => Err(Issue::new(
            IssueType::NotSupported,
            format!("{at}.method"),
            format!(
                "forlop records facts and never deletes or edits them: {} is not taken here (POST or PUT)",
                quote(other)
            ),
        )),
    }
}

/// `ifNoneExist: identifier=system|value`: the resource already recorded under that identifier,
/// if there is one.
fn if_none_exist(t: &str, query: &str, at: &str, lookup: &dyn Lookup) -> Result<Requested, Issue> {
    let params = query_params(query);
    let Some((system, value)) = sole_identifier(&params) else {
        return Err(Issue::new(IssueType::NotSupported, at, "ifNoneExist takes identifier=system|value"));
    };
    if t == "Patient" && crate::mapping::NATIONAL_ID_SYSTEMS.contains(&system) {
        // A patient by national id is recorded once whatever the request says: their id is
        // the number's, and a resend appends nothing.
        return Ok(Requested::Record);
    }
    let name = identifier_name(t, system, value);
    let derived = confirmable(&name).map(|_| uuid_for(&name));
    Ok(match lookup.alias_derived(&name, derived) {
        Some(id) => Requested::Exists(id),
        None => Requested::Record,
    })
}
