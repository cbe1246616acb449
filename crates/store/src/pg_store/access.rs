//! The access log in PostgreSQL, beside the event log and under the same rules: canonical records
//! chained by SHA-256 (the same bytes and hashes as the file log), positions handed out under the
//! `forlop_access_head` row's lock, and concurrent appends group-committed by one writer task, one
//! transaction and one WAL flush per group, before any response that relied on them is sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Row;

use super::{as_i64, db_error, hash_of, pool_error, snapshot};
use crate::access_log::*;
use crate::hash::{chain_hash, Hash, GENESIS_HASH};
use crate::StoreError;

const MAX_GROUP: usize = 1024;

struct Request {
    records: Vec<AccessRecord>,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// This node's view of the head (other nodes move it too: `verify` reads the database's).
struct Shared {
    committed: AtomicU64,
    head: Mutex<Hash>,
    failure: Mutex<Option<String>>,
}

pub struct PgAccessLog {
    pool: Pool,
    requests: mpsc::UnboundedSender<Request>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PgAccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAccessLog").field("committed", &self.committed()).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn stored(row: &Row) -> Result<StoredAccessRecord, StoreError> {
    let position = row.get::<_, i64>(0) as u64;
    let mut value: Vec<u8> = row.get(1);
    value.extend_from_slice(row.get::<_, &[u8]>(2));
    decode(position, &value)
}

impl PgAccessLog {
    pub(super) async fn open(pool: Pool) -> Result<PgAccessLog, StoreError> {
        let client = pool.get().await.map_err(pool_error)?;
        let row =
            client.query_one("SELECT next_position, head_hash FROM forlop_access_head", &[]).await.map_err(db_error)?;
        let next = row.get::<_, i64>(0) as u64;
        let shared = Arc::new(Shared {
            committed: AtomicU64::new(next),
            head: Mutex::new(hash_of(next, row.get(1))?),
            failure: Mutex::new(None),
        });
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool.clone(), rx, shared.clone()));
        Ok(PgAccessLog { pool, requests, shared })
    }
}

async fn run(pool: Pool, mut rx: mpsc::UnboundedReceiver<Request>, shared: Arc<Shared>) {
    while let Some(group) = crate::group::next_group_async(&mut rx, MAX_GROUP).await {
        let started = std::time::Instant::now();
        match commit(&pool, &group).await {
            Ok((firsts, next, head)) => {
                metrics::histogram!("forlop_group_commit_seconds", "log" => "access")
                    .record(started.elapsed().as_secs_f64());
                *lock(&shared.failure) = None;
                if shared.committed.fetch_max(next, Ordering::AcqRel) < next {
                    *lock(&shared.head) = head;
                }
                for (req, first) in group.into_iter().zip(firsts) {
                    let _ = req.reply.send(first);
                }
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(error = %reason, "access log group commit failed; acknowledging none of it");
                *lock(&shared.failure) = Some(reason.clone());
                for req in group {
                    let _ = req.reply.send(Err(not_durable(&reason)));
                }
            }
        }
    }
}

type Committed = (Vec<Result<u64, StoreError>>, u64, Hash);

async fn commit(pool: &Pool, group: &[Request]) -> Result<Committed, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(db_error)?;
    let row = tx
        .query_one("SELECT next_position, head_hash FROM forlop_access_head FOR UPDATE", &[])
        .await
        .map_err(db_error)?;
    let mut position = row.get::<_, i64>(0) as u64;
    let mut hash = hash_of(position, row.get(1))?;
    let (mut positions, mut patients, mut ats, mut emergencies, mut bodies, mut hashes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut firsts = Vec::with_capacity(group.len());
    for req in group {
        // A request's records are placed only if all of them encode.
        let mut placed = Vec::with_capacity(req.records.len());
        let (mut p, mut h) = (position, hash);
        let encoded: Result<(), StoreError> = req.records.iter().try_for_each(|r| {
            let body = encode(r, p, Vec::with_capacity(200))?;
            h = chain_hash(&h, &body);
            placed.push((p, r, body, h));
            p += 1;
            Ok(())
        });
        if let Err(e) = encoded {
            firsts.push(Err(e));
            continue;
        }
        firsts.push(Ok(position));
        for (p, r, body, h) in placed {
            positions.push(as_i64(p));
            patients.push(r.patient_id);
            ats.push(r.at.timestamp_nanos_opt().unwrap_or_default());
            emergencies.push(r.outcome.needs_follow_up());
            bodies.push(body);
            hashes.push(h.to_vec());
        }
        (position, hash) = (p, h);
    }
    if !positions.is_empty() {
        tx.execute(
            "INSERT INTO forlop_access (position, patient_id, at_ns, emergency, record, hash) \
             SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bigint[], $4::boolean[], $5::bytea[], $6::bytea[])",
            &[&positions, &patients, &ats, &emergencies, &bodies, &hashes],
        )
        .await
        .map_err(db_error)?;
        tx.execute(
            "UPDATE forlop_access_head SET next_position = $1, head_hash = $2",
            &[&as_i64(position), &hash.as_slice()],
        )
        .await
        .map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)?;
    Ok((firsts, position, hash))
}

