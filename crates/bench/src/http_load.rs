//! The read load over HTTP: patient continuity queries from closed-loop clients, pathway reports
//! and care alerts one at a time, as a dashboard sends them.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;
use uuid::Uuid;

use crate::args::RunArgs;
use crate::stats::{eps, percentile};
use crate::steal::{cpu_ticks, steal_percent};

/// Closed-loop clients of the patient query.
pub const CLIENTS: usize = 32;

/// An HTTP client that sends `token` as its bearer.
pub fn client(token: &str, pool: usize) -> anyhow::Result<reqwest::Client> {
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

pub async fn queries(
    args: &RunArgs,
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

pub const REPORT: &str = "query($s: UUID!, $from: DateTime!, $to: DateTime!) { pathwayReport(serviceId: $s, from: $from, to: $to) { episodes patients gender { key count } referralSources { key count } endReasons { key count } ageGroups { key count } phq9 { intakeCount intakeMean dischargeCount dischargeMean pairedCount meanChange missingPairs reliablyImproved recovered } gad7 { intakeCount intakeMean dischargeCount dischargeMean pairedCount meanChange missingPairs reliablyImproved recovered } recovery { eligible atCaseness recovered reliablyImproved reliablyDeteriorated reliablyRecovered recoveryRate } waitingDays { count mean median p90 min max } sessionsPerEpisode { count mean median p90 min max } referrals { received accepted rejected rejectedForCapacity undecided } continuity { patientsWithTransition transitions transitionsKeepingTherapist handovers handoversWithoutNotification meanCoc } } }";
const ALERTS: &str = "query($t: DateTime!) { careAlerts(asOf: $t) { kind patientId episodeId serviceId since days } }";

/// p99 latency (ms) of pathway reports over one service-year (exact, as an admin sees them, and
/// perturbed by the cell key method, as an analyst does) and of city-wide care alerts, one
/// request at a time, as a dashboard would send them.
pub async fn reports(
    args: &RunArgs,
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
