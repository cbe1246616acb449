//! How a bearer token (or `--auth off`) becomes a `Principal`, and until when its token is
//! accepted: the one rule every transport (HTTP, WebSocket, FHIR) authenticates by.

use std::time::SystemTime;

use forlop_auth::{Principal, Verifier};

/// How callers are authenticated.
#[derive(Clone, Debug)]
pub enum Authenticator {
    /// `--auth off`: everyone is `admin` with actor `anonymous` (loopback only; checked at start).
    Off,
    Jwt(Verifier),
}

impl Authenticator {
    pub(super) async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, String> {
        self.authenticate_until(authorization).await.map(|(principal, _)| principal)
    }

    /// The caller, and until when their token is accepted (its `exp` plus the leeway; None
    /// under `--auth off`): what outlives the request, a WebSocket or a long upload, ends then.
    /// A token naming a key the identity provider published since the set was last fetched
    /// waits (a few seconds at most) for the set to be fetched again.
    pub(super) async fn authenticate_until(
        &self,
        authorization: Option<&str>,
    ) -> Result<(Principal, Option<SystemTime>), String> {
        match self {
            Authenticator::Off => Ok((Principal::anonymous_admin(), None)),
            Authenticator::Jwt(verifier) => {
                let header = authorization.ok_or("a bearer token is required")?;
                let token = forlop_auth::bearer(header).ok_or("the Authorization header must be `Bearer <token>`")?;
                let (principal, until) =
                    verifier.verify_until_current(token).await.map_err(|e| format!("invalid token: {e}"))?;
                Ok((principal, Some(until)))
            }
        }
    }
}
