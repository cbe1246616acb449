//! Whether a caller may record a command, and whether a refusal or a retry may quote a stream's
//! facts to them. The rules are `policy`'s; this applies them to the relationship a caller's
//! access rests on, and access-logs a refused attempt on a patient.

use forlop_domain::{Command, StreamRef};

use crate::access::Caller;
use crate::error::EngineError;
use crate::{policy, Engine};

impl Engine {
    /// Whether the caller may read the facts of `stream` (a patient's: as `policy` decides for a
    /// read without a reason, on the relationship the read would rest on; any other stream's
    /// facts are reference data).
    pub(crate) async fn may_read_facts(&self, caller: &Caller, stream: &str) -> Result<bool, EngineError> {
        let Some(patient) = StreamRef::parse(stream).and_then(|s| s.patient_id()) else { return Ok(true) };
        let view = self.model().patients.get(&patient).cloned();
        let related = self.relationship(caller, view.as_ref()).await?;
        Ok(matches!(
            policy::patient_access(&caller.principal, view.as_deref(), None, related),
            policy::PatientAccess::Full
        ))
    }

    /// Refuses a recording the caller may not make, logging the attempt if it names a patient.
    pub(crate) async fn authorize_record(&self, caller: &Caller, command: &Command) -> Result<(), EngineError> {
        let mut verdict = policy::may_record(&caller.principal, command, &self.model());
        if verdict.is_ok() {
            verdict = self.within_relationship(caller, command).await?;
        }
        let Err(why) = verdict else { return Ok(()) };
        if let Some(patient) = command.stream().patient_id() {
            let record = caller.denied(patient, "mutation");
            self.log_access(vec![record]).await?;
        }
        Err(EngineError::Forbidden(why))
    }

    /// A clinician whose relationship to the patient is one they recorded themselves
    /// (`policy::Relationship::SelfRecorded`) records only about their own services' referrals,
    /// episodes and admissions: writing to another service's facts would be a way to probe them.
    async fn within_relationship(&self, caller: &Caller, command: &Command) -> Result<Result<(), String>, EngineError> {
        let p = &caller.principal;
        let Some(patient) = command.stream().patient_id() else { return Ok(Ok(())) };
        if !p.has(forlop_auth::Role::Clinician)
            || p.has(forlop_auth::Role::Admin)
            || p.has(forlop_auth::Role::Integration)
        {
            return Ok(Ok(()));
        }
        let view = self.model().patients.get(&patient).cloned();
        if self.relationship(caller, view.as_ref()).await? != policy::Relationship::SelfRecorded {
            return Ok(Ok(()));
        }
        let fact: serde_json::Value =
            serde_json::from_slice(&command.proposed_event().to_payload()).unwrap_or_default();
        Ok(match view {
            Some(view) if !policy::touches_only_own_services(p, &view, &fact) => {
                Err("you recorded this patient's only referral or episode at your service yourself: until a colleague \
                 confirms it you may record only about your own service's referrals, episodes and admissions"
                    .into())
            }
            _ => Ok(()),
        })
    }
}
