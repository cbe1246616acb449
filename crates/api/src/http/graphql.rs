//! GraphQL over HTTP: POST /graphql (JSON bodies only) and query-only GET /graphql, executed
//! with the authenticated caller, access records settled before the answer leaves.

use async_graphql::ServerError;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use forlop_auth::Principal;
use forlop_domain::text::clip;
use forlop_engine::Caller;

use super::auth::authenticate;
use super::explorer::explorer;
use super::headers::{header_str, MIN_POSITION_HEADER};
use super::respond::error_response;
use super::state::AppState;
use crate::error::code;
use crate::graphql::context::MIN_POSITION_WAIT;

/// Largest request body accepted (a bulk of mutations fits well within).
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Largest response sent; the list-items limit keeps ordinary queries far below it.
const MAX_RESPONSE: usize = 32 * 1024 * 1024;
/// The media type of the GraphQL-over-HTTP specification.
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

fn wants_graphql_response(headers: &HeaderMap) -> bool {
    header_str(headers, header::ACCEPT).is_some_and(|a| a.contains(GRAPHQL_RESPONSE_JSON))
}

/// POST /graphql: only JSON bodies are executed. A form or `text/plain` post, which any web page
/// can send cross-site without a preflight, is refused before anything runs.
pub(super) async fn graphql_post(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
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
pub(super) async fn graphql_get(State(state): State<AppState>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
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
