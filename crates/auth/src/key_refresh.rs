//! What the identity provider's refresh task (`jwks_source`) and the verifiers share: a token
//! with an unknown key id asks for a fetch here, at most once per [`UNKNOWN_KID_WINDOW`], and
//! waits a bounded time for it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

/// At most one fetch for tokens with an unknown key id in this long, however many arrive.
pub const UNKNOWN_KID_WINDOW: Duration = Duration::from_secs(30);
/// How long a token with an unknown key id waits for the fetch it started (or found running).
pub const UNKNOWN_KID_WAIT: Duration = Duration::from_secs(5);

/// What the refresh task and the verifiers share.
#[derive(Debug, Default)]
pub(crate) struct Refresh {
    /// Wakes the task for a token with an unknown key id.
    pub(crate) kick: Notify,
    state: Mutex<RefreshState>,
    /// Counts finished fetches (good or not); a waiting token watches it.
    done: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct RefreshState {
    fetching: bool,
    last_for_unknown_kid: Option<Instant>,
}

impl Refresh {
    /// For a token with an unknown key id: waits (at most [`UNKNOWN_KID_WAIT`]) for the fetch
    /// running now, or starts one unless one was started for such a token within
    /// [`UNKNOWN_KID_WINDOW`]. True when a fetch finished meanwhile (the set may hold the key now).
    pub(crate) async fn refreshed_for_unknown_kid(&self) -> bool {
        let mut done = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            // Subscribed under the lock the task finishes a fetch under: a fetch seen running
            // here is seen finishing.
            let done = self.done.subscribe();
            if !state.fetching {
                if state.last_for_unknown_kid.is_some_and(|at| at.elapsed() < UNKNOWN_KID_WINDOW) {
                    return false;
                }
                state.last_for_unknown_kid = Some(Instant::now());
                state.fetching = true;
                self.kick.notify_one();
            }
            done
        };
        matches!(tokio::time::timeout(UNKNOWN_KID_WAIT, done.changed()).await, Ok(Ok(())))
    }

    pub(crate) fn begin(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).fetching = true;
    }

    pub(crate) fn finish(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.fetching = false;
        self.done.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn tokens_with_unknown_kids_start_one_fetch_per_window_and_wait_for_the_one_running() {
        let refresh = Arc::new(Refresh::default());
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (task_refresh, task_fetches) = (refresh.clone(), fetches.clone());
        // The refresh task's part: a kick, a fetch, done.
        let task = tokio::spawn(async move {
            loop {
                task_refresh.kick.notified().await;
                task_refresh.begin();
                task_fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                task_refresh.finish();
            }
        });
        // Many at once: one fetch, and every one of them sees it finish.
        let waits = join_many(&refresh, 20).await;
        assert!(waits.iter().all(|&w| w), "all waited for the fetch: {waits:?}");
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Within the window: no fetch, no wait.
        let started = Instant::now();
        assert!(!refresh.refreshed_for_unknown_kid().await);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        // After it: one more.
        refresh.state.lock().unwrap().last_for_unknown_kid = Some(Instant::now() - UNKNOWN_KID_WINDOW);
        assert!(refresh.refreshed_for_unknown_kid().await);
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
        task.abort();
    }

    async fn join_many(refresh: &Arc<Refresh>, n: usize) -> Vec<bool> {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let refresh = refresh.clone();
            set.spawn(async move { refresh.refreshed_for_unknown_kid().await });
        }
        let mut out = Vec::new();
        while let Some(done) = set.join_next().await {
            out.push(done.unwrap());
        }
        out
    }
}
