//! Where the logs live: sled in the data directory (the default, one node), or PostgreSQL
//! (`--store postgres://…`, shared by several nodes; the data directory then keeps only this
//! node's read-model checkpoint and FHIR indexes).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use forlop_engine::{EngineParts, Settings};
use forlop_store::access_log::{AccessLog, FileAccessLog};
use forlop_store::{EventStore, PgOptions, PgStore, SledOptions, SledStore};
use forlop_vault::MasterKey;

#[derive(Debug, Clone)]
pub enum Backend {
    Sled(SledOptions),
    /// The URL, and the CA file TLS trusts (`sslmode=require`; else the system's roots).
    Postgres {
        url: String,
        ca_file: Option<PathBuf>,
    },
}

impl Backend {
    /// sled in `data`, unless `store` names a PostgreSQL database.
    pub fn new(data: &Path, store: Option<&str>) -> anyhow::Result<Backend> {
        match store {
            None => Ok(Backend::Sled(SledOptions::new(data))),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let ca_file = std::env::var_os("FORLOP_STORE_CA_FILE").map(PathBuf::from);
                Ok(Backend::Postgres { url: url.to_owned(), ca_file })
            }
            Some(other) => {
                let shown: String = other.chars().take(20).collect();
                bail!("--store takes a postgres:// URL (without it, sled in --data); got {shown:?}…")
            }
        }
    }

    /// A CA file given as a flag, over the environment's.
    pub fn with_ca_file(self, ca: Option<PathBuf>) -> Backend {
        match self {
            Backend::Postgres { url, ca_file } => Backend::Postgres { url, ca_file: ca.or(ca_file) },
            sled => sled,
        }
    }

    /// sled's page cache, where one was asked for.
    pub fn with_sled_cache(self, bytes: Option<u64>) -> Backend {
        match (self, bytes) {
            (Backend::Sled(options), Some(cache_bytes)) => Backend::Sled(SledOptions { cache_bytes, ..options }),
            (other, _) => other,
        }
    }

    pub fn is_sled(&self) -> bool {
        matches!(self, Backend::Sled(_))
    }

    /// PostgreSQL, refused while an interrupted restore has it marked.
    async fn postgres(url: &str, ca_file: &Option<PathBuf>) -> anyhow::Result<PgStore> {
        let store = Self::connect(url, ca_file).await?;
        if store.is_restoring().await? {
            bail!(
                "the PostgreSQL store named by --store holds an interrupted restore: run the same \
                 `forlop restore --to-store` again to complete it, or drop the database"
            );
        }
        Ok(store)
    }

    async fn connect(url: &str, ca_file: &Option<PathBuf>) -> anyhow::Result<PgStore> {
        let mut options = PgOptions::new(url);
        options.ca_file = ca_file.clone();
        // The URL may carry a password: never name it in the error.
        PgStore::open(options).await.context("opening the PostgreSQL store named by --store")
    }

    /// The PostgreSQL store `forlop restore --to-store` writes, opened even when marked as
    /// being restored (the restore completes it).
    pub async fn restore_target(&self) -> anyhow::Result<PgStore> {
        match self {
            Backend::Postgres { url, ca_file } => Self::connect(url, ca_file).await,
            Backend::Sled(_) => bail!("a restore into sled goes through --to DIR"),
        }
    }

    /// The event log alone.
    pub async fn open_store(&self) -> anyhow::Result<Arc<dyn EventStore>> {
        Ok(match self {
            Backend::Sled(options) => Arc::new({
                refuse_partial_restore(&options.path)?;
                SledStore::open(options.clone())
                    .with_context(|| format!("opening the store in {}", options.path.display()))?
            }),
            Backend::Postgres { url, ca_file } => Arc::new(Self::postgres(url, ca_file).await?),
        })
    }

    /// The event log and what the engine keeps beside it (access log, key table, checkpoint).
    pub async fn open_engine(
        &self,
        data: &Path,
        master: MasterKey,
        settings: Settings,
    ) -> anyhow::Result<(Arc<dyn EventStore>, EngineParts)> {
        match self {
            Backend::Sled(_) => {
                refuse_partial_restore(data)?;
                // Before the event log: the read-model checkpoint starts decoding while sled opens.
                let parts = forlop_layout::sled_parts(data, master, settings)?;
                Ok((self.open_store().await?, parts))
            }
            Backend::Postgres { url, ca_file } => {
                let store = Self::postgres(url, ca_file).await?;
                let access = Arc::new(store.access_log().await?);
                let parts = EngineParts::new(data, access, Arc::new(store.key_table()), master, settings)?;
                Ok((Arc::new(store), parts))
            }
        }
    }

    /// The three stores a backup copies (a stopped server's data directory, or PostgreSQL while
    /// nodes run: the logs are append-only, so a backup read to a position is consistent).
    pub async fn open_sources(&self) -> anyhow::Result<forlop_backup::Sources> {
        Ok(match self {
            Backend::Sled(options) => forlop_backup::Sources {
                events: self.open_store().await?,
                access: Arc::new(FileAccessLog::open(&forlop_layout::access_dir(&options.path))?),
                keys: Arc::new(forlop_store::key_table::KeyTable::open(&forlop_layout::keys_dir(&options.path))?),
            },
            Backend::Postgres { url, ca_file } => {
                let store = Self::postgres(url, ca_file).await?;
                forlop_backup::Sources {
                    access: Arc::new(store.access_log().await?),
                    keys: Arc::new(store.key_table()),
                    events: Arc::new(store),
                }
            }
        })
    }

    /// The vault's key table alone (for key rotation).
    pub async fn open_key_table(&self) -> anyhow::Result<Arc<dyn forlop_store::key_table::KeyStore>> {
        Ok(match self {
            Backend::Sled(options) => {
                Arc::new(forlop_store::key_table::KeyTable::open(&forlop_layout::keys_dir(&options.path))?)
            }
            Backend::Postgres { url, ca_file } => Arc::new(Self::postgres(url, ca_file).await?.key_table()),
        })
    }

    /// The access log alone (for audits of a stopped server).
    pub async fn open_access_log(&self) -> anyhow::Result<Arc<dyn AccessLog>> {
        Ok(match self {
            Backend::Sled(options) => Arc::new(FileAccessLog::open(&forlop_layout::access_dir(&options.path))?),
            Backend::Postgres { url, ca_file } => Arc::new(Self::postgres(url, ca_file).await?.access_log().await?),
        })
    }
}

