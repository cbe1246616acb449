//! HTTP wiring: POST (and query-only GET) /graphql, the offline explorer at GET /graphql,
//! subscriptions over WebSocket at /graphql/ws (graphql-ws and graphql-transport-ws), /healthz.
//!
//! Every GraphQL request is authenticated here (a bearer JWT, or `--auth off`) and carries a
//! `Caller` into the schema; what the caller may do is decided by the engine, never here.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_graphql::http::{WebSocketProtocols, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::{Data, ErrorExtensions, ServerError};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use forlop_auth::{Principal, Verifier};
use tower_http::trace::TraceLayer;

use crate::error::code;
use crate::graphql::{build_schemas, ForlopSchema};
use forlop_engine::{Caller, Engine};

/// Largest request body accepted (a bulk of mutations fits well within).
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Largest response sent; the list-items limit keeps ordinary queries far below it.
const MAX_RESPONSE: usize = 32 * 1024 * 1024;
/// Largest WebSocket message accepted.
const MAX_WS_MESSAGE: usize = 64 * 1024;
/// The media type of the GraphQL-over-HTTP specification.
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
/// Messages echo at most this many characters of what the client sent.
const ECHO: usize = 100;

/// How callers are authenticated.
#[derive(Clone, Debug)]
pub enum Authenticator {
    /// `--auth off`: everyone is `admin` with actor `anonymous` (loopback only; checked at start).
    Off,
    Jwt(Verifier),
}

impl Authenticator {
    async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, String> {
        self.authenticate_until(authorization).await.map(|(principal, _)| principal)
    }

    /// The caller, and until when their token is accepted (its `exp` plus the leeway; None
    /// under `--auth off`): what outlives the request, a WebSocket or a long upload, ends then.
    /// A token naming a key the identity provider published since the set was last fetched
    /// waits (a few seconds at most) for the set to be fetched again.
    async fn authenticate_until(&self, authorization: Option<&str>) -> Result<(Principal, Option<SystemTime>), String> {
        match self {
            Authenticator::Off => Ok((Principal::anonymous_admin(), None)),
            Authenticator::Jwt(verifier) => {
                let header = authorization.ok_or("a bearer token is required")?;
                let token = forlop_auth::bearer(header).ok_or("the Authorization header must be `Bearer <token>`")?;
                let (principal, until) =
                    verifier.verify_until_current(token).await.map_err(|e| format!("invalid token: {e}"))?;
                Ok((principal, Some(until)))
            }
        }
    }
}

/// When a connection's token stops being accepted (its `exp` plus the verifier's leeway). Put
/// into a WebSocket connection's data at `connection_init` for the subscriptions to check;
/// absent under `--auth off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenExpiry(pub(crate) SystemTime);

impl TokenExpiry {
    pub(crate) fn passed(self) -> bool {
        SystemTime::now() >= self.0
    }
}

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
    /// 404. None: `/metrics` beside the API, as before.
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

