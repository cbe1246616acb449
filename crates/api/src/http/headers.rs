//! Request headers as the handlers read them, and the ones forlop defines.

use axum::http::{header, HeaderMap};

pub(crate) fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Read-your-writes across nodes: a request carrying this header (a position a mutation
/// returned, on any node) is answered once this node's read model holds that position.
pub(crate) const MIN_POSITION_HEADER: &str = "x-forlop-min-position";

/// The name in a `Host` value (`name`, `name:port`, `[v6]` or `[v6]:port`), lowercased; None
/// when it is none of these.
pub(super) fn host_name(host: &str) -> Option<String> {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            (v6, port)
        }
        None => match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = !name.is_empty() && !name.contains(['/', '\\', '@', ' ']);
    (port_ok && name_ok).then(|| name.to_ascii_lowercase())
}
