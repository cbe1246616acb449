//! Commands to one stream are decided one at a time on this node, so concurrent writers to one
//! patient queue instead of failing; optimistic concurrency in the store still guards against
//! other nodes. The turns are striped by stream name: a turn is held through the append and its
//! projection, so two patients that share a stripe wait for each other's write.

use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};

/// Enough stripes that the hundreds of patients of one import chunk or batch rarely meet (a few
/// hundred kilobytes of mutexes).
const STRIPES: usize = 16_384;

fn stripe_of(stream: &str) -> usize {
    let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(stream);
    h as usize % STRIPES
}

#[derive(Clone)]
pub(crate) struct Turns(Arc<Vec<Mutex<()>>>);

impl Default for Turns {
    fn default() -> Self {
        Turns(Arc::new((0..STRIPES).map(|_| Mutex::new(())).collect()))
    }
}

impl Turns {
    /// Waits for `stream`'s turn.
    pub(crate) async fn of(&self, stream: &str) -> MutexGuard<'_, ()> {
        self.0[stripe_of(stream)].lock().await
    }

    /// Takes the turns of every stream named, in stripe order so that two callers never wait
    /// on each other.
    pub(crate) async fn all(&self, streams: impl Iterator<Item = String>) -> Vec<MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = streams.map(|s| stripe_of(&s)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut turns = Vec::with_capacity(stripes.len());
        for s in stripes {
            turns.push(self.0[s].lock().await);
        }
        turns
    }
}
