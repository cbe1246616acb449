//! Appends of realistic events to any event store: batches one after another, and many
//! concurrent writers of one event each (group commit). Measured on sled and on PostgreSQL.

use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use forlop_store::{EventStore, ExpectedVersion};

use crate::stats::eps;

/// Events per append in the batch measurements.
pub const BATCH: usize = 1000;
/// Concurrent writers in the concurrent measurements.
pub const WRITERS: usize = 64;

/// A realistic session event, as the API would store it.
pub fn session_event(rng: u64) -> forlop_store::NewEvent {
    use forlop_domain::events::SessionRecorded;
    let at = chrono::DateTime::from_timestamp(1_450_000_000 + (rng % 300_000_000) as i64, 0).unwrap_or_default();
    let e = forlop_domain::Event::SessionRecorded(SessionRecorded {
        session_id: Uuid::new_v4(),
        episode_id: Uuid::new_v4(),
        therapist_id: Uuid::new_v4(),
        attendance: forlop_domain::Attendance::Attended,
        at,
    });
    let meta =
        forlop_store::Metadata { actor: "bench".into(), correlation_id: Some(Uuid::new_v4()), causation_id: None };
    forlop_engine::new_event(Uuid::new_v4(), &e, meta)
}

/// Appends of `BATCH` realistic events each, one after another, to fresh streams; events per
/// second and the payload size.
pub async fn batched_appends(store: &dyn EventStore, events: usize) -> anyhow::Result<(f64, usize)> {
    let batches: Vec<Vec<_>> =
        (0..events / BATCH).map(|b| (0..BATCH).map(|i| session_event((b * BATCH + i) as u64)).collect()).collect();
    let size = batches[0][0].payload.len();
    let started = Instant::now();
    for (b, events) in batches.into_iter().enumerate() {
        store.append(&format!("patient-{b}"), ExpectedVersion::NoStream, events).await?;
    }
    Ok((eps(events / BATCH * BATCH, started.elapsed()), size))
}

/// `WRITERS` concurrent writers, one event per append to its own fresh stream; events per second.
pub async fn concurrent_appends(store: Arc<dyn EventStore>, events: usize) -> anyhow::Result<f64> {
    let per_writer = events / WRITERS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let stream = format!("patient-{w}-{i}");
                    store.append(&stream, ExpectedVersion::NoStream, vec![session_event(i as u64)]).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(eps(per_writer * WRITERS, started.elapsed()))
}
