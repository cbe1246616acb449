//! `forlop bench`: throughput and latency of the store, replay and queries, each compared with raw
//! sled measured in the same run on the same disk. Prints a table and writes JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use uuid::Uuid;

use forlop_store::{EventStore, ExpectedVersion, SledOptions, SledStore};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Write the figures as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Patients seeded for the replay, query and report measurements (186,000 patients give
    /// about 200,000 episodes).
    #[arg(long, default_value_t = 186_000)]
    patients: usize,
    /// Pathway reports and care-alert lists requested (each, one at a time).
    #[arg(long, default_value_t = 200)]
    reports: usize,
    /// Events appended in the batch measurements (raw sled and store).
    #[arg(long, default_value_t = 200_000)]
    batch_events: usize,
    /// Events in the one-at-a-time and concurrent-writer measurements.
    #[arg(long, default_value_t = 20_000)]
    single_events: usize,
    /// Continuity queries sent over HTTP.
    #[arg(long, default_value_t = 40_000)]
    queries: usize,
    /// Where to put the temporary stores (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// FHIR resources in the bulk file `import-fhir` reads for `fhir_import_rps`.
    #[arg(long, default_value_t = 1_000_000)]
    fhir_resources: usize,
    /// Times the FHIR import is run; `fhir_import_rps` is the median.
    #[arg(long, default_value_t = 3)]
    fhir_runs: usize,
    /// Measure only one part: `fhir` (the FHIR import), `queries` (seed, then the patient
    /// query) or `server` (seed, then everything measured over HTTP and the restart).
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Keep the seeded data directory after the run (its path is printed), to inspect or serve it.
    #[arg(long)]
    keep: bool,
    /// Measure the event store on this PostgreSQL server instead (`postgres://…`; the role needs
    /// CREATEDB: the run writes into a database of its own and drops it), against PostgreSQL's
    /// own batch and single-insert rates.
    #[arg(long, env = "FORLOP_STORE", hide_env_values = true)]
    store: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Only {
    Fhir,
    Queries,
    Server,
}

pub(crate) const BATCH: usize = 1000;
/// Events replayed for `replay_eps`.
const REPLAY_EVENTS: u64 = 1_000_000;
pub(crate) const WRITERS: usize = 64;
const CLIENTS: usize = 32;

fn tempdir(args: &BenchArgs) -> anyhow::Result<tempfile::TempDir> {
    Ok(match &args.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    })
}

pub(crate) fn eps(n: usize, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64()
}

/// A realistic session event, as the API would store it.
pub(crate) fn session_event(rng: u64) -> forlop_store::NewEvent {
    use forlop_domain::events::SessionRecorded;
    let at = chrono::DateTime::from_timestamp(1_450_000_000 + (rng % 300_000_000) as i64, 0).unwrap_or_default();
    let e = forlop_domain::Event::SessionRecorded(SessionRecorded {
        session_id: Uuid::new_v4(),
        episode_id: Uuid::new_v4(),
        therapist_id: Uuid::new_v4(),
        attendance: forlop_domain::Attendance::Attended,
        at,
    });
    let meta =
        forlop_store::Metadata { actor: "bench".into(), correlation_id: Some(Uuid::new_v4()), causation_id: None };
    forlop_engine::new_event(Uuid::new_v4(), &e, meta)
}

fn raw_sled_batch(args: &BenchArgs) -> anyhow::Result<f64> {
    let dir = tempdir(args)?;
    let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open()?;
    let value = vec![7u8; 300];
    let started = Instant::now();
    let mut key = 0u64;
    for _ in 0..args.batch_events / BATCH {
        let mut batch = sled::Batch::default();
        for _ in 0..BATCH {
            batch.insert(&key.to_be_bytes(), value.clone());
            key += 1;
        }
        db.apply_batch(batch)?;
        db.flush()?;
    }
    Ok(eps(key as usize, started.elapsed()))
}

fn raw_sled_single(args: &BenchArgs) -> anyhow::Result<f64> {
    let dir = tempdir(args)?;
    let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open()?;
    let value = vec![7u8; 300];
    let n = args.single_events / 4; // one fsync each: a quarter is plenty for a stable rate
    let started = Instant::now();
    for key in 0..n as u64 {
        db.insert(key.to_be_bytes(), value.clone())?;
        db.flush()?;
    }
    Ok(eps(n, started.elapsed()))
}