#[derive(Clone)]
pub(crate) struct AppState {
    schema: ForlopSchema,
    /// The same schema validating only what depends on the variables, for documents that passed
    /// `schema`'s full validation before.
    prevalidated_schema: ForlopSchema,
    engine: Engine,
    pub(crate) settings: std::sync::Arc<HttpSettings>,
    documents: std::sync::Arc<crate::limits::DocumentCache>,
    pub(crate) fhir: Option<forlop_fhir::Fhir>,
}

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
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphql/ws", get(websocket))
        .route("/graphql/assets/{file}", get(asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if !separate_metrics {
        api = api.route("/metrics", get(metrics_text));
    }
    let api = api
        .merge(crate::dashboard::routes())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        .merge(bulk);
    let metrics = separate_metrics.then(|| {
        let metrics = Router::new()
            .route("/metrics", get(metrics_text))
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
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
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

/// Request headers a browser page may send cross-origin (besides the CORS-safelisted ones):
/// the bearer token, JSON bodies, read-your-writes and a client's own correlation id.
const CORS_REQUEST_HEADERS: [&str; 5] =
    ["authorization", "content-type", "accept", MIN_POSITION_HEADER, "x-request-id"];
/// How long a browser may reuse a preflight's answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// CORS for exactly the origins of `--allowed-origins` (compared as `origin_allowed` compares
/// them, without regard to case), or for any origin when they hold `*`. Never with
/// credentials: forlop authenticates by bearer token, which a page sends itself; no cookie or
/// HTTP authentication of a browser's is ever needed, so none is invited. An origin not
/// allowed gets no CORS header at all, and its browser withholds the answer from its page.
/// None when no origin is listed: a page on the server's own origin needs no CORS.
fn cors(allowed: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if allowed.is_empty() {
        return None;
    }
    let origins = if allowed.iter().any(|a| a.trim() == "*") {
        AllowOrigin::any()
    } else {
        let allowed: Vec<String> = allowed.iter().map(|a| a.trim().to_owned()).collect();
        AllowOrigin::predicate(move |origin, _| {
            origin.to_str().is_ok_and(|origin| allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)))
        })
    };
    let headers = CORS_REQUEST_HEADERS.map(header::HeaderName::from_static);
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            // FHIR is read with GET and written with POST, as GraphQL is; nothing takes PUT or DELETE.
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers(headers)
            .expose_headers([header::HeaderName::from_static("x-request-id"), header::WWW_AUTHENTICATE])
            .max_age(CORS_MAX_AGE),
    )
}

/// Why an `--allowed-origins` entry is not one, if it is not: a browser sends an origin as
/// `scheme://host[:port]`, lowercase, with no path and no trailing slash, so an entry in any
/// other shape would never match and its dashboard would be refused without a word.
pub fn origin_problem(origin: &str) -> Option<String> {
    let origin = origin.trim();
    if origin == "*" {
        return None;
    }
    let explain = |why: &str| {
        Some(format!(
            "{origin:?} is not an origin ({why}); write scheme://host[:port], e.g. https://dashboard.example.no"
        ))
    };
    let Some((scheme, rest)) = origin.split_once("://") else { return explain("no scheme") };
    if scheme != "http" && scheme != "https" {
        return explain("the scheme is neither http nor https");
    }
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return explain("it has a path; a browser sends none, not even a trailing slash");
    }
    if rest.contains('@') || host_name(rest).is_none() {
        return explain("no valid host");
    }
    None
}

/// A GraphQL error body with a code, for failures before execution.
pub(crate) fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message.into(), "extensions": { "code": code } }]
    });
    (status, Json(body)).into_response()
}

/// A panic in a handler becomes a coded 500 with a correlation id to find it in the log, not a
/// dropped connection.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    let id = uuid::Uuid::new_v4();
    tracing::error!(correlation_id = %id, %detail, "handler panicked");
    let mut r = error_response(StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL, format!("internal error ({id})"));
    if let Ok(v) = id.to_string().parse() {
        r.headers_mut().insert("x-request-id", v);
    }
    r
}

/// Longest request target accepted (a GET query fits well within).
const MAX_URI: usize = 16 * 1024;
/// Most header bytes accepted (a HelseID token is a few kilobytes).
const MAX_HEADERS: usize = 32 * 1024;

/// 414 and 431 as coded JSON errors, like every other refusal.
async fn request_bounds(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if request.uri().to_string().len() > MAX_URI {
        return error_response(
            StatusCode::URI_TOO_LONG,
            code::INVALID_INPUT,
            format!("the URI exceeds {MAX_URI} bytes"),
        );
    }
    let header_bytes: usize = request.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if header_bytes > MAX_HEADERS {
        return error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            code::INVALID_INPUT,
            format!("the request headers exceed {MAX_HEADERS} bytes"),
        );
    }
    next.run(request).await
}

/// Which `Host`s are answered, against DNS rebinding: a page on `evil.example` whose name the
/// attacker then points at 127.0.0.1 is same-origin with everything this server answers for
/// that name, so its script could read what a loopback server gives anyone (all of it under
/// `--auth off`; the explorer's embedded admin token under `--demo`). Such a request names the
/// attacker's host, in `Host` and `Origin` alike, so the Origin check alone cannot see it.
///
/// Enforced under `--auth off` and under `--demo` (the only configuration with an explorer
/// token), where a browser's request is authority enough. Under `--auth jwt` a rebound page
/// gets nothing a token would not be needed for (browsers attach no bearer token by themselves),
/// and behind a proxy the `Host` is whatever the deployment names it, so it is not checked.
///
/// Answered: `localhost`, any IP address (a page whose origin is an address is not one an
/// attacker's DNS can rebind; under `--auth off` the listen address is loopback, checked at
/// start), and the hosts of `--allowed-origins`. Any port: the port is the one the request
/// reached, whatever the name.
#[derive(Debug)]
struct HostRule {
    /// Lowercase names answered besides IP addresses.
    names: Vec<String>,
}

