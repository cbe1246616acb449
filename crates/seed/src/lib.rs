//! Deterministic synthetic care pathways for demos, tests and benchmarks. No real person is in
//! here: names are drawn from lists of common given and family names, everything else from a
//! seeded random generator. The same seed always yields the same commands, event ids included.

mod city;
mod dataset;
mod load;
mod pathway;
mod random;
mod rph2016;
mod sector;
#[cfg(test)]
mod tests;

pub use city::demo;
pub use dataset::{decide_stream, Catalog, Dataset, Seeded};
pub use load::load;
pub use pathway::PlannedScores;
pub use rph2016::{published, rph2016, SERVICE_NAME as RPH2016_SERVICE};
pub use sector::Sector;
