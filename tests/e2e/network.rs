//! Browsers and networks: CORS for the origins of `--allowed-origins` (over plain HTTP and in a
//! real headless Chromium), slow clients cut off by `--header-read-timeout-seconds`, the
//! `--max-connections` cap, and `/metrics` with HELP and TYPE, on its own `--metrics-listen`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::dashboard::{Browser, BrowserLog};
use crate::support::*;

const DASHBOARD: &str = "http://dashboard.test:3000";

/// A client that opens a fresh connection for every request: nothing pooled counts against a
/// connection cap or meets a server-side idle close.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder().timeout(TIMEOUT).pool_max_idle_per_host(0).build().unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().expect("an ASCII header"))
}

/// The comma-separated values of a header, lowercased.
fn list(r: &reqwest::Response, name: &str) -> BTreeSet<String> {
    r.headers()
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

/// A browser's preflight for `POST /graphql` with a bearer token and a JSON body.
async fn preflight(s: &Server, origin: &str) -> reqwest::Response {
    unpooled()
        .request(reqwest::Method::OPTIONS, format!("{}/graphql", s.url))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type,x-forlop-min-position")
        .send()
        .await
        .expect("OPTIONS /graphql")
}

async fn post_from(s: &Server, origin: &str) -> reqwest::Response {
    unpooled()
        .post(format!("{}/graphql", s.url))
        .header("origin", origin)
        .bearer_auth(&s.admin)
        .json(&json!({ "query": "{ log { committed } }" }))
        .send()
        .await
        .expect("POST /graphql")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_from_an_allowed_origin_is_answered_and_other_origins_get_no_cors_headers() {
    let s = Server::start_with(&["--allowed-origins", DASHBOARD]).await;

    let r = preflight(&s, DASHBOARD).await;
    assert!(r.status() == 200 || r.status() == 204, "preflight answered {}", r.status());
    assert_eq!(header(&r, "access-control-allow-origin"), Some(DASHBOARD));
    let methods = list(&r, "access-control-allow-methods");
    assert!(methods.contains("post") && methods.contains("get"), "{methods:?}");
    let headers = list(&r, "access-control-allow-headers");
    for h in ["authorization", "content-type", "x-forlop-min-position", "x-request-id"] {
        assert!(headers.contains(h), "{h} not allowed: {headers:?}");
    }
    assert!(list(&r, "vary").contains("origin"), "Vary: Origin, for caches between");
    assert_eq!(header(&r, "access-control-allow-credentials"), None, "no credentials are invited");
    assert!(header(&r, "access-control-max-age").is_some(), "the preflight may be reused for a while");

    // The same origin in another case is the same origin (as the Origin check compares them).
    let r = preflight(&s, "http://Dashboard.test:3000").await;
    assert_eq!(header(&r, "access-control-allow-origin"), Some("http://Dashboard.test:3000"));

    let r = post_from(&s, DASHBOARD).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(DASHBOARD));
    assert!(list(&r, "access-control-expose-headers").contains("x-request-id"), "the page may read its correlation id");
    let body: Value = r.json().await.unwrap();
    assert!(body["data"]["log"]["committed"].is_u64(), "{body}");

    // Another origin: no CORS header on the preflight, and its POST is refused as before.
    for origin in ["http://evil.example", "http://dashboard.test:3001", "https://dashboard.test:3000"] {
        let r = preflight(&s, origin).await;
        assert_eq!(header(&r, "access-control-allow-origin"), None, "{origin}'s preflight");
        let r = post_from(&s, origin).await;
        assert_eq!(r.status(), 403, "{origin}'s POST");
        assert_eq!(header(&r, "access-control-allow-origin"), None, "{origin}'s POST");
        let body: Value = r.json().await.unwrap();
        assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    }

    // A refusal a page on the allowed origin causes is readable by it, code and all.
    let r = unpooled()
        .post(format!("{}/graphql", s.url))
        .header("origin", DASHBOARD)
        .json(&json!({ "query": "{ log { committed } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(DASHBOARD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_star_every_origin_gets_cors_but_never_with_credentials() {
    let s = Server::start_with(&["--allowed-origins", "*"]).await;
    let r = preflight(&s, "https://anywhere.example").await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&r, "access-control-allow-credentials"), None);
    let r = post_from(&s, "https://anywhere.example").await;
    assert_eq!(r.status(), 200, "`*` lets every origin post, as it did before");
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_origins_entry_that_is_not_an_origin_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let serve = ["serve", "--auth", "off", "--data", data, "--listen", "127.0.0.1:0"];
    for (flags, said) in [
        (&["--allowed-origins", "https://dashboard.example.no/"][..], "it has a path"),
        (&["--allowed-origins", "dashboard.example.no"][..], "no scheme"),
        (&["--header-read-timeout-seconds", "0"][..], "--header-read-timeout-seconds must be at least 1"),
        (&["--max-connections", "0"][..], "--max-connections must be at least 1"),
    ] {
        let out = run_cli(&[&serve[..], flags].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} started");
        assert!(stderr.contains(said), "{flags:?}: {stderr}");
    }
}

/// Serves `page` to every request on a loopback port of its own: a dashboard's origin.
async fn page_server(page: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    origin
}

/// A dashboard: its script posts a GraphQL query to the forlop named in `?forlop=` with the
/// bearer token in `?token=`, and writes what came back (or the failure) into the DOM.
const DASHBOARD_PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>dashboard</title></head>
<body><pre id="out"></pre><script>
const params = new URLSearchParams(location.search);
const out = document.getElementById('out');
fetch(params.get('forlop') + '/graphql', {
  method: 'POST',
  headers: { 'Authorization': 'Bearer ' + params.get('token'), 'Content-Type': 'application/json' },
  body: JSON.stringify({ query: '{ services { name } }' }),
})
  .then(async r => {
    document.body.dataset.requestId = r.headers.get('x-request-id') || '';
    out.textContent = JSON.stringify(await r.json());
    document.body.dataset.result = 'ok';
  })
  .catch(e => { out.textContent = String(e); document.body.dataset.result = 'failed'; });
</script></body></html>"#;

/// Opens the dashboard on `origin` against `s` and waits for its script to settle: (`ok` or
/// `failed`, what it wrote, the `x-request-id` it could read).
async fn run_dashboard(b: &Browser, origin: &str, s: &Server) -> (String, String, String) {
    let mut url = url::Url::parse(origin).unwrap();
    url.query_pairs_mut().append_pair("forlop", &s.url).append_pair("token", &s.admin);
    b.client.goto(url.as_str()).await.expect("navigate");
    let body = b
        .client
        .wait()
        .at_most(TIMEOUT)
        .for_element(Locator::Css("body[data-result]"))
        .await
        .expect("the page's fetch settled");
    let result = body.attr("data-result").await.unwrap().unwrap_or_default();
    let request_id = body.attr("data-request-id").await.unwrap().unwrap_or_default();
    let out = b.client.find(Locator::Css("#out")).await.unwrap().text().await.unwrap();
    (result, out, request_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_an_allowed_origin_reads_graphql_in_a_browser_and_a_page_elsewhere_is_refused() {
    // Two dashboards on loopback ports of their own; forlop allows the first one's origin.
    let allowed = page_server(DASHBOARD_PAGE).await;
    let elsewhere = page_server(DASHBOARD_PAGE).await;
    let s = Server::start_with(&["--allowed-origins", &allowed]).await;
    s.record("registerService", json!({ "serviceId": id(), "name": "CORS-tjenesten", "careLevel": "MUNICIPAL" })).await;
    let b = Browser::start_at(&allowed).await;

    let (result, out, request_id) = run_dashboard(&b, &allowed, &s).await;
    assert_eq!(result, "ok", "{out}");
    let answer: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(answer["data"]["services"], json!([{ "name": "CORS-tjenesten" }]), "{answer}");
    assert!(uuid::Uuid::parse_str(&request_id).is_ok(), "the page reads the exposed x-request-id: {request_id:?}");
    let log = b.client.issue_cmd(BrowserLog).await.expect("browser log");
    assert!(!log.to_string().contains("CORS"), "{log}");

    let (result, out, _) = run_dashboard(&b, &elsewhere, &s).await;
    assert_eq!(result, "failed", "the browser withholds the answer from a page elsewhere: {out}");
    assert!(!out.contains("CORS-tjenesten"), "{out}");
    let log = b.client.issue_cmd(BrowserLog).await.expect("browser log");
    assert!(log.to_string().contains("CORS policy"), "the browser says why: {log}");
    b.client.clone().close().await.expect("close the session");
}

/// Reads from `socket` until the server closes it (a read of 0 or an error), writing one more
/// header line every second the connection stays open. Returns how long it stayed open, or
/// None if it was still open after `bound`.
async fn trickle_until_closed(mut socket: TcpStream, bound: Duration) -> Option<Duration> {
    let opened = Instant::now();
    let mut buf = [0u8; 1024];
    for n in 0.. {
        match tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(opened.elapsed()),
            Ok(Ok(_)) => continue, // an answer before the close (e.g. 408): read on to the close
            Err(_) => {}           // a second with the connection open: the next line
        }
        if opened.elapsed() > bound {
            return None;
        }
        if socket.write_all(format!("X-Trickle-{n}: 1\r\n").as_bytes()).await.is_err() {
            return Some(opened.elapsed());
        }
    }
    unreachable!("the loop returns")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_trickling_headers_are_closed_and_a_normal_request_still_succeeds() {
    let s = Server::start_with(&["--header-read-timeout-seconds", "2"]).await;
    let bound = Duration::from_secs(12);
    let (opened, mut all_opened) = tokio::sync::mpsc::channel(20);
    let mut slow = Vec::new();
    for _ in 0..20 {
        let (port, opened) = (s.port, opened.clone());
        slow.push(tokio::spawn(async move {
            let mut socket = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
            socket.write_all(b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.expect("request line");
            opened.send(()).await.unwrap();
            trickle_until_closed(socket, bound).await
        }));
    }
    drop(opened);
    for _ in 0..20 {
        all_opened.recv().await.expect("every slow client sent its request line");
    }
    // During the attack a client that sends its request at once is answered.
    let r = unpooled()
        .post(format!("{}/graphql", s.url))
        .bearer_auth(&s.admin)
        .json(&json!({ "query": "{ log { committed } }" }))
        .send()
        .await
        .expect("a normal request during the attack");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["data"]["log"]["committed"].is_u64(), "{body}");
    for (i, task) in slow.into_iter().enumerate() {
        let open = task.await.unwrap();
        let open = open.unwrap_or_else(|| panic!("slow client {i} was still open after {bound:?}"));
        // Cut off by the timeout, not at once: it had been trickling for a while.
        assert!(open >= Duration::from_millis(1500), "slow client {i} closed after only {open:?}");
    }
    assert_eq!(s.health().await["status"], "ok");
}

/// GET `path` on a raw connection kept open afterwards; the status line, or None if the server
/// closed the connection without answering.
async fn raw_get(socket: &mut TcpStream, path: &str) -> Option<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    if socket.write_all(request.as_bytes()).await.is_err() {
        return None;
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout(TIMEOUT, socket.read(&mut buf)).await.expect("an answer or a close in time") {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    Some(text.lines().next().unwrap_or_default().to_owned())
}

/// GET /metrics on `addr`, as text.
async fn metrics_at(addr: &str) -> String {
    let r = unpooled().get(format!("http://{addr}/metrics")).send().await.expect("GET /metrics");
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The value of the sample `name{labels}` exactly as written in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_connection_is_closed_unanswered_and_served_again_once_one_closes() {
    let cap = 3;
    let s = Server::start_with(&[
        "--max-connections",
        &cap.to_string(),
        "--metrics-listen",
        "127.0.0.1:0",
        "--header-read-timeout-seconds",
        "60",
    ])
    .await;
    let metrics = s.metrics.clone().expect("the server says where /metrics is");
    // The harness keeps the connection it polled /healthz on; the metrics port is not capped
    // with the API's, so it says how many are open.
    let open = sample(&metrics_at(&metrics).await, "forlop_http_connections{listener=\"api\"}").unwrap_or(0.0) as usize;
    assert!(open < cap, "{open} connections open before the test's own");
    let mut held = Vec::new();
    for _ in open..cap {
        let mut socket = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
        let status = raw_get(&mut socket, "/readyz").await;
        assert!(status.is_some_and(|l| l.contains(" 200 ")), "a connection under the cap is served");
        held.push(socket);
    }
    let mut one_more = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
    assert_eq!(raw_get(&mut one_more, "/readyz").await, None, "past the cap, closed unanswered");
    let scrape = metrics_at(&metrics).await;
    assert_eq!(sample(&scrape, "forlop_http_connections{listener=\"api\"}"), Some(cap as f64), "{scrape}");
    assert!(sample(&scrape, "forlop_http_connections_refused_total{listener=\"api\"}").is_some_and(|n| n >= 1.0));

    // One closes; a new connection is served again once the server has seen it go (each try
    // is answered or closed at once, so this is bounded by events, not by a pause).
    drop(held.pop());
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut socket = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
        if let Some(status) = raw_get(&mut socket, "/readyz").await {
            assert!(status.contains(" 200 "), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "no connection served again after one closed");
    }
}

/// Every metric family in a scrape (histogram series folded into their family).
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .map(|name| {
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    if text.contains(&format!("# TYPE {base} histogram")) {
                        return base.to_owned();
                    }
                }
            }
            name
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forlop_metric_on_metrics_has_help_and_type() {
    let s = Server::start().await;
    Reference::register(&s).await;
    let (_, v) = s.gql_as(Some(&s.admin), "query Overview { services { id } }", json!({})).await;
    ok_data(&v);
    let text = metrics_at(&format!("127.0.0.1:{}", s.port)).await;
    let forlop: Vec<String> = families(&text).into_iter().filter(|f| f.starts_with("forlop_")).collect();
    for must in ["forlop_events_appended_total", "forlop_graphql_request_seconds", "forlop_http_connections"] {
        assert!(forlop.iter().any(|f| f == must), "{must} is not in the scrape:\n{text}");
    }
    for family in &forlop {
        let help = text.lines().find_map(|l| l.strip_prefix(&format!("# HELP {family} ")));
        assert!(help.is_some_and(|h| h.trim().len() > 10), "no HELP for {family}:\n{text}");
        let kind = text.lines().find_map(|l| l.strip_prefix(&format!("# TYPE {family} ")));
        assert!(kind.is_some_and(|k| ["counter", "gauge", "histogram"].contains(&k.trim())), "no TYPE for {family}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_metrics_listen_metrics_are_served_on_their_own_port_only() {
    // From the settings file, as an operator would set it (the flag is the same setting).
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "metrics-listen = \"127.0.0.1:0\"\nmax-connections = 100\n").unwrap();
    let s = Server::start_with(&["--config", config.path().to_str().unwrap()]).await;
    let metrics = s.metrics.clone().expect("the server says where /metrics is");
    s.record("registerService", json!({ "serviceId": id(), "name": "M", "careLevel": "MUNICIPAL" })).await;
    let text = metrics_at(&metrics).await;
    assert!(text.contains("# TYPE forlop_events_appended_total counter"), "{text}");
    assert!(sample(&text, "forlop_events_appended_total{type=\"ServiceRegistered\"}").is_some(), "{text}");

    let r = unpooled().get(format!("{}/metrics", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 404, "the API port serves no /metrics");
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), Some("NOT_FOUND"));
    // The metrics port serves nothing else, not even without a token.
    let r = unpooled().get(format!("http://{metrics}/graphql?query=%7Blog%7Bcommitted%7D%7D")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = unpooled().get(format!("http://{metrics}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
