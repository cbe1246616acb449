//! What reports count with: exact counts, or counts with the cell key the cell key method
//! perturbs them by, and the summaries (counts under a key, distributions) built from either.

use uuid::Uuid;

/// What a report counts with. Exact reports count with `u64`; reports that are to be perturbed
/// count with `Keyed`, which also sums the contributors' record keys into the cell key that the
/// cell key method (`forlop-engine`'s `disclosure`) draws a cell's noise from. The figures are
/// generic over it, and unbounded, so a disclosed report reuses their shape with its own cell type.
pub trait Tally: Copy + Default + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    /// Counts `n` units contributed by the record whose key is `record_key`.
    fn add(&mut self, record_key: u64, n: u64);
    /// How many units were counted.
    fn count(&self) -> u64;
    /// The wrapping sum of every unit's record key (0 for an exact count).
    fn cell_key(&self) -> u64;
}

impl Tally for u64 {
    fn add(&mut self, _: u64, n: u64) {
        *self += n;
    }
    fn count(&self) -> u64 {
        *self
    }
    fn cell_key(&self) -> u64 {
        0
    }
}

/// A count with its cell key: the wrapping sum of its contributors' record keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Keyed {
    pub count: u64,
    pub key: u64,
}

impl Tally for Keyed {
    fn add(&mut self, record_key: u64, n: u64) {
        self.count += n;
        self.key = self.key.wrapping_add(record_key.wrapping_mul(n));
    }
    fn count(&self) -> u64 {
        self.count
    }
    fn cell_key(&self) -> u64 {
        self.key
    }
}

/// A record's secret key for the cell key method, by the id of the episode, patient or referral
/// that contributes. Exact reports pass `NO_KEYS`.
pub type RecordKeys<'a> = &'a (dyn Fn(Uuid) -> u64 + Sync);

/// The record keys of an exact report: none.
pub const NO_KEYS: RecordKeys<'static> = &|_| 0;

pub(crate) fn tally<C: Tally>(ids: impl Iterator<Item = Uuid>, keys: RecordKeys) -> C {
    let mut c = C::default();
    for id in ids {
        c.add(keys(id), 1);
    }
    c
}

/// A count under a stable key (an enum name, `NONE`, `OPEN`, or an age group such as `16-24`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count<C = u64> {
    pub key: String,
    pub count: C,
}

/// Summary of a list of values; every figure is None when the list is empty.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Distribution<C = u64> {
    pub count: C,
    pub mean: Option<f64>,
    /// The middle value; the mean of the two middle values for an even count.
    pub median: Option<f64>,
    /// Nearest rank: the ⌈0.9·n⌉-th smallest value.
    pub p90: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Distribution {
    pub fn of(values: Vec<f64>) -> Distribution {
        Distribution::of_tallied(values.into_iter().map(|v| (v, Uuid::nil())).collect(), NO_KEYS)
    }
}

impl<C: Tally> Distribution<C> {
    /// The summary of values, each given with the id of the record it belongs to.
    pub fn of_tallied(mut values: Vec<(f64, Uuid)>, keys: RecordKeys) -> Distribution<C> {
        let n = values.len();
        if n == 0 {
            return Distribution::default();
        }
        let count = tally(values.iter().map(|(_, id)| *id), keys);
        let mut values: Vec<f64> = values.drain(..).map(|(v, _)| v).collect();
        values.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
        let rank = ((0.9 * n as f64).ceil() as usize).clamp(1, n);
        Distribution {
            count,
            mean: Some(values.iter().sum::<f64>() / n as f64),
            median: Some(median),
            p90: Some(values[rank - 1]),
            min: Some(values[0]),
            max: Some(values[n - 1]),
        }
    }
}
