//! What the writer publishes and readers see: the head, the committed count, the index, and
//! whether the log has failed.

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock, RwLock};

use super::frames::Reach;
use super::index::Index;
use crate::hash::Hash;

/// State the writer publishes and readers see.
#[derive(Debug)]
pub(super) struct Shared {
    /// (committed count, head hash), updated together after each durable, indexed group.
    pub(super) head: Mutex<(u64, Hash)>,
    /// Mirror of `head.0` for lock-free reads.
    pub(super) committed: AtomicU64,
    /// Set once a group failed to become durable; every later append fails.
    pub(super) failed: OnceLock<String>,
    pub(super) index: RwLock<Index>,
}

impl Shared {
    /// The state of a log whose frames end at `reach`, indexed by `index`.
    pub(super) fn new(index: Index, reach: Reach) -> Shared {
        Shared {
            head: Mutex::new((reach.position, reach.hash)),
            committed: AtomicU64::new(reach.position),
            failed: OnceLock::new(),
            index: RwLock::new(index),
        }
    }

    pub(super) fn head(&self) -> (u64, Hash) {
        *self.head.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }
}
