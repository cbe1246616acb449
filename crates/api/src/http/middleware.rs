//! Layers every request passes through: the bounds on its URI and headers, and a panic in a
//! handler turned into a coded 500.

use axum::http::StatusCode;
use axum::response::Response;

use super::respond::error_response;
use crate::error::code;

/// A panic in a handler becomes a coded 500 with a correlation id to find it in the log, not a
/// dropped connection.
pub(super) fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
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
pub(super) async fn request_bounds(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
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