impl HostRule {
    fn for_settings(settings: &HttpSettings) -> Option<HostRule> {
        let enforced = matches!(settings.auth, Authenticator::Off) || settings.explorer_token.is_some();
        if !enforced {
            return None;
        }
        let mut names = vec!["localhost".to_owned()];
        names.extend(settings.allowed_origins.iter().filter_map(|o| origin_host(o)));
        Some(HostRule { names })
    }

    fn allows(&self, host: &str) -> bool {
        match host_name(host) {
            Some(name) => name.parse::<IpAddr>().is_ok() || self.names.contains(&name),
            None => false,
        }
    }
}

/// The name in a `Host` value (`name`, `name:port`, `[v6]` or `[v6]:port`), lowercased; None
/// when it is none of these.
fn host_name(host: &str) -> Option<String> {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            (v6, port)
        }
        None => match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = !name.is_empty() && !name.contains(['/', '\\', '@', ' ']);
    (port_ok && name_ok).then(|| name.to_ascii_lowercase())
}

/// The host of an origin (`scheme://host[:port]`), for the Host rule; None for `*` or a value
/// that is not an origin.
fn origin_host(origin: &str) -> Option<String> {
    let (_, rest) = origin.trim().split_once("://")?;
    host_name(rest.split('/').next().unwrap_or_default())
}

/// Refuses a request for a host this server does not answer for (see [`HostRule`]) with 421,
/// before anything else is done with it.
async fn host_allowed(
    State(rule): State<Option<Arc<HostRule>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(rule) = rule else { return next.run(request).await };
    // A browser always names the host (HTTP/2 in the authority); a request naming none is not
    // a browser's, which is all this rule is about.
    let host = header_str(request.headers(), header::HOST)
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    match host {
        Some(host) if !rule.allows(&host) => {
            let message = format!(
                "this server does not answer for host {:?}: under --auth off and --demo it answers only for \
                 localhost, an IP address or a host of --allowed-origins (a defence against DNS rebinding)",
                clip(&host)
            );
            if request.uri().path().starts_with("/fhir") {
                // As every FHIR route answers: an OperationOutcome.
                let issue = forlop_fhir::mapping::Issue::new(
                    forlop_fhir::outcome::IssueType::Forbidden,
                    "",
                    format!("FORBIDDEN: {message}"),
                );
                let body = serde_json::to_vec(&forlop_fhir::outcome::operation_outcome(&[issue])).unwrap_or_default();
                let content_type = [(header::CONTENT_TYPE, "application/fhir+json")];
                (StatusCode::MISDIRECTED_REQUEST, content_type, body).into_response()
            } else {
                error_response(StatusCode::MISDIRECTED_REQUEST, code::FORBIDDEN, message)
            }
        }
        _ => next.run(request).await,
    }
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(ECHO).collect();
    if s.chars().count() > ECHO {
        out.push('…');
    }
    out
}

async fn not_found(method: Method) -> Response {
    if method == Method::GET || method == Method::HEAD {
        error_response(StatusCode::NOT_FOUND, code::NOT_FOUND, "no such path; GraphQL is at /graphql")
    } else {
        error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            code::INVALID_INPUT,
            "method not allowed; GraphQL is at /graphql",
        )
    }
}

pub(crate) fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// True when a browser page on `origin` may talk to this server: its own origin, or one listed.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = header_str(headers, header::ORIGIN) else {
        return true; // not a browser: cross-site requests always carry Origin
    };
    if allowed.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let host = header_str(headers, header::HOST).unwrap_or_default();
    let bare = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    !host.is_empty() && bare.eq_ignore_ascii_case(host)
}

fn wants_graphql_response(headers: &HeaderMap) -> bool {
    header_str(headers, header::ACCEPT).is_some_and(|a| a.contains(GRAPHQL_RESPONSE_JSON))
}

/// Authenticates the request; the caller's operation name is added once the body is parsed.
#[allow(clippy::result_large_err)] // the error is the response itself, built once per refusal
pub(crate) async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, Response> {
    if !origin_allowed(headers, &state.settings.allowed_origins) {
        return Err(error_response(StatusCode::FORBIDDEN, code::FORBIDDEN, "origin not allowed"));
    }
    state.settings.auth.authenticate(header_str(headers, header::AUTHORIZATION)).await.map_err(|msg| {
        let mut r = error_response(StatusCode::UNAUTHORIZED, code::UNAUTHENTICATED, msg);
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    })
}

