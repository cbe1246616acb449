//! The offline GraphQL explorer and the health check.

use crate::support::*;

/// Values of `attr="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!("{attr}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&needle) {
        rest = &rest[i + needle.len()..];
        let end = rest.find('"').expect("closing quote");
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_browser_when_it_opens_graphql_then_graphiql_loads_from_same_origin_assets_only() {
    let s = Server::start().await;
    let r = s.client().get(format!("{}/graphql", s.url)).send().await.expect("GET /graphql");
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().expect("content-type").to_owned();
    assert!(ct.starts_with("text/html"), "content-type {ct}");
    let html = r.text().await.expect("body");
    assert!(html.contains("GraphiQL"), "the explorer is GraphiQL");

    let srcs = attribute_values(&html, "src");
    let hrefs: Vec<&str> = attribute_values(&html, "href").into_iter().filter(|h| !h.starts_with("data:")).collect();
    assert!(!srcs.is_empty() && !hrefs.is_empty(), "scripts and a stylesheet are referenced");
    for url in srcs.iter().chain(&hrefs) {
        assert!(url.starts_with("/graphql/assets/"), "{url} is not a bundled asset");
    }
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("//cdn"), "no CDN");

    for url in srcs.iter().chain(&hrefs) {
        let r = s.client().get(format!("{}{url}", s.url)).send().await.expect("GET asset");
        assert_eq!(r.status(), 200, "{url}");
        let ct = r.headers()["content-type"].to_str().expect("content-type").to_owned();
        let want = if url.ends_with(".css") { "text/css" } else { "javascript" };
        assert!(ct.contains(want), "{url} served as {ct}");
        assert!(!r.bytes().await.expect("asset body").is_empty(), "{url} is empty");
    }
    let missing = s.client().get(format!("{}/graphql/assets/nope.js", s.url)).send().await.expect("GET");
    assert_eq!(missing.status(), 404);
    let traversal = s.client().get(format!("{}/graphql/assets/..%2F..%2FCargo.toml", s.url)).send().await.expect("GET");
    assert_eq!(traversal.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_running_server_when_healthz_is_asked_then_it_reports_ok_with_log_progress() {
    let s = Server::start().await;
    let r = s.client().get(format!("{}/healthz", s.url)).send().await.expect("GET /healthz");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().expect("content-type").starts_with("application/json"));
    let h: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(h["status"], "ok");
    assert_eq!(h["committed"], 0);
    assert_eq!(h["projected"], 0);
    Reference::register(&s).await;
    let h = s.health().await;
    assert_eq!(h["committed"], 6);
    assert_eq!(h["projected"], 6, "a recording is projected before it is acknowledged");
}
