//! Hardening of the HTTP and WebSocket surface: content types (CSRF), GraphQL over HTTP, GET,
//! request limits, error bodies, cross-site origins and WebSocket authentication.
//!
//! Long because it is one checklist of the surface a client can reach, kept together so a new
//! route is checked against all of it.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::subscriptions::Ws;
use crate::support::*;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// A registerService mutation for a fresh service, as a JSON request body.
fn register_service_body() -> String {
    json!({ "query": format!(
        "mutation {{ registerService(input: {{ serviceId: \"{}\", name: \"x\", careLevel: MUNICIPAL }}) {{ position }} }}",
        id()
    ) })
    .to_string()
}

/// An HTTP answer: status, Content-Type and body as text.
struct Answer {
    status: reqwest::StatusCode,
    content_type: String,
    text: String,
}

impl Answer {
    async fn from(r: reqwest::Response) -> Answer {
        let status = r.status();
        let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let text = r.text().await.expect("response body");
        Answer { status, content_type, text }
    }

    /// The body as JSON, failing the test with the body shown if it is not.
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!("{} answered a body that is not JSON ({e}): {:?}", self.status, clip(&self.text))
        })
    }
}

fn clip(s: &str) -> String {
    s.chars().take(300).collect()
}

/// Asserts a JSON error body with `code` and returns its first message.
#[track_caller]
fn assert_coded(a: &Answer, status: u16, code: &str, what: &str) -> String {
    assert_eq!(a.status, status, "{what}: {}", clip(&a.text));
    let v = a.json();
    assert_eq!(error_code(&v), Some(code), "{what}: {v}");
    v["errors"][0]["message"].as_str().unwrap_or_else(|| panic!("{what}: no message in {v}")).to_owned()
}

/// POSTs `body` to /graphql as admin with an optional Content-Type and extra headers.
async fn post(s: &Server, body: &str, content_type: Option<&str>, headers: &[(&str, &str)]) -> Answer {
    let mut req = s.client().post(format!("{}/graphql", s.url)).bearer_auth(&s.admin).body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Answer::from(req.send().await.expect("POST /graphql")).await
}

/// POSTs a query as admin with Content-Type JSON.
async fn post_query(s: &Server, query: &str, variables: Value) -> Answer {
    post(s, &json!({ "query": query, "variables": variables }).to_string(), Some("application/json"), &[]).await
}

