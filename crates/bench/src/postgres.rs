//! `forlop-bench run --store postgres://…`: the event store on PostgreSQL against PostgreSQL's own
//! baselines, in one run on one server. Everything is written into a throwaway database created
//! for the run (`forlop_bench_<random>`, dropped at the end), never into the named one, so the
//! role in the URL needs CREATEDB.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use forlop_store::{EventStore, PgOptions, PgStore};
use tokio_postgres::NoTls;

use crate::appends::{batched_appends, concurrent_appends, session_event, BATCH, WRITERS};
use crate::report::Row;
use crate::stats::eps;

/// A database created for the run and dropped when done.
struct Scratch {
    admin: tokio_postgres::Client,
    name: String,
}

impl Scratch {
    async fn create(url: &str) -> anyhow::Result<Scratch> {
        let (admin, connection) = tokio_postgres::connect(url, NoTls).await.context("connecting to --store")?;
        tokio::spawn(connection);
        let name = format!("forlop_bench_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .context("CREATE DATABASE (the bench needs CREATEDB)")?;
        Ok(Scratch { admin, name })
    }

    async fn connect(&self, url: &str) -> anyhow::Result<tokio_postgres::Client> {
        let mut config: tokio_postgres::Config = url.parse()?;
        config.dbname(&self.name);
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn drop(self) -> anyhow::Result<()> {
        self.admin.batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name)).await?;
        Ok(())
    }
}

const RAW_TABLE: &str = "CREATE TABLE raw_events (position bigint PRIMARY KEY, id uuid NOT NULL UNIQUE, \
                         stream text NOT NULL, payload bytea NOT NULL)";

/// PostgreSQL alone: a multi-row INSERT of 1,000 rows in one transaction, repeated.
async fn raw_pg_batch(client: &mut tokio_postgres::Client, events: usize) -> anyhow::Result<f64> {
    client.batch_execute(RAW_TABLE).await?;
    let payload = session_event(0).payload;
    let started = Instant::now();
    let mut position = 0i64;
    for b in 0..events / BATCH {
        let (mut positions, mut ids, mut streams, mut payloads) = (vec![], vec![], vec![], vec![]);
        for _ in 0..BATCH {
            positions.push(position);
            ids.push(uuid::Uuid::new_v4());
            streams.push(format!("patient-{b}"));
            payloads.push(payload.clone());
            position += 1;
        }
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO raw_events SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bytea[])",
            &[&positions, &ids, &streams, &payloads],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(eps(position as usize, started.elapsed()))
}

/// PostgreSQL alone: one INSERT and COMMIT at a time, one client, `synchronous_commit = on`.
async fn raw_pg_single(client: &tokio_postgres::Client, events: usize) -> anyhow::Result<f64> {
    client.batch_execute("TRUNCATE raw_events").await?;
    let payload = session_event(0).payload;
    let insert = client.prepare("INSERT INTO raw_events VALUES ($1, $2, $3, $4)").await?;
    let started = Instant::now();
    for i in 0..events as i64 {
        // Autocommit: each statement is its own transaction and WAL flush.
        client.execute(&insert, &[&i, &uuid::Uuid::new_v4(), &format!("patient-{i}"), &payload]).await?;
    }
    Ok(eps(events, started.elapsed()))
}

/// The PostgreSQL figures, and the server's version and `synchronous_commit` for the run's record.
pub async fn run(
    url: &str,
    batch_events: usize,
    single_events: usize,
) -> anyhow::Result<(Vec<Row>, serde_json::Value)> {
    let scratch = Scratch::create(url).await?;
    let outcome = measure(url, &scratch, batch_events, single_events).await;
    scratch.drop().await.context("dropping the bench database")?;
    outcome
}

async fn measure(
    url: &str,
    scratch: &Scratch,
    batch_events: usize,
    single_events: usize,
) -> anyhow::Result<(Vec<Row>, serde_json::Value)> {
    let mut raw = scratch.connect(url).await?;
    let settings = raw.query_one("SELECT current_setting('synchronous_commit'), version()", &[]).await?;
    let (sync, version): (String, String) = (settings.get(0), settings.get(1));
    eprintln!("bench: {} (synchronous_commit = {sync})", version.split(',').next().unwrap_or(&version));
    eprintln!("bench: raw PostgreSQL, INSERTs of {BATCH} rows per transaction ...");
    let raw_batch = raw_pg_batch(&mut raw, batch_events).await?;
    eprintln!("bench: raw PostgreSQL, one INSERT + COMMIT at a time ...");
    let raw_single = raw_pg_single(&raw, single_events / 4).await?;

    let mut options = PgOptions::new(url);
    options.database = Some(scratch.name.clone());
    let store = Arc::new(PgStore::open(options).await?);
    eprintln!("bench: store on PostgreSQL, batches of {BATCH} ...");
    let (store_batch, _) = batched_appends(&*store, batch_events).await?;
    eprintln!("bench: store on PostgreSQL, {WRITERS} concurrent writers ...");
    let store_concurrent = concurrent_appends(store.clone(), single_events).await?;

    eprintln!("bench: reading the whole log back ...");
    let started = Instant::now();
    let (mut next, page) = (0, 10_000);
    loop {
        let events = store.read_all(next, page).await?;
        let Some(last) = events.last() else { break };
        next = last.position + 1;
    }
    let read_all = eps(next as usize, started.elapsed());
    drop(store);
    let server = serde_json::json!({ "version": version, "synchronous_commit": sync });
    let rows = vec![
        ("raw_pg_batch_eps", raw_batch, format!("raw PostgreSQL, multi-row INSERT of {BATCH} rows per transaction")),
        ("store_batch_eps", store_batch, format!("store on PostgreSQL, appends of {BATCH} events, committed")),
        ("raw_pg_single_eps", raw_single, "raw PostgreSQL, one INSERT + COMMIT at a time, one client".into()),
        (
            "store_concurrent_eps",
            store_concurrent,
            format!("store on PostgreSQL, {WRITERS} writers, 1 event per append, committed"),
        ),
        ("read_all_eps", read_all, "store on PostgreSQL, the whole log read back in pages of 10,000".into()),
    ];
    Ok((rows, server))
}
