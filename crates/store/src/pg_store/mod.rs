//! The PostgreSQL backend, for several API nodes sharing one log.
//!
//! Positions: every group commit first locks the single `forlop_head` row (`SELECT … FOR
//! UPDATE`), reads the next position and head hash from it, inserts its events, moves the head
//! and commits. A second writer (on this node or another) waits on that row lock until the first
//! has committed, and then reads the head the first one left. So positions are handed out in
//! commit order without gaps, and any snapshot that sees position N+1 also sees N: a reader can
//! never meet a hole, and nothing is ever renumbered. The cost is one group commit at a time
//! across all nodes, which group commit makes cheap: one transaction and one WAL flush
//! (`synchronous_commit = on`) carry every append queued meanwhile on that node.
//!
//! Followers: each node learns of other nodes' commits by `LISTEN forlop_events` (each commit
//! sends `NOTIFY`) and, as a fallback that works through poolers, by polling the head.

mod access;
mod keys;
mod schema;
mod writer;

pub use access::PgAccessLog;
pub use keys::PgKeyTable;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::hash::{Hash, GENESIS_HASH};
use crate::plan::{event_hash, Request};
use crate::*;

/// The columns of `forlop_events`, in the order `decode_row` reads them.
const COLUMNS: &str = "position, id, stream, version, event_type, schema_version, occurred_at_ns, \
                       recorded_at_ns, actor, correlation_id, causation_id, payload, hash";
const NOTIFY_CHANNEL: &str = "forlop_events";

#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/db` (libpq-style key=value strings work too).
    pub url: String,
    /// Connections for reads (the writer and the listener have one each besides).
    pub pool_size: usize,
    /// How often the head is polled besides `LISTEN`.
    pub poll_interval: Duration,
    /// How long a connection attempt or a wait for a pooled connection may take.
    pub connect_timeout: Duration,
    /// A database other than the URL's (the bench's throwaway one).
    pub database: Option<String>,
    /// PEM file of the CA certificate(s) that sign the server's certificate, for TLS
    /// (`sslmode=require` in the URL); without it, the system's trusted roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            pool_size: 16,
            poll_interval: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(5),
            database: None,
            ca_file: None,
        }
    }
}

/// Why the database cannot be used right now, from the writer and the follower. Unlike sled's
/// fail-stop, this clears by itself: a lost connection loses nothing committed, and positions
/// come from the database, so nothing can be handed out twice.
#[derive(Default)]
struct Health {
    writer: Mutex<Option<String>>,
    follower: Mutex<Option<String>>,
}

impl Health {
    fn set(slot: &Mutex<Option<String>>, value: Option<String>) {
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        if s.is_some() != value.is_some() {
            match &value {
                Some(reason) => tracing::warn!(%reason, "PostgreSQL unavailable"),
                None => tracing::info!("PostgreSQL reachable again"),
            }
            metrics::gauge!("forlop_store_failed", "log" => "events").set(if value.is_some() { 1.0 } else { 0.0 });
        }
        *s = value;
    }

    fn get(&self) -> Option<String> {
        let get = |m: &Mutex<Option<String>>| m.lock().unwrap_or_else(|p| p.into_inner()).clone();
        get(&self.writer).or_else(|| get(&self.follower))
    }
}

/// What the writer, the follower and readers share.
struct Shared {
    committed: AtomicU64,
    watch: watch::Sender<u64>,
    health: Health,
}

impl Shared {
    /// Moves the committed count forward (never back) and wakes subscribers.
    fn advance(&self, to: u64) {
        if self.committed.fetch_max(to, Ordering::AcqRel) < to {
            self.watch.send_if_modified(|v| {
                let moved = *v < to;
                if moved {
                    *v = to;
                }
                moved
            });
        }
    }
}

pub struct PgStore {
    pool: Pool,
    requests: mpsc::UnboundedSender<Request>,
    shared: Arc<Shared>,
    watch: watch::Receiver<u64>,
    follower: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("committed", &self.committed()).finish()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// A database error: the database being unreachable is `Unavailable` (retry later or elsewhere),
/// anything else a backend error.
pub(crate) fn db_error(e: tokio_postgres::Error) -> StoreError {
    // The cause (a refused certificate, a reset connection) is in the source chain.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    let unreachable = match e.code() {
        None => true,
        // connection exceptions, operator intervention (shutdown), insufficient resources
        Some(code) => ["08", "57", "53"].iter().any(|class| code.code().starts_with(class)),
    };
    if unreachable {
        StoreError::Unavailable(format!("PostgreSQL: {message}"))
    } else {
        StoreError::Backend(format!("PostgreSQL: {message}"))
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_error(e),
        other => StoreError::Unavailable(format!("PostgreSQL: {other}")),
    }
}

fn pg_config(options: &PgOptions) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config =
        options.url.parse().map_err(|e| StoreError::Backend(format!("PostgreSQL URL: {e}")))?;
    config.connect_timeout(options.connect_timeout).keepalives(true).application_name("forlop");
    if let Some(db) = &options.database {
        config.dbname(db);
    }
    Ok(config)
}

