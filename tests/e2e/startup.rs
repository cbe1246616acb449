//! Starting `forlop serve`: refusing to start without keys, `--auth off`, layered settings (file,
//! environment, flags), secrets kept out of help and logs, and `--demo`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// How long a refusing `serve` may take to exit.
const REFUSAL: Duration = Duration::from_secs(15);
/// How long a server may take to start (the demo loads ~14,000 events first).
const STARTUP: Duration = Duration::from_secs(60);

const AUTH_ENV: [&str; 20] = [
    "FORLOP_CONFIG",
    "FORLOP_AUTH",
    "FORLOP_JWKS",
    "FORLOP_OIDC_ISSUER",
    "FORLOP_JWKS_URL",
    "FORLOP_IDP_CA_FILE",
    "FORLOP_HS256_SECRET_FILE",
    "FORLOP_ISSUER",
    "FORLOP_AUDIENCE",
    "FORLOP_KEY_FILE",
    "FORLOP_LEEWAY_SECONDS",
    "FORLOP_ROLE_CLAIM",
    "FORLOP_SERVICES_CLAIM",
    "FORLOP_PID_CLAIM",
    "FORLOP_SUPPRESSION_THRESHOLD",
    "FORLOP_SLED_CACHE_MB",
    "FORLOP_STRICT_PERMISSIONS",
    "FORLOP_HEADER_READ_TIMEOUT_SECONDS",
    "FORLOP_MAX_CONNECTIONS",
    "FORLOP_METRICS_LISTEN",
];

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// `forlop` with no serve setting inherited from the shell.
fn clean() -> Command {
    let mut c = forlop();
    for v in AUTH_ENV {
        c.env_remove(v);
    }
    c
}

/// `forlop serve --data DIR --listen 127.0.0.1:0` with no settings inherited from the shell.
fn serve(dir: &Path) -> Command {
    let mut c = clean();
    c.args(["serve", "--data", path(dir), "--listen", "127.0.0.1:0"]);
    c
}

/// Runs `cmd` to completion, failing the test if it takes longer than `limit`.
fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn forlop");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for forlop"),
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            panic!("forlop did not exit within {limit:?}");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A development secret and master key in `dir`; returns (secret file, secret, key file, key).
fn keys(dir: &Path) -> (PathBuf, String, PathBuf, String) {
    use base64::Engine as _;
    std::fs::create_dir_all(dir).expect("key dir");
    let secret: String = (0..48).map(|_| char::from(b'a' + rand::random::<u8>() % 26)).collect();
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let (secret_file, key_file) = (dir.join("hs256.secret"), dir.join("master.key"));
    std::fs::write(&secret_file, &secret).expect("write secret");
    std::fs::write(&key_file, &key).expect("write key");
    (secret_file, secret, key_file, key)
}

fn token(secret: &str, issuer: &str, audience: &str, role: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({ "iss": issuer, "aud": audience, "sub": format!("test-{role}"), "role": role, "iat": now, "exp": now + 600 });
    forlop_auth::mint_hs256(secret.as_bytes(), &claims).expect("sign a test token")
}

async fn post(url: &str, token: Option<&str>, query: &str, variables: Value) -> (reqwest::StatusCode, Value) {
    let client = reqwest::Client::builder().timeout(TIMEOUT).build().expect("http client");
    let mut req = client.post(format!("{url}/graphql")).json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("POST /graphql");
    let status = r.status();
    (status, r.json().await.expect("GraphQL response is JSON"))
}

