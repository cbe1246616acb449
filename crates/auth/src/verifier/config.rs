//! What a verifier is configured with: the expected issuer and audience, the names of the
//! non-standard claims, and where its keys come from.

use std::fmt;

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
