//! Records a synthetic dataset through the domain rules, many patients at once (group commit).

use std::sync::Arc;

use anyhow::Context;
use forlop_engine::new_event;
use forlop_seed::{decide_stream, Catalog, Dataset};
use forlop_store::{EventStore, ExpectedVersion, Metadata};
use futures::{StreamExt, TryStreamExt};

/// Patients in the `serve --demo` dataset.
pub const DEMO_PATIENTS: usize = 500;
/// Appends in flight while seeding.
const CONCURRENCY: usize = 64;

fn seeder() -> Metadata {
    Metadata { actor: "forlop-seed".into(), correlation_id: None, causation_id: None }
}

/// Returns the number of events newly written.
pub async fn load(store: &Arc<dyn EventStore>, dataset: &Dataset) -> anyhow::Result<u64> {
    let catalog = Catalog::from_reference(&dataset.reference);
    let progress = crate::progress::bar(Some(dataset.event_count() as u64), "seeding events");
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
            let (catalog, progress) = (&catalog, &progress);
            async move {
                let events = decide_stream(catalog, commands).context("synthetic pathway broke a domain rule")?;
                let stream = commands[0].command.stream().name();
                let n = events.len() as u64;
                let batch = events.iter().map(|(id, e)| new_event(*id, e, seeder())).collect();
                let res = store.append(&stream, ExpectedVersion::Any, batch).await?;
                progress.inc(n);
                anyhow::Ok(if res.deduplicated { 0 } else { n })
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    progress.finish_and_clear();
    Ok(written + counts.iter().sum::<u64>())
}
