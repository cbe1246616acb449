//! The identity provider's key set, fetched over HTTPS and kept current: at start, then as
//! often as the provider's `Cache-Control: max-age` says (within [`MIN_INTERVAL`] and
//! [`MAX_INTERVAL`]), and at once when a token names a key id the set does not hold (at most
//! once per [`UNKNOWN_KID_WINDOW`]). The last good set is kept in the data directory, so a start
//! while the provider is unreachable still verifies tokens.
//!
//! A fetch that fails, or brings a document that is not a usable key set, never replaces the
//! set in use: it is logged, counted in `forlop_jwks_refresh_errors_total`, and tried again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use url::Url;

use crate::key_refresh::Refresh;
pub use crate::key_refresh::{UNKNOWN_KID_WAIT, UNKNOWN_KID_WINDOW};
use crate::{AuthError, KeySource, Verifier, VerifierConfig};

/// The shortest refresh interval, whatever the provider's `max-age`.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// The longest refresh interval, whatever the provider's `max-age`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// The refresh interval when the provider gives no `max-age`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// One request to the provider, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Larger answers are refused unread (a real key set is a few KiB).
const MAX_DOCUMENT: usize = 1024 * 1024;
/// The cache file, under the directory given as `cache_dir`.
pub const CACHE_FILE: &str = "jwks.json";

/// Why the key set could not be had; the message names the URL and, for a start, the cache.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdpError(String);

/// Where the key set is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// OpenID Connect discovery: `<issuer>/.well-known/openid-configuration` names `jwks_uri`.
    Issuer(String),
    /// The key set's own URL.
    JwksUrl(String),
}

/// How to reach the provider.
#[derive(Debug, Clone)]
pub struct JwksSourceOptions {
    pub location: Location,
    /// PEM file of the CA that signs the provider's certificate; without it, the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Where the last good set is kept (created 0700; the file is 0600).
    pub cache_dir: PathBuf,
}

/// The provider's key set, reachable and checked; see the module's documentation.
#[derive(Debug, Clone)]
pub struct JwksSource {
    location: Location,
    /// The location's URL as given (the cache belongs to it).
    url: String,
    client: reqwest::Client,
    cache_file: PathBuf,
}

/// One fetched set.
#[derive(Debug, Clone)]
struct Fetched {
    jwks: String,
    /// The discovery document's `issuer` (discovery only).
    issuer: Option<String>,
    max_age: Option<Duration>,
}

/// The set a server starts with.
#[derive(Debug, Clone)]
pub struct Initial {
    pub jwks: String,
    /// The issuer the discovery document names (discovery only): the tokens' expected `iss`
    /// unless one is configured.
    pub issuer: Option<String>,
    /// True when the provider could not be reached and the cached set is used.
    pub from_cache: bool,
    /// When the next refresh is due.
    next: Duration,
}

