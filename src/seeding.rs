//! Records a synthetic dataset (`forlop_seed::load`) with a progress bar.

use std::sync::Arc;

use forlop_seed::Dataset;
use forlop_store::EventStore;

/// Patients in the `serve --demo` dataset.
pub const DEMO_PATIENTS: usize = 500;

/// Returns the number of events newly written.
pub async fn load(store: &Arc<dyn EventStore>, dataset: &Dataset) -> anyhow::Result<u64> {
    let progress = crate::progress::bar(Some(dataset.event_count() as u64), "seeding events");
    let written = forlop_seed::load(store, dataset, &|n| progress.inc(n)).await?;
    progress.finish_and_clear();
    Ok(written)
}
