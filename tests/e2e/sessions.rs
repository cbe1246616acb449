//! What a token allows across requests: a WebSocket and a long import end with their token,
//! a subscription logs each patient once, a token naming a claim twice is refused, a `$import`
//! that may record nothing is refused before its body is read, and a server without
//! authentication answers only for its own hosts (DNS rebinding).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::subscriptions::{connect, send, Protocol, Ws};
use crate::support::*;

/// Slack allowed between a token's expiry and the close it causes (timers, a busy machine).
const LATE: Duration = Duration::from_secs(3);

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn at(unix_seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_seconds as u64)
}

fn start(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::TransportWs => "subscribe",
        Protocol::LegacyWs => "start",
    }
}

fn data(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::TransportWs => "next",
        Protocol::LegacyWs => "data",
    }
}

/// What came next on a socket.
#[derive(Debug)]
enum Frame {
    Msg(Value),
    /// A close frame: its code and reason.
    Closed(Option<u16>, String),
    /// The stream ended (or broke) without a close frame.
    Ended,
}

/// The next protocol message or close, skipping keep-alives; fails after `TIMEOUT`.
async fn frame(ws: &mut Ws) -> Frame {
    loop {
        let got = tokio::time::timeout(TIMEOUT, ws.next()).await.expect("nothing on the WebSocket within the timeout");
        let text = match got {
            None | Some(Err(_)) => return Frame::Ended,
            Some(Ok(Message::Close(close))) => {
                return Frame::Closed(
                    close.as_ref().map(|c| u16::from(c.code)),
                    close.map(|c| c.reason.to_string()).unwrap_or_default(),
                )
            }
            Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
            Some(Ok(_)) => continue,
        };
        let v: Value = serde_json::from_str(&text).expect("protocol message is JSON");
        match v["type"].as_str() {
            Some("ka") | Some("pong") => continue,
            Some("ping") => {
                let _ = ws.send(Message::text(json!({ "type": "pong" }).to_string())).await;
            }
            _ => return Frame::Msg(v),
        }
    }
}

/// Waits for the socket's close frame, failing on any message before it.
async fn closed(ws: &mut Ws) -> (Option<u16>, String) {
    match frame(ws).await {
        Frame::Closed(code, reason) => (code, reason),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// After a close: the socket yields nothing more, whatever is recorded or sent meanwhile.
async fn stays_shut(s: &Server, ws: &mut Ws, protocol: Protocol) {
    s.record("registerService", json!({ "serviceId": id(), "name": "after", "careLevel": "MUNICIPAL" })).await;
    let replay = json!({ "id": "late", "type": start(protocol),
                         "payload": { "query": "subscription { events(fromPosition: 0) { position } }" } });
    // The client may already refuse to send on a socket it saw closed; either way nothing is served.
    let _ = ws.send(Message::text(replay.to_string())).await;
    match frame(ws).await {
        Frame::Ended | Frame::Closed(..) => {}
        Frame::Msg(m) => panic!("a message after the close: {m}"),
    }
}

fn init(token: &str) -> Value {
    json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })
}

async fn acknowledged(ws: &mut Ws) {
    match frame(ws).await {
        Frame::Msg(m) if m["type"] == "connection_ack" => {}
        other => panic!("not acknowledged: {other:?}"),
    }
}

/// Subscribes to every event from the log's current head and shows one arriving, so the
/// subscription is known to be live.
async fn live_subscription(s: &Server, ws: &mut Ws, protocol: Protocol) {
    let head = s.committed().await;
    let query = format!("subscription {{ events(fromPosition: {head}) {{ position type }} }}");
    send(ws, json!({ "id": "live", "type": start(protocol), "payload": { "query": query } })).await;
    let rec =
        s.record("registerService", json!({ "serviceId": id(), "name": "before", "careLevel": "MUNICIPAL" })).await;
    match frame(ws).await {
        Frame::Msg(m) => {
            assert_eq!(m["type"], data(protocol), "{m}");
            assert_eq!(m["payload"]["data"]["events"]["position"], json!(rec.position), "{m}");
        }
        other => panic!("the subscription delivered nothing before expiry: {other:?}"),
    }
}

