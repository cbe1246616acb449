//! What a synthetic dataset is: commands with fixed event ids, and how they pass the domain rules.

use std::collections::HashMap;

use uuid::Uuid;

use forlop_domain::events::*;
use forlop_domain::*;

/// A command with the event id it is recorded under, so seeding twice writes nothing new.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub event_id: Uuid,
    pub command: Command,
}

#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Services and therapists; record these first.
    pub reference: Vec<Seeded>,
    /// One list per patient, in recording order.
    pub patients: Vec<Vec<Seeded>>,
}

impl Dataset {
    pub fn event_count(&self) -> usize {
        self.reference.len() + self.patients.iter().map(Vec::len).sum::<usize>()
    }
}

/// Reference data as the domain needs it to decide patient commands.
#[derive(Debug, Default)]
pub struct Catalog {
    services: HashMap<Uuid, ServiceRegistered>,
    therapists: HashMap<Uuid, TherapistRegistered>,
}

impl Catalog {
    pub fn from_reference(reference: &[Seeded]) -> Catalog {
        let mut c = Catalog::default();
        for s in reference {
            match &s.command {
                Command::RegisterService(e) => {
                    c.services.insert(e.service_id, e.clone());
                }
                Command::RegisterTherapist(e) => {
                    c.therapists.insert(e.therapist_id, e.clone());
                }
                _ => {}
            }
        }
        c
    }

    pub fn references(&self, command: &Command) -> References {
        References {
            service: command.referenced_service().and_then(|id| self.services.get(&id).cloned()),
            therapist: command.referenced_therapist().and_then(|id| self.therapists.get(&id).cloned()),
        }
    }
}

/// Runs one stream's commands through the domain, as the server would, yielding their events.
pub fn decide_stream(catalog: &Catalog, commands: &[Seeded]) -> Result<Vec<(Uuid, Event)>, DomainError> {
    let mut state = StreamState::default();
    let mut out = Vec::with_capacity(commands.len());
    for s in commands {
        let event = decide(&state, &catalog.references(&s.command), s.command.clone())?;
        state.apply(&event);
        out.push((s.event_id, event));
    }
    Ok(out)
}
