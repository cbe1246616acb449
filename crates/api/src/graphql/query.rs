//! Read queries, answered from the in-memory read model or, for the log itself, from the store.

use async_graphql::connection::{query, Connection};
use async_graphql::{Context, Object, Result};
use uuid::Uuid;

use chrono::{DateTime, Utc};
use forlop_projections::{alerts, reports, ReadModel};

use super::analytics::{CareAlert, PathwayReport};
use super::objects::*;
use crate::engine::Engine;
use crate::error::ApiError;

pub struct Query;

/// Largest page of the log one query returns.
const MAX_PAGE: usize = 1000;

#[Object]
impl Query {
    /// A patient and their continuity of care; null if no such patient is registered.
    async fn patient(&self, ctx: &Context<'_>, id: Uuid) -> Option<Patient> {
        let engine = ctx.data_unchecked::<Engine>();
        let model = engine.model().read();
        let p = model.patients.get(&id)?;
        p.continuity(); // fills the shared cache, so the next reader finds it computed
        Some(Patient(p.clone()))
    }

    /// Every registered service, by name.
    async fn services(&self, ctx: &Context<'_>) -> Vec<Service> {
        let engine = ctx.data_unchecked::<Engine>();
        let mut out: Vec<_> = engine.model().read().services.values().cloned().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        out.into_iter().map(Service).collect()
    }

    /// Every registered therapist, by name.
    async fn therapists(&self, ctx: &Context<'_>) -> Vec<Therapist> {
        let engine = ctx.data_unchecked::<Engine>();
        let mut out: Vec<_> = engine.model().read().therapists.values().cloned().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        out.into_iter().map(Therapist).collect()
    }

    /// The whole log in global order. The cursor is the position; pass an edge's cursor as `after`.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        #[graphql(default = 100)] first: Option<i32>,
    ) -> Result<EventConnection> {
        let engine = ctx.data_unchecked::<Engine>();
        let first = first.unwrap_or(100);
        if !(0..=MAX_PAGE as i32).contains(&first) {
            return Err(ApiError::invalid(format!("first must be 0 to {MAX_PAGE}")).gql());
        }
        let from = match after.as_deref() {
            None => 0,
            Some(c) => c
                .parse::<u64>()
                .map(|p| p + 1)
                .map_err(|_| ApiError::invalid(format!("cursor {c:?} is not a log position")).gql())?,
        };
        query(None::<String>, None::<String>, None::<i32>, None::<i32>, |_, _, _, _| async move {
            let events = engine.store().read_all(from, first as usize).await.map_err(|e| ApiError::from(e).gql())?;
            let has_next = events.last().is_some_and(|e| e.position + 1 < engine.store().committed());
            let mut conn = Connection::new(from > 0, has_next);
            conn.edges.extend(events.into_iter().map(event_edge));
            Ok::<_, async_graphql::Error>(conn)
        })
        .await
    }

    /// The episodes a service started in [from, to): the basis table, outcomes, recovery, waiting
    /// times, referrals and continuity. `ageBins` are lower bounds (default 0,16,25,31,36,46,56,67).
    async fn pathway_report(
        &self,
        ctx: &Context<'_>,
        service_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        age_bins: Option<Vec<i32>>,
    ) -> Result<PathwayReport> {
        let engine = ctx.data_unchecked::<Engine>();
        period(from, to)?;
        let model = engine.model().read();
        known_service(&model, service_id)?;
        let bins = age_bins.as_deref().unwrap_or(reports::DEFAULT_AGE_BINS);
        let report =
            reports::pathway_report(&model, service_id, from, to, bins).map_err(|e| ApiError::invalid(e).gql())?;
        Ok(PathwayReport::new(service_id, from, to, report))
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
        let engine = ctx.data_unchecked::<Engine>();
        let defaults = alerts::AlertThresholds::default();
        let unassigned_days = unassigned_days.unwrap_or(defaults.unassigned_days);
        let inactive_days = inactive_days.unwrap_or(defaults.inactive_days);
        if !(unassigned_days.is_finite() && unassigned_days >= 0.0 && inactive_days.is_finite() && inactive_days >= 0.0)
        {
            return Err(ApiError::invalid("unassignedDays and inactiveDays must be non-negative").gql());
        }
        let model = engine.model().read();
        if let Some(s) = service_id {
            known_service(&model, s)?;
        }
        let thresholds = alerts::AlertThresholds { unassigned_days, inactive_days };
        Ok(alerts::care_alerts(&model, as_of, service_id, thresholds).into_iter().map(CareAlert::from).collect())
    }

    /// How far the log and the read model have come.
    async fn log(&self, ctx: &Context<'_>) -> LogInfo {
        let engine = ctx.data_unchecked::<Engine>();
        LogInfo { committed: engine.store().committed(), projected: engine.projected() }
    }
}

fn known_service(model: &ReadModel, id: Uuid) -> Result<()> {
    if model.services.contains_key(&id) {
        Ok(())
    } else {
        Err(ApiError::Domain(forlop_domain::DomainError::NotFound(format!("service {id} not found"))).gql())
    }
}
