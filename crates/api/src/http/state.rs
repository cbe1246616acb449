//! What every handler shares: the schemas, the engine and the settings.

use forlop_engine::Engine;

use super::settings::HttpSettings;
use crate::graphql::ForlopSchema;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) schema: ForlopSchema,
    /// The same schema validating only what depends on the variables, for documents that passed
    /// `schema`'s full validation before.
    pub(crate) prevalidated_schema: ForlopSchema,
    pub(crate) engine: Engine,
    pub(crate) settings: std::sync::Arc<HttpSettings>,
    pub(crate) documents: std::sync::Arc<crate::limits::DocumentCache>,
    pub(crate) fhir: Option<forlop_fhir::Fhir>,
}
