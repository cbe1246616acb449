//! Read queries, answered from the in-memory read model or, for the log itself, from the store.

use async_graphql::connection::{query, Connection};
use async_graphql::{Context, Object, Result};
use uuid::Uuid;

use chrono::{DateTime, Utc};
use forlop_projections::alerts;

use super::analytics::{CareAlert, PathwayReport};
use super::context::{decode_cursor, engine_and_caller, page_size, MIN_POSITION_WAIT};
use super::objects::*;
use crate::error::{ApiError, GqlResult, ToGql};
use forlop_engine::policy::Operation;

pub struct Query;

/// Most age groups one report takes.
const MAX_AGE_BINS: usize = 40;

#[Object]
impl Query {
    /// A patient and their continuity of care; null if no such patient is registered. Every read
    /// is written to the access log before it is answered. A clinician may read a patient of
    /// another service by giving `emergencyReason` (at least 10 characters): logged as EMERGENCY.
    /// With `asOf`, answers as forlop knew the patient at that recorded time.
    /// With `minPosition` (a position a mutation returned, on any node sharing the log), answers
    /// once this node has read the log that far (read-your-writes), or `UNAVAILABLE` after 5 s.
    async fn patient(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        emergency_reason: Option<String>,
        as_of: Option<DateTime<Utc>>,
        min_position: Option<u64>,
    ) -> Result<Option<Patient>> {
        let (engine, caller) = engine_and_caller(ctx)?;
        if let Some(position) = min_position {
            engine.wait_for_position(position, MIN_POSITION_WAIT).await.gql()?;
        }
        let grant = engine.read_patient(caller, id, emergency_reason.as_deref(), as_of, "patient").await.gql()?;
        Ok(grant.map(Patient))
    }

    /// The patient holding this fødselsnummer, D- or H-number (found by its keyed blind index,
    /// never by a clear-text lookup); access as for `patient`.
    async fn patient_by_national_id(
        &self,
        ctx: &Context<'_>,
        national_id: String,
        emergency_reason: Option<String>,
    ) -> Result<Option<Patient>> {
        let (engine, caller) = engine_and_caller(ctx)?;
        let grant =
            engine.read_patient_by_national_id(caller, &national_id, emergency_reason.as_deref()).await.gql()?;
        Ok(grant.map(Patient))
    }

    /// Every registered service, by name.
    async fn services(&self, ctx: &Context<'_>) -> Result<Vec<Service>> {
        let (engine, caller) = engine_and_caller(ctx)?;
        Ok(engine.services(caller).gql()?.into_iter().map(Service).collect())
    }

    /// Every registered therapist, by name.
    async fn therapists(&self, ctx: &Context<'_>) -> Result<Vec<Therapist>> {
        let (engine, caller) = engine_and_caller(ctx)?;
        Ok(engine.therapists(caller).gql()?.into_iter().map(Therapist).collect())
    }

    /// Who accessed patient data, oldest first (auditors and admins). The cursor is the record's
    /// position. `from` inclusive, `to` exclusive; `emergencyOnly` for the follow-up of emergency access.
    #[allow(clippy::too_many_arguments)] // one per GraphQL argument
    async fn access_log(
        &self,
        ctx: &Context<'_>,
        patient_id: Option<Uuid>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        emergency_only: Option<bool>,
        #[graphql(default = 100)] first: i32,
        after: Option<String>,
    ) -> Result<AccessLogPage> {
        let (engine, caller) = engine_and_caller(ctx)?;
        let (first, after) = (page_size(first)?, decode_cursor(after.as_deref())?);
        let filter = forlop_engine::access::access_filter(patient_id, from, to, emergency_only.unwrap_or(false));
        Ok(engine.access_log_page(caller, &filter, after, first).await.gql()?.into())
    }

