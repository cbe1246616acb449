//! Who may do what: the one place forlop decides authorisation. Pure functions of the caller's
//! principal and the read model, so the whole role table is tested without I/O, and every
//! adapter (GraphQL, FHIR) asks the same questions and gets the same answers.

use forlop_auth::{Principal, Role};
use forlop_domain::Command;
use forlop_projections::{PatientView, ReadModel};
use uuid::Uuid;

/// Fewest visible characters (not spaces, not hidden characters) of an emergency access reason
/// ("akuttilgang").
pub const MIN_EMERGENCY_REASON: usize = 10;
/// Most characters of an emergency access reason: it is kept in the access log for good.
pub const MAX_EMERGENCY_REASON: usize = 500;

/// Operations that are not about one patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `services`: names and care levels (public reference data).
    ListServices,
    /// `therapists`: staff names and HPR numbers.
    ListTherapists,
    /// `log`: how far the log and the read model have come.
    LogInfo,
    /// Service overviews (`openEpisodes`, `waitingDays`, `referralOutcomes`) and `pathwayReport`.
    ServiceAnalytics,
    /// `careAlerts` (and `careAlertRaised`) for one service, or all when None.
    CareAlerts(Option<Uuid>),
    /// The whole log: `events` without a patient filter.
    ReadLog,
    /// `accessLog` for any patient.
    ReadAccessLog,
    /// `myAccessLog`: the caller's own record.
    ReadOwnAccessLog,
    /// `verifyLog`.
    VerifyLog,
}

/// How much of a patient a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientAccess {
    /// Everything, as a treating clinician, auditor or admin.
    Full,
    /// Only `id` and `version`: what an integration needs for `expectedVersion`.
    IdentityOnly,
    /// A clinician reading someone else's patient, with a stated reason; logged as EMERGENCY.
    Emergency(String),
    /// A clinician reading a patient through a relationship they recorded themselves, with a
    /// stated reason; logged as SELF_GRANTED and listed for follow-up like emergency access.
    SelfGranted(String),
    Denied(String),
    /// The emergency reason given is not one (too short, too long, hidden characters): refused
    /// as invalid input, and logged as a refusal.
    InvalidReason(String),
}

/// How a clinician is related to a patient, for reading (`Engine` works it out from the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relationship {
    /// A referral or episode at one of their services that someone else recorded or has since
    /// acted on, or that is older than the self-grant period; or the patient has no fact at any
    /// other service, so reading widens nothing.
    Established,
    /// Only referrals or episodes at their services that they recorded themselves, recently and
    /// with nobody else acting on them since, while the patient has facts at other services.
    /// Reading the whole record then needs a reason, as emergency access does.
    SelfRecorded,
    /// No referral or episode at their services.
    None,
}

/// An emergency access reason as it is logged: at least `MIN_EMERGENCY_REASON` visible
/// characters, at most `MAX_EMERGENCY_REASON` in all, and no character that hides text.
pub fn emergency_reason(raw: &str) -> Result<String, String> {
    if raw.chars().count() > MAX_EMERGENCY_REASON {
        return Err(format!("an emergency access reason is at most {MAX_EMERGENCY_REASON} characters"));
    }
    if raw.chars().any(forlop_domain::text::hides_text) {
        return Err("an emergency access reason may not hold control, zero-width or direction characters".into());
    }
    let reason = raw.trim();
    // Visible: letters, digits and punctuation (not spaces, not symbols that may draw nothing).
    let visible = reason.chars().filter(|c| c.is_alphanumeric() || c.is_ascii_punctuation()).count();
    if visible < MIN_EMERGENCY_REASON {
        return Err(format!("an emergency access reason must be at least {MIN_EMERGENCY_REASON} visible characters"));
    }
    Ok(reason.to_owned())
}

/// How aggregates are disclosed to this caller (`disclosure` applies it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregates {
    /// Exact figures, every option (custom age groups, any window, minima and maxima).
    Exact,
    /// The cell key method: counts perturbed, counts from 1 to threshold − 1 hidden, means with
    /// noise, no minima or maxima, standard age groups, windows in whole months.
    Perturbed { threshold: u64 },
}

fn any(p: &Principal, roles: &[Role]) -> bool {
    roles.iter().any(|r| p.has(*r))
}

/// True when the patient has a referral to or an episode at one of the clinician's services.
pub fn treats(p: &Principal, patient: &PatientView) -> bool {
    patient.referrals.iter().any(|r| p.services.contains(&r.service_id))
        || patient.episodes.iter().any(|e| p.services.contains(&e.service_id))
}

