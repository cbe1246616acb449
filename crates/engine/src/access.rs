//! Access: every read of patient-level data goes through here, is decided by `policy` and is
//! written to the access log, durably, before the data is handed to an adapter.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use forlop_auth::Principal;
use forlop_domain::national_id::NationalId;
use forlop_projections::PatientView;
use forlop_store::access_log::{AccessFilter, AccessOutcome, AccessRecord, StoredAccessRecord};
use forlop_store::StoreError;
use forlop_vault::Sealed;
use uuid::Uuid;

pub use crate::parts::SharedAccessLog;
use crate::policy::{self, Aggregates, Operation, PatientAccess};
pub use crate::subscriptions::{SubscriptionSlot, MAX_SUBSCRIPTIONS_PER_TOKEN};
use crate::{Engine, EngineError};

/// Who is calling, and in answer to which request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// Ties the access records and events of one request together (also sent as `x-request-id`).
    pub correlation_id: Uuid,
    /// The client's operation name, or "anonymous".
    pub operation: String,
    /// Set where the adapter settles disclosures itself before it answers (`settling_later`);
    /// None: each disclosure is durable before the engine hands the data over.
    pending: Option<Arc<PendingDisclosures>>,
}

/// Access records of one request that went to the access log but are not yet known to be
/// durable. An adapter that asked for them (`Caller::settling_later`) calls `settle` before any
/// byte of its answer leaves, and answers UNAVAILABLE instead if that fails. The records reach
/// the log's writer as each patient is granted, so their fsync overlaps resolving and
/// serialising the answer instead of coming before it: under load, requests waiting for one
/// group commit no longer leave the cores idle and then all need them at once.
#[derive(Default)]
pub struct PendingDisclosures(parking_lot::Mutex<Vec<futures::future::BoxFuture<'static, Result<u64, StoreError>>>>);

impl std::fmt::Debug for PendingDisclosures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDisclosures").field("appends", &self.0.lock().len()).finish()
    }
}

impl PendingDisclosures {
    /// Returns once every disclosure of the request is durable; UNAVAILABLE if any is not.
    pub async fn settle(&self) -> Result<(), EngineError> {
        let appends = std::mem::take(&mut *self.0.lock());
        for result in futures::future::join_all(appends).await {
            result.map_err(unavailable)?;
        }
        Ok(())
    }
}

impl Caller {
    /// A caller whose operation name the client chose (GraphQL's `operationName`): kept only as
    /// `operation_name` allows.
    pub fn new(principal: Principal, operation: Option<&str>) -> Caller {
        Caller::with_operation(principal, operation_name(operation).to_owned())
    }

    /// A caller whose operation the server names (`fhir.bundle`, `import-fhir`): a literal in
    /// forlop's code, never a client's text, so it is kept as it is.
    pub fn server(principal: Principal, operation: &'static str) -> Caller {
        Caller::with_operation(principal, operation.to_owned())
    }

    fn with_operation(principal: Principal, operation: String) -> Caller {
        Caller { principal, correlation_id: Uuid::new_v4(), operation, pending: None }
    }

    /// This caller, with its disclosures settled by the adapter: see `PendingDisclosures`.
    pub fn settling_later(mut self) -> (Caller, Arc<PendingDisclosures>) {
        let pending = Arc::new(PendingDisclosures::default());
        self.pending = Some(pending.clone());
        (self, pending)
    }

    /// The caller as recorded in an event's `actor`: `role:sub`, and the HPR number if present.
    pub fn actor(&self) -> String {
        let p = &self.principal;
        let role = p.primary_role().map_or("none", |r| r.as_str());
        match &p.hpr_number {
            Some(hpr) => format!("{role}:{} hpr:{hpr}", p.sub),
            None => format!("{role}:{}", p.sub),
        }
    }

    /// The metadata of an event this caller records.
    pub fn metadata(&self) -> forlop_store::Metadata {
        forlop_store::Metadata { actor: self.actor(), correlation_id: Some(self.correlation_id), causation_id: None }
    }

    pub(crate) fn denied(&self, patient_id: Uuid, fields: &str) -> AccessRecord {
        self.record(patient_id, fields, AccessOutcome::Denied, None)
    }

