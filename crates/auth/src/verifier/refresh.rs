//! What `jwks_source` needs of a verifier to keep its key set current: replacing the set for
//! every clone at once, and verifying again after a fetch when a token names an unknown key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::keys::{parse_jwks, KeySet};
use super::{Inner, Verifier};
use crate::{AuthError, Principal};

impl Verifier {
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
}