/// GET /graphql with `?query=` (when given) and the bearer token (when given).
async fn get_query(s: &Server, token: Option<&str>, query: Option<&str>) -> Answer {
    let mut req = s.client().get(format!("{}/graphql", s.url));
    if let Some(q) = query {
        req = req.query(&[("query", q)]);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    Answer::from(req.send().await.expect("GET /graphql")).await
}

/// Asserts `query` is refused by the request limits: HTTP 400, INVALID_INPUT, a message naming `why`.
async fn assert_limit_refused(s: &Server, query: &str, why: &str) {
    let a = post_query(s, query, json!({})).await;
    let msg = assert_coded(&a, 400, "INVALID_INPUT", why);
    assert!(msg.contains(why), "refused for another reason than {why:?}: {msg}");
    assert!(a.json().get("data").is_none_or(Value::is_null), "a refused request has no data: {}", a.text);
}

/// Every `message` anywhere in a response body.
fn messages(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("message", Value::String(s)) => out.push(s.clone()),
                    _ => messages(x, out),
                }
            }
        }
        Value::Array(xs) => xs.iter().for_each(|x| messages(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_post_that_is_not_json_when_sent_then_415_invalid_input_and_nothing_is_appended() {
    let s = Server::start().await;
    let before = s.committed().await;

    for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data"), None] {
        let a = post(&s, &register_service_body(), ct, &[]).await;
        assert_coded(&a, 415, "INVALID_INPUT", &format!("Content-Type {ct:?}"));
    }
    assert_eq!(s.committed().await, before, "a non-JSON post was executed");

    // JSON with parameters is JSON.
    let a = post(&s, &register_service_body(), Some("application/json; charset=utf-8"), &[]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let v = a.json();
    assert!(v["data"]["registerService"]["position"].is_u64(), "{v}");
    assert_eq!(s.committed().await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_body_that_is_not_one_json_object_when_posted_then_400_and_nothing_runs() {
    let s = Server::start().await;
    let before = s.committed().await;
    let mutation = serde_json::from_str::<Value>(&register_service_body()).expect("json")["query"].clone();

    for body in [
        json!(["{ log { committed } }"]).to_string(),
        json!([{ "query": mutation }]).to_string(),
        json!(mutation).to_string(),
        "null".to_string(),
        "42".to_string(),
        json!({ "query": mutation, "variables": [1] }).to_string(),
        json!({ "query": mutation, "operationName": 7 }).to_string(),
    ] {
        let (status, v) = s.post_raw(&body, "application/json").await;
        assert_eq!(status, 400, "body {body}: {v}");
        assert_eq!(error_code(&v), Some("INVALID_INPUT"), "body {body}: {v}");
        assert!(v.get("data").is_none_or(Value::is_null), "body {body} ran: {v}");
    }
    assert_eq!(s.committed().await, before, "a malformed body was executed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_graphql_response_json_accept_when_queried_then_the_graphql_over_http_statuses_apply() {
    let s = Server::start().await;
    let accept = [("accept", GRAPHQL_RESPONSE_JSON)];
    let body = |q: &str| json!({ "query": q }).to_string();

    // A valid query: 200, answered in the media type asked for.
    let a = post(&s, &body("{ log { committed } }"), Some("application/json"), &accept).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.content_type.starts_with(GRAPHQL_RESPONSE_JSON), "content-type {:?}", a.content_type);
    assert_eq!(a.json()["data"]["log"]["committed"], 0);

    // An unparsable document: 400, same media type, no data.
    let a = post(&s, &body("{ log {"), Some("application/json"), &accept).await;
    assert_coded(&a, 400, "INVALID_INPUT", "parse error with graphql-response+json");
    assert!(a.content_type.starts_with(GRAPHQL_RESPONSE_JSON), "content-type {:?}", a.content_type);
    assert!(a.json().get("data").is_none_or(Value::is_null), "{}", a.text);

    // The same with a plain JSON client: 200 with a coded error, as before the specification.
    let a = post(&s, &body("{ log {"), Some("application/json"), &[("accept", "application/json")]).await;
    assert_coded(&a, 200, "INVALID_INPUT", "parse error with application/json");
    assert!(a.content_type.starts_with("application/json"), "content-type {:?}", a.content_type);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_get_graphql_when_queried_then_queries_run_mutations_are_refused_and_the_explorer_is_served() {
    let s = Server::start().await;
    let before = s.committed().await;

    let a = get_query(&s, Some(&s.admin), Some("{log{committed}}")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["data"]["log"]["committed"], json!(before), "{}", a.text);

    let mutation = format!(
        "mutation{{registerService(input:{{serviceId:\"{}\",name:\"x\",careLevel:MUNICIPAL}}){{position}}}}",
        id()
    );
    let a = get_query(&s, Some(&s.admin), Some(&mutation)).await;
    assert_coded(&a, 405, "INVALID_INPUT", "GET mutation");
    assert_eq!(s.committed().await, before, "a GET executed a mutation");

    let a = get_query(&s, None, Some("{log{committed}}")).await;
    assert_coded(&a, 401, "UNAUTHENTICATED", "GET without a token");

    let a = get_query(&s, None, None).await;
    assert_eq!(a.status, 200);
    assert!(a.content_type.starts_with("text/html"), "content-type {:?}", a.content_type);
    assert!(a.text.contains("GraphiQL"), "the explorer is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_requests_over_the_limits_when_posted_then_invalid_input_before_any_work() {
    let s = Server::start().await;

    // Root fields: 50 are fine, 51 are not.
    let aliases = |n: usize| -> String { (0..n).map(|i| format!("a{i}: log {{ committed }} ")).collect() };
    let a = post_query(&s, &format!("{{ {} }}", aliases(50)), json!({})).await;
    assert_eq!(a.status, 200, "{}", clip(&a.text));
    assert_eq!(a.json()["data"]["a49"]["committed"], 0);
    assert_limit_refused(&s, &format!("{{ {} }}", aliases(51)), "root fields").await;

    // List items: 10 × 1000 is the cap, 11 × 1000 is over it.
    let pages =
        |n: usize| -> String { (0..n).map(|i| format!("e{i}: events(first: 1000) {{ nodes {{ id }} }} ")).collect() };
    let a = post_query(&s, &format!("{{ {} }}", pages(10)), json!({})).await;
    assert_eq!(a.status, 200, "{}", clip(&a.text));
    assert!(a.json()["data"]["e9"]["nodes"].is_array(), "{}", clip(&a.text));
    assert_limit_refused(&s, &format!("{{ {} }}", pages(11)), "list items").await;
    // The same count given through a variable is counted too.
    let q = format!(
        "query($n: Int) {{ {} }}",
        (0..11).map(|i| format!("e{i}: events(first: $n) {{ nodes {{ id }} }} ")).collect::<String>()
    );
    let a = post_query(&s, &q, json!({ "n": 1000 })).await;
    assert_coded(&a, 400, "INVALID_INPUT", "list items through a variable");

    // One page over 1000.
    let v = s.gql("{ events(first: 1001) { nodes { id } } }", json!({})).await;
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{v}");
    assert!(v["data"].is_null(), "{v}");

    // Deeper than 15 (refused before validation, which would find the unknown fields).
    let deep = format!("{{ log {} committed {} }}", "{ a ".repeat(16), "}".repeat(16));
    assert_limit_refused(&s, &deep, "deeper").await;

    // More than 40 age bins.
    let bins: Vec<i32> = (0..41).map(|i| i * 2).collect();
    let v = s
        .gql(
            "query($s: UUID!, $bins: [Int!]) { pathwayReport(serviceId: $s, from: \"2016-01-01T00:00:00Z\", to: \"2017-01-01T00:00:00Z\", ageBins: $bins) { episodes } }",
            json!({ "s": id(), "bins": bins }),
        )
        .await;
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{v}");
    assert!(v["errors"][0]["message"].as_str().is_some_and(|m| m.contains("ageBins")), "{v}");

    // Fragments that spread the next one twice: 2^31 fields if expanded. Measured, not expanded.
    let mut q = String::from("{ ...F0 } ");
    for i in 0..30 {
        q.push_str(&format!("fragment F{i} on Query {{ log {{ committed }} ...F{} ...F{} }} ", i + 1, i + 1));
    }
    q.push_str("fragment F30 on Query { log { committed } }");
    let started = Instant::now();
    let r = s
        .client()
        .post(format!("{}/graphql", s.url))
        .bearer_auth(&s.admin)
        .timeout(Duration::from_secs(10))
        .json(&json!({ "query": q }))
        .send()
        .await;
    let elapsed = started.elapsed();
    let r = r.unwrap_or_else(|e| panic!("the exponential fragment document was not answered within 10 s: {e}"));
    let a = Answer::from(r).await;
    assert!(elapsed < Duration::from_secs(1), "the fragment document took {elapsed:?}: it was expanded");
    assert_coded(&a, 400, "INVALID_INPUT", "exponential fragments");
    assert_eq!(s.health().await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_bad_paths_methods_and_huge_values_when_requested_then_short_coded_json_errors() {
    let s = Server::start().await;
    let mut all = Vec::new();

    let a = Answer::from(s.client().get(format!("{}/nope", s.url)).send().await.expect("GET /nope")).await;
    assert_coded(&a, 404, "NOT_FOUND", "GET /nope");
    messages(&a.json(), &mut all);

    let r = s.client().delete(format!("{}/graphql", s.url)).bearer_auth(&s.admin).send().await.expect("DELETE");
    let a = Answer::from(r).await;
    assert_eq!(a.status, 405, "DELETE /graphql: {}", a.text);
    assert!(
        serde_json::from_str::<Value>(&a.text).is_ok_and(|v| error_code(&v).is_some()),
        "DELETE /graphql answers 405 with a body that is not a coded JSON error: {:?} (content-type {:?})",
        a.text,
        a.content_type
    );
    messages(&a.json(), &mut all);

    // A megabyte-long enum value: inline (over the query size limit), and in a variable.
    let huge = "X".repeat(1024 * 1024);
    let q = format!(
        "mutation {{ registerService(input: {{ serviceId: \"{}\", name: \"x\", careLevel: {huge} }}) {{ position }} }}",
        id()
    );
    let v = post_query(&s, &q, json!({})).await.json();
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{}", clip(&v.to_string()));
    messages(&v, &mut all);
    // Just under the query size limit, so the schema's own validation error echoes it.
    let q = format!(
        "mutation {{ registerService(input: {{ serviceId: \"{}\", name: \"x\", careLevel: {} }}) {{ position }} }}",
        id(),
        "X".repeat(60 * 1024)
    );
    let v = post_query(&s, &q, json!({})).await.json();
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{}", clip(&v.to_string()));
    messages(&v, &mut all);
    let q = "mutation($in: RegisterServiceInput!) { registerService(input: $in) { position } }";
    let v = s.gql(q, json!({ "in": { "serviceId": id(), "name": "x", "careLevel": huge } })).await;
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{}", clip(&v.to_string()));
    messages(&v, &mut all);

    // Values of the wrong shape, where a deserialiser might speak Rust.
    for (q, vars) in [
        (q, json!({ "in": 5 })),
        (q, json!({ "in": [1, 2] })),
        (q, json!({ "in": { "serviceId": 7, "name": "x", "careLevel": "MUNICIPAL" } })),
        (q, json!({ "in": { "serviceId": id(), "name": { "a": 1 }, "careLevel": "MUNICIPAL" } })),
        ("query($id: UUID!) { patient(id: $id) { id } }", json!({ "id": "not-a-uuid" })),
        ("query($id: UUID!) { patient(id: $id) { id } }", json!({ "id": true })),
        ("{ events(first: 1e100) { nodes { id } } }", json!({})),
        ("{ events(after: \"zz\") { nodes { id } } }", json!({})),
    ] {
        let v = s.gql(q, vars.clone()).await;
        assert!(error_code(&v).is_some(), "{q} {vars}: {v}");
        messages(&v, &mut all);
    }
    for body in [
        r#"{"query": "{ log { committed } }", "extensions": 5}"#,
        r#"{"query": "{ log { committed } }", "variables": "x"}"#,
    ] {
        let (_, v) = s.post_raw(body, "application/json").await;
        assert!(error_code(&v).is_some(), "{body}: {v}");
        messages(&v, &mut all);
    }

    assert!(all.len() >= 10, "messages collected: {all:?}");
    for m in &all {
        assert!(m.chars().count() < 300, "a message of {} characters echoes the input unclipped", m.chars().count());
        assert!(!m.contains("expected struct") && !m.contains("invalid type:"), "a message speaks Rust: {m}");
    }
}

/// Opens a graphql-transport-ws connection with `origin`, returning the socket or the HTTP status
/// the handshake was refused with.
async fn ws_with_origin(s: &Server, origin: Option<&str>) -> Result<Ws, u16> {
    let mut request = s.ws_url().into_client_request().expect("ws request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-transport-ws"));
    if let Some(o) = origin {
        request.headers_mut().insert("Origin", HeaderValue::from_str(o).expect("origin header"));
    }
    match tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request)).await.expect("handshake timed out") {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("WebSocket handshake failed other than by an HTTP status: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_cross_site_origin_when_connecting_or_posting_then_403_and_the_own_origin_is_allowed() {
    let s = Server::start().await;

    assert_eq!(ws_with_origin(&s, Some("http://evil.example")).await.err(), Some(403), "cross-site WebSocket");
    let own = format!("http://127.0.0.1:{}", s.port);
    let ws = ws_with_origin(&s, Some(&own)).await;
    assert!(ws.is_ok(), "the server's own origin is refused: {:?}", ws.err());
    assert!(ws_with_origin(&s, None).await.is_ok(), "a non-browser client (no Origin) is refused");

    let before = s.committed().await;
    let a = post(&s, &register_service_body(), Some("application/json"), &[("origin", "http://evil.example")]).await;
    assert_coded(&a, 403, "FORBIDDEN", "cross-site POST");
    let a = get_query(&s, Some(&s.admin), Some("{log{committed}}")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let r = s
        .client()
        .get(format!("{}/graphql", s.url))
        .query(&[("query", "{log{committed}}")])
        .bearer_auth(&s.admin)
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("GET");
    assert_coded(&Answer::from(r).await, 403, "FORBIDDEN", "cross-site GET");
    let a = post(&s, &register_service_body(), Some("application/json"), &[("origin", &own)]).await;
    assert_eq!(a.status, 200, "a same-origin POST: {}", a.text);
    assert_eq!(s.committed().await, before + 1, "only the same-origin POST is recorded");
}

/// What came next on a socket: a protocol message, a close frame, or the end of the stream.
#[derive(Debug)]
enum Next {
    Msg(Value),
    Closed(Option<u16>, String),
}

async fn next(ws: &mut Ws) -> Next {
    loop {
        let msg = tokio::time::timeout(TIMEOUT, ws.next()).await.expect("nothing on the WebSocket within the timeout");
        let text = match msg {
            None => return Next::Closed(None, String::new()),
            Some(Err(e)) => return Next::Closed(None, e.to_string()),
            Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
            Some(Ok(Message::Close(frame))) => {
                return Next::Closed(
                    frame.as_ref().map(|f| u16::from(f.code)),
                    frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                )
            }
            Some(Ok(_)) => continue,
        };
        let v: Value = serde_json::from_str(&text).expect("protocol message is JSON");
        match v["type"].as_str() {
            Some("ka") | Some("pong") => continue,
            Some("ping") => ws.send(Message::text(json!({ "type": "pong" }).to_string())).await.expect("pong"),
            _ => return Next::Msg(v),
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send on WebSocket");
}

async fn init(s: &Server, payload: Value) -> (Ws, Next) {
    let mut ws = ws_with_origin(s, None).await.expect("WebSocket handshake");
    send(&mut ws, json!({ "type": "connection_init", "payload": payload })).await;
    let n = next(&mut ws).await;
    (ws, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_websocket_when_initialised_then_only_authorised_callers_are_acknowledged_and_served() {
    let s = Server::start().await;
    let subscribe = json!({ "id": "1", "type": "subscribe",
                            "payload": { "query": "subscription { events(fromPosition: 0) { position type } }" } });

    // No credentials, or bad ones: never acknowledged.
    for payload in [json!({}), json!({ "Authorization": "Bearer not-a-token" }), json!({ "Authorization": s.admin })] {
        let (mut ws, n) = init(&s, payload.clone()).await;
        match &n {
            Next::Msg(m) => assert_ne!(m["type"], "connection_ack", "{payload}: acknowledged: {m}"),
            Next::Closed(code, reason) => assert_ne!(*code, Some(1000), "{payload}: closed normally ({reason})"),
        }
        // And a subscription sent anyway gets nothing.
        if matches!(n, Next::Msg(_)) {
            let _ = ws.send(Message::text(subscribe.to_string())).await;
            match next(&mut ws).await {
                Next::Msg(m) => assert_ne!(m["type"], "next", "{payload}: served without authentication: {m}"),
                Next::Closed(..) => {}
            }
        }
    }

    // An admin: acknowledged, and the log replayed from position 0 then live.
    let (mut ws, n) = init(&s, json!({ "Authorization": format!("Bearer {}", s.admin) })).await;
    assert!(matches!(&n, Next::Msg(m) if m["type"] == "connection_ack"), "{n:?}");
    send(&mut ws, subscribe.clone()).await;
    let rec = s.record("registerService", json!({ "serviceId": id(), "name": "RPH", "careLevel": "MUNICIPAL" })).await;
    match next(&mut ws).await {
        Next::Msg(m) => {
            assert_eq!(m["type"], "next", "{m}");
            assert_eq!(m["id"], "1", "{m}");
            assert_eq!(m["payload"]["data"]["events"]["position"], json!(rec.position), "{m}");
            assert_eq!(m["payload"]["data"]["events"]["type"], "ServiceRegistered", "{m}");
        }
        other => panic!("no event delivered: {other:?}"),
    }

    // An analyst may not read the log: the subscription answers FORBIDDEN.
    let analyst = s.token("analyst", &[], None);
    let (mut ws, n) = init(&s, json!({ "Authorization": format!("Bearer {analyst}") })).await;
    assert!(matches!(&n, Next::Msg(m) if m["type"] == "connection_ack"), "{n:?}");
    send(&mut ws, subscribe).await;
    match next(&mut ws).await {
        Next::Msg(m) => {
            let errors = if m["type"] == "error" { &m["payload"] } else { &m["payload"]["errors"] };
            assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN", "{m}");
            assert!(m["payload"]["data"]["events"].is_null(), "an analyst was sent an event: {m}");
        }
        other => panic!("no answer to the analyst's subscription: {other:?}"),
    }
}

/// The next `next` or `error` message for subscription `id` (skipping `complete`).
async fn answer(ws: &mut Ws, id: &str) -> Value {
    loop {
        match next(ws).await {
            Next::Msg(v) if v["id"] == id && v["type"] != "complete" => return v,
            Next::Msg(_) => continue,
            closed => panic!("socket closed while waiting for {id}: {closed:?}"),
        }
    }
}

/// The code of a subscription's error, sent as an `error` message or as `next` with errors.
fn ws_error_code(v: &Value) -> Option<&str> {
    let errors = if v["type"] == "error" { &v["payload"] } else { &v["payload"]["errors"] };
    errors[0]["extensions"]["code"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_websocket_when_a_subscription_is_malformed_or_over_the_cap_then_coded_errors() {
    let s = Server::start().await;
    let (mut ws, ack) = init(&s, json!({ "Authorization": format!("Bearer {}", s.admin) })).await;
    assert!(matches!(&ack, Next::Msg(v) if v["type"] == "connection_ack"), "{ack:?}");

    // A parse error and a validation error carry a code over WebSocket as over HTTP.
    for (id, query) in [("p", "subscription { events("), ("v", "subscription { nope }")] {
        send(&mut ws, json!({ "id": id, "type": "subscribe", "payload": { "query": query } })).await;
        let v = answer(&mut ws, id).await;
        assert_eq!(ws_error_code(&v), Some("INVALID_INPUT"), "{v}");
    }

    // One token holds at most 32 live subscriptions: of 33, exactly one is refused (which one
    // depends on the order the server starts them in), and the rest keep running.
    for i in 0..33 {
        let sub = json!({ "id": format!("s{i}"), "type": "subscribe", "payload": { "query": "subscription { events { position } }" } });
        send(&mut ws, sub).await;
    }
    let refused = loop {
        match next(&mut ws).await {
            Next::Msg(v) if v["type"] != "complete" => break v,
            Next::Msg(_) => continue,
            closed => panic!("socket closed: {closed:?}"),
        }
    };
    assert_eq!(ws_error_code(&refused), Some("INVALID_INPUT"), "{refused}");
    assert!(refused["payload"].to_string().contains("at most 32"), "{refused}");
    // Another token is not affected.
    let other = s.token("auditor", &[], None);
    let (mut ws2, ack) = init(&s, json!({ "Authorization": format!("Bearer {other}") })).await;
    assert!(matches!(&ack, Next::Msg(v) if v["type"] == "connection_ack"), "{ack:?}");
    // From the current head, so the event below arrives however late the server starts the stream.
    let head = s.committed().await;
    let query = format!("subscription {{ events(fromPosition: {head}) {{ position }} }}");
    send(&mut ws2, json!({ "id": "1", "type": "subscribe", "payload": { "query": query } })).await;
    s.record("registerService", json!({ "serviceId": id(), "name": "x", "careLevel": "MUNICIPAL" })).await;
    let Next::Msg(v) = next(&mut ws2).await else { panic!("socket closed") };
    assert_eq!(v["type"], "next", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_live_subscription_when_the_server_gets_sigterm_then_it_exits_within_ten_seconds() {
    let s = Server::start().await;
    let (mut ws, ack) = init(&s, json!({ "Authorization": format!("Bearer {}", s.admin) })).await;
    assert!(matches!(&ack, Next::Msg(v) if v["type"] == "connection_ack"), "{ack:?}");
    send(
        &mut ws,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { events { position } }" } }),
    )
    .await;
    let started = Instant::now();
    let status = s.stop();
    assert!(started.elapsed() < Duration::from_secs(10), "exit took {:?}", started.elapsed());
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_graphql_transport_ws_when_a_subscribe_id_is_reused_then_the_socket_closes_with_4409() {
    let s = Server::start().await;
    let (mut ws, ack) = init(&s, json!({ "Authorization": format!("Bearer {}", s.admin) })).await;
    assert!(matches!(&ack, Next::Msg(v) if v["type"] == "connection_ack"), "{ack:?}");
    let sub =
        json!({ "id": "same", "type": "subscribe", "payload": { "query": "subscription { events { position } }" } });
    send(&mut ws, sub.clone()).await;
    send(&mut ws, sub).await;
    match next(&mut ws).await {
        Next::Closed(code, reason) => {
            assert_eq!(code, Some(4409), "{reason}");
            assert!(reason.contains("same"), "{reason}");
        }
        other => panic!("expected a 4409 close, got {other:?}"),
    }
    // After a subscription completes, its id may be used again.
    let (mut ws, _) = init(&s, json!({ "Authorization": format!("Bearer {}", s.admin) })).await;
    let once = json!({ "id": "q", "type": "subscribe", "payload": { "query": "subscription { nope }" } });
    send(&mut ws, once.clone()).await;
    let v = answer(&mut ws, "q").await;
    assert_eq!(ws_error_code(&v), Some("INVALID_INPUT"));
    loop {
        if let Next::Msg(v) = next(&mut ws).await {
            if v["type"] == "complete" {
                break;
            }
        }
    }
    send(&mut ws, once).await;
    let v = answer(&mut ws, "q").await;
    assert_eq!(ws_error_code(&v), Some("INVALID_INPUT"), "the id was free again: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_socket_that_never_initialises_when_ten_seconds_pass_then_it_is_closed_with_4408() {
    let s = Server::start().await;
    let mut ws = ws_with_origin(&s, None).await.expect("WebSocket handshake");
    let started = Instant::now();
    match next(&mut ws).await {
        Next::Closed(code, reason) => assert_eq!(code, Some(4408), "{reason}"),
        other => panic!("expected a 4408 close, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(9), "closed after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_overlong_uri_or_headers_when_requested_then_414_or_431_as_coded_json() {
    let s = Server::start().await;
    let long = format!("{}/graphql?query={}", s.url, "a".repeat(20 * 1024));
    let r = s.client().get(long).bearer_auth(&s.admin).send().await.expect("GET");
    assert_eq!(r.status(), 414);
    let v: Value = r.json().await.expect("JSON body");
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{v}");
    let r = s
        .client()
        .post(format!("{}/graphql", s.url))
        .bearer_auth(&s.admin)
        .header("x-padding", "p".repeat(40 * 1024))
        .json(&json!({ "query": "{ log { committed } }" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 431);
    let v: Value = r.json().await.expect("JSON body");
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_out_of_range_numbers_when_queried_then_invalid_input_not_a_wrap() {
    let s = Server::start().await;
    s.record("registerService", json!({ "serviceId": id(), "name": "x", "careLevel": "MUNICIPAL" })).await;
    let v = s.gql("{ events(after: \"18446744073709551615\") { edges { cursor } } }", json!({})).await;
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "the cursor must not wrap to position 0: {v}");
    let before = s.committed().await;
    let v = s
        .try_record(
            "registerService",
            json!({ "serviceId": id(), "name": "y", "careLevel": "MUNICIPAL", "expectedVersion": 2_147_483_648_i64 }),
        )
        .await;
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "{v}");
    assert_eq!(s.committed().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_client_request_id_when_recording_then_it_is_returned_and_kept_as_the_correlation_id() {
    let s = Server::start().await;
    let mine = id();
    let q = "mutation($in: RegisterServiceInput!) { registerService(input: $in) { position } }";
    let body =
        json!({ "query": q, "variables": { "in": { "serviceId": id(), "name": "x", "careLevel": "MUNICIPAL" } } });
    let r = s
        .client()
        .post(format!("{}/graphql", s.url))
        .bearer_auth(&s.admin)
        .header("x-request-id", mine.to_string())
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some(mine.to_string().as_str()));
    let d = s.query("{ events(first: 1) { nodes { correlationId } } }", json!({})).await;
    assert_eq!(d["events"]["nodes"][0]["correlationId"], json!(mine));
}

/// A document that passed full validation once is later validated only as far as its variables
/// go (a cache): bad variables must still be refused exactly as on first sight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_query_validated_before_when_its_variables_are_bad_then_the_same_refusal_as_on_first_sight() {
    let s = Server::start().await;
    let q = "query($id: UUID!, $at: DateTime, $n: Int!) { patient(id: $id, asOf: $at) { id } events(first: $n) { nodes { id } } }";
    let bad = [
        json!({ "id": "not-a-uuid", "n": 1 }),
        json!({ "id": true, "n": 1 }),
        json!({ "n": 1 }),
        json!({ "id": id(), "n": 1, "at": "yesterday" }),
        json!({ "id": id(), "n": "one" }),
        json!({ "id": [id()], "n": 1 }),
    ];
    let mut first_sight = Vec::new();
    for vars in &bad {
        let a = post_query(&s, q, vars.clone()).await;
        assert_eq!(error_code(&a.json()), Some("INVALID_INPUT"), "{vars}: {}", a.text);
        first_sight.push((a.status, a.json()));
    }
    // Valid variables: the document passes full validation and is remembered as such.
    for _ in 0..2 {
        let a = post_query(&s, q, json!({ "id": id(), "n": 1, "at": null })).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert!(a.json()["errors"].is_null(), "{}", a.text);
        assert!(a.json()["data"]["patient"].is_null(), "an unknown patient: {}", a.text);
    }
    for (vars, (status, want)) in bad.iter().zip(&first_sight) {
        let a = post_query(&s, q, vars.clone()).await;
        assert_eq!((&a.status, &a.json()), (status, want), "{vars}: refused differently once validated");
    }
    // A variable the document does not declare changes nothing; a declared one left out with a
    // default is fine.
    let a = post_query(&s, q, json!({ "id": id(), "n": 1, "extra": 5 })).await;
    assert!(a.json()["errors"].is_null(), "{}", a.text);
    let q2 = "query($n: Int! = 2) { events(first: $n) { nodes { id } } }";
    for _ in 0..2 {
        let a = post_query(&s, q2, json!({})).await;
        assert!(a.json()["errors"].is_null(), "{}", a.text);
    }
}
