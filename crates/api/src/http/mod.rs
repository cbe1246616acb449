//! HTTP wiring: POST (and query-only GET) /graphql, the offline explorer at GET /graphql,
//! subscriptions over WebSocket at /graphql/ws (graphql-ws and graphql-transport-ws), FHIR at
//! /fhir (in `crate::fhir_http`), and the operators' /healthz, /readyz and /metrics.
//!
//! Every request is authenticated here (a bearer JWT, or `--auth off`) and carries a `Caller`
//! into the schema; what the caller may do is decided by the engine, never here.
//!
//! Dependencies run one way: `router` assembles every handler (FHIR's and the dashboard's
//! included); the handlers use `auth`, `state`, `headers` and `respond`, and those use nothing
//! that routes, so a handler module outside `http` can use them without a cycle.

pub(crate) mod auth;
mod authenticator;
mod cors;
mod explorer;
mod graphql;
pub(crate) mod headers;
mod hosts;
mod middleware;
mod ops;
pub(crate) mod respond;
mod router;
mod settings;
pub(crate) mod state;
mod websocket;

pub use authenticator::Authenticator;
pub use cors::origin_problem;
pub(crate) use router::routers;
pub use router::{router, router_with};
pub use settings::{DegradedProbe, FhirConfig, HttpSettings, MetricsRenderer, DEFAULT_REQUEST_TIMEOUT};
