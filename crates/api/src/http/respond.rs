//! The coded JSON error bodies of refusals made before (or outside) GraphQL execution.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::code;

/// A GraphQL error body with a code, for failures before execution.
pub(crate) fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message.into(), "extensions": { "code": code } }]
    });
    (status, Json(body)).into_response()
}

pub(super) async fn not_found(method: Method) -> Response {
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
