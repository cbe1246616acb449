//! The services and staff a profile registers first, as reference data.

use rand::Rng;
use uuid::Uuid;

use forlop_domain::events::*;
use forlop_domain::*;

use crate::random::Gen;
use crate::Seeded;

/// The services and staff of a synthetic Oslo sector.
#[derive(Debug, Clone)]
pub struct Sector {
    pub municipal: Vec<Uuid>,
    pub outpatient: Vec<Uuid>,
    pub day: Vec<Uuid>,
    pub inpatient: Vec<Uuid>,
    pub municipal_staff: Vec<Uuid>,
    pub specialist_staff: Vec<Uuid>,
    pub ward_staff: Vec<Uuid>,
}

pub(crate) fn register_service(g: &mut Gen, reference: &mut Vec<Seeded>, name: &str, level: CareLevel) -> Uuid {
    let id = g.id();
    reference.push(Seeded {
        event_id: g.id(),
        command: Command::RegisterService(ServiceRegistered { service_id: id, name: name.into(), care_level: level }),
    });
    id
}

pub(crate) fn register_staff(g: &mut Gen, reference: &mut Vec<Seeded>, n: usize) -> Vec<Uuid> {
    (0..n)
        .map(|_| {
            let id = g.id();
            let hpr = g.rng.gen_range(1_000_000..9_999_999u32).to_string();
            let name = g.name();
            reference.push(Seeded {
                event_id: g.id(),
                command: Command::RegisterTherapist(TherapistRegistered {
                    therapist_id: id,
                    name,
                    hpr_number: Some(hpr),
                }),
            });
            id
        })
        .collect()
}
