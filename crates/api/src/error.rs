//! GraphQL's view of the core's errors: every error carries `extensions.code`.

use async_graphql::ErrorExtensions;

pub use forlop_engine::error::code;
pub use forlop_engine::EngineError as ApiError;

/// Into a GraphQL error carrying `extensions.code`. (async-graphql's blanket `From<Display>`
/// would drop the code, so resolvers convert explicitly.)
pub trait ToGql {
    fn gql(self) -> async_graphql::Error;
}

impl ToGql for ApiError {
    fn gql(self) -> async_graphql::Error {
        async_graphql::Error::new(self.public_message()).extend_with(|_, ext| {
            ext.set("code", self.code());
            if let ApiError::WrongExpectedVersion { current, .. } = &self {
                ext.set("currentVersion", current.map(|v| v as i64));
            }
        })
    }
}

/// `?` on engine results inside resolvers.
pub trait GqlResult<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> GqlResult<T> for Result<T, ApiError> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(ToGql::gql)
    }
}
