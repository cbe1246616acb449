//! Writers over HTTP: `registerPatient` from many concurrent writers, alone or while report
//! clients loop the heaviest report.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use uuid::Uuid;

use crate::appends::WRITERS;
use crate::http_load::{client, REPORT};
use crate::stats::percentile;

const REGISTER: &str = "mutation($in: RegisterPatientInput!) { registerPatient(input: $in) { position } }";
/// Mutations each writer sends in the mutation measurements.
const MUTATIONS_PER_WRITER: usize = 40;
/// Report clients looping while the writers run, in `mutation_p99_under_reports_ms`.
pub const REPORT_CLIENTS: usize = 4;

/// p99 latency (ms) of `WRITERS` concurrent writers registering patients over HTTP, while
/// `report_clients` clients loop the all-time pathway report of `service`.
pub async fn mutations(
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
