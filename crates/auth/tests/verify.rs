//! Verification end to end: tokens signed with runtime-generated keys, checked by `Verifier`.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use forlop_auth::testing::{claims, jwks, EcTestKey, RsaTestKey};
use forlop_auth::{bearer, mint_hs256, AuthError, ClaimNames, KeySource, Principal, Role, Verifier, VerifierConfig};
use serde_json::{json, Value};

const ISS: &str = "https://helseid-sts.test.nhn.no";
const AUD: &str = "forlop";
const SECRET: &[u8] = b"a-development-secret-of-32-bytes+";
const LEEWAY: u64 = 30;

struct Keys {
    rsa: RsaTestKey,
    ec: EcTestKey,
}

/// One set of keys for the whole binary: RSA generation is the slow part.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys { rsa: RsaTestKey::generate("rsa-1"), ec: EcTestKey::generate("ec-1") })
}

fn config() -> VerifierConfig {
    VerifierConfig {
        issuer: ISS.to_owned(),
        audience: AUD.to_owned(),
        leeway_seconds: LEEWAY,
        claims: ClaimNames::default(),
    }
}

fn jwks_source() -> KeySource {
    KeySource::Jwks(jwks(&[keys().rsa.jwk(), keys().ec.jwk()]))
}

/// HS256 secret and JWKS together.
fn full() -> Verifier {
    Verifier::new(config(), vec![KeySource::Hs256Secret(SECRET.to_vec()), jwks_source()]).unwrap()
}

fn jwks_only() -> Verifier {
    Verifier::new(config(), vec![jwks_source()]).unwrap()
}

fn hs_only() -> Verifier {
    Verifier::new(config(), vec![KeySource::Hs256Secret(SECRET.to_vec())]).unwrap()
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn base() -> Value {
    claims(ISS, AUD, "user-1", "clinician")
}

/// Base claims with `changes` merged in; a `null` removes the claim.
fn with(changes: Value) -> Value {
    let mut c = base();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn hs(c: &Value) -> String {
    mint_hs256(SECRET, c).unwrap()
}

fn rs(c: &Value) -> String {
    keys().rsa.sign(c)
}

fn es(c: &Value) -> String {
    keys().ec.sign(c)
}

/// Verifies `token` and compares the outcome: `Ok(())` for accepted, else the exact error.
#[track_caller]
fn check(verifier: &Verifier, token: &str, expect: Result<(), AuthError>) {
    let got = verifier.verify(token).map(|_| ());
    assert_eq!(got, expect, "token {token}");
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn valid_tokens_of_each_algorithm() {
    let v = full();
    for token in [hs(&base()), rs(&base()), es(&base())] {
        let p = v.verify(&token).unwrap();
        assert_eq!(p.sub, "user-1");
        assert_eq!(p.roles, vec![Role::Clinician]);
        assert!(p.services.is_empty());
        assert_eq!((p.name, p.national_id, p.hpr_number), (None, None, None));
    }
}

#[test]
fn time_claims() {
    let v = full();
    let t = now();
    let cases = [
        (json!({"exp": t - 3600}), Err(AuthError::Expired)),
        (json!({"exp": t - 10}), Ok(())), // within leeway
        (json!({"exp": t - LEEWAY as i64 - 5}), Err(AuthError::Expired)),
        (json!({"nbf": t + 3600}), Err(AuthError::NotYetValid)),
        (json!({"nbf": t + 10}), Ok(())), // within leeway
        (json!({"nbf": t - 10}), Ok(())),
        (json!({"exp": null}), Err(AuthError::MissingClaim("exp".into()))),
        (json!({"exp": "tomorrow"}), Err(AuthError::MissingClaim("exp".into()))),
        (json!({"nbf": "now"}), Err(AuthError::InvalidClaim("nbf".into()))),
    ];
    for (changes, expect) in cases {
        let c = with(changes);
        check(&v, &hs(&c), expect.clone());
        check(&v, &rs(&c), expect.clone());
        check(&v, &es(&c), expect);
    }
}

#[test]
fn issuer_and_audience() {
    let v = full();
    let cases = [
        (json!({"iss": "https://evil.example"}), Err(AuthError::WrongIssuer)),
        (json!({"iss": [ISS, "https://other"]}), Err(AuthError::WrongIssuer)), // must be equal
        (json!({"iss": null}), Err(AuthError::MissingClaim("iss".into()))),
        (json!({"aud": "someone-else"}), Err(AuthError::WrongAudience)),
        (json!({"aud": ["someone-else", "another"]}), Err(AuthError::WrongAudience)),
        (json!({"aud": ["someone-else", AUD]}), Ok(())),
        (json!({"aud": [AUD]}), Ok(())),
        (json!({"aud": null}), Err(AuthError::MissingClaim("aud".into()))),
    ];
    for (changes, expect) in cases {
        let c = with(changes);
        check(&v, &rs(&c), expect.clone());
        check(&v, &hs(&c), expect);
    }
}

#[test]
fn subject_is_required_and_non_empty() {
    let v = full();
    let missing = Err(AuthError::MissingClaim("sub".into()));
    check(&v, &es(&with(json!({"sub": null}))), missing.clone());
    check(&v, &es(&with(json!({"sub": ""}))), missing.clone());
    check(&v, &hs(&with(json!({"sub": 42}))), missing);
}

#[test]
fn tampered_payload_is_refused() {
    let v = full();
    let forged_payload = b64(&with(json!({"sub": "admin", "role": "admin"})));
    for token in [hs(&base()), rs(&base()), es(&base())] {
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        check(&v, &tampered, Err(AuthError::BadSignature));
        let no_signature = format!("{}.{}.", parts[0], parts[1]);
        check(&v, &no_signature, Err(AuthError::BadSignature));
    }
    // The right kid, a different key.
    let impostor = RsaTestKey::generate("rsa-1");
    check(&v, &impostor.sign(&base()), Err(AuthError::BadSignature));
    let impostor = EcTestKey::generate("ec-1");
    check(&v, &impostor.sign(&base()), Err(AuthError::BadSignature));
    let other_secret = mint_hs256(b"another-development-secret-32-bytes", &base()).unwrap();
    check(&v, &other_secret, Err(AuthError::BadSignature));
}

#[test]
fn alg_none_is_refused() {
    let payload = b64(&base());
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "None", "typ": "JWT"}),
        json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"}),
    ] {
        let token = format!("{}.{}.", b64(&header), payload);
        for v in [full(), jwks_only(), hs_only()] {
            check(&v, &token, Err(AuthError::AlgorithmNotAllowed));
        }
    }
}

