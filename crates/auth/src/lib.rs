//! Bearer-token verification: a signed JWT (HelseID/OIDC style) in, a [`Principal`] out.
//!
//! All cryptography is `jsonwebtoken`'s (pure-Rust `rust_crypto` backend); this crate only
//! decides which key and algorithm a token may use and how claims map to roles and services.
//! The key is chosen from the configured keys *before* the token is trusted, by the token
//! header's `alg` (and `kid` for JWKS keys), and the algorithm is pinned to the key's: a JWKS
//! public key can never be used as an HMAC secret.

pub mod jwks_source;
mod key_refresh;
mod principal;
mod verifier;

#[cfg(feature = "testing")]
pub mod testing;

pub use jwks_source::{IdpError, JwksSource, JwksSourceOptions, Location};
pub use principal::{Principal, Role, UnknownRole};
pub use verifier::{ClaimNames, KeySource, Verifier, VerifierConfig};

/// Why a token (or key material) was refused.
///
/// Display messages are short and safe to send to a client: they never contain the token,
/// a claim value from it, or any key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not three base64url parts, or a header or payload that is not JSON.
    #[error("malformed token")]
    Malformed,
    /// The header's `alg` is not one a configured key accepts (this includes `none`).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// An RS256/ES256 token without a `kid`: JWKS keys are selected by key id only.
    #[error("missing key id")]
    MissingKeyId,
    #[error("unknown key id")]
    UnknownKeyId,
    #[error("token signature invalid")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim is absent; holds the claim's name (never its value).
    #[error("missing claim {0}")]
    MissingClaim(String),
    /// A claim has the wrong type or an unparsable value; holds the claim's name.
    #[error("invalid claim {0}")]
    InvalidClaim(String),
    /// The header or the claims name a member twice (`role`, say), at any depth; holds the
    /// name (at most 64 characters of it), never a value. Readers differ in which of the two
    /// they take, so such a token has no one meaning. The message quotes the name as every
    /// message quoting client input does (`forlop_domain::text::quote`).
    #[error("duplicate claim {}", forlop_domain::text::quote(.0))]
    DuplicateClaim(String),
    /// Configured keys are unusable; the detail names the problem, never the key bytes.
    #[error("bad key material: {0}")]
    KeyMaterial(String),
    #[error("could not sign token")]
    Signing,
}

/// The minimum HS256 secret length (RFC 7518 §3.2: a key at least as long as the hash).
pub const MIN_HS256_SECRET_LEN: usize = 32;

/// Extracts the token from an `Authorization` header value.
///
/// The scheme is matched case-insensitively (RFC 7235) and surrounding whitespace is trimmed;
/// anything else (another scheme, no token, a token containing whitespace) is `None`.
///
/// ```
/// assert_eq!(forlop_auth::bearer("  bearer abc.def.ghi "), Some("abc.def.ghi"));
/// assert_eq!(forlop_auth::bearer("Basic dXNlcjpwdw=="), None);
/// ```
pub fn bearer(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once(char::is_whitespace)?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(char::is_whitespace))
        .then_some(token)
}

/// Signs `claims` with HS256 under `secret` (development tokens for `serve --demo`, and tests).
///
/// Refuses a secret shorter than [`MIN_HS256_SECRET_LEN`], as [`Verifier::new`] does: a token
/// no verifier would accept is better refused here.
pub fn mint_hs256(secret: &[u8], claims: &serde_json::Value) -> Result<String, AuthError> {
    verifier::check_hs256_secret(secret)?;
    verifier::ensure_crypto_provider();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(secret))
        .map_err(|_| AuthError::Signing)
}
