//! The identity provider's key set: fetched by `--jwks-url` or OpenID discovery
//! (`--oidc-issuer`), rotated without a restart, kept on disk for a start while the provider is
//! down, reached over TLS with a private CA, and never replaced by a failed fetch.
//!
//! The provider is a small HTTP(S) server in the test process on loopback, counting requests.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use forlop_auth::testing::{claims, jwks, EcTestKey, RsaTestKey};
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::json;

use crate::support::*;

/// How long a condition may take to come true before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// What the provider answers at `/jwks`.
#[derive(Clone)]
enum Answer {
    Jwks(String),
    Status(u16),
    Body(&'static str),
}

struct IdpState {
    answer: Answer,
    /// The `issuer` the discovery document names (None: the provider's own URL).
    issuer: Option<String>,
}

/// A JWKS and OpenID discovery server on loopback; stops when dropped.
struct Idp {
    base: String,
    state: Arc<Mutex<IdpState>>,
    jwks_requests: Arc<AtomicUsize>,
    discovery_requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Idp {
    async fn start(answer: Answer) -> Idp {
        Idp::serve(answer, None).await
    }

    /// Over TLS with `cert` (for `localhost`) and its key.
    async fn start_tls(answer: Answer, tls: rustls::ServerConfig) -> Idp {
        Idp::serve(answer, Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))).await
    }

