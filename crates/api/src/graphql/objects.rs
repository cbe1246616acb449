//! Output types.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use forlop_engine::PatientGrant;
use forlop_projections::read_model::{AdmissionView, EpisodeView};
use forlop_projections::{PatientView, ServiceView, TherapistView};
use forlop_store::RecordedEvent;

use super::analytics::{Distribution, ReferralSummary};
use super::context::{encode_cursor, engine, engine_and_caller};
use super::enums::*;
use crate::error::{ApiError, GqlResult, ToGql};
use forlop_engine as engine;

/// Where a recorded event landed in the log.
#[derive(SimpleObject, Debug)]
pub struct Recorded {
    pub event_id: Uuid,
    /// Version of the event in its stream (the patient's, service's or therapist's), from 0.
    pub stream_version: u64,
    /// Position in the whole log, from 0.
    pub position: u64,
    /// True when this call repeated an already recorded `eventId` and wrote nothing.
    pub deduplicated: bool,
}

impl From<engine::Recorded> for Recorded {
    fn from(r: engine::Recorded) -> Self {
        Recorded {
            event_id: r.event_id,
            stream_version: r.stream_version,
            position: r.position,
            deduplicated: r.deduplicated,
        }
    }
}

/// A reporting period [from, to) must not be empty.
pub fn period(from: DateTime<Utc>, to: DateTime<Utc>) -> async_graphql::Result<()> {
    if from >= to {
        return Err(ApiError::invalid("from must be before to").gql());
    }
    Ok(())
}

/// A care service: RPH, a DPS outpatient clinic, a ward.
pub struct Service(pub ServiceView);

