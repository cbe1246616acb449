//! Shared harness: the real `forlop` binary as a child process, and small GraphQL helpers.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

/// Path of the binary under test (the debug build when run with `cargo test`).
pub const BIN: &str = env!("CARGO_BIN_EXE_forlop");

/// How long one HTTP call or one WebSocket receive may take before the test fails instead of hanging.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Attempts at GET /healthz before giving up on a starting server (50 ms apart: ~15 s in all).
const HEALTH_TRIES: usize = 300;

/// How long a starting server may take to say where it listens (it replays its log first).
const STARTUP: Duration = Duration::from_secs(60);

/// A `forlop` command with a quiet, predictable environment (no settings inherited from the shell).
pub fn forlop() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("FORLOP_DATA").env_remove("FORLOP_LISTEN").env("FORLOP_LOG", "warn");
    c
}

/// Runs a CLI subcommand to completion and returns its output (stdout and stderr captured).
pub fn run_cli(args: &[&str]) -> Output {
    forlop().args(args).stdin(Stdio::null()).output().expect("run forlop")
}

/// Like `run_cli`, but fails the test unless it exits 0.
pub fn run_ok(args: &[&str]) -> Output {
    let out = run_cli(args);
    assert!(
        out.status.success(),
        "forlop {args:?} exited with {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Where a server said it listens: the API, and `/metrics` when it has a listener of its own.
pub struct Listening {
    pub api: String,
    pub metrics: Option<String>,
}

/// Copies a server's stderr into `log` line by line as it comes, and sends where it listens
/// once it has said so ("GraphQL at http://ADDR/graphql", after "metrics at http://ADDR/metrics"
/// when there is one): servers bind port 0 and print the port they got. The sender is dropped
/// unsent if the server exits (or closes stderr) first.
pub fn follow_stderr(child: &mut Child, log: &Path) -> tokio::sync::oneshot::Receiver<Listening> {
    use std::io::{BufRead, Write};
    fn address(line: &str, after: &str) -> Option<String> {
        let at = line.find(after)? + after.len();
        Some(line[at..].split('/').next().unwrap_or_default().to_owned())
    }
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut file = File::create(log).expect("open log file");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut metrics = None;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(file, "{line}");
            metrics = metrics.or_else(|| address(&line, "metrics at http://"));
            if let Some(api) = address(&line, "GraphQL at http://") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Listening { api, metrics: metrics.clone() });
                }
            }
        }
    });
    rx
}

/// A running `forlop serve`, killed when dropped.
pub struct Server {
    pub url: String,
    /// `/metrics`'s own address (`--metrics-listen`), as the server printed it.
    pub metrics: Option<String>,
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    client: reqwest::Client,
    /// The data directory, when the server owns it.
    _data: Option<tempfile::TempDir>,
    /// The server's stderr, shown if it fails to start.
    log: tempfile::NamedTempFile,
    /// The HS256 secret the server verifies tokens with.
    secret: Vec<u8>,
    /// An admin token, sent by `gql` and friends.
    pub admin: String,
}

/// Issuer and audience every test server checks.
pub const ISSUER: &str = "forlop-test";
pub const AUDIENCE: &str = "forlop";

/// Gives `to` the same test secret and master key as `from`, so two nodes accept one token and
/// open one key table.
pub fn share_keys(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("data dir");
    for name in ["test-hs256.secret", "test-master.key"] {
        std::fs::copy(from.join(name), to.join(name)).expect("copy a key file");
    }
}

/// Writes the test secret and master key into `dir` once, and returns the `serve` flags naming them.
fn key_flags(dir: &Path) -> (Vec<String>, Vec<u8>) {
    std::fs::create_dir_all(dir).expect("data dir");
    let secret_path = dir.join("test-hs256.secret");
    if !secret_path.exists() {
        let secret: String = (0..48).map(|_| char::from(b'a' + rand::random::<u8>() % 26)).collect();
        std::fs::write(&secret_path, secret).expect("write secret");
    }
    let key_path = dir.join("test-master.key");
    if !key_path.exists() {
        use base64::Engine as _;
        let key: [u8; 32] = rand::random();
        std::fs::write(&key_path, base64::engine::general_purpose::STANDARD.encode(key)).expect("write key");
    }
    let secret = std::fs::read(&secret_path).expect("read secret");
    let flags = vec![
        "--hs256-secret-file".to_string(),
        secret_path.display().to_string(),
        "--key-file".into(),
        key_path.display().to_string(),
        "--issuer".into(),
        ISSUER.into(),
        "--audience".into(),
        AUDIENCE.into(),
    ];
    (flags, secret)
}

