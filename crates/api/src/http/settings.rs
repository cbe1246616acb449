//! What the binary configures the HTTP layer with, besides the engine.

use std::time::Duration;

use super::authenticator::Authenticator;

/// What the HTTP layer needs besides the engine.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub auth: Authenticator,
    /// Origins allowed to open a WebSocket or post from a browser, besides the server's own.
    pub allowed_origins: Vec<String>,
    /// A token to put in the explorer's Headers tab (`serve --demo` only).
    pub explorer_token: Option<String>,
    /// Renders the process's metrics in Prometheus text format for `/metrics` (None: no route).
    pub metrics: Option<MetricsRenderer>,
    /// Serves FHIR R4 at `/fhir` when set.
    pub fhir: Option<FhirConfig>,
    /// Longest a request may take before it is answered 408. The bulk `POST /fhir/$import` has
    /// no total bound (a city's backfill takes minutes); it ends when its body stalls this long.
    pub request_timeout: Duration,
    /// Serves `/metrics` on this address only (its own listener); the API's `/metrics` is then
    /// 404. None: `/metrics` is served beside the API.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Longest a request's headers may take to arrive (see `DEFAULT_HEADER_READ_TIMEOUT`).
    pub header_read_timeout: Duration,
    /// Connections open at once; one more is closed unanswered (`DEFAULT_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// What is failing beside the node while it serves (a backup target that is full or
    /// unmounted); `/healthz` reports it as `degraded`, still 200. None: nothing to watch.
    pub degraded: Option<DegradedProbe>,
}

/// Tells `/healthz` what is degraded right now (empty: nothing).
#[derive(Clone)]
pub struct DegradedProbe(pub std::sync::Arc<dyn Fn() -> Vec<String> + Send + Sync>);

impl std::fmt::Debug for DegradedProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DegradedProbe")
    }
}

/// `HttpSettings::request_timeout` unless configured.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the FHIR adapter keeps its alias index, and how it maps services to care levels.
#[derive(Clone, Debug)]
pub struct FhirConfig {
    pub dir: std::path::PathBuf,
    pub care_levels: forlop_fhir::CareLevels,
    /// How long a resource waits for what it refers to before `$unresolved` lists it.
    pub hold: std::time::Duration,
}

/// Renders the installed metrics recorder (the binary chooses the exporter).
#[derive(Clone)]
pub struct MetricsRenderer(pub std::sync::Arc<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for MetricsRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsRenderer")
    }
}
