//! ServiceRequest: a referral received, and rejected when it is revoked.

use forlop_domain::events::{ReferralDecided, ReferralReceived};
use forlop_domain::text::quote;
use forlop_domain::{Command, ReferralDecision, ReferralSource, RejectionReason};
use uuid::Uuid;

use super::resolving::{ResourceRef, Target};
use super::terminology::GP_CODES;
use super::{time, Fact, Issues, Mapper, Placed};
use crate::outcome::{Issue, IssueType};
use crate::resources::{CodeableConcept, Reference, Resource, ServiceRequest};

impl<'a> Mapper<'a> {
    pub(super) fn referral(&self, p: &'a Placed, r: &'a ServiceRequest) -> Result<Vec<Fact>, Issues> {
        let path = p.path.as_str();
        if matches!(r.status.as_str(), "draft" | "entered-in-error" | "unknown") {
            return Ok(vec![]);
        }
        if !matches!(r.status.as_str(), "active" | "on-hold" | "completed" | "revoked") {
            return Err(vec![Issue::new(
                IssueType::CodeInvalid,
                format!("{path}.status"),
                format!("{} is not a ServiceRequest status", quote(&r.status)),
            )]);
        }
        let mut issues = Vec::new();
        let patient =
            self.patient(r.subject.as_ref(), &format!("{path}.subject"), p, &[]).map_err(|i| issues.push(i)).ok();
        let service =
            self.service(r.performer.first(), &format!("{path}.performer[0]"), p, &[]).map_err(|i| issues.push(i)).ok();
        let at = time(r.authored_on.as_deref(), &format!("{path}.authoredOn")).map_err(|i| issues.push(i)).ok();
        let source = match &r.requester {
            None => Some(ReferralSource::Other),
            Some(req) => self.source(req, &format!("{path}.requester"), p).map_err(|i| issues.push(i)).ok(),
        };
        let (Some(patient_id), Some(service_id), Some(received_at), Some(source), true) =
            (patient, service, at, source, issues.is_empty())
        else {
            return Err(issues);
        };
        let mut facts = vec![Fact::of(
            p.id,
            "received",
            Command::ReceiveReferral {
                patient_id,
                event: ReferralReceived { referral_id: p.id, service_id, source, received_at },
            },
        )];
        if r.status == "revoked" {
            let reason = if r.reason_code.iter().any(says_capacity) {
                RejectionReason::Capacity
            } else {
                RejectionReason::Other
            };
            facts.push(Fact::of(
                p.id,
                "decided",
                Command::DecideReferral {
                    patient_id,
                    event: ReferralDecided {
                        referral_id: p.id,
                        decision: ReferralDecision::Rejected,
                        reason: Some(reason),
                        decided_at: received_at,
                    },
                },
            ));
        }
        Ok(facts)
    }

    /// Who referred, by the requester's type.
    fn source(&self, r: &Reference, path: &str, host: &'a Placed) -> Result<ReferralSource, Issue> {
        let kinds = ["Patient", "RelatedPerson", "Practitioner", "PractitionerRole", "Organization"];
        // The requester need not be known to forlop: its type is what counts.
        let t = match self.resolve(r, path, &kinds, &[], host) {
            Ok(t) => t,
            Err(e) => match r.type_.as_deref() {
                Some(t) if kinds.contains(&t) => Target { type_name: t.to_owned(), id: Uuid::nil(), resource: None },
                _ => return Err(e),
            },
        };
        Ok(match t.type_name.as_str() {
            "Patient" => ReferralSource::SelfReferral,
            "RelatedPerson" => ReferralSource::Relative,
            "PractitionerRole" => {
                let gp = matches!(t.resource, Some(ResourceRef::Top(Placed { resource: Resource::PractitionerRole(role), .. }))
                    if role.code.iter().any(|c| c.codes().any(|code| GP_CODES.contains(&code))));
                if gp {
                    ReferralSource::Gp
                } else {
                    ReferralSource::HealthPersonnel
                }
            }
            "Practitioner" => ReferralSource::HealthPersonnel,
            _ => ReferralSource::Other,
        })
    }
}

/// A revocation reason that says the service lacked capacity (in English or Norwegian).
fn says_capacity(c: &CodeableConcept) -> bool {
    c.text
        .iter()
        .chain(c.coding.iter().filter_map(|c| c.display.as_ref()))
        .chain(c.coding.iter().filter_map(|c| c.code.as_ref()))
        .any(|t| {
            let t = t.to_lowercase();
            t.contains("capacity") || t.contains("kapasitet")
        })
}
