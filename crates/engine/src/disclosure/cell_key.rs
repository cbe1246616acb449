//! The cell key method: the perturbation statistics offices use for flexible table builders
//! (ABS TableBuilder, ONS and Eurostat census tables), so that figures an analyst may ask for in
//! any combination cannot be differenced back to one person.
//!
//! Every record (an episode, a patient, a referral) has a secret record key (`RecordKeyer`: a
//! keyed hash of its id under a key derived from the master key). A cell's key is the wrapping
//! sum of its contributors' record keys, so the same set of contributors always gives the same
//! cell key, and a set that differs by one contributor gives an unrelated one. A count's noise is
//! read from a fixed perturbation table by its value and its cell key; a mean's or a quantile's
//! from the same cell key through a fixed mixing function, scaled by the largest value that can
//! contribute. Asking again gives the same answer (nothing averages away); two answers that differ
//! by one person differ by unrelated noise.

/// Columns of the perturbation table: a count's cell key is taken modulo this.
pub const COLUMNS: u64 = 256;

/// The largest change the table makes to a count.
pub const MAX_NOISE: u64 = 2;

/// The perturbation table's row for every count at least `MAX_NOISE` above the threshold: the
/// noise, and how many of the 256 columns give it (probabilities 0.10, 0.20, 0.40, 0.20, 0.10;
/// mean 0, variance 1.2). Counts closer to the threshold take the same row with any noise that
/// would bring them under the threshold raised to the smallest that does not, so that a shown
/// count is never a small one.
const ROW: [(i64, u64); 5] = [(-2, 26), (-1, 51), (0, 102), (1, 51), (2, 26)];

/// The count shown for a true count `n ≥ threshold` with cell key `key`.
pub fn perturb_count(n: u64, key: u64, threshold: u64) -> u64 {
    debug_assert!(n >= threshold);
    let mut column = key % COLUMNS;
    let mut noise = 0;
    for (value, width) in ROW {
        if column < width {
            noise = value;
            break;
        }
        column -= width;
    }
    let floor = threshold.max(1) as i64 - n as i64;
    (n as i64 + noise.max(floor)) as u64
}

/// A uniform value in [−1, 1) drawn from a cell key for the statistic named by `salt`, so each
/// statistic of a cell gets its own noise (splitmix64's finaliser: the cell key is already
/// secret and uniform; this only spreads it).
pub fn uniform(key: u64, salt: u64) -> f64 {
    let mut z = key ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// How far a statistic over `n` values, each at most `top` in magnitude, may move: half the
/// largest contributor, spread over the values (`0.5 · top / n`). One person's value moves a mean
/// by at most `top / n`; the noise is of that order, so in the difference of two sums that differ
/// by one person the noise is as large as the person's value could be, while a mean over a
/// service-year's hundreds of episodes moves by a fraction of a unit.
pub fn magnitude_scale(n: u64, top: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    0.5 * top.abs() / n as f64
}

/// A statistic shown with its noise, rounded to two decimals.
pub fn perturb_stat(value: f64, n: u64, top: f64, key: u64, salt: u64) -> f64 {
    let shown = value + magnitude_scale(n, top) * uniform(key, salt);
    (shown * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_covers_every_column_once() {
        assert_eq!(ROW.iter().map(|r| r.1).sum::<u64>(), COLUMNS);
        assert_eq!(ROW.iter().map(|(v, w)| v * *w as i64).sum::<i64>(), 0, "mean noise 0");
    }

    #[test]
    fn a_shown_count_is_within_the_bound_and_never_small() {
        for threshold in [2, 5, 10] {
            for n in threshold..threshold + 20 {
                for key in 0..COLUMNS {
                    let shown = perturb_count(n, key, threshold);
                    assert!(shown >= threshold, "{n} → {shown} under {threshold}");
                    assert!(shown.abs_diff(n) <= MAX_NOISE, "{n} → {shown}");
                }
            }
        }
    }

    #[test]
    fn far_above_the_threshold_the_noise_follows_the_table() {
        let mut seen = std::collections::BTreeMap::new();
        for key in 0..COLUMNS {
            *seen.entry(perturb_count(100, key, 5) as i64 - 100).or_insert(0u64) += 1;
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ROW.to_vec());
    }

    #[test]
    fn uniform_spans_its_range_evenly() {
        let draws: Vec<f64> = (0..10_000u64).map(|k| uniform(k.wrapping_mul(0x2545_F491_4F6C_DD1D), 7)).collect();
        assert!(draws.iter().all(|u| (-1.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        let below = draws.iter().filter(|u| **u < -0.5).count();
        assert!((2300..2700).contains(&below), "{below}");
        assert_ne!(uniform(1, 1), uniform(1, 2), "each statistic its own noise");
    }

    #[test]
    fn a_statistic_moves_at_most_half_its_top_contributor_over_its_count() {
        for n in [5u64, 50, 500] {
            let bound = 0.5 * 400.0 / n as f64 + 0.005;
            let moves: Vec<f64> = (0..1000u64).map(|k| perturb_stat(30.0, n, 400.0, k * 0x9E37, 3) - 30.0).collect();
            assert!(moves.iter().all(|m| m.abs() <= bound), "{n}");
            // …and uses that room: the noise is not concentrated near 0.
            assert!(moves.iter().filter(|m| m.abs() > bound / 2.0).count() > 400, "{n}");
        }
    }
}
