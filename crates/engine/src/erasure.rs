//! Erasure that survives copies of the key table. `forgetPatient` destroys a patient's data key,
//! but a copy of the key table taken before (a backup, a copied data directory) still holds it.
//! The log is the truth: at every start, once the read model has folded the log, the key of each
//! patient it says is forgotten is destroyed if it is present, and until then (and always) a
//! forgotten patient's national id is neither opened nor found (`access.rs`).

use std::sync::atomic::Ordering;

use uuid::Uuid;

use crate::{Engine, EngineError};

impl Engine {
    /// Destroys the data key of every patient the read model holds as forgotten, where the key
    /// table still has one; returns how many were destroyed.
    pub async fn destroy_forgotten_keys(&self) -> Result<usize, EngineError> {
        let forgotten: Vec<Uuid> = self.model().patients.values().filter(|p| p.forgotten).map(|p| p.id).collect();
        let mut destroyed = 0;
        for patient in forgotten {
            let unavailable = |e| EngineError::Unavailable(format!("the key table could not be read or written: {e}"));
            if self.vault().has_key(patient).await.map_err(unavailable)? {
                self.vault().forget(patient).await.map_err(unavailable)?;
                destroyed += 1;
            }
        }
        Ok(destroyed)
    }

    /// Runs `destroy_forgotten_keys` once the log found at start is folded, then marks the engine
    /// swept (`ready`). A failure is logged and the engine still becomes ready: lookups of a
    /// forgotten patient stay blocked by the read model, and the next start sweeps again.
    pub(crate) fn sweep_after_start(&self) {
        let engine = self.clone();
        tokio::spawn(async move {
            if let Some(last) = engine.started_at.checked_sub(1) {
                if engine.wait_projected(last).await.is_err() {
                    return; // stopped or failed before folding the log: nothing to sweep against
                }
            }
            match engine.destroy_forgotten_keys().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    keys = n,
                    "destroyed data keys of forgotten patients that the key table still held (a copy from before their erasure)"
                ),
                Err(e) => tracing::error!(error = %e, "could not destroy the keys of forgotten patients; retried at the next start"),
            }
            engine.swept.store(true, Ordering::Release);
        });
    }
}
