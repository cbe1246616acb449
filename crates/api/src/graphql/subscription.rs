//! Live subscriptions, fed from the committed log (never from the command path).
//!
//! The engine authorises, access-logs and bounds each one by the token (`Engine::follow_events`,
//! `Engine::follow_care_alerts`: one record per patient per subscription, nothing after the
//! token's expiry); the session loop in `http/websocket.rs` also closes the socket with 4403 at expiry.

use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::analytics::CareAlert;
use super::objects::LogEvent;

use super::context::{caller, engine, live_token_expiry};
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
        let (engine, caller) = (engine(ctx), caller(ctx)?.clone());
        let expiry = live_token_expiry(ctx)?;
        let after = match after {
            None => None,
            Some(p) => {
                Some(p.checked_add(1).ok_or_else(|| ApiError::invalid("after is past the end of any log").gql())?)
            }
        };
        let events =
            engine.follow_events(caller, patient_id, from_position.or(after), expiry.map(|e| e.0)).await.gql()?;
        Ok(events.map(|e| e.map(LogEvent).gql()))
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
        let (engine, caller) = (engine(ctx), caller(ctx)?.clone());
        let expiry = live_token_expiry(ctx)?;
        let alerts = engine.follow_care_alerts(caller, service_id, from_position, expiry.map(|e| e.0)).await.gql()?;
        Ok(alerts.map(|a| a.map(CareAlert::from).gql()))
    }
}
