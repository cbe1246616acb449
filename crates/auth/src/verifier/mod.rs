//! Token verification against configured keys.

mod claims;
mod config;
mod header;
mod keys;
mod refresh;
mod unique_names;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::{AuthError, Principal};
use claims::principal_from_claims;
pub use config::{ClaimNames, KeySource, VerifierConfig};
use header::peek_header;
use keys::{alg_name, key_err, KeySet};
pub(crate) use keys::{check_hs256_secret, ensure_crypto_provider, parse_jwks};
use unique_names::check_unique_names;

/// Tokens longer than this are refused unparsed, bounding the work an unauthenticated caller
/// can cause (real access tokens are a few KiB).
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Verified tokens remembered, so a client reusing its token is not re-verified on every
/// request; when full, the cache starts over.
const CACHE_ENTRIES: usize = 4096;

/// Verifies bearer tokens. Cheap to clone: the keys are shared.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: VerifierConfig,
    hs256: Option<DecodingKey>,
    /// The JWKS keys in use. Read without a lock on every verification; replaced whole when
    /// the identity provider's set is fetched again (`jwks_source`).
    jwks: ArcSwap<KeySet>,
    /// Tokens whose signature and claims were checked, by their exact text, with the key set
    /// they were checked against: a hit under the same set needs only its time bounds checked
    /// again, one under an older set is verified in full (its key may have been withdrawn).
    verified: Mutex<HashMap<Box<str>, Verified>>,
    /// Where the key set is fetched again, when it comes from the identity provider.
    pub(crate) remote: Option<Arc<crate::key_refresh::Refresh>>,
}

#[derive(Clone)]
struct Verified {
    principal: Principal,
    exp: i64,
    nbf: Option<i64>,
    generation: u64,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.inner.jwks.load();
        let mut kids: Vec<(&str, Algorithm)> = set.keys.iter().map(|(kid, (alg, _))| (kid.as_str(), *alg)).collect();
        kids.sort_unstable_by_key(|(kid, _)| *kid);
        f.debug_struct("Verifier")
            .field("config", &self.inner.config)
            .field("hs256_secret", &self.inner.hs256.as_ref().map(|_| "<redacted>"))
            .field("jwks_keys", &kids)
            .finish()
    }
}

impl Verifier {
    /// Builds a verifier from one or more key sources.
    ///
    /// Every usable key is parsed and checked here, so a bad deployment fails at startup rather
    /// than on the first request. JWKS keys with `use` other than `sig`, or whose kty, crv or
    /// alg this crate does not verify (anything but RS256 and ES256/P-256), are skipped, as an
    /// identity provider may publish such keys alongside its signing keys; it is an error if no
    /// key at all remains. Also refused: a usable JWKS key without `kid`, a duplicate `kid`,
    /// a JWK carrying private members, RSA moduli under 2048 bits, and more than one HS256
    /// secret.
    pub fn new(config: VerifierConfig, keys: Vec<KeySource>) -> Result<Verifier, AuthError> {
        Verifier::build(config, keys, None)
    }

    pub(crate) fn build(
        config: VerifierConfig,
        keys: Vec<KeySource>,
        remote: Option<Arc<crate::key_refresh::Refresh>>,
    ) -> Result<Verifier, AuthError> {
        ensure_crypto_provider();
        let mut hs256 = None;
        let mut jwks = HashMap::new();
        let mut document = None;
        for source in keys {
            match source {
                KeySource::Hs256Secret(secret) => {
                    check_hs256_secret(&secret)?;
                    if hs256.replace(DecodingKey::from_secret(&secret)).is_some() {
                        return Err(key_err("more than one HS256 secret"));
                    }
                }
                KeySource::Jwks(doc) => {
                    parse_jwks(&doc, &mut jwks)?;
                    document = Some(doc);
                }
            }
        }
        if hs256.is_none() && jwks.is_empty() {
            return Err(key_err("no usable key (HS256 secret, or RS256/ES256 signing key in a JWKS)"));
        }
        let jwks = ArcSwap::from_pointee(KeySet { generation: 0, keys: jwks, document });
        Ok(Verifier { inner: Arc::new(Inner { config, hs256, jwks, verified: Mutex::default(), remote }) })
    }

