//! The token's header as read before the token is trusted, to choose its key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::unique_names::check_unique_names;
use crate::AuthError;

pub(super) struct RawHeader {
    pub(super) alg: String,
    pub(super) kid: Option<String>,
}

/// Reads `alg` and `kid` from the header ourselves, because `jsonwebtoken::decode_header` fails
/// on algorithm names it does not know (`none`): those are "algorithm not allowed", not
/// "malformed". The token is re-parsed and fully checked by `jsonwebtoken::decode`.
pub(super) fn peek_header(token: &str) -> Result<RawHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthError::Malformed)?;
    // A header naming `alg` or `kid` twice would pick its key by the last one read here.
    check_unique_names(&bytes).map_err(|_| AuthError::Malformed)?;
    let value: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
    let alg = match value.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err(AuthError::Malformed),
    };
    let kid = match value.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(AuthError::Malformed),
    };
    Ok(RawHeader { alg, kid })
}