#[test]
fn key_selection_by_alg_and_kid() {
    let v = full();
    let c = base();
    let sign = |alg, kid: Option<&str>, key: &jsonwebtoken::EncodingKey| {
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &c, key).unwrap()
    };
    let rsa_token = rs(&c);
    let rsa_parts: Vec<&str> = rsa_token.split('.').collect();
    let reheader = |header: Value| format!("{}.{}.{}", b64(&header), rsa_parts[1], rsa_parts[2]);

    check(&v, &reheader(json!({"alg": "RS256", "kid": "nope"})), Err(AuthError::UnknownKeyId));
    check(&v, &reheader(json!({"alg": "RS256"})), Err(AuthError::MissingKeyId));
    // The RSA key is pinned to RS256; the EC key to ES256.
    check(&v, &reheader(json!({"alg": "ES256", "kid": "rsa-1"})), Err(AuthError::AlgorithmNotAllowed));
    check(&v, &reheader(json!({"alg": "RS256", "kid": "ec-1"})), Err(AuthError::AlgorithmNotAllowed));
    check(&v, &reheader(json!({"alg": "PS256", "kid": "rsa-1"})), Err(AuthError::AlgorithmNotAllowed));
    check(&v, &reheader(json!({"alg": "RS512", "kid": "rsa-1"})), Err(AuthError::AlgorithmNotAllowed));
    // HS256 ignores kid.
    let hs_with_kid =
        sign(jsonwebtoken::Algorithm::HS256, Some("whatever"), &jsonwebtoken::EncodingKey::from_secret(SECRET));
    check(&v, &hs_with_kid, Ok(()));
    // Other HMAC variants are not configured.
    let hs512 = sign(jsonwebtoken::Algorithm::HS512, None, &jsonwebtoken::EncodingKey::from_secret(SECRET));
    check(&v, &hs512, Err(AuthError::AlgorithmNotAllowed));

    // A source only handles its own algorithms.
    check(&jwks_only(), &hs(&c), Err(AuthError::AlgorithmNotAllowed));
    check(&hs_only(), &rs(&c), Err(AuthError::AlgorithmNotAllowed));
    check(&hs_only(), &es(&c), Err(AuthError::AlgorithmNotAllowed));
}

