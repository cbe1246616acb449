//! Live subscriptions over WebSocket, in both subprotocols async-graphql negotiates.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::support::*;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SUBSCRIPTION: &str = "subscription($p: UUID, $after: Int) { events(patientId: $p, after: $after) { type stream streamVersion position payload } }";

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Protocol {
    /// graphql-ws (the newer protocol): subscribe / next / complete.
    TransportWs,
    /// subscriptions-transport-ws (legacy, named "graphql-ws"): start / data / stop.
    LegacyWs,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::LegacyWs => "graphql-ws",
        }
    }
    fn start(self) -> &'static str {
        match self {
            Protocol::TransportWs => "subscribe",
            Protocol::LegacyWs => "start",
        }
    }
    fn data(self) -> &'static str {
        match self {
            Protocol::TransportWs => "next",
            Protocol::LegacyWs => "data",
        }
    }
    fn stop(self) -> &'static str {
        match self {
            Protocol::TransportWs => "complete",
            Protocol::LegacyWs => "stop",
        }
    }
}

pub(crate) async fn connect(s: &Server, protocol: Protocol) -> Ws {
    let mut request = s.ws_url().into_client_request().expect("ws request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol.name()));
    let (ws, response) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("WebSocket handshake timed out")
        .expect("WebSocket handshake");
    assert_eq!(
        response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()),
        Some(protocol.name()),
        "the server picks the requested subprotocol"
    );
    ws
}

pub(crate) async fn send(ws: &mut Ws, msg: Value) {
    ws.send(Message::text(msg.to_string())).await.expect("send on WebSocket");
}

/// The next protocol message, skipping keep-alives (answering pings); fails after TIMEOUT.
pub(crate) async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("no WebSocket message within the timeout")
            .expect("WebSocket closed")
            .expect("WebSocket error");
        let text = match msg {
            Message::Text(t) => t.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected WebSocket frame: {other:?}"),
        };
        let v: Value = serde_json::from_str(&text).expect("protocol message is JSON");
        match v["type"].as_str() {
            Some("ka") | Some("pong") => continue,
            Some("ping") => send(ws, json!({ "type": "pong" })).await,
            _ => return v,
        }
    }
}

async fn subscription_delivers_only_the_patients_events(protocol: Protocol) {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, ep) = patient_in_episode(&s, &r).await;
    let (q, eq) = patient_in_episode(&s, &r).await;

    // Replay from the next position to be written: events recorded before the server has set the
    // subscription up are still delivered, and nothing earlier is.
    let committed = s.committed().await;
    assert!(committed > 0);
    let after = committed - 1;

    let mut ws = connect(&s, protocol).await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", s.admin) } }))
        .await;
    let ack = recv(&mut ws).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    send(
        &mut ws,
        json!({ "id": "1", "type": protocol.start(),
                "payload": { "query": SUBSCRIPTION, "variables": { "p": p, "after": after } } }),
    )
    .await;

    // Interleave the two patients' recordings, ending with the subscribed patient's.
    let mut expected = Vec::new();
    for day in 12..15 {
        let sp = session(p, ep, r.a, &format!("2016-01-{day}T10:00:00Z"));
        let rp = s.record("recordSession", sp.clone()).await;
        expected.push((rp, sp["sessionId"].clone()));
        s.record("recordSession", session(q, eq, r.a, &format!("2016-01-{day}T11:00:00Z"))).await;
    }
    let last = s
        .record(
            "recordOutcome",
            json!({ "patientId": p, "episodeId": ep, "instrument": "GAD7", "phase": "INTAKE",
                    "items": [1, 2, 3, 0, 1, 2, 3], "measuredAt": "2016-01-15T09:00:00Z" }),
        )
        .await;
    assert!(last.position > expected.last().expect("sessions").0.position);

    // Exactly the subscribed patient's events, in log order: had another patient's event been
    // delivered, it would come before the last of these.
    let stream = format!("patient-{p}");
    for (rec, session_id) in &expected {
        let m = recv(&mut ws).await;
        assert_eq!(m["type"], protocol.data(), "{m}");
        assert_eq!(m["id"], "1", "{m}");
        let ev = &m["payload"]["data"]["events"];
        assert_eq!(ev["stream"], json!(stream), "{m}");
        assert_eq!(ev["type"], "SessionRecorded", "{m}");
        assert_eq!(ev["position"], json!(rec.position), "{m}");
        assert_eq!(ev["streamVersion"], json!(rec.stream_version), "{m}");
        assert_eq!(&ev["payload"]["session_id"], session_id, "{m}");
    }
    let m = recv(&mut ws).await;
    let ev = &m["payload"]["data"]["events"];
    assert_eq!((ev["type"].as_str(), &ev["stream"]), (Some("OutcomeRecorded"), &json!(stream)), "{m}");
    assert_eq!(ev["position"], json!(last.position), "{m}");
    assert_eq!(ev["payload"]["total"], 12, "the outcome's total is derived from its items: {m}");

    // Stopping the subscription completes it.
    send(&mut ws, json!({ "id": "1", "type": protocol.stop() })).await;
    let m = recv(&mut ws).await;
    assert_eq!((m["type"].as_str(), m["id"].as_str()), (Some("complete"), Some("1")), "{m}");
    ws.close(None).await.expect("close");

    // The server is unaffected by the subscriber leaving.
    assert_eq!(s.health().await["status"], "ok");
    s.record("recordSession", session(q, eq, r.a, "2016-01-20T10:00:00Z")).await;
}

