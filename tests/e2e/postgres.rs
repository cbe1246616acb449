//! Several nodes on one PostgreSQL store, end to end: two `forlop serve` processes on a throwaway
//! PostgreSQL 15 cluster the test starts itself (`initdb`, `pg_ctl` on a loopback port).

use std::path::Path;
use std::sync::Mutex;

use futures::future::join_all;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::*;
use forlop_store::pg_cluster::TestCluster;

fn cluster() -> TestCluster {
    TestCluster::start(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("start PostgreSQL")
}

/// Two nodes on the cluster's database, sharing test keys; each with its own data directory
/// (which then holds only its read-model checkpoint).
async fn two_nodes(pg: &TestCluster) -> (Server, Server, tempfile::TempDir) {
    let url = pg.url("postgres");
    let a = Server::start_with(&["--store", &url]).await;
    let dir_b = tempfile::tempdir().expect("tempdir");
    share_keys(&a.dir, dir_b.path());
    let b = Server::start_in(dir_b.path(), &["--store", &url]).await;
    (a, b, dir_b)
}

/// POSTs a query to `s` carrying `X-Forlop-Min-Position`; returns status and body.
async fn query_at(s: &Server, min_position: &str, query: &str, variables: Value) -> (reqwest::StatusCode, Value) {
    let r = s
        .client()
        .post(format!("{}/graphql", s.url))
        .bearer_auth(&s.admin)
        .header("x-forlop-min-position", min_position)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("POST /graphql");
    let status = r.status();
    (status, r.json().await.expect("JSON"))
}

const CONTINUITY: &str = "query($id: UUID!) { patient(id: $id) { version history { id } \
                          continuity { attendedSessions distinctTherapists coc upc } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_with_writers_on_the_same_patients_lose_nothing_and_answer_alike() {
    let pg = cluster();
    let (a, b, _dir_b) = two_nodes(&pg).await;
    let r = Reference::register(&a).await;
    let mut patients = Vec::new();
    for _ in 0..8 {
        patients.push(patient_in_episode(&a, &r).await);
    }
    // 32 writers, half on each node, four per patient: every session must land exactly once.
    let acked = Mutex::new(Vec::new());
    let writers = (0..32).map(|w| {
        let (node, (p, e)) = (if w % 2 == 0 { &a } else { &b }, patients[w % 8]);
        let acked = &acked;
        async move {
            for i in 0..4 {
                let input = session(p, e, r.a, &format!("2016-02-{:02}T{:02}:00:00Z", i + 1, 8 + w % 10));
                let got = node.record("recordSession", input).await;
                acked.lock().unwrap().push((p, got.event_id, got.position));
            }
        }
    });
    join_all(writers).await;
    let acked = acked.into_inner().unwrap();
    let head = acked.iter().map(|(_, _, pos)| *pos).max().unwrap().to_string();
    let mut positions: Vec<u64> = acked.iter().map(|(_, _, pos)| *pos).collect();
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions.len(), 128, "every acknowledged session has a position of its own");

    for (p, _) in &patients {
        let (sa, va) = query_at(&a, &head, CONTINUITY, json!({ "id": p })).await;
        let (sb, vb) = query_at(&b, &head, CONTINUITY, json!({ "id": p })).await;
        assert_eq!((sa.as_u16(), sb.as_u16()), (200, 200));
        let (pa, pb) = (&ok_data(&va)["patient"], &ok_data(&vb)["patient"]);
        assert_eq!(pa, pb, "both nodes answer the same continuity for {p}");
        assert_eq!(pa["continuity"]["attendedSessions"], 16, "four writers × four sessions, none lost");
    }
    // One log, verified from both nodes: the same chain.
    let verify = "{ verifyLog { ok headPosition headHash accessHeadHash } }";
    let (va, vb) = (a.query(verify, json!({})).await, b.query(verify, json!({})).await);
    assert_eq!(va["verifyLog"]["ok"], true);
    assert_eq!(va["verifyLog"]["headHash"], vb["verifyLog"]["headHash"]);
    assert_eq!(va["verifyLog"]["accessHeadHash"], vb["verifyLog"]["accessHeadHash"], "one shared access log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_node_is_read_on_the_other_through_the_min_position() {
    let pg = cluster();
    let (a, b, _dir_b) = two_nodes(&pg).await;
    let p = id();
    let registered = a
        .record(
            "registerPatient",
            json!({ "patientId": p, "birthYear": 1985, "gender": "FEMALE", "nationalId": "31929980150" }),
        )
        .await;
    let at = registered.position.to_string();
    let (status, v) =
        query_at(&b, &at, "query($id: UUID!) { patient(id: $id) { id nationalId } }", json!({ "id": p })).await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(ok_data(&v)["patient"]["id"], json!(p), "node B answers once it has read A's write");
    assert_eq!(ok_data(&v)["patient"]["nationalId"], "31929980150", "one key table for every node");
    let q = "query($id: UUID!, $at: Int!) { patient(id: $id, minPosition: $at) { id } }";
    let v = b.query(q, json!({ "id": p, "at": registered.position })).await;
    assert_eq!(v["patient"]["id"], json!(p));
    // The access log is shared too: B's read is in the log A serves.
    let log = a.query("query($p: UUID!) { accessLog(patientId: $p) { nodes { fields } } }", json!({ "p": p })).await;
    assert!(!log["accessLog"]["nodes"].as_array().unwrap().is_empty(), "B's read is logged where A sees it: {log}");

    let (status, v) = query_at(&b, "not-a-position", "{ log { committed } }", json!({})).await;
    assert_eq!((status.as_u16(), error_code(&v)), (400, Some("INVALID_INPUT")));
    let far = (registered.position + 1_000_000).to_string();
    let (status, v) = query_at(&b, &far, "{ log { committed } }", json!({})).await;
    assert_eq!((status.as_u16(), error_code(&v)), (503, Some("UNAVAILABLE")), "a position never written: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_acknowledged_event_and_the_other_serves_on() {
    let pg = cluster();
    let (a, b, _dir_b) = two_nodes(&pg).await;
    let r = Reference::register(&a).await;
    let mut patients = Vec::new();
    for _ in 0..8 {
        patients.push(patient_in_episode(&a, &r).await);
    }
    let acked: Mutex<Vec<(Uuid, Uuid)>> = Mutex::new(Vec::new());
    let some_acknowledged = tokio::sync::Notify::new();
    let write_through = |node: &'static str, s: &Server, p: Uuid, e: Uuid, i: usize| {
        let mut input = session(p, e, r.a, &format!("2016-03-{:02}T10:00:00Z", 1 + i % 28));
        let event_id = id();
        input["eventId"] = json!(event_id);
        let q = "mutation($i: RecordSessionInput!) { recordSession(input: $i) { position } }";
        let request = s
            .client()
            .post(format!("{}/graphql", s.url))
            .bearer_auth(&s.admin)
            .json(&json!({ "query": q, "variables": { "i": input } }));
        async move {
            let v: Value = request.send().await.ok()?.json().await.ok()?;
            v["data"]["recordSession"]["position"].as_u64().map(|_| (node, event_id))
        }
    };
    // Writers on A until it dies, then nothing; writers on B throughout.
    let on_a = patients.iter().map(|&(p, e)| {
        let (acked, some_acknowledged, a) = (&acked, &some_acknowledged, &a);
        async move {
            for i in 0..40 {
                let Some((_, event_id)) = write_through("a", a, p, e, i).await else { return };
                let mut acked = acked.lock().unwrap();
                acked.push((p, event_id));
                if acked.len() == 40 {
                    some_acknowledged.notify_one();
                }
            }
        }
    });
    tokio::select! {
        _ = join_all(on_a) => {},
        _ = some_acknowledged.notified() => {},
    }
    a.crash();
    // B keeps serving reads and writes with A gone.
    for &(p, e) in &patients {
        let got = b.record("recordSession", session(p, e, r.b, "2016-04-01T10:00:00Z")).await;
        acked.lock().unwrap().push((p, got.event_id));
    }
    let acked = acked.into_inner().unwrap();
    assert!(acked.len() >= 48);
    let head = b.committed().await;
    for (p, event_id) in &acked {
        let (_, v) = query_at(
            &b,
            &(head - 1).to_string(),
            "query($id: UUID!) { patient(id: $id) { history { id } } }",
            json!({ "id": p }),
        )
        .await;
        let ids: Vec<&str> =
            ok_data(&v)["patient"]["history"].as_array().unwrap().iter().filter_map(|h| h["id"].as_str()).collect();
        assert!(ids.contains(&event_id.to_string().as_str()), "acknowledged event {event_id} is in the log");
    }
    assert_eq!(b.query("{ verifyLog { ok } }", json!({})).await["verifyLog"]["ok"], true);
}

