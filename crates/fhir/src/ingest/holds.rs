//! Resources that wait for what they refer to: kept (national ids replaced by patient ids),
//! placed again after every ingest that recorded something, dropped when their patient is
//! forgotten, and listed once past the hold time.

use std::collections::BTreeMap;

use chrono::Utc;
use forlop_domain::national_id::NationalId;
use forlop_engine::{Caller, EngineError};
use uuid::Uuid;

use super::lookup::blocking;
use super::outcomes::waits;
use super::parsing::{parse_resource, RawEntry};
use super::Fhir;
use crate::held::{past, HeldEntry, HeldIssue, Sender};
use crate::identity::uuid_for;
use crate::mapping::NATIONAL_ID_SYSTEMS;
use crate::outcome::{Issue, IssueType};
use crate::resources::{Contained, Reference, Resource};

impl Fhir {
    /// Keeps a resource that waits for a reference, with national ids replaced by patient ids.
    pub(super) fn hold_resource(
        &self,
        caller: &Caller,
        resource: Resource,
        full_url: Option<String>,
        issues: &[Issue],
    ) -> Result<(), Issue> {
        let resource_type = resource.type_name().to_owned();
        let resource_id = resource.id().map(str::to_owned);
        let resource = self.scrubbed(caller, resource)?;
        let patient = self.subject_of(&resource);
        let entry = HeldEntry {
            received_at: Utc::now(),
            sender: Sender::of(&caller.principal),
            resource_type,
            resource_id,
            resource: serde_json::to_string(&resource).unwrap_or_default(),
            full_url,
            issues: issues.iter().map(HeldIssue::from).collect(),
            failed: false,
            patient,
        };
        self.held.insert(&entry).map_err(|e| {
            Issue::new(IssueType::Transient, "", format!("UNAVAILABLE: the held resource could not be kept: {e}"))
        })?;
        self.held.measure(self.hold);
        Ok(())
    }

    /// The patient a (scrubbed) held resource is about, as its subject names them now.
    fn subject_of(&self, resource: &Resource) -> Option<Uuid> {
        let subject = match resource {
            Resource::ServiceRequest(x) => x.subject.as_ref(),
            Resource::EpisodeOfCare(x) => x.patient.as_ref(),
            Resource::Encounter(x) => x.subject.as_ref(),
            Resource::Observation(x) => x.subject.as_ref(),
            Resource::QuestionnaireResponse(x) => x.subject.as_ref(),
            _ => None,
        }?;
        let text = subject.reference.as_deref()?;
        let id = text.trim_end_matches('/').rsplit('/').next()?;
        let name = format!("Patient/{id}");
        if let Some(found) = self.aliases.get(&name).ok().flatten() {
            return Some(found);
        }
        Some(id.parse::<Uuid>().unwrap_or_else(|_| uuid_for(&name)))
    }

    /// Drops every held resource about a forgotten patient: what waited for a reference is part
    /// of what the patient asked to have erased, and placed later it would be a pre-erasure fact
    /// on whoever now goes by the names it uses.
    fn drop_forgotten_held(&self) {
        for (key, e) in self.held.all() {
            let patient = e.patient.or_else(|| {
                let resource = parse_resource(&e.resource, "").ok()?;
                self.subject_of(&resource)
            });
            if patient.is_some_and(|p| self.forgotten(p)) {
                if let Err(err) = self.held.remove(key) {
                    tracing::error!(error = %err, "a held resource of a forgotten patient could not be dropped");
                }
            }
        }
    }

