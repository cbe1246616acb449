//! Rates and percentiles.

use std::time::Duration;

/// Items per second.
pub fn eps(n: usize, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64()
}

/// The `p` percentile (0..=1) of sorted samples, by nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
