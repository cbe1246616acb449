//! Group commit, shared by the event log and the access log: a writer thread takes whatever is
//! queued (up to a cap) and makes it durable with one flush.

use std::sync::mpsc;

/// The next group of queued requests: blocks for the first, then takes what is already waiting,
/// up to `max`. None once every sender is gone.
pub(crate) fn next_group<R>(rx: &mpsc::Receiver<R>, max: usize) -> Option<Vec<R>> {
    let first = rx.recv().ok()?;
    let mut group = vec![first];
    while group.len() < max {
        match rx.try_recv() {
            Ok(r) => group.push(r),
            Err(_) => break,
        }
    }
    Some(group)
}
