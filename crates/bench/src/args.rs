//! The flags of `forlop-bench run`.

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Write the figures as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Patients seeded for the replay, query and report measurements (186,000 patients give
    /// about 200,000 episodes).
    #[arg(long, default_value_t = 186_000)]
    pub patients: usize,
    /// Pathway reports and care-alert lists requested (each, one at a time).
    #[arg(long, default_value_t = 200)]
    pub reports: usize,
    /// Events appended in the batch measurements (raw sled and store).
    #[arg(long, default_value_t = 200_000)]
    pub batch_events: usize,
    /// Events in the one-at-a-time and concurrent-writer measurements.
    #[arg(long, default_value_t = 20_000)]
    pub single_events: usize,
    /// Continuity queries sent over HTTP.
    #[arg(long, default_value_t = 40_000)]
    pub queries: usize,
    /// Where to put the temporary stores (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// FHIR resources in the bulk file `import-fhir` reads for `fhir_import_rps`.
    #[arg(long, default_value_t = 1_000_000)]
    pub fhir_resources: usize,
    /// Times the FHIR import is run; `fhir_import_rps` is the median.
    #[arg(long, default_value_t = 3)]
    pub fhir_runs: usize,
    /// Measure only one part: `fhir` (the FHIR import), `queries` (seed, then the patient
    /// query) or `server` (seed, then everything measured over HTTP and the restart).
    #[arg(long, value_enum)]
    pub only: Option<Only>,
    /// Keep the seeded data directory after the run (its path is printed), to inspect or serve it.
    #[arg(long)]
    pub keep: bool,
    /// Measure the event store on this PostgreSQL server instead (`postgres://…`; the role needs
    /// CREATEDB: the run writes into a database of its own and drops it), against PostgreSQL's
    /// own batch and single-insert rates.
    #[arg(long, env = "FORLOP_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// The `forlop` binary, for the figures of `forlop serve` and `forlop import-fhir` processes
    /// (default: the `forlop` beside this executable, as `cargo build --release --workspace`
    /// leaves it).
    #[arg(long)]
    pub forlop: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Only {
    Fhir,
    Queries,
    Server,
}

impl RunArgs {
    /// A temporary directory under `--dir` (default: the system temp dir).
    pub fn tempdir(&self) -> anyhow::Result<tempfile::TempDir> {
        Ok(match &self.dir {
            Some(d) => tempfile::tempdir_in(d)?,
            None => tempfile::tempdir()?,
        })
    }
}
