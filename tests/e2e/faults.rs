//! Fail-stop: when the log cannot be made durable or a background task dies, forlop says so
//! (UNAVAILABLE, /healthz 503) instead of hanging or succeeding unseen, and a restart recovers.
//! Faults are real where the machine allows (a full tmpfs) and injected into the debug build
//! otherwise (`FORLOP_FAULT_*`, compiled out of release builds).

use serde_json::json;

use crate::support::*;

fn service() -> serde_json::Value {
    json!({ "serviceId": id(), "name": "Tjeneste", "careLevel": "MUNICIPAL" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_projector_that_dies_when_recording_then_unavailable_and_healthz_503_until_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in_env(dir.path(), &[], &[("FORLOP_FAULT_PROJECTOR_PANIC_AT", "2")]).await;
    s.record("registerService", service()).await;
    s.record("registerService", service()).await;
    assert_eq!(s.get_json("/readyz").await.0, 200);
    // The third event is durable, but the projector dies folding it: the mutation must not
    // report a success that reads would never show.
    let r = s.try_record("registerService", service()).await;
    assert_eq!(error_code(&r), Some("UNAVAILABLE"), "{r}");
    let (status, h) = s.get_json("/healthz").await;
    assert_eq!(status, 503, "{h}");
    assert!(h["reasons"].to_string().contains("projector"), "{h}");
    assert_eq!(s.get_json("/readyz").await.0, 503);
    // Later mutations fail at once and append nothing; reads still answer from what was folded.
    let r = s.try_record("registerService", service()).await;
    assert_eq!(error_code(&r), Some("UNAVAILABLE"), "{r}");
    let d = s.query("{ services { id } log { committed } }", json!({})).await;
    assert_eq!(d["services"].as_array().unwrap().len(), 2);
    assert_eq!(d["log"]["committed"], 3, "the refused mutation appended nothing");

    // A restart without the fault recovers, and the durable third event is there.
    let s = s.restart(&[]).await;
    assert_eq!(s.health().await["status"], "ok");
    let d = s.query("{ services { id } }", json!({})).await;
    assert_eq!(d["services"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_writer_thread_that_dies_when_recording_then_unavailable_and_the_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in_env(dir.path(), &[], &[("FORLOP_FAULT_WRITER_PANIC_AT", "2")]).await;
    s.record("registerService", service()).await;
    s.record("registerService", service()).await;
    let r = s.try_record("registerService", service()).await;
    assert_eq!(error_code(&r), Some("UNAVAILABLE"), "{r}");
    let (status, h) = s.get_json("/healthz").await;
    assert_eq!(status, 503, "{h}");
    assert!(h["reasons"].to_string().contains("writer thread"), "{h}");
    let r = s.try_record("registerService", service()).await;
    assert_eq!(error_code(&r), Some("UNAVAILABLE"), "{r}");
    assert_eq!(s.stop().code(), Some(0));
    let out = run_ok(&["verify", "--data", dir.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 2 events"), "{out:?}");
}

/// Mounts a tmpfs of `size` at `dir`; false where this process may not mount (not root).
fn mount_tmpfs(dir: &std::path::Path, size: &str) -> bool {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn remount(dir: &std::path::Path, size: &str) {
    let status = std::process::Command::new("mount")
        .args(["-o", &format!("remount,size={size}")])
        .arg(dir)
        .status()
        .expect("run mount");
    assert!(status.success());
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_full_disk_when_clients_record_then_they_get_unavailable_and_a_grown_disk_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let real = mount_tmpfs(dir.path(), "12m");
    let _unmount = real.then(|| Unmount(dir.path().to_owned()));
    // Where no tmpfs can be mounted (not root), the disk fills by injection instead, loudly.
    let fault: &[(&str, &str)] = if real {
        &[]
    } else {
        eprintln!("NOTE: cannot mount a tmpfs here (not root): the full-disk test fails the flush by injection");
        &[("FORLOP_FAULT_FLUSH_FAIL_AT", "300")]
    };
    let s = Server::start_in_env(dir.path(), &[], fault).await;

    // Eight clients register patients until the disk is full.
    let acknowledged = std::sync::Mutex::new(Vec::new());
    let failed = std::sync::atomic::AtomicBool::new(false);
    let clients = (0..8).map(|_| {
        let (s, acknowledged, failed) = (&s, &acknowledged, &failed);
        async move {
            for _ in 0..20_000 {
                if failed.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let p = id();
                let r = s
                    .try_record("registerPatient", json!({ "patientId": p, "birthYear": 1980, "gender": "FEMALE" }))
                    .await;
                match error_code(&r) {
                    None => acknowledged.lock().unwrap().push(p),
                    Some("UNAVAILABLE") => {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                    Some(other) => panic!("unexpected {other}: {r}"),
                }
            }
        }
    });
    futures::future::join_all(clients).await;
    assert!(failed.into_inner(), "12 MB never filled up");
    let (status, h) = s.get_json("/healthz").await;
    assert_eq!(status, 503, "{h}");
    let r = s.try_record("registerService", service()).await;
    assert_eq!(error_code(&r), Some("UNAVAILABLE"), "{r}");
    assert!(r["errors"][0]["message"].as_str().unwrap().contains("durable"), "{r}");
    let acknowledged = acknowledged.into_inner().unwrap();
    assert!(!acknowledged.is_empty());

    // Grow the disk and restart: every acknowledged event is there, and the log verifies.
    assert_eq!(s.stop().code(), Some(0));
    if real {
        remount(dir.path(), "256m");
    }
    let out = run_cli(&["verify", "--data", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "verify after the disk grew: {out:?}");
    let s = Server::start_in(dir.path(), &[]).await;
    assert_eq!(s.health().await["status"], "ok");
    for p in acknowledged.iter().step_by(37) {
        assert!(s.patient(*p, "id").await.is_object(), "acknowledged patient {p} is missing");
    }
    s.record("registerService", service()).await;
}

/// GET /metrics, parsed as Prometheus text format.
async fn scrape(s: &Server) -> prometheus_parse::Scrape {
    let r = s.client().get(format!("{}/metrics", s.url)).send().await.expect("GET /metrics");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("metrics body");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    scrape.samples.iter().find_map(|s| {
        let labelled = label.is_none_or(|(k, v)| s.labels.get(k) == Some(v));
        match (&s.value, s.metric == name && labelled) {
            (prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v), true) => Some(*v),
            (prometheus_parse::Value::Untyped(v), true) => Some(*v),
            (prometheus_parse::Value::Histogram(h), true) => h.last().map(|b| b.count),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_traffic_when_metrics_are_scraped_then_appends_fsyncs_requests_and_lag_are_there() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in_env(dir.path(), &[], &[("FORLOP_FAULT_WRITER_PANIC_AT", "3")]).await;
    for _ in 0..3 {
        s.record("registerService", service()).await;
    }
    let (_, v) = s.gql_as(Some(&s.admin), "query Overview { services { id } }", json!({})).await;
    ok_data(&v);
    let m = scrape(&s).await;
    assert_eq!(value(&m, "forlop_events_appended_total", Some(("type", "ServiceRegistered"))), Some(3.0));
    assert!(
        value(&m, "forlop_fsync_seconds_count", Some(("log", "events"))).is_some_and(|n| n >= 3.0),
        "{:?}",
        m.samples.len()
    );
    assert!(value(&m, "forlop_graphql_requests_total", Some(("operation", "Overview"))).is_some_and(|n| n >= 1.0));
    assert_eq!(value(&m, "forlop_projection_lag_events", None), Some(0.0));
    assert_eq!(value(&m, "forlop_live_subscriptions", None), Some(0.0));
    assert_eq!(value(&m, "forlop_failed", None), Some(0.0));

    // A failed store shows in the metrics too.
    let r = s.try_record("registerService", service()).await;
    assert_eq!(error_code(&r), Some("UNAVAILABLE"));
    let m = scrape(&s).await;
    assert_eq!(value(&m, "forlop_failed", None), Some(1.0));
    assert!(value(&m, "forlop_graphql_requests_total", Some(("outcome", "UNAVAILABLE"))).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_clean_shutdown_when_restarted_then_the_checkpoint_is_loaded_and_a_bad_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let info = [("FORLOP_LOG", "info")];
    let s = Server::start_in_env(dir.path(), &[], &info).await;
    for _ in 0..3 {
        s.record("registerService", service()).await;
    }
    assert_eq!(s.stop().code(), Some(0));
    let checkpoint = dir.path().join("readmodel.checkpoint");
    assert!(checkpoint.exists(), "a clean shutdown writes a checkpoint");

    // The next start loads it and replays only the tail (none here).
    let s = Server::start_in_env(dir.path(), &[], &info).await;
    assert!(s.log_text().contains("loaded read-model checkpoint"), "{}", s.log_text());
    assert_eq!(s.query("{ services { id } }", json!({})).await["services"].as_array().unwrap().len(), 3);
    s.record("registerService", service()).await;
    let good = std::fs::read(&checkpoint).unwrap();
    // Killed, not stopped: the checkpoint on disk is the old one, and the tail is replayed.
    let s = s.crash_and_restart().await;
    assert_eq!(s.query("{ services { id } }", json!({})).await["services"].as_array().unwrap().len(), 4);
    drop(s);

    // A checkpoint that does not match the log (another store's) or that is garbage is ignored.
    let other = tempfile::tempdir().unwrap();
    let o = Server::start_in(other.path(), &[]).await;
    o.record("registerService", service()).await;
    assert_eq!(o.stop().code(), Some(0));
    for bad in [
        std::fs::read(other.path().join("readmodel.checkpoint")).unwrap(),
        b"FORLOPRMgarbage".to_vec(),
        good[..good.len() / 2].to_vec(),
    ] {
        std::fs::write(&checkpoint, &bad).unwrap();
        let s = Server::start_in_env(dir.path(), &[], &info).await;
        assert!(s.log_text().contains("checkpoint ignored"), "{}", s.log_text());
        assert_eq!(s.query("{ services { id } }", json!({})).await["services"].as_array().unwrap().len(), 4);
        assert_eq!(s.stop().code(), Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_failing_flush_when_recording_then_unavailable_nothing_later_is_written_and_restart_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in_env(dir.path(), &[], &[("FORLOP_FAULT_FLUSH_FAIL_AT", "2")]).await;
    let (a, b) = (service(), service());
    s.record("registerService", a.clone()).await;
    s.record("registerService", b.clone()).await;
    // sled has applied the third event's batch in memory, but its flush failed.
    let r = s.try_record("registerService", service()).await;
    assert_eq!(error_code(&r), Some("UNAVAILABLE"), "{r}");
    let (status, h) = s.get_json("/healthz").await;
    assert_eq!(status, 503, "{h}");
    // No later write reuses the position: every later mutation is refused at once.
    for _ in 0..3 {
        let r = s.try_record("registerService", service()).await;
        assert_eq!(error_code(&r), Some("UNAVAILABLE"), "{r}");
    }
    assert_eq!(s.committed().await, 2, "a failed group is never acknowledged or shown");
    assert_eq!(s.stop().code(), Some(0));
    let out = run_ok(&["verify", "--data", dir.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok:"), "{out:?}");
    let s = Server::start_in(dir.path(), &[]).await;
    let d = s.query("{ services { id } }", json!({})).await;
    let ids = d["services"].to_string();
    assert!(ids.contains(a["serviceId"].as_str().unwrap()) && ids.contains(b["serviceId"].as_str().unwrap()), "{d}");
    s.record("registerService", service()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_code_a_newer_version_stored_when_served_then_it_reads_as_unrecognised_is_counted_and_cannot_be_sent() {
    // A newer forlop registered a service at a care level this version does not know.
    let dir = tempfile::tempdir().unwrap();
    let service_id = id();
    {
        let store = forlop_store::SledStore::open(forlop_store::SledOptions::new(dir.path())).unwrap();
        let future = forlop_store::NewEvent {
            id: id(),
            event_type: "ServiceRegistered".into(),
            schema_version: 1,
            occurred_at: chrono::Utc::now(),
            payload: json!({ "service_id": service_id, "name": "Akutteam", "care_level": "CRISIS_TEAM" })
                .to_string()
                .into_bytes(),
            metadata: Default::default(),
            recorded_at: None,
        };
        use forlop_store::EventStore;
        store
            .append(&format!("service-{service_id}"), forlop_store::ExpectedVersion::NoStream, vec![future])
            .await
            .unwrap();
    }
    let s = Server::start_in(dir.path(), &[]).await;
    // It is served, shown as UNRECOGNISED, ...
    let v = s.query("{ services { id careLevel } }", json!({})).await;
    assert_eq!(v["services"], json!([{ "id": service_id, "careLevel": "UNRECOGNISED" }]));
    // ... counted, ...
    let m = scrape(&s).await;
    assert_eq!(value(&m, "forlop_unrecognised_codes_total", Some(("enum", "CareLevel"))), Some(1.0));
    // ... and the placeholder cannot be recorded: the field is named, nothing is appended.
    let err = s
        .rejects(
            "registerService",
            json!({ "serviceId": id(), "name": "x", "careLevel": "UNRECOGNISED" }),
            "INVALID_INPUT",
        )
        .await;
    assert!(err["message"].as_str().unwrap().contains("care_level"), "{err}");
    assert_eq!(s.committed().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_access_log_that_cannot_be_made_durable_then_no_patient_data_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in_env(dir.path(), &[], &[("FORLOP_FAULT_ACCESS_SYNC_FAIL_AT", "0")]).await;
    let patient = id();
    s.record("registerPatient", json!({ "patientId": patient, "birthYear": 1987, "gender": "FEMALE" })).await;
    let read = "query($id: UUID!) { patient(id: $id) { id birthYear continuity { attendedSessions } } }";
    // The read's access record goes to the log while the answer is resolved; its fsync fails, so
    // the resolved answer is withheld whole.
    let (status, r) = s.gql_as(Some(&s.admin), read, json!({ "id": patient })).await;
    assert_eq!(status, 503, "{r}");
    assert_eq!(error_code(&r), Some("UNAVAILABLE"), "{r}");
    assert!(r["errors"][0]["message"].as_str().unwrap().contains("nothing was disclosed"), "{r}");
    assert!(!r.to_string().contains("1987"), "patient data left without its access record: {r}");
    // The log is failed from then on: later reads are refused before anything is resolved, and
    // /healthz names the access log.
    let (status, r) = s.gql_as(Some(&s.admin), read, json!({ "id": patient })).await;
    assert_eq!(error_code(&r), Some("UNAVAILABLE"), "{status} {r}");
    assert!(!r.to_string().contains("1987"), "{r}");
    let (status, h) = s.get_json("/healthz").await;
    assert_eq!(status, 503, "{h}");
    assert!(h["reasons"].to_string().contains("access log"), "{h}");
    // Reads that disclose no patient are still served.
    let d = s.query("{ log { committed } }", json!({})).await;
    assert_eq!(d["log"]["committed"], 1);
}