/// A `forlop serve` started by hand, its stderr read line by line as it comes.
struct Spawned {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Spawned {
    fn start(mut cmd: Command) -> Spawned {
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn forlop serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
                let _ = tx.send(line);
            }
        });
        Spawned { child: Some(child), lines, log, reader: Some(reader) }
    }

    /// The next stderr line for which `want` holds, within `limit` of now.
    fn line(&self, limit: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if want(&l) => return l,
                Ok(_) => {}
                Err(e) => panic!("forlop serve: no expected line ({e:?}); its stderr:\n{}", self.log.lock().unwrap()),
            }
        }
    }

    /// Waits for the "GraphQL at http://ADDR/graphql" line and returns `http://ADDR`.
    fn url(&self) -> String {
        let l = self.line(STARTUP, |l| l.contains("GraphQL at http://"));
        let from = l.find("http://").expect("http://");
        let end = l[from..].find("/graphql").expect("/graphql") + from;
        l[from..end].to_owned()
    }

    /// Stops the server with SIGTERM and returns its whole stderr.
    fn stop(mut self) -> String {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let (tx, rx) = mpsc::channel();
        let pid = child.id();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        if rx.recv_timeout(TIMEOUT).is_err() {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            panic!("forlop serve did not exit within {TIMEOUT:?} of SIGTERM");
        }
        self.reader.take().expect("reader").join().expect("stderr reader");
        let log = self.log.lock().unwrap().clone();
        log
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn given_missing_keys_or_issuer_when_serving_then_it_exits_at_once_with_one_line_naming_what_is_missing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (secret, _, key, _) = keys(&tmp.path().join("keys"));
    let cases: [(&str, Vec<&str>, &[&str]); 3] = [
        // Everything missing is named in one message, not one per attempt.
        ("no keys at all", vec![], &["--key-file", "verification key", "--issuer", "--audience"]),
        (
            "a secret but no --issuer",
            vec!["--hs256-secret-file", path(&secret), "--key-file", path(&key), "--audience", "forlop"],
            &["--issuer"],
        ),
        (
            "no --key-file",
            vec!["--hs256-secret-file", path(&secret), "--issuer", "forlop-test", "--audience", "forlop"],
            &["--key-file"],
        ),
    ];
    for (what, args, names) in cases {
        let mut cmd = serve(&tmp.path().join("data"));
        cmd.args(&args);
        let out = run_within(cmd, REFUSAL);
        let err = text(&out.stderr);
        assert!(matches!(out.status.code(), Some(c) if c != 0), "{what}: exit {:?}, stderr: {err}", out.status);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{what}: one line on stderr, got: {err}");
        assert!(lines[0].contains("missing") && names.iter().all(|n| lines[0].contains(n)), "{what}: {err}");
    }
}