impl Server {
    /// A server on a fresh, empty store.
    pub async fn start() -> Server {
        let data = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_in(data.path(), &[]).await;
        s._data = Some(data);
        s
    }

    /// A server on a fresh store with extra `serve` flags.
    pub async fn start_with(args: &[&str]) -> Server {
        let data = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_in(data.path(), args).await;
        s._data = Some(data);
        s
    }

    /// A server on the store in `dir` (which outlives it), with extra `serve` flags.
    pub async fn start_in(dir: &Path, args: &[&str]) -> Server {
        Server::start_in_env(dir, args, &[]).await
    }

    /// As `start_in`, with extra environment variables (e.g. the debug build's fault injection).
    pub async fn start_in_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        // The server closes a connection that waits `--header-read-timeout-seconds` (10 s by
        // default) for a request's headers; a pooled one kept longer could be reused just as the
        // server closes it (a broken pipe on a busy machine).
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .expect("http client");
        let log = tempfile::NamedTempFile::new().expect("log file");
        let (keys, secret) = if args.contains(&"--auth") { (Vec::new(), Vec::new()) } else { key_flags(dir) };
        let mut child = forlop()
            .arg("serve")
            .arg("--data")
            .arg(dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(&keys)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn forlop serve");
        let address = follow_stderr(&mut child, log.path());
        let listening = match tokio::time::timeout(STARTUP, address).await {
            Ok(Ok(listening)) => listening,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!("forlop serve did not say where it listens; its stderr:\n{log}");
            }
        };
        let port = listening.api.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the address");
        let mut server = Server {
            url: format!("http://{}", listening.api),
            metrics: listening.metrics,
            port,
            dir: dir.to_owned(),
            child: Some(child),
            client,
            _data: None,
            log,
            admin: String::new(),
            secret: secret.clone(),
        };
        if !secret.is_empty() {
            server.admin = server.token("admin", &[], None);
        }
        if !server.wait_ready().await {
            let log = server.log_text();
            server.kill();
            panic!("forlop serve did not become ready; its stderr:\n{log}");
        }
        server
    }

    /// Polls GET /healthz a bounded number of times; false if the process exits or never answers.
    async fn wait_ready(&mut self) -> bool {
        let url = format!("{}/healthz", self.url);
        for _ in 0..HEALTH_TRIES {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().expect("try_wait").is_some() {
                    return false;
                }
            }
            if let Ok(r) = self.client.get(&url).timeout(Duration::from_secs(2)).send().await {
                if r.status().is_success() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn crash(mut self) {
        self.kill();
    }

    /// Stops the server gracefully and serves the same store again, with `args`.
    pub async fn restart(mut self, args: &[&str]) -> Server {
        let data = self._data.take();
        let dir = self.dir.clone();
        let status = self.stop();
        assert_eq!(status.code(), Some(0), "forlop serve exits 0 on SIGTERM");
        let mut s = Server::start_in(&dir, args).await;
        s._data = data;
        s
    }

    /// Kills the server at once (SIGKILL: a process crash; the OS keeps its page cache, so this
    /// does not simulate power loss) and serves the same
    /// store again.
    pub async fn crash_and_restart(mut self) -> Server {
        let data = self._data.take();
        let dir = self.dir.clone();
        self.kill();
        let mut s = Server::start_in(&dir, &[]).await;
        s._data = data;
        s
    }

    /// A token signed with the server's secret: `role` (and for clinicians their `services`, for
    /// patients their national id `pid`), valid for an hour.
    pub fn token(&self, role: &str, services: &[Uuid], pid: Option<&str>) -> String {
        self.token_with(json!({ "sub": format!("test-{role}"), "name": format!("Test {role}"), "role": role, "services": services, "pid": pid }))
    }

    /// A token with `claims` over the standard ones (iss, aud, exp, iat); null claims are dropped.
    pub fn token_with(&self, claims: Value) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut all = json!({ "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600 });
        for (k, v) in claims.as_object().expect("claims object") {
            if v.is_null() {
                all.as_object_mut().unwrap().remove(k);
            } else {
                all[k] = v.clone();
            }
        }
        forlop_auth::mint_hs256(&self.secret, &all).expect("sign a test token")
    }

    /// POSTs one GraphQL request as the holder of `token` (None: no Authorization header) and
    /// returns the HTTP status and the body.
    pub async fn gql_as(&self, token: Option<&str>, query: &str, variables: Value) -> (reqwest::StatusCode, Value) {
        let body = json!({ "query": query, "variables": variables });
        let mut req = self.client.post(format!("{}/graphql", self.url)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("POST /graphql: {e:?}\n{}", self.log_tail()));
        let status = r.status();
        (status, r.json().await.expect("GraphQL response is JSON"))
    }

    /// Asks the server to shut down gracefully (SIGTERM) and waits for it to exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server is running");
        let sent = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().is_ok_and(|s| s.success());
        if !sent {
            let _ = child.kill();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            (child, status)
        });
        if rx.recv_timeout(TIMEOUT).is_err() {
            panic!("forlop serve did not exit within {TIMEOUT:?} of SIGTERM");
        }
        let (_child, status) = waiter.join().expect("waiter thread");
        status.expect("wait for forlop serve")
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/graphql/ws", self.port)
    }

    /// POSTs one GraphQL request and returns the response body, whatever the HTTP status.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.gql_as(Some(&self.admin), query, variables).await.1
    }

    /// POSTs a raw body to /graphql and returns the status and the JSON answer.
    pub async fn post_raw(&self, body: &str, content_type: &str) -> (reqwest::StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}/graphql", self.url))
            .bearer_auth(&self.admin)
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .expect("POST /graphql");
        let status = r.status();
        let text = r.text().await.expect("response body");
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("response is not JSON ({e}): {text}"));
        (status, v)
    }

    /// Runs a query that must succeed and returns its `data`.
    pub async fn query(&self, query: &str, variables: Value) -> Value {
        let r = self.gql(query, variables).await;
        ok_data(&r).clone()
    }

    /// Sends the recording mutation `op` (e.g. "recordSession") with `input` and returns the whole response.
    pub async fn try_record(&self, op: &str, input: Value) -> Value {
        let mut chars = op.chars();
        let first = chars.next().expect("operation name").to_ascii_uppercase();
        let input_type = format!("{first}{}Input", chars.as_str());
        let q = format!(
            "mutation($in: {input_type}!) {{ {op}(input: $in) {{ eventId streamVersion position deduplicated }} }}"
        );
        self.gql(&q, json!({ "in": input })).await
    }

    /// Records with `op`, which must succeed, and returns its `Recorded`.
    pub async fn record(&self, op: &str, input: Value) -> Recorded {
        let r = self.try_record(op, input.clone()).await;
        let data = ok_data(&r);
        Recorded::from_json(&data[op]).unwrap_or_else(|| panic!("{op}({input}): bad Recorded in {r}"))
    }

    /// `{ log { committed } }`: events in the log.
    pub async fn committed(&self) -> u64 {
        let d = self.query("{ log { committed projected } }", json!({})).await;
        d["log"]["committed"].as_u64().expect("committed is a number")
    }

    /// The last lines the server wrote to stderr, for a failing test's message.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        format!("--- last server log lines ---\n{}", lines[lines.len().saturating_sub(40)..].join("\n"))
    }

    /// What the server has written to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// GET `path` and return the status and JSON body, whatever the status.
    pub async fn get_json(&self, path: &str) -> (reqwest::StatusCode, Value) {
        let r = self.client.get(format!("{}{path}", self.url)).send().await.expect("GET");
        let status = r.status();
        (status, r.json().await.expect("JSON body"))
    }

    /// GET /healthz as JSON.
    pub async fn health(&self) -> Value {
        let r = self.client.get(format!("{}/healthz", self.url)).send().await.expect("GET /healthz");
        assert!(r.status().is_success(), "healthz answered {}", r.status());
        r.json().await.expect("healthz is JSON")
    }

    /// The patient, or Null.
    pub async fn patient(&self, id: Uuid, fields: &str) -> Value {
        let q = format!("query($id: UUID!) {{ patient(id: $id) {{ {fields} }} }}");
        self.query(&q, json!({ "id": id })).await["patient"].clone()
    }

    /// Records a bad input and checks the three promises: the error code, nothing appended, and
    /// the server still answering. Returns the first error for further checks.
    pub async fn rejects(&self, op: &str, input: Value, code: &str) -> Value {
        let before = self.committed().await;
        let r = self.try_record(op, input.clone()).await;
        assert_eq!(error_code(&r), Some(code), "{op}({input}): expected {code}, got {r}");
        assert!(r["data"].is_null(), "{op}({input}): a failed mutation returns no data: {r}");
        assert_eq!(self.committed().await, before, "{op}({input}) was refused but appended to the log");
        assert_eq!(self.health().await["status"], "ok");
        r["errors"][0].clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where a recording landed, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub event_id: Uuid,
    pub stream_version: u64,
    pub position: u64,
    pub deduplicated: bool,
}