    fn record(&self, patient_id: Uuid, fields: &str, outcome: AccessOutcome, reason: Option<String>) -> AccessRecord {
        let p = &self.principal;
        AccessRecord {
            patient_id,
            actor_sub: p.sub.clone(),
            actor_name: p.name.clone(),
            role: p.primary_role().map_or("none", |r| r.as_str()).to_owned(),
            hpr_number: p.hpr_number.clone(),
            operation: self.operation.clone(),
            fields: fields.to_owned(),
            outcome,
            reason,
            correlation_id: Some(self.correlation_id),
            at: Utc::now(),
        }
    }
}

/// Longest operation name kept in the access log and on `/metrics`.
pub const MAX_OPERATION_NAME: usize = 64;
/// What a client's operation name is stored as when it is not a plain identifier.
pub const UNNAMED_OPERATION: &str = "unnamed";

/// The client's operation name as the immutable access log and `/metrics` keep it: a plain
/// identifier (ASCII letters, digits, `_`; at most `MAX_OPERATION_NAME`) with at most four
/// digits in all (a year is kept), so that no national id, phone number or date a client puts in a name is
/// kept for good; anything else is `UNNAMED_OPERATION`, and none is `anonymous`.
pub fn operation_name(raw: Option<&str>) -> &str {
    let Some(name) = raw.filter(|o| !o.is_empty()) else { return "anonymous" };
    let identifier = name.len() <= MAX_OPERATION_NAME
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    // Digits counted over the whole name: runs split by letters or `_` carry a number as well.
    let digits = name.bytes().filter(u8::is_ascii_digit).count();
    if identifier && digits <= 4 {
        name
    } else {
        UNNAMED_OPERATION
    }
}

/// A patient the caller may see, and how much. Its facts are reachable only through `view`,
/// which refuses a grant of the identity alone, so no adapter can forget that check.
#[derive(Debug, Clone)]
pub struct PatientGrant {
    /// The patient's view in the snapshot the read started on (shared, not copied).
    view: Arc<PatientView>,
    /// False for integrations: only `id` and `version`.
    full: bool,
    /// Events at or after this log position are not part of the view (`asOf`); u64::MAX otherwise.
    as_of_position: u64,
}

impl PatientGrant {
    pub fn id(&self) -> Uuid {
        self.view.id
    }

    /// The patient stream's version, for `expectedVersion`.
    pub fn version(&self) -> u64 {
        self.view.version
    }

    /// True when the whole record is granted, false when only `id` and `version` are.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The patient's facts: refused for a grant of the identity alone.
    pub fn view(&self) -> Result<&PatientView, EngineError> {
        if self.full {
            Ok(&self.view)
        } else {
            Err(EngineError::forbidden("your role may see only a patient's id and version"))
        }
    }
}

/// One page of the access log.
#[derive(Debug, Clone)]
pub struct AccessPage {
    pub records: Vec<StoredAccessRecord>,
    pub has_next: bool,
}

fn unavailable(e: StoreError) -> EngineError {
    tracing::error!(error = %e, "access log append failed");
    EngineError::Unavailable(format!("the access log could not be made durable; nothing was disclosed ({e})"))
}

impl Engine {
    /// Refuses `op` unless the caller's roles allow it.
    pub fn authorize(&self, caller: &Caller, op: Operation) -> Result<(), EngineError> {
        if policy::may(&caller.principal, op) {
            Ok(())
        } else {
            Err(EngineError::forbidden(format!("your role may not use {op:?}")))
        }
    }

    /// How aggregates are disclosed to this caller, after checking they may see them at all.
    pub fn aggregates(&self, caller: &Caller) -> Result<Aggregates, EngineError> {
        self.authorize(caller, Operation::ServiceAnalytics)?;
        Ok(policy::aggregates(&caller.principal, self.settings().suppression_threshold))
    }

    /// Appends access records and returns once they are durable.
    pub async fn log_access(&self, records: Vec<AccessRecord>) -> Result<(), EngineError> {
        if records.is_empty() {
            return Ok(());
        }
        self.access_log().append(records).await.map(|_| ()).map_err(unavailable)
    }

