//! Keys over the years: a master key that does not open the key table is refused before the
//! port is bound, and a copy of the key table from before an erasure cannot bring the number back.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const NID: &str = "31129956715"; // the worked example in the domain notes; synthetic

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Polls /readyz until it answers 200: the engine is ready once it has folded the log it found
/// and destroyed the keys of the patients that log says are forgotten.
async fn until_ready(s: &Server) {
    for _ in 0..200 {
        if let Ok(r) = s.client().get(format!("{}/readyz", s.url)).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server never became ready");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_key_table_from_before_an_erasure_does_not_bring_the_number_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backup = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), &[]).await;
    let p = id();
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1956, "gender": "FEMALE", "nationalId": NID }))
        .await;
    assert_eq!(s.stop().code(), Some(0));
    // The operator's copy of the key table, taken while the patient was still known.
    copy_dir(&dir.path().join("keys"), &backup.path().join("keys"));

    let s = Server::start_in(dir.path(), &[]).await;
    s.record("forgetPatient", json!({ "patientId": p })).await;
    assert_eq!(s.stop().code(), Some(0));
    // The old copy is put back.
    std::fs::remove_dir_all(dir.path().join("keys")).expect("remove keys");
    copy_dir(&backup.path().join("keys"), &dir.path().join("keys"));

    let s = Server::start_in(dir.path(), &[]).await;
    let lookup = "query($n: String!) { patientByNationalId(nationalId: $n) { id } }";
    assert_eq!(s.query(lookup, json!({ "n": NID })).await["patientByNationalId"], Value::Null, "found again");
    assert_eq!(s.patient(p, "nationalId").await["nationalId"], Value::Null, "opened again");
    until_ready(&s).await;
    assert!(s.log_text().contains("destroyed data keys of forgotten patients"), "{}", s.log_text());
    assert_eq!(s.stop().code(), Some(0));
    // The key itself is gone from the table, not only hidden.
    let table = forlop_store::key_table::KeyTable::open(&dir.path().join("keys")).expect("open the key table");
    assert_eq!(table.get_patient(p).expect("read"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_key_that_does_not_open_the_key_table_is_refused_before_the_port_is_bound() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), &[]).await;
    s.record("registerPatient", json!({ "patientId": id(), "birthYear": 1956, "gender": "FEMALE", "nationalId": NID }))
        .await;
    assert_eq!(s.stop().code(), Some(0));
    let old = dir.path().join("test-master.key");
    let new = dir.path().join("new.key");
    let key: [u8; 32] = rand::random();
    std::fs::write(&new, base64::engine::general_purpose::STANDARD.encode(key)).expect("write key");
    run_ok(&["rotate-key", "--data", path(dir.path()), "--old", path(&old), "--new", path(&new)]);

    // `serve` with the key from before the rotation: refused at once, naming the file.
    let child = forlop()
        .args(["serve", "--data", path(dir.path()), "--listen", "127.0.0.1:0", "--key-file", path(&old)])
        .args([
            "--hs256-secret-file",
            path(&dir.path().join("test-hs256.secret")),
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn forlop");
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            panic!("serve with the old master key did not exit");
        }
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("does not open the key table") && err.contains(path(&old)), "{err}");
    assert!(!err.contains("GraphQL at"), "it bound the port first: {err}");

    // With the new key it starts.
    std::fs::copy(&new, &old).expect("install the new key");
    let s = Server::start_in(dir.path(), &[]).await;
    assert_eq!(s.health().await["status"], "ok");
    assert_eq!(s.stop().code(), Some(0));
}
