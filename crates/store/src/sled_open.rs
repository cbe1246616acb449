//! Opening a sled database whose previous handle in this process is still closing.
//!
//! sled releases its file lock only when the last of its threads lets go of the database, a
//! moment after the handle is dropped. A reopen in the same process (tests, a restarted engine)
//! or a quick process restart can meet that lock; waiting briefly for it is the honest fix.
//! Another live process holding the lock still fails, after the wait, with sled's own error.

use std::time::{Duration, Instant};

/// How long to wait for a lock held by a closing handle.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// `config.open()`, retried while the database's lock is still held.
pub(crate) fn open(config: &sled::Config) -> sled::Result<sled::Db> {
    let started = Instant::now();
    let mut waited = false;
    loop {
        match config.open() {
            // sled reports the lock only in its message (`ErrorKind::Other`).
            Err(sled::Error::Io(e))
                if e.to_string().starts_with("could not acquire lock") && started.elapsed() < LOCK_WAIT =>
            {
                waited = true;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => {
                if waited {
                    let ms = started.elapsed().as_millis() as u64;
                    tracing::info!(path = ?config.path, ms, "opened sled after waiting for its lock");
                }
                return other;
            }
        }
    }
}
