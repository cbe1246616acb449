//! Keys and tokens for tests (feature `testing`). Keys are generated at runtime so no private
//! key is ever committed; nothing here is for production use.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::verifier::ensure_crypto_provider;

/// A 2048-bit RSA key signing RS256 tokens with `kid` in the header.
pub struct RsaTestKey {
    pub kid: String,
    encoding: EncodingKey,
    n: String,
    e: String,
}

impl RsaTestKey {
    pub fn generate(kid: &str) -> Self {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        use rsa::traits::PublicKeyParts as _;
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key generation");
        let der = private.to_pkcs1_der().expect("RSA key encoding");
        RsaTestKey {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            n: URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
            e: URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
        }
    }

    /// The public JWK (`use` sig, `alg` RS256, `kid`).
    pub fn jwk(&self) -> Value {
        json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": self.n, "e": self.e})
    }

    pub fn sign(&self, claims: &Value) -> String {
        sign(Algorithm::RS256, &self.kid, &self.encoding, claims)
    }
}

impl fmt::Debug for RsaTestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaTestKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// A P-256 key signing ES256 tokens with `kid` in the header.
pub struct EcTestKey {
    pub kid: String,
    encoding: EncodingKey,
    x: String,
    y: String,
}

impl EcTestKey {
    pub fn generate(kid: &str) -> Self {
        use p256::pkcs8::EncodePrivateKey as _;
        let secret = p256::SecretKey::random(&mut rand::thread_rng());
        let der = secret.to_pkcs8_der().expect("P-256 key encoding");
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false);
        EcTestKey {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            x: URL_SAFE_NO_PAD.encode(point.x().expect("uncompressed point")),
            y: URL_SAFE_NO_PAD.encode(point.y().expect("uncompressed point")),
        }
    }

    /// The public JWK (`use` sig, `alg` ES256, `crv` P-256, `kid`).
    pub fn jwk(&self) -> Value {
        json!({"kty": "EC", "use": "sig", "alg": "ES256", "crv": "P-256", "kid": self.kid, "x": self.x, "y": self.y})
    }

    pub fn sign(&self, claims: &Value) -> String {
        sign(Algorithm::ES256, &self.kid, &self.encoding, claims)
    }
}

impl fmt::Debug for EcTestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcTestKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    ensure_crypto_provider();
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("test token signing")
}

/// A JWKS document: `{"keys":[...]}`.
pub fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// Standard claims for tests: iss, aud, sub, role, exp = now+3600, iat = now.
pub fn claims(issuer: &str, audience: &str, sub: &str, role: &str) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({"iss": issuer, "aud": audience, "sub": sub, "role": role, "exp": now + 3600, "iat": now})
}

/// Signs `payload`, JSON text kept byte for byte, with HS256 under `secret`: for tokens no
/// serialiser would write, such as one naming a claim twice.
pub fn sign_hs256_text(secret: &[u8], payload: &str) -> String {
    ensure_crypto_provider();
    let raw = serde_json::value::RawValue::from_string(payload.to_owned()).expect("the payload is JSON");
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &raw, &EncodingKey::from_secret(secret))
        .expect("test token signing")
}