    /// `resource` with every reference to a patient by national id turned into one by forlop id,
    /// so that what is kept holds no national id.
    fn scrubbed(&self, caller: &Caller, mut resource: Resource) -> Result<Resource, Issue> {
        let fix = |r: &mut Option<Reference>| -> Result<(), Issue> {
            let Some(reference) = r else { return Ok(()) };
            let Some(ident) = &reference.identifier else { return Ok(()) };
            let (Some(system), Some(value)) = (ident.system.as_deref(), ident.value.as_deref()) else { return Ok(()) };
            if !NATIONAL_ID_SYSTEMS.contains(&system) {
                return Ok(());
            }
            let nid = NationalId::parse(value).map_err(|e| Issue::new(IssueType::Value, "", e.to_string()))?;
            let (id, registered) = blocking(self.patient_id(caller, &nid)).map_err(|e| Issue::refused("", &e))?;
            if registered {
                self.log_resolved(caller, vec![id]).map_err(|e| Issue::refused("", &e))?;
            }
            *r = Some(Reference { reference: Some(format!("Patient/{id}")), ..Default::default() });
            Ok(())
        };
        match &mut resource {
            Resource::ServiceRequest(x) => {
                fix(&mut x.subject)?;
                fix(&mut x.requester)?;
            }
            Resource::EpisodeOfCare(x) => {
                fix(&mut x.patient)?;
                x.contained.retain(|c| !matches!(c, Contained::Patient(_)));
            }
            Resource::Encounter(x) => fix(&mut x.subject)?,
            Resource::Observation(x) => fix(&mut x.subject)?,
            Resource::Patient(_) => {
                return Err(Issue::new(IssueType::NotSupported, "", "a Patient is never held: it refers to nothing"));
            }
            _ => {}
        }
        Ok(resource)
    }

    /// Places held resources again, in their senders' names, until a round places nothing.
    /// Called after every ingest that recorded something.
    pub async fn retry_held(&self) {
        self.drop_forgotten_held();
        loop {
            let waiting: Vec<(u64, HeldEntry)> = self.held.all().into_iter().filter(|(_, e)| !e.failed).collect();
            if waiting.is_empty() {
                break;
            }
            let mut by_sender: BTreeMap<String, Vec<(u64, HeldEntry)>> = BTreeMap::new();
            for (k, e) in waiting {
                by_sender.entry(serde_json::to_string(&e.sender).unwrap_or_default()).or_default().push((k, e));
            }
            let mut progress = false;
            for (_, group) in by_sender {
                match self.retry_group(group).await {
                    Ok(placed) => progress |= placed,
                    Err(e) => {
                        tracing::error!(error = %e, "held resources could not be updated");
                        return;
                    }
                }
            }
            self.held.measure(self.hold);
            if !progress {
                break;
            }
        }
    }

    /// One sender's held resources placed again; true when any of them recorded something.
    async fn retry_group(&self, group: Vec<(u64, HeldEntry)>) -> Result<bool, sled::Error> {
        let caller = Caller::server(group[0].1.sender.principal(), "fhir.held");
        let entries: Vec<RawEntry> = group
            .iter()
            .map(|(k, e)| RawEntry {
                path: format!("held {k}"),
                full_url: e.full_url.clone(),
                json: e.resource.clone(),
                // Its request was honoured when it arrived; now it waits only to be placed.
                request: None,
            })
            .collect();
        let outcomes = self.ingest(&caller, &entries, false, false).await;
        let mut progress = false;
        for ((key, mut entry), o) in group.into_iter().zip(outcomes) {
            if o.ok() {
                progress = true;
                self.held.remove(key)?;
            } else if o.appended == 0 && waits(&o.issues) {
                continue;
            } else {
                // It can never be placed as it is: kept, and reported, not dropped.
                progress |= o.appended > 0;
                entry.failed = true;
                entry.issues = o.issues.iter().map(HeldIssue::from).collect();
                self.held.update(key, &entry)?;
            }
        }
        Ok(progress)
    }

    /// Held resources past the hold time, and those that can never be placed, for the caller
    /// that sent them (admins see all). Lists what waits and why; no resource content.
    pub fn unresolved(&self, caller: &Caller) -> Result<Vec<(u64, HeldEntry)>, EngineError> {
        if !forlop_engine::policy::may_resolve_for_recording(&caller.principal) {
            return Err(EngineError::forbidden("your role may not see resources held for recording"));
        }
        let admin = caller.principal.has(forlop_engine::Role::Admin);
        let now = Utc::now();
        self.drop_forgotten_held();
        self.held.measure(self.hold);
        Ok(self
            .held
            .all()
            .into_iter()
            .filter(|(_, e)| e.failed || past(e, self.hold, now))
            .filter(|(_, e)| admin || e.sender.sub == caller.principal.sub)
            .collect())
    }
}
