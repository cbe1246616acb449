//! Verified claims mapped to a `Principal`: its subject, roles, services and identifiers.

use serde_json::{Map, Value};

use super::config::VerifierConfig;
use crate::{AuthError, Principal, Role};

/// The HelseID claim carrying a clinician's HPR number (a string, or a number in some tokens).
const HPR_CLAIM: &str = "helseid://claims/hpr/hpr_number";

/// Maps verified claims to a principal. Claims that are present but of the wrong shape refuse
/// the token: a half-understood token must not grant a partial identity.
pub(super) fn principal_from_claims(
    claims: &Map<String, Value>,
    config: &VerifierConfig,
) -> Result<Principal, AuthError> {
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
