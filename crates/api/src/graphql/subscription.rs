//! Live subscriptions, fed from the committed log (never from the command path).

use async_graphql::{Context, Subscription};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::objects::LogEvent;
use crate::engine::Engine;

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
    ) -> impl Stream<Item = LogEvent> {
        let engine = ctx.data_unchecked::<Engine>();
        let from = from_position.or(after.map(|p| p + 1)).unwrap_or_else(|| engine.store().committed());
        let stream = patient_id.map(|id| forlop_domain::StreamRef::Patient(id).name());
        forlop_store::subscribe(engine.store().clone(), from).filter_map(move |e| {
            let keep = match (&e, &stream) {
                (Ok(e), Some(s)) => &e.stream == s,
                (Ok(_), None) => true,
                (Err(err), _) => {
                    tracing::error!(error = %err, "subscription read failed");
                    false
                }
            };
            futures::future::ready(if keep { e.ok().map(LogEvent) } else { None })
        })
    }
}