    /// Logs records of patient data handed to the caller: durably before returning, or, for a
    /// caller whose adapter settles later, sent to the log now and awaited by its `settle`.
    async fn log_disclosure(&self, caller: &Caller, records: Vec<AccessRecord>) -> Result<(), EngineError> {
        let Some(pending) = &caller.pending else { return self.log_access(records).await };
        if records.is_empty() {
            return Ok(());
        }
        let log = self.access_log().clone();
        let mut append: futures::future::BoxFuture<'static, _> = Box::pin(async move { log.append(records).await });
        // A future does nothing until polled: poll it once so the records reach the log's writer
        // now (and a log that has already failed refuses at once). `settle` polls it to the end.
        let mut now = std::task::Context::from_waker(std::task::Waker::noop());
        match append.as_mut().poll(&mut now) {
            std::task::Poll::Ready(result) => result.map(|_| ()).map_err(unavailable),
            std::task::Poll::Pending => {
                pending.0.lock().push(append);
                Ok(())
            }
        }
    }

    /// Logs that `patients` were disclosed to the caller through `fields` (a list or a stream).
    pub async fn disclosed(
        &self,
        caller: &Caller,
        patients: impl IntoIterator<Item = Uuid>,
        fields: &str,
    ) -> Result<(), EngineError> {
        let mut seen = std::collections::HashSet::new();
        let records = patients
            .into_iter()
            .filter(|p| seen.insert(*p))
            .map(|p| caller.record(p, fields, AccessOutcome::Allowed, None))
            .collect();
        self.log_disclosure(caller, records).await
    }

    /// One patient, if the caller may see them; the access (or the refusal) is logged durably
    /// first. Ok(None) when no such patient is registered and the caller may read any patient.
    pub async fn read_patient(
        &self,
        caller: &Caller,
        id: Uuid,
        emergency_reason: Option<&str>,
        as_of: Option<DateTime<Utc>>,
        fields: &str,
    ) -> Result<Option<PatientGrant>, EngineError> {
        let view = self.model().patients.get(&id).cloned();
        let relationship = self.relationship(caller, view.as_ref()).await?;
        let access = policy::patient_access(&caller.principal, view.as_deref(), emergency_reason, relationship);
        if !matches!(access, PatientAccess::Denied(_) | PatientAccess::InvalidReason(_)) {
            // Fill the continuity cache the snapshot shares, once per change of the patient.
            view.as_ref().map(|v| v.continuity());
        }
        let (outcome, reason, full) = match access {
            PatientAccess::Full => (AccessOutcome::Allowed, None, true),
            PatientAccess::IdentityOnly => (AccessOutcome::Allowed, None, false),
            PatientAccess::Emergency(reason) => (AccessOutcome::Emergency, Some(reason), true),
            PatientAccess::SelfGranted(reason) => (AccessOutcome::SelfGranted, Some(reason), true),
            PatientAccess::Denied(why) => {
                self.log_access(vec![caller.record(id, fields, AccessOutcome::Denied, None)]).await?;
                return Err(EngineError::Forbidden(why));
            }
            PatientAccess::InvalidReason(why) => {
                self.log_access(vec![caller.record(id, fields, AccessOutcome::Denied, None)]).await?;
                return Err(EngineError::InvalidInput(why));
            }
        };
        let Some(view) = view else { return Ok(None) };
        let fields = if full { fields } else { "patient.id,version" };
        self.log_disclosure(caller, vec![caller.record(id, fields, outcome, reason)]).await?;
        match as_of {
            None => Ok(Some(PatientGrant { view, full, as_of_position: u64::MAX })),
            Some(t) => Ok(self.patient_as_of(id, t).await?.map(|(view, as_of_position)| PatientGrant {
                view: Arc::new(view),
                full,
                as_of_position,
            })),
        }
    }

