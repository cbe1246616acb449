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

use std::net::SocketAddr;
use std::sync::Arc;

use forlop_store::EventStore;

pub use forlop_engine::{Caller, Engine, RecordOptions, Recorded};
pub use graphql::{build_schema, sdl, ForlopSchema};
pub use http::{
    router, router_with, Authenticator, FhirConfig, HttpSettings, MetricsRenderer, DEFAULT_REQUEST_TIMEOUT,
};

/// How long running requests may finish after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(6);

/// A bound, ready-to-run server.
pub struct Application {
    listener: tokio::net::TcpListener,
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
        Ok(Application { listener, engine, settings, fhir })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
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
        let app = router_with(self.engine, self.settings, self.fhir);
        let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(self.listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping.send(());
        });
        // New connections stop at once; running requests and live subscriptions get a grace
        // period, so a stuck client cannot keep the process from exiting.
        let deadline = async move {
            if stopped.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            served = std::future::IntoFuture::into_future(server) => served?,
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