    /// Verifies `token` (without the "Bearer " prefix) and builds its [`Principal`].
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_at(token, unix_now()).map(|v| v.principal)
    }

    /// [`Verifier::verify`], also answering until when the token is accepted: its `exp` plus the
    /// configured leeway. Whatever outlives one request on the strength of the token (a
    /// WebSocket's subscriptions, a long upload) must end then, as a new request with the same
    /// token would be refused from that moment.
    pub fn verify_until(&self, token: &str) -> Result<(Principal, SystemTime), AuthError> {
        let verified = self.verify_at(token, unix_now())?;
        let until = verified.exp.saturating_add(self.leeway_unix_seconds());
        Ok((verified.principal, unix_time(until)))
    }

    /// The clock skew tolerated on `exp` and `nbf` (`--leeway-seconds`).
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.inner.config.leeway_seconds)
    }

    /// The leeway as Unix seconds are counted, for arithmetic on `exp` and `nbf`.
    fn leeway_unix_seconds(&self) -> i64 {
        i64::try_from(self.inner.config.leeway_seconds).unwrap_or(i64::MAX)
    }

    /// The token checked at `now` (Unix seconds): a remembered token's `exp` and `nbf` are
    /// checked again against it, anything else is verified in full.
    fn verify_at(&self, token: &str, now: i64) -> Result<Verified, AuthError> {
        let inner = &*self.inner;
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let leeway = self.leeway_unix_seconds();
        let generation = inner.jwks.load().generation;
        if let Some(known) =
            inner.verified.lock().unwrap_or_else(|p| p.into_inner()).get(token).filter(|k| k.generation == generation)
        {
            if now > known.exp.saturating_add(leeway) {
                return Err(AuthError::Expired);
            }
            if known.nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
                return Err(AuthError::NotYetValid);
            }
            return Ok(known.clone());
        }
        let verified = self.verify_signed(token)?;
        let mut cache = inner.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(token.into(), verified.clone());
        Ok(verified)
    }

    /// Full verification: signature, issuer, audience and time bounds.
    fn verify_signed(&self, token: &str) -> Result<Verified, AuthError> {
        let inner = &*self.inner;
        let header = peek_header(token)?;
        let set = inner.jwks.load();
        // jsonwebtoken reads the claims it checks (exp, aud, …) into a struct, which refuses a
        // member given twice, but the rest through a map, where the last of two wins: a token
        // saying `role` twice would mean what this crate reads, not what its issuer may have
        // meant or another reader of it understands. A JSON text with a name twice is refused
        // whatever the name (RFC 7519 §4: "MUST either reject … or use a JSON parser that
        // returns only the lexically last duplicate"; we reject).
        let payload = token.split('.').nth(1).ok_or(AuthError::Malformed)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| AuthError::Malformed)?;
        check_unique_names(&payload)?;

        // Key selection by the (still untrusted) header. The algorithm checked is always the
        // key's own, so a token cannot choose how a key is used.
        let (alg, key) = match header.alg.as_str() {
            "HS256" => match &inner.hs256 {
                Some(key) => (Algorithm::HS256, key),
                None => return Err(AuthError::AlgorithmNotAllowed),
            },
            "RS256" | "ES256" if !set.keys.is_empty() => {
                let kid = header.kid.ok_or(AuthError::MissingKeyId)?;
                let (key_alg, key) = set.keys.get(&kid).ok_or(AuthError::UnknownKeyId)?;
                if alg_name(*key_alg) != header.alg {
                    return Err(AuthError::AlgorithmNotAllowed);
                }
                (*key_alg, key)
            }
            _ => return Err(AuthError::AlgorithmNotAllowed),
        };

        let mut validation = Validation::new(alg);
        validation.leeway = inner.config.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&inner.config.issuer]);
        validation.set_audience(&[&inner.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);

        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|e| map_jwt_error(e.into_kind()))?;
        let principal = principal_from_claims(&data.claims, &inner.config)?;
        // jsonwebtoken has checked both to be numbers (exp is required).
        let seconds = |claim: &str| data.claims.get(claim).and_then(Value::as_f64).map(|v| v as i64);
        let exp = seconds("exp").ok_or_else(|| AuthError::InvalidClaim("exp".into()))?;
        Ok(Verified { principal, exp, nbf: seconds("nbf"), generation: set.generation })
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Unix seconds as a time, clamped to what the platform's clock can hold (a token's `exp` is
/// the issuer's choice, and may be absurd either way).
fn unix_time(seconds: i64) -> SystemTime {
    let offset = Duration::from_secs(seconds.unsigned_abs());
    let far = || UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 64);
    if seconds >= 0 {
        UNIX_EPOCH.checked_add(offset).unwrap_or_else(far)
    } else {
        UNIX_EPOCH.checked_sub(offset).unwrap_or(UNIX_EPOCH)
    }
}