/// True when the patient has a referral to, an episode at or an admission to a service that is
/// not one of the clinician's: what a relationship the clinician recorded themselves must not
/// open silently.
pub fn has_facts_elsewhere(p: &Principal, patient: &PatientView) -> bool {
    patient.referrals.iter().any(|r| !p.services.contains(&r.service_id))
        || patient.episodes.iter().any(|e| !p.services.contains(&e.service_id))
        || patient.admissions.iter().any(|a| !p.services.contains(&a.service_id))
}

/// The ids of the patient's referrals, episodes and admissions at the clinician's services.
pub fn own_fact_ids(p: &Principal, patient: &PatientView) -> std::collections::HashSet<Uuid> {
    let own = |s: &Uuid| p.services.contains(s);
    patient
        .referrals
        .iter()
        .filter(|r| own(&r.service_id))
        .map(|r| r.id)
        .chain(patient.episodes.iter().filter(|e| own(&e.service_id)).map(|e| e.id))
        .chain(patient.admissions.iter().filter(|a| own(&a.service_id)).map(|a| a.id))
        .collect()
}

/// True when a fact (as JSON) names, of the patient's recorded referrals, episodes and
/// admissions, only those at the clinician's services, and no other service: what a clinician on
/// a self-recorded relationship may record about. Ids the patient does not hold yet are new facts.
pub fn touches_only_own_services(p: &Principal, patient: &PatientView, fact: &serde_json::Value) -> bool {
    let own = own_fact_ids(p, patient);
    let known: std::collections::HashSet<Uuid> = patient
        .referrals
        .iter()
        .map(|r| r.id)
        .chain(patient.episodes.iter().map(|e| e.id))
        .chain(patient.admissions.iter().map(|a| a.id))
        .collect();
    let mut ok = true;
    walk_ids(fact, &mut |field, id| {
        ok &= match field {
            "service_id" => p.services.contains(&id),
            _ => !known.contains(&id) || own.contains(&id),
        };
    });
    ok
}