/// The classic confusion: an attacker signs HS256 with the (public) RSA key and names its kid,
/// hoping the verifier uses the public key bytes as the HMAC secret.
#[test]
fn rsa_public_key_as_hmac_secret_is_refused() {
    let jwk = keys().rsa.jwk();
    let n = jwk["n"].as_str().unwrap();
    let candidates: Vec<Vec<u8>> = vec![
        URL_SAFE_NO_PAD.decode(n).unwrap(),
        n.as_bytes().to_vec(),
        jwk.to_string().into_bytes(),
        jwks(std::slice::from_ref(&jwk)).into_bytes(),
    ];
    for public_bytes in candidates {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("rsa-1".to_owned());
        let token =
            jsonwebtoken::encode(&header, &base(), &jsonwebtoken::EncodingKey::from_secret(&public_bytes)).unwrap();
        check(&jwks_only(), &token, Err(AuthError::AlgorithmNotAllowed));
        check(&full(), &token, Err(AuthError::BadSignature));
    }
}

#[test]
fn malformed_tokens() {
    let v = full();
    let good = rs(&base());
    let parts: Vec<&str> = good.split('.').collect();
    let long = "a".repeat(20_000);
    for token in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.b.c",
        &format!("{}.{}", parts[0], parts[1]),
        &format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
        &format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("not json"), parts[1], parts[2]),
        &format!("{}.{}.{}", b64(&json!({"typ": "JWT"})), parts[1], parts[2]),
        &format!("{}.{}.{}", b64(&json!({"alg": "RS256", "kid": 7})), parts[1], parts[2]),
        &long,
    ] {
        check(&v, token, Err(AuthError::Malformed));
    }
}

#[test]
fn roles() {
    let v = full();
    let roles = |role: Value| v.verify(&hs(&with(json!({ "role": role })))).map(|p| p.roles);
    assert_eq!(roles(json!("admin")), Ok(vec![Role::Admin]));
    assert_eq!(
        roles(json!(["patient", "auditor", "clinician", "auditor"])),
        Ok(vec![Role::Clinician, Role::Auditor, Role::Patient])
    );
    assert_eq!(roles(json!(["superuser", "analyst", "Admin"])), Ok(vec![Role::Analyst]));
    assert_eq!(roles(json!("superuser")), Ok(vec![]));
    assert_eq!(roles(json!([])), Ok(vec![]));
    // Space-separated is not a list.
    assert_eq!(roles(json!("admin clinician")), Ok(vec![]));
    assert_eq!(roles(json!(5)), Err(AuthError::InvalidClaim("role".into())));
    assert_eq!(roles(json!(["admin", 5])), Err(AuthError::InvalidClaim("role".into())));
    let absent = v.verify(&hs(&with(json!({"role": null})))).unwrap();
    assert!(absent.roles.is_empty());
    assert_eq!(absent.primary_role(), None);
}

#[test]
fn services() {
    let v = full();
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    let services = |s: Value| v.verify(&es(&with(json!({ "services": s })))).map(|p| p.services);
    let mut sorted = vec![a, b];
    sorted.sort();
    assert_eq!(services(json!([a.to_string(), b.to_string(), a.to_string()])), Ok(sorted));
    assert_eq!(services(json!([])), Ok(vec![]));
    let invalid = Err(AuthError::InvalidClaim("services".into()));
    assert_eq!(services(json!([a.to_string(), "not-a-uuid"])), invalid);
    assert_eq!(services(json!([a.to_string(), 3])), invalid);
    assert_eq!(services(json!(a.to_string())), invalid);
}