    async fn serve(answer: Answer, tls: Option<tokio_rustls::TlsAcceptor>) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the provider");
        let addr: SocketAddr = listener.local_addr().expect("provider address");
        let base = match tls {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://127.0.0.1:{}", addr.port()),
        };
        let state = Arc::new(Mutex::new(IdpState { answer, issuer: None }));
        let (jwks_requests, discovery_requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let shared = (state.clone(), jwks_requests.clone(), discovery_requests.clone(), base.clone());
        let task = tokio::spawn(async move {
            // Dropped with the task: every connection ends when the provider stops.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (shared, tls) = (shared.clone(), tls.clone());
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer_request(&shared, req.uri().path())) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Idp { base, state, jwks_requests, discovery_requests, task }
    }

    fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    fn answer(&self, answer: Answer) {
        self.state.lock().unwrap().answer = answer;
    }

    fn jwks_requests(&self) -> usize {
        self.jwks_requests.load(Ordering::SeqCst)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = (Arc<Mutex<IdpState>>, Arc<AtomicUsize>, Arc<AtomicUsize>, String);

fn answer_request(shared: &Shared, path: &str) -> hyper::Response<Full<Bytes>> {
    let (state, jwks_requests, discovery_requests, base) = shared;
    let respond = |status: u16, body: String| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("cache-control", "public, max-age=3600")
            .body(Full::new(Bytes::from(body)))
            .expect("a response")
    };
    let state = state.lock().unwrap();
    match path {
        "/jwks" => {
            jwks_requests.fetch_add(1, Ordering::SeqCst);
            match &state.answer {
                Answer::Jwks(doc) => respond(200, doc.clone()),
                Answer::Status(status) => respond(*status, "{\"error\":\"down\"}".into()),
                Answer::Body(body) => respond(200, (*body).into()),
            }
        }
        "/.well-known/openid-configuration" => {
            discovery_requests.fetch_add(1, Ordering::SeqCst);
            let issuer = state.issuer.clone().unwrap_or_else(|| base.clone());
            respond(200, json!({ "issuer": issuer, "jwks_uri": format!("{base}/jwks") }).to_string())
        }
        _ => respond(404, "{}".into()),
    }
}

/// `GET /graphql`-free check of a token: the status of a small query.
async fn status_with(s: &Server, token: &str) -> u16 {
    s.gql_as(Some(token), "{ log { committed } }", json!({})).await.0.as_u16()
}

/// A value from GET /metrics (0 when the series is absent).
async fn metric(url: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics")).await.expect("GET /metrics").text().await.expect("metrics text");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter(|(series, _)| *series == name || series.starts_with(&format!("{name}{{")))
        .map(|(_, v)| v.trim().parse::<f64>().expect("a number"))
        .sum()
}

/// Polls `check` until it holds or the deadline passes.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let until = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < until, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_provider_rolls_its_key_over_then_tokens_by_the_new_key_are_accepted_without_a_restart() {
    let (a, b) = (RsaTestKey::generate("key-a"), RsaTestKey::generate("key-b"));
    let idp = Idp::start(Answer::Jwks(jwks(&[a.jwk()]))).await;
    let s = Server::start_with(&["--jwks-url", &idp.jwks_url()]).await;
    assert_eq!(idp.jwks_requests(), 1, "fetched once at start");
    let token = |key: &RsaTestKey| key.sign(&claims(ISSUER, AUDIENCE, "hsa-1", "auditor"));
    assert_eq!(status_with(&s, &token(&a)).await, 200, "key A: {}", s.log_tail());
    assert_eq!(metric(&s.url, "forlop_jwks_keys").await, 1.0);

    // The provider publishes key B only; B's first token brings the new set.
    idp.answer(Answer::Jwks(jwks(&[b.jwk()])));
    assert_eq!(status_with(&s, &token(&b)).await, 200, "key B after rollover: {}", s.log_tail());
    let rolled = Instant::now();
    assert_eq!(idp.jwks_requests(), 2, "one fetch for the unknown kid");
    assert_eq!(status_with(&s, &token(&a)).await, 401, "key A was withdrawn with the old set");
    assert_eq!(metric(&s.url, "forlop_jwks_refresh_total").await, 2.0);

    // A flood of invented key ids, at once: refused, and the provider is not asked again.
    let invented: Vec<String> = (0..40)
        .map(|i| EcTestKey::generate(&format!("invented-{i}")).sign(&claims(ISSUER, AUDIENCE, "x", "auditor")))
        .collect();
    let statuses = futures::future::join_all(invented.iter().map(|t| status_with(&s, t))).await;
    assert!(statuses.iter().all(|&st| st == 401), "invented kids are refused: {statuses:?}");
    let fetches = idp.jwks_requests();
    if rolled.elapsed() < forlop_auth::jwks_source::UNKNOWN_KID_WINDOW {
        assert_eq!(fetches, 2, "no fetch within the window after the last one");
    } else {
        assert!(fetches <= 3, "at most one more fetch after the window: {fetches}");
    }
    assert_eq!(status_with(&s, &token(&b)).await, 200, "key B still verifies");
}

/// A master key file in `dir`, for a server started without the harness's flags.
fn master_key(dir: &Path) -> String {
    use base64::Engine as _;
    let path = dir.join("master.key");
    let key: [u8; 32] = rand::random();
    std::fs::write(&path, base64::engine::general_purpose::STANDARD.encode(key)).expect("write key");
    path.display().to_string()
}

/// Runs `forlop serve …` that must refuse to start; its output.
fn refused(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = forlop();
    for var in ["FORLOP_JWKS_URL", "FORLOP_OIDC_ISSUER", "FORLOP_IDP_CA_FILE", "FORLOP_JWKS", "FORLOP_CONFIG"] {
        cmd.env_remove(var);
    }
    cmd.arg("serve").args(["--listen", "127.0.0.1:0"]).args(args).envs(env.iter().copied());
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn forlop");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("wait for forlop"),
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            panic!("forlop serve {args:?} did not exit within {DEADLINE:?}: it should have refused to start");
        }
    }
}

/// A server with only what discovery gives it: no --issuer, no secret.
struct Bare {
    url: String,
    child: std::process::Child,
    log: tempfile::NamedTempFile,
}

impl Bare {
    async fn start(dir: &Path, args: &[&str]) -> Bare {
        let key = master_key(dir);
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut child = forlop()
            .args(["serve", "--data", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(["--key-file", &key, "--audience", AUDIENCE])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn forlop serve");
        let listening = tokio::time::timeout(DEADLINE, follow_stderr(&mut child, log.path())).await;
        let Ok(Ok(listening)) = listening else {
            let _ = child.kill();
            panic!(
                "forlop serve did not say where it listens: {}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
        };
        let mut bare = Bare { url: format!("http://{}", listening.api), child, log };
        let health = format!("{}/healthz", bare.url);
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = bare.child.try_wait().unwrap() {
                panic!("forlop exited {status}: {}", std::fs::read_to_string(bare.log.path()).unwrap_or_default());
            }
            if reqwest::get(&health).await.is_ok_and(|r| r.status().is_success()) {
                return bare;
            }
            assert!(Instant::now() < until, "forlop serve did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn status_with(&self, token: &str) -> u16 {
        reqwest::Client::new()
            .post(format!("{}/graphql", self.url))
            .bearer_auth(token)
            .json(&json!({ "query": "{ log { committed } }" }))
            .send()
            .await
            .expect("POST /graphql")
            .status()
            .as_u16()
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_oidc_issuer_then_discovery_names_the_key_set_and_the_expected_issuer() {
    let key = RsaTestKey::generate("helseid-1");
    let idp = Idp::start(Answer::Jwks(jwks(&[key.jwk()]))).await;
    let data = tempfile::tempdir().unwrap();
    let s = Bare::start(data.path(), &["--oidc-issuer", &idp.base]).await;
    assert_eq!(idp.discovery_requests.load(Ordering::SeqCst), 1, "discovered once at start");
    assert_eq!(idp.jwks_requests(), 1, "the jwks_uri was fetched");
    // The discovery document's issuer is the required `iss`.
    assert_eq!(s.status_with(&key.sign(&claims(&idp.base, AUDIENCE, "hsa-1", "auditor"))).await, 200);
    assert_eq!(s.status_with(&key.sign(&claims("someone-else", AUDIENCE, "hsa-1", "auditor"))).await, 401);
    drop(s);

    // A discovery document naming another issuer is refused at start.
    idp.state.lock().unwrap().issuer = Some("https://impostor.example".into());
    let other = tempfile::tempdir().unwrap();
    let key_file = master_key(other.path());
    let out = refused(
        &[
            "--data",
            other.path().to_str().unwrap(),
            "--key-file",
            &key_file,
            "--audience",
            AUDIENCE,
            "--oidc-issuer",
            &idp.base,
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refused: {err}");
    assert!(err.contains("impostor.example") && err.contains(&idp.base), "names both issuers: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_provider_is_down_at_restart_then_the_key_set_kept_on_disk_verifies_tokens() {
    use std::os::unix::fs::PermissionsExt;
    let key = RsaTestKey::generate("kept-1");
    let idp = Idp::start(Answer::Jwks(jwks(&[key.jwk()]))).await;
    let url = idp.jwks_url();
    let data = tempfile::tempdir().unwrap();
    let s = Server::start_in(data.path(), &["--jwks-url", &url]).await;
    let token = key.sign(&claims(ISSUER, AUDIENCE, "hsa-1", "auditor"));
    assert_eq!(status_with(&s, &token).await, 200);
    let cache = data.path().join("idp").join("jwks.json");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&cache), mode(cache.parent().unwrap())), (0o600, 0o700), "kept for the service alone");
    assert_eq!(s.stop().code(), Some(0));
    let port = url.rsplit(':').next().and_then(|p| p.split('/').next()).unwrap().to_owned();
    drop(idp);
    eventually("the provider is down", || async {
        tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await.is_err()
    })
    .await;

    let s = Server::start_in(data.path(), &["--jwks-url", &url]).await;
    assert_eq!(status_with(&s, &token).await, 200, "the cached key verifies: {}", s.log_tail());
    assert!(s.log_text().contains("using the cached set"), "warned: {}", s.log_tail());
    drop(s);

    // Without a cached set the same start is refused, naming the URL.
    let empty = tempfile::tempdir().unwrap();
    let key_file = master_key(empty.path());
    let out = refused(
        &[
            "--data",
            empty.path().to_str().unwrap(),
            "--key-file",
            &key_file,
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--jwks-url",
            &url,
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refused: {err}");
    assert!(err.contains(&url) && err.contains("no cached set"), "names the URL and the cache: {err}");
}

/// A throwaway CA and a `localhost` certificate it signed: (CA PEM, server config).
fn test_ca() -> (String, rustls::ServerConfig) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "forlop test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let leaf_key = rcgen::KeyPair::generate().expect("server key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("server params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("server certificate");
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], private)
        .expect("server TLS config");
    (ca.pem(), config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_private_ca_then_the_key_set_is_fetched_over_tls_and_without_the_ca_start_is_refused() {
    let key = EcTestKey::generate("tls-1");
    let (ca_pem, tls) = test_ca();
    let idp = Idp::start_tls(Answer::Jwks(jwks(&[key.jwk()])), tls).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let url = idp.jwks_url();
    assert!(url.starts_with("https://localhost:"), "{url}");

    let s = Server::start_with(&["--jwks-url", &url, "--idp-ca-file", ca_file.to_str().unwrap()]).await;
    assert_eq!(
        status_with(&s, &key.sign(&claims(ISSUER, AUDIENCE, "hsa-1", "auditor"))).await,
        200,
        "{}",
        s.log_tail()
    );
    drop(s);

    let data = tempfile::tempdir().unwrap();
    let key_file = master_key(data.path());
    let out = refused(
        &[
            "--data",
            data.path().to_str().unwrap(),
            "--key-file",
            &key_file,
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--jwks-url",
            &url,
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refused: {err}");
    assert!(err.contains(&url) && err.contains("certificate") && err.contains("--idp-ca-file"), "says why: {err}");
}

/// What is refused: (what, flags, environment, what the refusal says).
type RefusalCase<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a [&'a str]);

#[test]
fn given_plain_http_beyond_loopback_or_two_key_sources_then_start_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key_file = master_key(dir.path());
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks(&[EcTestKey::generate("f").jwk()])).unwrap();
    let config = dir.path().join("forlop.toml");
    std::fs::write(&config, "jwks-url = \"http://example.org/jwks\"\n").unwrap();
    let base = ["--data", data.to_str().unwrap(), "--key-file", &key_file, "--issuer", ISSUER, "--audience", AUDIENCE];
    let cases: Vec<RefusalCase> = vec![
        (
            "flag",
            vec!["--jwks-url", "http://example.org/jwks"],
            vec![],
            &["http://example.org/jwks", "loopback", "https://"],
        ),
        (
            "environment",
            vec![],
            vec![("FORLOP_JWKS_URL", "http://example.org/jwks")],
            &["http://example.org/jwks", "loopback"],
        ),
        ("settings file", vec!["--config", config.to_str().unwrap()], vec![], &["http://example.org/jwks", "loopback"]),
        ("issuer", vec!["--oidc-issuer", "http://192.0.2.1"], vec![], &["--oidc-issuer", "loopback"]),
        (
            "file and URL",
            vec!["--jwks", jwks_file.to_str().unwrap(), "--jwks-url", "https://idp.example/jwks"],
            vec![],
            &["--jwks", "exclude each other"],
        ),
        (
            "issuer and URL",
            vec!["--oidc-issuer", "https://idp.example", "--jwks-url", "https://idp.example/jwks"],
            vec![],
            &["give one"],
        ),
        (
            "CA alone",
            vec!["--idp-ca-file", "ca.pem", "--hs256-secret-file", "s"],
            vec![],
            &["--idp-ca-file", "--oidc-issuer"],
        ),
    ];
    for (what, args, env, says) in cases {
        let all: Vec<&str> = base.iter().copied().chain(args).collect();
        let out = refused(&all, &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(says.iter().all(|s| err.contains(s)), "{what}: the refusal says {says:?}: {err}");
        assert!(!data.join("idp").exists(), "{what}: nothing was fetched or kept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_failed_refresh_then_the_set_in_use_is_kept_and_the_failure_is_counted() {
    let key = RsaTestKey::generate("steady-1");
    let token = key.sign(&claims(ISSUER, AUDIENCE, "hsa-1", "auditor"));
    let stranger = EcTestKey::generate("not-published").sign(&claims(ISSUER, AUDIENCE, "x", "auditor"));
    for (what, failure) in [
        ("HTTP 500", Answer::Status(500)),
        ("not JSON", Answer::Body("<html>maintenance</html>")),
        ("an empty set", Answer::Body("{\"keys\":[]}")),
    ] {
        let idp = Idp::start(Answer::Jwks(jwks(&[key.jwk()]))).await;
        let s = Server::start_with(&["--jwks-url", &idp.jwks_url()]).await;
        assert_eq!(status_with(&s, &token).await, 200, "{what}: before");
        assert_eq!(metric(&s.url, "forlop_jwks_refresh_errors_total").await, 0.0, "{what}");
        idp.answer(failure);
        // An unknown kid makes forlop fetch again, and the fetch fails.
        assert_eq!(status_with(&s, &stranger).await, 401, "{what}");
        eventually(what, || async { idp.jwks_requests() == 2 }).await;
        eventually(what, || async { metric(&s.url, "forlop_jwks_refresh_errors_total").await == 1.0 }).await;
        assert_eq!(status_with(&s, &token).await, 200, "{what}: the old set is kept: {}", s.log_tail());
        assert_eq!(metric(&s.url, "forlop_jwks_keys").await, 1.0, "{what}");
        // The server's stderr reaches the harness through a pipe and a reader thread.
        eventually(what, || async { s.log_text().contains("the set in use is kept") }).await;
    }
}
