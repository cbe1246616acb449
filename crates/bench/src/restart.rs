//! Stopping the in-process server (`shutdown_s`), then a `forlop serve` process on the same data
//! directory until /readyz answers 200 (`restart_ready_s`), and its resident memory then.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use forlop_store::{EventStore, SledStore};

use crate::in_process::InProcess;
use crate::server::Forlop;

/// Seconds to stop the server (it writes its read-model checkpoint) and settle sled, as `forlop
/// serve` does after its last request; then waits, unmeasured, until sled lets go of its lock.
pub async fn shut_down(server: InProcess, store: Arc<dyn EventStore>, dir: &Path) -> anyhow::Result<f64> {
    let stopping = Instant::now();
    server.stop().await?;
    // The stopped engine's projector lets go of the store once its task is dropped; the next
    // process can open the data directory only after that.
    while Arc::strong_count(&store) > 1 {
        tokio::task::yield_now().await;
    }
    drop(store);
    // As `forlop serve` does after its last request (see `SledStore::settle`).
    SledStore::settle(dir)?;
    let shutdown_s = stopping.elapsed().as_secs_f64();
    // sled lets go of its file lock a moment after the last handle drops, from one of its
    // own threads. A restarted process would find it free (the old one has exited), so wait
    // for that here, outside the measurement: otherwise the new process's open waits for it.
    let db = std::fs::File::open(dir.join("db"))?;
    let waiting = Instant::now();
    while let Err(std::fs::TryLockError::WouldBlock) = db.try_lock() {
        anyhow::ensure!(waiting.elapsed() < Duration::from_secs(30), "sled kept its lock for 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    db.unlock()?;
    Ok(shutdown_s)
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
pub async fn restart_to_ready(forlop: &Forlop, data: &Path) -> anyhow::Result<(f64, u64)> {
    let key = data.join("bench-master.key");
    std::fs::write(&key, forlop_vault::MasterKey::generate().to_base64())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let started = Instant::now();
    let mut child = forlop
        .command("serve")
        .args(["--auth", "off", "--listen", &format!("127.0.0.1:{port}")])
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
