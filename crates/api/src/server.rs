//! The accept loop: hyper's HTTP/1 server under a connection cap, with a bound on how long a
//! request's headers may take to arrive. `axum::serve` offers neither: a client that trickles
//! header lines (slowloris) would hold its connection, and a file descriptor, for ever.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// `HttpSettings::header_read_timeout` unless configured.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// `HttpSettings::max_connections` unless configured.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Connections the separate metrics listener accepts at once: a scraper or two, never a crowd,
/// and a flood of the API port never reaches it.
pub(crate) const METRICS_MAX_CONNECTIONS: usize = 64;

/// What bounds one listener's connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// How long a request's head (request line and headers) may take to arrive, from the moment
    /// the server starts reading it: on a new connection, and on a kept-alive one after each
    /// response (so an idle kept-alive connection is closed after this long, too).
    pub(crate) header_read_timeout: Duration,
    /// Connections open at once; one more is closed at once, unanswered.
    pub(crate) max_connections: usize,
}

/// A connection's place under the cap, in every request's extensions: a WebSocket keeps it for
/// as long as it stays open (the upgraded socket outlives hyper's connection task).
#[derive(Clone, Debug)]
pub(crate) struct ConnectionSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// Accepts connections on `listener` until `stop` turns true, then asks every open connection
/// to finish what it is answering (idle ones close at once) and returns when all have.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    name: &'static str,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Each connection task holds a sender; `recv` answers None once every task has ended.
    let (running, mut all_ended) = mpsc::channel::<()>(1);
    // Warned once each time the cap is reached, not once per refused connection (a flood would
    // flood the log too); the counter tells how many.
    let mut at_cap = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Most likely out of file descriptors: wait for some to be freed rather than
                // spin on the error (hyper 0.14's and axum's rule).
                tracing::error!(error = %e, listener = name, "accept failed; retrying in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!("forlop_http_connections_refused_total", "listener" => name).increment(1);
            if !at_cap {
                at_cap = true;
                tracing::warn!(
                    listener = name,
                    max = limits.max_connections,
                    "connection cap reached; new connections are closed unanswered until some close"
                );
            }
            drop(tcp);
            continue;
        };
        at_cap = false;
        let slot = ConnectionSlot(Arc::new(permit));
        let app = app.clone();
        let running = running.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let open = metrics::gauge!("forlop_http_connections", "listener" => name);
            open.increment(1.0);
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(slot.clone());
                app.clone().oneshot(request)
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            let connection = builder.serve_connection(TokioIo::new(tcp), service).with_upgrades();
            tokio::pin!(connection);
            let mut stopping = false;
            loop {
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(e) = served {
                            // A client gone mid-request, a header timeout, a malformed request:
                            // the client's doing, not worth more than a debug line.
                            tracing::debug!(error = %e, listener = name, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stop.wait_for(|s| *s), if !stopping => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            open.decrement(1.0);
            drop(running);
        });
    }
    drop(running);
    let _ = all_ended.recv().await;
}

/// Errors of one connection, not of the listener: the next accept is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
