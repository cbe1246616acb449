//! Request headers as the handlers read them, and the ones forlop defines.

use axum::http::{header, HeaderMap};

pub(crate) fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Read-your-writes across nodes: a request carrying this header (a position a mutation
/// returned, on any node) is answered once this node's read model holds that position.
pub(crate) const MIN_POSITION_HEADER: &str = "x-forlop-min-position";
