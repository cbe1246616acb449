//! The vault's key table in PostgreSQL, shared by every node. Each change is one transaction
//! that also bumps the generation row (whose lock orders key writes across nodes).
//!
//! A deleted row stays in PostgreSQL's heap until vacuumed and in its WAL until recycled, as a
//! deleted sled value stays in sled's segments: the records hold data keys only wrapped by the
//! master key, which never reaches the database, so a leftover copy is useless without it.

use async_trait::async_trait;
use deadpool_postgres::{Pool, Transaction};
use uuid::Uuid;

use super::{db_error, pool_error};
use crate::key_table::{KeyEntry, KeyStore};
use crate::{ExpectedVersion, StoreError};

/// Key records and blind index in the `forlop_keys` table.
#[derive(Clone)]
pub struct PgKeyTable {
    pub(super) pool: Pool,
}

impl std::fmt::Debug for PgKeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgKeyTable").finish_non_exhaustive()
    }
}

fn blind_bytes(b: &Option<[u8; 32]>) -> Option<&[u8]> {
    b.as_ref().map(|b| b.as_slice())
}

/// Bumps the generation, taking its row lock; returns the generation before.
async fn bump(tx: &Transaction<'_>) -> Result<u64, StoreError> {
    let row = tx
        .query_one("UPDATE forlop_keys_generation SET generation = generation + 1 RETURNING generation - 1", &[])
        .await
        .map_err(db_error)?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Writes one record; a blind index another patient held is taken over (last writer wins).
async fn put(tx: &Transaction<'_>, patient: Uuid, record: &[u8], blind: Option<&[u8]>) -> Result<(), StoreError> {
    if let Some(blind) = blind {
        tx.execute(
            "UPDATE forlop_keys SET blind_index = NULL WHERE blind_index = $1 AND patient_id <> $2",
            &[&blind, &patient],
        )
        .await
        .map_err(db_error)?;
    }
    tx.execute(
        "INSERT INTO forlop_keys (patient_id, record, blind_index) VALUES ($1, $2, $3) \
         ON CONFLICT (patient_id) DO UPDATE SET record = EXCLUDED.record, blind_index = EXCLUDED.blind_index",
        &[&patient, &record, &blind],
    )
    .await
    .map_err(db_error)?;
    Ok(())
}

#[async_trait]
impl KeyStore for PgKeyTable {
    async fn get_patient(&self, patient: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query("SELECT record FROM forlop_keys WHERE patient_id = $1", &[&patient])
            .await
            .map_err(db_error)?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    async fn put_patient(&self, patient: Uuid, record: &[u8], blind_index: Option<[u8; 32]>) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(db_error)?;
        bump(&tx).await?;
        put(&tx, patient, record, blind_bytes(&blind_index)).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn insert_patient(
        &self,
        patient: Uuid,
        record: &[u8],
        blind_index: Option<[u8; 32]>,
    ) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(db_error)?;
        bump(&tx).await?;
        // The row first, without its index entry: if another node created it meanwhile, nothing
        // (not even an index takeover) happens here.
        let inserted = tx
            .execute(
                "INSERT INTO forlop_keys (patient_id, record) VALUES ($1, $2) ON CONFLICT (patient_id) DO NOTHING",
                &[&patient, &record],
            )
            .await
            .map_err(db_error)?;
        if inserted == 0 {
            tx.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        put(&tx, patient, record, blind_bytes(&blind_index)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn find_blind_index(&self, blind_index: &[u8; 32]) -> Result<Option<Uuid>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query("SELECT patient_id FROM forlop_keys WHERE blind_index = $1", &[&blind_index.as_slice()])
            .await
            .map_err(db_error)?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    async fn forget_patient(&self, patient: Uuid) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(db_error)?;
        bump(&tx).await?;
        tx.execute("DELETE FROM forlop_keys WHERE patient_id = $1", &[&patient]).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn patients(&self) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query("SELECT patient_id, record FROM forlop_keys ORDER BY patient_id", &[])
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn any_patient(&self) -> Result<Option<(Uuid, Vec<u8>)>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row =
            client.query_opt("SELECT patient_id, record FROM forlop_keys LIMIT 1", &[]).await.map_err(db_error)?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    async fn generation(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client.query_one("SELECT generation FROM forlop_keys_generation", &[]).await.map_err(db_error)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn entries(&self) -> Result<Vec<KeyEntry>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query("SELECT patient_id, record, blind_index FROM forlop_keys ORDER BY patient_id", &[])
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|r| {
                let blind: Option<Vec<u8>> = r.get(2);
                let blind = match blind {
                    None => None,
                    Some(b) => Some(
                        <[u8; 32]>::try_from(b.as_slice())
                            .map_err(|_| StoreError::Backend("key table: malformed blind index".into()))?,
                    ),
                };
                Ok((r.get(0), r.get(1), blind))
            })
            .collect()
    }

    async fn replace_all_at(&self, expected: u64, records: Vec<KeyEntry>) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(db_error)?;
        let current = bump(&tx).await?;
        if current != expected {
            return Err(StoreError::WrongExpectedVersion {
                stream: "key_table".into(),
                expected: ExpectedVersion::Exact(expected),
                current: Some(current),
            });
        }
        tx.execute("DELETE FROM forlop_keys", &[]).await.map_err(db_error)?;
        for (patient, record, blind) in &records {
            put(&tx, *patient, record, blind_bytes(blind)).await?;
        }
        tx.commit().await.map_err(db_error)
    }
}
