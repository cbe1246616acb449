//! The seeded random generator every profile draws from, and the names it picks.

use chrono::Duration;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use forlop_domain::Instrument;

const GIVEN: &[&str] = &[
    "Ingrid", "Kari", "Nora", "Emma", "Sara", "Ida", "Hanne", "Marit", "Jon", "Ole", "Lars", "Knut", "Per", "Anders",
    "Ali", "Fatima", "Mohammed", "Aisha", "Piotr", "Sofie",
];
const FAMILY: &[&str] = &[
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nilsen",
    "Kristiansen",
    "Jensen",
    "Karlsen",
    "Berg",
    "Haugen",
    "Hagen",
    "Ahmed",
    "Khan",
    "Nowak",
    "Dahl",
    "Lie",
];

pub(crate) struct Gen {
    pub(crate) rng: ChaCha8Rng,
}

impl Gen {
    pub(crate) fn id(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.rng.gen()).into_uuid()
    }
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }
    pub(crate) fn days(&mut self, lo: i64, hi: i64) -> Duration {
        Duration::minutes(self.rng.gen_range(lo * 1440..=hi * 1440))
    }
    pub(crate) fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.gen_range(0..xs.len())]
    }
    pub(crate) fn weighted<T: Clone>(&mut self, xs: &[(T, u32)]) -> T {
        let total: u32 = xs.iter().map(|x| x.1).sum();
        let mut r = self.rng.gen_range(0..total);
        for (x, w) in xs {
            if r < *w {
                return x.clone();
            }
            r -= w;
        }
        xs[0].0.clone()
    }
    pub(crate) fn name(&mut self) -> String {
        format!("{} {}", self.pick(GIVEN), self.pick(FAMILY))
    }
    pub(crate) fn items(&mut self, n: usize, mean: f64) -> Vec<u8> {
        (0..n).map(|_| (mean + self.rng.gen_range(-1.0..1.0)).round().clamp(0.0, 3.0) as u8).collect()
    }
    /// Item scores for `total` (u32::MAX: drawn around `mean` instead).
    pub(crate) fn items_for(&mut self, instrument: Instrument, total: u32, mean: f64) -> Vec<u8> {
        let n = instrument.item_count();
        if total == u32::MAX {
            return self.items(n, mean);
        }
        let mut items = vec![0u8; n];
        for _ in 0..total.min(3 * n as u32) {
            let open: Vec<usize> = (0..n).filter(|i| items[*i] < 3).collect();
            items[open[self.rng.gen_range(0..open.len())]] += 1;
        }
        items
    }
    /// Integers within per-element bounds that add up to `sum`, scattered around their mean.
    pub(crate) fn totals(&mut self, sum: i64, bounds: &[(i64, i64)]) -> Vec<i64> {
        let (lo_sum, hi_sum): (i64, i64) = bounds.iter().fold((0, 0), |(a, b), (lo, hi)| (a + lo, b + hi));
        assert!(lo_sum <= sum && sum <= hi_sum, "impossible totals");
        let mean = sum as f64 / bounds.len() as f64;
        let mut v: Vec<i64> = bounds
            .iter()
            .map(|&(lo, hi)| {
                let spread = ((hi - lo) as f64 / 4.0).max(1.0);
                ((mean + self.rng.gen_range(-spread..spread)).round() as i64).clamp(lo, hi)
            })
            .collect();
        let mut diff = sum - v.iter().sum::<i64>();
        while diff != 0 {
            let i = self.rng.gen_range(0..v.len());
            let step = diff.signum();
            if (bounds[i].0..=bounds[i].1).contains(&(v[i] + step)) {
                v[i] += step;
                diff -= step;
            }
        }
        v
    }
}