#[Object]
impl Service {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn care_level(&self) -> CareLevel {
        self.0.care_level.into()
    }
    /// Episodes open at `asOf`: started before it and not ended by it. For analysts, perturbed by
    /// the cell key method, null when small, and counted at the start of `asOf`'s calendar month
    /// (UTC), so two days of one month give one answer.
    async fn open_episodes(&self, ctx: &Context<'_>, as_of: DateTime<Utc>) -> async_graphql::Result<Option<u64>> {
        let (engine, caller) = engine_and_caller(ctx)?;
        Ok(engine.open_episodes(caller, self.0.id, as_of).await.gql()?.value.value)
    }
    /// Days from referral to first attended session, for episodes started in [from, to) (for
    /// analysts, [from, to) widened to whole calendar months and perturbed, as `pathwayReport`).
    async fn waiting_days(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> async_graphql::Result<Distribution> {
        let (engine, caller) = engine_and_caller(ctx)?;
        period(from, to)?;
        Ok(engine.waiting_days(caller, self.0.id, from, to).await.gql()?.value.into())
    }
    /// Referrals received in [from, to), by decision (for analysts, as `waitingDays`).
    async fn referral_outcomes(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> async_graphql::Result<ReferralSummary> {
        let (engine, caller) = engine_and_caller(ctx)?;
        period(from, to)?;
        Ok(engine.referral_outcomes(caller, self.0.id, from, to).await.gql()?.value.into())
    }
}

pub struct Therapist(pub TherapistView);

#[Object]
impl Therapist {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Number in the Norwegian health personnel register, when known.
    async fn hpr_number(&self) -> Option<&str> {
        self.0.hpr_number.as_deref()
    }
}

/// A patient as the caller was granted them: integrations see only `id` and `version`.
pub struct Patient(pub PatientGrant);

impl Patient {
    fn full(&self) -> async_graphql::Result<&PatientView> {
        self.0.view().gql()
    }
}

#[Object]
impl Patient {
    async fn id(&self) -> Uuid {
        self.0.id()
    }
    /// Version of the patient's stream: pass it as `expectedVersion` to record only if nothing changed.
    async fn version(&self) -> u64 {
        self.0.version()
    }
    async fn birth_year(&self) -> async_graphql::Result<i32> {
        Ok(self.full()?.birth_year)
    }
    async fn gender(&self) -> async_graphql::Result<Gender> {
        Ok(self.full()?.gender.into())
    }
    /// Fødselsnummer, D- or H-number, opened from its sealed form; null if none was recorded or
    /// the patient has been forgotten.
    async fn national_id(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        engine(ctx).national_id(&self.0).await.gql()
    }
    /// True once the patient's data key was destroyed on request (`forgetPatient`).
    async fn forgotten(&self) -> async_graphql::Result<bool> {
        Ok(self.full()?.forgotten)
    }
    /// Continuity of care across care levels, computed over attended sessions in clinical order.
    async fn continuity(&self) -> async_graphql::Result<Continuity> {
        Ok(Continuity(self.full()?.continuity()))
    }
    async fn episodes(&self) -> async_graphql::Result<Vec<Episode>> {
        Ok(self.full()?.episodes.iter().cloned().map(Episode).collect())
    }
    async fn admissions(&self) -> async_graphql::Result<Vec<Admission>> {
        Ok(self.full()?.admissions.iter().cloned().map(Admission).collect())
    }
    /// The patient's own stream, oldest first: every fact recorded about them, for audit.
    /// Auditors and admins, and clinicians for their patients.
    async fn history(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<LogEvent>> {
        Ok(engine(ctx).history(&self.0).await.gql()?.into_iter().map(LogEvent).collect())
    }
}

pub struct Episode(pub EpisodeView);

#[Object]
impl Episode {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn service_id(&self) -> Uuid {
        self.0.service_id
    }
    async fn care_level(&self) -> CareLevel {
        self.0.care_level.into()
    }
    /// True for an emergency admission (øyeblikkelig hjelp), started without a referral.
    async fn acute(&self) -> bool {
        self.0.acute
    }
    async fn referral_id(&self) -> Option<Uuid> {
        self.0.referral_id
    }
    async fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }
    async fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.0.ended.as_ref().map(|e| e.ended_at)
    }
    async fn end_reason(&self) -> Option<EndReason> {
        self.0.ended.as_ref().map(|e| e.reason.into())
    }
}

pub struct Admission(pub AdmissionView);

#[Object]
impl Admission {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn service_id(&self) -> Uuid {
        self.0.service_id
    }
    async fn admitted_at(&self) -> DateTime<Utc> {
        self.0.admitted_at
    }
    async fn discharged_at(&self) -> Option<DateTime<Utc>> {
        self.0.discharged_at
    }
}

pub struct Continuity(pub std::sync::Arc<forlop_projections::Continuity>);

#[Object]
impl Continuity {
    /// Sessions with attendance ATTENDED; the others do not count.
    async fn attended_sessions(&self) -> u32 {
        self.0.attended_sessions
    }
    async fn distinct_therapists(&self) -> u32 {
        self.0.distinct_therapists
    }
    /// Boundaries between consecutive segments.
    async fn care_level_transitions(&self) -> u32 {
        self.0.care_level_transitions
    }
    /// Transitions where the therapist of the last session before holds a session after.
    async fn transitions_keeping_therapist(&self) -> u32 {
        self.0.transitions_keeping_therapist
    }
    /// Null with no transition; else whether every transition kept the therapist.
    async fn same_therapist_across_care_levels(&self) -> Option<bool> {
        self.0.same_therapist_across_care_levels
    }
    /// Bice-Boxerman continuity of care index; null below 2 attended sessions.
    async fn coc(&self) -> Option<f64> {
        self.0.indices.coc
    }
    /// Usual provider of care index; null below 2 attended sessions.
    async fn upc(&self) -> Option<f64> {
        self.0.indices.upc
    }
    /// Sequential continuity index; null below 2 attended sessions.
    async fn secon(&self) -> Option<f64> {
        self.0.indices.secon
    }
    /// Modified modified continuity index; null below 2 attended sessions.
    async fn mmci(&self) -> Option<f64> {
        self.0.indices.mmci
    }
    async fn segments(&self) -> Vec<Segment> {
        self.0
            .segments
            .iter()
            .map(|s| Segment {
                care_level: s.care_level.into(),
                from: s.from,
                to: s.to,
                therapist_ids: s.therapist_ids.clone(),
                sessions: s.sessions,
            })
            .collect()
    }
    async fn handovers(&self) -> Vec<Handover> {
        self.0
            .handovers
            .iter()
            .map(|h| Handover {
                episode_id: h.episode_id,
                from_therapist_id: h.from_therapist_id,
                to_therapist_id: h.to_therapist_id,
                reason: h.reason.into(),
                patient_notified: h.patient_notified,
                released_at: h.released_at,
                gap_days: h.gap_days,
            })
            .collect()
    }
}

/// A maximal run of consecutive attended sessions at one care level.
#[derive(SimpleObject)]
pub struct Segment {
    pub care_level: CareLevel,
    /// Time of the segment's first session.
    pub from: DateTime<Utc>,
    /// Time of the segment's last session.
    pub to: DateTime<Utc>,
    /// Therapists in order of their first session in the segment.
    pub therapist_ids: Vec<Uuid>,
    pub sessions: u32,
}

/// A therapist leaving an episode, and who took over.
#[derive(SimpleObject)]
pub struct Handover {
    pub episode_id: Uuid,
    pub from_therapist_id: Uuid,
    pub to_therapist_id: Option<Uuid>,
    pub reason: ReleaseReason,
    pub patient_notified: bool,
    pub released_at: DateTime<Utc>,
    /// Days from the release to the successor's assignment; 0 when one was already active.
    pub gap_days: Option<f64>,
}

/// One entry of the log, with its full envelope.
pub struct LogEvent(pub RecordedEvent);

#[Object(name = "Event")]
impl LogEvent {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    /// Stream name: `patient-<id>`, `service-<id>` or `therapist-<id>`.
    async fn stream(&self) -> &str {
        &self.0.stream
    }
    async fn stream_version(&self) -> u64 {
        self.0.version
    }
    async fn position(&self) -> u64 {
        self.0.position
    }
    #[graphql(name = "type")]
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    async fn schema_version(&self) -> u16 {
        self.0.schema_version
    }
    /// Clinical time of the fact.
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }
    /// Server time when the fact was recorded.
    async fn recorded_at(&self) -> DateTime<Utc> {
        self.0.recorded_at
    }
    async fn actor(&self) -> &str {
        &self.0.metadata.actor
    }
    async fn correlation_id(&self) -> Option<Uuid> {
        self.0.metadata.correlation_id
    }
    async fn causation_id(&self) -> Option<Uuid> {
        self.0.metadata.causation_id
    }
    /// SHA-256 chain hash, hex.
    async fn hash(&self) -> String {
        forlop_store::to_hex(&self.0.hash)
    }
    /// The payload exactly as stored (at its own schema version).
    async fn payload(&self) -> Json<serde_json::Value> {
        Json(serde_json::from_slice(&self.0.payload).unwrap_or(serde_json::Value::Null))
    }
}

