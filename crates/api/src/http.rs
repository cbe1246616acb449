//! HTTP wiring: POST /graphql, the offline explorer at GET /graphql, subscriptions over
//! WebSocket at /graphql/ws (graphql-ws and graphql-transport-ws), and GET /healthz.

use std::time::Duration;

use async_graphql::ServerError;
use async_graphql_axum::GraphQLSubscription;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::error::code;
use crate::graphql::{build_schema, ForlopSchema};
use crate::{Caller, Engine};

/// Largest request body accepted (a bulk of mutations fits well within).
const MAX_BODY: usize = 2 * 1024 * 1024;

#[derive(Clone)]
struct AppState {
    schema: ForlopSchema,
    engine: Engine,
}

pub fn router(engine: Engine) -> Router {
    let schema = build_schema(Some(engine.clone()));
    Router::new()
        .route("/graphql", get(explorer).post(graphql))
        // GraphQLSubscription negotiates both graphql-transport-ws and the legacy graphql-ws.
        .route_service("/graphql/ws", GraphQLSubscription::new(schema.clone()))
        .route("/graphql/assets/{file}", get(asset))
        .route("/healthz", get(healthz))
        .with_state(AppState { schema, engine })
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(60),
        ))
        .layer(TraceLayer::new_for_http())
}

fn request_error(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code::INVALID_INPUT } }]
    });
    (status, Json(body)).into_response()
}

/// Takes the body as JSON whatever its declared content type: integrations send all sorts.
async fn graphql(State(state): State<AppState>, body: Bytes) -> Response {
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return request_error(StatusCode::BAD_REQUEST, format!("malformed GraphQL request: {e}")),
    };
    let request_id = uuid::Uuid::new_v4();
    let request = request.data(Caller { request_id: Some(request_id), ..Caller::default() });
    let mut response = state.schema.execute(request).await;
    // Parse and validation errors carry no code of their own: they are bad input.
    for err in &mut response.errors {
        with_code(err);
    }
    let mut http = Json(&response).into_response();
    if let Ok(v) = request_id.to_string().parse() {
        http.headers_mut().insert("x-request-id", v);
    }
    http
}

fn with_code(err: &mut ServerError) {
    let ext = err.extensions.get_or_insert_with(Default::default);
    if ext.get("code").is_none() {
        ext.set("code", code::INVALID_INPUT);
    }
}

async fn explorer() -> Html<&'static str> {
    Html(include_str!("../assets/explorer.html"))
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, mime): (&'static [u8], &str) = match file.as_str() {
        "react.production.min.js" => (include_bytes!("../assets/react.production.min.js"), "text/javascript"),
        "react-dom.production.min.js" => (include_bytes!("../assets/react-dom.production.min.js"), "text/javascript"),
        "graphiql.min.js" => (include_bytes!("../assets/graphiql.min.js"), "text/javascript"),
        "graphiql.min.css" => (include_bytes!("../assets/graphiql.min.css"), "text/css"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "public, max-age=86400")], body).into_response()
}

async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "committed": state.engine.store().committed(),
        "projected": state.engine.projected(),
    }))
}
