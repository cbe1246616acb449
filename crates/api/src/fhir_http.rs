//! FHIR R4 over HTTP: `POST /fhir` (transaction and batch Bundles), `POST /fhir/$import`
//! (NDJSON), `GET /fhir/Patient/{id}/$everything`, `GET /fhir/metadata`. Authentication is the
//! GraphQL endpoint's; what the caller may do is decided by the engine, as for GraphQL.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use forlop_engine::{Caller, EngineError};
use forlop_fhir::held::unresolved_outcome;
use forlop_fhir::ingest::{import_outcome, response_bundle, BundleRequest};
use forlop_fhir::outcome::{operation_outcome, status_of, Issue, IssueType};
use forlop_fhir::{FailedLine, Fhir};
use futures::StreamExt;

use crate::http::auth::{authenticate, token_expiry};
use crate::http::headers::header_str;
use crate::http::state::AppState;

/// Largest Bundle body accepted; larger loads go through `$import`, which streams.
pub const MAX_BUNDLE_BYTES: usize = 16 * 1024 * 1024;
/// Longest NDJSON line (one resource) accepted by `$import`.
const MAX_LINE: usize = 1024 * 1024;
/// NDJSON lines mapped and placed together (a patient's facts in one chunk share one append).
const IMPORT_CHUNK: usize = 4000;
/// Failed lines listed in an import's answer (all are counted).
const MAX_LISTED: usize = 1000;
const FHIR_JSON: &str = "application/fhir+json";

fn fhir_response(status: StatusCode, body: serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

/// An OperationOutcome of `issues`, answered with the status of the first one's issue type.
fn outcome(issues: &[Issue]) -> Response {
    let status = StatusCode::from_u16(status_of(issues)).unwrap_or(StatusCode::BAD_REQUEST);
    outcome_as(status, issues)
}

/// An OperationOutcome answered with a status HTTP itself decides (a media type refused, the
/// route not served, the authentication layer's answer).
fn outcome_as(status: StatusCode, issues: &[Issue]) -> Response {
    fhir_response(status, operation_outcome(issues))
}

fn issue(code: IssueType, path: &str, message: impl Into<String>) -> Vec<Issue> {
    vec![Issue::new(code, path, message)]
}

/// An engine refusal as an OperationOutcome with its stable code, and its issue type's status.
fn refused(e: &EngineError) -> Response {
    outcome(&[Issue::refused("", e)])
}

/// The adapter and the caller, or the response that refuses the request.
async fn begin(
    state: &AppState,
    headers: &HeaderMap,
    operation: &'static str,
) -> Result<(Fhir, Caller), Box<Response>> {
    let Some(fhir) = state.fhir.clone() else {
        return Err(Box::new(outcome_as(
            StatusCode::NOT_FOUND,
            &issue(IssueType::NotSupported, "", "FHIR is not enabled on this server"),
        )));
    };
    match authenticate(state, headers).await {
        Ok(principal) => Ok((fhir, Caller::server(principal, operation))),
        Err(refused) => {
            let status = refused.status();
            let code = if status == StatusCode::UNAUTHORIZED { IssueType::Login } else { IssueType::Forbidden };
            let msg = if status == StatusCode::UNAUTHORIZED {
                "UNAUTHENTICATED: a valid bearer token is required"
            } else {
                "FORBIDDEN: origin not allowed"
            };
            let mut r = outcome_as(status, &issue(code, "", msg));
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Err(Box::new(r))
        }
    }
}

fn media(headers: &HeaderMap) -> String {
    let ct = header_str(headers, header::CONTENT_TYPE).unwrap_or_default();
    ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// `POST /fhir`: a transaction (all entries or none) or a batch (each on its own).
pub async fn bundle(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if !matches!(media(&headers).as_str(), FHIR_JSON | "application/json") {
        return outcome_as(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &issue(IssueType::NotSupported, "", "POST /fhir takes Content-Type: application/fhir+json"),
        );
    }
    let (fhir, caller) = match begin(&state, &headers, "fhir.bundle").await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let body = match axum::body::to_bytes(body, MAX_BUNDLE_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            let mut r = outcome(&issue(
                IssueType::TooCostly,
                "Bundle",
                format!("the Bundle exceeds {MAX_BUNDLE_BYTES} bytes; send bulk data to $import as NDJSON"),
            ));
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    let BundleRequest { all_or_none, entries } = match Fhir::read_bundle(&body) {
        Ok(x) => x,
        Err(i) => return outcome(&[i]),
    };
    let outcomes = fhir.ingest(&caller, &entries, all_or_none, !all_or_none).await;
    if outcomes.iter().any(|o| o.appended > 0) {
        // What waited for these resources can be placed now.
        fhir.retry_held().await;
    }
    if all_or_none && outcomes.iter().any(|o| !o.ok()) {
        // One OperationOutcome listing every problem of the whole transaction.
        let issues: Vec<Issue> = outcomes.iter().flat_map(|o| o.issues.clone()).collect();
        return outcome(&issues);
    }
    fhir_response(StatusCode::OK, response_bundle(all_or_none, &outcomes))
}

/// `POST /fhir/$import`: NDJSON, read line by line as it arrives.
pub async fn import(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if media(&headers) != "application/fhir+ndjson" {
        return outcome_as(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &issue(IssueType::NotSupported, "", "$import takes Content-Type: application/fhir+ndjson"),
        );
    }
    let (fhir, caller) = match begin(&state, &headers, "fhir.$import").await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    // A role that may record nothing has every line refused: say so at once, before reading a
    // body that may be gigabytes, rather than after reading all of it.
    if !forlop_engine::policy::may_record_anything(&caller.principal) {
        let mut r =
            outcome(&issue(IssueType::Forbidden, "", "FORBIDDEN: your role may not record; the import was not read"));
        // The body is never read, so this connection cannot carry another request.
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    // An import can run for longer than the token that started it: it reads no further than
    // the token's expiry (what it read until then is placed and reported).
    let until = token_expiry(&state, &headers).await;
    let body = stalls_after(body.into_data_stream(), state.settings.request_timeout);
    let lines = ndjson_lines(ends_at_expiry(body, until));
    let mut listed: Vec<Issue> = Vec::new();
    let summary = fhir
        .import_lines(&caller, Box::pin(lines), IMPORT_CHUNK, |_, failed| {
            for FailedLine { line, issues } in failed {
                for i in issues {
                    if listed.len() < MAX_LISTED {
                        let path = if i.path.is_empty() { line.clone() } else { i.path.clone() };
                        listed.push(Issue { path, ..i.clone() });
                    }
                }
            }
        })
        .await;
    fhir_response(StatusCode::OK, import_outcome(&summary, &listed))
}

/// `body`, ending with an error if no bytes arrive for `idle`: a client that stops sending
/// without closing must not hold an import open for ever.
fn stalls_after(
    body: axum::body::BodyDataStream,
    idle: std::time::Duration,
) -> impl futures::Stream<Item = Result<axum::body::Bytes, String>> + Unpin {
    Box::pin(futures::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(chunk)) => Some((chunk.map_err(|e| e.to_string()), Some(body))),
            Ok(None) => None,
            Err(_) => Some((Err(format!("no data for {} s; the rest of the body was not read", idle.as_secs())), None)),
        }
    }))
}

