//! Token verification against configured keys.

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

use crate::{AuthError, Principal, Role, MIN_HS256_SECRET_LEN};

/// The HelseID claim carrying a clinician's HPR number (a string, or a number in some tokens).
const HPR_CLAIM: &str = "helseid://claims/hpr/hpr_number";

/// Tokens longer than this are refused unparsed, bounding the work an unauthenticated caller
/// can cause (real access tokens are a few KiB).
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Verified tokens remembered, so a client reusing its token is not re-verified on every
/// request; when full, the cache starts over.
const CACHE_ENTRIES: usize = 4096;

/// RSA moduli below this are refused when the verifier is built (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;

/// Names of the non-standard claims, which differ between identity providers
/// (HelseID, for one, uses `helseid://claims/identity/pid` for the national id).
#[derive(Debug, Clone)]
pub struct ClaimNames {
    pub role: String,
    pub services: String,
    pub pid: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames { role: "role".to_owned(), services: "services".to_owned(), pid: "pid".to_owned() }
    }
}

#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Must equal the token's `iss` exactly.
    pub issuer: String,
    /// Must be the token's `aud` or one of its members.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_seconds: u64,
    pub claims: ClaimNames,
}

/// Where verification keys come from.
pub enum KeySource {
    /// A shared HS256 secret (development and `serve --demo`), at least
    /// [`MIN_HS256_SECRET_LEN`] bytes.
    Hs256Secret(Vec<u8>),
    /// A JSON Web Key Set document (the identity provider's `jwks_uri` content).
    Jwks(String),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Hs256Secret(_) => f.write_str("Hs256Secret(<redacted>)"),
            KeySource::Jwks(doc) => write!(f, "Jwks(<{} bytes>)", doc.len()),
        }
    }
}

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
    pub(crate) remote: Option<Arc<crate::jwks_source::Refresh>>,
}

/// JWKS keys by `kid`, each pinned to one algorithm (RS256 or ES256).
type Keys = HashMap<String, (Algorithm, DecodingKey)>;

/// One key set, as parsed from one JWKS document.
struct KeySet {
    /// Counts replacements: a verified token is remembered with the generation it was checked by.
    generation: u64,
    keys: Keys,
    /// The document the keys were read from; the same document again changes nothing.
    document: Option<String>,
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
        remote: Option<Arc<crate::jwks_source::Refresh>>,
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

    /// Replaces the JWKS keys with those of `doc`, for every clone of this verifier at once.
    /// A document that is not a usable set changes nothing (the error says why); the same
    /// document as the one in use changes nothing either. Returns the number of keys in use.
    pub(crate) fn replace_jwks(&self, doc: &str) -> Result<usize, AuthError> {
        let current = self.inner.jwks.load();
        if current.document.as_deref() == Some(doc) {
            return Ok(current.keys.len());
        }
        let mut keys = HashMap::new();
        parse_jwks(doc, &mut keys)?;
        let count = keys.len();
        // Only the refresh task replaces the set, so nothing swaps in between.
        let generation = current.generation + 1;
        self.inner.jwks.store(Arc::new(KeySet { generation, keys, document: Some(doc.to_owned()) }));
        Ok(count)
    }

    /// The number of JWKS keys in use.
    pub(crate) fn jwks_len(&self) -> usize {
        self.inner.jwks.load().keys.len()
    }

    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Verifier {
        Verifier { inner }
    }

    /// [`Verifier::verify_until`], and when the token names a key id the set does not hold and
    /// the set comes from the identity provider: fetches the set again (at most once in
    /// `jwks_source`'s window, however many such tokens arrive), waits a bounded time for it,
    /// and verifies the token against the new set. A key rolled over at the provider is so
    /// accepted from its first token.
    pub async fn verify_until_current(&self, token: &str) -> Result<(Principal, SystemTime), AuthError> {
        match self.verify_until(token) {
            Err(AuthError::UnknownKeyId) => match &self.inner.remote {
                Some(remote) if remote.refreshed_for_unknown_kid().await => self.verify_until(token),
                _ => Err(AuthError::UnknownKeyId),
            },
            other => other,
        }
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
        let until = verified.exp.saturating_add(i64::try_from(self.inner.config.leeway_seconds).unwrap_or(i64::MAX));
        Ok((verified.principal, unix_time(until)))
    }

    /// The clock skew tolerated on `exp` and `nbf` (`--leeway-seconds`).
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.inner.config.leeway_seconds)
    }

    /// The token checked at `now` (Unix seconds): a remembered token's `exp` and `nbf` are
    /// checked again against it, anything else is verified in full.
    fn verify_at(&self, token: &str, now: i64) -> Result<Verified, AuthError> {
        let inner = &*self.inner;
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let leeway = i64::try_from(inner.config.leeway_seconds).unwrap_or(i64::MAX);
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

/// Refuses a JSON text in which an object, at any depth, names a member twice; anything that
/// is not JSON at all is `Malformed` (jsonwebtoken would refuse it the same way).
fn check_unique_names(json: &[u8]) -> Result<(), AuthError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let found: UniqueNames = serde::Deserialize::deserialize(&mut de).map_err(|_| AuthError::Malformed)?;
    de.end().map_err(|_| AuthError::Malformed)?;
    match found.0 {
        Some(name) => Err(AuthError::DuplicateClaim(name)),
        None => Ok(()),
    }
}

