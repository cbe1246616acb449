//! The tables, created by embedded migrations applied at open (under an advisory lock, so two
//! nodes starting together apply each once).

use tokio_postgres::Client;

use super::db_error;
use crate::StoreError;

/// Ordered migrations; a migration is never edited once released, only followed by another.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
    -- One row per event. Times in nanoseconds (timestamptz keeps microseconds only, and the
    -- hash covers nanoseconds). The payload is bytes as the client's JSON was hashed.
    CREATE TABLE forlop_events (
        position        bigint   PRIMARY KEY CHECK (position >= 0),
        id              uuid     NOT NULL UNIQUE,
        stream          text     NOT NULL,
        version         bigint   NOT NULL CHECK (version >= 0),
        event_type      text     NOT NULL,
        schema_version  integer  NOT NULL,
        occurred_at_ns  bigint   NOT NULL,
        recorded_at_ns  bigint   NOT NULL,
        actor           text     NOT NULL,
        correlation_id  uuid,
        causation_id    uuid,
        payload         bytea    NOT NULL,
        hash            bytea    NOT NULL CHECK (length(hash) = 32),
        UNIQUE (stream, version)
    );
    -- The head of the log: the next position and the hash to chain from. Every group commit
    -- takes this row's lock first, so positions are handed out and committed in one order.
    CREATE TABLE forlop_head (
        singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        next_position  bigint  NOT NULL,
        head_hash      bytea   NOT NULL CHECK (length(head_hash) = 32)
    );
    INSERT INTO forlop_head VALUES (true, 0, decode(repeat('00', 32), 'hex'));
    "#,
    ),
    (
        2,
        r#"
    -- The vault's key records (data keys wrapped by the master key) and the blind index: the
    -- only rows forlop ever deletes (forgetPatient destroys the data key).
    CREATE TABLE forlop_keys (
        patient_id   uuid  PRIMARY KEY,
        record       bytea NOT NULL,
        blind_index  bytea UNIQUE CHECK (length(blind_index) = 32)
    );
    -- Bumped by every key write, so key rotation can refuse to overwrite what it did not read.
    CREATE TABLE forlop_keys_generation (
        singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        generation  bigint  NOT NULL
    );
    INSERT INTO forlop_keys_generation VALUES (true, 0);

    -- The access log, chained like the event log: canonical record bytes and their hash, with
    -- the columns its queries filter on.
    CREATE TABLE forlop_access (
        position    bigint   PRIMARY KEY CHECK (position >= 0),
        patient_id  uuid     NOT NULL,
        at_ns       bigint   NOT NULL,
        emergency   boolean  NOT NULL,
        record      bytea    NOT NULL,
        hash        bytea    NOT NULL CHECK (length(hash) = 32)
    );
    CREATE INDEX forlop_access_by_patient ON forlop_access (patient_id, position);
    CREATE TABLE forlop_access_head (
        singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        next_position  bigint  NOT NULL,
        head_hash      bytea   NOT NULL CHECK (length(head_hash) = 32)
    );
    INSERT INTO forlop_access_head VALUES (true, 0, decode(repeat('00', 32), 'hex'));
    "#,
    ),
    (
        3,
        r#"
    -- Present while `forlop restore --to-store` writes this database: nodes refuse to open it
    -- until the restore is run again to its end, which deletes the row.
    CREATE TABLE forlop_restoring (
        singleton   boolean      PRIMARY KEY DEFAULT true CHECK (singleton),
        started_at  timestamptz  NOT NULL DEFAULT now()
    );
    "#,
    ),
];

/// Applies the migrations this database has not seen.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client
        .batch_execute(
            "SELECT pg_advisory_lock(7203114); \
             CREATE TABLE IF NOT EXISTS forlop_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());",
        )
        .await
        .map_err(db_error)?;
    let result = apply(client).await;
    let unlocked = client.batch_execute("SELECT pg_advisory_unlock(7203114)").await.map_err(db_error);
    result.and(unlocked)
}

async fn apply(client: &mut Client) -> Result<(), StoreError> {
    let applied: Vec<i32> = client
        .query("SELECT version FROM forlop_migrations", &[])
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let tx = client.transaction().await.map_err(db_error)?;
        tx.batch_execute(sql).await.map_err(db_error)?;
        tx.execute("INSERT INTO forlop_migrations (version) VALUES ($1)", &[version]).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    Ok(())
}
