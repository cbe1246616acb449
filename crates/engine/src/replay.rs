//! Folding the log into a read model: at start (after a checkpoint, or from position 0), for
//! `bench`, and event by event in the projector. Events are decoded off the folding thread.

use std::sync::Arc;

use forlop_domain::{Event, StreamRef};
use forlop_projections::{EventMeta, ReadModel};
use forlop_store::{EventStore, RecordedEvent, StoreError};

use crate::error::EngineError;

/// Decodes a stored event into the domain, upcasting old versions.
pub fn decode(e: &RecordedEvent) -> Result<Event, EngineError> {
    Event::decode(&e.event_type, e.schema_version, &e.payload)
        .map_err(|err| EngineError::Internal(format!("position {}: {err}", e.position)))
}

/// Folds the log from position 0 into a fresh read model. Used at startup and by `bench`.
pub async fn rebuild(store: &Arc<dyn EventStore>) -> Result<ReadModel, EngineError> {
    let mut model = ReadModel::default();
    catch_up(store, &mut model).await?;
    Ok(model)
}

/// Folds the first `end` events of the log into a fresh read model (for measurements).
pub async fn rebuild_until(store: &Arc<dyn EventStore>, end: u64) -> Result<ReadModel, EngineError> {
    let mut model = ReadModel::default();
    fold(store, &mut model, end).await?;
    Ok(model)
}

/// An event ready to fold: decoded off the folding thread.
pub(crate) type Decoded = (EventMeta, Option<Event>);

pub(crate) fn decode_for_model(e: &RecordedEvent) -> Decoded {
    let meta = EventMeta {
        position: e.position,
        stream_version: e.version,
        patient_id: StreamRef::parse(&e.stream).and_then(|s| s.patient_id()),
    };
    match Event::decode(&e.event_type, e.schema_version, &e.payload) {
        Ok(event) => (meta, Some(event)),
        Err(err) => {
            // Skip, but loudly: a newer writer may have stored a type this build does not know.
            tracing::error!(position = e.position, error = %err, "event not understood; read model skips it");
            metrics::counter!("forlop_events_unknown_total", "type" => e.event_type.clone()).increment(1);
            (meta, None)
        }
    }
}

pub(crate) fn apply(model: &mut ReadModel, (meta, event): &Decoded) {
    match event {
        Some(event) => model.apply(*meta, event),
        None => model.position = meta.position + 1,
    }
}

/// Folds every committed event after `model.position`. Reading, decoding and folding overlap:
/// one task reads pages, each page is decoded on a blocking thread of its own, and the caller
/// folds them in log order.
pub async fn catch_up(store: &Arc<dyn EventStore>, model: &mut ReadModel) -> Result<(), EngineError> {
    fold(store, model, u64::MAX).await
}

async fn fold(store: &Arc<dyn EventStore>, model: &mut ReadModel, end: u64) -> Result<(), EngineError> {
    const PAGE: u64 = 4096;
    // Decoding (JSON, timestamps, ids) costs about three times what folding does, so pages are
    // decoded side by side; the bound keeps at most a few pages in memory.
    type Page = tokio::task::JoinHandle<Vec<Decoded>>;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Page, StoreError>>(4);
    let (store, mut next) = (store.clone(), model.position);
    let reader = tokio::spawn(async move {
        loop {
            let limit = PAGE.min(end.saturating_sub(next)) as usize;
            if limit == 0 {
                return;
            }
            let page = match store.read_all(next, limit).await {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let Some(last) = page.last() else { return };
            next = last.position + 1;
            let decoding = tokio::task::spawn_blocking(move || page.iter().map(decode_for_model).collect());
            if tx.send(Ok(decoding)).await.is_err() {
                return;
            }
        }
    });
    while let Some(page) = rx.recv().await {
        let decoded = page?.await.map_err(|e| EngineError::Internal(format!("replay decoder: {e}")))?;
        for d in &decoded {
            apply(model, d);
        }
    }
    reader.await.map_err(|e| EngineError::Internal(format!("replay reader: {e}")))?;
    Ok(())
}
