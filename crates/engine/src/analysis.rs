//! Whole-model computations (reports, alert scans) on their own threads, one core fewer than the
//! machine has, at a lower CPU priority (nice 10) than the projector, the log writers and request
//! handling. A report takes tens of milliseconds of CPU; at equal priority the kernel lets it run
//! out its time slice while the projector waits, and every mutation behind it. Reports queue
//! among themselves instead, and a report whose client has gone is skipped.

use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, Mutex};

use thread_priority::{ThreadPriority, ThreadPriorityValue};

type Job = Box<dyn FnOnce() + Send>;

/// Crossplatform priority 22 of 99 is nice 10 for Linux's normal policy: a runnable thread at
/// nice 0 gets about nine times its share of a contended core.
const PRIORITY: u8 = 22;

pub(crate) struct AnalysisPool {
    jobs: mpsc::Sender<Job>,
}

impl AnalysisPool {
    /// Starts `threads` threads; they end when the pool is dropped.
    pub(crate) fn start(threads: usize) -> AnalysisPool {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new().name(format!("forlop-analysis-{i}")).spawn(move || {
                let lowered = ThreadPriorityValue::try_from(PRIORITY).map_err(|e| e.to_string()).and_then(|p| {
                    thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(p))
                        .map_err(|e| e.to_string())
                });
                if let Err(e) = lowered {
                    tracing::warn!(error = %e, "analysis thread keeps normal priority");
                }
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match next {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start an analysis thread");
            }
        }
        AnalysisPool { jobs }
    }

    /// Runs `compute` on a pool thread; Err if it panicked or the pool is gone.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        compute: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if answer.is_closed() {
                return; // nobody waits for it any more
            }
            let _ = answer.send(std::panic::catch_unwind(AssertUnwindSafe(compute)));
        });
        self.jobs.send(job).map_err(|_| "the analysis threads have stopped".to_string())?;
        match answered.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err("the analysis panicked".into()),
            Err(_) => Err("the analysis threads have stopped".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's nice value, from /proc (Linux).
    fn nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
        // Fields after the command name (which may hold spaces, inside parentheses): nice is 19th.
        let after = &stat[stat.rfind(')').expect("command name") + 2..];
        after.split_whitespace().nth(16).expect("nice field").parse().expect("a number")
    }

    #[tokio::test]
    async fn analyses_run_at_nice_10_and_a_panic_is_an_error_not_a_lost_thread() {
        let pool = AnalysisPool::start(1);
        assert_eq!(nice(), 0, "the caller keeps its priority");
        assert_eq!(pool.run(nice).await, Ok(10));
        assert!(pool.run(|| panic!("a broken report")).await.is_err());
        assert_eq!(pool.run(|| 2 + 2).await, Ok(4), "the thread survived the panic");
    }
}