#[derive(SimpleObject)]
pub struct LogInfo {
    /// Events committed to the log.
    pub committed: u64,
    /// Events folded into the read model.
    pub projected: u64,
}

pub type EventConnection = Connection<String, LogEvent>;

pub fn event_edge(e: RecordedEvent) -> Edge<String, LogEvent, EmptyFields> {
    Edge::new(encode_cursor(e.position), LogEvent(e))
}

/// One access to a patient's data, as the access log keeps it.
pub struct AccessEntry(pub forlop_store::access_log::StoredAccessRecord);

#[Object]
impl AccessEntry {
    /// Position in the access log (its own chain, separate from the event log).
    async fn position(&self) -> u64 {
        self.0.position
    }
    async fn patient_id(&self) -> Uuid {
        self.0.record.patient_id
    }
    /// The token's subject.
    async fn actor(&self) -> &str {
        &self.0.record.actor_sub
    }
    async fn actor_name(&self) -> Option<&str> {
        self.0.record.actor_name.as_deref()
    }
    async fn role(&self) -> &str {
        &self.0.record.role
    }
    async fn hpr_number(&self) -> Option<&str> {
        self.0.record.hpr_number.as_deref()
    }
    /// The client's operation name.
    async fn operation(&self) -> &str {
        &self.0.record.operation
    }
    /// What was disclosed: the root field (`patient`, `events`, `careAlerts`, ...).
    async fn fields(&self) -> &str {
        &self.0.record.fields
    }
    /// ALLOWED, DENIED or EMERGENCY.
    async fn outcome(&self) -> &str {
        self.0.record.outcome.as_str()
    }
    /// The reason given for emergency access.
    async fn reason(&self) -> Option<&str> {
        self.0.record.reason.as_deref()
    }
    async fn correlation_id(&self) -> Option<Uuid> {
        self.0.record.correlation_id
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.record.at
    }
    /// SHA-256 chain hash, hex.
    async fn hash(&self) -> String {
        forlop_store::to_hex(&self.0.hash)
    }
}

/// A page of the access log; pass `endCursor` as `after` for the next.
#[derive(SimpleObject)]
pub struct AccessLogPage {
    pub nodes: Vec<AccessEntry>,
    pub end_cursor: Option<String>,
    pub has_next_page: bool,
}

impl From<forlop_engine::access::AccessPage> for AccessLogPage {
    fn from(p: forlop_engine::access::AccessPage) -> Self {
        AccessLogPage {
            end_cursor: p.records.last().map(|r| encode_cursor(r.position)),
            has_next_page: p.has_next,
            nodes: p.records.into_iter().map(AccessEntry).collect(),
        }
    }
}

/// Both chains recomputed from the start.
#[derive(SimpleObject)]
pub struct VerifyLog {
    pub ok: bool,
    /// Position of the event log's last event (null when empty).
    pub head_position: Option<u64>,
    pub head_hash: String,
    pub access_head_position: Option<u64>,
    pub access_head_hash: String,
}
