//! Resolving references: to a resource in this Bundle, a contained one, or one recorded
//! before (by the alias index, a national id, or forlop's own id).

use forlop_domain::national_id::NationalId;
use forlop_domain::text::quote;
use uuid::Uuid;

use super::issues::{never_seen, unmapped};
use super::placing::Placed;
use super::terminology::NATIONAL_ID_SYSTEMS;
use super::Mapper;
use crate::identity::{identifier_name, uuid_for};
use crate::outcome::{Issue, IssueType};
use crate::query::{query_params, sole_identifier};
use crate::resources::{Contained, Identifier, Reference, Resource};

/// What a reference points at.
#[derive(Debug, Clone)]
pub(super) struct Target<'a> {
    pub type_name: String,
    pub id: Uuid,
    /// The resource itself, when it is in this Bundle or contained.
    pub resource: Option<ResourceRef<'a>>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum ResourceRef<'a> {
    Top(&'a Placed),
    Contained(&'a Contained),
}

/// A reference to a type other than the element takes.
fn wrong_type(path: &str, expected: &[&str], found: &str) -> Issue {
    Issue::new(
        IssueType::Value,
        path,
        format!("refers to {}, expected {}", super::placing::article(found), expected.join(" or ")),
    )
}

impl<'a> Mapper<'a> {
    /// What `r`, at `path` in `host`, refers to; it must be of an `expected` type.
    pub(super) fn resolve(
        &self,
        r: &Reference,
        path: &str,
        expected: &[&str],
        contained: &'a [Contained],
        host: &Placed,
    ) -> Result<Target<'a>, Issue> {
        if let Some(text) = r.reference.as_deref() {
            if let Some(local) = text.strip_prefix('#') {
                return self.resolve_contained(local, path, expected, contained, host);
            }
            return self.resolve_literal(text, path, expected);
        }
        if let Some(ident) = &r.identifier {
            return self.resolve_identifier(ident, r.type_.as_deref(), path, expected);
        }
        Err(Issue::new(IssueType::Required, path, "a reference needs `reference` or `identifier`"))
    }

    /// `#local`: a resource contained in the host.
    fn resolve_contained(
        &self,
        local: &str,
        path: &str,
        expected: &[&str],
        contained: &'a [Contained],
        host: &Placed,
    ) -> Result<Target<'a>, Issue> {
        let c = contained.iter().find(|c| c.id() == Some(local)).ok_or_else(|| {
            Issue::new(IssueType::NotFound, format!("{path}.reference"), format!("no contained resource #{local}"))
        })?;
        let t = contained_type(c);
        if !expected.contains(&t) {
            return Err(wrong_type(path, expected, t));
        }
        let id = self.contained_id(c, host, local, path)?;
        Ok(Target { type_name: t.to_owned(), id, resource: Some(ResourceRef::Contained(c)) })
    }

    /// A fullUrl in this Bundle, or a relative or absolute URL whose last two segments are
    /// `Type/id`.
    fn resolve_literal(&self, text: &str, path: &str, expected: &[&str]) -> Result<Target<'a>, Issue> {
        if let Some(p) = self.scope.get(text) {
            return top(p, path, expected);
        }
        if let Some((t, query)) = text.split_once('?') {
            return self.resolve_conditional(t, query, path, expected);
        }
        let segs: Vec<&str> = text.trim_end_matches('/').rsplitn(3, '/').collect();
        if text.starts_with("urn:") || segs.len() < 2 {
            return Err(Issue::new(
                IssueType::NotFound,
                format!("{path}.reference"),
                format!("{} is not in this Bundle", quote(text)),
            ));
        }
        let (t, id) = (segs[1], segs[0]);
        if !expected.contains(&t) {
            return Err(wrong_type(path, expected, t));
        }
        let name = format!("{t}/{id}");
        if let Some(p) = self.scope.get(&name) {
            return top(p, path, expected);
        }
        if let Some(known) = self.lookup.alias(&name) {
            return Ok(Target { type_name: t.to_owned(), id: known, resource: None });
        }
        // forlop's own id, as its export names resources.
        if let Ok(own) = id.parse::<Uuid>() {
            if self.lookup.known(t, own) {
                return Ok(Target { type_name: t.to_owned(), id: own, resource: None });
            }
        }
        Err(never_seen(&format!("{path}.reference"), &name))
    }

    /// A conditional reference, `Type?identifier=system|value`: resolved as FHIR says, to the
    /// one resource with that identifier (in this Bundle or recorded before), or refused.
    fn resolve_conditional(&self, t: &str, query: &str, path: &str, expected: &[&str]) -> Result<Target<'a>, Issue> {
        let at = format!("{path}.reference");
        let params = query_params(query);
        let Some((system, value)) = sole_identifier(&params) else {
            return Err(Issue::new(
                IssueType::NotSupported,
                at,
                format!("a conditional reference takes one parameter, identifier=system|value; got {}", keys(&params)),
            ));
        };
        let token = format!("{system}|{value}");
        let ident = Identifier { system: Some(system.to_owned()), value: Some(value.to_owned()) };
        self.resolve_identifier(&ident, Some(t), path, expected).map_err(|mut issue| {
            if issue.code == IssueType::NotFound {
                issue.path = at.clone();
                // Never the number itself in a message.
                let named =
                    if NATIONAL_ID_SYSTEMS.contains(&system) { "this national id".to_owned() } else { quote(&token) };
                issue.message =
                    format!("no {t} has the identifier {named} (a conditional reference needs exactly one)");
            }
            issue
        })
    }

    /// A logical reference: by identifier (a patient's national id among them).
    fn resolve_identifier(
        &self,
        ident: &Identifier,
        type_: Option<&str>,
        path: &str,
        expected: &[&str],
    ) -> Result<Target<'a>, Issue> {
        let (Some(system), Some(value)) = (ident.system.as_deref(), ident.value.as_deref()) else {
            return Err(Issue::new(IssueType::Required, format!("{path}.identifier"), "needs a system and a value"));
        };
        let t = match (type_, expected) {
            (Some(t), _) => t,
            (None, [only]) => only,
            (None, _) => {
                return Err(Issue::new(
                    IssueType::Required,
                    format!("{path}.type"),
                    "a reference by identifier needs a type",
                ))
            }
        };
        if !expected.contains(&t) {
            return Err(wrong_type(path, expected, t));
        }
        if t == "Patient" && NATIONAL_ID_SYSTEMS.contains(&system) {
            return self.resolve_national_id(value, path);
        }
        let mut names = vec![identifier_name(t, system, value)];
        if matches!(t, "Organization" | "HealthcareService") {
            names.insert(0, identifier_name("Service", system, value));
        }
        for n in &names {
            if let Some(p) = self.scope.get(n) {
                return top(p, path, expected);
            }
        }
        match names.iter().find_map(|n| self.lookup.alias(n)) {
            Some(id) => Ok(Target { type_name: t.to_owned(), id, resource: None }),
            None => Err(never_seen(&format!("{path}.identifier"), &format!("{t} {system}|{value}"))),
        }
    }

    /// A patient by national id: registered, or placed in this Bundle.
    fn resolve_national_id(&self, value: &str, path: &str) -> Result<Target<'a>, Issue> {
        let nid = NationalId::parse(value)
            .map_err(|e| Issue::new(IssueType::Value, format!("{path}.identifier.value"), e.to_string()))?;
        let (id, registered) = self.lookup.patient_id(&nid).map_err(|e| Issue::new(IssueType::Forbidden, path, e))?;
        let in_scope = self.scope.with_id(id).next();
        if !registered && in_scope.is_none() {
            // Never the number itself in a message.
            return Err(never_seen(&format!("{path}.identifier"), "the patient with this national id"));
        }
        Ok(Target { type_name: "Patient".to_owned(), id, resource: in_scope.map(ResourceRef::Top) })
    }

    /// A contained resource is named by its identifiers when it has them (a Practitioner by its
    /// HPR number is the same therapist wherever it is contained), else within its host.
    pub(super) fn contained_id(&self, c: &Contained, host: &Placed, local: &str, path: &str) -> Result<Uuid, Issue> {
        let t = contained_type(c);
        let idents: &[Identifier] = match c {
            Contained::Practitioner(p) => &p.identifier,
            Contained::PractitionerRole(p) => &p.identifier,
            Contained::Organization(o) | Contained::HealthcareService(o) => &o.identifier,
            Contained::Patient(p) => &p.identifier,
            _ => &[],
        };
        if matches!(c, Contained::Organization(_) | Contained::HealthcareService(_)) {
            return match self.care_levels.find(idents) {
                Some((i, _)) => Ok(uuid_for(&identifier_name(
                    "Service",
                    i.system.as_deref().unwrap_or(""),
                    i.value.as_deref().unwrap_or(""),
                ))),
                None => Err(unmapped(path, idents)),
            };
        }
        let first = idents.iter().find_map(|i| Some(identifier_name(t, i.system.as_deref()?, i.value.as_deref()?)));
        Ok(match first {
            Some(name) => self.lookup.alias(&name).unwrap_or_else(|| uuid_for(&name)),
            None => uuid_for(&format!("{}#{local}", host.id)),
        })
    }

    /// A service reference: the Organization or HealthcareService must be in the care-level map.
    pub(super) fn service(
        &self,
        r: Option<&Reference>,
        path: &str,
        host: &'a Placed,
        contained: &'a [Contained],
    ) -> Result<Uuid, Issue> {
        let r = r.ok_or_else(|| Issue::new(IssueType::Required, path, "the service is required"))?;
        let t = self.resolve(r, path, &["Organization", "HealthcareService"], contained, host)?;
        if let Some(ResourceRef::Top(p)) = t.resource {
            if p.care_level.is_none() {
                return Err(unmapped(&p.path, p.resource.identifiers()));
            }
        }
        Ok(t.id)
    }

    /// A therapist reference: a Practitioner, or a PractitionerRole's practitioner.
    pub(super) fn therapist(
        &self,
        r: &Reference,
        path: &str,
        host: &'a Placed,
        contained: &'a [Contained],
    ) -> Result<Uuid, Issue> {
        let t = self.resolve(r, path, &["Practitioner", "PractitionerRole"], contained, host)?;
        if t.type_name != "PractitionerRole" {
            return Ok(t.id);
        }
        let role = match t.resource {
            Some(ResourceRef::Top(Placed { resource: Resource::PractitionerRole(role), .. })) => role,
            Some(ResourceRef::Contained(Contained::PractitionerRole(role))) => role,
            _ => {
                return Err(Issue::new(
                    IssueType::NotFound,
                    path,
                    "a PractitionerRole must be in the Bundle or contained, to find its practitioner",
                ))
            }
        };
        let practitioner_path = format!("{path} (PractitionerRole.practitioner)");
        let p = role
            .practitioner
            .as_ref()
            .ok_or_else(|| Issue::new(IssueType::Required, practitioner_path.clone(), "missing"))?;
        Ok(self.resolve(p, &practitioner_path, &["Practitioner"], contained, host)?.id)
    }

    /// A patient reference, required.
    pub(super) fn patient(
        &self,
        r: Option<&Reference>,
        path: &str,
        host: &'a Placed,
        contained: &'a [Contained],
    ) -> Result<Uuid, Issue> {
        let r = r.ok_or_else(|| Issue::new(IssueType::Required, path, "the patient is required"))?;
        Ok(self.resolve(r, path, &["Patient"], contained, host)?.id)
    }
}

/// A resource in this Bundle, if it is of an expected type.
fn top<'a>(p: &'a Placed, path: &str, expected: &[&str]) -> Result<Target<'a>, Issue> {
    let t = p.resource.type_name();
    if !expected.contains(&t) {
        return Err(wrong_type(path, expected, t));
    }
    Ok(Target { type_name: t.to_owned(), id: p.id, resource: Some(ResourceRef::Top(p)) })
}

fn contained_type(c: &Contained) -> &'static str {
    match c {
        Contained::Practitioner(_) => "Practitioner",
        Contained::PractitionerRole(_) => "PractitionerRole",
        Contained::Organization(_) => "Organization",
        Contained::HealthcareService(_) => "HealthcareService",
        Contained::CareTeam(_) => "CareTeam",
        Contained::Patient(_) => "Patient",
        Contained::Other => "resource",
    }
}

/// The parameters' names, quoted: never their values, which may hold a national id.
fn keys(params: &[(String, String)]) -> String {
    let names: Vec<String> = params.iter().map(|(k, _)| quote(k)).collect();
    if names.is_empty() {
        "no parameter".to_owned()
    } else {
        names.join(", ")
    }
}
