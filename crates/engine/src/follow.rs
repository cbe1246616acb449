//! Following the committed log for a caller (subscriptions): authorised, access-logged and
//! bounded by the caller's token in one place, so that an adapter hands on what it is given.
//!
//! A follow lives only as long as its caller's token: it delivers nothing once `until` (the
//! token's expiry plus leeway) has passed, and writes no access record as if it had. Each patient
//! it discloses is access-logged once per follow, durably, before the first of their events or
//! alerts is handed over: that a subscriber saw this patient is the fact the patient and an
//! auditor need, and one record per event flooded the access log and `myAccessLog`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use forlop_projections::alerts::{episode_alerts, AlertKind, AlertThresholds, CareAlert};
use forlop_store::RecordedEvent;
use futures::{Stream, StreamExt};
use uuid::Uuid;

use crate::policy::Operation;
use crate::subscriptions::SubscriptionSlot;
use crate::{Caller, Engine, EngineError};

/// The patients a follow has disclosed so far, each logged once. Shared by the steps of one
/// stream, which run one at a time: a patient is added only once their record is durable, so a
/// failed write is tried again with their next event rather than skipped.
#[derive(Clone, Default)]
struct Disclosed(Arc<parking_lot::Mutex<HashSet<Uuid>>>);

impl Disclosed {
    fn of(patient: Uuid) -> Disclosed {
        let d = Disclosed::default();
        d.0.lock().insert(patient);
        d
    }

    /// Logs `patient` as disclosed to `caller`, unless this follow has already.
    async fn once(
        &self,
        engine: &Engine,
        caller: &Caller,
        patient: Option<Uuid>,
        fields: &str,
    ) -> Result<(), EngineError> {
        let Some(patient) = patient.filter(|p| !self.0.lock().contains(p)) else { return Ok(()) };
        engine.disclosed(caller, [patient], fields).await?;
        self.0.lock().insert(patient);
        Ok(())
    }
}

fn passed(until: Option<SystemTime>) -> bool {
    until.is_some_and(|t| SystemTime::now() >= t)
}

fn expired() -> EngineError {
    EngineError::Unauthenticated("the connection's token has expired".into())
}

impl Engine {
    /// Live subscriptions on this node.
    pub fn live_subscriptions(&self) -> usize {
        self.subscriptions.live()
    }

    /// Takes one of the caller's subscription slots, or refuses when they hold the maximum.
    pub fn subscription_slot(&self, caller: &Caller) -> Result<SubscriptionSlot, EngineError> {
        self.subscriptions.take(caller.principal.sub.clone())
    }

    /// Events as they are committed from `from` (None: from now on), only `patient`'s when
    /// given (read as `read_patient` would, in full; the whole log needs `ReadLog`), until the
    /// caller's token stops being accepted at `until`.
    pub async fn follow_events(
        &self,
        caller: Caller,
        patient: Option<Uuid>,
        from: Option<u64>,
        until: Option<SystemTime>,
    ) -> Result<impl Stream<Item = Result<RecordedEvent, EngineError>> + Send + 'static, EngineError> {
        if passed(until) {
            return Err(expired());
        }
        let slot = self.subscription_slot(&caller)?;
        let disclosed = match patient {
            // A patient's own stream: as for reading the patient, in full. That read is logged
            // (durably, before this returns) and is the follow's record of the patient.
            Some(id) => {
                let grant = self.read_patient(&caller, id, None, None, "events").await?;
                if !grant.is_some_and(|g| g.is_full()) {
                    return Err(forlop_domain::DomainError::NotFound(format!("patient {id} not found")).into());
                }
                Disclosed::of(id)
            }
            None => {
                self.authorize(&caller, Operation::ReadLog)?;
                Disclosed::default()
            }
        };
        let from = from.unwrap_or_else(|| self.store().committed());
        let stream = patient.map(|id| forlop_domain::StreamRef::Patient(id).name());
        let engine = self.clone();
        Ok(forlop_store::subscribe(self.store().clone(), from)
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
                    if passed(until) {
                        return None;
                    }
                    let patient = forlop_domain::StreamRef::parse(&e.stream).and_then(|s| s.patient_id());
                    Some(disclosed.once(&engine, &caller, patient, "events").await.map(|()| e))
                }
            })
            .filter_map(futures::future::ready))
    }

    /// Alerts of kinds INACTIVE and HANDOVER_NOT_NOTIFIED as the events that raise them are
    /// committed, each evaluated as of its event's clinical time with default thresholds and
    /// given once per follow; for `service` or, with `Operation::CareAlerts(None)`, all.
    pub async fn follow_care_alerts(
        &self,
        caller: Caller,
        service: Option<Uuid>,
        from: Option<u64>,
        until: Option<SystemTime>,
    ) -> Result<impl Stream<Item = Result<CareAlert, EngineError>> + Send + 'static, EngineError> {
        if passed(until) {
            return Err(expired());
        }
        self.authorize(&caller, Operation::CareAlerts(service))?;
        let slot = self.subscription_slot(&caller)?;
        let disclosed = Disclosed::default();
        let (engine, logger) = (self.clone(), self.clone());
        let mut raised = HashSet::new();
        let from = from.unwrap_or_else(|| self.store().committed());
        Ok(forlop_store::subscribe(self.store().clone(), from)
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
            .filter(move |a| futures::future::ready(service.is_none_or(|s| s == a.service_id)))
            .filter(move |a| futures::future::ready(raised.insert((a.kind, a.episode_id, a.since))))
            .then(move |a| {
                let _held = &slot;
                let (engine, caller, disclosed) = (logger.clone(), caller.clone(), disclosed.clone());
                async move {
                    if passed(until) {
                        return None;
                    }
                    let logged = disclosed.once(&engine, &caller, Some(a.patient_id), "careAlertRaised").await;
                    Some(logged.map(|()| a))
                }
            })
            .filter_map(futures::future::ready))
    }
}
