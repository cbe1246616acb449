//! Who is calling: a bearer token (or `--auth off`) becomes a `Principal`, and until when its
//! token is accepted. What the caller may do is decided by the engine, never here.

use std::time::SystemTime;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use forlop_auth::{Principal, Verifier};

use super::cors::origin_allowed;
use super::headers::header_str;
use super::respond::error_response;
use super::state::AppState;
use crate::error::code;

/// How callers are authenticated.
#[derive(Clone, Debug)]
pub enum Authenticator {
    /// `--auth off`: everyone is `admin` with actor `anonymous` (loopback only; checked at start).
    Off,
    Jwt(Verifier),
}

impl Authenticator {
    pub(super) async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, String> {
        self.authenticate_until(authorization).await.map(|(principal, _)| principal)
    }

    /// The caller, and until when their token is accepted (its `exp` plus the leeway; None
    /// under `--auth off`): what outlives the request, a WebSocket or a long upload, ends then.
    /// A token naming a key the identity provider published since the set was last fetched
    /// waits (a few seconds at most) for the set to be fetched again.
    pub(super) async fn authenticate_until(
        &self,
        authorization: Option<&str>,
    ) -> Result<(Principal, Option<SystemTime>), String> {
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