    /// How the caller is related to the patient, for reading: see `policy::Relationship`. Reads
    /// the patient's stream only for a clinician whose service holds a referral or episode of a
    /// patient who also has facts at other services: the one case where who recorded the
    /// relationship, and when, decides what may be read.
    pub(crate) async fn relationship(
        &self,
        caller: &Caller,
        view: Option<&Arc<PatientView>>,
    ) -> Result<policy::Relationship, EngineError> {
        use policy::Relationship;
        let p = &caller.principal;
        let Some(view) = view else { return Ok(Relationship::None) };
        if !policy::treats(p, view) {
            return Ok(Relationship::None);
        }
        if !p.has(forlop_auth::Role::Clinician) || !policy::has_facts_elsewhere(p, view) {
            return Ok(Relationship::Established);
        }
        let own = policy::own_fact_ids(p, view);
        let stream = forlop_domain::StreamRef::Patient(view.id).name();
        let events = self.store().read_stream(&stream, 0, usize::MAX).await?;
        let (me, now) = (caller.actor(), Utc::now());
        let period = chrono::Duration::days(i64::from(self.settings().self_grant_days));
        for e in &events {
            // As this build writes it (older versions upcast), so the field names are today's.
            let fact: serde_json::Value = serde_json::from_slice(&crate::decode(e)?.to_payload()).unwrap_or_default();
            let names_own = names_any(&fact, &own);
            if names_own && (e.metadata.actor != me || now - e.recorded_at >= period) {
                return Ok(Relationship::Established);
            }
        }
        Ok(Relationship::SelfRecorded)
    }

    /// The patient holding `national_id`, read as `read_patient` would.
    pub async fn read_patient_by_national_id(
        &self,
        caller: &Caller,
        national_id: &str,
        emergency_reason: Option<&str>,
    ) -> Result<Option<PatientGrant>, EngineError> {
        if !policy::may_look_up_national_id(&caller.principal) {
            return Err(EngineError::forbidden("your role may not look patients up by national id"));
        }
        let id = NationalId::parse(national_id).map_err(|e| EngineError::invalid(format!("nationalId: {e}")))?;
        let Some(patient) = self.vault_find(&id).await? else {
            // A caller who could not read a patient elsewhere is told the same about a number
            // nobody holds, so the answer does not say whether someone is a patient here.
            return match policy::patient_access(&caller.principal, None, emergency_reason, policy::Relationship::None) {
                PatientAccess::Denied(why) => Err(EngineError::Forbidden(why)),
                PatientAccess::InvalidReason(why) => Err(EngineError::InvalidInput(why)),
                _ => Ok(None),
            };
        };
        self.read_patient(caller, patient, emergency_reason, None, "patientByNationalId").await
    }

    /// For an integration placing a fact: the patient holding `national_id`, or, for a number no
    /// live patient holds, a keyed pseudonym of it to derive a new patient's id from (never the
    /// number itself). Only for callers that may record patient facts; discloses nothing else.
    ///
    /// A number whose holder was forgotten is held by no live patient (its key and blind-index
    /// entry are gone), so it gives the same pseudonym as before: an adapter that derives ids
    /// from it must not use one the read model already holds (that is the forgotten patient).
    /// Finding a patient is itself a disclosure (the caller learns the number is a patient's and
    /// which): the caller logs it with [`Engine::disclosed`] before it answers or records,
    /// batched per request, as an import resolves thousands.
    pub async fn patient_key_for_recording(
        &self,
        caller: &Caller,
        national_id: &NationalId,
    ) -> Result<Result<Uuid, [u8; 32]>, EngineError> {
        if !policy::may_resolve_for_recording(&caller.principal) {
            return Err(EngineError::forbidden("your role may not record patient facts"));
        }
        Ok(match self.vault_find(national_id).await? {
            Some(patient) => Ok(patient),
            None => Err(self.vault().blind_index(national_id)),
        })
    }

    /// `read_patient` for an answer that is the patient's whole record (an export): a caller the
    /// policy gives only a patient's id and version (an integration) is refused, and the refusal
    /// is logged as DENIED, not as an ALLOWED read of the id it was never sent. The same refusal
    /// whether or not the patient exists.
    pub async fn read_patient_in_full(
        &self,
        caller: &Caller,
        id: Uuid,
        fields: &str,
    ) -> Result<Option<PatientGrant>, EngineError> {
        let access = {
            let model = self.model();
            // Only the role decides whether a caller gets no more than the id; how a clinician is
            // related to the patient is `read_patient`'s to weigh.
            let view = model.patients.get(&id).map(|v| &**v);
            policy::patient_access(&caller.principal, view, None, policy::Relationship::None)
        };
        if matches!(access, PatientAccess::IdentityOnly) {
            self.log_access(vec![caller.denied(id, fields)]).await?;
            return Err(EngineError::forbidden("your role may see only a patient's id and version"));
        }
        self.read_patient(caller, id, None, None, fields).await
    }

