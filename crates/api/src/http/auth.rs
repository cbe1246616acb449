//! Who is calling, for a request: its browser origin checked, then its Authorization given to
//! the configured `Authenticator`; a refusal is the coded 401 or 403 itself. What the caller
//! may do is decided by the engine, never here.

use std::time::SystemTime;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use forlop_auth::Principal;

use super::cors::origin_allowed;
use super::headers::header_str;
use super::respond::error_response;
use super::state::AppState;
use crate::error::code;

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
