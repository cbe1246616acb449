//! Backups that restore: `serve --backup-dir` under writers and a kill -9, `forlop backup`,
//! `backup verify` and `restore` to a point in time, erasure that survives a restore, and every
//! bad input and fault the issue names (tampered, truncated and reordered segments, another
//! log's backup, a non-empty target, an interrupted restore, a backup target that fills up).
//!
//! Long because a backup is one story told in order: taken while serving, verified, damaged,
//! resumed and restored, each step on what the one before left.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::*;

const NID: &str = "31129956715"; // the worked example in the domain notes; synthetic

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The backup's manifest.
fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("read the manifest")).expect("JSON")
}

/// Polls until the backup in `dir` holds `events` events (and, if given, `keys` keys).
async fn until_backed_up(dir: &Path, events: u64, keys: Option<u64>) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if dir.join("manifest.json").exists() {
            let m = manifest(dir);
            let keys_ok = keys.is_none_or(|k| m["keys"]["count"].as_u64() == Some(k));
            if m["events"]["next"].as_u64() >= Some(events) && keys_ok {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the backup never reached {events} events: {:?}",
            std::fs::read_to_string(dir.join("manifest.json"))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The log as `forlop export` writes it.
fn export(data: &Path) -> Vec<String> {
    let out = run_ok(&["export", "--data", path(data)]);
    stdout(&out).lines().map(str::to_owned).collect()
}

fn restore(backup: &Path, to: &Path, extra: &[&str]) -> std::process::Output {
    let key = to.parent().expect("parent").join("restore-test-master.key");
    let mut args = vec!["restore", "--from", path(backup), "--to", path(to)];
    if key.exists() {
        args.extend(["--key-file", path(&key)]);
    }
    args.extend(extra);
    run_cli(&args)
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const CONTINUITY: &str = "query($id: UUID!) { patient(id: $id) { version history { id } \
                          continuity { attendedSessions distinctTherapists coc upc } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_writers_a_kill_and_a_restore_lose_nothing_acknowledged_a_second_before() {
    let root = tempfile::tempdir().expect("tempdir");
    let (data, backup, restored) = (root.path().join("data"), root.path().join("backup"), root.path().join("restored"));
    let s = Server::start_in(&data, &["--backup-dir", path(&backup)]).await;
    let r = Reference::register(&s).await;
    let mut quiet = Vec::new();
    for _ in 0..4 {
        let (p, e) = patient_in_episode(&s, &r).await;
        s.record("recordSession", session(p, e, r.a, "2016-01-20T10:00:00Z")).await;
        quiet.push(p);
    }
    let mut busy = Vec::new();
    for _ in 0..16 {
        busy.push(patient_in_episode(&s, &r).await);
    }
    // What the quiet patients' continuity is before the crash.
    let mut before = Vec::new();
    for p in &quiet {
        before.push(s.query(CONTINUITY, json!({ "id": p })).await);
    }
    // 16 writers, one busy patient each, until the kill.
    let acked: Mutex<Vec<(Instant, u64, String)>> = Mutex::new(Vec::new());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let writers = busy.iter().enumerate().map(|(w, (p, e))| {
        let (acked, stop, s) = (&acked, &stop, &s);
        async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let at = format!("2016-{:02}-{:02}T{:02}:00:00Z", 2 + i / 28 % 10, 1 + i % 28, 8 + w % 10);
                let response = s.try_record("recordSession", session(*p, *e, r.a, &at)).await;
                if let Some(got) = Recorded::from_json(&response["data"]["recordSession"]) {
                    acked.lock().unwrap().push((Instant::now(), got.position, got.event_id.to_string()));
                }
                i += 1;
            }
        }
    });
    let killer = async {
        // Enough for several backup cycles under load.
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline || acked.lock().unwrap().len() < 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (_, ()) = futures::join!(join_all(writers), killer);
    let killed_at = Instant::now();
    s.crash();
    std::fs::rename(data.join("test-master.key"), root.path().join("restore-test-master.key")).expect("keep the key");
    std::fs::remove_dir_all(&data).expect("the data directory is lost with its disk");

    let out = restore(&backup, &restored, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("head hash"), "{}", stdout(&out));
    let lines = export(&restored);
    let ids: std::collections::HashSet<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("line")["id"].as_str().unwrap().to_owned())
        .collect();
    let acked = acked.into_inner().unwrap();
    assert!(acked.len() >= 200, "the writers wrote too little: {}", acked.len());
    let old_enough: Vec<_> =
        acked.iter().filter(|(at, _, _)| killed_at.duration_since(*at) > Duration::from_secs(1)).collect();
    assert!(!old_enough.is_empty());
    for (_, position, id) in &old_enough {
        assert!(ids.contains(id), "event {id} at {position}, acknowledged more than a second before the kill, is lost");
    }
    run_ok(&["verify", "--data", path(&restored)]);

    // The restored store answers as the lost one did.
    share_keys_from(root.path(), &restored);
    let s = Server::start_in(&restored, &[]).await;
    for (p, want) in quiet.iter().zip(&before) {
        assert_eq!(&s.query(CONTINUITY, json!({ "id": p })).await, want, "continuity of {p}");
    }
    assert_eq!(s.stop().code(), Some(0));
}

