//! Live subscriptions, fed from the committed log (never from the command path).
//!
//! A subscription lives only as long as the token of its connection: it is refused once the
//! token has expired, and from then on delivers nothing (the session loop in `http.rs` also
//! closes the socket with 4403 at that moment). Each patient it discloses is access-logged once
//! per subscription, before the first of their events or alerts is sent: that a subscriber saw
//! this patient is the fact the patient and an auditor need, and one record per event flooded
//! the access log and `myAccessLog` (a replay of the log wrote one for every event in it).

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::analytics::CareAlert;
use super::objects::LogEvent;
use forlop_engine::policy::Operation;
use forlop_engine::{Caller, Engine};

use super::query::caller;
use crate::error::{ApiError, GqlResult, ToGql};
use crate::http::TokenExpiry;

pub struct Subscription;

/// The connection's token expiry, refusing the subscription if it has passed already.
fn live_token(ctx: &Context<'_>) -> Result<Option<TokenExpiry>> {
    let expiry = ctx.data_opt::<TokenExpiry>().copied();
    if expiry.is_some_and(TokenExpiry::passed) {
        return Err(ApiError::Unauthenticated("the connection's token has expired".into()).gql());
    }
    Ok(expiry)
}

/// The patients a subscription has disclosed so far, each logged once. Shared by the steps of
/// one stream, which run one at a time: a patient is added only once their record is durable,
/// so a failed write is tried again with their next event rather than skipped.
#[derive(Clone, Default)]
struct Disclosed(Arc<parking_lot::Mutex<HashSet<Uuid>>>);

impl Disclosed {
    fn of(patient: Uuid) -> Disclosed {
        let d = Disclosed::default();
        d.0.lock().insert(patient);
        d
    }

    /// Logs `patient` as disclosed to `caller`, unless this subscription has already.
    async fn once(&self, engine: &Engine, caller: &Caller, patient: Option<Uuid>, fields: &str) -> Result<()> {
        let Some(patient) = patient.filter(|p| !self.0.lock().contains(p)) else { return Ok(()) };
        engine.disclosed(caller, [patient], fields).await.gql()?;
        self.0.lock().insert(patient);
        Ok(())
    }
}

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
        let expiry = live_token(ctx)?;
        let slot = engine.subscription_slot(&caller).gql()?;
        let disclosed = match patient_id {
            // A patient's own stream: as for reading the patient, in full. That read is logged
            // (durably, before this returns) and is the subscription's record of the patient.
            Some(id) => {
                let grant = engine.read_patient(&caller, id, None, None, "events").await.gql()?;
                if !grant.is_some_and(|g| g.full) {
                    return Err(ApiError::Domain(forlop_domain::DomainError::NotFound(format!(
                        "patient {id} not found"
                    )))
                    .gql());
                }
                Disclosed::of(id)
            }
            None => {
                engine.authorize(&caller, Operation::ReadLog).gql()?;
                Disclosed::default()
            }
        };
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
                let (engine, caller, disclosed) = (engine.clone(), caller.clone(), disclosed.clone());
                async move {
                    // Past the token's expiry nothing more is disclosed, nor logged as if it were.
                    if expiry.is_some_and(TokenExpiry::passed) {
                        return None;
                    }
                    // A patient's first event on this subscription is an access, logged before
                    // it is sent.
                    let patient = forlop_domain::StreamRef::parse(&e.stream).and_then(|s| s.patient_id());
                    Some(disclosed.once(&engine, &caller, patient, "events").await.map(|()| LogEvent(e)))
                }
            })
            .filter_map(futures::future::ready))
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
        let expiry = live_token(ctx)?;
        engine.authorize(&caller, Operation::CareAlerts(service_id)).gql()?;
        let slot = engine.subscription_slot(&caller).gql()?;
        let disclosed = Disclosed::default();
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
                let (engine, caller, disclosed) = (logger.clone(), caller.clone(), disclosed.clone());
                async move {
                    if expiry.is_some_and(TokenExpiry::passed) {
                        return None;
                    }
                    let logged = disclosed.once(&engine, &caller, Some(a.patient_id), "careAlertRaised").await;
                    Some(logged.map(|()| CareAlert::from(a)))
                }
            })
            .filter_map(futures::future::ready))
    }
}