#[test]
fn given_auth_off_when_listening_beyond_loopback_then_it_refuses_naming_loopback() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, _, key, _) = keys(&tmp.path().join("keys"));
    let listen = "0.0.0.0:0";
    // With a master key given, and with none (the usual first try: `--auth off` on loopback needs
    // none, so the refusal must be about the address).
    for (what, extra) in [("with --key-file", vec!["--key-file", path(&key)]), ("without --key-file", vec![])] {
        let mut cmd = clean();
        cmd.args(["serve", "--data", path(&tmp.path().join("data")), "--listen", listen, "--auth", "off"]);
        cmd.args(&extra);
        let out = run_within(cmd, REFUSAL);
        let err = text(&out.stderr);
        assert!(matches!(out.status.code(), Some(c) if c != 0), "{what}: exit {:?}, stderr: {err}", out.status);
        assert!(err.contains("loopback"), "{what}: the refusal does not name loopback: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_logs_page_cache_is_sized_by_a_flag_and_too_small_a_size_is_refused_in_one_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = serve(&tmp.path().join("data"));
    cmd.args(["--auth", "off", "--sled-cache-mb", "8"]);
    let out = run_within(cmd, REFUSAL);
    let err = text(&out.stderr);
    assert!(matches!(out.status.code(), Some(c) if c != 0), "exit {:?}, stderr: {err}", out.status);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {err}");
    assert!(lines[0].contains("--sled-cache-mb") && lines[0].contains("16"), "{err}");

    // A size that is allowed serves, and records.
    let s = Server::start_with(&["--auth", "off", "--sled-cache-mb", "32"]).await;
    let (status, v) = s
        .gql_as(
            None,
            "mutation($in: RegisterServiceInput!) { registerService(input: $in) { position } }",
            json!({ "in": { "serviceId": id(), "name": "RPH", "careLevel": "MUNICIPAL" } }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(ok_data(&v)["registerService"]["position"].is_u64(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_auth_off_on_loopback_when_calling_without_a_token_then_the_caller_is_the_anonymous_admin() {
    let s = Server::start_with(&["--auth", "off"]).await;
    let service = id();
    let (status, v) = s
        .gql_as(
            None,
            "mutation($in: RegisterServiceInput!) { registerService(input: $in) { position } }",
            json!({ "in": { "serviceId": service, "name": "RPH", "careLevel": "MUNICIPAL" } }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    ok_data(&v);
    let (status, v) = s.gql_as(None, "{ events(first: 10) { edges { node { stream actor } } } }", json!({})).await;
    assert_eq!(status, 200, "{v}");
    let edges = ok_data(&v)["events"]["edges"].as_array().expect("edges").clone();
    let node = &edges
        .iter()
        .find(|e| e["node"]["stream"].as_str().is_some_and(|s| s.contains(&service.to_string())))
        .unwrap_or_else(|| panic!("the registration is not in the log: {v}"))["node"];
    assert_eq!(node["actor"], "admin:anonymous");
}

fn config_file(dir: &Path, secret: &Path, key: &Path) -> PathBuf {
    let p = dir.join("forlop.toml");
    let toml = format!(
        "issuer = \"cfg-issuer\"\naudience = \"cfg-aud\"\nhs256-secret-file = {:?}\nkey-file = {:?}\n",
        path(secret),
        path(key)
    );
    std::fs::write(&p, toml).expect("write config");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_config_file_when_serving_then_it_is_used_and_flags_and_environment_beat_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (secret_file, secret, key, _) = keys(&tmp.path().join("keys"));
    let cfg = config_file(tmp.path(), &secret_file, &key);
    let data = tmp.path().join("data");
    let q = "{ log { committed } }";
    let status = |url: String, issuer: &'static str| {
        let t = token(&secret, issuer, "cfg-aud", "admin");
        async move {
            let (status, v) = post(&url, Some(&t), q, json!({})).await;
            (status.as_u16(), v)
        }
    };

    // The file alone. (`--auth jwt` keeps the harness from passing its own key flags.)
    let s = Server::start_in(&data, &["--auth", "jwt", "--config", path(&cfg)]).await;
    let (code, v) = status(s.url.clone(), "cfg-issuer").await;
    assert_eq!(code, 200, "a token for the file's issuer: {v}");
    ok_data(&v);
    assert_eq!(status(s.url.clone(), "other").await.0, 401, "a token for another issuer");
    assert_eq!(s.stop().code(), Some(0));

    // A flag beats the file.
    let s = Server::start_in(&data, &["--auth", "jwt", "--config", path(&cfg), "--issuer", "other"]).await;
    let (code, v) = status(s.url.clone(), "cfg-issuer").await;
    assert_eq!(code, 401, "--issuer other: the file's issuer is no longer accepted: {v}");
    assert_eq!(status(s.url.clone(), "other").await.0, 200, "--issuer other: its tokens are accepted");
    assert_eq!(s.stop().code(), Some(0));

    // The environment beats the file.
    let mut cmd = serve(&data);
    cmd.args(["--config", path(&cfg)]).env("FORLOP_ISSUER", "env-issuer");
    let server = Spawned::start(cmd);
    let url = server.url();
    let (code, v) = status(url.clone(), "cfg-issuer").await;
    assert_eq!(code, 401, "FORLOP_ISSUER=env-issuer: the file's issuer is no longer accepted: {v}");
    let (code, v) = status(url.clone(), "env-issuer").await;
    assert_eq!(code, 200, "FORLOP_ISSUER=env-issuer: its tokens are accepted: {v}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_secrets_in_files_when_printing_help_or_logging_at_debug_then_no_secret_is_shown() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (secret_file, secret, key_file, key) = keys(&tmp.path().join("keys"));
    let with_env = |mut c: Command| {
        c.env("FORLOP_HS256_SECRET_FILE", &secret_file)
            .env("FORLOP_KEY_FILE", &key_file)
            .env("FORLOP_ISSUER", ISSUER)
            .env("FORLOP_AUDIENCE", AUDIENCE);
        c
    };

    let mut help = clean();
    help.args(["serve", "--help"]);
    let out = run_within(with_env(help), REFUSAL);
    let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "serve --help: {shown}");
    assert!(shown.contains("--hs256-secret-file") && shown.contains("--key-file"), "{shown}");
    assert!(!shown.contains(&secret), "serve --help prints the HS256 secret");
    assert!(!shown.contains(key.trim()), "serve --help prints the master key");

    let mut cmd = with_env(serve(&tmp.path().join("data")));
    cmd.env("FORLOP_LOG", "debug");
    let server = Spawned::start(cmd);
    let url = server.url();
    let admin = token(&secret, ISSUER, AUDIENCE, "admin");
    let national_id = "31929980150";
    let (status, v) = post(
        &url,
        Some(&admin),
        "mutation($in: RegisterPatientInput!) { registerPatient(input: $in) { position } }",
        json!({ "in": { "patientId": id(), "birthYear": 1999, "gender": "MALE", "nationalId": national_id } }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    ok_data(&v);
    let (status, _) = post(&url, Some("not-a-jwt"), "{ log { committed } }", json!({})).await;
    assert_eq!(status, 401);
    let (status, _) = post(&url, None, "{ log { committed } }", json!({})).await;
    assert_eq!(status, 401);
    let log = server.stop();
    assert!(log.contains("DEBUG"), "the server logged at debug: {log}");
    assert!(!log.contains(&secret), "the log holds the HS256 secret");
    assert!(!log.contains(key.trim()), "the log holds the master key");
    assert!(!log.contains(national_id), "the log holds a national id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_empty_data_dir_when_serving_demo_then_private_dev_keys_and_one_working_token_per_role_appear() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = serve(tmp.path());
    cmd.arg("--demo");
    let server = Spawned::start(cmd);
    let url = server.url();
    server.line(TIMEOUT, |l| l.contains("development tokens"));
    let mut tokens = Vec::new();
    for _ in 0..6 {
        let l = server.line(TIMEOUT, |_| true);
        let mut parts = l.split_whitespace();
        let (role, token) = (parts.next().expect("role"), parts.next().unwrap_or_else(|| panic!("no token in {l:?}")));
        tokens.push((role.to_owned(), token.to_owned()));
    }
    let roles: Vec<&str> = tokens.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, ["admin", "auditor", "analyst", "integration", "clinician", "patient"]);

    for name in ["dev-hs256.secret", "master.key"] {
        let meta = std::fs::metadata(tmp.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name} is readable by others");
    }

    let admin = &tokens[0].1;
    let (status, v) = post(&url, Some(admin), "{ log { committed } }", json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert!(ok_data(&v)["log"]["committed"].as_u64().is_some_and(|n| n > 0), "the demo data is loaded: {v}");
    let (_, v) = post(&url, Some(&tokens[2].1), "{ log { committed } }", json!({})).await;
    assert_eq!(error_code(&v), Some("FORBIDDEN"), "the analyst token is an analyst's: {v}");

    let client = reqwest::Client::builder().timeout(TIMEOUT).build().expect("http client");
    let r = client.get(format!("{url}/graphql")).send().await.expect("GET /graphql");
    assert_eq!(r.status(), 200);
    let html = r.text().await.expect("explorer page");
    assert!(html.contains(admin.as_str()), "the explorer does not carry the admin token");
    server.stop();
}

/// Every path under `dir` with its permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(p) = pending.pop() {
        let meta = std::fs::symlink_metadata(&p).expect("metadata");
        out.push((p.clone(), meta.permissions().mode() & 0o777, meta.is_dir()));
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&p).expect("read_dir").flatten().map(|e| e.path()));
        }
    }
    out
}

#[tokio::test]
async fn the_data_directory_is_the_services_alone_and_strict_permissions_refuses_a_loose_one() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut cmd = serve(&data);
    cmd.arg("--demo");
    let server = Spawned::start(cmd);
    let url = server.url();
    let (status, _) = post(&url, None, "{ __typename }", json!({})).await;
    assert_eq!(status, 401, "the server answers");
    let log = server.stop();
    assert!(!log.contains("readable by others"), "a directory forlop made itself is not loose:\n{log}");
    let all = modes(&data);
    assert!(all.len() > 5, "the store, the access log and the keys are there: {all:?}");
    for (path, mode, is_dir) in &all {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:04o}", path.display());
    }

    // An operator's copy that kept the umask's 0644 / 0755.
    let events = all.iter().find(|(p, _, _)| p.ends_with("db")).expect("the event log's sled file");
    std::fs::set_permissions(&events.0, std::fs::Permissions::from_mode(0o644)).expect("chmod file");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");

    let mut cmd = serve(&data);
    cmd.args(["--demo", "--strict-permissions"]);
    let out = run_within(cmd, REFUSAL);
    assert_eq!(out.status.code(), Some(2), "refused: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{} (0755)", data.display())), "names the directory: {err}");
    assert!(err.contains(&format!("{} (0644)", events.0.display())), "names the file: {err}");

    // Without the flag it starts, and the warning names the same paths.
    let mut cmd = serve(&data);
    cmd.arg("--demo");
    let server = Spawned::start(cmd);
    server.url();
    let log = server.stop();
    assert!(log.contains("readable by others") && log.contains("(0644)"), "warned:\n{log}");
}