/// Until when the request's token is accepted (its `exp` plus the leeway), for a request that
/// may run longer than that; None under `--auth off`, or without a valid token.
pub(crate) async fn token_expiry(state: &AppState, headers: &HeaderMap) -> Option<SystemTime> {
    state.settings.auth.authenticate_until(header_str(headers, header::AUTHORIZATION)).await.ok()?.1
}

/// POST /graphql: only JSON bodies are executed. A form or `text/plain` post, which any web page
/// can send cross-site without a preflight, is refused before anything runs.
async fn graphql_post(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let content_type = header_str(&headers, header::CONTENT_TYPE).unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if media != "application/json" && media != GRAPHQL_RESPONSE_JSON {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_INPUT,
            "POST /graphql takes Content-Type: application/json",
        );
    }
    let principal = match authenticate(&state, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let too_large = || {
        let mut r = error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::INVALID_INPUT,
            format!("the request body exceeds {MAX_BODY} bytes"),
        );
        // The rest of the body is never read, so this connection cannot carry another request.
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    };
    let declared = header_str(&headers, header::CONTENT_LENGTH).and_then(|l| l.parse::<usize>().ok());
    if declared.is_some_and(|l| l > MAX_BODY) {
        return too_large();
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(msg) => return error_response(StatusCode::BAD_REQUEST, code::INVALID_INPUT, msg),
    };
    execute(&state, &headers, principal, request).await
}

/// A GraphQL request must be one JSON object with a string `query`.
fn parse_request(body: &Bytes) -> Result<async_graphql::Request, String> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not JSON (line {}, column {})", e.line(), e.column()))?;
    let serde_json::Value::Object(fields) = &value else {
        return Err("the body must be one JSON object: {\"query\": ..., \"variables\": ...}".into());
    };
    if !fields.get("query").is_some_and(|q| q.is_string()) {
        return Err("the body must carry `query` as a string".into());
    }
    if fields.get("variables").is_some_and(|v| !v.is_object() && !v.is_null()) {
        return Err("`variables` must be an object".into());
    }
    if fields.get("operationName").is_some_and(|v| !v.is_string() && !v.is_null()) {
        return Err("`operationName` must be a string".into());
    }
    serde_json::from_value(value).map_err(|_| "malformed GraphQL request".to_string())
}

#[derive(serde::Deserialize)]
struct GetParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
}

/// GET /graphql: the explorer for browsers; with `?query=`, a query (never a mutation).
async fn graphql_get(State(state): State<AppState>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let params = Query::<GetParams>::try_from_uri(&uri).ok();
    let Some(Query(GetParams { query: Some(query), operation_name, variables })) = params else {
        return explorer(&state);
    };
    let principal = match authenticate(&state, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Ok(doc) = async_graphql::parser::parse_query(&query) {
        let mutation = doc.operations.iter().any(|(name, op)| {
            let selected = operation_name.as_deref().is_none_or(|n| name.is_some_and(|name| name.as_str() == n));
            selected && op.node.ty != async_graphql::parser::types::OperationType::Query
        });
        if mutation {
            let mut r = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                code::INVALID_INPUT,
                "GET executes queries only; send mutations with POST",
            );
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
    }
    let mut request = async_graphql::Request::new(query);
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    if let Some(vars) = variables {
        match serde_json::from_str::<serde_json::Value>(&vars) {
            Ok(v @ serde_json::Value::Object(_)) => request = request.variables(async_graphql::Variables::from_json(v)),
            _ => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    code::INVALID_INPUT,
                    "`variables` must be a JSON object",
                )
            }
        }
    }
    execute(&state, &headers, principal, request).await
}