/// The TLS connector: used whenever the URL's `sslmode` is not `disable` and the server offers
/// TLS, and then the server's certificate must chain to `ca_file` (or a system root) and name
/// the host: a connection is never encrypted without being authenticated.
fn tls(options: &PgOptions) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::pem::PemObject;
    let bad = |e: String| StoreError::Backend(format!("PostgreSQL TLS: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    match &options.ca_file {
        Some(path) => {
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(format!("{}: {e}", path.display())))?;
            for cert in certs {
                roots
                    .add(cert.map_err(|e| bad(format!("{}: {e}", path.display())))?)
                    .map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad(format!("{} holds no certificate", path.display())));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert); // one unreadable system root does not spoil the rest
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn hash_of(position: u64, bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt { position, reason: "hash is not 32 bytes".into() })
}

/// One row of `forlop_events` (selected as `COLUMNS`) as a recorded event.
fn decode_row(row: &Row) -> Result<RecordedEvent, StoreError> {
    let position = row.get::<_, i64>(0) as u64;
    let schema_version: i32 = row.get(5);
    Ok(RecordedEvent {
        position,
        id: row.get(1),
        stream: row.get(2),
        version: row.get::<_, i64>(3) as u64,
        event_type: row.get(4),
        schema_version: u16::try_from(schema_version)
            .map_err(|_| StoreError::Corrupt { position, reason: format!("schema version {schema_version}") })?,
        occurred_at: DateTime::from_timestamp_nanos(row.get(6)),
        recorded_at: DateTime::from_timestamp_nanos(row.get(7)),
        metadata: Metadata { actor: row.get(8), correlation_id: row.get(9), causation_id: row.get(10) },
        payload: row.get(11),
        hash: hash_of(position, row.get(12))?,
    })
}

/// A read-only transaction on one snapshot, for a verify that must see a head and the rows
/// below it as of one moment.
pub(crate) async fn snapshot(
    client: &mut deadpool_postgres::Client,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db_error)
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Connects, applies migrations and starts the writer and the follower. Needs a tokio runtime.
    pub async fn open(options: PgOptions) -> Result<PgStore, StoreError> {
        let config = pg_config(&options)?;
        let tls = tls(&options)?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1) + 1)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut client = pool.get().await.map_err(pool_error)?;
        schema::migrate(&mut client).await?;
        let head = client.query_one("SELECT next_position FROM forlop_head", &[]).await.map_err(db_error)?;
        drop(client);
        let next: i64 = head.get(0);
        let (watch_tx, watch) = watch::channel(next as u64);
        let shared =
            Arc::new(Shared { committed: AtomicU64::new(next as u64), watch: watch_tx, health: Health::default() });
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer::run(pool.clone(), rx, shared.clone()));
        let follower = tokio::spawn(follow(config, tls, options.poll_interval, shared.clone()));
        tracing::info!(events = next, "opened PostgreSQL event store");
        Ok(PgStore { pool, requests, shared, watch, follower })
    }

    /// The vault's key table in the same database.
    pub fn key_table(&self) -> PgKeyTable {
        PgKeyTable { pool: self.pool.clone() }
    }

    /// The access log in the same database, with its own group-committing writer.
    pub async fn access_log(&self) -> Result<PgAccessLog, StoreError> {
        PgAccessLog::open(self.pool.clone()).await
    }

    /// Copies events read from another store in as they are (ids, positions, times, hashes), for
    /// `forlop migrate`: they must continue this log exactly, else nothing of them is written.
    /// One transaction per call.
    pub async fn copy_in(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        let head = writer::copy_in(&self.pool, events).await?;
        self.shared.advance(head.position);
        Ok(())
    }

    /// Whether an interrupted `forlop restore` left this database partly written.
    pub async fn is_restoring(&self) -> Result<bool, StoreError> {
        Ok(!self.query("SELECT 1 FROM forlop_restoring", &[]).await?.is_empty())
    }

    /// Marks the database as being restored (`true`, before the first write) or restored to its
    /// end (`false`). Durable when this returns.
    pub async fn set_restoring(&self, restoring: bool) -> Result<(), StoreError> {
        let sql = if restoring {
            "INSERT INTO forlop_restoring DEFAULT VALUES ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM forlop_restoring"
        };
        self.query(sql, &[]).await.map(drop)
    }

    /// Flips one bit of the stored payload at `position`, for tamper-detection tests.
    #[cfg(feature = "testing")]
    pub async fn tamper(url: &str, position: u64) -> Result<(), StoreError> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(db_error)?;
        tokio::spawn(connection);
        client
            .execute(
                "UPDATE forlop_events SET payload = set_byte(payload, length(payload) - 2, \
                 get_byte(payload, length(payload) - 2) # 1) WHERE position = $1",
                &[&as_i64(position)],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let statement = client.prepare_cached(sql).await.map_err(db_error)?;
        client.query(&statement, params).await.map_err(db_error)
    }

    async fn events(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.query(sql, params).await?.iter().map(decode_row).collect()
    }
}

