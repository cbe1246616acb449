//! The GraphQL schema. Names here are a contract with integrations and dashboards.

mod analytics;
pub(crate) mod context;
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
    build_schema_validating(engine, async_graphql::ValidationMode::Strict, None)
}

/// The schema twice, over one engine: validating in full (`Strict`, which also lends its type
/// registry to `documents`), and `Fast`, which skips the rules a document passes or fails
/// whatever its variables say. `Fast` is only for documents that passed `Strict` before, with
/// variables `documents` has checked as `Strict` would (see `crate::limits::check`).
pub(crate) fn build_schemas(
    engine: Engine,
    documents: std::sync::Arc<crate::limits::DocumentCache>,
) -> (ForlopSchema, ForlopSchema) {
    use async_graphql::ValidationMode;
    (
        build_schema_validating(Some(engine.clone()), ValidationMode::Strict, Some(documents)),
        build_schema_validating(Some(engine), ValidationMode::Fast, None),
    )
}

fn build_schema_validating(
    engine: Option<Engine>,
    mode: async_graphql::ValidationMode,
    documents: Option<std::sync::Arc<crate::limits::DocumentCache>>,
) -> ForlopSchema {
    let mut builder = Schema::build(Query, Mutation, Subscription)
        .validation_mode(mode)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY);
    // The fast schema runs only documents that `limits::check` took from its cache, limited
    // and saw pass full validation before, so it needs no extension; and without one,
    // async-graphql resolves each field without building its `ResolveInfo` (a registry lookup
    // and, per list item, an allocation).
    if matches!(mode, async_graphql::ValidationMode::Strict) {
        builder = builder.extension(crate::limits::Limits { documents });
    }
    if let Some(engine) = engine {
        builder = builder.data(engine);
    }
    builder.finish()
}

/// The schema in SDL, as checked in at `schema/forlop.graphql`.
pub fn sdl() -> String {
    build_schema(None).sdl()
}
