//! A token whose header or claims name a member twice has no one meaning (which of the two a
//! reader takes depends on its JSON parser), so it is refused, whichever member it is.
//!
//! The payloads are written out as JSON text, since no serialiser would repeat a key, and
//! signed as they are (`testing::sign_hs256_text`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use forlop_auth::testing::sign_hs256_text;
use forlop_auth::{AuthError, ClaimNames, KeySource, Role, Verifier, VerifierConfig};

const ISS: &str = "forlop-test";
const AUD: &str = "forlop";
const SECRET: &[u8] = b"a-development-secret-of-32-bytes+";

fn verifier() -> Verifier {
    let config = VerifierConfig {
        issuer: ISS.to_owned(),
        audience: AUD.to_owned(),
        leeway_seconds: 30,
        claims: ClaimNames::default(),
    };
    Verifier::new(config, vec![KeySource::Hs256Secret(SECRET.to_vec())]).unwrap()
}

/// Signs `payload` (JSON text, kept byte for byte) with HS256 under the test secret.
fn signed(payload: &str) -> String {
    sign_hs256_text(SECRET, payload)
}

/// The standard claims as JSON text, `extra` (members, comma-separated) appended.
fn payload(extra: &str) -> String {
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"user-1","exp":{exp}{extra}}}"#)
}

#[test]
fn a_role_given_twice_is_refused_though_either_alone_is_accepted() {
    let v = verifier();
    // The last of the two would win in a map: an analyst token that reads as an admin's.
    let twice = payload(r#","role":"analyst","role":"admin""#);
    assert_eq!(v.verify(&signed(&twice)), Err(AuthError::DuplicateClaim("role".into())));
    assert_eq!(AuthError::DuplicateClaim("role".into()).to_string(), "duplicate claim \"role\"");

    let analyst = v.verify(&signed(&payload(r#","role":"analyst""#))).expect("one role is accepted");
    assert_eq!(analyst.roles, vec![Role::Analyst]);
    let both = v.verify(&signed(&payload(r#","role":["analyst","admin"]"#))).expect("a list of roles is accepted");
    assert_eq!(both.roles, vec![Role::Analyst, Role::Admin]);
}

#[test]
fn any_member_given_twice_is_refused_and_named() {
    let v = verifier();
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    let cases = [
        // The registered claims jsonwebtoken itself checks …
        (format!(r#"{{"iss":"{ISS}","aud":"{AUD}","aud":"other","sub":"u","exp":{exp}}}"#), "aud"),
        (format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","sub":"v","exp":{exp}}}"#), "sub"),
        (format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","exp":{exp},"exp":{}}}"#, exp + 1), "exp"),
        (format!(r#"{{"iss":"{ISS}","iss":"{ISS}","aud":"{AUD}","sub":"u","exp":{exp}}}"#), "iss"),
        // … and the ones this crate maps, or does not know at all.
        (payload(r#","pid":"1","pid":"2""#), "pid"),
        (payload(r#","services":[],"services":[]"#), "services"),
        (
            payload(r#","helseid://claims/hpr/hpr_number":"1","helseid://claims/hpr/hpr_number":"2""#),
            "helseid://claims/hpr/hpr_number",
        ),
        (payload(r#","x-unknown":1,"x-unknown":1"#), "x-unknown"),
        // The same name written with an escape is the same name.
        (payload(r#","role":"analyst","r\u006fle":"admin""#), "role"),
        // Inside a claim's own object, at any depth.
        (payload(r#","cnf":{"jkt":"a","jkt":"b"}"#), "jkt"),
        (payload(r#","act":[{"sub":"a"},{"deep":{"k":1,"k":2}}]"#), "k"),
    ];
    for (text, name) in cases {
        assert_eq!(v.verify(&signed(&text)), Err(AuthError::DuplicateClaim(name.into())), "{text}");
    }
}

#[test]
fn names_that_differ_only_in_case_or_by_nesting_are_not_duplicates() {
    let v = verifier();
    for extra in [r#","role":"analyst","Role":"admin""#, r#","role":"analyst","cnf":{"role":"x"}"#] {
        let p = v.verify(&signed(&payload(extra))).unwrap_or_else(|e| panic!("{extra}: {e}"));
        assert_eq!(p.roles, vec![Role::Analyst], "{extra}");
    }
}

#[test]
fn a_long_duplicated_name_is_quoted_clipped() {
    let v = verifier();
    let name = "n".repeat(500);
    let text = payload(&format!(r#","{name}":1,"{name}":2"#));
    assert_eq!(v.verify(&signed(&text)), Err(AuthError::DuplicateClaim("n".repeat(64))));
}

#[test]
fn a_header_naming_alg_or_kid_twice_is_malformed() {
    let v = verifier();
    let body = URL_SAFE_NO_PAD.encode(payload(r#","role":"admin""#));
    let signature = URL_SAFE_NO_PAD.encode([0u8; 32]);
    for header in [r#"{"alg":"none","alg":"HS256","typ":"JWT"}"#, r#"{"alg":"HS256","kid":"a","kid":"b"}"#] {
        let token = format!("{}.{body}.{signature}", URL_SAFE_NO_PAD.encode(header));
        assert_eq!(v.verify(&token), Err(AuthError::Malformed), "{header}");
    }
}

#[test]
fn a_payload_that_is_not_one_json_value_stays_malformed() {
    let v = verifier();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let signature = URL_SAFE_NO_PAD.encode([0u8; 32]);
    for text in [r#"{"sub":"u""#, r#"{"sub":"u"} {"sub":"v"}"#, "not json"] {
        let token = format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(text));
        assert_eq!(v.verify(&token), Err(AuthError::Malformed), "{text}");
    }
}