/// Read-your-writes across nodes: a request carrying this header (a position a mutation
/// returned, on any node) is answered once this node's read model holds that position.
pub const MIN_POSITION_HEADER: &str = "x-forlop-min-position";
/// How long such a request waits before it is answered `UNAVAILABLE`.
pub const MIN_POSITION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    principal: Principal,
    mut request: async_graphql::Request,
) -> Response {
    let checked = match crate::limits::check(&mut request, &state.documents) {
        Ok(checked) => checked,
        Err(msg) => return error_response(StatusCode::BAD_REQUEST, code::INVALID_INPUT, msg),
    };
    let operation = checked.operation;
    let query = if checked.validated { None } else { Some(request.query.clone()) };
    let mut caller = Caller::new(principal, operation.as_deref());
    // A client's own correlation id (a UUID in `x-request-id`) ties our records to its logs.
    if let Some(id) = header_str(headers, header::HeaderName::from_static("x-request-id")).and_then(|v| v.parse().ok())
    {
        caller.correlation_id = id;
    }
    let request_id = caller.correlation_id;
    if let Some(value) = header_str(headers, header::HeaderName::from_static(MIN_POSITION_HEADER)) {
        let Ok(position) = value.trim().parse::<u64>() else {
            return error_response(
                StatusCode::BAD_REQUEST,
                code::INVALID_INPUT,
                "X-Forlop-Min-Position must be a log position (a whole number, as a mutation returns it)",
            );
        };
        if let Err(e) = state.engine.wait_for_position(position, MIN_POSITION_WAIT).await {
            return error_response(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string());
        }
    }
    let label = operation_label(operation.as_deref());
    let started = std::time::Instant::now();
    let schema = if checked.validated { &state.prevalidated_schema } else { &state.schema };
    // The access records of what this request discloses go to the log as the resolvers grant
    // each patient; they must be durable before any of the answer leaves (checked below).
    let (caller, disclosures) = caller.settling_later();
    let mut response = schema.execute(request.data(caller)).await;
    let count = |outcome: String| {
        metrics::counter!("forlop_graphql_requests_total", "operation" => label.clone(), "outcome" => outcome.clone())
            .increment(1);
        metrics::histogram!("forlop_graphql_request_seconds", "operation" => label.clone(), "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
    };
    let outcome = response
        .errors
        .first()
        .and_then(|e| e.extensions.as_ref())
        .and_then(|x| x.get("code"))
        .and_then(|c| if let async_graphql::Value::String(c) = c { Some(c.clone()) } else { None })
        .unwrap_or_else(|| if response.errors.is_empty() { "OK".into() } else { code::INVALID_INPUT.into() });
    for err in &mut response.errors {
        with_code(err);
    }
    // A request error (parse, validation, limits) has no path: nothing was executed.
    let request_error = !response.errors.is_empty() && response.errors.iter().all(|e| e.path.is_empty());
    if let Some(query) = query {
        if response.errors.iter().all(|e| !e.path.is_empty()) {
            state.documents.validated(&query);
        }
    }
    let graphql_response = wants_graphql_response(headers);
    // GraphQL over HTTP: a request that could not be executed is a 400 for the new media type.
    let status = if graphql_response && request_error && response.data == async_graphql::Value::Null {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    // Serialised once, straight from the response, so fields keep the selection's order.
    let bytes = if request_error && response.data == async_graphql::Value::Null {
        // Nothing was executed: no `data` entry at all (GraphQL over HTTP).
        serde_json::to_vec(&NotExecuted { errors: &response.errors, extensions: &response.extensions })
    } else {
        serde_json::to_vec(&response)
    }
    .unwrap_or_default();
    if let Err(e) = disclosures.settle().await {
        count(e.code().into());
        return error_response(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string());
    }
    count(outcome);
    if bytes.len() > MAX_RESPONSE {
        // Unbounded lists (careAlerts, history) times aliases: refuse rather than send it.
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            code::INVALID_INPUT,
            format!("the response would exceed {MAX_RESPONSE} bytes; narrow the query or page it"),
        );
    }
    let mut http = (status, bytes).into_response();
    let media = if graphql_response { GRAPHQL_RESPONSE_JSON } else { "application/json" };
    http.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    if let Ok(v) = request_id.to_string().parse() {
        http.headers_mut().insert("x-request-id", v);
    }
    http
}

/// The body of a request that was refused before execution: its errors, and no `data`.
#[derive(serde::Serialize)]
struct NotExecuted<'a> {
    errors: &'a [ServerError],
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: &'a std::collections::BTreeMap<String, async_graphql::Value>,
}

/// Gives a code to any error that still has none (a safety net: the schema's limits extension
/// codes parse and validation errors), keeping messages short.
fn with_code(err: &mut ServerError) {
    let ext = err.extensions.get_or_insert_with(Default::default);
    if ext.get("code").is_none() {
        ext.set("code", code::INVALID_INPUT);
        err.message = clip(&err.message);
    }
}

