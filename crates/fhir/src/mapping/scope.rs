//! The resources of one Bundle (or one chunk of an NDJSON file), found by name or by id.

use std::collections::HashMap;

use uuid::Uuid;

use super::placing::Placed;

/// The resources of one Bundle (or one chunk of an NDJSON file), by every name they go by.
pub struct Scope<'a> {
    pub placed: &'a [Option<Placed>],
    by_name: HashMap<&'a str, usize>,
    /// (id, index) sorted: the resources with one id (versions of it) without a scan of the
    /// chunk per reference.
    by_id: Vec<(Uuid, usize)>,
}

impl<'a> Scope<'a> {
    pub fn new(placed: &'a [Option<Placed>]) -> Scope<'a> {
        let mut by_name = HashMap::new();
        let mut by_id = Vec::with_capacity(placed.len());
        for (i, p) in placed.iter().enumerate() {
            for n in p.iter().flat_map(|p| &p.names) {
                by_name.entry(n.as_str()).or_insert(i);
            }
            if let Some(p) = p {
                by_id.push((p.id, i));
            }
        }
        by_id.sort_unstable();
        Scope { placed, by_name, by_id }
    }

    pub(super) fn get(&self, name: &str) -> Option<&'a Placed> {
        self.by_name.get(name).and_then(|i| self.placed[*i].as_ref())
    }

    /// The resources placed with forlop id `id`, in the order they came.
    pub(super) fn with_id(&self, id: Uuid) -> impl Iterator<Item = &'a Placed> + '_ {
        let from = self.by_id.partition_point(|(x, _)| *x < id);
        self.by_id[from..].iter().take_while(move |(x, _)| *x == id).filter_map(|(_, i)| self.placed[*i].as_ref())
    }
}