async fn store_batch(args: &BenchArgs) -> anyhow::Result<(f64, usize)> {
    let dir = tempdir(args)?;
    let store = SledStore::open(SledOptions::new(dir.path()))?;
    batched_appends(&store, args.batch_events).await
}

/// Appends of `BATCH` realistic events each, one after another, to fresh streams; events per
/// second and the payload size.
pub(crate) async fn batched_appends(store: &dyn EventStore, events: usize) -> anyhow::Result<(f64, usize)> {
    let batches: Vec<Vec<_>> =
        (0..events / BATCH).map(|b| (0..BATCH).map(|i| session_event((b * BATCH + i) as u64)).collect()).collect();
    let size = batches[0][0].payload.len();
    let started = Instant::now();
    for (b, events) in batches.into_iter().enumerate() {
        store.append(&format!("patient-{b}"), ExpectedVersion::NoStream, events).await?;
    }
    Ok((eps(events / BATCH * BATCH, started.elapsed()), size))
}

async fn store_concurrent(args: &BenchArgs) -> anyhow::Result<f64> {
    let dir = tempdir(args)?;
    concurrent_appends(Arc::new(SledStore::open(SledOptions::new(dir.path()))?), args.single_events).await
}

/// `WRITERS` concurrent writers, one event per append to its own fresh stream; events per second.
pub(crate) async fn concurrent_appends(store: Arc<dyn EventStore>, events: usize) -> anyhow::Result<f64> {
    let per_writer = events / WRITERS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let stream = format!("patient-{w}-{i}");
                    store.append(&stream, ExpectedVersion::NoStream, vec![session_event(i as u64)]).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(eps(per_writer * WRITERS, started.elapsed()))
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// An HTTP client that sends `token` as its bearer.
fn client(token: &str, pool: usize) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    // Idle pooled connections are dropped before the server's header-read timeout (10 s)
    // closes them, so none is reused just as the server closes it.
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(pool)
        .pool_idle_timeout(std::time::Duration::from_secs(5))
        .default_headers(headers)
        .build()?)
}

/// Access records per second: 64 concurrent readers, one durable record each per request.
async fn access_log_eps(args: &BenchArgs) -> anyhow::Result<f64> {
    use forlop_store::access_log::{AccessLog, AccessOutcome, AccessRecord, FileAccessLog};
    let dir = tempdir(args)?;
    let log = Arc::new(FileAccessLog::open(dir.path())?);
    let per_writer = args.single_events / WRITERS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let record = AccessRecord {
                        patient_id: Uuid::from_u128((w * per_writer + i) as u128),
                        actor_sub: format!("bench-{w}"),
                        actor_name: None,
                        role: "clinician".into(),
                        hpr_number: Some("9144889".into()),
                        operation: "Continuity".into(),
                        fields: "patient".into(),
                        outcome: AccessOutcome::Allowed,
                        reason: None,
                        correlation_id: Some(Uuid::new_v4()),
                        at: chrono::Utc::now(),
                    };
                    log.append(vec![record]).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(eps(per_writer * WRITERS, started.elapsed()))
}

/// One keep-alive HTTP/1.1 connection for the query load: hyper's connection API, without a
/// pool, proxy rules or redirects. The load generator shares the two cores with the server, and
/// reqwest's machinery took a fifth of all CPU in this phase.
struct LoadConnection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>,
    host: http::HeaderValue,
    authorization: http::HeaderValue,
}

impl LoadConnection {
    async fn open(addr: std::net::SocketAddr, token: &str) -> anyhow::Result<LoadConnection> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(LoadConnection {
            sender,
            host: addr.to_string().parse()?,
            authorization: format!("Bearer {token}").parse()?,
        })
    }

    /// POSTs `body` to /graphql and returns the answer's bytes.
    async fn post(&mut self, body: String) -> anyhow::Result<hyper::body::Bytes> {
        use http_body_util::BodyExt;
        let request = http::Request::post("/graphql")
            .header(http::header::HOST, self.host.clone())
            .header(http::header::AUTHORIZATION, self.authorization.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        anyhow::ensure!(response.status() == 200, "query answered {}", response.status());
        Ok(response.into_body().collect().await?.to_bytes())
    }
}

