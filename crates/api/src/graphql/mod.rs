//! The GraphQL schema. Names here are a contract with integrations and dashboards.

mod analytics;
mod enums;
mod mutation;
mod objects;
mod query;
mod subscription;

use async_graphql::Schema;

pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

use forlop_engine::Engine;

pub type ForlopSchema = Schema<Query, Mutation, Subscription>;

/// Bounds that keep one request from exhausting the server.
const MAX_DEPTH: usize = 16;
const MAX_COMPLEXITY: usize = 20_000;

pub fn build_schema(engine: Option<Engine>) -> ForlopSchema {
    let mut builder = Schema::build(Query, Mutation, Subscription)
        .extension(crate::limits::Limits)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY);
    if let Some(engine) = engine {
        builder = builder.data(engine);
    }
    builder.finish()
}

/// The schema in SDL, as checked in at `schema/forlop.graphql`.
pub fn sdl() -> String {
    build_schema(None).sdl()
}