/// WebSocket subscriptions. The browser's Origin is checked before the upgrade, and the
/// caller is authenticated from `connection_init` (`{"Authorization": "Bearer …"}`), or from
/// the upgrade's own Authorization header for clients that can set one.
async fn websocket(
    State(state): State<AppState>,
    slot: Option<axum::Extension<crate::server::ConnectionSlot>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &state.settings.allowed_origins) {
        return error_response(StatusCode::FORBIDDEN, code::FORBIDDEN, "origin not allowed");
    }
    // The first subprotocol offered that we speak (graphql-transport-ws or legacy graphql-ws).
    let protocol = header_str(&headers, header::SEC_WEBSOCKET_PROTOCOL)
        .unwrap_or_default()
        .split(',')
        .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
        .unwrap_or(WebSocketProtocols::SubscriptionsTransportWS);
    let upgrade_auth = header_str(&headers, header::AUTHORIZATION).map(str::to_owned);
    let (schema, auth) = (state.schema.clone(), state.settings.auth.clone());
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| async move {
            // The socket counts against --max-connections until it closes.
            let _slot = slot;
            ws_session(socket, schema, protocol, auth, upgrade_auth).await
        })
}

/// A client must send `connection_init` within this time (graphql-transport-ws: close 4408).
const WS_INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Close code for a connection whose token is refused, at `connection_init`, or has expired
/// (graphql-transport-ws: 4403 Forbidden).
const WS_FORBIDDEN: u16 = 4403;

/// Longest close reason a WebSocket close frame may carry, in bytes (RFC 6455 §5.5).
const CLOSE_REASON: usize = 123;

/// The message's `type` and `id`, when it is a JSON object.
fn message_kind(text: &str) -> (Option<String>, Option<String>) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    (s("type"), s("id"))
}

/// The Authorization a `connection_init` message carries in its payload, if any.
fn init_authorization(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let payload = v.get("payload")?;
    payload.get("Authorization").or_else(|| payload.get("authorization"))?.as_str().map(str::to_owned)
}

/// `reason` cut to fit a close frame, at a character boundary.
fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// True once `until` (a token's expiry) has passed; never for a connection without one.
fn expired(until: Option<SystemTime>) -> bool {
    until.is_some_and(|u| TokenExpiry(u).passed())
}

