//! The core's one error type and its stable codes. Adapters (GraphQL, FHIR) map these codes onto
//! their protocol; internal details are logged, never sent.

use forlop_domain::DomainError;
use forlop_store::StoreError;

/// Stable error codes, as sent in GraphQL `extensions.code`.
pub mod code {
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const ALREADY_EXISTS: &str = "ALREADY_EXISTS";
    pub const INVALID_INPUT: &str = "INVALID_INPUT";
    pub const WRONG_EXPECTED_VERSION: &str = "WRONG_EXPECTED_VERSION";
    pub const IDEMPOTENCY_CONFLICT: &str = "IDEMPOTENCY_CONFLICT";
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    pub const INTERNAL: &str = "INTERNAL";
}

/// Cloneable, so that one failure can answer every fact it stopped (a batch, its waiters).
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{0}")]
    InvalidInput(String),
    #[error("stream {stream}: expected version {expected}, current version is {}", current.map_or("none (no stream)".to_string(), |v| v.to_string()))]
    WrongExpectedVersion { stream: String, expected: String, current: Option<u64> },
    #[error("event {0} was already recorded with different content")]
    IdempotencyConflict(uuid::Uuid),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    /// Retryable: a dependency (the access log, the key table) could not be made durable.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Domain(e) => e.code(),
            EngineError::InvalidInput(_) => code::INVALID_INPUT,
            EngineError::WrongExpectedVersion { .. } => code::WRONG_EXPECTED_VERSION,
            EngineError::IdempotencyConflict(_) => code::IDEMPOTENCY_CONFLICT,
            EngineError::Unauthenticated(_) => code::UNAUTHENTICATED,
            EngineError::Forbidden(_) => code::FORBIDDEN,
            EngineError::Unavailable(_) => code::UNAVAILABLE,
            EngineError::Internal(_) => code::INTERNAL,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        EngineError::InvalidInput(msg.into())
    }

    pub fn forbidden(msg: impl Into<String>) -> Self {
        EngineError::Forbidden(msg.into())
    }

    /// The message a client may see: internal details stay in the server log.
    pub fn public_message(&self) -> String {
        match self {
            EngineError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal error".to_string()
            }
            other => other.to_string(),
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::WrongExpectedVersion { stream, expected, current } => EngineError::WrongExpectedVersion {
                stream,
                expected: match expected {
                    forlop_store::ExpectedVersion::Any => "any".into(),
                    forlop_store::ExpectedVersion::NoStream => "no stream".into(),
                    forlop_store::ExpectedVersion::Exact(v) => v.to_string(),
                },
                current,
            },
            StoreError::IdempotencyConflict { id } => EngineError::IdempotencyConflict(id),
            StoreError::InvalidAppend(msg) => EngineError::InvalidInput(msg),
            StoreError::Unavailable(reason) => {
                EngineError::Unavailable(format!("the log could not be made durable; nothing was recorded ({reason})"))
            }
            other => EngineError::Internal(other.to_string()),
        }
    }
}
