//! The operator's subcommands: seed, export, import, verify, schema, and serve --demo.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::*;

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn seed(dir: &Path, patients: &str, seed: &str) -> std::process::Output {
    run_ok(&["seed", "--data", path(dir), "--patients", patients, "--seed", seed])
}

fn export(dir: &Path) -> Vec<u8> {
    run_ok(&["export", "--data", path(dir)]).stdout
}

fn lines(export: &[u8]) -> Vec<Value> {
    std::str::from_utf8(export)
        .expect("export is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("export line is not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn given_a_seed_when_seeding_twice_or_into_two_stores_then_the_same_events_are_written_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));

    let first = seed(&a, "50", "7");
    let export_a = export(&a);
    let events_a = lines(&export_a);
    assert!(events_a.len() > 50, "50 patients make more than 50 events");
    assert!(
        stderr(&first).contains(&format!("({} new)", events_a.len())),
        "first seed reports every event new: {}",
        stderr(&first)
    );

    // Again into the same store: nothing new.
    let second = seed(&a, "50", "7");
    assert!(stderr(&second).contains("(0 new)"), "second seed: {}", stderr(&second));
    assert!(stderr(&second).contains(&format!("log now holds {}", events_a.len())), "{}", stderr(&second));
    assert_eq!(lines(&export(&a)).len(), events_a.len(), "seeding twice added events");

    // Into another store: the same ids, types, streams and payloads, in the same order.
    seed(&b, "50", "7");
    let events_b = lines(&export(&b));
    let key = |e: &Value| {
        (
            e["position"].clone(),
            e["id"].clone(),
            e["stream"].clone(),
            e["version"].clone(),
            e["type"].clone(),
            e["payload"].clone(),
        )
    };
    assert_eq!(events_a.len(), events_b.len());
    for (x, y) in events_a.iter().zip(&events_b) {
        assert_eq!(key(x), key(y), "stores seeded alike differ");
    }
    // A different seed gives different pathways.
    let c = tmp.path().join("c");
    seed(&c, "50", "8");
    let events_c = lines(&export(&c));
    let ids = |v: &[Value]| v.iter().map(|e| e["id"].clone()).collect::<Vec<_>>();
    assert_ne!(ids(&events_a), ids(&events_c));
}

#[test]
fn given_an_export_when_imported_into_a_fresh_store_then_it_verifies_and_exports_byte_identically() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    seed(&src, "30", "11");
    let original = export(&src);
    let n = lines(&original).len();
    let file = tmp.path().join("log.ndjson");
    std::fs::write(&file, &original).expect("write export");

    let imported = run_ok(&["import", "--data", path(&dst), path(&file)]);
    assert!(stderr(&imported).contains(&format!("imported {n} events, {n} new")), "{}", stderr(&imported));
    let verified = run_ok(&["verify", "--data", path(&dst)]);
    assert!(stdout(&verified).starts_with(&format!("ok: {n} events")), "{}", stdout(&verified));
    let copy = export(&dst);
    assert!(copy == original, "the re-export differs from the original export (positions, hashes or times lost)");

    // Importing again adds nothing.
    let again = run_ok(&["import", "--data", path(&dst), path(&file)]);
    assert!(stderr(&again).contains(&format!("imported {n} events, 0 new")), "{}", stderr(&again));
    assert!(export(&dst) == original, "a second import changed the log");
    // The source verifies too, with the same head hash.
    let head = |out: &std::process::Output| {
        let events_line = stdout(out).lines().next().expect("the event log's line").to_owned();
        events_line.rsplit(' ').next().expect("head hash").to_owned()
    };
    assert_eq!(head(&run_ok(&["verify", "--data", path(&src)])), head(&verified));

    // A server on the imported store answers from it.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let s = Server::start_in(&dst, &[]).await;
        assert_eq!(s.committed().await, n as u64);
        let v = s.query("{ services { id } log { projected } }", json!({})).await;
        assert!(!v["services"].as_array().expect("services").is_empty());
    });
}

#[test]
fn given_a_tampered_export_when_imported_then_it_is_refused_at_its_line_and_nothing_is_appended() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    seed(&src, "10", "5");
    let original = export(&src);
    let original = String::from_utf8(original).unwrap();
    let mut lines: Vec<String> = original.lines().map(str::to_owned).collect();
    // Change one fact in the middle of the log and keep its recorded hash: a forgery.
    let target = lines.len() / 2;
    let mut v: Value = serde_json::from_str(&lines[target]).unwrap();
    v["actor"] = json!("someone-else");
    lines[target] = v.to_string();
    let file = tmp.path().join("tampered.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = run_cli(&["import", "--data", path(&dst), path(&file)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("line {}", target + 1)) && err.contains("expected") && err.contains("found"),
        "{err}"
    );
    assert!(export(&dst).is_empty(), "a refused import appended events");
    // --trust-unverified imports it anyway, and says so.
    let out = run_ok(&["import", "--data", path(&dst), "--trust-unverified", path(&file)]);
    assert!(stderr(&out).contains("NOT checked"), "{}", stderr(&out));
}