async fn queries(
    args: &BenchArgs,
    addr: std::net::SocketAddr,
    ids: Arc<Vec<Uuid>>,
    token: &str,
) -> anyhow::Result<(f64, f64, f64, f64)> {
    const QUERY: &str = "query($id: UUID!) { patient(id: $id) { id version continuity { attendedSessions distinctTherapists careLevelTransitions transitionsKeepingTherapist sameTherapistAcrossCareLevels coc upc secon mmci segments { careLevel from to therapistIds sessions } handovers { episodeId fromTherapistId toTherapistId reason patientNotified releasedAt gapDays } } } }";
    let per_client = args.queries / CLIENTS;
    let query_json: Arc<str> = serde_json::to_string(QUERY)?.into();
    let mut connections = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        connections.push(LoadConnection::open(addr, token).await?);
    }
    let (started, cpu_before) = (Instant::now(), cpu_ticks());
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(c, mut connection)| {
            let (ids, query_json) = (ids.clone(), query_json.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let id = ids[(c * 7919 + i * 104_729) % ids.len()];
                    // The body is built as text and the answer checked as bytes, so the client's
                    // own JSON work does not count against the server's latency.
                    let body = format!("{{\"query\":{query_json},\"variables\":{{\"id\":\"{id}\"}}}}");
                    let expected = format!("{{\"data\":{{\"patient\":{{\"id\":\"{id}\"");
                    let t = Instant::now();
                    let r = connection.post(body).await?;
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    anyhow::ensure!(
                        r.starts_with(expected.as_bytes()),
                        "query failed: {}",
                        String::from_utf8_lossy(&r)
                    );
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    let steal = steal_percent(cpu_before, cpu_ticks());
    all.sort_by(|a, b| a.total_cmp(b));
    eprintln!(
        "bench: query latency p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms; CPU stolen by the host {steal:.1} %",
        percentile(&all, 0.5),
        percentile(&all, 0.9),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        all.last().copied().unwrap_or(0.0)
    );
    Ok((percentile(&all, 0.5), percentile(&all, 0.99), eps(all.len(), elapsed), steal))
}

/// The machine's CPU time so far from /proc/stat, in ticks: (all, stolen by the hypervisor).
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).take(8).filter_map(|t| t.parse().ok()).collect();
    (ticks.iter().sum(), ticks.get(7).copied().unwrap_or(0))
}

/// Percent of the CPU time between two readings that a virtual machine's host took for others:
/// latency that no change to forlop can remove, so the figures report it beside the latencies.
fn steal_percent(before: (u64, u64), after: (u64, u64)) -> f64 {
    let all = after.0.saturating_sub(before.0);
    if all == 0 {
        return 0.0;
    }
    100.0 * after.1.saturating_sub(before.1) as f64 / all as f64
}

const REPORT: &str = "query($s: UUID!, $from: DateTime!, $to: DateTime!) { pathwayReport(serviceId: $s, from: $from, to: $to) { episodes patients gender { key count } referralSources { key count } endReasons { key count } ageGroups { key count } phq9 { intakeCount intakeMean dischargeCount dischargeMean pairedCount meanChange missingPairs reliablyImproved recovered } gad7 { intakeCount intakeMean dischargeCount dischargeMean pairedCount meanChange missingPairs reliablyImproved recovered } recovery { eligible atCaseness recovered reliablyImproved reliablyDeteriorated reliablyRecovered recoveryRate } waitingDays { count mean median p90 min max } sessionsPerEpisode { count mean median p90 min max } referrals { received accepted rejected rejectedForCapacity undecided } continuity { patientsWithTransition transitions transitionsKeepingTherapist handovers handoversWithoutNotification meanCoc } } }";
const ALERTS: &str = "query($t: DateTime!) { careAlerts(asOf: $t) { kind patientId episodeId serviceId since days } }";