    /// The national id of a patient already granted in full; None if none was given or the
    /// patient has been forgotten.
    pub async fn national_id(&self, grant: &PatientGrant) -> Result<Option<String>, EngineError> {
        if !grant.full {
            return Err(EngineError::forbidden("your role may see only a patient's id and version"));
        }
        // Forgotten in the log: never opened, even by a key a copied key table brought back.
        if grant.view.forgotten {
            return Ok(None);
        }
        let Some(sealed) = &grant.view.sealed_national_id else { return Ok(None) };
        let sealed = Sealed::from_base64(sealed).map_err(|e| EngineError::Internal(format!("sealed id: {e}")))?;
        let revealed = self
            .vault()
            .reveal(grant.view.id, &sealed)
            .await
            .map_err(|e| EngineError::Internal(format!("revealing a national id: {e}")))?;
        Ok(revealed.map(|n| n.as_str().to_owned()))
    }

    /// The patient as forlop knew them at recorded time `t`: events recorded after it are
    /// ignored, so an audit sees what a past decision was based on.
    async fn patient_as_of(&self, id: Uuid, t: DateTime<Utc>) -> Result<Option<(PatientView, u64)>, EngineError> {
        let stream = forlop_domain::StreamRef::Patient(id).name();
        let events = self.store().read_stream(&stream, 0, usize::MAX).await?;
        let mut model = {
            let current = self.model();
            forlop_projections::ReadModel {
                services: current.services.clone(),
                therapists: current.therapists.clone(),
                ..Default::default()
            }
        };
        let mut end = 0;
        for e in events.iter().filter(|e| e.recorded_at <= t) {
            let meta =
                forlop_projections::EventMeta { position: e.position, stream_version: e.version, patient_id: Some(id) };
            model.apply(meta, &crate::decode(e)?);
            end = e.position + 1;
        }
        Ok(model.patients.remove(&id).map(|v| (Arc::unwrap_or_clone(v), end)))
    }

    /// The live patient holding `id`: never one the log says is forgotten, even where a copied
    /// key table still finds them (`erasure.rs` destroys such keys at start).
    pub(crate) async fn vault_find(&self, id: &NationalId) -> Result<Option<Uuid>, EngineError> {
        let found = self
            .vault()
            .find(id)
            .await
            .map_err(|e| EngineError::Unavailable(format!("the key table could not be read: {e}")))?;
        Ok(found.filter(|p| !self.model().patients.get(p).is_some_and(|v| v.forgotten)))
    }

    /// A page of the whole log from `from` (auditors and admins), with whether more follows;
    /// every patient it names is access-logged before it is handed over.
    pub async fn read_log(
        &self,
        caller: &Caller,
        from: u64,
        first: usize,
    ) -> Result<(Vec<forlop_store::RecordedEvent>, bool), EngineError> {
        self.authorize(caller, Operation::ReadLog)?;
        let events = self.store().read_all(from, first).await?;
        let patients = events.iter().filter_map(|e| forlop_domain::StreamRef::parse(&e.stream)?.patient_id());
        self.disclosed(caller, patients, "events").await?;
        let has_next = events.last().is_some_and(|e| e.position + 1 < self.store().committed());
        Ok((events, has_next))
    }

    /// The stream of a patient granted in full, oldest first, up to the grant's `asOf`.
    pub async fn history(&self, grant: &PatientGrant) -> Result<Vec<forlop_store::RecordedEvent>, EngineError> {
        if !grant.full {
            return Err(EngineError::forbidden("your role may see only a patient's id and version"));
        }
        let stream = forlop_domain::StreamRef::Patient(grant.view.id).name();
        let mut events = self.store().read_stream(&stream, 0, usize::MAX).await?;
        events.retain(|e| e.position < grant.as_of_position);
        Ok(events)
    }

