//! Access control end to end: authentication, the role table, emergency access, the access log
//! and "who has seen my record".

use serde_json::{json, Value};

use crate::support::*;

const ROLES: [&str; 6] = ["integration", "clinician", "analyst", "auditor", "admin", "patient"];

/// The recording mutation `op` taking `$in`.
fn mutation(op: &str) -> String {
    let mut chars = op.chars();
    let input_type = format!("{}{}Input", chars.next().unwrap().to_ascii_uppercase(), chars.as_str());
    format!("mutation($in: {input_type}!) {{ {op}(input: $in) {{ position }} }}")
}

/// True when the response carries data for its root field; false when refused as FORBIDDEN.
#[track_caller]
fn allowed(v: &Value, what: &str) -> bool {
    match error_code(v) {
        None => true,
        Some("FORBIDDEN") => false,
        Some(other) => panic!("{what}: unexpected {other}: {v}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_bad_or_missing_tokens_when_calling_then_401_unauthenticated() {
    let s = Server::start().await;
    let now = chrono::Utc::now().timestamp();
    let other_secret = vec![b'z'; 48];
    let foreign = forlop_auth::mint_hs256(
        &other_secret,
        &json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "x", "role": "admin", "exp": now + 600 }),
    )
    .unwrap();
    let unsigned = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "x", "role": "admin", "exp": now + 600 });
        format!("{header}.{}.", b64.encode(claims.to_string()))
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("garbage", Some("not-a-jwt".into())),
        ("expired", Some(s.token_with(json!({ "sub": "x", "role": "admin", "exp": now - 3600 })))),
        ("not yet valid", Some(s.token_with(json!({ "sub": "x", "role": "admin", "nbf": now + 3600 })))),
        ("wrong issuer", Some(s.token_with(json!({ "sub": "x", "role": "admin", "iss": "someone-else" })))),
        ("wrong audience", Some(s.token_with(json!({ "sub": "x", "role": "admin", "aud": "another-api" })))),
        ("no subject", Some(s.token_with(json!({ "role": "admin" })))),
        ("bad signature", Some(foreign)),
        ("alg none", Some(unsigned)),
    ];
    let before = s.committed().await;
    for (what, token) in cases {
        let (status, v) =
            s.gql_as(token.as_deref(), "mutation { registerService(input: {serviceId: \"9b2f0a8e-2a4b-4f3c-9d7e-1a2b3c4d5e6f\", name: \"x\", careLevel: MUNICIPAL}) { position } }", json!({})).await;
        assert_eq!(status, 401, "{what}: {v}");
        assert_eq!(error_code(&v), Some("UNAUTHENTICATED"), "{what}: {v}");
        assert!(v.get("data").is_none_or(Value::is_null), "{what}: {v}");
    }
    assert_eq!(s.committed().await, before, "nothing was recorded by unauthenticated calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_jwks_when_tokens_are_signed_with_rs256_and_es256_then_they_are_verified_by_kid() {
    use forlop_auth::testing::{claims, jwks, EcTestKey, RsaTestKey};
    let dir = tempfile::tempdir().unwrap();
    let (rsa, ec, stranger) =
        (RsaTestKey::generate("rsa-1"), EcTestKey::generate("ec-1"), RsaTestKey::generate("rsa-1"));
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks(&[rsa.jwk(), ec.jwk()])).unwrap();
    let s = Server::start_with(&["--jwks", jwks_path.to_str().unwrap()]).await;
    let q = "{ log { committed } }";
    for (what, token, status) in [
        ("RS256", rsa.sign(&claims(ISSUER, AUDIENCE, "hsa-1", "auditor")), 200),
        ("ES256", ec.sign(&claims(ISSUER, AUDIENCE, "hsa-2", "auditor")), 200),
        ("same kid, other key", stranger.sign(&claims(ISSUER, AUDIENCE, "x", "auditor")), 401),
        ("wrong audience", rsa.sign(&claims(ISSUER, "other", "x", "auditor")), 401),
    ] {
        let (got, v) = s.gql_as(Some(&token), q, json!({})).await;
        assert_eq!(got, status, "{what}: {v}");
    }
    let mut unknown = claims(ISSUER, AUDIENCE, "x", "auditor");
    unknown["role"] = json!(["auditor"]);
    let other_kid = RsaTestKey::generate("rsa-2");
    let (got, v) = s.gql_as(Some(&other_kid.sign(&unknown)), q, json!({})).await;
    assert_eq!((got.as_u16(), error_code(&v)), (401, Some("UNAUTHENTICATED")), "unknown kid: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_each_role_when_calling_each_operation_then_the_role_table_decides() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await;
    let token = |role: &str| s.token(role, &[r.rph], Some("31129956715"));

    let reads: Vec<(&str, String, &[&str])> = vec![
        ("services", "{ services { id } }".into(), &["integration", "clinician", "analyst", "auditor", "admin"]),
        ("therapists", "{ therapists { id } }".into(), &["integration", "clinician", "auditor", "admin"]),
        ("log", "{ log { committed } }".into(), &["integration", "clinician", "auditor", "admin"]),
        ("patient id", format!("{{ patient(id: \"{p}\") {{ id version }} }}"), &["integration", "clinician", "auditor", "admin"]),
        ("patient continuity", format!("{{ patient(id: \"{p}\") {{ continuity {{ coc }} }} }}"), &["clinician", "auditor", "admin"]),
        ("patient history", format!("{{ patient(id: \"{p}\") {{ history {{ id }} }} }}"), &["clinician", "auditor", "admin"]),
        ("events", "{ events(first: 3) { edges { cursor } } }".into(), &["auditor", "admin"]),
        (
            "pathwayReport",
            format!("{{ pathwayReport(serviceId: \"{}\", from: \"2016-01-01T00:00:00Z\", to: \"2017-01-01T00:00:00Z\") {{ episodes }} }}", r.rph),
            &["analyst", "auditor", "admin"],
        ),
        (
            "service overview",
            "{ services { openEpisodes(asOf: \"2016-06-01T00:00:00Z\") } }".into(),
            &["analyst", "auditor", "admin"],
        ),
        (
            "careAlerts",
            format!("{{ careAlerts(asOf: \"2016-06-01T00:00:00Z\", serviceId: \"{}\") {{ kind }} }}", r.rph),
            &["clinician", "auditor", "admin"],
        ),
        ("accessLog", "{ accessLog { nodes { actor } } }".into(), &["auditor", "admin"]),
        ("myAccessLog", "{ myAccessLog { nodes { actor } } }".into(), &["patient"]),
        ("verifyLog", "{ verifyLog { ok } }".into(), &["auditor", "admin"]),
    ];
    for (what, q, roles) in &reads {
        for role in ROLES {
            let (status, v) = s.gql_as(Some(&token(role)), q, json!({})).await;
            assert_eq!(status, 200, "{what} as {role}: {v}");
            assert_eq!(allowed(&v, what), roles.contains(&role), "{what} as {role}: {v}");
        }
    }

    // Recordings: each allowed one appends exactly one event, each refused one appends nothing.
    for role in ROLES {
        let recordings = [
            (
                "registerService",
                json!({ "serviceId": id(), "name": "Ny tjeneste", "careLevel": "MUNICIPAL" }),
                &["integration", "admin"][..],
            ),
            (
                "registerPatient",
                json!({ "patientId": id(), "birthYear": 1980, "gender": "FEMALE" }),
                &["integration", "clinician", "admin"][..],
            ),
            ("recordSession", session(p, e, r.a, "2016-01-20T10:00:00Z"), &["integration", "clinician", "admin"][..]),
        ];
        for (op, input, roles) in recordings {
            let before = s.committed().await;
            let (_, v) = s.gql_as(Some(&token(role)), &mutation(op), json!({ "in": input })).await;
            let ok = allowed(&v, op);
            assert_eq!(ok, roles.contains(&role), "{op} as {role}: {v}");
            assert_eq!(s.committed().await, before + u64::from(ok), "{op} as {role}");
        }
    }

    // A clinician of another service may not record on this patient, nor refer to a service not theirs.
    let other = s.token("clinician", &[r.pol], None);
    let (_, v) = s
        .gql_as(Some(&other), &mutation("recordSession"), json!({ "in": session(p, e, r.a, "2016-01-21T10:00:00Z") }))
        .await;
    assert_eq!(error_code(&v), Some("FORBIDDEN"), "{v}");
    let (_, v) = s
        .gql_as(
            Some(&other),
            &mutation("receiveReferral"),
            json!({ "in": { "patientId": p, "referralId": id(), "serviceId": r.rph, "source": "GP", "receivedAt": "2016-02-01T00:00:00Z" } }),
        )
        .await;
    assert_eq!(error_code(&v), Some("FORBIDDEN"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_reads_when_the_auditor_reads_the_access_log_then_allowed_denied_and_emergency_reads_are_there() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, _) = patient_in_episode(&s, &r).await;
    let own = s.token_with(json!({ "sub": "dr-own", "name": "Dr Own", "role": "clinician", "services": [r.rph], "helseid://claims/hpr/hpr_number": "9144889" }));
    let other = s.token_with(json!({ "sub": "dr-other", "role": "clinician", "services": [r.pol] }));
    let q = "query Lookup($p: UUID!, $why: String) { patient(id: $p, emergencyReason: $why) { id birthYear } }";

    let (_, v) = s.gql_as(Some(&own), q, json!({ "p": p })).await;
    assert_eq!(v["data"]["patient"]["birthYear"], 1990, "{v}");
    let (_, v) = s.gql_as(Some(&other), q, json!({ "p": p })).await;
    assert_eq!(error_code(&v), Some("FORBIDDEN"), "{v}");
    let (_, v) = s.gql_as(Some(&other), q, json!({ "p": p, "why": "urgent" })).await;
    assert_eq!(error_code(&v), Some("INVALID_INPUT"), "a reason under 10 visible characters is refused: {v}");
    let (_, v) = s.gql_as(Some(&other), q, json!({ "p": p, "why": "akutt innleggelse, natt" })).await;
    assert_eq!(v["data"]["patient"]["birthYear"], 1990, "{v}");

    let log = "query($p: UUID, $e: Boolean) { accessLog(patientId: $p, emergencyOnly: $e) { nodes { actor actorName role hprNumber operation fields outcome reason correlationId at hash } hasNextPage } }";
    let auditor = s.token("auditor", &[], None);
    let (_, v) = s.gql_as(Some(&auditor), log, json!({ "p": p })).await;
    let nodes = ok_data(&v)["accessLog"]["nodes"].as_array().unwrap().clone();
    let seen: Vec<(String, String)> =
        nodes.iter().map(|n| (n["actor"].as_str().unwrap().into(), n["outcome"].as_str().unwrap().into())).collect();
    assert_eq!(
        seen,
        [("dr-own", "ALLOWED"), ("dr-other", "DENIED"), ("dr-other", "DENIED"), ("dr-other", "EMERGENCY")]
            .map(|(a, o)| (a.to_string(), o.to_string()))
            .to_vec(),
        "{v}"
    );
    assert_eq!(nodes[0]["actorName"], "Dr Own");
    assert_eq!(nodes[0]["role"], "clinician");
    assert_eq!(nodes[0]["hprNumber"], "9144889");
    assert_eq!(nodes[0]["operation"], "Lookup");
    assert_eq!(nodes[0]["fields"], "patient");
    assert!(nodes.iter().all(|n| n["hash"].as_str().is_some_and(|h| h.len() == 64)));

    let (_, v) = s.gql_as(Some(&auditor), log, json!({ "e": true })).await;
    let nodes = ok_data(&v)["accessLog"]["nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 1, "{v}");
    assert_eq!(nodes[0]["reason"], "akutt innleggelse, natt");

    // The auditor's own reading of the patient is an access too, and the chains verify.
    let (_, v) = s
        .gql_as(
            Some(&auditor),
            "{ verifyLog { ok headPosition headHash accessHeadPosition accessHeadHash } }",
            json!({}),
        )
        .await;
    let heads = &ok_data(&v)["verifyLog"];
    assert_eq!(heads["ok"], true, "{v}");
    assert_eq!(heads["headPosition"].as_u64(), Some(s.committed().await - 1));
    assert_eq!(heads["accessHeadHash"].as_str().map(str::len), Some(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_patient_with_a_national_id_when_they_ask_who_read_their_record_then_they_see_it() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, e) = (id(), id());
    let nid = "31129956715"; // the worked example in the domain notes; synthetic
    s.record("registerPatient", json!({ "patientId": p, "birthYear": 1956, "gender": "FEMALE", "nationalId": nid }))
        .await;
    s.record(
        "startEpisode",
        json!({ "patientId": p, "episodeId": e, "serviceId": r.rph, "startedAt": "2016-01-11T09:00:00Z" }),
    )
    .await;
    let clinician = s.token_with(json!({ "sub": "dr-a", "name": "Dr A", "role": "clinician", "services": [r.rph] }));
    let (_, v) = s
        .gql_as(
            Some(&clinician),
            "query($n: String!) { patientByNationalId(nationalId: $n) { id nationalId } }",
            json!({ "n": nid }),
        )
        .await;
    assert_eq!(ok_data(&v)["patientByNationalId"]["nationalId"], nid);

    let mine = s.token("patient", &[], Some(nid));
    let (_, v) =
        s.gql_as(Some(&mine), "{ myAccessLog { nodes { actor actorName role outcome at } } }", json!({})).await;
    let nodes = ok_data(&v)["myAccessLog"]["nodes"].as_array().unwrap().clone();
    assert!(
        nodes.iter().any(|n| n["actorName"] == "Dr A" && n["role"] == "clinician" && n["outcome"] == "ALLOWED"),
        "{v}"
    );

    // Another person's token sees nothing of it, and a patient may read nothing else.
    let stranger = s.token("patient", &[], Some("31929956780"));
    let (_, v) = s.gql_as(Some(&stranger), "{ myAccessLog { nodes { actor } } }", json!({})).await;
    assert_eq!(ok_data(&v)["myAccessLog"]["nodes"], json!([]));
    let (_, v) = s.gql_as(Some(&mine), &format!("{{ patient(id: \"{p}\") {{ id }} }}"), json!({})).await;
    assert_eq!(error_code(&v), Some("FORBIDDEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_recordings_when_read_back_then_the_actor_is_the_tokens_subject_role_and_hpr_number() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await;
    let clinician = s.token_with(json!({ "sub": "helseid-sub-1", "role": "clinician", "services": [r.rph], "helseid://claims/hpr/hpr_number": "9144889" }));
    let (_, v) = s
        .gql_as(
            Some(&clinician),
            "mutation($in: RecordSessionInput!) { recordSession(input: $in) { position } }",
            json!({ "in": session(p, e, r.a, "2016-01-20T10:00:00Z") }),
        )
        .await;
    ok_data(&v);
    let history = s.patient(p, "history { actor correlationId }").await;
    let last = history["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "clinician:helseid-sub-1 hpr:9144889");
    assert!(last["correlationId"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_past_time_when_a_patient_is_read_as_of_it_then_later_recordings_are_ignored() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    let (p, e) = patient_in_episode(&s, &r).await;
    s.record("recordSession", session(p, e, r.a, "2016-01-20T10:00:00Z")).await;
    // As of the moment the first session was recorded (inclusive).
    let history = s.patient(p, "history { recordedAt }").await;
    let between = history["history"].as_array().unwrap().last().unwrap()["recordedAt"].as_str().unwrap().to_owned();
    s.record("recordSession", session(p, e, r.a, "2016-01-27T10:00:00Z")).await;
    let q = "query($p: UUID!, $t: DateTime) { patient(id: $p, asOf: $t) { version continuity { attendedSessions } history { id } } }";
    let now = s.query(q, json!({ "p": p })).await;
    let then = s.query(q, json!({ "p": p, "t": between })).await;
    assert_eq!(now["patient"]["continuity"]["attendedSessions"], 2);
    assert_eq!(then["patient"]["continuity"]["attendedSessions"], 1);
    assert_eq!(
        then["patient"]["history"].as_array().unwrap().len() + 1,
        now["patient"]["history"].as_array().unwrap().len()
    );
    assert_eq!(then["patient"]["version"].as_u64().unwrap() + 1, now["patient"]["version"].as_u64().unwrap());
    let before_all = s.query(q, json!({ "p": p, "t": "2000-01-01T00:00:00Z" })).await;
    assert!(before_all["patient"].is_null(), "{before_all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_each_role_when_recording_a_whole_pathway_then_only_integration_clinician_and_admin_may() {
    let s = Server::start().await;
    let r = Reference::register(&s).await;
    for role in ROLES {
        let token = s.token(role, &[r.rph], None);
        let may = ["integration", "clinician", "admin"].contains(&role);
        // A patient of the clinician's service, registered by the admin.
        let (p, _) = patient_in_episode(&s, &r).await;
        let (referral, episode, admission) = (id(), id(), id());
        let steps = [
            (
                "receiveReferral",
                json!({ "patientId": p, "referralId": referral, "serviceId": r.rph, "source": "GP", "receivedAt": "2016-03-01T00:00:00Z" }),
            ),
            (
                "decideReferral",
                json!({ "patientId": p, "referralId": referral, "decision": "ACCEPTED", "decidedAt": "2016-03-02T00:00:00Z" }),
            ),
            (
                "startEpisode",
                json!({ "patientId": p, "episodeId": episode, "serviceId": r.rph, "referralId": referral, "startedAt": "2016-03-03T00:00:00Z" }),
            ),
            (
                "assignTherapist",
                json!({ "patientId": p, "episodeId": episode, "therapistId": r.b, "assignedAt": "2016-03-03T00:00:00Z" }),
            ),
            ("recordSession", session(p, episode, r.b, "2016-03-04T10:00:00Z")),
            (
                "recordOutcome",
                json!({ "patientId": p, "episodeId": episode, "instrument": "GAD7", "phase": "INTAKE", "items": [1, 2, 1, 2, 1, 2, 1], "measuredAt": "2016-03-04T10:00:00Z" }),
            ),
            (
                "releaseTherapist",
                json!({ "patientId": p, "episodeId": episode, "therapistId": r.b, "reason": "SICK_LEAVE", "patientNotified": true, "releasedAt": "2016-03-05T00:00:00Z" }),
            ),
            (
                "admitPatient",
                json!({ "patientId": p, "admissionId": admission, "serviceId": r.ward, "admittedAt": "2016-03-06T00:00:00Z" }),
            ),
            (
                "dischargePatient",
                json!({ "patientId": p, "admissionId": admission, "dischargedAt": "2016-03-07T00:00:00Z" }),
            ),
            (
                "endEpisode",
                json!({ "patientId": p, "episodeId": episode, "reason": "COMPLETED", "endedAt": "2016-03-08T00:00:00Z" }),
            ),
            ("registerTherapist", json!({ "therapistId": id(), "name": "Ny terapeut" })),
            ("forgetPatient", json!({ "patientId": p })),
        ];
        for (op, input) in steps {
            let before = s.committed().await;
            let (_, v) = s.gql_as(Some(&token), &mutation(op), json!({ "in": input })).await;
            let want = match op {
                "registerTherapist" => ["integration", "admin"].contains(&role),
                "forgetPatient" => role == "admin",
                _ => may,
            };
            assert_eq!(allowed(&v, op), want, "{op} as {role}: {v}");
            assert_eq!(s.committed().await, before + u64::from(want), "{op} as {role}: {v}");
        }
    }
}