/// p99 latency (ms) of pathway reports over one service-year (exact, as an admin sees them, and
/// perturbed by the cell key method, as an analyst does) and of city-wide care alerts, one
/// request at a time, as a dashboard would send them.
async fn reports(
    args: &BenchArgs,
    addr: std::net::SocketAddr,
    token: &str,
    analyst: &str,
) -> anyhow::Result<(f64, f64, f64)> {
    let analyst = client(analyst, 1)?;
    let client = client(token, 1)?;
    let url = format!("http://{addr}/graphql");
    let post = |body: serde_json::Value| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let t = Instant::now();
            let r: serde_json::Value = client.post(&url).json(&body).send().await?.json().await?;
            anyhow::ensure!(r["errors"].is_null(), "query failed: {r}");
            anyhow::Ok((t.elapsed().as_secs_f64() * 1000.0, r))
        }
    };
    let (_, services) = post(json!({ "query": "{ services { id careLevel } }" })).await?;
    let services: Vec<String> = services["data"]["services"]
        .as_array()
        .context("services")?
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    let (mut report_ms, mut analyst_ms) = (Vec::new(), Vec::new());
    for i in 0..args.reports {
        let year = 2016 + (i % 9) as i32;
        let vars = json!({
            "s": services[i % services.len()],
            "from": format!("{year}-01-01T00:00:00Z"),
            "to": format!("{}-01-01T00:00:00Z", year + 1),
        });
        let body = json!({ "query": REPORT, "variables": vars });
        report_ms.push(post(body.clone()).await?.0);
        // The same report, perturbed, in alternation, so both meet the same host.
        let t = Instant::now();
        let r: serde_json::Value = analyst.post(&url).json(&body).send().await?.json().await?;
        anyhow::ensure!(r["errors"].is_null(), "analyst report failed: {r}");
        analyst_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut alert_ms = Vec::new();
    for i in 0..args.reports {
        let day = chrono::DateTime::from_timestamp(1_452_000_000 + (i as i64 * 1_523_713) % 300_000_000, 0)
            .context("date")?;
        alert_ms.push(post(json!({ "query": ALERTS, "variables": { "t": day } })).await?.0);
    }
    report_ms.sort_by(f64::total_cmp);
    analyst_ms.sort_by(f64::total_cmp);
    alert_ms.sort_by(f64::total_cmp);
    Ok((percentile(&report_ms, 0.99), percentile(&analyst_ms, 0.99), percentile(&alert_ms, 0.99)))
}

const REGISTER: &str = "mutation($in: RegisterPatientInput!) { registerPatient(input: $in) { position } }";
/// Mutations each writer sends in the mutation measurements.
const MUTATIONS_PER_WRITER: usize = 40;
/// Report clients looping while the writers run, in `mutation_p99_under_reports_ms`.
const REPORT_CLIENTS: usize = 4;