/// Follows the head as other nodes move it: `LISTEN` for promptness, polling as the fallback.
async fn follow(config: tokio_postgres::Config, tls: Tls, poll: Duration, shared: Arc<Shared>) {
    loop {
        let outcome = listen(&config, tls.clone(), poll, &shared).await;
        if let Err(e) = outcome {
            Health::set(&shared.health.follower, Some(e.to_string()));
        }
        tokio::time::sleep(poll).await;
    }
}

type Tls = tokio_postgres_rustls::MakeRustlsConnect;

async fn listen(config: &tokio_postgres::Config, tls: Tls, poll: Duration, shared: &Shared) -> Result<(), StoreError> {
    let (client, mut connection) = config.connect(tls).await.map_err(db_error)?;
    let (notified, mut notifications) = mpsc::unbounded_channel();
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let driver = tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                    let _ = notified.send(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let outcome = async {
        client.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")).await.map_err(db_error)?;
        let head = client.prepare("SELECT next_position FROM forlop_head").await.map_err(db_error)?;
        loop {
            let row = client.query_one(&head, &[]).await.map_err(db_error)?;
            // The database answers: whatever failed before (a write included) may be retried.
            Health::set(&shared.health.follower, None);
            Health::set(&shared.health.writer, None);
            shared.advance(row.get::<_, i64>(0) as u64);
            tokio::select! {
                n = notifications.recv() => if n.is_none() {
                    return Err(StoreError::Unavailable("PostgreSQL: the listening connection closed".into()));
                },
                _ = tokio::time::sleep(poll) => {}
            }
            // Several notifications may have queued; one read of the head answers them all.
            while notifications.try_recv().is_ok() {}
        }
    }
    .await;
    driver.abort();
    outcome
}

#[async_trait]
impl EventStore for PgStore {
    async fn append_all(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let req = Request { parts, reply };
        let gone = || StoreError::Unavailable("the PostgreSQL writer stopped".into());
        let started = std::time::Instant::now();
        self.requests.send(req).map_err(|_| gone())?;
        let result = answer.await.map_err(|_| gone())?;
        metrics::histogram!("forlop_append_seconds").record(started.elapsed().as_secs_f64());
        result
    }

    fn failure(&self) -> Option<String> {
        self.shared.health.get()
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM forlop_events WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3"
        );
        self.events(&sql, &[&stream, &as_i64(from_version), &as_i64(limit as u64)]).await
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM forlop_events WHERE position >= $1 ORDER BY position LIMIT $2");
        let events = self.events(&sql, &[&as_i64(from_position), &as_i64(limit as u64)]).await?;
        if let Some(last) = events.last() {
            // Whatever is visible is committed, and committed in position order.
            self.shared.advance(last.position + 1);
        }
        Ok(events)
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        let rows = self.query("SELECT max(version) FROM forlop_events WHERE stream = $1", &[&stream]).await?;
        Ok(rows.first().and_then(|r| r.get::<_, Option<i64>>(0)).map(|v| v as u64))
    }

    async fn event_by_id(&self, id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM forlop_events WHERE id = $1");
        Ok(self.events(&sql, &[&id]).await?.pop())
    }

    fn committed(&self) -> u64 {
        self.shared.committed.load(Ordering::Acquire)
    }

    fn watch_committed(&self) -> watch::Receiver<u64> {
        self.watch.clone()
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        const PAGE: i64 = 10_000;
        let mut client = self.pool.get().await.map_err(pool_error)?;
        // One snapshot: the head and the events below it as of one moment.
        let tx = snapshot(&mut client).await?;
        let head = tx.query_one("SELECT next_position, head_hash FROM forlop_head", &[]).await.map_err(db_error)?;
        let end = head.get::<_, i64>(0) as u64;
        let page = tx
            .prepare(&format!("SELECT {COLUMNS} FROM forlop_events WHERE position >= $1 ORDER BY position LIMIT $2"))
            .await
            .map_err(db_error)?;
        let mut previous = GENESIS_HASH;
        let mut versions: HashMap<String, u64> = HashMap::new();
        let mut next = 0u64;
        loop {
            let rows = tx.query(&page, &[&as_i64(next), &PAGE]).await.map_err(db_error)?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let e = decode_row(row)?;
                let corrupt = |reason: String| StoreError::Corrupt { position: next, reason };
                if e.position != next {
                    return Err(corrupt(format!("gap: next stored position is {}", e.position)));
                }
                if event_hash(&previous, &e)? != e.hash {
                    return Err(corrupt("hash chain broken: content or order changed".into()));
                }
                let want = versions.get(&e.stream).map_or(0, |v| v + 1);
                if e.version != want {
                    return Err(corrupt(format!("stream {} version {} where {want} was due", e.stream, e.version)));
                }
                versions.insert(e.stream, e.version);
                previous = e.hash;
                next += 1;
            }
        }
        let head_hash = hash_of(end, head.get(1))?;
        if next != end || head_hash != previous {
            return Err(StoreError::Corrupt {
                position: next.min(end),
                reason: format!("the head says {end} events ending in {}, the log holds {next}", to_hex(&head_hash)),
            });
        }
        Ok(VerifyReport { events: next, streams: versions.len() as u64, head_hash: previous })
    }
}