/// `body`, ending with an error once `until` (the token's expiry) has passed.
fn ends_at_expiry<S>(
    body: S,
    until: Option<std::time::SystemTime>,
) -> impl futures::Stream<Item = Result<axum::body::Bytes, String>> + Unpin
where
    S: futures::Stream<Item = Result<axum::body::Bytes, String>> + Unpin,
{
    let left = until.map(|u| u.duration_since(std::time::SystemTime::now()).unwrap_or_default());
    let expiry = Box::pin(tokio::time::sleep(left.unwrap_or(std::time::Duration::MAX)));
    Box::pin(futures::stream::unfold(Some((body, expiry)), move |state| async move {
        let (mut body, mut expiry) = state?;
        tokio::select! {
            chunk = body.next() => chunk.map(|c| (c, Some((body, expiry)))),
            () = &mut expiry, if left.is_some() => {
                Some((Err("the token expired; the rest of the body was not read".to_owned()), None))
            }
        }
    }))
}

/// Splits a body stream into lines without holding more than one line (and one chunk).
pub fn ndjson_lines<S, E>(stream: S) -> impl futures::Stream<Item = std::io::Result<String>>
where
    S: futures::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    futures::stream::unfold((stream, Vec::<u8>::new(), false), |(mut stream, mut buf, mut done)| async move {
        loop {
            if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let text = String::from_utf8(line[..line.len() - 1].to_vec())
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "a line is not UTF-8"));
                return Some((text, (stream, buf, done)));
            }
            if buf.len() > MAX_LINE {
                buf.clear();
                let e =
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a line exceeds {MAX_LINE} bytes"));
                // Skip the rest of that line.
                return Some((Err(e), (stream, buf, done)));
            }
            if done {
                if buf.is_empty() {
                    return None;
                }
                let text = String::from_utf8(std::mem::take(&mut buf))
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "a line is not UTF-8"));
                return Some((text, (stream, buf, done)));
            }
            match stream.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    done = true;
                    buf.clear();
                    return Some((Err(std::io::Error::other(e.to_string())), (stream, buf, done)));
                }
                None => done = true,
            }
        }
    })
}

