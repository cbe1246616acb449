//! The writer task: takes whatever appends are queued, plans them under the head row's lock, and
//! commits them in one transaction (one WAL flush) before acknowledging any.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{as_i64, db_error, decode_row, hash_of, pool_error, Health, Shared, COLUMNS, NOTIFY_CHANNEL};
use crate::plan::{count_appended, nanos, validate_stream_name, GroupPlan, Head, Placed, Request, Stored};
use crate::*;

const MAX_GROUP: usize = 1024;

pub(super) async fn run(pool: Pool, mut rx: mpsc::UnboundedReceiver<Request>, shared: Arc<Shared>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        commit_group(&pool, group, &shared).await;
    }
}

/// What the group's appends touch, read under the head lock in two queries.
struct Prefetched {
    by_id: HashMap<Uuid, RecordedEvent>,
    versions: HashMap<String, u64>,
}

impl Stored for Prefetched {
    fn by_id(&mut self, id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        Ok(self.by_id.get(&id).cloned())
    }

    fn stream_version(&mut self, stream: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.versions.get(stream).copied())
    }
}

/// The rows to insert, column by column (inserted with one `unnest`).
#[derive(Default)]
struct Columns {
    position: Vec<i64>,
    id: Vec<Uuid>,
    stream: Vec<String>,
    version: Vec<i64>,
    event_type: Vec<String>,
    schema_version: Vec<i32>,
    occurred_at_ns: Vec<i64>,
    recorded_at_ns: Vec<i64>,
    actor: Vec<String>,
    correlation_id: Vec<Option<Uuid>>,
    causation_id: Vec<Option<Uuid>>,
    payload: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

impl Columns {
    fn push(&mut self, req: &Request, placed: &Placed) -> Result<(), StoreError> {
        for ((e, c), h) in req.events.iter().zip(&placed.committed).zip(&placed.hashes) {
            self.position.push(as_i64(c.position));
            self.id.push(e.id);
            self.stream.push(req.stream.clone());
            self.version.push(as_i64(c.version));
            self.event_type.push(e.event_type.clone());
            self.schema_version.push(i32::from(e.schema_version));
            self.occurred_at_ns.push(nanos(e.occurred_at)?);
            self.recorded_at_ns.push(nanos(e.recorded_at.unwrap_or(placed.now))?);
            self.actor.push(e.metadata.actor.clone());
            self.correlation_id.push(e.metadata.correlation_id);
            self.causation_id.push(e.metadata.causation_id);
            self.payload.push(e.payload.clone());
            self.hash.push(h.to_vec());
        }
        Ok(())
    }
}

impl Columns {
    fn push_recorded(&mut self, e: &RecordedEvent) -> Result<(), StoreError> {
        self.position.push(as_i64(e.position));
        self.id.push(e.id);
        self.stream.push(e.stream.clone());
        self.version.push(as_i64(e.version));
        self.event_type.push(e.event_type.clone());
        self.schema_version.push(i32::from(e.schema_version));
        self.occurred_at_ns.push(nanos(e.occurred_at)?);
        self.recorded_at_ns.push(nanos(e.recorded_at)?);
        self.actor.push(e.metadata.actor.clone());
        self.correlation_id.push(e.metadata.correlation_id);
        self.causation_id.push(e.metadata.causation_id);
        self.payload.push(e.payload.clone());
        self.hash.push(e.hash.to_vec());
        Ok(())
    }

    /// Inserts the rows, moves the head to `head` and notifies followers (on commit).
    async fn write(&self, tx: &deadpool_postgres::Transaction<'_>, head: &Head) -> Result<(), StoreError> {
        let c = self;
        tx.execute(
            "INSERT INTO forlop_events (position, id, stream, version, event_type, schema_version, occurred_at_ns, \
             recorded_at_ns, actor, correlation_id, causation_id, payload, hash) \
             SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::integer[], \
             $7::bigint[], $8::bigint[], $9::text[], $10::uuid[], $11::uuid[], $12::bytea[], $13::bytea[])",
            &[
                &c.position,
                &c.id,
                &c.stream,
                &c.version,
                &c.event_type,
                &c.schema_version,
                &c.occurred_at_ns,
                &c.recorded_at_ns,
                &c.actor,
                &c.correlation_id,
                &c.causation_id,
                &c.payload,
                &c.hash,
            ],
        )
        .await
        .map_err(db_error)?;
        tx.execute(
            "UPDATE forlop_head SET next_position = $1, head_hash = $2",
            &[&as_i64(head.position), &head.hash.as_slice()],
        )
        .await
        .map_err(db_error)?;
        // Delivered to listeners when (and only if) the transaction commits.
        tx.execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &head.position.to_string()])
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

/// Copies recorded events (from another store) in as they are, keeping ids, positions, times
/// and hashes: they must continue the log exactly (next position, chained from its head).
pub(super) async fn copy_in(pool: &Pool, events: &[RecordedEvent]) -> Result<Head, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(db_error)?;
    let row =
        tx.query_one("SELECT next_position, head_hash FROM forlop_head FOR UPDATE", &[]).await.map_err(db_error)?;
    let start = row.get::<_, i64>(0) as u64;
    let mut head = Head { position: start, hash: hash_of(start, row.get(1))? };
    let mut columns = Columns::default();
    for e in events {
        let refuse = |reason: String| StoreError::InvalidAppend(format!("copying position {}: {reason}", e.position));
        if e.position != head.position {
            return Err(refuse(format!("the log's next position is {}", head.position)));
        }
        if crate::plan::event_hash(&head.hash, e)? != e.hash {
            return Err(refuse("its hash does not chain from the log's head".into()));
        }
        validate_stream_name(&e.stream)?;
        columns.push_recorded(e)?;
        head = Head { position: e.position + 1, hash: e.hash };
    }
    if head.position != start {
        columns.write(&tx, &head).await?;
    }
    tx.commit().await.map_err(db_error)?;
    Ok(head)
}

