//! The writer task: takes whatever appends are queued, plans them under the head row's lock, and
//! commits them in one transaction (one WAL flush) before acknowledging any.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{as_i64, db_error, decode_row, hash_of, pool_error, Health, Shared, COLUMNS, NOTIFY_CHANNEL};
use crate::plan::{count_appended, nanos, validate_stream_name, GroupPlan, Head, Placed, Request, Stored};
use crate::*;

const MAX_GROUP: usize = 1024;

pub(super) async fn run(pool: Pool, mut rx: mpsc::UnboundedReceiver<Request>, shared: Arc<Shared>) {
    while let Some(group) = crate::group::next_group_async(&mut rx, MAX_GROUP).await {
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
    /// The events of one placed append, as their rows.
    fn push(&mut self, req: &StreamAppend, placed: &Placed) -> Result<(), StoreError> {
        for ((e, c), h) in req.events.iter().zip(&placed.committed).zip(&placed.hashes) {
            self.push_event(RecordedEvent {
                id: e.id,
                stream: req.stream.clone(),
                version: c.version,
                position: c.position,
                event_type: e.event_type.clone(),
                schema_version: e.schema_version,
                occurred_at: e.occurred_at,
                recorded_at: e.recorded_at.unwrap_or(placed.now),
                metadata: e.metadata.clone(),
                payload: e.payload.clone(),
                hash: *h,
            })?;
        }
        Ok(())
    }

    fn push_event(&mut self, e: RecordedEvent) -> Result<(), StoreError> {
        self.position.push(as_i64(e.position));
        self.id.push(e.id);
        self.stream.push(e.stream);
        self.version.push(as_i64(e.version));
        self.event_type.push(e.event_type);
        self.schema_version.push(i32::from(e.schema_version));
        self.occurred_at_ns.push(nanos(e.occurred_at)?);
        self.recorded_at_ns.push(nanos(e.recorded_at)?);
        self.actor.push(e.metadata.actor);
        self.correlation_id.push(e.metadata.correlation_id);
        self.causation_id.push(e.metadata.causation_id);
        self.payload.push(e.payload);
        self.hash.push(e.hash.to_vec());
        Ok(())
    }

    /// Inserts the rows, moves the head to `head` and notifies followers (delivered on commit),
    /// in one statement: one round trip.
    async fn write(&self, tx: &deadpool_postgres::Transaction<'_>, head: &Head) -> Result<(), tokio_postgres::Error> {
        let c = self;
        let statement = tx
            .prepare_cached(
                "WITH inserted AS (INSERT INTO forlop_events (position, id, stream, version, event_type, \
                 schema_version, occurred_at_ns, recorded_at_ns, actor, correlation_id, causation_id, payload, hash) \
                 SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], \
                 $6::integer[], $7::bigint[], $8::bigint[], $9::text[], $10::uuid[], $11::uuid[], $12::bytea[], \
                 $13::bytea[])), \
                 moved AS (UPDATE forlop_head SET next_position = $14, head_hash = $15) \
                 SELECT pg_notify($16, $17)",
            )
            .await?;
        tx.execute(
            &statement,
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
                &as_i64(head.position),
                &head.hash.as_slice(),
                &NOTIFY_CHANNEL,
                &head.position.to_string(),
            ],
        )
        .await?;
        Ok(())
    }
}

/// Copies recorded events (from another store) in as they are, keeping ids, positions, times
/// and hashes: they must continue the log exactly (next position, chained from its head).
pub(super) async fn copy_in(pool: &Pool, events: &[RecordedEvent]) -> Result<Head, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(db_error)?;
    let mut head = lock_head(&tx).await?;
    let start = head.position;
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
        columns.push_event(e.clone())?;
        head = Head { position: e.position + 1, hash: e.hash };
    }
    if head.position != start {
        columns.write(&tx, &head).await.map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)?;
    Ok(head)
}

/// Text PostgreSQL cannot store (NUL) would fail the whole group's insert, so it is refused per
/// append before planning, as every backend refuses it.
fn storable(req: &Request) -> Result<(), StoreError> {
    if req.events().any(|e| e.event_type.contains('\0') || e.metadata.actor.contains('\0')) {
        return Err(StoreError::InvalidAppend("event type and actor must not contain NUL".into()));
    }
    Ok(())
}