/// A subscription with no patient sees every stream, replayed from `after`.
async fn unfiltered_subscription_replays_from_after(protocol: Protocol) {
    let s = Server::start().await;
    Reference::register(&s).await;
    let committed = s.committed().await;
    assert_eq!(committed, 6);

    let mut ws = connect(&s, protocol).await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", s.admin) } }))
        .await;
    assert_eq!(recv(&mut ws).await["type"], "connection_ack");
    send(
        &mut ws,
        json!({ "id": "all", "type": protocol.start(),
                "payload": { "query": "subscription($a: Int) { events(after: $a) { position stream type } }", "variables": { "a": 2 } } }),
    )
    .await;
    let mut got = Vec::new();
    for _ in 3..6 {
        let m = recv(&mut ws).await;
        assert_eq!(m["id"], "all", "{m}");
        got.push(m["payload"]["data"]["events"]["position"].as_u64().expect("position"));
    }
    assert_eq!(got, [3, 4, 5], "replay starts right after `after`, in order");
    let p: Uuid = id();
    let rec = s.record("registerPatient", json!({ "patientId": p, "birthYear": 2001, "gender": "OTHER" })).await;
    let m = recv(&mut ws).await;
    let ev = &m["payload"]["data"]["events"];
    assert_eq!(ev["position"], json!(rec.position), "{m}");
    assert_eq!(ev["stream"], json!(format!("patient-{p}")), "{m}");
    assert_eq!(ev["type"], "PatientRegistered", "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_graphql_transport_ws_subscription_for_a_patient_when_events_are_recorded_then_only_theirs_arrive_in_order(
) {
    subscription_delivers_only_the_patients_events(Protocol::TransportWs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_legacy_graphql_ws_subscription_for_a_patient_when_events_are_recorded_then_only_theirs_arrive_in_order(
) {
    subscription_delivers_only_the_patients_events(Protocol::LegacyWs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_unfiltered_subscription_with_after_when_subscribed_then_the_log_is_replayed_then_live() {
    unfiltered_subscription_replays_from_after(Protocol::TransportWs).await;
    unfiltered_subscription_replays_from_after(Protocol::LegacyWs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_subscription_from_position_zero_when_started_then_the_whole_log_is_replayed_first() {
    let s = Server::start().await;
    Reference::register(&s).await; // positions 0..6
    let mut ws = connect(&s, Protocol::TransportWs).await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", s.admin) } }))
        .await;
    assert_eq!(recv(&mut ws).await["type"], "connection_ack");
    let query = "subscription { events(fromPosition: 0) { position type } }";
    send(&mut ws, json!({ "id": "log", "type": "subscribe", "payload": { "query": query } })).await;
    let mut got = Vec::new();
    for _ in 0..6 {
        let m = recv(&mut ws).await;
        got.push(m["payload"]["data"]["events"]["position"].as_u64().expect("position"));
    }
    assert_eq!(got, [0, 1, 2, 3, 4, 5], "a dashboard can rebuild its own view from the start of the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_subscription_to_an_unknown_patient_when_subscribed_then_it_is_refused_with_not_found() {
    let s = Server::start().await;
    let mut ws = connect(&s, Protocol::TransportWs).await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", s.admin) } }))
        .await;
    assert_eq!(recv(&mut ws).await["type"], "connection_ack");
    send(
        &mut ws,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": SUBSCRIPTION, "variables": { "p": Uuid::new_v4() } } }),
    )
    .await;
    // An execution error, so a `next` carrying it (graphql-transport-ws), then `complete`.
    let msg = recv(&mut ws).await;
    assert_eq!(msg["type"], "next", "{msg}");
    assert_eq!(msg["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND", "{msg}");
    assert!(msg["payload"]["data"].is_null());
    assert_eq!(recv(&mut ws).await["type"], "complete");
}
