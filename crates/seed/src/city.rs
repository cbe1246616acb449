//! The `city` profile: pathways across the municipal services and two DPSs of a synthetic Oslo sector.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use forlop_domain::CareLevel;

use crate::pathway::pathway;
use crate::random::Gen;
use crate::sector::{register_service, register_staff, Sector};
use crate::Dataset;

/// Generates `patients` synthetic pathways from `seed`.
pub fn demo(seed: u64, patients: usize) -> Dataset {
    let mut g = Gen { rng: ChaCha8Rng::seed_from_u64(seed) };
    let mut reference = Vec::new();
    let r = &mut reference;
    let municipal = vec![
        register_service(&mut g, r, "Rask psykisk helsehjelp Grünerløkka", CareLevel::Municipal),
        register_service(&mut g, r, "Rask psykisk helsehjelp Sagene", CareLevel::Municipal),
        register_service(&mut g, r, "Psykisk helseteam Søndre Nordstrand", CareLevel::Municipal),
    ];
    let outpatient = vec![
        register_service(&mut g, r, "DPS Vest poliklinikk", CareLevel::SpecialistOutpatient),
        register_service(&mut g, r, "DPS Nord poliklinikk", CareLevel::SpecialistOutpatient),
    ];
    let day = vec![register_service(&mut g, r, "DPS Vest dagbehandling", CareLevel::SpecialistDay)];
    let inpatient = vec![
        register_service(&mut g, r, "DPS Vest døgnpost", CareLevel::SpecialistInpatient),
        register_service(&mut g, r, "DPS Nord døgnpost", CareLevel::SpecialistInpatient),
    ];
    let scale = (patients / 50).clamp(4, 400);
    let sector = Sector {
        municipal_staff: register_staff(&mut g, r, scale),
        specialist_staff: register_staff(&mut g, r, scale),
        ward_staff: register_staff(&mut g, r, (scale / 2).max(2)),
        municipal,
        outpatient,
        day,
        inpatient,
    };
    let patients = (0..patients).map(|_| pathway(&mut g, &sector)).collect();
    Dataset { reference, patients }
}