impl Recorded {
    pub fn from_json(v: &Value) -> Option<Recorded> {
        Some(Recorded {
            event_id: v["eventId"].as_str()?.parse().ok()?,
            stream_version: v["streamVersion"].as_u64()?,
            position: v["position"].as_u64()?,
            deduplicated: v["deduplicated"].as_bool()?,
        })
    }
}

/// `errors[0].extensions.code`, if any.
pub fn error_code(response: &Value) -> Option<&str> {
    response["errors"][0]["extensions"]["code"].as_str()
}

/// The response's `data`, failing the test if it carries errors.
pub fn ok_data(response: &Value) -> &Value {
    assert!(response.get("errors").is_none_or(|e| e.is_null()), "unexpected GraphQL errors: {response}");
    assert!(response["data"].is_object(), "no data in {response}");
    &response["data"]
}

/// A fresh random id.
pub fn id() -> Uuid {
    Uuid::new_v4()
}

/// Normalises an RFC 3339 UTC time so "…Z" and "…+00:00" compare equal.
pub fn utc(t: &str) -> String {
    t.strip_suffix("+00:00").map_or_else(|| t.to_owned(), |s| format!("{s}Z"))
}

/// Asserts two floats agree to 1e-9.
#[track_caller]
pub fn assert_close(got: &Value, want: f64, what: &str) {
    let g = got.as_f64().unwrap_or_else(|| panic!("{what} = {got}, expected a number near {want}"));
    assert!((g - want).abs() < 1e-9, "{what} = {g}, expected {want}");
}

