//! The offline GraphQL explorer at GET /graphql and the assets it loads.

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::respond::error_response;
use super::state::AppState;
use crate::error::code;

pub(super) fn explorer(state: &AppState) -> Response {
    let page = include_str!("../../assets/explorer.html");
    let token = state.settings.explorer_token.as_deref().map_or("null".to_string(), |t| format!("{t:?}"));
    Html(page.replace("/*FORLOP_TOKEN*/null", &token)).into_response()
}

pub(super) async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, mime): (&'static [u8], &str) = match file.as_str() {
        "react.production.min.js" => (include_bytes!("../../assets/react.production.min.js"), "text/javascript"),
        "react-dom.production.min.js" => {
            (include_bytes!("../../assets/react-dom.production.min.js"), "text/javascript")
        }
        "graphiql.min.js" => (include_bytes!("../../assets/graphiql.min.js"), "text/javascript"),
        "graphiql.min.css" => (include_bytes!("../../assets/graphiql.min.css"), "text/css"),
        _ => return error_response(StatusCode::NOT_FOUND, code::NOT_FOUND, "no such asset"),
    };
    ([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "public, max-age=86400")], body).into_response()
}
