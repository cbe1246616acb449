//! The dashboard page (`/dashboard/…`): one HTML page for every dashboard path (its script
//! routes on the client), the script, the style and the vendored uPlot, all embedded in the
//! binary so the page works on a closed network. The page calls only this server's GraphQL API,
//! with the user's token: it sees what the role may see, and every patient it shows is logged.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::http::respond::error_response;
use crate::http::state::AppState;

/// No other host, no inline script, no framing. Inline styles are allowed for the attributes the
/// script and uPlot set.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/assets/{file}", get(asset))
        .route("/dashboard/{*path}", get(page))
}

async fn page(State(state): State<AppState>) -> Response {
    let html = include_str!("../assets/dashboard/index.html");
    // A JWT is base64url and dots: nothing to escape in an attribute.
    let token = state
        .settings
        .explorer_token
        .as_deref()
        .filter(|t| t.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    let html = match token {
        Some(t) => html.replace(
            r#"<meta name="forlop-token" content="">"#,
            &format!(r#"<meta name="forlop-token" content="{t}">"#),
        ),
        None => html.to_owned(),
    };
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, mime): (&'static [u8], &str) = match file.as_str() {
        "dashboard.js" => (include_bytes!("../assets/dashboard/dashboard.js"), "text/javascript; charset=utf-8"),
        "dashboard.css" => (include_bytes!("../assets/dashboard/dashboard.css"), "text/css; charset=utf-8"),
        "uPlot.iife.min.js" => {
            (include_bytes!("../assets/dashboard/uPlot.iife.min.js"), "text/javascript; charset=utf-8")
        }
        "uPlot.min.css" => (include_bytes!("../assets/dashboard/uPlot.min.css"), "text/css; charset=utf-8"),
        _ => return error_response(StatusCode::NOT_FOUND, crate::error::code::NOT_FOUND, "no such asset"),
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