/// One WebSocket connection: async-graphql speaks the protocol; this loop adds the rules it
/// leaves to the server: the initialisation timeout (4408), unique subscription ids (4409), and
/// the token's authority (4403). The token `connection_init` presents is checked here, before
/// async-graphql acknowledges anything; it is checked again on every `subscribe`, and when it
/// expires (its `exp` plus the leeway) the socket is closed with 4403: a connection must not
/// outlast the token that opened it (a subscription would otherwise go on delivering, and a new
/// one replaying whole streams, for as long as the socket stays open).
async fn ws_session(
    socket: axum::extract::ws::WebSocket,
    schema: ForlopSchema,
    protocol: WebSocketProtocols,
    auth: Authenticator,
    upgrade_auth: Option<String>,
) {
    use axum::extract::ws::{CloseFrame, Message};
    use futures::{SinkExt, StreamExt};
    let (mut sink, mut source) = socket.split();
    let (to_graphql, from_client) = tokio::sync::mpsc::unbounded_channel::<String>();
    // The caller this loop authenticated from the first `connection_init`, for async-graphql's
    // hook, which runs on that same message once the loop has forwarded it.
    let accepted = Arc::new(parking_lot::Mutex::new(None::<(Principal, Option<SystemTime>)>));
    let hook = accepted.clone();
    let mut graphql = async_graphql::http::WebSocket::new(
        schema,
        tokio_stream::wrappers::UnboundedReceiverStream::new(from_client),
        protocol,
    )
    .on_connection_init(move |_payload| async move {
        let Some((principal, until)) = hook.lock().take() else {
            // Not reached: the loop forwards a first connection_init only once it is authenticated.
            return Err(async_graphql::Error::new("authentication required")
                .extend_with(|_, e| e.set("code", code::UNAUTHENTICATED)));
        };
        let mut data = Data::default();
        data.insert(Caller::server(principal, "subscription"));
        if let Some(until) = until {
            data.insert(TokenExpiry(until));
        }
        Ok(data)
    });
    let close =
        |code: u16, reason: &str| Message::Close(Some(CloseFrame { code, reason: close_reason(reason).into() }));
    let init_deadline = tokio::time::sleep(WS_INIT_TIMEOUT);
    tokio::pin!(init_deadline);
    // Armed once the token is known; a connection without expiry (`--auth off`) never fires.
    let token_expiry = tokio::time::sleep(Duration::MAX);
    tokio::pin!(token_expiry);
    let mut initialised = false;
    // The Authorization the connection was opened with, and until when it holds.
    let mut authorization: Option<Option<String>> = None;
    let mut until: Option<SystemTime> = None;
    let mut active = std::collections::HashSet::<String>::new();
    loop {
        tokio::select! {
            () = &mut init_deadline, if !initialised => {
                let _ = sink.send(close(4408, "Connection initialisation timeout")).await;
                break;
            }
            () = &mut token_expiry, if until.is_some() => {
                let _ = sink.send(close(WS_FORBIDDEN, "token expired")).await;
                break;
            }
            incoming = source.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                };
                match message_kind(&text) {
                    (Some(t), _) if t == "connection_init" && !initialised => {
                        initialised = true;
                        let header = init_authorization(&text).or_else(|| upgrade_auth.clone());
                        let refusal = match auth.authenticate_until(header.as_deref()).await {
                            // Accepted within its last second (the verifier counts whole seconds).
                            Ok((_, valid_until)) if expired(valid_until) => Some("invalid token: token expired".to_owned()),
                            Ok((principal, valid_until)) => {
                                *accepted.lock() = Some((principal, valid_until));
                                if let Some(u) = valid_until {
                                    // tokio's own bound on a timer (about 30 years).
                                    let left = u.duration_since(SystemTime::now()).unwrap_or_default();
                                    let left = left.min(Duration::from_secs(30 * 365 * 86_400));
                                    if let Some(at) = tokio::time::Instant::now().checked_add(left) {
                                        token_expiry.as_mut().reset(at);
                                    }
                                }
                                (authorization, until) = (Some(header), valid_until);
                                None
                            }
                            Err(msg) => Some(msg),
                        };
                        if let Some(reason) = refusal {
                            if protocol == WebSocketProtocols::SubscriptionsTransportWS {
                                // The legacy protocol's own refusal, before the close it has no code for.
                                let refused = serde_json::json!({ "type": "connection_error",
                                    "payload": { "message": reason, "extensions": { "code": code::UNAUTHENTICATED } } });
                                let _ = sink.send(Message::Text(refused.to_string().into())).await;
                            }
                            let _ = sink.send(close(WS_FORBIDDEN, &reason)).await;
                            break;
                        }
                    }
                    (Some(t), _) if t == "connection_init" => {}
                    (Some(t), Some(id)) if t == "subscribe" || t == "start" => {
                        // Every subscription is a new use of the token: checked again (the
                        // verifier remembers it, so only its time bounds are re-read).
                        if let Some(header) = &authorization {
                            let still = auth.authenticate_until(header.as_deref()).await;
                            if let Some(reason) = match still {
                                Ok(_) if expired(until) => Some("token expired".to_owned()),
                                Ok(_) => None,
                                Err(msg) => Some(msg),
                            } {
                                let _ = sink.send(close(WS_FORBIDDEN, &reason)).await;
                                break;
                            }
                        }
                        if !active.insert(id.clone()) {
                            let reason = format!("Subscriber for {} already exists", clip(&id));
                            let _ = sink.send(close(4409, &reason)).await;
                            break;
                        }
                    }
                    (Some(t), Some(id)) if t == "complete" || t == "stop" => {
                        active.remove(&id);
                    }
                    _ => {}
                }
                if to_graphql.send(text).is_err() {
                    break;
                }
            }
            outgoing = graphql.next() => match outgoing {
                Some(async_graphql::http::WsMessage::Text(t)) => {
                    // The timer and this message may be ready together: nothing goes out late.
                    if expired(until) {
                        let _ = sink.send(close(WS_FORBIDDEN, "token expired")).await;
                        break;
                    }
                    if let (Some(kind), Some(id)) = message_kind(&t) {
                        if kind == "complete" || kind == "error" {
                            active.remove(&id);
                        }
                    }
                    if sink.send(Message::Text(t.into())).await.is_err() {
                        break;
                    }
                }
                Some(async_graphql::http::WsMessage::Close(code, reason)) => {
                    let _ = sink.send(close(code, &reason)).await;
                    break;
                }
                None => break,
            },
        }
    }
}

fn explorer(state: &AppState) -> Response {
    let page = include_str!("../assets/explorer.html");
    let token = state.settings.explorer_token.as_deref().map_or("null".to_string(), |t| format!("{t:?}"));
    Html(page.replace("/*FORLOP_TOKEN*/null", &token)).into_response()
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, mime): (&'static [u8], &str) = match file.as_str() {
        "react.production.min.js" => (include_bytes!("../assets/react.production.min.js"), "text/javascript"),
        "react-dom.production.min.js" => (include_bytes!("../assets/react-dom.production.min.js"), "text/javascript"),
        "graphiql.min.js" => (include_bytes!("../assets/graphiql.min.js"), "text/javascript"),
        "graphiql.min.css" => (include_bytes!("../assets/graphiql.min.css"), "text/css"),
        _ => return error_response(StatusCode::NOT_FOUND, code::NOT_FOUND, "no such asset"),
    };
    ([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "public, max-age=86400")], body).into_response()
}

