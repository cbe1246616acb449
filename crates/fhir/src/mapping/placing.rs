//! Placing a resource: every name it goes by, and the forlop id those names give it.

use forlop_domain::national_id::NationalId;
use forlop_domain::CareLevel;
use uuid::Uuid;

use super::issues::{unmapped, Issues};
use super::terminology::NATIONAL_ID_SYSTEMS;
use super::Lookup;
use crate::care_levels::CareLevels;
use crate::identity::{confirmable, identifier_name, may_name_patient_data, uuid_for};
use crate::outcome::{Issue, IssueType};
use crate::resources::Resource;

/// A parsed resource with its forlop id and every name it goes by.
#[derive(Debug, Clone)]
pub struct Placed {
    pub resource: Resource,
    pub id: Uuid,
    /// Names for the alias index and the in-Bundle scope: fullUrl, `Type/id`, identifiers.
    pub names: Vec<String>,
    /// The name in `names` whose name-based UUID is `id`, when placing derived the id from it.
    pub derived_from: Option<usize>,
    /// `Bundle.entry[i].resource` or `line 12`, for messages.
    pub path: String,
    /// The national id a Patient carries (checked), registered encrypted.
    pub national_id: Option<NationalId>,
    /// The care level of a mapped service.
    pub care_level: Option<CareLevel>,
}

/// What a resource's identifiers say about it, before its id is chosen.
struct Named {
    names: Vec<String>,
    /// The index in `names` of its logical id `Type/id`.
    logical: Option<usize>,
    /// An id its identifiers decide outright: a patient's by national id, a mapped service's.
    key: Option<Uuid>,
    national_id: Option<NationalId>,
    care_level: Option<CareLevel>,
}

/// Names a resource and finds its forlop id.
pub fn place(
    resource: Resource,
    full_url: Option<&str>,
    path: String,
    care_levels: &CareLevels,
    lookup: &dyn Lookup,
) -> Result<Placed, Issues> {
    let Named { names, logical, key, national_id, care_level } = name(&resource, full_url, &path, care_levels, lookup)?;
    let (id, derived_from) = match key {
        // A mapped service's id is derived from its `Service|` name, pushed last.
        Some(k) => (k, care_level.map(|_| names.len() - 1)),
        None => chosen_id(&resource, &names, logical, &path, lookup)?,
    };
    Ok(Placed { resource, id, names, derived_from, path, national_id, care_level })
}

/// Every name of `resource`, and the id a national id or a mapped service identifier decides.
fn name(
    resource: &Resource,
    full_url: Option<&str>,
    path: &str,
    care_levels: &CareLevels,
    lookup: &dyn Lookup,
) -> Result<Named, Issues> {
    let t = resource.type_name();
    let mut names = Vec::new();
    if let Some(u) = full_url {
        names.push(u.to_owned());
    }
    let logical = resource.id().map(|id| {
        names.push(format!("{t}/{id}"));
        names.len() - 1
    });
    let mut named = Named { names, logical, key: None, national_id: None, care_level: None };
    for (i, ident) in resource.identifiers().iter().enumerate() {
        let (Some(system), Some(value)) = (ident.system.as_deref(), ident.value.as_deref()) else { continue };
        if matches!(resource, Resource::Patient(_)) && NATIONAL_ID_SYSTEMS.contains(&system) {
            let nid = NationalId::parse(value).map_err(|e| {
                vec![Issue::new(IssueType::Value, format!("{path}.identifier[{i}].value"), format!("{e}"))]
            })?;
            let (id, _) =
                lookup.patient_id(&nid).map_err(|e| vec![Issue::new(IssueType::Forbidden, path.to_owned(), e)])?;
            named.key = Some(id);
            named.national_id = Some(nid);
            // Never an alias: the index would hold the number in clear text.
            continue;
        }
        named.names.push(identifier_name(t, system, value));
    }
    // A resource sent with neither a logical id nor an identifier is named by its fullUrl's
    // UUID, as many systems build transactions of POSTs: that UUID is the sender's own name for
    // it, so a resend of the same Bundle finds the same id and appends nothing.
    if named.logical.is_none() && !named.names.iter().any(|n| n.contains('|')) && named.key.is_none() {
        if let Some(uuid) = full_url.and_then(|u| u.strip_prefix("urn:uuid:")).and_then(|u| Uuid::parse_str(u).ok()) {
            named.names.push(sender_name(t, lookup.sender(), uuid));
        }
    }
    if matches!(resource, Resource::Organization(_) | Resource::HealthcareService(_)) {
        if let Some((ident, level)) = care_levels.find(resource.identifiers()) {
            named.care_level = Some(level);
            let (system, value) = (ident.system.as_deref().unwrap_or(""), ident.value.as_deref().unwrap_or(""));
            named.key = Some(uuid_for(&identifier_name("Service", system, value)));
            // Organization and HealthcareService with the same mapped identifier are one service.
            named.names.push(identifier_name("Service", system, value));
        } else if matches!(resource, Resource::HealthcareService(_)) {
            return Err(vec![unmapped(path, resource.identifiers())]);
        }
    }
    Ok(named)
}

/// The id of a resource its identifiers do not decide, and the name it is derived from: the
/// first identifier, else the logical id; an alias known from before wins, so a resource sent
/// first by logical id and later with identifiers keeps its id. Each derivable name's id is
/// derived once, here.
fn chosen_id(
    resource: &Resource,
    names: &[String],
    logical: Option<usize>,
    path: &str,
    lookup: &dyn Lookup,
) -> Result<(Uuid, Option<usize>), Issues> {
    let first = names.iter().position(|n| n.contains('|')).or(logical);
    let derived: Vec<Option<Uuid>> = names.iter().map(|n| confirmable(n).map(|_| uuid_for(n))).collect();
    let known = names.iter().zip(&derived).find_map(|(n, d)| lookup.alias_derived(n, *d));
    match (known, first) {
        (Some(id), _) => Ok((id, None)),
        (None, Some(i)) => match derived[i].unwrap_or_else(|| uuid_for(&names[i])) {
            // The name derives a forgotten patient's id (or a fact of theirs): it is sent again
            // for someone new, who gets a random id that nothing links to the old one. Its names
            // then go into the alias index under it, so the next request finds the same id.
            old if may_name_patient_data(&names[i]) && lookup.forgotten(old) => Ok((Uuid::new_v4(), None)),
            id => Ok((id, Some(i))),
        },
        (None, None) => Err(vec![Issue::new(
            IssueType::Required,
            path,
            format!(
                "{} needs an id, an identifier (system and value) or a urn:uuid fullUrl to be placed exactly once",
                article(resource.type_name())
            ),
        )]),
    }
}

/// The name a sender's `urn:uuid:` gives a resource of type `t`.
fn sender_name(t: &str, sender: &str, uuid: Uuid) -> String {
    identifier_name(t, &format!("urn:forlop:sender:{sender}"), &uuid.hyphenated().to_string())
}

/// The forlop id of a new patient, from the keyed pseudonym of their national id.
pub fn pseudonym_id(pseudonym: &[u8; 32]) -> Uuid {
    uuid_for(&format!("Patient|national-id|{}", hex(pseudonym)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// "a Patient", "an EpisodeOfCare".
pub fn article(type_name: &str) -> String {
    let an = type_name.starts_with(['A', 'E', 'I', 'O', 'U']);
    format!("{} {type_name}", if an { "an" } else { "a" })
}
