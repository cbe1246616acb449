//! Ingest: Bundles (transaction and batch) and NDJSON, through the engine. Every fact goes
//! through `Engine::record` with the caller's principal, so authorisation, access logging and
//! the domain's rules are the same as for a GraphQL mutation.
//!
//! An ingest reads its entries (`parsing`), names and maps them against the engine and the
//! alias index (`prepare`, `lookup`; each entry's `request` checked by `requests`), records their facts (`commit`, `placing`), and keeps
//! what waits for a reference (`holds`). An NDJSON import runs these stages over chunks side by
//! side (`pipeline`). `outcomes` is what each entry's answer is made of.

mod commit;
mod holds;
mod lookup;
mod outcomes;
mod parsing;
mod pipeline;
mod placing;
mod prepare;
mod requests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use forlop_engine::{Caller, Engine};

pub use self::outcomes::{import_outcome, response_bundle, EntryOutcome, FailedLine, ImportSummary, PlacedAs};
pub use self::parsing::{parse_resource, BundleRequest, RawEntry};
pub use self::prepare::Prepared;
use crate::care_levels::CareLevels;
use crate::held::HeldStore;
use crate::identity::AliasIndex;

/// Most entries in one Bundle; larger loads go through `$import`.
pub const MAX_BUNDLE_ENTRIES: usize = 10_000;
/// How long a resource waits for what it refers to before it is reported as unresolved.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(15 * 60);
/// What an access record says was disclosed when a national id is resolved to a patient.
pub const RESOLVED_FIELDS: &str = "fhir.Patient.identifier";

/// The FHIR adapter: one per server, cheap to clone.
#[derive(Clone, Debug)]
pub struct Fhir {
    engine: Engine,
    aliases: AliasIndex,
    held: HeldStore,
    care_levels: Arc<CareLevels>,
    /// How long a held resource waits before it is reported as unresolved.
    hold: Duration,
    fresh: lookup::FreshIds,
}

impl Fhir {
    /// The alias index lives in `dir` (e.g. `<data>/fhir`).
    pub fn open(engine: Engine, dir: &Path, care_levels: CareLevels) -> Result<Fhir, sled::Error> {
        let aliases = AliasIndex::open(dir)?;
        let held = HeldStore::open(aliases.db())?;
        Ok(Fhir {
            engine,
            aliases,
            held,
            care_levels: Arc::new(care_levels),
            hold: DEFAULT_HOLD,
            fresh: lookup::FreshIds::default(),
        })
    }

    /// The id the alias index gives `name`, if any (a failed read of the index is none: the
    /// caller answers "not found", and the error is logged).
    pub(crate) fn alias(&self, name: &str) -> Option<uuid::Uuid> {
        self.aliases.get(name).unwrap_or_else(|e| {
            tracing::error!(error = %e, "alias index read failed");
            None
        })
    }

    /// How long a held resource waits before it is reported as unresolved.
    pub fn with_hold(mut self, hold: Duration) -> Fhir {
        self.hold = hold;
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Parses, names and maps `entries`; then, if nothing is wrong or `all_or_none` is false,
    /// places their facts. Returns one outcome per entry, in order.
    /// With `hold`, an entry that fails only for references not yet recorded is kept and placed
    /// when they arrive, instead of failing.
    pub async fn ingest(
        &self,
        caller: &Caller,
        entries: &[RawEntry],
        all_or_none: bool,
        hold: bool,
    ) -> Vec<EntryOutcome> {
        let prepared = self.prepare(caller, entries, all_or_none);
        self.commit(caller, entries, prepared, all_or_none, hold).await
    }
}