fn map_jwt_error(kind: ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::MissingAlgorithm => {
            AuthError::AlgorithmNotAllowed
        }
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim),
        ErrorKind::InvalidClaimFormat(claim) => AuthError::InvalidClaim(claim),
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            key_err("key unusable for verification")
        }
        _ => AuthError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-development-secret-of-32-bytes+";

    fn verifier() -> Verifier {
        let config = VerifierConfig {
            issuer: "iss".into(),
            audience: "aud".into(),
            leeway_seconds: 30,
            claims: ClaimNames::default(),
        };
        Verifier::new(config, vec![KeySource::Hs256Secret(SECRET.to_vec())]).unwrap()
    }

    fn token(exp: i64, nbf: i64) -> String {
        let claims =
            serde_json::json!({"iss": "iss", "aud": "aud", "sub": "s", "role": "admin", "exp": exp, "nbf": nbf});
        crate::mint_hs256(SECRET, &claims).unwrap()
    }

    #[test]
    fn a_remembered_token_is_still_held_to_its_time_bounds() {
        let v = verifier();
        let now = unix_now();
        let t = token(now + 60, now - 5);
        assert_eq!(v.verify_at(&t, now).unwrap().principal.sub, "s");
        assert!(v.inner.verified.lock().unwrap().contains_key(t.as_str()), "verified token remembered");
        assert_eq!(v.verify_at(&t, now + 60).unwrap().principal.sub, "s", "within the leeway");
        assert!(matches!(v.verify_at(&t, now + 91), Err(AuthError::Expired)));
        assert!(matches!(v.verify_at(&t, now - 40), Err(AuthError::NotYetValid)));
    }

    #[test]
    fn a_replaced_key_set_verifies_the_new_keys_and_no_longer_the_withdrawn_ones() {
        use crate::testing::{claims, jwks, EcTestKey};
        let (a, b) = (EcTestKey::generate("a"), EcTestKey::generate("b"));
        let config = VerifierConfig {
            issuer: "iss".into(),
            audience: "aud".into(),
            leeway_seconds: 30,
            claims: ClaimNames::default(),
        };
        let v = Verifier::new(config, vec![KeySource::Jwks(jwks(&[a.jwk()]))]).unwrap();
        let clone = v.clone();
        let (by_a, by_b) = (a.sign(&claims("iss", "aud", "s", "admin")), b.sign(&claims("iss", "aud", "s", "admin")));
        assert_eq!(v.verify(&by_a).unwrap().sub, "s");
        assert!(matches!(v.verify(&by_b), Err(AuthError::UnknownKeyId)));

        // Documents that are no usable set change nothing.
        for bad in ["not json", "{\"keys\":[]}", "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"x\"}]}"] {
            assert!(matches!(v.replace_jwks(bad), Err(AuthError::KeyMaterial(_))), "{bad}");
        }
        assert_eq!(v.verify(&by_a).unwrap().sub, "s", "the set in use is kept");
        let same = jwks(&[a.jwk()]);
        assert_eq!(v.replace_jwks(&same), Ok(1));
        assert_eq!(v.inner.jwks.load().generation, 0, "the same document is no new set");

        assert_eq!(v.replace_jwks(&jwks(&[b.jwk()])), Ok(1));
        assert_eq!(clone.verify(&by_b).unwrap().sub, "s", "every clone sees the new set");
        assert!(
            matches!(clone.verify(&by_a), Err(AuthError::UnknownKeyId)),
            "a remembered token is verified again under the new set"
        );
    }

    #[test]
    fn a_refused_token_is_not_remembered() {
        let v = verifier();
        let now = unix_now();
        let expired = token(now - 120, now - 600);
        assert!(matches!(v.verify(&expired), Err(AuthError::Expired)));
        let mut forged = token(now + 60, now);
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        let _ = v.verify(&forged);
        assert!(v.inner.verified.lock().unwrap().is_empty());
    }
}
