//! The cap on live subscriptions per token subject: each holds a slot, given back when its
//! stream is dropped.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::EngineError;

/// Most live subscriptions one token subject may hold at once.
pub const MAX_SUBSCRIPTIONS_PER_TOKEN: usize = 32;

/// Live subscriptions per token subject.
#[derive(Debug, Clone, Default)]
pub(crate) struct SubscriptionCounts(Arc<Mutex<HashMap<String, usize>>>);

impl SubscriptionCounts {
    /// Live subscriptions on this node.
    pub(crate) fn live(&self) -> usize {
        self.0.lock().values().sum()
    }

    /// Takes one of `sub`'s slots, or refuses when they hold the maximum.
    pub(crate) fn take(&self, sub: String) -> Result<SubscriptionSlot, EngineError> {
        let mut counts = self.0.lock();
        let n = counts.entry(sub.clone()).or_insert(0);
        if *n >= MAX_SUBSCRIPTIONS_PER_TOKEN {
            return Err(EngineError::invalid(format!(
                "at most {MAX_SUBSCRIPTIONS_PER_TOKEN} live subscriptions per token"
            )));
        }
        *n += 1;
        Ok(SubscriptionSlot { counts: self.clone(), sub })
    }
}

/// A live subscription's place under the cap; gives it back when dropped with its stream.
#[derive(Debug)]
pub struct SubscriptionSlot {
    counts: SubscriptionCounts,
    sub: String,
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock();
        if let Some(n) = counts.get_mut(&self.sub) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.sub);
            }
        }
    }
}