#[test]
fn identity_claims() {
    let v = full();
    let hpr = "helseid://claims/hpr/hpr_number";
    let p = v.verify(&rs(&with(json!({"name": "Kari Nordmann", "pid": "01017012345", hpr: "9144900"})))).unwrap();
    assert_eq!(p.name.as_deref(), Some("Kari Nordmann"));
    assert_eq!(p.national_id.as_deref(), Some("01017012345"));
    assert_eq!(p.hpr_number.as_deref(), Some("9144900"));

    let p = v.verify(&rs(&with(json!({ hpr: 9144900 })))).unwrap();
    assert_eq!(p.hpr_number.as_deref(), Some("9144900"));

    check(&v, &rs(&with(json!({ hpr: [1] }))), Err(AuthError::InvalidClaim(hpr.into())));
    check(&v, &rs(&with(json!({ hpr: -3 }))), Err(AuthError::InvalidClaim(hpr.into())));
    check(&v, &rs(&with(json!({"pid": 1017012345}))), Err(AuthError::InvalidClaim("pid".into())));
    check(&v, &rs(&with(json!({"name": {"given": "Kari"}}))), Err(AuthError::InvalidClaim("name".into())));
}

#[test]
fn claim_names_are_configurable() {
    let config = VerifierConfig {
        claims: ClaimNames {
            role: "forlop/roles".into(),
            services: "forlop/services".into(),
            pid: "helseid://claims/identity/pid".into(),
        },
        ..config()
    };
    let v = Verifier::new(config, vec![KeySource::Hs256Secret(SECRET.to_vec())]).unwrap();
    let service = uuid::Uuid::new_v4();
    let c = with(json!({
        "role": "admin",
        "pid": "01017000000",
        "forlop/roles": ["analyst"],
        "forlop/services": [service.to_string()],
        "helseid://claims/identity/pid": "01017012345",
    }));
    let p = v.verify(&hs(&c)).unwrap();
    assert_eq!(p.roles, vec![Role::Analyst]);
    assert_eq!(p.services, vec![service]);
    assert_eq!(p.national_id.as_deref(), Some("01017012345"));
}