    /// Who has seen my record (the patient role): the access log of the patient named by the
    /// token's national id, as helsenorge shows it.
    async fn my_access_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: i32,
        after: Option<String>,
    ) -> Result<AccessLogPage> {
        let (engine, caller) = engine_and_caller(ctx)?;
        let (first, after) = (page_size(first)?, decode_cursor(after.as_deref())?);
        Ok(engine.my_access_log(caller, after, first).await.gql()?.into())
    }

    /// Recomputes both hash chains (auditors): publish the heads elsewhere as an external anchor.
    async fn verify_log(&self, ctx: &Context<'_>) -> Result<VerifyLog> {
        let (engine, caller) = engine_and_caller(ctx)?;
        let heads = engine.verify_logs(caller).await.gql()?;
        Ok(VerifyLog {
            ok: heads.ok,
            head_position: heads.events.checked_sub(1),
            head_hash: heads.head_hash,
            access_head_position: heads.access_records.checked_sub(1),
            access_head_hash: heads.access_head_hash,
        })
    }

    /// The whole log in global order. The cursor is the position; pass an edge's cursor as `after`.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        #[graphql(default = 100)] first: Option<i32>,
    ) -> Result<EventConnection> {
        let (engine, caller) = engine_and_caller(ctx)?;
        let first = page_size(first.unwrap_or(100))?;
        let from = match decode_cursor(after.as_deref())? {
            None => 0,
            Some(p) => p.checked_add(1).ok_or_else(|| ApiError::invalid("after is past the end of any log").gql())?,
        };
        query(None::<String>, None::<String>, None::<i32>, None::<i32>, |_, _, _, _| async move {
            let (events, has_next) = engine.read_log(caller, from, first).await.gql()?;
            let mut conn = Connection::new(from > 0, has_next);
            conn.edges.extend(events.into_iter().map(event_edge));
            Ok::<_, async_graphql::Error>(conn)
        })
        .await
    }

    /// The episodes a service started in [from, to): the basis table, outcomes, recovery, waiting
    /// times, referrals and continuity. Auditors and admins get exact figures and may choose
    /// `ageBins` (lower bounds; default 0,16,25,31,36,46,56,67). Analysts get figures protected by
    /// the cell key method, the standard age groups only, and the window widened to whole
    /// calendar months (see `disclosure`).
    async fn pathway_report(
        &self,
        ctx: &Context<'_>,
        service_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        age_bins: Option<Vec<i32>>,
    ) -> Result<PathwayReport> {
        let (engine, caller) = engine_and_caller(ctx)?;
        engine.authorize(caller, Operation::ServiceAnalytics).gql()?;
        period(from, to)?;
        if age_bins.as_ref().is_some_and(|b| b.len() > MAX_AGE_BINS) {
            return Err(ApiError::invalid(format!("ageBins takes at most {MAX_AGE_BINS} bins")).gql());
        }
        let report = engine.pathway_report(caller, service_id, from, to, age_bins).await.gql()?;
        Ok(PathwayReport::new(service_id, report))
    }

    /// Open episodes (started before `asOf`, not ended by it) that need attention, judged only on
    /// facts with clinical time at or before `asOf`.
    async fn care_alerts(
        &self,
        ctx: &Context<'_>,
        as_of: DateTime<Utc>,
        service_id: Option<Uuid>,
        #[graphql(default = 7.0)] unassigned_days: Option<f64>,
        #[graphql(default = 28.0)] inactive_days: Option<f64>,
    ) -> Result<Vec<CareAlert>> {
        let (engine, caller) = engine_and_caller(ctx)?;
        let defaults = alerts::AlertThresholds::default();
        let thresholds = alerts::AlertThresholds {
            unassigned_days: unassigned_days.unwrap_or(defaults.unassigned_days),
            inactive_days: inactive_days.unwrap_or(defaults.inactive_days),
        };
        let found = engine.care_alerts(caller, as_of, service_id, thresholds).await.gql()?;
        Ok(found.into_iter().map(CareAlert::from).collect())
    }

    /// How far the log and the read model have come.
    async fn log(&self, ctx: &Context<'_>) -> Result<LogInfo> {
        let (engine, caller) = engine_and_caller(ctx)?;
        let (committed, projected) = engine.log_progress(caller).gql()?;
        Ok(LogInfo { committed, projected })
    }
}
