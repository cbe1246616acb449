//! Live subscriptions, fed from the committed log (never from the command path).

use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::analytics::CareAlert;
use super::objects::LogEvent;
use forlop_engine::policy::Operation;
use forlop_engine::Engine;

use super::query::caller;
use crate::error::{ApiError, GqlResult, ToGql};

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Events as they are committed; only the given patient's when `patientId` is set. With
    /// `fromPosition` (inclusive) or `after` (exclusive), first replays the log from there, then
    /// goes live; with neither, only events committed from now on.
    async fn events(
        &self,
        ctx: &Context<'_>,
        patient_id: Option<Uuid>,
        after: Option<u64>,
        from_position: Option<u64>,
    ) -> Result<impl Stream<Item = Result<LogEvent>>> {
        let (engine, caller) = (ctx.data_unchecked::<Engine>().clone(), caller(ctx)?.clone());
        let slot = engine.subscription_slot(&caller).gql()?;
        match patient_id {
            // A patient's own stream: as for reading the patient, in full.
            Some(id) => {
                let grant = engine.read_patient(&caller, id, None, None, "events").await.gql()?;
                if !grant.is_some_and(|g| g.full) {
                    return Err(ApiError::Domain(forlop_domain::DomainError::NotFound(format!(
                        "patient {id} not found"
                    )))
                    .gql());
                }
            }
            None => engine.authorize(&caller, Operation::ReadLog).gql()?,
        }
        let after = match after {
            None => None,
            Some(p) => {
                Some(p.checked_add(1).ok_or_else(|| ApiError::invalid("after is past the end of any log").gql())?)
            }
        };
        let from = from_position.or(after).unwrap_or_else(|| engine.store().committed());
        let stream = patient_id.map(|id| forlop_domain::StreamRef::Patient(id).name());
        Ok(forlop_store::subscribe(engine.store().clone(), from)
            .filter_map(move |e| {
                let keep = match (&e, &stream) {
                    (Ok(e), Some(s)) => &e.stream == s,
                    (Ok(_), None) => true,
                    (Err(err), _) => {
                        tracing::error!(error = %err, "subscription read failed");
                        false
                    }
                };
                futures::future::ready(if keep { e.ok() } else { None })
            })
            .then(move |e| {
                let _held = &slot;
                let (engine, caller) = (engine.clone(), caller.clone());
                async move {
                    // Each event that names a patient is an access, logged before it is sent.
                    let patient = forlop_domain::StreamRef::parse(&e.stream).and_then(|s| s.patient_id());
                    engine.disclosed(&caller, patient, "events").await.gql()?;
                    Ok(LogEvent(e))
                }
            }))
    }

    /// Alerts of kinds INACTIVE and HANDOVER_NOT_NOTIFIED as the events that raise them are
    /// recorded (a release without notice; a session or other fact dated after a long silence),
    /// evaluated as of the event's clinical time with default thresholds. Each alert once per
    /// subscription. With `fromPosition`, events from that log position on are considered first.
    async fn care_alert_raised(
        &self,
        ctx: &Context<'_>,
        service_id: Option<Uuid>,
        from_position: Option<u64>,
    ) -> Result<impl Stream<Item = Result<CareAlert>>> {
        use forlop_projections::alerts::{episode_alerts, AlertKind, AlertThresholds};
        let engine = ctx.data_unchecked::<Engine>().clone();
        let caller = caller(ctx)?.clone();
        engine.authorize(&caller, Operation::CareAlerts(service_id)).gql()?;
        let slot = engine.subscription_slot(&caller).gql()?;
        let logger = engine.clone();
        let mut raised = std::collections::HashSet::new();
        let from = from_position.unwrap_or_else(|| engine.store().committed());
        Ok(forlop_store::subscribe(engine.store().clone(), from)
            .then(move |e| {
                let engine = engine.clone();
                async move {
                    let e = e.ok()?;
                    let patient_id = forlop_domain::StreamRef::parse(&e.stream)?.patient_id()?;
                    let event = forlop_domain::Event::decode(&e.event_type, e.schema_version, &e.payload).ok()?;
                    let episode_id = match &event {
                        forlop_domain::Event::SessionRecorded(x) => x.episode_id,
                        forlop_domain::Event::TherapistReleased(x) => x.episode_id,
                        forlop_domain::Event::TherapistAssigned(x) => x.episode_id,
                        forlop_domain::Event::OutcomeRecorded(x) => x.episode_id,
                        _ => return None,
                    };
                    engine.wait_projected(e.position).await.ok()?;
                    let model = engine.model();
                    let p = model.patients.get(&patient_id)?;
                    let ep = p.episode(episode_id)?;
                    let alerts = episode_alerts(p, ep, e.occurred_at, AlertThresholds::default());
                    Some(alerts.into_iter().filter(|a| a.kind != AlertKind::Unassigned).collect::<Vec<_>>())
                }
            })
            .filter_map(futures::future::ready)
            .flat_map(futures::stream::iter)
            .filter(move |a| futures::future::ready(service_id.is_none_or(|s| s == a.service_id)))
            .filter(move |a| futures::future::ready(raised.insert((a.kind, a.episode_id, a.since))))
            .then(move |a| {
                let _held = &slot;
                let (engine, caller) = (logger.clone(), caller.clone());
                async move {
                    engine.disclosed(&caller, [a.patient_id], "careAlertRaised").await.gql()?;
                    Ok(CareAlert::from(a))
                }
            }))
    }
}
