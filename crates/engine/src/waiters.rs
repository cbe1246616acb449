//! Mutations waiting for the read model to fold their event (read-your-writes), woken by
//! position.
//!
//! A watch channel would wake every waiter on every publish, and each would look and sleep
//! again: an import keeps thousands of patients' appends in flight, so the projector spent more
//! on waking than on folding. Here each waiter is filed under its position and only those the
//! projector has passed are woken.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use tokio::sync::oneshot;

#[derive(Default)]
pub(crate) struct Waiters {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Waiters by the position they wait for.
    pending: BTreeMap<u64, Vec<oneshot::Sender<()>>>,
    /// The projector has ended: nothing will wake a waiter again.
    closed: bool,
}

/// What `Waiters::wait_for` found.
pub(crate) enum Wait {
    /// The position is folded already (by `folded`'s answer, read under the lock).
    Ready,
    /// Woken once the position is folded or the projector stalls; the receiver fails if the
    /// projector ends.
    Pending(oneshot::Receiver<()>),
    /// The projector has ended.
    Closed,
}

impl Waiters {
    /// Files a waiter for `position` unless `folded()` says it is folded already. The projector
    /// publishes before it wakes (`wake_below`), and both this check and its wake take the lock,
    /// so no publish falls between the check and the filing.
    pub(crate) fn wait_for(&self, position: u64, folded: impl FnOnce() -> bool) -> Wait {
        let mut state = self.state.lock();
        if state.closed {
            return Wait::Closed;
        }
        if folded() {
            return Wait::Ready;
        }
        let (tx, rx) = oneshot::channel();
        state.pending.entry(position).or_default().push(tx);
        Wait::Pending(rx)
    }

    /// Wakes everyone waiting for a position below `end` (just published).
    pub(crate) fn wake_below(&self, end: u64) {
        let woken = {
            let mut state = self.state.lock();
            match state.pending.first_key_value() {
                Some((first, _)) if *first < end => {
                    let later = state.pending.split_off(&end);
                    std::mem::replace(&mut state.pending, later)
                }
                _ => return,
            }
        };
        // Sent outside the lock: a send wakes a task.
        for tx in woken.into_values().flatten() {
            let _ = tx.send(());
        }
    }

    /// Wakes every waiter, to look at the projector's state (it stalled).
    pub(crate) fn wake_all(&self) {
        let woken = std::mem::take(&mut self.state.lock().pending);
        for tx in woken.into_values().flatten() {
            let _ = tx.send(());
        }
    }

    /// The projector has ended: every waiter, now and later, learns it at once.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut state = self.state.lock();
            state.closed = true;
            std::mem::take(&mut state.pending)
        };
        drop(dropped); // each receiver sees its sender gone
    }
}

/// Held by the projector task: closes the waiters when the task ends, however it ends (a panic
/// unwinds through it, an abort drops it).
pub(crate) struct CloseOnDrop(pub(crate) std::sync::Arc<Waiters>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_waiters_below_the_published_position_are_woken() {
        let waiters = Waiters::default();
        let Wait::Pending(mut at_3) = waiters.wait_for(3, || false) else { panic!("filed") };
        let Wait::Pending(mut at_9) = waiters.wait_for(9, || false) else { panic!("filed") };
        assert!(matches!(waiters.wait_for(1, || true), Wait::Ready));
        waiters.wake_below(4);
        assert_eq!(at_3.try_recv(), Ok(()));
        assert!(at_9.try_recv().is_err(), "9 is not folded yet");
        waiters.wake_below(10);
        assert_eq!(at_9.try_recv(), Ok(()));
    }

    #[test]
    fn a_stall_wakes_everyone_and_an_ended_projector_fails_everyone() {
        let waiters = Waiters::default();
        let Wait::Pending(mut a) = waiters.wait_for(100, || false) else { panic!("filed") };
        waiters.wake_all();
        assert_eq!(a.try_recv(), Ok(()));
        let Wait::Pending(mut b) = waiters.wait_for(100, || false) else { panic!("filed") };
        let shared = std::sync::Arc::new(waiters);
        drop(CloseOnDrop(shared.clone()));
        assert_eq!(b.try_recv(), Err(oneshot::error::TryRecvError::Closed));
        assert!(matches!(shared.wait_for(100, || false), Wait::Closed));
    }
}