/// `GET /fhir/Patient/{id}/$everything`.
pub async fn everything(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (fhir, caller) = match begin(&state, &headers, "fhir.Patient.$everything").await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Ok(patient) = id.parse::<uuid::Uuid>() else {
        return outcome(&issue(IssueType::NotFound, "Patient.id", "forlop's patient ids are UUIDs"));
    };
    let base = base_url(&headers);
    match fhir.everything(&caller, patient, &base).await {
        Ok(Some(bundle)) => fhir_response(StatusCode::OK, bundle),
        Ok(None) => outcome(&issue(IssueType::NotFound, "Patient.id", format!("no patient {patient}"))),
        Err(e) => refused(&e),
    }
}

/// `GET /fhir/{type}/{id}`: one resource, with `meta` and an `ETag` from the log.
pub async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((type_name, id)): Path<(String, String)>,
) -> Response {
    if !forlop_fhir::read::READABLE.contains(&type_name.as_str()) {
        let known = forlop_fhir::r4_types::is_r4_resource_type(&type_name);
        let (status, code) = if known {
            (StatusCode::BAD_REQUEST, IssueType::NotSupported)
        } else {
            (StatusCode::NOT_FOUND, IssueType::NotFound)
        };
        let message = format!(
            "{} is not read here; forlop reads {}",
            forlop_domain::text::quote(&type_name),
            forlop_fhir::read::READABLE.join(", ")
        );
        return outcome_as(status, &issue(code, "", message));
    }
    let (fhir, caller) = match begin(&state, &headers, "fhir.read").await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let not_found =
        || outcome(&issue(IssueType::NotFound, "", format!("no {type_name} {}", forlop_domain::text::quote(&id))));
    let Ok(uuid) = id.parse::<uuid::Uuid>() else { return not_found() };
    match fhir.read(&caller, &type_name, uuid, &base_url(&headers)).await {
        Ok(Some(read)) => {
            let mut r = fhir_response(StatusCode::OK, read.resource);
            if let Ok(tag) = HeaderValue::from_str(&format!("W/\"{}\"", read.version)) {
                r.headers_mut().insert(header::ETAG, tag);
            }
            r
        }
        Ok(None) => not_found(),
        Err(e) => refused(&e),
    }
}

/// `GET /fhir/{type}?…`: a search, answered as a searchset Bundle.
pub async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(type_name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let (fhir, caller) = match begin(&state, &headers, "fhir.search").await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let lenient = header_str(&headers, header::HeaderName::from_static("prefer"))
        .is_some_and(|p| p.split([';', ',']).any(|x| x.trim() == "handling=lenient"));
    let req = forlop_fhir::search::SearchRequest::from_query(&type_name, query.as_deref(), lenient);
    match fhir.search(&caller, &req, &base_url(&headers)).await {
        Ok(bundle) => fhir_response(StatusCode::OK, bundle),
        Err(forlop_fhir::search::SearchError::Parameters(issues)) => outcome(&issues),
        Err(forlop_fhir::search::SearchError::Refused(e)) => refused(&e),
    }
}

/// `GET /fhir/$unresolved`: resources held past the hold time for references that never came,
/// and held resources that can never be placed. What waits and why; no resource content.
pub async fn unresolved(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (fhir, caller) = match begin(&state, &headers, "fhir.$unresolved").await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    match fhir.unresolved(&caller) {
        Ok(held) => fhir_response(StatusCode::OK, unresolved_outcome(&held)),
        Err(e) => refused(&e),
    }
}

/// A path under `/fhir` that is not served, or a method it does not take: an OperationOutcome,
/// as a FHIR client reads errors, naming where what is served is listed.
pub(crate) fn unserved(method: &Method, path: &str, path_exists: bool) -> Response {
    let shown = forlop_domain::text::quote(path);
    if path_exists {
        outcome_as(
            StatusCode::METHOD_NOT_ALLOWED,
            &issue(
                IssueType::NotSupported,
                "",
                format!("{method} is not served at {shown}; GET /fhir/metadata lists what is"),
            ),
        )
    } else {
        outcome_as(
            StatusCode::NOT_FOUND,
            &issue(IssueType::NotFound, "", format!("{shown} is not served; GET /fhir/metadata lists what is")),
        )
    }
}

/// `GET /fhir/metadata`: public, as FHIR servers publish it.
pub async fn metadata(headers: HeaderMap) -> Response {
    fhir_response(StatusCode::OK, forlop_fhir::capability::capability_statement(&base_url(&headers)))
}

fn base_url(headers: &HeaderMap) -> String {
    let host =
        header_str(headers, header::HOST).filter(|h| h.len() < 256 && !h.contains(['/', ' '])).unwrap_or("localhost");
    format!("http://{host}/fhir")
}
