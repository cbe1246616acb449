//! Records a dataset through the domain rules into an event store, many patients at once (group
//! commit): what `forlop seed`, `serve --demo` and the bench share.

use std::sync::Arc;

use anyhow::Context;
use forlop_engine::new_event;
use forlop_store::{EventStore, ExpectedVersion, Metadata};
use futures::{StreamExt, TryStreamExt};

use crate::{decide_stream, Catalog, Dataset};

/// Appends in flight while seeding.
const CONCURRENCY: usize = 64;

fn seeder() -> Metadata {
    Metadata { actor: "forlop-seed".into(), correlation_id: None, causation_id: None }
}

/// Records `dataset` (reference data first); `progress` is told the number of events of each
/// patient appended. Returns the number of events newly written.
pub async fn load(
    store: &Arc<dyn EventStore>,
    dataset: &Dataset,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<u64> {
    let catalog = Catalog::from_reference(&dataset.reference);
    let mut written = 0;
    for r in &dataset.reference {
        let events = decide_stream(&Catalog::default(), std::slice::from_ref(r)).context("reference data")?;
        let (id, event) = &events[0];
        let res = store
            .append(&r.command.stream().name(), ExpectedVersion::Any, vec![new_event(*id, event, seeder())])
            .await?;
        written += u64::from(!res.deduplicated);
    }
    let counts: Vec<u64> = futures::stream::iter(&dataset.patients)
        .map(|commands| {
            let catalog = &catalog;
            async move {
                let events = decide_stream(catalog, commands).context("synthetic pathway broke a domain rule")?;
                let stream = commands[0].command.stream().name();
                let n = events.len() as u64;
                let batch = events.iter().map(|(id, e)| new_event(*id, e, seeder())).collect();
                let res = store.append(&stream, ExpectedVersion::Any, batch).await?;
                progress(n);
                anyhow::Ok(if res.deduplicated { 0 } else { n })
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(written + counts.iter().sum::<u64>())
}