#[test]
fn debug_output_hides_secrets_and_national_id() {
    let v = full();
    let p = v.verify(&hs(&with(json!({"pid": "01017012345"})))).unwrap();
    let debug = format!("{p:?}");
    assert!(!debug.contains("01017012345"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    assert!(!format!("{:?}", Principal { national_id: None, ..p }).contains("redacted"));

    let secret_text = std::str::from_utf8(SECRET).unwrap();
    for debug in [format!("{v:?}"), format!("{:?}", KeySource::Hs256Secret(SECRET.to_vec()))] {
        assert!(!debug.contains(secret_text), "{debug}");
        assert!(!debug.contains(&format!("{:?}", SECRET)), "{debug}");
    }
    assert!(format!("{v:?}").contains("rsa-1"));
}

#[test]
fn error_messages_never_echo_the_token() {
    let v = full();
    let token = hs(&with(json!({"iss": "https://evil.example", "pid": "01017012345"})));
    let err = v.verify(&token).unwrap_err();
    let msg = err.to_string();
    assert_eq!(msg, "wrong issuer");
    assert!(!msg.contains("evil") && !msg.contains("01017012345"));
    assert_eq!(AuthError::Expired.to_string(), "token expired");
    assert_eq!(AuthError::BadSignature.to_string(), "token signature invalid");
}

#[test]
fn verifier_construction_errors() {
    let bad = |keys: Vec<KeySource>| match Verifier::new(config(), keys) {
        Err(AuthError::KeyMaterial(detail)) => detail,
        other => panic!("expected bad key material, got {other:?}"),
    };
    let rsa = keys().rsa.jwk();
    let ec = keys().ec.jwk();
    let with_member = |jwk: &Value, k: &str, v: Value| {
        let mut jwk = jwk.clone();
        if v.is_null() {
            jwk.as_object_mut().unwrap().remove(k);
        } else {
            jwk[k] = v;
        }
        jwk
    };
    let doc = |keys: &[Value]| KeySource::Jwks(jwks(keys));

    bad(vec![]);
    bad(vec![KeySource::Jwks("not json".into())]);
    bad(vec![KeySource::Jwks("{}".into())]);
    bad(vec![doc(&[])]);
    bad(vec![KeySource::Hs256Secret(b"short".to_vec())]);
    bad(vec![KeySource::Hs256Secret(SECRET.to_vec()), KeySource::Hs256Secret(SECRET.to_vec())]);
    assert!(bad(vec![doc(&[with_member(&rsa, "kid", Value::Null)])]).contains("kid"));
    bad(vec![doc(&[rsa.clone(), with_member(&ec, "kid", json!("rsa-1"))])]);
    bad(vec![doc(std::slice::from_ref(&rsa)), doc(std::slice::from_ref(&rsa))]);
    bad(vec![doc(&[with_member(&rsa, "n", json!("***"))])]);
    bad(vec![doc(&[with_member(&rsa, "n", json!(URL_SAFE_NO_PAD.encode([0xC3u8; 128])))])]); // 1024-bit
    bad(vec![doc(&[with_member(&ec, "x", json!(URL_SAFE_NO_PAD.encode([1u8; 32])))])]); // off the curve
    bad(vec![doc(&[with_member(&ec, "d", json!(URL_SAFE_NO_PAD.encode([1u8; 32])))])]);
    // Nothing usable: encryption keys, other algorithms and curves, other key types.
    let unusable = [
        with_member(&rsa, "use", json!("enc")),
        with_member(&rsa, "alg", json!("PS256")),
        with_member(&ec, "crv", json!("P-384")),
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
        json!({"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}),
    ];
    assert!(bad(vec![doc(&unusable)]).contains("no usable"));

    // Unusable keys beside a usable one are skipped, and their kids are unknown.
    let mut mixed = unusable.to_vec();
    mixed.push(with_member(&ec, "alg", Value::Null)); // alg defaults from kty/crv
    mixed.push(with_member(&rsa, "use", Value::Null));
    let v = Verifier::new(config(), vec![doc(&mixed)]).unwrap();
    check(&v, &rs(&base()), Ok(()));
    check(&v, &es(&base()), Ok(()));
    let ed =
        jsonwebtoken::Header { kid: Some("sym".into()), ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256) };
    let parts: Vec<String> = rs(&base()).split('.').map(str::to_owned).collect();
    let token = format!("{}.{}.{}", b64(&serde_json::to_value(&ed).unwrap()), parts[1], parts[2]);
    check(&v, &token, Err(AuthError::UnknownKeyId));

    // Messages carry no key bytes.
    let detail = bad(vec![KeySource::Hs256Secret(b"short-secret".to_vec())]);
    assert!(!detail.contains("short-secret"));
}

#[test]
fn verifier_is_cheap_to_clone_and_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Verifier>();
    let v = full();
    let w = v.clone();
    check(&w, &rs(&base()), Ok(()));
}

#[test]
fn mint_refuses_short_secrets() {
    assert!(matches!(mint_hs256(b"short", &base()), Err(AuthError::KeyMaterial(_))));
}

#[test]
fn bearer_header() {
    assert_eq!(bearer("Bearer abc"), Some("abc"));
    assert_eq!(bearer("bearer abc"), Some("abc"));
    assert_eq!(bearer("BEARER   abc  "), Some("abc"));
    assert_eq!(bearer("  Bearer\tabc.def.ghi\n"), Some("abc.def.ghi"));
    assert_eq!(bearer("Bearer"), None);
    assert_eq!(bearer("Bearer   "), None);
    assert_eq!(bearer("Basic abc"), None);
    assert_eq!(bearer("Bearerabc"), None);
    assert_eq!(bearer("Bearer a b"), None);
    assert_eq!(bearer(""), None);
}

#[test]
fn role_names_and_ranking() {
    for role in Role::ALL {
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        assert_eq!(role.to_string(), role.as_str());
        assert_eq!(serde_json::to_value(role).unwrap(), json!(role.as_str()));
    }
    assert!("Admin".parse::<Role>().is_err());
    assert!("".parse::<Role>().is_err());

    let with_roles = |roles: &[Role]| Principal { roles: roles.to_vec(), ..Principal::anonymous_admin() };
    let order = [Role::Admin, Role::Auditor, Role::Clinician, Role::Integration, Role::Analyst, Role::Patient];
    for (i, top) in order.iter().enumerate() {
        assert_eq!(with_roles(&order[i..]).primary_role(), Some(*top));
    }
    assert_eq!(with_roles(&[Role::Patient, Role::Analyst]).primary_role(), Some(Role::Analyst));

    let anon = Principal::anonymous_admin();
    assert_eq!(anon.sub, "anonymous");
    assert_eq!(anon.roles, vec![Role::Admin]);
    assert!(anon.has(Role::Admin) && !anon.has(Role::Clinician));
}
