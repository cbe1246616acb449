//! forlop's API: the GraphQL schema and the HTTP/WebSocket router that serves it.
//!
//! Invariant: this is the only crate that knows GraphQL and HTTP. It decides commands through
//! `forlop_engine` and answers queries from the read model, which is fed from the log.

mod dashboard;
pub mod error;
mod fhir_http;
pub mod graphql;
mod http;
pub mod limits;
pub mod metrics;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use forlop_store::EventStore;

pub use forlop_engine::{Caller, Engine, RecordOptions, Recorded};
pub use graphql::{build_schema, sdl, ForlopSchema};
pub use http::{
    origin_problem, router, router_with, Authenticator, DegradedProbe, FhirConfig, HttpSettings, MetricsRenderer,
    DEFAULT_REQUEST_TIMEOUT,
};
pub use server::{DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS};

/// How long running requests may finish after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(6);

/// A bound, ready-to-run server.
pub struct Application {
    listener: tokio::net::TcpListener,
    /// `/metrics` on its own address (`HttpSettings::metrics_listen`).
    metrics_listener: Option<tokio::net::TcpListener>,
    engine: Engine,
    settings: HttpSettings,
    fhir: Option<forlop_fhir::Fhir>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("addr", &self.local_addr().ok()).finish()
    }
}

impl Application {
    /// Rebuilds the read model from `store` and binds `listen` (port 0 picks a free port).
    pub async fn build(
        store: Arc<dyn EventStore>,
        parts: forlop_engine::EngineParts,
        settings: HttpSettings,
        listen: SocketAddr,
    ) -> anyhow::Result<Application> {
        let engine = Engine::start(store, parts).await?;
        let fhir = match &settings.fhir {
            Some(c) => Some(forlop_fhir::Fhir::open(engine.clone(), &c.dir, c.care_levels.clone())?.with_hold(c.hold)),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let metrics_listener = match settings.metrics_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("binding --metrics-listen {addr}: {e}"))?,
            ),
            None => None,
        };
        Ok(Application { listener, metrics_listener, engine, settings, fhir })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served when it has its own listener.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let engine = self.engine.clone();
        let limits = server::Limits {
            header_read_timeout: self.settings.header_read_timeout,
            max_connections: self.settings.max_connections,
        };
        let (app, metrics_app) = http::routers(self.engine, self.settings, self.fhir);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let metrics = match (self.metrics_listener, metrics_app) {
            (Some(listener), Some(app)) => {
                if let Ok(addr) = listener.local_addr() {
                    tracing::info!(%addr, "metrics listening at /metrics");
                }
                let limits = server::Limits { max_connections: server::METRICS_MAX_CONNECTIONS, ..limits };
                Some(tokio::spawn(server::serve(listener, app, limits, stopping.clone(), "metrics")))
            }
            _ => None,
        };
        let mut stopped = stopping.clone();
        let server = server::serve(self.listener, app, limits, stopping, "api");
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        // New connections stop at once; running requests and live subscriptions get a grace
        // period, so a stuck client cannot keep the process from exiting.
        let deadline = async move {
            if stopped.wait_for(|s| *s).await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let served = async move {
            server.await;
            if let Some(metrics) = metrics {
                let _ = metrics.await;
            }
        };
        tokio::select! {
            () = served => {}
            () = deadline => tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still running at shutdown; exiting"),
        }
        // A checkpoint lets the next start replay only the tail of the log.
        match engine.checkpoint().await {
            Ok(position) => tracing::info!(events = position, "read-model checkpoint on disk"),
            Err(e) => tracing::warn!(error = %e, "no checkpoint written; the next start replays the log"),
        }
        engine.stop();
        Ok(())
    }
}
