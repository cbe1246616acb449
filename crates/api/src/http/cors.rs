//! Which browser origins may talk to this server: the CORS layer, the Origin check of
//! requests and WebSocket upgrades, and the validation of `--allowed-origins` entries.

use std::time::Duration;

use axum::http::{header, HeaderMap, Method};
use forlop_domain::text::quote;

use super::headers::{header_str, host_name, MIN_POSITION_HEADER};

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
pub(super) fn cors(allowed: &[String]) -> Option<tower_http::cors::CorsLayer> {
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
            "{} is not an origin ({why}); write scheme://host[:port], e.g. https://dashboard.example.no",
            quote(origin)
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

/// True when a browser page on `origin` may talk to this server: its own origin, or one listed.
pub(super) fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
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