/// Liveness: 200 only while the writer and the projector are alive and no log has failed; else
/// 503 naming what is wrong (fail-stop: a restart after the cause is fixed recovers). A part
/// beside the node that fails (the backup) makes it `degraded`, still 200: it serves on.
async fn healthz(State(state): State<AppState>) -> Response {
    let failures = state.engine.failures();
    let degraded = state.settings.degraded.as_ref().map(|probe| (probe.0)()).unwrap_or_default();
    let status = if failures.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let (word, reasons) = match (failures.is_empty(), degraded.is_empty()) {
        (false, _) => ("failed", [failures, degraded].concat()),
        (true, false) => ("degraded", degraded),
        (true, true) => ("ok", Vec::new()),
    };
    let body = serde_json::json!({
        "status": word,
        "reasons": reasons,
        "committed": state.engine.committed(),
        "projected": state.engine.projected(),
        "accessRecords": state.engine.access_log().committed(),
    });
    (status, Json(body)).into_response()
}

/// Prometheus text format. Gauges that are states rather than events are set at scrape time.
async fn metrics_text(State(state): State<AppState>) -> Response {
    let Some(render) = &state.settings.metrics else {
        return error_response(StatusCode::NOT_FOUND, code::NOT_FOUND, "metrics are not enabled");
    };
    let engine = &state.engine;
    let lag = engine.committed().saturating_sub(engine.projected());
    metrics::gauge!("forlop_projection_lag_events").set(lag as f64);
    metrics::gauge!("forlop_live_subscriptions").set(engine.live_subscriptions() as f64);
    metrics::gauge!("forlop_failed").set(if engine.failures().is_empty() { 0.0 } else { 1.0 });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], (render.0)()).into_response()
}

/// A label value for a client-chosen operation name: short identifiers only, and at most 200
/// distinct ones per process, so a client cannot blow up the metrics' cardinality.
fn operation_label(name: Option<&str>) -> String {
    static SEEN: std::sync::OnceLock<parking_lot::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    // The access log's rule (no long digit runs: no national id on /metrics either).
    let name = match forlop_engine::access::operation_name(name) {
        "anonymous" => return "anonymous".into(),
        forlop_engine::access::UNNAMED_OPERATION => return "other".into(),
        name => name,
    };
    let mut seen = SEEN.get_or_init(Default::default).lock();
    if seen.contains(name) || (seen.len() < 200 && seen.insert(name.to_owned())) {
        name.to_owned()
    } else {
        "other".into()
    }
}

/// Readiness: 503 until the read model has folded every event the log held at start (and while
/// the node is failed), 200 afterwards.
async fn readyz(State(state): State<AppState>) -> Response {
    let ready = state.engine.ready() && state.engine.failures().is_empty();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "committed": state.engine.committed(),
        "projected": state.engine.projected(),
    });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str]) -> HostRule {
        let mut names = vec!["localhost".to_owned()];
        names.extend(origins.iter().filter_map(|o| origin_host(o)));
        HostRule { names }
    }

    #[test]
    fn the_host_rule_answers_for_localhost_addresses_and_allowed_origins_only() {
        let r = rule(&["https://Dashboard.Example.no", "http://forlop.test:3000/path", "*", "not an origin"]);
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "10.1.2.3:80",
            "[::1]",
            "[::1]:8080",
            "dashboard.example.no",
            "forlop.test:8080",
        ] {
            assert!(r.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "evil.example@localhost",
            "localhost:80:80",
            "localhost:",
            "localhost:123456",
            "localhost:8o",
            "[::1",
            "[evil.example]:80",
            "[::1]x",
            "",
            ":8080",
            "::1",
            "127.1",
            "2130706433",
            "local host",
        ] {
            assert!(!r.allows(refused), "{refused:?}");
        }
    }

    #[test]
    fn a_close_reason_fits_a_close_frame() {
        assert_eq!(close_reason("token expired"), "token expired");
        let long = "ø".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= CLOSE_REASON && long.starts_with(&cut) && cut.len() == 122, "{}", cut.len());
    }
}