/// Reference data most scenarios need: three services, three therapists.
#[derive(Debug, Clone, Copy)]
pub struct Reference {
    /// RPH, MUNICIPAL.
    pub rph: Uuid,
    /// DPS outpatient clinic, SPECIALIST_OUTPATIENT.
    pub pol: Uuid,
    /// DPS ward, SPECIALIST_INPATIENT.
    pub ward: Uuid,
    pub a: Uuid,
    pub b: Uuid,
    pub w: Uuid,
}

impl Reference {
    pub async fn register(s: &Server) -> Reference {
        let r = Reference { rph: id(), pol: id(), ward: id(), a: id(), b: id(), w: id() };
        s.record("registerService", json!({ "serviceId": r.rph, "name": "RPH", "careLevel": "MUNICIPAL" })).await;
        s.record(
            "registerService",
            json!({ "serviceId": r.pol, "name": "DPS poliklinikk", "careLevel": "SPECIALIST_OUTPATIENT" }),
        )
        .await;
        s.record(
            "registerService",
            json!({ "serviceId": r.ward, "name": "DPS døgn", "careLevel": "SPECIALIST_INPATIENT" }),
        )
        .await;
        s.record("registerTherapist", json!({ "therapistId": r.a, "name": "A" })).await;
        s.record("registerTherapist", json!({ "therapistId": r.b, "name": "B", "hprNumber": "1234567" })).await;
        s.record("registerTherapist", json!({ "therapistId": r.w, "name": "W" })).await;
        r
    }
}

/// Registers a patient and starts an open RPH episode on 2016-01-11 with therapist A assigned.
/// Returns (patient, episode).
/// Records a referral of patient `p` to `service`, received and accepted at the given times;
/// returns its id.
pub async fn accepted_referral(
    s: &Server,
    p: Uuid,
    service: Uuid,
    source: &str,
    received_at: &str,
    decided_at: &str,
) -> Uuid {
    let referral = id();
    s.record(
        "receiveReferral",
        json!({ "patientId": p, "referralId": referral, "serviceId": service, "source": source, "receivedAt": received_at }),
    )
    .await;
    s.record(
        "decideReferral",
        json!({ "patientId": p, "referralId": referral, "decision": "ACCEPTED", "decidedAt": decided_at }),
    )
    .await;
    referral
}

pub async fn patient_in_episode(s: &Server, r: &Reference) -> (Uuid, Uuid) {
    let (p, e) = (id(), id());
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1990, "gender": "MALE" })).await;
    s.record(
        "startEpisode",
        json!({ "patientId": p, "episodeId": e, "serviceId": r.rph, "startedAt": "2016-01-11T09:00:00Z" }),
    )
    .await;
    s.record(
        "assignTherapist",
        json!({ "patientId": p, "episodeId": e, "therapistId": r.a, "assignedAt": "2016-01-11T09:00:00Z" }),
    )
    .await;
    (p, e)
}

/// The input of an attended session with therapist A in episode `e`.
pub fn session(p: Uuid, e: Uuid, therapist: Uuid, at: &str) -> Value {
    json!({
        "patientId": p, "episodeId": e, "sessionId": id(), "therapistId": therapist,
        "attendance": "ATTENDED", "at": at,
    })
}