/// A socket whose token expires is closed with 4403 at `exp` (leeway 0), not before; then nothing
/// reaches it, neither an event recorded after nor a replay asked for.
async fn a_socket_closes_when_its_token_expires(protocol: Protocol) {
    let s = Server::start_with(&["--leeway-seconds", "0"]).await;
    let exp = unix_now() + 5;
    let token = s.token_with(json!({ "sub": "short-lived", "role": "admin", "exp": exp }));
    let mut ws = connect(&s, protocol).await;
    send(&mut ws, init(&token)).await;
    acknowledged(&mut ws).await;
    live_subscription(&s, &mut ws, protocol).await;

    let (code, reason) = closed(&mut ws).await;
    let when = SystemTime::now();
    assert_eq!(code, Some(4403), "{protocol:?}: {reason}");
    assert!(reason.contains("expired"), "{reason}");
    assert!(when + Duration::from_millis(50) >= at(exp), "closed {:?} before exp", at(exp).duration_since(when));
    assert!(when <= at(exp) + LATE, "closed {:?} after exp", when.duration_since(at(exp)));
    stays_shut(&s, &mut ws, protocol).await;
    assert_eq!(s.health().await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_graphql_transport_ws_subscription_when_its_token_expires_then_the_socket_closes_with_4403() {
    a_socket_closes_when_its_token_expires(Protocol::TransportWs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_legacy_graphql_ws_subscription_when_its_token_expires_then_the_socket_closes_with_4403() {
    a_socket_closes_when_its_token_expires(Protocol::LegacyWs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_leeway_when_a_token_is_past_exp_then_the_socket_lasts_until_exp_plus_the_leeway() {
    let s = Server::start_with(&["--leeway-seconds", "4"]).await;
    // Past its exp already, but within the leeway: accepted, until exp + 4 s (2 to 3 s from now).
    let exp = unix_now() - 1;
    let token = s.token_with(json!({ "sub": "in-leeway", "role": "admin", "exp": exp }));
    let mut ws = connect(&s, Protocol::TransportWs).await;
    send(&mut ws, init(&token)).await;
    acknowledged(&mut ws).await;
    live_subscription(&s, &mut ws, Protocol::TransportWs).await;

    let (code, reason) = closed(&mut ws).await;
    let when = SystemTime::now();
    let end = at(exp + 4);
    assert_eq!(code, Some(4403), "{reason}");
    assert!(when + Duration::from_millis(50) >= end, "closed {:?} before exp + leeway", end.duration_since(when));
    assert!(when <= end + LATE, "closed {:?} after exp + leeway", when.duration_since(end));
    stays_shut(&s, &mut ws, Protocol::TransportWs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_expired_or_invalid_token_in_connection_init_then_it_is_refused_with_4403_and_nothing_is_served() {
    let s = Server::start_with(&["--leeway-seconds", "0"]).await;
    let expired = s.token_with(json!({ "sub": "gone", "role": "admin", "exp": unix_now() - 10 }));
    for protocol in [Protocol::TransportWs, Protocol::LegacyWs] {
        for (token, why) in [(expired.as_str(), "expired"), ("not-a-token", "malformed")] {
            let mut ws = connect(&s, protocol).await;
            send(&mut ws, init(token)).await;
            let mut next = frame(&mut ws).await;
            if protocol == Protocol::LegacyWs {
                // The legacy protocol's own refusal first, then the close.
                let Frame::Msg(m) = &next else { panic!("{protocol:?}: no connection_error: {next:?}") };
                assert_eq!(m["type"], "connection_error", "{m}");
                assert_eq!(m["payload"]["extensions"]["code"], "UNAUTHENTICATED", "{m}");
                assert!(m["payload"]["message"].as_str().unwrap_or_default().contains(why), "{m}");
                next = frame(&mut ws).await;
            }
            match next {
                Frame::Closed(code, reason) => {
                    assert_eq!(code, Some(4403), "{protocol:?} {why}: {reason}");
                    assert!(reason.contains(why), "{protocol:?}: {reason}");
                }
                other => panic!("{protocol:?} {why}: expected a 4403 close, got {other:?}"),
            }
            stays_shut(&s, &mut ws, protocol).await;
        }
    }
}

/// The access records of `patient` written for subscriptions of `actor`.
async fn subscription_records(s: &Server, patient: Uuid, actor: &str) -> Vec<Value> {
    let q = "query($p: UUID) { accessLog(patientId: $p, first: 1000) { nodes { actor operation fields outcome } } }";
    let v = s.query(q, json!({ "p": patient })).await;
    let nodes = v["accessLog"]["nodes"].as_array().expect("nodes").clone();
    nodes.into_iter().filter(|n| n["actor"] == actor && n["operation"] == "subscription").collect()
}

/// Reads `id`'s events until the one at `position`, returning how many came from `stream`.
async fn read_until(ws: &mut Ws, id: &str, position: u64, stream: &str) -> usize {
    let mut of_stream = 0;
    loop {
        match frame(ws).await {
            Frame::Msg(m) if m["id"] == id && m["type"] == "next" => {
                let ev = &m["payload"]["data"]["events"];
                assert!(ev.is_object(), "{m}");
                if ev["stream"] == stream {
                    of_stream += 1;
                }
                if ev["position"] == json!(position) {
                    return of_stream;
                }
            }
            Frame::Msg(_) => continue,
            other => panic!("socket ended while reading {id}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_auditor_replaying_the_log_then_each_patient_is_one_access_record_per_subscription() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, ep) = patient_in_episode(&s, &r).await;
    for day in 12..16 {
        s.record("recordSession", session(p, ep, r.a, &format!("2016-01-{day}T10:00:00Z"))).await;
    }
    let (q, _) = patient_in_episode(&s, &r).await;
    let head = s.committed().await - 1;
    let auditor = s.token("auditor", &[], None);
    let actor = "test-auditor";
    let p_stream = format!("patient-{p}");

    let mut ws = connect(&s, Protocol::TransportWs).await;
    send(&mut ws, init(&auditor)).await;
    acknowledged(&mut ws).await;
    let all = "subscription { events(fromPosition: 0) { position stream } }";
    send(&mut ws, json!({ "id": "all", "type": "subscribe", "payload": { "query": all } })).await;
    assert_eq!(read_until(&mut ws, "all", head, &p_stream).await, 7, "registration, episode, therapist, 4 sessions");

    // Seven events of p delivered, one record; and one for q, whose three came too.
    let records = subscription_records(&s, p, actor).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!((records[0]["fields"].as_str(), records[0]["outcome"].as_str()), (Some("events"), Some("ALLOWED")));
    assert_eq!(subscription_records(&s, q, actor).await.len(), 1);

    // A live event of p on the same subscription writes none.
    let rec = s.record("recordSession", session(p, ep, r.a, "2016-01-20T10:00:00Z")).await;
    assert_eq!(read_until(&mut ws, "all", rec.position, &p_stream).await, 1);
    assert_eq!(subscription_records(&s, p, actor).await.len(), 1, "a later event of p was logged again");

    // Another subscription, to p's own stream, is another disclosure: one record more, however
    // many of p's events it replays.
    let mine = format!("subscription {{ events(patientId: \"{p}\", fromPosition: 0) {{ position stream }} }}");
    send(&mut ws, json!({ "id": "p", "type": "subscribe", "payload": { "query": mine } })).await;
    assert_eq!(read_until(&mut ws, "p", rec.position, &p_stream).await, 8, "all of p's events, only p's");
    assert_eq!(subscription_records(&s, p, actor).await.len(), 2);
    assert_eq!(subscription_records(&s, q, actor).await.len(), 1);
}

/// The secret the test server verifies with (the harness writes it into the data directory).
fn server_secret(s: &Server) -> Vec<u8> {
    std::fs::read(s.dir.join("test-hs256.secret")).expect("the test secret").trim_ascii().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_token_naming_role_twice_when_it_is_presented_then_401_and_the_socket_refuses_it() {
    let s = Server::start().await;
    let exp = unix_now() + 3600;
    let claims =
        |roles: &str| format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"two-faced","exp":{exp},{roles}}}"#);
    // An analyst's token that a last-wins reader takes for an admin's.
    let twice =
        forlop_auth::testing::sign_hs256_text(&server_secret(&s), &claims(r#""role":"analyst","role":"admin""#));
    let before = s.committed().await;
    let (status, v) = s
        .gql_as(
            Some(&twice),
            "mutation($s: UUID!) { registerService(input: {serviceId: $s, name: \"x\", careLevel: MUNICIPAL}) { position } }",
            json!({ "s": id() }),
        )
        .await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(error_code(&v), Some("UNAUTHENTICATED"), "{v}");
    assert!(v["errors"][0]["message"].as_str().unwrap_or_default().contains("duplicate claim \"role\""), "{v}");
    assert_eq!(s.committed().await, before);

    let mut ws = connect(&s, Protocol::TransportWs).await;
    send(&mut ws, init(&twice)).await;
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, Some(4403), "{reason}");
    assert!(reason.contains("duplicate claim \"role\""), "{reason}");

    // The same token with the role once is an ordinary token.
    let once = forlop_auth::testing::sign_hs256_text(&server_secret(&s), &claims(r#""role":"admin""#));
    let (status, v) = s.gql_as(Some(&once), "{ log { committed } }", json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(ok_data(&v)["log"]["committed"], json!(before));
}

/// A raw HTTP/1.1 exchange: `head` (request line and headers, without the blank line), then
/// `body`; returns the status, the header block and the body of the answer.
async fn raw(port: u16, head: &str, body: &[u8]) -> (u16, String, String) {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    conn.write_all(format!("{head}\r\n\r\n").as_bytes()).await.expect("write head");
    // A server that answers without reading the body may close before it is all written.
    let _ = conn.write_all(body).await;
    read_answer(&mut conn).await
}

/// Reads one answer, within `TIMEOUT`: up to its declared length, the last chunk, or the end of
/// the connection (the answer to a request that keeps the connection open ends before it does).
async fn read_answer(conn: &mut tokio::net::TcpStream) -> (u16, String, String) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    tokio::time::timeout(TIMEOUT, async {
        while !complete(&bytes) {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("no complete answer within the timeout");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{text}"));
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, headers.to_owned(), dechunk(headers, body))
}

/// True once `bytes` hold a whole answer by its own framing.
fn complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((headers, body)) = text.split_once("\r\n\r\n") else { return false };
    let headers = headers.to_ascii_lowercase();
    if headers.contains("transfer-encoding: chunked") {
        return body.ends_with("0\r\n\r\n");
    }
    match headers.lines().find_map(|l| l.strip_prefix("content-length:")) {
        Some(n) => n.trim().parse::<usize>().is_ok_and(|n| body.len() >= n),
        None => false,
    }
}

/// The body of a `transfer-encoding: chunked` answer, joined.
fn dechunk(headers: &str, body: &str) -> String {
    if !headers.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn get(path: &str, host: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_auth_off_when_a_request_names_a_foreign_host_then_421_and_its_own_hosts_are_served() {
    let s = Server::start_with(&["--auth", "off", "--allowed-origins", "http://forlop.test:3000"]).await;
    let port = s.port;
    let evil = format!("evil.example:{port}");
    let rebound = format!("\r\norigin: http://{evil}");

    // DNS rebinding: the attacker's name, in Host and in a matching Origin.
    let (status, headers, body) = raw(port, &get("/healthz", &evil, &rebound), b"").await;
    assert_eq!(status, 421, "{headers}\n{body}");
    let v: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(error_code(&v), Some("FORBIDDEN"), "{v}");
    let message = v["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("evil.example") && message.contains("DNS rebinding"), "{message}");

    let before = s.committed().await;
    let mutation = json!({ "query": format!("mutation {{ registerService(input: {{serviceId: \"{}\", name: \"x\", careLevel: MUNICIPAL}}) {{ position }} }}", id()) }).to_string();
    let post = format!(
        "POST /graphql HTTP/1.1\r\nhost: {evil}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close{rebound}",
        mutation.len()
    );
    let (status, _, body) = raw(port, &post, mutation.as_bytes()).await;
    assert_eq!(status, 421, "{body}");
    assert_eq!(s.committed().await, before, "a rebound POST was recorded");

    // The FHIR routes refuse as FHIR does, and the WebSocket is not upgraded.
    let (status, _, body) = raw(port, &get("/fhir/metadata", &evil, &rebound), b"").await;
    assert_eq!(status, 421, "{body}");
    let v: Value = serde_json::from_str(&body).expect("an OperationOutcome");
    assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
    assert_eq!(v["issue"][0]["code"], "forbidden", "{v}");
    let upgrade = "\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-protocol: graphql-transport-ws";
    let (status, _, _) = raw(port, &format!("GET /graphql/ws HTTP/1.1\r\nhost: {evil}{upgrade}{rebound}"), b"").await;
    assert_eq!(status, 421);
    drop(connect(&s, Protocol::TransportWs).await); // the own host (127.0.0.1:PORT) is upgraded

    // Not fooled by a suffix, a userinfo or a port-like tail.
    for host in [
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        format!("evil.example@127.0.0.1:{port}"),
        format!("localhost:{port}:1"),
        "forlop.test.evil.example".to_owned(),
    ] {
        let (status, _, body) = raw(port, &get("/healthz", &host, ""), b"").await;
        assert_eq!(status, 421, "{host}: {body}");
    }

    // Its own hosts: the listen address, localhost, any IP address, the hosts of --allowed-origins.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        "localhost".to_owned(),
        format!("[::1]:{port}"),
        format!("forlop.test:{port}"),
    ] {
        let (status, _, body) = raw(port, &get("/healthz", &host, ""), b"").await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    let own = format!("localhost:{port}");
    let (status, _, body) = raw(port, &post.replace(&evil, &own), mutation.as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.committed().await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_demo_when_the_explorer_is_asked_for_by_a_foreign_host_then_421_without_the_embedded_token() {
    let s = Server::start_with(&["--demo"]).await;
    let port = s.port;
    let evil = format!("evil.example:{port}");
    let (status, _, body) = raw(port, &get("/graphql", &evil, &format!("\r\norigin: http://{evil}")), b"").await;
    assert_eq!(status, 421, "{body}");
    assert!(!body.contains("eyJ"), "a token in the refusal: {body}");
    // Its own host gets the explorer, with the demo's admin token in it.
    let (status, _, body) = raw(port, &get("/graphql", &format!("127.0.0.1:{port}"), ""), b"").await;
    assert_eq!(status, 200);
    assert!(body.contains("eyJ"), "the demo explorer embeds its token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_jwt_auth_behind_a_proxy_when_a_request_names_any_host_then_it_is_served() {
    let s = Server::start().await;
    let (status, _, body) = raw(s.port, &get("/healthz", "forlop.helse.example", ""), b"").await;
    assert_eq!(status, 200, "{body}");
    let q = json!({ "query": "{ log { committed } }" }).to_string();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: forlop.helse.example\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close",
        s.admin,
        q.len()
    );
    let (status, _, body) = raw(s.port, &head, q.as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("committed"), "{body}");
}

/// Opens `POST /fhir/$import` declaring a body of `declared` bytes, sends `first`, then sends
/// no more: an answer can only come from a server that does not wait for the rest.
async fn import_that_stalls(s: &Server, token: &str, first: &str, declared: usize) -> (u16, String, String) {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", s.port)).await.expect("connect");
    let head = format!(
        "POST /fhir/$import HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncontent-type: application/fhir+ndjson\r\nauthorization: Bearer {token}\r\ncontent-length: {declared}\r\nconnection: close\r\n\r\n",
        s.port
    );
    conn.write_all(head.as_bytes()).await.expect("write head");
    let _ = conn.write_all(first.as_bytes()).await;
    read_answer(&mut conn).await
}

const PATIENT_LINE: &str =
    "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"gender\":\"female\",\"birthDate\":\"1990-01-01\"}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_role_that_may_not_record_when_it_posts_an_import_then_403_before_the_body_is_read() {
    let s = Server::start().await;
    let before = s.committed().await;
    let gigabyte = 1 << 30;
    for (role, pid) in [("analyst", None), ("patient", Some("31929956780")), ("auditor", None)] {
        let token = s.token(role, &[], pid);
        let started = std::time::Instant::now();
        let (status, headers, body) = import_that_stalls(&s, &token, PATIENT_LINE, gigabyte).await;
        assert_eq!(status, 403, "{role}: {body}");
        assert!(started.elapsed() < Duration::from_secs(10), "{role}: answered after {:?}", started.elapsed());
        assert!(headers.to_ascii_lowercase().contains("connection: close"), "{headers}");
        let v: Value = serde_json::from_str(&body).expect("an OperationOutcome");
        assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
        assert_eq!(v["issue"][0]["code"], "forbidden", "{v}");
    }
    assert_eq!(s.committed().await, before, "a refused import appended something");

    // A role that may record has its import read (here: nothing in it, so nothing appended).
    let integration = s.token("integration", &[], None);
    let head = format!(
        "POST /fhir/$import HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/fhir+ndjson\r\nauthorization: Bearer {integration}\r\ncontent-length: 0\r\nconnection: close"
    );
    let (status, _, body) = raw(s.port, &head, b"").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_import_outlasting_its_token_then_it_stops_reading_at_expiry() {
    let s = Server::start_with(&["--leeway-seconds", "0"]).await;
    let exp = unix_now() + 3;
    let token = s.token_with(json!({ "sub": "importer", "role": "integration", "exp": exp }));
    // The body never ends; the request bound (60 s) is far off: only the expiry ends it.
    let (status, _, body) = import_that_stalls(&s, &token, "not a resource\n", 1 << 30).await;
    let when = SystemTime::now();
    assert_eq!(status, 200, "{body}");
    assert!(when + Duration::from_millis(50) >= at(exp), "answered {:?} before exp", at(exp).duration_since(when));
    assert!(when <= at(exp) + LATE, "answered {:?} after exp", when.duration_since(at(exp)));
    let v: Value = serde_json::from_str(&body).expect("an OperationOutcome");
    assert!(v.to_string().contains("the token expired; the rest of the body was not read"), "{v:#}");
    let summary: Value = serde_json::from_str(v["extension"][0]["valueString"].as_str().expect("summary")).unwrap();
    assert_eq!(summary["failed"], 2, "the unreadable line and the expiry: {v:#}");
}
