//! `Verifier::verify_until`: how long a token's authority lasts, for connections that outlive
//! the request that presented it.

use std::time::{Duration, UNIX_EPOCH};

use forlop_auth::{mint_hs256, AuthError, ClaimNames, KeySource, Verifier, VerifierConfig};
use serde_json::json;

const SECRET: &[u8] = b"a-development-secret-of-32-bytes+";

fn verifier(leeway_seconds: u64) -> Verifier {
    let config =
        VerifierConfig { issuer: "iss".into(), audience: "aud".into(), leeway_seconds, claims: ClaimNames::default() };
    Verifier::new(config, vec![KeySource::Hs256Secret(SECRET.to_vec())]).unwrap()
}

fn token(exp: serde_json::Value) -> String {
    mint_hs256(SECRET, &json!({"iss": "iss", "aud": "aud", "sub": "s", "role": "admin", "exp": exp})).unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[test]
fn a_token_lasts_until_its_exp_plus_the_leeway() {
    let exp = now() + 600;
    for leeway in [0, 30] {
        let v = verifier(leeway);
        assert_eq!(v.leeway(), Duration::from_secs(leeway));
        let t = token(json!(exp));
        let (principal, until) = v.verify_until(&t).unwrap();
        assert_eq!(principal.sub, "s");
        assert_eq!(until, UNIX_EPOCH + Duration::from_secs(exp + leeway), "leeway {leeway}");
        // Remembered, the token answers the same.
        assert_eq!(v.verify_until(&t).unwrap().1, until);
    }
}

#[test]
fn a_token_past_its_exp_but_within_the_leeway_lasts_only_the_rest_of_the_leeway() {
    let v = verifier(30);
    let exp = now() - 10;
    let (_, until) = v.verify_until(&token(json!(exp))).unwrap();
    assert_eq!(until, UNIX_EPOCH + Duration::from_secs(exp + 30));
    assert_eq!(verifier(5).verify_until(&token(json!(exp))).map(|_| ()), Err(AuthError::Expired));
}

#[test]
fn an_absurd_exp_does_not_overflow() {
    let v = verifier(30);
    let (_, until) = v.verify_until(&token(json!(i64::MAX))).unwrap();
    assert!(until > UNIX_EPOCH + Duration::from_secs(now() + 100 * 365 * 86_400), "{until:?}");
}