/// Gives a restored directory the test keys the lost one had.
fn share_keys_from(root: &Path, restored: &Path) {
    std::fs::copy(root.join("restore-test-master.key"), restored.join("test-master.key")).expect("key");
    let secret = restored.join("test-hs256.secret");
    if !secret.exists() {
        std::fs::write(secret, "restored-test-secret-restored-test-secret-0123").expect("secret");
    }
}

/// A stopped server's data with some history: reference data, patients, sessions, a read.
async fn history(data: &Path, backup_dir: Option<&Path>) -> Vec<Uuid> {
    let args: Vec<&str> = backup_dir.map(|b| vec!["--backup-dir", path(b)]).unwrap_or_default();
    let s = Server::start_in(data, &args).await;
    let r = Reference::register(&s).await;
    let mut patients = Vec::new();
    for i in 0..6 {
        let (p, e) = patient_in_episode(&s, &r).await;
        s.record("recordSession", session(p, e, r.a, &format!("2016-01-2{i}T10:00:00Z"))).await;
        s.patient(p, "id").await; // an access record
        patients.push(p);
    }
    assert_eq!(s.stop().code(), Some(0));
    patients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_to_a_position_or_a_time_give_exactly_that_prefix() {
    let root = tempfile::tempdir().expect("tempdir");
    let (data, backup) = (root.path().join("data"), root.path().join("backup"));
    history(&data, Some(&backup)).await;
    let full = export(&data);
    // A clean stop leaves the continuous backup at the head.
    assert_eq!(manifest(&backup)["events"]["next"].as_u64(), Some(full.len() as u64));
    let out = run_ok(&["backup", "verify", path(&backup)]);
    assert!(stdout(&out).contains(&format!("ok: {} events", full.len())), "{}", stdout(&out));

    let at = root.path().join("at-position");
    let out = restore(&backup, &at, &["--at-position", "10"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(export(&at), full[..=10].to_vec());
    let hash = serde_json::from_str::<Value>(&full[10]).unwrap()["hash"].as_str().unwrap().to_owned();
    assert!(stdout(&out).contains(&format!("head position 10, head hash {hash}")), "{}", stdout(&out));
    run_ok(&["verify", "--data", path(&at)]);

    // At a time: every event recorded at or before it.
    let t = serde_json::from_str::<Value>(&full[20]).unwrap()["recordedAt"].as_str().unwrap().to_owned();
    let at_time = root.path().join("at-time");
    let out = restore(&backup, &at_time, &["--at-time", &t]);
    assert!(out.status.success(), "{}", stderr(&out));
    let parsed = |l: &String| {
        chrono::DateTime::parse_from_rfc3339(serde_json::from_str::<Value>(l).unwrap()["recordedAt"].as_str().unwrap())
            .unwrap()
    };
    let cut = parsed(&full[20]);
    let want: Vec<String> = full.iter().take_while(|l| parsed(l) <= cut).cloned().collect();
    assert!(want.len() >= 21);
    assert_eq!(export(&at_time), want);

    // Past the end: refused, nothing created.
    let past = root.path().join("past");
    let out = restore(&backup, &past, &["--at-position", "100000"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("holds events 0.."), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_backup_is_incremental_and_refuses_another_logs_directory() {
    let root = tempfile::tempdir().expect("tempdir");
    let (data, backup) = (root.path().join("data"), root.path().join("backup"));
    history(&data, None).await;
    let out = run_ok(&["backup", "--data", path(&data), "--to", path(&backup)]);
    let n = export(&data).len();
    assert!(stderr(&out).contains(&format!("backed up {n} new events")), "{}", stderr(&out));
    let segment = files(&backup.join("events")).pop().expect("a segment");
    let size = std::fs::metadata(&segment).unwrap().len();

    // More history, then the same backup again: only what is new is written.
    let s = Server::start_in(&data, &[]).await;
    s.record("registerTherapist", json!({ "therapistId": id(), "name": "C" })).await;
    assert_eq!(s.stop().code(), Some(0));
    let out = run_ok(&["backup", "--data", path(&data), "--to", path(&backup)]);
    assert!(stderr(&out).contains("backed up 1 new events"), "{}", stderr(&out));
    assert!(std::fs::metadata(&segment).unwrap().len() > size);
    run_ok(&["backup", "verify", path(&backup)]);

    // Another store's log into the same directory: refused, the backup untouched.
    let other = root.path().join("other");
    history(&other, None).await;
    let before = std::fs::read(backup.join("manifest.json")).unwrap();
    let out = run_cli(&["backup", "--data", path(&other), "--to", path(&backup)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("another log"), "{}", stderr(&out));
    assert_eq!(std::fs::read(backup.join("manifest.json")).unwrap(), before);

    // A running server's directory: told to use --backup-dir.
    let s = Server::start_in(&data, &[]).await;
    let out = run_cli(&["backup", "--data", path(&data), "--to", path(&root.path().join("b2"))]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--backup-dir"), "{}", stderr(&out));
    assert_eq!(s.stop().code(), Some(0));

    // A restore into a directory that holds something: refused, untouched.
    let out = restore(&backup, &other, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert!(!other.join("RESTORING").exists());
}

/// Flips one character inside the payload of line `n` (0-based) of a segment.
fn tamper_line(segment: &Path, n: usize) {
    let text = std::fs::read_to_string(segment).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let i = lines[n].find("\"payload\":{").expect("payload") + 20;
    let mut bytes = lines[n].clone().into_bytes();
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    lines[n] = String::from_utf8(bytes).unwrap();
    std::fs::write(segment, lines.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_truncated_and_reordered_segments_are_named_and_nothing_is_restored() {
    let root = tempfile::tempdir().expect("tempdir");
    let (data, backup) = (root.path().join("data"), root.path().join("backup"));
    history(&data, None).await;
    run_ok(&["backup", "--data", path(&data), "--to", path(&backup)]);
    let segment = files(&backup.join("events")).pop().expect("a segment");
    let name = segment.file_name().unwrap().to_str().unwrap().to_owned();
    let original = std::fs::read(&segment).unwrap();

    let refused = |what: &str, position: Option<&str>| {
        let out = run_cli(&["backup", "verify", path(&backup)]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stdout(&out));
        assert!(stdout(&out).contains(&name), "{what}: {}", stdout(&out));
        if let Some(p) = position {
            assert!(stdout(&out).contains(&format!("at position {p}")), "{what}: {}", stdout(&out));
        }
        let target = root.path().join(format!("restored-{}", what.replace(' ', "-")));
        let out = restore(&backup, &target, &[]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(&out));
        assert!(stdout(&out).contains(&name), "{what}: {}", stdout(&out));
        assert!(!target.exists(), "{what}: the restore wrote its target");
    };

    tamper_line(&segment, 7);
    refused("tampered", Some("7"));

    std::fs::write(&segment, &original[..original.len() - 40]).unwrap();
    refused("truncated", None);

    let text = String::from_utf8(original.clone()).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(3, 4);
    std::fs::write(&segment, lines.join("\n") + "\n").unwrap();
    refused("reordered", Some("3"));

    std::fs::write(&segment, &original).unwrap();
    run_ok(&["backup", "verify", path(&backup)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_survives_the_backup_and_every_restore_of_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let (data, backup) = (root.path().join("data"), root.path().join("backup"));
    let s = Server::start_in(&data, &["--backup-dir", path(&backup)]).await;
    let p = id();
    let registered = s
        .record("registerPatient", json!({ "patientId": p, "birthYear": 1956, "gender": "FEMALE", "nationalId": NID }))
        .await;
    until_backed_up(&backup, registered.position + 1, Some(1)).await;
    assert_eq!(s.stop().code(), Some(0));
    // The wrapped key as the table and the backup hold it now.
    let record =
        forlop_store::key_table::KeyTable::open(&data.join("keys")).unwrap().get_patient(p).unwrap().expect("a key");
    assert!(files(&backup).iter().any(|f| contains(&std::fs::read(f).unwrap(), &record)), "the backup holds no key");
    let old_copy = root.path().join("old-copy");
    copy_dir(&backup, &old_copy);

    let s = Server::start_in(&data, &["--backup-dir", path(&backup)]).await;
    let forgotten = s.record("forgetPatient", json!({ "patientId": p })).await;
    until_backed_up(&backup, forgotten.position + 1, Some(0)).await;
    assert_eq!(s.stop().code(), Some(0));
    // The backup no longer holds the key anywhere, nor the number.
    for f in files(&backup) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!contains(&bytes, &record), "{} still holds the destroyed key", f.display());
        assert!(!contains(&bytes, NID.as_bytes()), "{} holds the national id", f.display());
    }
    // An old key copy put back into the current backup is caught by its checksum.
    let old_keys = files(&old_copy.join("keys")).pop().unwrap();
    let current_keys = files(&backup.join("keys")).pop().unwrap();
    std::fs::copy(&old_keys, &current_keys).unwrap();
    let out = run_cli(&["backup", "verify", path(&backup)]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("keys/"), "{}", stdout(&out));
    std::fs::remove_dir_all(&backup).unwrap();
    run_ok(&["backup", "--data", path(&data), "--to", path(&backup)]);

    // Restored, whole and to the point before the erasure: the number is not there.
    std::fs::copy(data.join("test-master.key"), root.path().join("restore-test-master.key")).unwrap();
    for (name, extra) in
        [("whole", vec![]), ("before", vec!["--at-position".to_owned(), registered.position.to_string()])]
    {
        let target = root.path().join(name);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let out = restore(&backup, &target, &extra);
        assert!(out.status.success(), "{}", stderr(&out));
        for f in files(&target) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(!contains(&bytes, &record), "{name}: {} holds the destroyed key", f.display());
            assert!(!contains(&bytes, NID.as_bytes()), "{name}: {} holds the national id", f.display());
        }
        share_keys_from(root.path(), &target);
        let s = Server::start_in(&target, &[]).await;
        let lookup = "query($n: String!) { patientByNationalId(nationalId: $n) { id } }";
        assert_eq!(s.query(lookup, json!({ "n": NID })).await["patientByNationalId"], Value::Null, "{name}: found");
        if name == "before" {
            assert_eq!(s.patient(p, "nationalId").await["nationalId"], Value::Null, "{name}: opened");
        }
        assert_eq!(s.stop().code(), Some(0));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_with_the_wrong_master_key_is_refused_before_anything_is_written() {
    use base64::Engine as _;
    let root = tempfile::tempdir().expect("tempdir");
    let (data, backup) = (root.path().join("data"), root.path().join("backup"));
    let s = Server::start_in(&data, &[]).await;
    s.record("registerPatient", json!({ "patientId": id(), "birthYear": 1956, "gender": "FEMALE", "nationalId": NID }))
        .await;
    assert_eq!(s.stop().code(), Some(0));
    run_ok(&["backup", "--data", path(&data), "--to", path(&backup)]);
    let wrong = root.path().join("wrong.key");
    std::fs::write(&wrong, base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())).unwrap();
    let target = root.path().join("restored");
    let out = run_cli(&["restore", "--from", path(&backup), "--to", path(&target), "--key-file", path(&wrong)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not open") && stderr(&out).contains(path(&wrong)), "{}", stderr(&out));
    assert!(!target.join("db").exists(), "events were restored with a wrong key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_restore_is_refused_as_partial_and_a_rerun_completes_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let (data, backup, target) = (root.path().join("data"), root.path().join("backup"), root.path().join("restored"));
    run_ok(&["seed", "--data", path(&data), "--patients", "300"]);
    run_ok(&["backup", "--data", path(&data), "--to", path(&backup)]);
    let full = export(&data);
    assert!(full.len() > 4096, "the seed must outgrow one restore batch");

    // Aborted (as kill -9 would end it) after its first batch.
    let out = forlop()
        .args(["restore", "--from", path(&backup), "--to", path(&target)])
        .env("FORLOP_FAULT_RESTORE_ABORT_AFTER", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the injected abort did not happen: {}", stderr(&out));
    assert!(target.join("RESTORING").exists());
    // Nothing takes it for a whole store.
    for args in [vec!["verify", "--data", path(&target)], vec!["export", "--data", path(&target)]] {
        let out = run_cli(&args);
        assert!(!out.status.success(), "{args:?} accepted a partial restore");
        assert!(stderr(&out).contains("interrupted restore"), "{}", stderr(&out));
    }
    let out =
        forlop().args(["serve", "--auth", "off", "--data", path(&target), "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("interrupted restore"), "{}", stderr(&out));

    // The same restore again completes it.
    let out = restore(&backup, &target, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!target.join("RESTORING").exists());
    assert_eq!(export(&target), full);
    run_ok(&["verify", "--data", path(&target)]);
}

/// Mounts a tmpfs of `size` at `dir` (the tests run as root, as CI does).
fn mount_tmpfs(dir: &Path, size: &str) {
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .expect("run mount");
    assert!(status.success(), "mount a tmpfs at {} (the backup fault test runs as root)", dir.display());
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backup_target_degrades_health_and_the_backup_catches_up_when_it_grows() {
    let root = tempfile::tempdir().expect("tempdir");
    let (data, backup) = (root.path().join("data"), root.path().join("backup"));
    std::fs::create_dir_all(&backup).unwrap();
    mount_tmpfs(&backup, "256k");
    let _unmount = Unmount(backup.clone());
    let s = Server::start_in(&data, &["--backup-dir", path(&backup)]).await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await;
    // Write until the target is full and health says so; the server keeps serving throughout.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    let health = loop {
        let at =
            format!("2016-{:02}-{:02}T{:02}:{:02}:00Z", 2 + i / 5000 % 10, 1 + i / 200 % 28, 8 + i / 60 % 10, i % 60);
        s.record("recordSession", session(p, e, r.a, &at)).await;
        i += 1;
        if i % 50 == 0 {
            let h = s.health().await;
            if h["status"] == "degraded" {
                break h;
            }
        }
        assert!(Instant::now() < deadline, "the backup never reported the full target");
    };
    assert!(health["reasons"][0].as_str().unwrap().contains("backup"), "{health}");
    let metrics = s.client().get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("forlop_backup_errors_total"), "{metrics}");
    // Still serving: writes and reads.
    let more = s.record("recordSession", session(p, e, r.a, "2017-01-01T08:00:00Z")).await;
    assert!(s.patient(p, "id").await.is_object());

    // The disk grows: the backup catches up with nothing skipped and health is ok again.
    let status = std::process::Command::new("mount").args(["-o", "remount,size=64m"]).arg(&backup).status().unwrap();
    assert!(status.success());
    until_backed_up(&backup, more.position + 1, None).await;
    let deadline = Instant::now() + TIMEOUT;
    while s.health().await["status"] != "ok" {
        assert!(Instant::now() < deadline, "health stayed degraded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = s.client().get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    for name in ["forlop_backup_position", "forlop_backup_lag_events", "forlop_backup_last_success_timestamp_seconds"] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert_eq!(s.stop().code(), Some(0));
    run_ok(&["backup", "verify", path(&backup)]);
    let restored = root.path().join("restored");
    let out = restore(&backup, &restored, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(export(&restored), export(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restore_drill_on_postgresql_gives_back_the_same_log_access_log_and_keys() {
    let pg =
        forlop_store::pg_cluster::TestCluster::start(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("start PostgreSQL");
    let url = pg.url("postgres");
    let root = tempfile::tempdir().expect("tempdir");
    let (data, backup, one_shot) = (root.path().join("node"), root.path().join("backup"), root.path().join("one-shot"));
    let s = Server::start_in(&data, &["--store", &url, "--backup-dir", path(&backup)]).await;
    let r = Reference::register(&s).await;
    let p = id();
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1956, "gender": "FEMALE", "nationalId": NID }))
        .await;
    let e = id();
    s.record(
        "startEpisode",
        json!({ "patientId": p, "episodeId": e, "serviceId": r.rph, "startedAt": "2016-01-11T09:00:00Z" }),
    )
    .await;
    let last = s.record("recordSession", session(p, e, r.a, "2016-01-12T10:00:00Z")).await;
    assert_eq!(s.patient(p, "nationalId").await["nationalId"], NID);
    // A one-shot backup while the node runs: the log is append-only, so it is consistent.
    let out = run_ok(&["backup", "--store", &url, "--to", path(&one_shot)]);
    assert!(stderr(&out).contains(&format!("backed up {} new events", last.position + 1)), "{}", stderr(&out));
    assert_eq!(s.stop().code(), Some(0));
    run_ok(&["backup", "verify", path(&one_shot)]);

    // An empty database beside the lost one, restored from the continuous backup.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client.batch_execute("CREATE DATABASE restored").await.expect("create database");
    let restored_url = pg.url("restored");
    let out = run_cli(&[
        "restore",
        "--from",
        path(&backup),
        "--to-store",
        &restored_url,
        "--key-file",
        path(&data.join("test-master.key")),
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let export_of = |u: &str| stdout(&run_ok(&["export", "--store", u]));
    assert_eq!(export_of(&restored_url), export_of(&url));
    let verified = stdout(&run_ok(&["verify", "--store", &restored_url]));
    let original = stdout(&run_ok(&["verify", "--store", &url]));
    assert_eq!(verified, original, "both chains' heads");
    // A restore into a database that holds a log: refused.
    let out = run_cli(&["restore", "--from", path(&one_shot), "--to-store", &restored_url]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));

    // A node on the restored database opens the national id with the same master key.
    let node = root.path().join("restored-node");
    share_keys(&data, &node);
    let s = Server::start_in(&node, &["--store", &restored_url]).await;
    assert_eq!(s.patient(p, "nationalId").await["nationalId"], NID);
    assert_eq!(s.stop().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresqls_own_route_base_backup_and_wal_to_a_time_then_forlop_verify() {
    let pg = forlop_store::pg_cluster::TestCluster::start_archiving(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .expect("start an archiving PostgreSQL");
    let url = pg.url("postgres");
    let base = pg.base_backup().expect("pg_basebackup");
    let s = Server::start_with(&["--store", &url]).await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await;
    let before = s.record("recordSession", session(p, e, r.a, "2016-01-12T10:00:00Z")).await;
    // The recovery target: after every commit so far, before the next.
    tokio::time::sleep(Duration::from_millis(20)).await; // distinct commit timestamps, not synchronisation
    let target = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.record("recordSession", session(p, e, r.a, "2016-01-13T10:00:00Z")).await;
    s.record("recordSession", session(p, e, r.a, "2016-01-14T10:00:00Z")).await;
    let full = stdout(&run_ok(&["export", "--store", &url]));
    assert_eq!(s.stop().code(), Some(0));
    // Every WAL segment with those commits archived.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let row = client.query_one("SELECT pg_walfile_name(pg_switch_wal())", &[]).await.expect("switch WAL");
    let segment: String = row.get(0);
    let deadline = Instant::now() + TIMEOUT;
    while !pg.archive_dir().join(&segment).exists() {
        assert!(Instant::now() < deadline, "WAL segment {segment} was never archived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let recovered = pg.recover_to(base.path(), &target).expect("recover to the target time");
    let recovered_url = recovered.url("postgres");
    let verified = stdout(&run_ok(&["verify", "--store", &recovered_url]));
    assert!(verified.contains(&format!("ok: {} events", before.position + 1)), "{verified}");
    let prefix: Vec<&str> = full.lines().take(before.position as usize + 1).collect();
    assert_eq!(stdout(&run_ok(&["export", "--store", &recovered_url])), prefix.join("\n") + "\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_restore_into_postgresql_is_refused_as_partial_and_a_rerun_completes_it() {
    let pg =
        forlop_store::pg_cluster::TestCluster::start(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("start PostgreSQL");
    let url = pg.url("postgres");
    let root = tempfile::tempdir().expect("tempdir");
    let (data, backup) = (root.path().join("data"), root.path().join("backup"));
    run_ok(&["seed", "--data", path(&data), "--patients", "300"]);
    run_ok(&["backup", "--data", path(&data), "--to", path(&backup)]);
    let full = export(&data);
    assert!(full.len() > 4096, "the seed must outgrow one restore batch");

    let out = forlop()
        .args(["restore", "--from", path(&backup), "--to-store", &url])
        .env("FORLOP_FAULT_RESTORE_ABORT_AFTER", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the injected abort did not happen: {}", stderr(&out));
    // The database holds a prefix, and nothing takes it for a whole store.
    for args in [vec!["verify", "--store", url.as_str()], vec!["export", "--store", url.as_str()]] {
        let out = run_cli(&args);
        assert!(!out.status.success(), "{args:?} accepted a partial restore");
        assert!(stderr(&out).contains("interrupted restore"), "{}", stderr(&out));
    }
    let node = root.path().join("node");
    let out = forlop()
        .args(["serve", "--auth", "off", "--store", &url, "--data", path(&node), "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("interrupted restore"), "{}", stderr(&out));

    // The same restore again completes it, and the database is whole.
    let out = run_cli(&["restore", "--from", path(&backup), "--to-store", &url]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&run_ok(&["export", "--store", &url])).lines().map(str::to_owned).collect::<Vec<_>>(), full);
    run_ok(&["verify", "--store", &url]);
    // A restore into it now is one into a database that holds a log.
    let out = run_cli(&["restore", "--from", path(&backup), "--to-store", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
}