    /// The access log, for auditors: every record, or one patient's, in log order.
    pub async fn access_log_page(
        &self,
        caller: &Caller,
        filter: &AccessFilter,
        after: Option<u64>,
        first: usize,
    ) -> Result<AccessPage, EngineError> {
        self.authorize(caller, Operation::ReadAccessLog)?;
        self.access_page(filter, after, first).await
    }

    /// "Who has seen my record": the access log of the patient named by the caller's national id.
    /// Empty when the number is unknown or the patient has been forgotten.
    pub async fn my_access_log(
        &self,
        caller: &Caller,
        after: Option<u64>,
        first: usize,
    ) -> Result<AccessPage, EngineError> {
        self.authorize(caller, Operation::ReadOwnAccessLog)?;
        let Some(pid) = caller.principal.national_id.as_deref() else {
            return Err(EngineError::forbidden("the token carries no national id"));
        };
        let id = NationalId::parse(pid).map_err(|_| EngineError::forbidden("the token's national id is not valid"))?;
        let Some(patient) = self.vault_find(&id).await? else {
            return Ok(AccessPage { records: Vec::new(), has_next: false });
        };
        let filter = AccessFilter { patient_id: Some(patient), ..AccessFilter::default() };
        self.access_page(&filter, after, first).await
    }

    async fn access_page(
        &self,
        filter: &AccessFilter,
        after: Option<u64>,
        first: usize,
    ) -> Result<AccessPage, EngineError> {
        let mut records = self.access_log().query(filter, after, first + 1).await?;
        let has_next = records.len() > first;
        records.truncate(first);
        Ok(AccessPage { records, has_next })
    }

    /// Recomputes both chains; for auditors who publish the heads elsewhere as an anchor.
    pub async fn verify_logs(&self, caller: &Caller) -> Result<LogHeads, EngineError> {
        self.authorize(caller, Operation::VerifyLog)?;
        let events = self.store().verify().await;
        let access = self.access_log().verify().await;
        let ok = events.is_ok() && access.is_ok();
        if let Err(e) = &events {
            tracing::error!(error = %e, "event log verification failed");
        }
        if let Err(e) = &access {
            tracing::error!(error = %e, "access log verification failed");
        }
        Ok(LogHeads {
            ok,
            events: events.as_ref().map(|r| r.events).unwrap_or(0),
            head_hash: events.map(|r| forlop_store::to_hex(&r.head_hash)).unwrap_or_default(),
            access_records: access.as_ref().map(|r| r.records).unwrap_or(0),
            access_head_hash: access.map(|r| forlop_store::to_hex(&r.head_hash)).unwrap_or_default(),
        })
    }
}

/// The heads of both chains after a full verification.
#[derive(Debug, Clone)]
pub struct LogHeads {
    pub ok: bool,
    /// Number of events; the head is the event at `events − 1`.
    pub events: u64,
    pub head_hash: String,
    pub access_records: u64,
    pub access_head_hash: String,
}

/// A time range filter, `from` inclusive, `to` exclusive.
pub fn access_filter(
    patient_id: Option<Uuid>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    emergency_only: bool,
) -> AccessFilter {
    AccessFilter { patient_id, from, to, emergency_only }
}

/// True when a fact (as JSON) names one of `ids` in a `referral_id`, `episode_id` or
/// `admission_id` field, at any depth: every fact about a referral, an episode or an admission
/// names it so.
fn names_any(fact: &serde_json::Value, ids: &std::collections::HashSet<Uuid>) -> bool {
    let mut found = false;
    policy::walk_ids(fact, &mut |field, id| {
        found |= matches!(field, "referral_id" | "episode_id" | "admission_id") && ids.contains(&id);
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_reach_the_access_log() {
        for kept in ["Patient", "patientOverview", "Report_2016", "get_v2"] {
            assert_eq!(operation_name(Some(kept)), kept);
        }
        for dropped in ["Patient_21030550231", "p 1", "Pasient-Øst", "x".repeat(65).as_str(), "9lives", "call_12345678"]
        {
            assert_eq!(operation_name(Some(dropped)), UNNAMED_OPERATION, "{dropped}");
        }
        assert_eq!(operation_name(None), "anonymous");
        assert_eq!(operation_name(Some("")), "anonymous");
    }
}
