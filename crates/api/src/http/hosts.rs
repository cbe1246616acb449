//! The `Host` rule against DNS rebinding: which hosts this server answers for, and the 421.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use forlop_domain::text::quote;

use super::authenticator::Authenticator;
use super::headers::{header_str, host_name};
use super::respond::error_response;
use super::settings::HttpSettings;
use crate::error::code;

/// Which `Host`s are answered, against DNS rebinding: a page on `evil.example` whose name the
/// attacker then points at 127.0.0.1 is same-origin with everything this server answers for
/// that name, so its script could read what a loopback server gives anyone (all of it under
/// `--auth off`; the explorer's embedded admin token under `--demo`). Such a request names the
/// attacker's host, in `Host` and `Origin` alike, so the Origin check alone cannot see it.
///
/// Enforced under `--auth off` and under `--demo` (the only configuration with an explorer
/// token), where a browser's request is authority enough. Under `--auth jwt` a rebound page
/// gets nothing a token would not be needed for (browsers attach no bearer token by themselves),
/// and behind a proxy the `Host` is whatever the deployment names it, so it is not checked.
///
/// Answered: `localhost`, any IP address (a page whose origin is an address is not one an
/// attacker's DNS can rebind; under `--auth off` the listen address is loopback, checked at
/// start), and the hosts of `--allowed-origins`. Any port: the port is the one the request
/// reached, whatever the name.
#[derive(Debug)]
pub(super) struct HostRule {
    /// Lowercase names answered besides IP addresses.
    names: Vec<String>,
}

impl HostRule {
    pub(super) fn for_settings(settings: &HttpSettings) -> Option<HostRule> {
        let enforced = matches!(settings.auth, Authenticator::Off) || settings.explorer_token.is_some();
        if !enforced {
            return None;
        }
        let mut names = vec!["localhost".to_owned()];
        names.extend(settings.allowed_origins.iter().filter_map(|o| origin_host(o)));
        Some(HostRule { names })
    }

    fn allows(&self, host: &str) -> bool {
        match host_name(host) {
            Some(name) => name.parse::<IpAddr>().is_ok() || self.names.contains(&name),
            None => false,
        }
    }
}

/// The host of an origin (`scheme://host[:port]`), for the Host rule; None for `*` or a value
/// that is not an origin.
fn origin_host(origin: &str) -> Option<String> {
    let (_, rest) = origin.trim().split_once("://")?;
    host_name(rest.split('/').next().unwrap_or_default())
}

/// Refuses a request for a host this server does not answer for (see [`HostRule`]) with 421,
/// before anything else is done with it.
pub(super) async fn host_allowed(
    State(rule): State<Option<Arc<HostRule>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(rule) = rule else { return next.run(request).await };
    // A browser always names the host (HTTP/2 in the authority); a request naming none is not
    // a browser's, which is all this rule is about.
    let host = header_str(request.headers(), header::HOST)
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    match host {
        Some(host) if !rule.allows(&host) => {
            let message = format!(
                "this server does not answer for host {}: under --auth off and --demo it answers only for \
                 localhost, an IP address or a host of --allowed-origins (a defence against DNS rebinding)",
                quote(&host)
            );
            if request.uri().path().starts_with("/fhir") {
                // As every FHIR route answers: an OperationOutcome.
                let issue = forlop_fhir::mapping::Issue::new(
                    forlop_fhir::outcome::IssueType::Forbidden,
                    "",
                    format!("FORBIDDEN: {message}"),
                );
                let body = serde_json::to_vec(&forlop_fhir::outcome::operation_outcome(&[issue])).unwrap_or_default();
                let content_type = [(header::CONTENT_TYPE, "application/fhir+json")];
                (StatusCode::MISDIRECTED_REQUEST, content_type, body).into_response()
            } else {
                error_response(StatusCode::MISDIRECTED_REQUEST, code::FORBIDDEN, message)
            }
        }
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str]) -> HostRule {
        let mut names = vec!["localhost".to_owned()];
        names.extend(origins.iter().filter_map(|o| origin_host(o)));
        HostRule { names }
    }

    #[test]
    fn the_host_rule_answers_for_localhost_addresses_and_allowed_origins_only() {
        let r = rule(&["https://Dashboard.Example.no", "http://forlop.test:3000/path", "*", "not an origin"]);
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "10.1.2.3:80",
            "[::1]",
            "[::1]:8080",
            "dashboard.example.no",
            "forlop.test:8080",
        ] {
            assert!(r.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "evil.example@localhost",
            "localhost:80:80",
            "localhost:",
            "localhost:123456",
            "localhost:8o",
            "[::1",
            "[evil.example]:80",
            "[::1]x",
            "",
            ":8080",
            "::1",
            "127.1",
            "2130706433",
            "local host",
        ] {
            assert!(!r.allows(refused), "{refused:?}");
        }
    }
}