#[async_trait]
impl AccessLog for PgAccessLog {
    async fn append(&self, records: Vec<AccessRecord>) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(self.committed());
        }
        for r in &records {
            validate(r)?;
        }
        let (reply, answer) = oneshot::channel();
        let gone = || not_durable("the PostgreSQL access-log writer stopped");
        self.requests.send(Request { records, reply }).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    async fn query(
        &self,
        filter: &AccessFilter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredAccessRecord>, StoreError> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        let ns = |t: Option<chrono::DateTime<chrono::Utc>>| t.and_then(|t| t.timestamp_nanos_opt());
        let client = self.pool.get().await.map_err(pool_error)?;
        let statement = client
            .prepare_cached(
                "SELECT position, record, hash FROM forlop_access WHERE position >= $1 \
                 AND ($2::uuid IS NULL OR patient_id = $2) AND ($3::bigint IS NULL OR at_ns >= $3) \
                 AND ($4::bigint IS NULL OR at_ns < $4) AND (NOT $5 OR emergency) ORDER BY position LIMIT $6",
            )
            .await
            .map_err(db_error)?;
        let rows = client
            .query(
                &statement,
                &[
                    &as_i64(start),
                    &filter.patient_id,
                    &ns(filter.from),
                    &ns(filter.to),
                    &filter.emergency_only,
                    &as_i64(limit as u64),
                ],
            )
            .await
            .map_err(db_error)?;
        rows.iter().map(stored).collect()
    }

    fn committed(&self) -> u64 {
        self.shared.committed.load(Ordering::Acquire)
    }

    fn head_hash(&self) -> Hash {
        *lock(&self.shared.head)
    }

    async fn verify(&self) -> Result<AccessVerifyReport, StoreError> {
        const PAGE: i64 = 10_000;
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = snapshot(&mut client).await?;
        let head =
            tx.query_one("SELECT next_position, head_hash FROM forlop_access_head", &[]).await.map_err(db_error)?;
        let end = head.get::<_, i64>(0) as u64;
        let page = tx
            .prepare("SELECT position, record, hash, patient_id FROM forlop_access WHERE position >= $1 ORDER BY position LIMIT $2")
            .await
            .map_err(db_error)?;
        let (mut previous, mut next) = (GENESIS_HASH, 0u64);
        loop {
            let rows = tx.query(&page, &[&as_i64(next), &PAGE]).await.map_err(db_error)?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let corrupt = |reason: String| StoreError::Corrupt { position: next, reason };
                let position = row.get::<_, i64>(0) as u64;
                if position != next {
                    return Err(corrupt(format!("gap: next stored position is {position}")));
                }
                let body: &[u8] = row.get(1);
                let r = stored(row)?;
                if chain_hash(&previous, body) != r.hash {
                    return Err(corrupt("hash chain broken: content or order changed".into()));
                }
                if row.get::<_, uuid::Uuid>(3) != r.record.patient_id {
                    return Err(corrupt("the patient column disagrees with the record".into()));
                }
                previous = r.hash;
                next += 1;
            }
        }
        let head_hash = hash_of(end, head.get(1))?;
        if next != end || head_hash != previous {
            return Err(StoreError::Corrupt {
                position: next.min(end),
                reason: format!("the head says {end} records, the log holds {next}"),
            });
        }
        Ok(AccessVerifyReport { records: next, head_hash: previous })
    }

    fn failure(&self) -> Option<String> {
        lock(&self.shared.failure).clone().map(|r| format!("access log is not durable: {r}"))
    }
}
