//! The API's one error type and its stable codes. Internal details are logged, never sent.

use async_graphql::ErrorExtensions;
use forlop_domain::DomainError;
use forlop_store::StoreError;

/// Stable error codes, as sent in GraphQL `extensions.code`.
pub mod code {
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const ALREADY_EXISTS: &str = "ALREADY_EXISTS";
    pub const INVALID_INPUT: &str = "INVALID_INPUT";
    pub const WRONG_EXPECTED_VERSION: &str = "WRONG_EXPECTED_VERSION";
    pub const IDEMPOTENCY_CONFLICT: &str = "IDEMPOTENCY_CONFLICT";
    pub const INTERNAL: &str = "INTERNAL";
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{0}")]
    InvalidInput(String),
    #[error("stream {stream}: expected version {expected}, current version is {}", current.map_or("none (no stream)".to_string(), |v| v.to_string()))]
    WrongExpectedVersion { stream: String, expected: String, current: Option<u64> },
    #[error("event {0} was already recorded with different content")]
    IdempotencyConflict(uuid::Uuid),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Domain(e) => e.code(),
            ApiError::InvalidInput(_) => code::INVALID_INPUT,
            ApiError::WrongExpectedVersion { .. } => code::WRONG_EXPECTED_VERSION,
            ApiError::IdempotencyConflict(_) => code::IDEMPOTENCY_CONFLICT,
            ApiError::Internal(_) => code::INTERNAL,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        ApiError::InvalidInput(msg.into())
    }

    /// Into a GraphQL error carrying `extensions.code`. (async-graphql's blanket `From<Display>`
    /// would drop the code, so resolvers convert explicitly.)
    pub fn gql(self) -> async_graphql::Error {
        self.extend()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::WrongExpectedVersion { stream, expected, current } => ApiError::WrongExpectedVersion {
                stream,
                expected: match expected {
                    forlop_store::ExpectedVersion::Any => "any".into(),
                    forlop_store::ExpectedVersion::NoStream => "no stream".into(),
                    forlop_store::ExpectedVersion::Exact(v) => v.to_string(),
                },
                current,
            },
            StoreError::IdempotencyConflict { id } => ApiError::IdempotencyConflict(id),
            StoreError::InvalidAppend(msg) => ApiError::InvalidInput(msg),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        let message = match self {
            ApiError::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", self.code());
            if let ApiError::WrongExpectedVersion { current, .. } = self {
                ext.set("currentVersion", current.map(|v| v as i64));
            }
        })
    }
}