/// p99 latency (ms) of `WRITERS` concurrent writers registering patients over HTTP, while
/// `report_clients` clients loop the all-time pathway report of `service`.
async fn mutations(
    addr: std::net::SocketAddr,
    token: &str,
    service: Uuid,
    report_clients: usize,
) -> anyhow::Result<(f64, usize)> {
    let url = format!("http://{addr}/graphql");
    let writers_client = client(token, WRITERS)?;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reporters: Vec<_> = (0..report_clients)
        .map(|_| {
            let (client, url, done) = (client(token, 1), url.clone(), done.clone());
            tokio::spawn(async move {
                let client = client?;
                let vars = json!({ "s": service, "from": "1900-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z" });
                let mut n = 0usize;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let r: serde_json::Value = client
                        .post(&url)
                        .json(&json!({ "query": REPORT, "variables": vars }))
                        .send()
                        .await?
                        .json()
                        .await?;
                    anyhow::ensure!(r["errors"].is_null(), "report failed: {r}");
                    n += 1;
                }
                anyhow::Ok(n)
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (client, url) = (writers_client.clone(), url.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(MUTATIONS_PER_WRITER);
                for _ in 0..MUTATIONS_PER_WRITER {
                    let input = json!({ "patientId": Uuid::new_v4(), "birthYear": 1980, "gender": "FEMALE" });
                    let t = Instant::now();
                    let r: serde_json::Value = client
                        .post(&url)
                        .json(&json!({ "query": REGISTER, "variables": { "in": input } }))
                        .send()
                        .await?
                        .json()
                        .await?;
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    anyhow::ensure!(r["errors"].is_null(), "mutation failed: {r}");
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await??);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in reporters {
        r.await??;
    }
    all.sort_by(f64::total_cmp);
    // Every latency is of a patient registered: the caller counts them.
    Ok((percentile(&all, 0.99), all.len()))
}

/// Resident memory of process `pid`, from /proc (0 where there is none).
fn resident_bytes(pid: u32) -> u64 {
    let pages = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()))
        .unwrap_or(0);
    pages * 4096
}

/// Seconds from starting `forlop serve` on `data` to its first 200 from /readyz, and its
/// resident memory then.
async fn restart_to_ready(data: &std::path::Path) -> anyhow::Result<(f64, u64)> {
    let key = data.join("bench-master.key");
    std::fs::write(&key, forlop_vault::MasterKey::generate().to_base64())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let started = Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["serve", "--auth", "off", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data")
        .arg(data)
        .arg("--key-file")
        .arg(&key)
        // The engine's start-up timings (checkpoint, owner index) go to the bench's stderr.
        .env("FORLOP_LOG", "warn,forlop_engine=info,forlop_store=info")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let ready = loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status() == 200 {
                break started.elapsed().as_secs_f64();
            }
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("forlop serve exited before it was ready: {status}");
        }
        anyhow::ensure!(started.elapsed() < std::time::Duration::from_secs(120), "not ready within 120 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let resident = resident_bytes(child.id());
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    child.wait()?;
    Ok((ready, resident))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{} x {cpu}", std::thread::available_parallelism().map_or(0, |n| n.get()))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.store {
        let rows = crate::bench_pg::run(url, args.batch_events, args.single_events).await?;
        return report(&args, &rows, &[], &serde_json::Map::new());
    }
    if args.only == Some(Only::Fhir) {
        let dir = tempdir(&args)?;
        let fhir = crate::bench_fhir::fhir_import(dir.path(), args.fhir_resources, args.fhir_runs)?;
        println!("forlop bench on {}", machine());
        println!(
            "fhir_import_rps          {:>12.0}  `forlop import-fhir`, {} resources of NDJSON, {}",
            fhir.median(),
            fhir.lines,
            fhir.runs()
        );
        println!("fhir_import_peak_rss_mb  {:>12.1}  its peak resident memory (the largest)", fhir.peak_mb);
        return Ok(());
    }
    let mut rows: Vec<(&str, f64, String)> = Vec::new();
    let mut ratios = Vec::new();
    let mut fhir_rates: Vec<f64> = Vec::new();
    if args.only.is_none() {
        eprintln!("bench: raw sled, batches of {BATCH} ...");
        let raw_batch = raw_sled_batch(&args)?;
        eprintln!("bench: store, batches of {BATCH} ...");
        let (store_batch, event_bytes) = store_batch(&args).await?;
        eprintln!("bench: raw sled, one insert + flush at a time ...");
        let raw_single = raw_sled_single(&args)?;
        eprintln!("bench: store, {WRITERS} concurrent writers ...");
        let store_concurrent = store_concurrent(&args).await?;
        rows.push((
            "raw_sled_batch_eps",
            raw_batch,
            "raw sled, 300-byte values, 1000 per batch, flush per batch".into(),
        ));
        rows.push((
            "store_batch_eps",
            store_batch,
            format!("store append, {BATCH} events of {event_bytes} B payload, durable"),
        ));
        rows.push(("raw_sled_single_eps", raw_single, "raw sled, insert + flush, one at a time".into()));
        rows.push((
            "store_concurrent_eps",
            store_concurrent,
            format!("store, {WRITERS} writers, 1 event per append, durable"),
        ));
        ratios.push(format!(
            "store_batch/raw_batch = {:.2} (target >= 0.5), store_concurrent/raw_single = {:.2} (target >= 2)",
            store_batch / raw_batch,
            store_concurrent / raw_single
        ));
    }

    eprintln!("bench: seeding {} patients ...", args.patients);
    let dir = tempdir(&args)?;
    let store: Arc<dyn EventStore> = Arc::new(SledStore::open(SledOptions::new(dir.path()))?);
    let dataset = forlop_seed::demo(42, args.patients);
    let ids: Arc<Vec<Uuid>> =
        Arc::new(dataset.patients.iter().filter_map(|p| p[0].command.stream().patient_id()).collect());
    let seed_started = Instant::now();
    let seeded = crate::seeding::load(&store, &dataset).await?;
    let seed_eps = eps(seeded as usize, seed_started.elapsed());
    drop(dataset);

    eprintln!("bench: replaying 1,000,000 events, then all {seeded}, into every projection ...");
    let started = Instant::now();
    let first = forlop_engine::rebuild_until(&store, REPLAY_EVENTS).await?;
    let replay = eps(first.position as usize, started.elapsed());
    drop(first);
    let started = Instant::now();
    let model = forlop_engine::rebuild(&store).await?;
    let replay_full = eps(model.position as usize, started.elapsed());
    anyhow::ensure!(model.patients.len() == args.patients, "replay lost patients");
    let episodes: usize = model.episodes_by_service.values().map(|e| e.len()).sum();
    let (largest, largest_episodes) = model
        .episodes_by_service
        .iter()
        .map(|(s, e)| (*s, e.len()))
        .max_by_key(|(_, n)| *n)
        .context("no episodes seeded")?;
    drop(model);

    eprintln!("bench: {} continuity queries over HTTP, {CLIENTS} clients ...", args.queries);
    // The API as deployed: every request verifies a JWT, every patient read appends a durable
    // access record first.
    let secret: Vec<u8> = (0..48).map(|i| b'a' + (i % 26) as u8).collect();
    let verifier = forlop_auth::Verifier::new(
        forlop_auth::VerifierConfig {
            issuer: "bench".into(),
            audience: "forlop".into(),
            leeway_seconds: 30,
            claims: Default::default(),
        },
        vec![forlop_auth::KeySource::Hs256Secret(secret.clone())],
    )?;
    let now = chrono::Utc::now().timestamp();
    let token = forlop_auth::mint_hs256(
        &secret,
        &json!({ "iss": "bench", "aud": "forlop", "sub": "bench-admin", "role": "admin", "exp": now + 3600 }),
    )?;
    let analyst_token = forlop_auth::mint_hs256(
        &secret,
        &json!({ "iss": "bench", "aud": "forlop", "sub": "bench-analyst", "role": "analyst", "exp": now + 3600 }),
    )?;
    let parts = crate::store_layout::sled_parts(
        dir.path(),
        forlop_vault::MasterKey::generate(),
        forlop_engine::Settings::default(),
    )?;
    // What the continuous backup reads, as `serve --backup-dir` hands it over.
    let backup_sources = forlop_backup::Sources {
        events: store.clone(),
        access: parts.access_log.clone(),
        keys: parts.vault.key_table(),
    };
    let http = forlop_api::HttpSettings {
        auth: forlop_api::Authenticator::Jwt(verifier),
        allowed_origins: Vec::new(),
        explorer_token: None,
        metrics: None,
        fhir: None,
        request_timeout: forlop_api::DEFAULT_REQUEST_TIMEOUT,
        metrics_listen: None,
        header_read_timeout: forlop_api::DEFAULT_HEADER_READ_TIMEOUT,
        max_connections: forlop_api::DEFAULT_MAX_CONNECTIONS,
        degraded: None,
    };
    let app = forlop_api::Application::build(store.clone(), parts, http, "127.0.0.1:0".parse()?).await?;
    // As `forlop serve` does once it has started.
    forlop_alloc::settle_after_start();
    let addr = app.local_addr()?;
    let engine = app.engine().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let (p50, p99, rps, steal) = queries(&args, addr, ids, &token).await.context("query benchmark")?;
    rows.push(("seed_eps", seed_eps, format!("seeding {} patients through the domain rules", args.patients)));
    rows.push(("replay_eps", replay, format!("rebuild all projections from the first {REPLAY_EVENTS} events")));
    rows.push(("replay_full_eps", replay_full, format!("rebuild all projections from all {seeded} events")));
    rows.push((
        "query_p50_ms",
        p50,
        format!("patient continuity over HTTP, {CLIENTS} clients, {} patients", args.patients),
    ));
    rows.push(("query_p99_ms_auth", p99, "the same, each with a JWT and its durable access record".into()));
    rows.push(("query_rps", rps, String::new()));
    rows.push(("query_cpu_steal_pct", steal, "CPU time the VM's host took for others meanwhile".into()));
    if args.only == Some(Only::Queries) {
        drop(engine);
        let _ = stop.send(());
        server.await??;
    } else {
        eprintln!("bench: {} pathway reports and {} care-alert lists ...", args.reports, args.reports);
        let (report_p99, analyst_p99, alerts_p99) =
            reports(&args, addr, &token, &analyst_token).await.context("report benchmark")?;
        eprintln!("bench: {WRITERS} writers registering patients, alone, then under {REPORT_CLIENTS} report loops ...");
        // One unmeasured round first: the first writes after the read phases meet cold sled
        // pages, which would make the writers alone look slower than under reports.
        let (_, warm_up) = mutations(addr, &token, largest, 0).await.context("mutation warm-up")?;
        let (mutation_p99, alone) = mutations(addr, &token, largest, 0).await.context("mutation benchmark")?;
        engine.take_max_stall();
        let (mutation_p99_reports, under_reports) =
            mutations(addr, &token, largest, REPORT_CLIENTS).await.context("mutation benchmark under reports")?;
        eprintln!("bench: continuous backup: its first copy of the log, then {WRITERS} writers with it running ...");
        let backup_dir = tempdir(&args)?;
        let backup = forlop_backup::continuous::ContinuousBackup::start(backup_dir.path().to_owned(), backup_sources)?;
        let first_copy_s = crate::bench_backup::until_caught_up(&backup.status(), &*store).await?;
        // One unmeasured round, as before the writers alone: the first copy read the whole log
        // through sled's page cache, so the next writes would meet cold pages.
        let (_, backup_warm_up) =
            mutations(addr, &token, largest, 0).await.context("mutation warm-up with the backup running")?;
        let (with_backup, backup_lag_p99) =
            crate::bench_backup::lag_during(backup.status(), store.clone(), mutations(addr, &token, largest, 0))
                .await
                .context("mutation benchmark with the backup running")?;
        let (mutation_p99_backup, with_backup) = with_backup;
        tokio::task::spawn_blocking(move || backup.stop()).await?;
        // The restarted server holds the seeded patients and those the writers registered, one
        // event each.
        let registered = warm_up + alone + under_reports + backup_warm_up + with_backup;
        let patients = args.patients + registered;
        let max_stall_ms = engine.take_max_stall().as_secs_f64() * 1000.0;
        drop(engine);
        let _ = stop.send(());
        // The server writes its read-model checkpoint as it stops; a restart loads it.
        let stopping = Instant::now();
        server.await??;
        // The stopped engine's projector lets go of the store once its task is dropped; the next
        // process can open the data directory only after that.
        while Arc::strong_count(&store) > 1 {
            tokio::task::yield_now().await;
        }
        drop(store);
        // As `forlop serve` does after its last request (see `SledStore::settle`).
        SledStore::settle(dir.path())?;
        let shutdown_s = stopping.elapsed().as_secs_f64();
        // sled lets go of its file lock a moment after the last handle drops, from one of its
        // own threads. A restarted process would find it free (the old one has exited), so wait
        // for that here, outside the measurement: otherwise the new process's open waits for it.
        let db = std::fs::File::open(dir.path().join("db"))?;
        let waiting = Instant::now();
        while let Err(std::fs::TryLockError::WouldBlock) = db.try_lock() {
            anyhow::ensure!(waiting.elapsed() < Duration::from_secs(30), "sled kept its lock for 30 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        db.unlock()?;
        drop(db);
        eprintln!(
            "bench: restoring the backup of all {} events into a new data directory ...",
            seeded as usize + registered
        );
        let restore_dir = tempdir(&args)?;
        let restore_eps = crate::bench_backup::restore_eps(backup_dir.path(), restore_dir.path()).await?;
        drop((restore_dir, backup_dir));
        eprintln!("bench: restart from the checkpoint: `forlop serve` until /readyz answers 200 ...");
        let (restart_s, resident) = restart_to_ready(dir.path()).await.context("restart benchmark")?;
        let model_bytes_per_patient = resident as f64 / patients.max(1) as f64;
        rows.push((
            "report_p99_ms",
            report_p99,
            format!("pathwayReport, one service-year, {episodes} episodes in the log"),
        ));
        rows.push((
            "report_p99_ms_analyst",
            analyst_p99,
            format!(
                "the same reports as an analyst (cell key perturbation), in alternation: {:.2} × exact",
                analyst_p99 / report_p99.max(f64::MIN_POSITIVE)
            ),
        ));
        rows.push(("alerts_p99_ms", alerts_p99, "careAlerts over every service at a random date".into()));
        rows.push(("mutation_p99_ms", mutation_p99, format!("registerPatient over HTTP, {WRITERS} writers alone")));
        rows.push((
            "mutation_p99_under_reports_ms",
            mutation_p99_reports,
            format!(
                "the same while {REPORT_CLIENTS} clients loop the all-time pathwayReport of the largest service ({largest_episodes} episodes)"
            ),
        ));
        rows.push((
            "mutation_p99_ms_with_backup",
            mutation_p99_backup,
            format!("the writers alone with the continuous backup running (its first copy took {first_copy_s:.1} s)"),
        ));
        rows.push((
            "backup_lag_p99_ms",
            backup_lag_p99,
            "from an event's commit until the backup's manifest counts it, under those writers".into(),
        ));
        rows.push((
            "restore_eps",
            restore_eps,
            "forlop restore of the whole backup: verify it, append every event, verify the store".into(),
        ));
        rows.push((
            "max_projection_stall_ms",
            max_stall_ms,
            "longest wait of an event between reaching the projector and being readable, under that load".into(),
        ));
        rows.push((
            "shutdown_s",
            shutdown_s,
            "stopping the server: the read-model checkpoint, then sled's recovery snapshot".into(),
        ));
        rows.push((
            "restart_ready_s",
            restart_s,
            format!(
                "`forlop serve` process start to /readyz 200 on all {} events, from the checkpoint",
                seeded as usize + registered
            ),
        ));
        rows.push((
            "read_model_bytes_per_patient",
            model_bytes_per_patient,
            format!("resident memory of that ready server (read model, caches, runtime) per patient, of {patients}"),
        ));
        ratios.push(format!(
            "mutation_p99_with_backup/mutation_p99 = {:.2} (target <= 1.1)",
            mutation_p99_backup / mutation_p99
        ));
        ratios.push(format!(
            "mutation_p99_under_reports/mutation_p99 = {:.2} (target <= 3), max_projection_stall_ms = {:.2} (target <= 5)",
            mutation_p99_reports / mutation_p99,
            max_stall_ms
        ));
    }
    if args.only.is_none() {
        eprintln!("bench: access log, {WRITERS} concurrent readers ...");
        let access_eps = access_log_eps(&args).await.context("access log benchmark")?;
        rows.push((
            "access_log_eps",
            access_eps,
            format!("durable access records, {WRITERS} concurrent, one per append"),
        ));
        eprintln!(
            "bench: `forlop import-fhir` over {} FHIR resources of NDJSON, {} times ...",
            args.fhir_resources, args.fhir_runs
        );
        let fhir_dir = tempdir(&args)?;
        let fhir = crate::bench_fhir::fhir_import(fhir_dir.path(), args.fhir_resources, args.fhir_runs)?;
        drop(fhir_dir);
        fhir_rates = fhir.rates.clone();
        rows.push((
            "fhir_import_rps",
            fhir.median(),
            format!(
                "`forlop import-fhir`, {} resources (10 per patient pathway), process start to exit; {}",
                fhir.lines,
                fhir.runs()
            ),
        ));
        rows.push((
            "fhir_import_peak_rss_mb",
            fhir.peak_mb,
            "its peak resident memory, the largest of the runs (mostly the read model it builds)".into(),
        ));
    }
    let mut extra = serde_json::Map::new();
    if !fhir_rates.is_empty() {
        extra.insert("fhir_import_rps_runs".into(), json!(fhir_rates));
    }
    extra.insert("log_events".into(), json!(seeded));
    extra.insert("patients".into(), json!(args.patients));
    extra.insert("episodes".into(), json!(episodes));
    if args.keep {
        eprintln!("bench: the seeded data directory is kept at {}", dir.keep().display());
    }
    report(&args, &rows, &ratios, &extra)
}

/// Prints the figures as a table (and the ratios), and writes them as JSON to `--out`.
fn report(
    args: &BenchArgs,
    rows: &[(&str, f64, String)],
    ratios: &[String],
    extra: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let machine = machine();
    println!("forlop bench on {machine}");
    println!("{:<30} {:>14}  what", "figure", "value");
    for (k, v, what) in rows {
        println!("{k:<30} {v:>14.2}  {what}");
    }
    for (i, ratio) in ratios.iter().enumerate() {
        println!("{} {ratio}", if i == 0 { "ratios:" } else { "       " });
    }
    let mut out = extra.clone();
    for (k, v, _) in rows {
        out.insert((*k).into(), json!(v));
    }
    out.insert("machine".into(), json!(machine));
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&out)?)?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}