/// `forlop migrate`: copies a sled data directory's event log, access log and key table into an
/// empty PostgreSQL store, keeping every id, position, time and hash; then verifies both chains
/// on the target against the source's heads.
pub async fn migrate(from: &Path, to: &str) -> anyhow::Result<()> {
    const PAGE: usize = 5_000;
    let source = SledStore::open(SledOptions::new(from)).with_context(|| format!("opening {}", from.display()))?;
    let target = Backend::postgres(to, &std::env::var_os("FORLOP_STORE_CA_FILE").map(PathBuf::from)).await?;
    let access_target = target.access_log().await?;
    anyhow::ensure!(
        target.committed() == 0 && access_target.committed() == 0,
        "the PostgreSQL store is not empty ({} events, {} access records); migrate only into an empty one",
        target.committed(),
        access_target.committed()
    );
    let source_report = source.verify().await.context("the source log does not verify; nothing was copied")?;
    let bar = crate::progress::bar(Some(source.committed()), "copying events");
    let mut next = 0;
    loop {
        let page = source.read_all(next, PAGE).await?;
        let Some(last) = page.last() else { break };
        next = last.position + 1;
        target.copy_in(&page).await?;
        bar.set_position(next);
    }
    bar.finish_and_clear();

    let access_source = FileAccessLog::open(&forlop_layout::access_dir(from))?;
    let mut after = None;
    loop {
        let page = access_source.query(&Default::default(), after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        access_target.append(page.into_iter().map(|s| s.record).collect()).await?;
    }

    let keys = forlop_store::key_table::KeyTable::open(&forlop_layout::keys_dir(from))?.entries()?;
    let key_count = keys.len();
    let pg_keys = target.key_table();
    let generation = forlop_store::key_table::KeyStore::generation(&pg_keys).await?;
    forlop_store::key_table::KeyStore::replace_all_at(&pg_keys, generation, keys).await?;

    let events = target.verify().await?;
    anyhow::ensure!(events == source_report, "the copied log verifies differently: {events:?} vs {source_report:?}");
    let access = access_target.verify().await?;
    anyhow::ensure!(
        access.head_hash == access_source.head_hash() && access.records == access_source.committed(),
        "the copied access log's head differs from the source's"
    );
    eprintln!(
        "migrated {} events ({} streams, head hash {}), {} access records (head hash {}) and {key_count} key records",
        events.events,
        events.streams,
        forlop_store::to_hex(&events.head_hash),
        access.records,
        forlop_store::to_hex(&access.head_hash)
    );
    Ok(())
}

/// In a data directory while `forlop restore` writes it; every command refuses such a directory
/// until the restore is run again to its end.
pub const RESTORING: &str = "RESTORING";

/// Refuses a data directory an interrupted restore left behind.
pub fn refuse_partial_restore(data: &Path) -> anyhow::Result<()> {
    if data.join(RESTORING).exists() {
        anyhow::bail!(
            "{} holds an interrupted restore (its {RESTORING} file): run the same `forlop restore` again to complete it, \
             or delete the directory",
            data.display()
        );
    }
    Ok(())
}

/// After the last handle on the store at `data` is dropped (serve, seed, import, import-fhir):
/// see [`SledStore::settle`]. A failure
/// costs only the next start's time, so it is logged, not returned.
pub(crate) async fn settle(data: std::path::PathBuf) {
    // Never create a store where a command stopped before opening one.
    if !data.join("db").exists() {
        return;
    }
    match tokio::task::spawn_blocking(move || SledStore::settle(&data)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "sled's recovery snapshot not brought up to date; the next start replays it")
        }
        Err(e) => tracing::warn!(error = %e, "settling the store failed"),
    }
}
