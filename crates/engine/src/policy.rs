//! Who may do what: the one place forlop decides authorisation. Pure functions of the caller's
//! principal and the read model, so the whole role table is tested without I/O, and every
//! adapter (GraphQL today, FHIR next) asks the same questions and gets the same answers.

use forlop_auth::{Principal, Role};
use forlop_domain::Command;
use forlop_projections::{PatientView, ReadModel};
use uuid::Uuid;

/// Shortest reason accepted for emergency access ("akuttilgang").
pub const MIN_EMERGENCY_REASON: usize = 10;

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
    Denied(String),
}

/// How aggregates are disclosed to this caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregates {
    Exact,
    /// Counts from 1 to threshold − 1 are hidden, with complementary suppression.
    Suppressed {
        threshold: u64,
    },
}

fn any(p: &Principal, roles: &[Role]) -> bool {
    roles.iter().any(|r| p.has(*r))
}

/// True when the patient has a referral to or an episode at one of the clinician's services.
pub fn treats(p: &Principal, patient: &PatientView) -> bool {
    patient.referrals.iter().any(|r| p.services.contains(&r.service_id))
        || patient.episodes.iter().any(|e| p.services.contains(&e.service_id))
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

/// What `p` may see of `patient` (None: no such patient is registered).
pub fn patient_access(p: &Principal, patient: Option<&PatientView>, emergency_reason: Option<&str>) -> PatientAccess {
    use Role::*;
    if any(p, &[Admin, Auditor]) {
        return PatientAccess::Full;
    }
    if p.has(Clinician) {
        if patient.is_some_and(|v| treats(p, v)) {
            return PatientAccess::Full;
        }
        return match emergency_reason.map(str::trim) {
            Some(r) if r.chars().count() >= MIN_EMERGENCY_REASON => PatientAccess::Emergency(r.to_owned()),
            Some(_) => PatientAccess::Denied(format!(
                "an emergency access reason must be at least {MIN_EMERGENCY_REASON} characters"
            )),
            // The same answer whether or not the patient exists: no existence oracle.
            None => PatientAccess::Denied("not a patient of your services; give an emergencyReason".into()),
        };
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

/// `patientByNationalId`: clinicians (then only their patients or in an emergency), auditors, admins.
pub fn may_look_up_national_id(p: &Principal) -> bool {
    any(p, &[Role::Clinician, Role::Auditor, Role::Admin])
}

/// True for callers that place facts from record systems by their identifiers (FHIR ingest).
pub fn may_resolve_for_recording(p: &Principal) -> bool {
    any(p, &[Role::Integration, Role::Admin])
}

/// Analysts see suppressed aggregates; every other role allowed to see them sees exact figures.
pub fn aggregates(p: &Principal, threshold: u64) -> Aggregates {
    if any(p, &[Role::Admin, Role::Auditor]) {
        Aggregates::Exact
    } else {
        Aggregates::Suppressed { threshold }
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
            let got = patient_access(&principal(role, services), view, reason);
            let got = match got {
                PatientAccess::Full => "full",
                PatientAccess::IdentityOnly => "identity",
                PatientAccess::Emergency(_) => "emergency",
                PatientAccess::Denied(_) => "denied",
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
        assert!(matches!(patient_access(&principal(Role::Clinician, &[S]), None, None), PatientAccess::Denied(_)));
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
    }
}