impl JwksSource {
    /// Checks the URL (HTTPS, or plain HTTP to a loopback address only) and the CA file, and
    /// builds the client. Nothing is fetched yet.
    pub fn new(options: JwksSourceOptions) -> Result<JwksSource, IdpError> {
        let (flag, url) = match &options.location {
            Location::Issuer(u) => ("--oidc-issuer", u),
            Location::JwksUrl(u) => ("--jwks-url", u),
        };
        check_url(url).map_err(|e| IdpError(format!("{flag} {url}: {e}")))?;
        let tls = tls_config(options.ca_file.as_deref())?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            // A redirect must obey the same rule as the URL it came from.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if let Err(e) = check_url(attempt.url().as_str()) {
                    let to = attempt.url().to_string();
                    attempt.error(format!("redirected to {to}: {e}"))
                } else {
                    attempt.follow()
                }
            }))
            .user_agent(concat!("forlop/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| IdpError(format!("the HTTP client for {url}: {}", chain(&e))))?;
        Ok(JwksSource {
            url: url.clone(),
            location: options.location,
            client,
            cache_file: options.cache_dir.join(CACHE_FILE),
        })
    }

    /// The configured URL (the issuer's, or the key set's).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where the last good set is kept.
    pub fn cache_file(&self) -> &Path {
        &self.cache_file
    }

    /// The set to start with: fetched now (and cached), or, when the provider cannot be reached
    /// or answers with no usable set, the cached one (with a warning). Neither is an error
    /// naming the URL and the cache file.
    pub async fn initial(&self) -> Result<Initial, IdpError> {
        let fetched = self.fetch_usable().await;
        record_attempt("start", fetched.is_ok());
        let problem = match fetched {
            Ok((fetched, keys)) => {
                metrics::gauge!("forlop_jwks_keys").set(keys as f64);
                self.store_cache(&fetched);
                return Ok(Initial {
                    jwks: fetched.jwks,
                    issuer: fetched.issuer,
                    from_cache: false,
                    next: interval(fetched.max_age),
                });
            }
            Err(problem) => problem,
        };
        match self.load_cache() {
            Ok((jwks, issuer, fetched_at)) => {
                let keys = usable(&jwks).unwrap_or(0);
                metrics::gauge!("forlop_jwks_keys").set(keys as f64);
                tracing::warn!(
                    url = %self.url, error = %problem, cache = %self.cache_file.display(), fetched_at,
                    "the identity provider's key set could not be fetched; using the cached set"
                );
                Ok(Initial { jwks, issuer, from_cache: true, next: MIN_INTERVAL })
            }
            Err(cache) => Err(IdpError(format!("{problem}; {cache}"))),
        }
    }

    /// Builds the verifier for `initial`'s set and starts keeping it current. Needs a Tokio
    /// runtime: the refresh runs as a task, which ends when the last clone of the verifier is
    /// dropped.
    pub fn verifier(
        self,
        config: VerifierConfig,
        initial: Initial,
        mut others: Vec<KeySource>,
    ) -> Result<Verifier, AuthError> {
        others.push(KeySource::Jwks(initial.jwks));
        let refresh = Arc::new(Refresh::default());
        let verifier = Verifier::build(config, others, Some(refresh.clone()))?;
        metrics::counter!("forlop_jwks_refresh_errors_total").increment(0);
        tokio::spawn(run(verifier.downgrade(), refresh, self, initial.next));
        Ok(verifier)
    }

    /// Fetches the set and checks it is usable; the number of usable keys with it.
    async fn fetch_usable(&self) -> Result<(Fetched, usize), IdpError> {
        let fetched = self.fetch().await?;
        match usable(&fetched.jwks) {
            Ok(keys) => Ok((fetched, keys)),
            Err(e) => Err(IdpError(format!("the key set from {} is not usable: {e}", self.url))),
        }
    }

    async fn fetch(&self) -> Result<Fetched, IdpError> {
        match &self.location {
            Location::JwksUrl(url) => {
                let (jwks, max_age) = self.get(url).await?;
                Ok(Fetched { jwks, issuer: None, max_age })
            }
            Location::Issuer(issuer) => {
                let discovery = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
                let (text, _) = self.get(&discovery).await?;
                let doc: Value = serde_json::from_str(&text)
                    .map_err(|_| IdpError(format!("the discovery document at {discovery} is not JSON")))?;
                let named = doc.get("issuer").and_then(Value::as_str).unwrap_or_default();
                if named.trim_end_matches('/') != issuer.trim_end_matches('/') {
                    return Err(IdpError(format!(
                        "the discovery document at {discovery} names the issuer {named:?}, not {issuer:?}; refused"
                    )));
                }
                let Some(jwks_uri) = doc.get("jwks_uri").and_then(Value::as_str) else {
                    return Err(IdpError(format!("the discovery document at {discovery} has no jwks_uri")));
                };
                check_url(jwks_uri).map_err(|e| IdpError(format!("jwks_uri {jwks_uri} from {discovery}: {e}")))?;
                let (jwks, max_age) = self.get(jwks_uri).await?;
                Ok(Fetched { jwks, issuer: Some(named.to_owned()), max_age })
            }
        }
    }

    /// GET `url`: a 2xx answer's body (at most [`MAX_DOCUMENT`] bytes, UTF-8) and its max-age.
    async fn get(&self, url: &str) -> Result<(String, Option<Duration>), IdpError> {
        let failed = |e: &reqwest::Error| IdpError(format!("could not fetch {url}: {}", chain(e)));
        let mut response = self.client.get(url).header("accept", "application/json").send().await.map_err(|e| {
            let mut err = failed(&e);
            if e.is_connect() && url.starts_with("https:") && chain(&e).contains("certificate") {
                err.0.push_str(" (is --idp-ca-file the CA that signs the provider's certificate?)");
            }
            err
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(IdpError(format!("could not fetch {url}: HTTP {status}")));
        }
        let max_age = response
            .headers()
            .get_all(reqwest::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(&e))? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(IdpError(format!("could not fetch {url}: the answer exceeds {MAX_DOCUMENT} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body).map_err(|_| IdpError(format!("the answer from {url} is not UTF-8")))?;
        Ok((text, max_age))
    }

    /// Keeps `fetched` as the last good set: a temporary file (0600), fsynced, renamed over the
    /// cache, and the directory fsynced. A failure is logged: the set is still used.
    fn store_cache(&self, fetched: &Fetched) {
        if let Err(e) = self.write_cache(fetched) {
            tracing::warn!(cache = %self.cache_file.display(), error = %e, "could not keep the key set on disk");
        }
    }

    fn write_cache(&self, fetched: &Fetched) -> std::io::Result<()> {
        use std::io::Write as _;
        let jwks: Value = serde_json::from_str(&fetched.jwks)?;
        let record = serde_json::json!({
            "source": self.url,
            "issuer": fetched.issuer,
            "fetched_at": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "jwks": jwks,
        });
        let dir = self.cache_file.parent().unwrap_or(Path::new("."));
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
        let tmp = dir.join(format!(".{CACHE_FILE}.tmp"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(serde_json::to_string_pretty(&record)?.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &self.cache_file)?;
        std::fs::File::open(dir)?.sync_all()
    }

    /// The cached set (its document, issuer and fetch time), if it belongs to this URL and is usable.
    fn load_cache(&self) -> Result<(String, Option<String>, u64), String> {
        let path = self.cache_file.display();
        let text = match std::fs::read_to_string(&self.cache_file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(format!("no cached set in {path}")),
            Err(e) => return Err(format!("the cached set {path} could not be read: {e}")),
        };
        let record: Value =
            serde_json::from_str(&text).map_err(|_| format!("the cached set {path} is not JSON; not used"))?;
        if record.get("source").and_then(Value::as_str) != Some(self.url.as_str()) {
            return Err(format!("the cached set {path} was fetched from another URL; not used"));
        }
        let jwks = record.get("jwks").map(Value::to_string).unwrap_or_default();
        usable(&jwks).map_err(|e| format!("the cached set {path} is not usable ({e}); not used"))?;
        let issuer = record.get("issuer").and_then(Value::as_str).map(str::to_owned);
        let fetched_at = record.get("fetched_at").and_then(Value::as_u64).unwrap_or(0);
        Ok((jwks, issuer, fetched_at))
    }
}

/// The refresh task: until the verifier is dropped, fetches when due or kicked, and replaces
/// the set when a usable one arrives.
async fn run(
    verifier: std::sync::Weak<crate::verifier::Inner>,
    refresh: Arc<Refresh>,
    source: JwksSource,
    first: Duration,
) {
    let mut next = first;
    let mut failures: u32 = 0;
    loop {
        let trigger = tokio::select! {
            () = tokio::time::sleep(next) => "schedule",
            () = refresh.kick.notified() => "unknown_kid",
        };
        refresh.begin();
        let outcome = source.fetch_usable().await;
        let Some(inner) = verifier.upgrade() else { return };
        let verifier = Verifier::from_inner(inner);
        let outcome = outcome.and_then(|(fetched, _)| {
            verifier
                .replace_jwks(&fetched.jwks)
                .map(|keys| (fetched, keys))
                .map_err(|e| IdpError(format!("the key set from {} is not usable: {e}", source.url)))
        });
        let ok = outcome.is_ok();
        next = match outcome {
            Ok((fetched, keys)) => {
                failures = 0;
                metrics::gauge!("forlop_jwks_keys").set(keys as f64);
                tracing::debug!(url = %source.url, keys, trigger, "fetched the identity provider's key set");
                source.store_cache(&fetched);
                interval(fetched.max_age)
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                metrics::gauge!("forlop_jwks_keys").set(verifier.jwks_len() as f64);
                tracing::warn!(url = %source.url, error = %e, trigger, "refreshing the identity provider's key set failed; the set in use is kept");
                retry_after(failures)
            }
        };
        // Counted once its gauge, log line and cache are written: a dashboard (or a test) that
        // sees the count sees the rest of the attempt too.
        record_attempt(trigger, ok);
        drop(verifier);
        refresh.finish();
    }
}

fn record_attempt(trigger: &'static str, ok: bool) {
    metrics::counter!("forlop_jwks_refresh_total", "trigger" => trigger).increment(1);
    if !ok {
        metrics::counter!("forlop_jwks_refresh_errors_total").increment(1);
    }
}

/// The refresh interval for a `max-age`, clamped to [[`MIN_INTERVAL`], [`MAX_INTERVAL`]].
fn interval(max_age: Option<Duration>) -> Duration {
    max_age.unwrap_or(DEFAULT_INTERVAL).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// After `failures` failed fetches in a row: [`MIN_INTERVAL`], doubling, up to [`DEFAULT_INTERVAL`].
fn retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    MIN_INTERVAL.saturating_mul(1 << doublings).min(DEFAULT_INTERVAL)
}

/// The `max-age` directive of one `Cache-Control` header value.
fn max_age(header: &str) -> Option<Duration> {
    header.split(',').find_map(|directive| {
        let (name, value) = directive.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        value.trim().trim_matches('"').parse::<u64>().ok().map(Duration::from_secs)
    })
}

/// The number of usable keys in `doc`, or why it is not a usable set.
fn usable(doc: &str) -> Result<usize, AuthError> {
    let mut keys = std::collections::HashMap::new();
    crate::verifier::parse_jwks(doc, &mut keys)?;
    Ok(keys.len())
}

/// HTTPS, or plain HTTP to a loopback address (tests, a local proxy); nothing else.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err("plain http:// is allowed only to a loopback address; the identity provider must be reached over https://".into())
            }
        }
        other => Err(format!("the scheme {other}:// is not supported; use https://")),
    }
}

/// rustls with ring, trusting `ca_file`'s certificates or else the system's roots.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, IdpError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| IdpError(format!("--idp-ca-file {}: {e}", path.display()));
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
            for cert in certs {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(bad(&"holds no certificate"));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert); // one unreadable system root does not spoil the rest
            }
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| IdpError(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An error and its causes, as one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control_and_clamped() {
        for (header, want) in [
            ("max-age=7200", Some(7200)),
            ("public, MAX-AGE=\"120\", must-revalidate", Some(120)),
            ("no-cache", None),
            ("max-age=soon", None),
            ("s-maxage=30", None),
        ] {
            assert_eq!(max_age(header), want.map(Duration::from_secs), "{header}");
        }
        assert_eq!(interval(None), DEFAULT_INTERVAL);
        assert_eq!(interval(Some(Duration::from_secs(5))), MIN_INTERVAL);
        assert_eq!(interval(Some(Duration::from_secs(7 * 24 * 3600))), MAX_INTERVAL);
        assert_eq!(interval(Some(Duration::from_secs(600))), Duration::from_secs(600));
    }

    #[test]
    fn a_failing_provider_is_asked_less_and_less_often_down_to_hourly() {
        let seconds: Vec<u64> = (1..=8).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(seconds, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }

    #[test]
    fn only_https_or_loopback_http_is_accepted() {
        for ok in
            ["https://helseid-sts.nhn.no", "http://127.0.0.1:8080/jwks", "http://[::1]/jwks", "http://localhost/x"]
        {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("http://example.org/jwks", "loopback"),
            ("http://10.0.0.1/jwks", "loopback"),
            ("ftp://127.0.0.1/jwks", "scheme"),
            ("helseid", "not a URL"),
        ] {
            assert!(check_url(bad).is_err_and(|e| e.contains(says)), "{bad}: {:?}", check_url(bad));
        }
    }
}