/// Waits for `progress` until `enough()` holds; fails if nothing happens for 20 s.
async fn wait_until(progress: &tokio::sync::Notify, enough: impl Fn() -> bool) {
    while !enough() {
        tokio::time::timeout(std::time::Duration::from_secs(20), progress.notified())
            .await
            .expect("the writers make progress");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_lost_under_load_gives_clean_unavailable_then_the_node_recovers_by_itself() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let pg = cluster();
    let (a, _b, _dir_b) = two_nodes(&pg).await;
    let r = Reference::register(&a).await;
    let mut patients = Vec::new();
    for _ in 0..8 {
        patients.push(patient_in_episode(&a, &r).await);
    }
    let (acked, unavailable, done) = (Mutex::new(Vec::new()), AtomicUsize::new(0), AtomicBool::new(false));
    let (progress, others) = (tokio::sync::Notify::new(), Mutex::new(Vec::new()));
    let writers = patients.iter().map(|&(p, e)| {
        let (a, acked, unavailable, done, progress, others) = (&a, &acked, &unavailable, &done, &progress, &others);
        async move {
            let mut i = 0;
            while !done.load(Ordering::SeqCst) {
                i += 1;
                let mut input = session(p, e, r.a, &format!("2016-05-{:02}T{:02}:00:00Z", 1 + i % 28, 8 + i % 10));
                let event_id = id();
                input["eventId"] = json!(event_id);
                let v = a.try_record("recordSession", input).await;
                match error_code(&v) {
                    None => acked.lock().unwrap().push((p, event_id)),
                    Some("UNAVAILABLE") => {
                        unavailable.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(_) => others.lock().unwrap().push(v),
                }
                progress.notify_waiters();
            }
        }
    });
    let driver = async {
        wait_until(&progress, || acked.lock().unwrap().len() >= 16).await;
        pg.stop().unwrap();
        wait_until(&progress, || unavailable.load(Ordering::SeqCst) >= 8).await;
        let (status, health) = a.get_json("/healthz").await;
        assert_eq!(status.as_u16(), 503, "{health}");
        let before_restart = acked.lock().unwrap().len();
        pg.restart().unwrap();
        // The node notices by itself (its follower probes the database twice a second).
        wait_until(&progress, || acked.lock().unwrap().len() >= before_restart + 16).await;
        done.store(true, Ordering::SeqCst);
    };
    futures::join!(join_all(writers), driver);
    assert!(others.lock().unwrap().is_empty(), "only successes and UNAVAILABLE: {:?}", others.lock().unwrap());
    let (status, _) = a.get_json("/healthz").await;
    assert!(status.is_success());
    let head = (a.committed().await - 1).to_string();
    for (p, event_id) in acked.into_inner().unwrap() {
        let (_, v) =
            query_at(&a, &head, "query($id: UUID!) { patient(id: $id) { history { id } } }", json!({ "id": p })).await;
        let history = ok_data(&v)["patient"]["history"].as_array().unwrap().clone();
        assert!(history.iter().any(|h| h["id"] == json!(event_id)), "acknowledged {event_id} is in the log");
    }
    assert_eq!(a.query("{ verifyLog { ok } }", json!({})).await["verifyLog"]["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_rewraps_the_shared_key_table_in_postgres() {
    let pg = cluster();
    let url = pg.url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let p = id();
    {
        let a = Server::start_in(dir.path(), &["--store", &url]).await;
        a.record(
            "registerPatient",
            json!({ "patientId": p, "birthYear": 1985, "gender": "FEMALE", "nationalId": "31929980150" }),
        )
        .await;
        assert_eq!(a.stop().code(), Some(0));
    }
    let (old, new) = (dir.path().join("test-master.key"), dir.path().join("new.key"));
    use base64::Engine as _;
    std::fs::write(&new, base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())).unwrap();
    let rotated =
        run_ok(&["rotate-key", "--store", &url, "--old", old.to_str().unwrap(), "--new", new.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&rotated.stderr).contains("rewrapped 1 data keys"));
    std::fs::copy(&new, &old).unwrap();
    let a = Server::start_in(dir.path(), &["--store", &url]).await;
    assert_eq!(a.patient(p, "nationalId").await["nationalId"], "31929980150", "readable under the new key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_a_seeded_sled_store_with_the_same_head_hash() {
    let pg = cluster();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    run_ok(&["seed", "--data", data, "--patients", "40"]);
    let url = pg.url("postgres");
    let migrated = run_ok(&["migrate", "--from-data", data, "--to", &url]);
    assert!(String::from_utf8_lossy(&migrated.stderr).contains("migrated"));
    let sled = String::from_utf8(run_ok(&["verify", "--data", data]).stdout).unwrap();
    let postgres = String::from_utf8(run_ok(&["verify", "--store", &url]).stdout).unwrap();
    assert_eq!(sled, postgres, "both stores verify to the same events, streams and head hashes");
    assert!(sled.starts_with("ok: "), "{sled}");
    // A second migrate into the now non-empty store is refused.
    let again = run_cli(&["migrate", "--from-data", data, "--to", &url]);
    assert!(!again.status.success());
    // Export reads the same lines from both.
    let (from_sled, from_pg) =
        (run_ok(&["export", "--data", data]).stdout, run_ok(&["export", "--store", &url]).stdout);
    assert_eq!(from_sled, from_pg, "export is identical on both backends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_on_one_node_delivers_what_the_other_node_records() {
    use crate::subscriptions::{connect, recv, send, Protocol};
    let pg = cluster();
    let (a, b, _dir_b) = two_nodes(&pg).await;
    let r = Reference::register(&a).await;
    let (p, e) = patient_in_episode(&a, &r).await;
    // B must know the patient before it can authorise a subscription to them.
    let head = (a.committed().await - 1).to_string();
    let (status, _) = query_at(&b, &head, "{ log { committed } }", json!({})).await;
    assert_eq!(status.as_u16(), 200);
    let mut ws = connect(&b, Protocol::TransportWs).await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", b.admin) } }))
        .await;
    assert_eq!(recv(&mut ws).await["type"], "connection_ack");
    // From the next position on: whatever A writes after this point, however soon.
    let next = a.committed().await;
    let q = "subscription($p: UUID, $from: Int) { events(patientId: $p, fromPosition: $from) { type position } }";
    let variables = json!({ "p": p, "from": next });
    send(&mut ws, json!({ "id": "1", "type": "subscribe", "payload": { "query": q, "variables": variables } })).await;
    // Written on A once B's subscription is set up: B learns of it from PostgreSQL alone.
    let got = a.record("recordSession", session(p, e, r.a, "2016-02-01T10:00:00Z")).await;
    let msg = recv(&mut ws).await;
    assert_eq!(msg["type"], "next", "{msg}");
    let written = (got, msg);
    assert_eq!(written.1["payload"]["data"]["events"]["type"], "SessionRecorded");
    assert_eq!(written.1["payload"]["data"]["events"]["position"], json!(written.0.position));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_tls_to_postgres_with_the_given_ca_and_refuses_to_start_without_trusting_it() {
    let (pg, ca) = TestCluster::start_with_tls(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("PostgreSQL with TLS");
    let url = format!("{}?sslmode=require", pg.url("postgres"));
    let s = Server::start_with(&["--store", &url, "--store-ca-file", ca.to_str().unwrap()]).await;
    let r = Reference::register(&s).await;
    let (p, _) = patient_in_episode(&s, &r).await;
    assert_eq!(s.patient(p, "id").await["id"], json!(p));
    // Without the CA the server's certificate is not trusted: serve stops with the reason.
    let dir = tempfile::tempdir().unwrap();
    share_keys(&s.dir, dir.path());
    let key = dir.path().join("test-master.key");
    let secret = dir.path().join("test-hs256.secret");
    let out = run_cli(&[
        "serve",
        "--data",
        dir.path().to_str().unwrap(),
        "--store",
        &url,
        "--listen",
        "127.0.0.1:0",
        "--key-file",
        key.to_str().unwrap(),
        "--hs256-secret-file",
        secret.to_str().unwrap(),
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(!stderr.contains("postgres://"), "the URL (which may hold a password) is not echoed: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_on_postgres_with_the_same_figures_as_on_sled() {
    let pg = cluster();
    let s = Server::start_with(&["--demo", "--store", &pg.url("postgres")]).await;
    let services = s.query("{ services { id name } }", json!({})).await;
    let rph = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "Rask psykisk helsehjelp Gamle Oslo")
        .unwrap()["id"]
        .clone();
    let q = "query($s: UUID!) { pathwayReport(serviceId: $s, from: \"2016-01-01T00:00:00Z\", to: \"2017-01-01T00:00:00Z\") \
             { episodes gender { key count } phq9 { pairedCount } } }";
    let report = s.query(q, json!({ "s": rph })).await;
    assert_eq!(report["pathwayReport"]["episodes"], 304);
    assert_eq!(report["pathwayReport"]["phq9"]["pairedCount"], 73);
    // The demo patient's national id went through the key table in PostgreSQL.
    let me = s.query("{ patientByNationalId(nationalId: \"31929956780\") { id nationalId } }", json!({})).await;
    assert_eq!(me["patientByNationalId"]["nationalId"], "31929956780");
    assert_eq!(s.query("{ verifyLog { ok } }", json!({})).await["verifyLog"]["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fhir_transaction_on_postgres_is_appended_all_or_none_and_read_on_another_node() {
    use crate::fhir::{bundle, good_and_overlapping_transaction, post_fhir, CARE_LEVELS};
    let pg = cluster();
    let url = pg.url("postgres");
    let levels = tempfile::tempdir().expect("tempdir");
    let file = levels.path().join("care-levels.toml");
    std::fs::write(&file, CARE_LEVELS).expect("write care levels");
    let a = Server::start_with(&["--store", &url, "--fhir-care-levels", file.to_str().expect("path")]).await;
    let dir_b = tempfile::tempdir().expect("tempdir");
    share_keys(&a.dir, dir_b.path());
    let b = Server::start_in(dir_b.path(), &["--store", &url]).await;
    let token = a.token("integration", &[], None);
    let (good, bad) = good_and_overlapping_transaction();

    let before = a.committed().await;
    let (status, resp) = post_fhir(&a, Some(&token), "application/fhir+json", bundle("transaction", bad)).await;
    assert_eq!(status, 422, "{resp:#}");
    assert_eq!(a.committed().await, before, "one refused fact records none of the transaction's");

    let (status, resp) =
        post_fhir(&a, Some(&token), "application/fhir+json", bundle("transaction", good.clone())).await;
    assert_eq!(status, 200, "{resp:#}");
    let head = a.committed().await;
    assert_eq!(head, before + 3, "the ward, the patient and the stay, in one append");
    let (status, resp) = post_fhir(&a, Some(&token), "application/fhir+json", bundle("transaction", good)).await;
    assert_eq!(status, 200, "{resp:#}");
    assert_eq!(a.committed().await, head, "a resent transaction appends nothing");

    // The other node reads what the transaction recorded once it has read its last event.
    let (status, body) =
        query_at(&b, &(head - 1).to_string(), "{ services { careLevel } verifyLog { ok headPosition } }", json!({}))
            .await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["data"]["services"], json!([{ "careLevel": "SPECIALIST_INPATIENT" }]), "{body:#}");
    assert_eq!(body["data"]["verifyLog"], json!({ "ok": true, "headPosition": head - 1 }), "{body:#}");
}
