//! Durability through the running binary: whatever was acknowledged survives a SIGKILL taken in
//! the middle of concurrent writes, and the log still verifies.

use futures::future::join_all;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_writers_in_flight_when_the_server_is_killed_then_every_acknowledged_event_survives() {
    const WRITERS: usize = 16;
    const EACH: usize = 25;
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let mut patients = Vec::new();
    for _ in 0..WRITERS {
        patients.push(patient_in_episode(&s, &r).await);
    }

    // Writers keep recording sessions while the server is killed under them; each keeps the
    // event ids the server acknowledged.
    let acked = std::sync::Mutex::new(Vec::new());
    let third_acknowledged = tokio::sync::Notify::new();
    let writers = patients.iter().map(|&(p, e)| {
        let (s, acked, third_acknowledged) = (&s, &acked, &third_acknowledged);
        async move {
            for i in 0..EACH {
                let mut input = session(p, e, r.a, &format!("2016-02-{:02}T10:00:00Z", i + 1));
                let event_id = id();
                input["eventId"] = json!(event_id);
                let q = "mutation($i: RecordSessionInput!) { recordSession(input: $i) { position } }";
                let body = json!({ "query": q, "variables": { "i": input } });
                let sent = s.client().post(format!("{}/graphql", s.url)).bearer_auth(&s.admin).json(&body).send().await;
                let Ok(resp) = sent else { return }; // the server is gone
                let Ok(v) = resp.json::<serde_json::Value>().await else { return };
                if v["data"]["recordSession"]["position"].is_u64() {
                    let mut acked = acked.lock().expect("lock");
                    acked.push((p, event_id));
                    if acked.len() == WRITERS * EACH / 3 {
                        third_acknowledged.notify_one();
                    }
                }
            }
        }
    });
    // Once a third of the writes are acknowledged, stop waiting for answers and kill the server
    // while the rest are still being written.
    tokio::select! {
        _ = join_all(writers) => {},
        _ = third_acknowledged.notified() => {},
    }
    let s = s.crash_and_restart().await;
    let acked = acked.into_inner().expect("lock");
    assert!(acked.len() >= WRITERS * EACH / 3, "the kill came after {} acknowledgements", acked.len());

    // Every acknowledged event is in its patient's history.
    for (p, event_id) in &acked {
        let history = s.patient(*p, "history { id }").await;
        let ids: Vec<&str> =
            history["history"].as_array().expect("history").iter().filter_map(|h| h["id"].as_str()).collect();
        assert!(ids.contains(&event_id.to_string().as_str()), "acknowledged event {event_id} was lost");
    }
    let dir = s.dir.clone();
    let _stopped = s.stop();
    let out = run_cli(&["verify", "--data", dir.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "log does not verify after the crash: {}", String::from_utf8_lossy(&out.stdout));
}
