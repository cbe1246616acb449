//! Subscriptions over WebSocket at /graphql/ws (graphql-transport-ws and legacy graphql-ws),
//! with the rules async-graphql leaves to the server, the token's expiry among them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_graphql::http::{WebSocketProtocols, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::{Data, ErrorExtensions};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use forlop_auth::Principal;
use forlop_domain::text::clip;
use forlop_engine::Caller;

use super::authenticator::Authenticator;
use super::cors::origin_allowed;
use super::headers::header_str;
use super::respond::error_response;
use super::state::AppState;
use crate::error::code;
use crate::graphql::context::TokenExpiry;
use crate::graphql::ForlopSchema;

/// Largest WebSocket message accepted.
const MAX_WS_MESSAGE: usize = 64 * 1024;

/// WebSocket subscriptions. The browser's Origin is checked before the upgrade, and the
/// caller is authenticated from `connection_init` (`{"Authorization": "Bearer …"}`), or from
/// the upgrade's own Authorization header for clients that can set one.
pub(super) async fn websocket(
    State(state): State<AppState>,
    slot: Option<axum::Extension<crate::server::ConnectionSlot>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &state.settings.allowed_origins) {
        return error_response(StatusCode::FORBIDDEN, code::FORBIDDEN, "origin not allowed");
    }
    // The first subprotocol offered that we speak (graphql-transport-ws or legacy graphql-ws).
    let protocol = header_str(&headers, header::SEC_WEBSOCKET_PROTOCOL)
        .unwrap_or_default()
        .split(',')
        .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
        .unwrap_or(WebSocketProtocols::SubscriptionsTransportWS);
    let upgrade_auth = header_str(&headers, header::AUTHORIZATION).map(str::to_owned);
    let (schema, auth) = (state.schema.clone(), state.settings.auth.clone());
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| async move {
            // The socket counts against --max-connections until it closes.
            let _slot = slot;
            ws_session(socket, schema, protocol, auth, upgrade_auth).await
        })
}

/// A client must send `connection_init` within this time (graphql-transport-ws: close 4408).
const WS_INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Close code for a connection whose token is refused, at `connection_init`, or has expired
/// (graphql-transport-ws: 4403 Forbidden).
const WS_FORBIDDEN: u16 = 4403;

/// Longest close reason a WebSocket close frame may carry, in bytes (RFC 6455 §5.5).
const CLOSE_REASON: usize = 123;

/// The message's `type` and `id`, when it is a JSON object.
fn message_kind(text: &str) -> (Option<String>, Option<String>) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    (s("type"), s("id"))
}

/// The Authorization a `connection_init` message carries in its payload, if any.
fn init_authorization(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let payload = v.get("payload")?;
    payload.get("Authorization").or_else(|| payload.get("authorization"))?.as_str().map(str::to_owned)
}

/// `reason` cut to fit a close frame, at a character boundary.
fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// True once `until` (a token's expiry) has passed; never for a connection without one.
fn expired(until: Option<SystemTime>) -> bool {
    until.is_some_and(|u| TokenExpiry(u).passed())
}