async fn commit_group(pool: &Pool, group: Vec<Request>, shared: &Shared) {
    let started = std::time::Instant::now();
    // Appends carry new ids almost always: look none up, and let the unique index catch a retry,
    // which sends the group once more with its ids looked up.
    let outcome = match place_and_commit(pool, &group, false).await {
        Err(Retry::IdKnown) => place_and_commit(pool, &group, true).await,
        other => other,
    };
    match outcome.map_err(Retry::into_store_error) {
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

/// Takes the head row's lock (waiting for any other node's group commit to finish) and reads
/// the next position and the hash to chain from.
async fn lock_head(tx: &deadpool_postgres::Transaction<'_>) -> Result<Head, StoreError> {
    let statement =
        tx.prepare_cached("SELECT next_position, head_hash FROM forlop_head FOR UPDATE").await.map_err(db_error)?;
    let row = tx.query_one(&statement, &[]).await.map_err(db_error)?;
    let position = row.get::<_, i64>(0) as u64;
    Ok(Head { position, hash: hash_of(position, row.get(1))? })
}

type Planned = (Vec<Result<Vec<AppendResult>, StoreError>>, Option<Head>);

/// Plans and commits the group; Ok(.., Some(head)) when something was written.
/// Why a group commit failed: a store error, or a sign that an append may be a retry (an id the
/// unique index knew, or a stale expected version): plan again with the ids looked up.
enum Retry {
    IdKnown,
    Store(StoreError),
}

impl From<StoreError> for Retry {
    fn from(e: StoreError) -> Self {
        Retry::Store(e)
    }
}

impl Retry {
    fn into_store_error(self) -> StoreError {
        match self {
            Retry::Store(e) => e,
            Retry::IdKnown => StoreError::Backend("an event id was found stored after looking it up".into()),
        }
    }
}

/// Plans and commits the group; Ok(.., Some(head)) when something was written. Without
/// `look_up_ids`, every id is taken to be new and a stored one fails the insert (`IdKnown`).
async fn place_and_commit(pool: &Pool, group: &[Request], look_up_ids: bool) -> Result<Planned, Retry> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(db_error)?;
    let mut head = lock_head(&tx).await?;
    let start = head.position;

    let valid = |r: &&Request| r.parts.iter().all(|p| validate_stream_name(&p.stream).is_ok()) && storable(r).is_ok();
    let ids: Vec<Uuid> = match look_up_ids {
        true => group.iter().filter(valid).flat_map(|r| r.events().map(|e| e.id)).collect(),
        false => Vec::new(),
    };
    let mut streams: Vec<&str> =
        group.iter().filter(valid).flat_map(|r| r.parts.iter().map(|p| p.stream.as_str())).collect();
    streams.sort_unstable();
    streams.dedup();
    // Both lookups in one round trip (tokio-postgres pipelines queries awaited together).
    let by_id_sql = format!("SELECT {COLUMNS} FROM forlop_events WHERE id = ANY($1)");
    let versions_sql =
        "SELECT s, (SELECT max(version) FROM forlop_events WHERE stream = s) FROM unnest($1::text[]) AS s";
    let (known, current) =
        futures::try_join!(tx.prepare_cached(&by_id_sql), tx.prepare_cached(versions_sql)).map_err(db_error)?;
    let (id_params, stream_params): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) = ([&ids], [&streams]);
    let (known, current) =
        futures::try_join!(tx.query(&known, &id_params), tx.query(&current, &stream_params)).map_err(db_error)?;
    let by_id = known.iter().map(|r| decode_row(r).map(|e| (e.id, e))).collect::<Result<_, _>>()?;
    let versions =
        current.iter().filter_map(|r| r.get::<_, Option<i64>>(1).map(|v| (r.get::<_, String>(0), v as u64))).collect();
    let mut stored = Prefetched { by_id, versions };

    let mut plan = GroupPlan::default();
    let mut columns = Columns::default();
    let mut results = Vec::with_capacity(group.len());
    for (i, req) in group.iter().enumerate() {
        let result = storable(req).and_then(|()| plan.plan(group, i, &mut stored, &mut head)).and_then(|planned| {
            let mut results = Vec::with_capacity(planned.len());
            for ((result, placed), part) in planned.into_iter().zip(&req.parts) {
                if let Some(p) = placed {
                    columns.push(part, &p)?;
                }
                results.push(result);
            }
            Ok(results)
        });
        results.push(result);
    }
    // A retry of a stored append may carry the expected version of its first attempt, now
    // stale: only its ids tell it from a real conflict.
    if !look_up_ids && results.iter().any(|r| matches!(r, Err(StoreError::WrongExpectedVersion { .. }))) {
        return Err(Retry::IdKnown);
    }
    if head.position == start {
        tx.rollback().await.map_err(db_error)?;
        return Ok((results, None));
    }
    if let Err(e) = columns.write(&tx, &head).await {
        let id_known = e.as_db_error().is_some_and(|d| d.constraint() == Some("forlop_events_id_key"));
        return Err(if id_known && !look_up_ids { Retry::IdKnown } else { Retry::Store(db_error(e)) });
    }
    tx.commit().await.map_err(db_error)?;
    Ok((results, Some(head)))
}