#[test]
fn given_a_partial_import_when_the_full_export_is_imported_then_exactly_the_tail_is_appended() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    seed(&src, "20", "9");
    let original = export(&src);
    let text = String::from_utf8(original.clone()).unwrap();
    let all: Vec<&str> = text.lines().collect();
    // An earlier import stopped part-way, inside a run of one stream's events.
    let cut = all.len() * 2 / 3;
    let (part, full) = (tmp.path().join("part.ndjson"), tmp.path().join("full.ndjson"));
    std::fs::write(&part, all[..cut].join("\n") + "\n").unwrap();
    std::fs::write(&full, &original).unwrap();
    run_ok(&["import", "--data", path(&dst), path(&part)]);
    let out = run_ok(&["import", "--data", path(&dst), path(&full)]);
    assert!(stderr(&out).contains(&format!("{} new", all.len() - cut)), "{}", stderr(&out));
    // Piped, as here, the progress bars stay quiet.
    assert!(
        !stderr(&out).contains("importing events") && !stderr(&out).contains("verifying events"),
        "{}",
        stderr(&out)
    );
    assert!(export(&dst) == original, "the resumed import differs from the source");
    run_ok(&["verify", "--data", path(&dst)]);
    // A file whose prefix is not what the store holds is refused.
    let other = tmp.path().join("other");
    seed(&other, "5", "77");
    let out = run_cli(&["import", "--data", path(&other), path(&full)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a prefix"), "{}", stderr(&out));
}

#[test]
fn given_a_tampered_store_when_verified_then_it_exits_non_zero_naming_the_position() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    seed(&dir, "5", "3");
    run_ok(&["verify", "--data", path(&dir)]);

    // The CLI has exited, so the store is closed and can be edited in place.
    forlop_store::SledStore::tamper(&dir, 3).expect("tamper with position 3");
    let out = run_cli(&["verify", "--data", path(&dir)]);
    assert_eq!(out.status.code(), Some(1), "verify of a tampered store: {out:?}");
    assert!(stdout(&out).contains("corrupt at position 3"), "{}", stdout(&out));
}

/// The reference pages made from the code are the ones checked in: a flag, a setting or a
/// metric added without regenerating its page fails here.
#[test]
fn given_the_reference_command_when_run_then_each_generated_page_is_the_checked_in_one() {
    for page in ["cli", "configuration", "metrics"] {
        let out = run_ok(&["reference", page]);
        let file = format!("docs/reference/{page}.md");
        let checked_in = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&file)).expect(&file);
        assert!(
            stdout(&out) == checked_in,
            "{file} is stale: regenerate it with `cargo run -- reference {page} > {file}`"
        );
    }
    let cli = stdout(&run_ok(&["reference", "cli"]));
    assert!(cli.contains("`--suppression-threshold <SUPPRESSION_THRESHOLD>`"), "flags are listed: {cli}");
    let configuration = stdout(&run_ok(&["reference", "configuration"]));
    assert!(configuration.contains("| `backup-dir` | `--backup-dir` | `FORLOP_BACKUP_DIR` |"), "{configuration}");
    let metrics = stdout(&run_ok(&["reference", "metrics"]));
    assert!(metrics.contains("| `forlop_append_seconds` | histogram |"), "{metrics}");
}

#[test]
fn given_the_schema_command_when_run_then_it_prints_the_checked_in_sdl() {
    let out = run_ok(&["schema"]);
    let checked_in = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/forlop.graphql"))
        .expect("read schema/forlop.graphql");
    assert!(stdout(&out) == checked_in, "`forlop schema` differs from schema/forlop.graphql");
    // The contract's names are in it.
    for name in [
        "registerPatient(input: RegisterPatientInput!): Recorded!",
        "events(patientId: UUID, after: Int, fromPosition: Int): Event!",
    ] {
        assert!(checked_in.contains(name), "SDL lacks {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_empty_store_when_served_with_demo_then_the_demo_loads_once() {
    let s = Server::start_with(&["--demo"]).await;
    let committed = s.committed().await;
    assert!(committed > 0, "the demo dataset was not loaded");
    let h = s.health().await;
    assert_eq!(h["committed"], json!(committed));
    assert_eq!(h["projected"], json!(committed), "the read model caught up with the demo");
    let v = s.query("{ services { id name careLevel } therapists { id } }", json!({})).await;
    assert!(!v["therapists"].as_array().expect("therapists").is_empty());
    // Both profiles: the RPH Gamle Oslo 2016 cohort and the city's other services.
    let names: Vec<&str> =
        v["services"].as_array().expect("services").iter().filter_map(|x| x["name"].as_str()).collect();
    assert!(names.contains(&"Rask psykisk helsehjelp Gamle Oslo"), "{names:?}");
    assert!(names.len() > 3, "{names:?}");
    // Some demo patient has a continuity answer.
    let page = s.query("{ events(first: 1000) { edges { node { stream } } } }", json!({})).await;
    let patient = page["events"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find_map(|e| e["node"]["stream"].as_str()?.strip_prefix("patient-").map(str::to_owned))
        .expect("a patient stream in the demo");
    let p = s.patient(patient.parse().expect("uuid"), "id continuity { attendedSessions }").await;
    assert!(p["continuity"]["attendedSessions"].as_u64().is_some(), "{p}");

    // The demo's patient with a synthetic national id sees who read their record.
    let (_, v) = s
        .gql_as(
            Some(&s.admin),
            "query Check { patient(id: \"deb00000-0000-4000-8000-000000000001\") { nationalId } }",
            json!({}),
        )
        .await;
    assert_eq!(ok_data(&v)["patient"]["nationalId"], "31929956780");
    let mine = s.token("patient", &[], Some("31929956780"));
    let (_, v) = s.gql_as(Some(&mine), "{ myAccessLog { nodes { operation role } } }", json!({})).await;
    assert!(ok_data(&v)["myAccessLog"]["nodes"].to_string().contains("Check"), "{v}");

    // A second start on the same store does not load it again.
    let s = s.restart(&["--demo"]).await;
    assert_eq!(s.committed().await, committed, "--demo loaded again into a non-empty store");
    drop(s);

    // Nor does it load into a store that already holds other events.
    let s = Server::start().await;
    Reference::register(&s).await;
    let s = s.restart(&["--demo"]).await;
    assert_eq!(s.committed().await, 6);
}