/// One WebSocket connection: async-graphql speaks the protocol; this loop adds the rules it
/// leaves to the server: the initialisation timeout (4408), unique subscription ids (4409), and
/// the token's authority (4403). The token `connection_init` presents is checked here, before
/// async-graphql acknowledges anything; it is checked again on every `subscribe`, and when it
/// expires (its `exp` plus the leeway) the socket is closed with 4403: a connection must not
/// outlast the token that opened it (a subscription would otherwise go on delivering, and a new
/// one replaying whole streams, for as long as the socket stays open).
async fn ws_session(
    socket: axum::extract::ws::WebSocket,
    schema: ForlopSchema,
    protocol: WebSocketProtocols,
    auth: Authenticator,
    upgrade_auth: Option<String>,
) {
    use axum::extract::ws::{CloseFrame, Message};
    use futures::{SinkExt, StreamExt};
    let (mut sink, mut source) = socket.split();
    let (to_graphql, from_client) = tokio::sync::mpsc::unbounded_channel::<String>();
    // The caller this loop authenticated from the first `connection_init`, for async-graphql's
    // hook, which runs on that same message once the loop has forwarded it.
    let accepted = Arc::new(parking_lot::Mutex::new(None::<(Principal, Option<SystemTime>)>));
    let hook = accepted.clone();
    let mut graphql = async_graphql::http::WebSocket::new(
        schema,
        tokio_stream::wrappers::UnboundedReceiverStream::new(from_client),
        protocol,
    )
    .on_connection_init(move |_payload| async move {
        let Some((principal, until)) = hook.lock().take() else {
            // Not reached: the loop forwards a first connection_init only once it is authenticated.
            return Err(async_graphql::Error::new("authentication required")
                .extend_with(|_, e| e.set("code", code::UNAUTHENTICATED)));
        };
        let mut data = Data::default();
        data.insert(Caller::server(principal, "subscription"));
        if let Some(until) = until {
            data.insert(TokenExpiry(until));
        }
        Ok(data)
    });
    let close =
        |code: u16, reason: &str| Message::Close(Some(CloseFrame { code, reason: close_reason(reason).into() }));
    let init_deadline = tokio::time::sleep(WS_INIT_TIMEOUT);
    tokio::pin!(init_deadline);
    // Armed once the token is known; a connection without expiry (`--auth off`) never fires.
    let token_expiry = tokio::time::sleep(Duration::MAX);
    tokio::pin!(token_expiry);
    let mut initialised = false;
    // The Authorization the connection was opened with, and until when it holds.
    let mut authorization: Option<Option<String>> = None;
    let mut until: Option<SystemTime> = None;
    let mut active = std::collections::HashSet::<String>::new();
    loop {
        tokio::select! {
            () = &mut init_deadline, if !initialised => {
                let _ = sink.send(close(4408, "Connection initialisation timeout")).await;
                break;
            }
            () = &mut token_expiry, if until.is_some() => {
                let _ = sink.send(close(WS_FORBIDDEN, "token expired")).await;
                break;
            }
            incoming = source.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                };
                match message_kind(&text) {
                    (Some(t), _) if t == "connection_init" && !initialised => {
                        initialised = true;
                        let header = init_authorization(&text).or_else(|| upgrade_auth.clone());
                        let refusal = match auth.authenticate_until(header.as_deref()).await {
                            // Accepted within its last second (the verifier counts whole seconds).
                            Ok((_, valid_until)) if expired(valid_until) => Some("invalid token: token expired".to_owned()),
                            Ok((principal, valid_until)) => {
                                *accepted.lock() = Some((principal, valid_until));
                                if let Some(u) = valid_until {
                                    // tokio's own bound on a timer (about 30 years).
                                    let left = u.duration_since(SystemTime::now()).unwrap_or_default();
                                    let left = left.min(Duration::from_secs(30 * 365 * 86_400));
                                    if let Some(at) = tokio::time::Instant::now().checked_add(left) {
                                        token_expiry.as_mut().reset(at);
                                    }
                                }
                                (authorization, until) = (Some(header), valid_until);
                                None
                            }
                            Err(msg) => Some(msg),
                        };
                        if let Some(reason) = refusal {
                            if protocol == WebSocketProtocols::SubscriptionsTransportWS {
                                // The legacy protocol's own refusal, before the close it has no code for.
                                let refused = serde_json::json!({ "type": "connection_error",
                                    "payload": { "message": reason, "extensions": { "code": code::UNAUTHENTICATED } } });
                                let _ = sink.send(Message::Text(refused.to_string().into())).await;
                            }
                            let _ = sink.send(close(WS_FORBIDDEN, &reason)).await;
                            break;
                        }
                    }
                    (Some(t), _) if t == "connection_init" => {}
                    (Some(t), Some(id)) if t == "subscribe" || t == "start" => {
                        // Every subscription is a new use of the token: checked again (the
                        // verifier remembers it, so only its time bounds are re-read).
                        if let Some(header) = &authorization {
                            let still = auth.authenticate_until(header.as_deref()).await;
                            if let Some(reason) = match still {
                                Ok(_) if expired(until) => Some("token expired".to_owned()),
                                Ok(_) => None,
                                Err(msg) => Some(msg),
                            } {
                                let _ = sink.send(close(WS_FORBIDDEN, &reason)).await;
                                break;
                            }
                        }
                        if !active.insert(id.clone()) {
                            let reason = format!("Subscriber for {} already exists", clip(&id));
                            let _ = sink.send(close(4409, &reason)).await;
                            break;
                        }
                    }
                    (Some(t), Some(id)) if t == "complete" || t == "stop" => {
                        active.remove(&id);
                    }
                    _ => {}
                }
                if to_graphql.send(text).is_err() {
                    break;
                }
            }
            outgoing = graphql.next() => match outgoing {
                Some(async_graphql::http::WsMessage::Text(t)) => {
                    // The timer and this message may be ready together: nothing goes out late.
                    if expired(until) {
                        let _ = sink.send(close(WS_FORBIDDEN, "token expired")).await;
                        break;
                    }
                    if let (Some(kind), Some(id)) = message_kind(&t) {
                        if kind == "complete" || kind == "error" {
                            active.remove(&id);
                        }
                    }
                    if sink.send(Message::Text(t.into())).await.is_err() {
                        break;
                    }
                }
                Some(async_graphql::http::WsMessage::Close(code, reason)) => {
                    let _ = sink.send(close(code, &reason)).await;
                    break;
                }
                None => break,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_reason_fits_a_close_frame() {
        assert_eq!(close_reason("token expired"), "token expired");
        let long = "ø".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= CLOSE_REASON && long.starts_with(&cut) && cut.len() == 122, "{}", cut.len());
    }
}