/// Calls `f` with every `*_id` field holding a UUID in `fact`, at any depth.
pub(crate) fn walk_ids(fact: &serde_json::Value, f: &mut impl FnMut(&str, Uuid)) {
    match fact {
        serde_json::Value::Object(fields) => {
            for (k, v) in fields {
                if let Some(id) = k.ends_with("_id").then(|| v.as_str().and_then(|s| s.parse::<Uuid>().ok())).flatten()
                {
                    f(k, id);
                }
                walk_ids(v, f);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| walk_ids(v, f)),
        _ => {}
    }
}

pub fn may(p: &Principal, op: Operation) -> bool {
    use Role::*;
    match op {
        Operation::ListServices => any(p, &[Integration, Clinician, Analyst, Auditor, Admin]),
        Operation::ListTherapists | Operation::LogInfo => any(p, &[Integration, Clinician, Auditor, Admin]),
        Operation::ServiceAnalytics => any(p, &[Analyst, Auditor, Admin]),
        Operation::CareAlerts(service) => {
            any(p, &[Auditor, Admin]) || (p.has(Clinician) && service.is_some_and(|s| p.services.contains(&s)))
        }
        Operation::ReadLog => any(p, &[Auditor, Admin]),
        Operation::ReadAccessLog => any(p, &[Auditor, Admin]),
        Operation::ReadOwnAccessLog => p.has(Patient),
        Operation::VerifyLog => any(p, &[Auditor, Admin]),
    }
}

/// What `p` may see of `patient` (None: no such patient is registered), given how a clinician
/// is related to them (`Relationship::None` for other roles).
pub fn patient_access(
    p: &Principal,
    patient: Option<&PatientView>,
    reason_given: Option<&str>,
    relationship: Relationship,
) -> PatientAccess {
    use Role::*;
    if any(p, &[Admin, Auditor]) {
        return PatientAccess::Full;
    }
    if p.has(Clinician) {
        let treats = patient.is_some_and(|v| treats(p, v));
        if treats && relationship != Relationship::SelfRecorded {
            return PatientAccess::Full;
        }
        let reason = match reason_given.map(emergency_reason) {
            Some(Ok(r)) => r,
            Some(Err(why)) => return PatientAccess::InvalidReason(why),
            // The same answer whether or not the patient exists: no existence oracle.
            None if treats => {
                return PatientAccess::Denied(
                    "you recorded this patient's only referral or episode at your service yourself; reading what \
                     other services recorded needs an emergencyReason until a colleague confirms it"
                        .into(),
                )
            }
            None => return PatientAccess::Denied("not a patient of your services; give an emergencyReason".into()),
        };
        return if treats { PatientAccess::SelfGranted(reason) } else { PatientAccess::Emergency(reason) };
    }
    if p.has(Integration) {
        return PatientAccess::IdentityOnly;
    }
    PatientAccess::Denied("your role may not read patients".into())
}

/// Whether `p` may record `command`, judged on the read model (which a caller's own earlier
/// writes have reached: mutations answer only once projected).
pub fn may_record(p: &Principal, command: &Command, model: &ReadModel) -> Result<(), String> {
    use Role::*;
    if any(p, &[Admin, Integration]) {
        return match command {
            Command::ForgetPatient(_) if !p.has(Admin) => Err("only an admin may forget a patient".into()),
            _ => Ok(()),
        };
    }
    if !p.has(Clinician) {
        return Err("your role may not record".into());
    }
    match command {
        Command::RegisterService(_) | Command::RegisterTherapist(_) => {
            Err("only an admin or an integration may register services and therapists".into())
        }
        Command::ForgetPatient(_) => Err("only an admin may forget a patient".into()),
        Command::RegisterPatient(_) => Ok(()),
        Command::ReceiveReferral { event, .. } if p.services.contains(&event.service_id) => Ok(()),
        Command::ReceiveReferral { .. } => Err("a clinician may receive referrals only to their own services".into()),
        other => {
            let patient = other.stream().patient_id().and_then(|id| model.patients.get(&id));
            if patient.is_some_and(|v| treats(p, v)) {
                Ok(())
            } else {
                Err("not a patient of your services".into())
            }
        }
    }
}

/// The roles `may_record` lets record anything at all (every other role is refused every
/// command): an adapter refuses a whole bulk import from any other before reading its body.
pub fn may_record_anything(p: &Principal) -> bool {
    any(p, &[Role::Admin, Role::Integration, Role::Clinician])
}

/// `patientByNationalId`: clinicians (then only their patients or in an emergency), auditors, admins.
pub fn may_look_up_national_id(p: &Principal) -> bool {
    any(p, &[Role::Clinician, Role::Auditor, Role::Admin])
}

/// True for callers that place facts from record systems by their identifiers (FHIR ingest).
pub fn may_resolve_for_recording(p: &Principal) -> bool {
    any(p, &[Role::Integration, Role::Admin])
}

/// Analysts see perturbed aggregates; auditors and admins, who may read every record anyway, see
/// exact figures.
pub fn aggregates(p: &Principal, threshold: u64) -> Aggregates {
    if any(p, &[Role::Admin, Role::Auditor]) {
        Aggregates::Exact
    } else {
        Aggregates::Perturbed { threshold }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forlop_domain::events as ev;

    fn principal(role: Role, services: &[Uuid]) -> Principal {
        Principal {
            sub: "t".into(),
            name: None,
            roles: vec![role],
            services: services.to_vec(),
            national_id: None,
            hpr_number: None,
        }
    }

    const S: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);

    #[test]
    fn operations_follow_the_role_table() {
        use Operation::*;
        use Role::*;
        // (operation, roles allowed)
        let table: &[(Operation, &[Role])] = &[
            (ListServices, &[Integration, Clinician, Analyst, Auditor, Admin]),
            (ServiceAnalytics, &[Analyst, Auditor, Admin]),
            (CareAlerts(Some(S)), &[Clinician, Auditor, Admin]),
            (CareAlerts(None), &[Auditor, Admin]),
            (CareAlerts(Some(OTHER)), &[Auditor, Admin]),
            (ReadLog, &[Auditor, Admin]),
            (ReadAccessLog, &[Auditor, Admin]),
            (ReadOwnAccessLog, &[Patient]),
            (VerifyLog, &[Auditor, Admin]),
        ];
        for (op, allowed) in table {
            for role in Role::ALL {
                let p = principal(role, &[S]);
                assert_eq!(may(&p, *op), allowed.contains(&role), "{role} {op:?}");
            }
        }
    }

    #[test]
    fn patient_reads() {
        let mut model = ReadModel::default();
        let patient = Uuid::from_u128(9);
        let meta =
            |position| forlop_projections::EventMeta { position, stream_version: position, patient_id: Some(patient) };
        model.apply(
            meta(0),
            &ev::PatientRegistered {
                patient_id: patient,
                birth_year: 1990,
                gender: forlop_domain::Gender::Female,
                national_id: None,
            }
            .into(),
        );
        model.apply(
            meta(1),
            &ev::ReferralReceived {
                referral_id: Uuid::from_u128(10),
                service_id: S,
                source: forlop_domain::ReferralSource::SelfReferral,
                received_at: chrono::Utc::now(),
            }
            .into(),
        );
        let view = model.patients.get(&patient).map(|v| &**v);
        let check = |role, services: &[Uuid], reason: Option<&str>, expect: &str| {
            let p = principal(role, services);
            let rel = if view.is_some_and(|v| treats(&p, v)) { Relationship::Established } else { Relationship::None };
            let got = patient_access(&p, view, reason, rel);
            let got = match got {
                PatientAccess::Full => "full",
                PatientAccess::IdentityOnly => "identity",
                PatientAccess::Emergency(_) => "emergency",
                PatientAccess::SelfGranted(_) => "self-granted",
                PatientAccess::Denied(_) | PatientAccess::InvalidReason(_) => "denied",
            };
            assert_eq!(got, expect, "{role} {services:?} {reason:?}");
        };
        check(Role::Clinician, &[S], None, "full");
        check(Role::Clinician, &[OTHER], None, "denied");
        check(Role::Clinician, &[OTHER], Some("too short"), "denied");
        check(Role::Clinician, &[OTHER], Some("acute admission at night"), "emergency");
        check(Role::Auditor, &[], None, "full");
        check(Role::Admin, &[], None, "full");
        check(Role::Integration, &[], None, "identity");
        check(Role::Analyst, &[], None, "denied");
        check(Role::Patient, &[], None, "denied");
        // A clinician asking for a patient who does not exist is told the same as for one not theirs.
        assert!(matches!(
            patient_access(&principal(Role::Clinician, &[S]), None, None, Relationship::None),
            PatientAccess::Denied(_)
        ));
        // A relationship the clinician recorded themselves opens the record only with a reason.
        let own = principal(Role::Clinician, &[S]);
        assert!(matches!(patient_access(&own, view, None, Relationship::SelfRecorded), PatientAccess::Denied(_)));
        assert!(matches!(
            patient_access(&own, view, Some("henvist i dag, trenger journal"), Relationship::SelfRecorded),
            PatientAccess::SelfGranted(_)
        ));
    }

    #[test]
    fn emergency_reasons_are_visible_text_of_a_bounded_length() {
        assert!(emergency_reason("bevisstløs pasient i akuttmottak").is_ok());
        assert_eq!(emergency_reason("  akutt innlagt natt  ").unwrap(), "akutt innlagt natt");
        for bad in [
            "\u{200b}".repeat(10),
            "\0".repeat(10),
            " ".repeat(20),
            "a b c d e f g h i".to_owned(), // nine visible
            "x".repeat(MAX_EMERGENCY_REASON + 1),
            format!("akutt innlagt{}", '\u{202e}'),
            "\u{3164}".repeat(12),  // Hangul filler
            "\u{2800}".repeat(12),  // Braille blank
            "\u{fe0f}".repeat(12),  // variation selector
            "\u{e0041}".repeat(12), // tag characters, hidden ASCII
        ] {
            assert!(emergency_reason(&bad).is_err(), "{bad:?}");
        }
        assert!(emergency_reason(&"x".repeat(MAX_EMERGENCY_REASON)).is_ok());
    }

    #[test]
    fn recording() {
        let model = ReadModel::default();
        let register = Command::RegisterService(ev::ServiceRegistered {
            service_id: S,
            name: "x".into(),
            care_level: forlop_domain::CareLevel::Municipal,
        });
        let referral = |service| Command::ReceiveReferral {
            patient_id: Uuid::from_u128(9),
            event: ev::ReferralReceived {
                referral_id: Uuid::from_u128(10),
                service_id: service,
                source: forlop_domain::ReferralSource::SelfReferral,
                received_at: chrono::Utc::now(),
            },
        };
        let forget = Command::ForgetPatient(ev::PatientForgotten { patient_id: Uuid::from_u128(9) });
        let ok = |role, c: &Command| may_record(&principal(role, &[S]), c, &model).is_ok();
        assert!(ok(Role::Admin, &register) && ok(Role::Integration, &register));
        assert!(!ok(Role::Clinician, &register) && !ok(Role::Auditor, &register) && !ok(Role::Analyst, &register));
        assert!(ok(Role::Clinician, &referral(S)) && !ok(Role::Clinician, &referral(OTHER)));
        assert!(ok(Role::Admin, &forget) && !ok(Role::Integration, &forget) && !ok(Role::Clinician, &forget));
        assert!(!ok(Role::Patient, &referral(S)));
        // A bulk import is refused up front exactly for the roles refused every command.
        let register = Command::RegisterPatient(ev::PatientRegistered {
            patient_id: Uuid::from_u128(9),
            birth_year: 1990,
            gender: forlop_domain::Gender::Female,
            national_id: None,
        });
        for role in Role::ALL {
            assert_eq!(may_record_anything(&principal(role, &[S])), ok(role, &register), "{role}");
        }
    }
}
