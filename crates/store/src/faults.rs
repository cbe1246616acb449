//! Fault injection for end-to-end tests, live only with the `testing` feature (which `cargo test`
//! turns on for the binary the tests run; a release build answers "no fault" without reading the
//! environment). Set by environment variables:
//! - `FORLOP_FAULT_WRITER_PANIC_AT=N`: the event log's writer thread panics when asked to commit
//!   a group starting at position N.
//! - `FORLOP_FAULT_FLUSH_FAIL_AT=N`: the event log's flush fails for a group that would reach
//!   position N (after sled has applied the batch in memory, as a real failed fsync leaves it).
//! - `FORLOP_FAULT_PROJECTOR_PANIC_AT=N`: the projector panics folding position N.
//! - `FORLOP_FAULT_ACCESS_SYNC_FAIL_AT=N`: the access log's fsync fails, 300 ms after it was
//!   asked for, for a group that would reach record N (after the frames were written, as a real
//!   failed fsync leaves them).
//! - `FORLOP_FAULT_RESTORE_ABORT_AFTER=N`: `forlop restore` aborts once it has appended N events.

/// The position a test set in the environment variable `name`, if any.
fn fault_at(name: &str) -> Option<u64> {
    if !cfg!(feature = "testing") {
        return None;
    }
    std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok())
}

/// Panics the writer thread if the test asked for it at this position.
pub fn writer_may_panic(next_position: u64) {
    if fault_at("FORLOP_FAULT_WRITER_PANIC_AT").is_some_and(|at| next_position >= at) {
        panic!("injected fault: writer panic at position {next_position}");
    }
}

/// True if the projector should panic on folding the event at `position`
/// (`FORLOP_FAULT_PROJECTOR_PANIC_AT=N`).
pub fn projector_should_panic(position: u64) -> bool {
    fault_at("FORLOP_FAULT_PROJECTOR_PANIC_AT").is_some_and(|at| position >= at)
}

/// True if the flush of a group ending at `end` (exclusive) should fail.
pub fn flush_should_fail(end: u64) -> bool {
    fault_at("FORLOP_FAULT_FLUSH_FAIL_AT").is_some_and(|at| end > at)
}

/// True if the access log's fsync of a group ending at record `end` (exclusive) should fail.
pub fn access_sync_should_fail(end: u64) -> bool {
    fault_at("FORLOP_FAULT_ACCESS_SYNC_FAIL_AT").is_some_and(|at| end > at)
}

/// Aborts the process (as a kill -9 would end it: nothing cleaned up) once a restore has
/// appended at least N events (`FORLOP_FAULT_RESTORE_ABORT_AFTER=N`).
pub fn restore_may_abort(appended: u64) {
    if fault_at("FORLOP_FAULT_RESTORE_ABORT_AFTER").is_some_and(|at| appended >= at) {
        eprintln!("injected fault: restore aborted after {appended} events");
        std::process::abort();
    }
}
