//! Outcome measures: the instrument's number of items, each scored 0 to 3, measured within the
//! episode; the total is derived from the items.

use crate::error::{invalid, DomainError};
use crate::events::{Event, OutcomeRecorded};

use super::rules::{within_episode, PatientFacts};

pub(super) fn record(f: &PatientFacts, mut e: OutcomeRecorded) -> Result<Event, DomainError> {
    // The command's own input first, the recorded facts after: a refusal for bad items must not
    // say whether the time fell inside the episode (a probe that writes nothing).
    let want = e.instrument.item_count();
    if e.items.len() != want {
        return Err(invalid(format!("{} takes exactly {want} items, got {}", e.instrument, e.items.len())));
    }
    if let Some(bad) = e.items.iter().position(|&i| i > 3) {
        return Err(invalid(format!("item {} is {}, items are scored 0 to 3", bad + 1, e.items[bad])));
    }
    within_episode("measuredAt", e.measured_at, f.episode(e.episode_id)?)?;
    e.total = e.items.iter().map(|&i| u32::from(i)).sum();
    Ok(e.into())
}
