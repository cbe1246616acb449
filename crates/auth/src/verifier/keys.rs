//! Verification keys: a JWKS document parsed into keys pinned to one algorithm each, checked
//! when the verifier is built; the HS256 secret's length rule; the crypto backend.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use forlop_domain::text::quote;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::{AuthError, MIN_HS256_SECRET_LEN};

/// RSA moduli below this are refused when the verifier is built (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;

/// JWKS keys by `kid`, each pinned to one algorithm (RS256 or ES256).
pub(crate) type Keys = HashMap<String, (Algorithm, DecodingKey)>;

/// One key set, as parsed from one JWKS document.
pub(super) struct KeySet {
    /// Counts replacements: a verified token is remembered with the generation it was checked by.
    pub(super) generation: u64,
    pub(super) keys: Keys,
    /// The document the keys were read from; the same document again changes nothing.
    pub(super) document: Option<String>,
}

/// Selects jsonwebtoken's RustCrypto backend explicitly. Its automatic choice panics at first
/// use if another crate in the build also enables the `aws_lc_rs` feature; if some provider was
/// already installed, that one stays.
pub(crate) fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}

pub(crate) fn check_hs256_secret(secret: &[u8]) -> Result<(), AuthError> {
    if secret.len() < MIN_HS256_SECRET_LEN {
        return Err(key_err(&format!("HS256 secret shorter than {MIN_HS256_SECRET_LEN} bytes")));
    }
    Ok(())
}

pub(super) fn key_err(detail: &str) -> AuthError {
    AuthError::KeyMaterial(detail.to_owned())
}

pub(super) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "other",
    }
}

/// Parses a JWKS document into `out`, keeping the keys this crate can verify with.
pub(crate) fn parse_jwks(doc: &str, out: &mut Keys) -> Result<(), AuthError> {
    let value: Value = serde_json::from_str(doc).map_err(|_| key_err("JWKS is not valid JSON"))?;
    let Some(keys) = value.get("keys").and_then(Value::as_array) else {
        return Err(key_err("JWKS has no \"keys\" array"));
    };
    let before = out.len();
    for jwk in keys {
        let Some(jwk) = jwk.as_object() else {
            return Err(key_err("JWKS key is not an object"));
        };
        if let Some((alg, key)) = parse_jwk(jwk)? {
            let kid = match jwk.get("kid") {
                Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
                _ => return Err(key_err("JWKS key without kid")),
            };
            if out.contains_key(&kid) {
                return Err(key_err(&format!("duplicate kid {} in JWKS", quote(&kid))));
            }
            out.insert(kid, (alg, key));
        }
    }
    if out.len() == before {
        return Err(key_err("no usable signing key in JWKS (RS256 or ES256 P-256)"));
    }
    Ok(())
}

/// One JWK: `Ok(None)` if it is not a signing key we support (skipped), an error if it is one
/// but its material is broken.
fn parse_jwk(jwk: &Map<String, Value>) -> Result<Option<(Algorithm, DecodingKey)>, AuthError> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    if member("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let alg = member("alg");
    match member("kty") {
        Some("RSA") => {
            if alg.is_some_and(|a| a != "RS256") {
                return Ok(None);
            }
            reject_private(jwk, &["d", "p", "q", "dp", "dq", "qi"])?;
            let n = b64_member(jwk, "n")?;
            let e = b64_member(jwk, "e")?;
            let public = rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(&n), rsa::BigUint::from_bytes_be(&e))
                .map_err(|_| key_err("invalid RSA public key in JWKS"))?;
            if rsa::traits::PublicKeyParts::n(&public).bits() < MIN_RSA_BITS {
                return Err(key_err("RSA key in JWKS shorter than 2048 bits"));
            }
            Ok(Some((Algorithm::RS256, DecodingKey::from_rsa_raw_components(&n, &e))))
        }
        Some("EC") => {
            if member("crv") != Some("P-256") || alg.is_some_and(|a| a != "ES256") {
                return Ok(None);
            }
            reject_private(jwk, &["d"])?;
            let x = b64_member(jwk, "x")?;
            let y = b64_member(jwk, "y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err(key_err("invalid P-256 public key in JWKS"));
            }
            let mut sec1 = Vec::with_capacity(65);
            sec1.push(0x04);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            // Checks the point is on the curve; jsonwebtoken would only find out per request.
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .map_err(|_| key_err("invalid P-256 public key in JWKS"))?;
            Ok(Some((Algorithm::ES256, DecodingKey::from_ec_der(&sec1))))
        }
        _ => Ok(None),
    }
}

/// A private JWK in the verifier's configuration means a signing key was put somewhere it
/// should not be; refusing it makes the mistake visible.
fn reject_private(jwk: &Map<String, Value>, members: &[&str]) -> Result<(), AuthError> {
    if members.iter().any(|m| jwk.contains_key(*m)) {
        return Err(key_err("JWKS contains private key material"));
    }
    Ok(())
}

fn b64_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, AuthError> {
    let text = jwk.get(name).and_then(Value::as_str).ok_or_else(|| key_err(&format!("JWKS key without {name}")))?;
    // Some publishers pad; RFC 7518 says unpadded. Accept both.
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| key_err(&format!("JWKS key member {name} is not base64url")))
}
