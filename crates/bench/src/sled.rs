//! The sled figures: raw sled as the baseline (batches, one insert and flush at a time), the
//! store doing the same durable work, and the access log's durable appends.

use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use forlop_store::{SledOptions, SledStore};

use crate::appends::{batched_appends, concurrent_appends, BATCH, WRITERS};
use crate::args::RunArgs;
use crate::report::Figures;
use crate::stats::eps;

fn raw_sled_batch(args: &RunArgs) -> anyhow::Result<f64> {
    let dir = args.tempdir()?;
    let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open()?;
    let value = vec![7u8; 300];
    let started = Instant::now();
    let mut key = 0u64;
    for _ in 0..args.batch_events / BATCH {
        let mut batch = sled::Batch::default();
        for _ in 0..BATCH {
            batch.insert(&key.to_be_bytes(), value.clone());
            key += 1;
        }
        db.apply_batch(batch)?;
        db.flush()?;
    }
    Ok(eps(key as usize, started.elapsed()))
}

fn raw_sled_single(args: &RunArgs) -> anyhow::Result<f64> {
    let dir = args.tempdir()?;
    let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open()?;
    let value = vec![7u8; 300];
    let n = args.single_events / 4; // one fsync each: a quarter is plenty for a stable rate
    let started = Instant::now();
    for key in 0..n as u64 {
        db.insert(key.to_be_bytes(), value.clone())?;
        db.flush()?;
    }
    Ok(eps(n, started.elapsed()))
}

async fn store_batch(args: &RunArgs) -> anyhow::Result<(f64, usize)> {
    let dir = args.tempdir()?;
    let store = SledStore::open(SledOptions::new(dir.path()))?;
    batched_appends(&store, args.batch_events).await
}

async fn store_concurrent(args: &RunArgs) -> anyhow::Result<f64> {
    let dir = args.tempdir()?;
    concurrent_appends(Arc::new(SledStore::open(SledOptions::new(dir.path()))?), args.single_events).await
}

/// Access records per second: 64 concurrent readers, one durable record each per request.
pub async fn access_log_eps(args: &RunArgs) -> anyhow::Result<f64> {
    use forlop_store::access_log::{AccessLog, AccessOutcome, AccessRecord, FileAccessLog};
    let dir = args.tempdir()?;
    let log = Arc::new(FileAccessLog::open(dir.path())?);
    let per_writer = args.single_events / WRITERS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let record = AccessRecord {
                        patient_id: Uuid::from_u128((w * per_writer + i) as u128),
                        actor_sub: format!("bench-{w}"),
                        actor_name: None,
                        role: "clinician".into(),
                        hpr_number: Some("9144889".into()),
                        operation: "Continuity".into(),
                        fields: "patient".into(),
                        outcome: AccessOutcome::Allowed,
                        reason: None,
                        correlation_id: Some(Uuid::new_v4()),
                        at: chrono::Utc::now(),
                    };
                    log.append(vec![record]).await?;
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

/// Raw sled and the store, batched and one event at a time.
pub async fn figures(args: &RunArgs, figures: &mut Figures) -> anyhow::Result<()> {
    eprintln!("bench: raw sled, batches of {BATCH} ...");
    let raw_batch = raw_sled_batch(args)?;
    eprintln!("bench: store, batches of {BATCH} ...");
    let (store_batch, event_bytes) = store_batch(args).await?;
    eprintln!("bench: raw sled, one insert + flush at a time ...");
    let raw_single = raw_sled_single(args)?;
    eprintln!("bench: store, {WRITERS} concurrent writers ...");
    let store_concurrent = store_concurrent(args).await?;
    figures.push("raw_sled_batch_eps", raw_batch, "raw sled, 300-byte values, 1000 per batch, flush per batch");
    figures.push(
        "store_batch_eps",
        store_batch,
        format!("store append, {BATCH} events of {event_bytes} B payload, durable"),
    );
    figures.push("raw_sled_single_eps", raw_single, "raw sled, insert + flush, one at a time");
    figures.push(
        "store_concurrent_eps",
        store_concurrent,
        format!("store, {WRITERS} writers, 1 event per append, durable"),
    );
    Ok(())
}