/// Longest member name quoted back in [`AuthError::DuplicateClaim`].
const NAME_ECHO: usize = 64;

/// Any JSON value, read only for the first member name that an object in it gives twice. The
/// whole text is still read (serde_json checks its syntax to the end), so this is not an error
/// that would stop the reading half-way.
struct UniqueNames(Option<String>);

impl<'de> serde::Deserialize<'de> for UniqueNames {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueNamesVisitor)
    }
}

struct UniqueNamesVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueNamesVisitor {
    type Value = UniqueNames;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<UniqueNames, E> {
        Ok(UniqueNames(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueNames, E> {
        Ok(UniqueNames(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueNames, E> {
        Ok(UniqueNames(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueNames, E> {
        Ok(UniqueNames(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueNames, E> {
        Ok(UniqueNames(None))
    }
    fn visit_unit<E>(self) -> Result<UniqueNames, E> {
        Ok(UniqueNames(None))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueNames, A::Error> {
        let mut first = None;
        while let Some(UniqueNames(found)) = seq.next_element()? {
            first = first.or(found);
        }
        Ok(UniqueNames(first))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueNames, A::Error> {
        let mut seen = std::collections::HashSet::new();
        let mut first = None;
        while let Some(name) = map.next_key::<String>()? {
            let UniqueNames(inner) = map.next_value()?;
            if first.is_some() {
                continue; // read on to the end of the text, which must still be JSON
            }
            if seen.contains(&name) {
                first = Some(name.chars().take(NAME_ECHO).collect());
            } else {
                first = inner;
                seen.insert(name);
            }
        }
        Ok(UniqueNames(first))
    }
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

fn key_err(detail: &str) -> AuthError {
    AuthError::KeyMaterial(detail.to_owned())
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "other",
    }
}

struct RawHeader {
    alg: String,
    kid: Option<String>,
}

/// Reads `alg` and `kid` from the header ourselves, because `jsonwebtoken::decode_header` fails
/// on algorithm names it does not know (`none`): those are "algorithm not allowed", not
/// "malformed". The token is re-parsed and fully checked by `jsonwebtoken::decode`.
fn peek_header(token: &str) -> Result<RawHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthError::Malformed)?;
    // A header naming `alg` or `kid` twice would pick its key by the last one read here.
    check_unique_names(&bytes).map_err(|_| AuthError::Malformed)?;
    let value: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
    let alg = match value.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err(AuthError::Malformed),
    };
    let kid = match value.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(AuthError::Malformed),
    };
    Ok(RawHeader { alg, kid })
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

/// Maps verified claims to a principal. Claims that are present but of the wrong shape refuse
/// the token: a half-understood token must not grant a partial identity.
fn principal_from_claims(claims: &Map<String, Value>, config: &VerifierConfig) -> Result<Principal, AuthError> {
    let names = &config.claims;

    // jsonwebtoken accepts an `iss` array overlapping the expected set; we require equality.
    if claims.get("iss").and_then(Value::as_str) != Some(config.issuer.as_str()) {
        return Err(AuthError::WrongIssuer);
    }

    let sub = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        _ => return Err(AuthError::MissingClaim("sub".to_owned())),
    };

    let name = optional_string(claims, "name")?;
    let national_id = optional_string(claims, &names.pid)?;

    let hpr_number = match claims.get(HPR_CLAIM) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        Some(_) => return Err(AuthError::InvalidClaim(HPR_CLAIM.to_owned())),
    };

    let role_strings: Vec<&str> = match claims.get(&names.role) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(|| AuthError::InvalidClaim(names.role.clone())))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(AuthError::InvalidClaim(names.role.clone())),
    };
    // Unknown names are dropped, not refused: an identity provider may issue roles meant for
    // other applications in the same token.
    let mut roles: Vec<Role> = role_strings.into_iter().filter_map(|s| s.parse().ok()).collect();
    roles.sort_unstable();
    roles.dedup();

    let mut services: Vec<uuid::Uuid> = match claims.get(&names.services) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .and_then(|s| uuid::Uuid::parse_str(s).ok())
                    .ok_or_else(|| AuthError::InvalidClaim(names.services.clone()))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(AuthError::InvalidClaim(names.services.clone())),
    };
    services.sort_unstable();
    services.dedup();

    Ok(Principal { sub, name, roles, services, national_id, hpr_number })
}

fn optional_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AuthError::InvalidClaim(name.to_owned())),
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
                return Err(key_err(&format!("duplicate kid {kid:?} in JWKS")));
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