/// Text PostgreSQL cannot store (NUL) would fail the whole group's insert, so it is refused per
/// append before planning, as every backend refuses it.
fn storable(req: &Request) -> Result<(), StoreError> {
    if req.events.iter().any(|e| e.event_type.contains('\0') || e.metadata.actor.contains('\0')) {
        return Err(StoreError::InvalidAppend("event type and actor must not contain NUL".into()));
    }
    Ok(())
}

async fn commit_group(pool: &Pool, group: Vec<Request>, shared: &Shared) {
    let started = std::time::Instant::now();
    match place_and_commit(pool, &group).await {
        Ok((results, head)) => {
            Health::set(&shared.health.writer, None);
            if let Some(head) = head {
                metrics::histogram!("forlop_group_commit_seconds", "log" => "events")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("forlop_group_commit_size", "log" => "events").record(group.len() as f64);
                count_appended(&group, &results);
                shared.advance(head.position);
            }
            for (req, result) in group.into_iter().zip(results) {
                let _ = req.reply.send(result);
            }
        }
        Err(e) => {
            // Whether a failed COMMIT took effect is unknown; the client's retry with the same
            // event ids is safe either way (idempotency), so nothing here guesses.
            let reason = e.to_string();
            tracing::error!(error = %reason, appends = group.len(), "group commit failed; acknowledging none of it");
            Health::set(&shared.health.writer, Some(reason.clone()));
            for req in group {
                let _ = req.reply.send(Err(StoreError::Unavailable(reason.clone())));
            }
        }
    }
}

type Planned = (Vec<Result<AppendResult, StoreError>>, Option<Head>);

/// Plans and commits the group; Ok(.., Some(head)) when something was written.
async fn place_and_commit(pool: &Pool, group: &[Request]) -> Result<Planned, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(db_error)?;
    let row =
        tx.query_one("SELECT next_position, head_hash FROM forlop_head FOR UPDATE", &[]).await.map_err(db_error)?;
    let start = row.get::<_, i64>(0) as u64;
    let mut head = Head { position: start, hash: hash_of(start, row.get(1))? };

    let valid = |r: &&Request| validate_stream_name(&r.stream).is_ok() && storable(r).is_ok();
    let ids: Vec<Uuid> = group.iter().filter(valid).flat_map(|r| r.events.iter().map(|e| e.id)).collect();
    let mut streams: Vec<&str> = group.iter().filter(valid).map(|r| r.stream.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    let known = format!("SELECT {COLUMNS} FROM forlop_events WHERE id = ANY($1)");
    let by_id = tx
        .query(&known, &[&ids])
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| decode_row(r).map(|e| (e.id, e)))
        .collect::<Result<_, _>>()?;
    let versions = tx
        .query(
            "SELECT s, (SELECT max(version) FROM forlop_events WHERE stream = s) FROM unnest($1::text[]) AS s",
            &[&streams],
        )
        .await
        .map_err(db_error)?
        .iter()
        .filter_map(|r| r.get::<_, Option<i64>>(1).map(|v| (r.get::<_, String>(0), v as u64)))
        .collect();
    let mut stored = Prefetched { by_id, versions };

    let mut plan = GroupPlan::default();
    let mut columns = Columns::default();
    let mut results = Vec::with_capacity(group.len());
    for (i, req) in group.iter().enumerate() {
        let result =
            storable(req).and_then(|()| plan.plan(group, i, &mut stored, &mut head)).and_then(|(result, placed)| {
                if let Some(p) = placed {
                    columns.push(req, &p)?;
                }
                Ok(result)
            });
        results.push(result);
    }
    if head.position == start {
        tx.rollback().await.map_err(db_error)?;
        return Ok((results, None));
    }
    columns.write(&tx, &head).await?;
    tx.commit().await.map_err(db_error)?;
    Ok((results, Some(head)))
}
