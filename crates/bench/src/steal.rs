//! CPU time a virtual machine's host took for other guests (Linux `steal`), from /proc/stat.

/// The machine's CPU time so far from /proc/stat, in ticks: (all, stolen by the hypervisor).
pub fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).take(8).filter_map(|t| t.parse().ok()).collect();
    (ticks.iter().sum(), ticks.get(7).copied().unwrap_or(0))
}

/// Percent of the CPU time between two readings that a virtual machine's host took for others:
/// latency that no change to forlop can remove, so the figures report it beside the latencies.
pub fn steal_percent(before: (u64, u64), after: (u64, u64)) -> f64 {
    let all = after.0.saturating_sub(before.0);
    if all == 0 {
        return 0.0;
    }
    100.0 * after.1.saturating_sub(before.1) as f64 / all as f64
}
