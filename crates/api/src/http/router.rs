//! The axum routers: every route of the API (FHIR's included) and the layers every request
//! passes through, and `/metrics` alone for its own listener.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use forlop_engine::Engine;
use tower_http::trace::TraceLayer;

use super::cors::cors;
use super::hosts::{host_allowed, HostRule};
use super::middleware::{panicked, request_bounds};
use super::respond::not_found;
use super::settings::HttpSettings;
use super::state::AppState;
use super::{explorer, graphql, ops, websocket};
use crate::graphql::build_schemas;

pub fn router(engine: Engine, settings: HttpSettings) -> Router {
    router_with(engine, settings, None)
}

/// The router, with the FHIR adapter (opened by `Application::build`) when there is one.
pub fn router_with(engine: Engine, settings: HttpSettings, fhir: Option<forlop_fhir::Fhir>) -> Router {
    routers(engine, settings, fhir).0
}

/// The API's router, and `/metrics` alone for its own listener when `metrics_listen` is set
/// (the API's router then has no `/metrics`).
pub(crate) fn routers(
    engine: Engine,
    settings: HttpSettings,
    fhir: Option<forlop_fhir::Fhir>,
) -> (Router, Option<Router>) {
    let documents = std::sync::Arc::new(crate::limits::DocumentCache::default());
    let (schema, prevalidated_schema) = build_schemas(engine.clone(), documents.clone());
    let request_timeout = settings.request_timeout;
    let hosts = HostRule::for_settings(&settings).map(Arc::new);
    let cors = cors(&settings.allowed_origins);
    let separate_metrics = settings.metrics_listen.is_some();
    let state =
        AppState { schema, prevalidated_schema, engine, settings: std::sync::Arc::new(settings), documents, fhir };
    // The bulk import streams for as long as the file takes: outside the per-request bound.
    let bulk = Router::new().route("/fhir/$import", axum::routing::post(crate::fhir_http::import));
    let mut api = Router::new()
        .route("/fhir", axum::routing::post(crate::fhir_http::bundle))
        .route("/fhir/metadata", get(crate::fhir_http::metadata))
        .route("/fhir/$unresolved", get(crate::fhir_http::unresolved))
        .route("/fhir/Patient/{id}/$everything", get(crate::fhir_http::everything))
        .route("/fhir/{type_name}/{id}", get(crate::fhir_http::read))
        .route("/fhir/{type_name}", get(crate::fhir_http::search))
        .route("/graphql", get(graphql::graphql_get).post(graphql::graphql_post))
        .route("/graphql/ws", get(websocket::websocket))
        .route("/graphql/assets/{file}", get(explorer::asset))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz));
    if !separate_metrics {
        api = api.route("/metrics", get(ops::metrics_text));
    }
    let api = api
        .merge(crate::dashboard::routes())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        .merge(bulk);
    let metrics = separate_metrics.then(|| {
        let metrics = Router::new()
            .route("/metrics", get(ops::metrics_text))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout));
        // The same rules as on the API's port, but no CORS: no page has business reading it.
        outer_layers(metrics, state.clone(), hosts.clone(), None)
    });
    (outer_layers(api, state, hosts, cors), metrics)
}

/// What every request passes through, whichever listener it came to.
fn outer_layers(
    routes: Router<AppState>,
    state: AppState,
    hosts: Option<Arc<HostRule>>,
    cors: Option<tower_http::cors::CorsLayer>,
) -> Router {
    let router = routes
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .with_state(state)
        .layer(axum::middleware::from_fn(request_bounds))
        .layer(axum::middleware::from_fn_with_state(hosts, host_allowed))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked));
    // Outside everything that may refuse: a page on an allowed origin can read the coded error
    // of a refusal (401, 403, 408, 421, 500), not only successes.
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.layer(TraceLayer::new_for_http())
}

fn is_fhir(path: &str) -> bool {
    path == "/fhir" || path.starts_with("/fhir/")
}

/// A path nothing serves: under `/fhir` an OperationOutcome, elsewhere a coded JSON error.
async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> axum::response::Response {
    match is_fhir(uri.path()) {
        true => crate::fhir_http::unserved(&method, uri.path(), false),
        false => not_found(method).await,
    }
}

/// A method a served path does not take, answered as `no_route` is.
async fn no_method(method: axum::http::Method, uri: axum::http::Uri) -> axum::response::Response {
    match is_fhir(uri.path()) {
        true => crate::fhir_http::unserved(&method, uri.path(), true),
        false => not_found(method).await,
    }
}
