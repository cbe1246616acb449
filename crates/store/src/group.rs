//! Group commit, shared by the event log and the access log: a writer thread takes whatever is
//! queued (up to a cap) and makes it durable with one flush.

use std::sync::mpsc;

/// The next group of queued requests: blocks for the first, then takes what is already waiting,
/// up to `max`. None once every sender is gone.
pub(crate) fn next_group<R>(rx: &mpsc::Receiver<R>, max: usize) -> Option<Vec<R>> {
    let first = rx.recv().ok()?;
    Some(with_waiting(first, max, || rx.try_recv().ok()))
}

/// `first` and whatever `waiting` still yields, up to `max` in all.
fn with_waiting<R>(first: R, max: usize, mut waiting: impl FnMut() -> Option<R>) -> Vec<R> {
    let mut group = vec![first];
    while group.len() < max {
        match waiting() {
            Some(r) => group.push(r),
            None => break,
        }
    }
    group
}

/// A writer thread and its request queue. Dropping it closes the queue, which ends the thread,
/// and joins it, which releases sled's file lock before a reopen.
pub(crate) struct WriterThread<R> {
    requests: Option<mpsc::Sender<R>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<R: Send + 'static> WriterThread<R> {
    /// Starts `run` on a thread named `name`, fed by the returned handle's queue.
    pub(crate) fn spawn(
        name: &str,
        run: impl FnOnce(mpsc::Receiver<R>) + Send + 'static,
    ) -> std::io::Result<WriterThread<R>> {
        let (requests, rx) = mpsc::channel();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || run(rx))?;
        Ok(WriterThread { requests: Some(requests), thread: Some(thread) })
    }

    /// Queues a request; Err(request) if the thread is gone.
    pub(crate) fn send(&self, request: R) -> Result<(), R> {
        match &self.requests {
            Some(q) => q.send(request).map_err(|e| e.0),
            None => Err(request),
        }
    }
}

impl<R> Drop for WriterThread<R> {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `next_group` for a tokio channel: waits for the first request, then takes what is already
/// queued, up to `max`. None once every sender is gone.
pub(crate) async fn next_group_async<R>(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<R>,
    max: usize,
) -> Option<Vec<R>> {
    let first = rx.recv().await?;
    Some(with_waiting(first, max, || rx.try_recv().ok()))
}
