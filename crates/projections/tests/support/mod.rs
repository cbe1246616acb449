//! The log the projection tests write: each event is decided by the domain against its stream,
//! then folded into the read model with the next position and its stream's next version, so every
//! pathway in these tests is one the system would really record.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::collections::HashMap;

use forlop_domain::events::*;
use forlop_domain::*;
use forlop_projections::{EventMeta, ReadModel};
use uuid::Uuid;

/// Patient facts go to the stream of the current patient (the one last registered, or chosen
/// with `on`).
pub struct Log {
    pub model: ReadModel,
    pub patient: Uuid,
    pub next_position: u64,
    streams: HashMap<StreamRef, Vec<Event>>,
    services: HashMap<Uuid, ServiceRegistered>,
    therapists: HashMap<Uuid, TherapistRegistered>,
    next_session: u128,
}

impl Log {
    /// An empty log: no services, therapists or patients.
    pub fn empty() -> Log {
        Log {
            model: ReadModel::default(),
            patient: Uuid::nil(),
            next_position: 0,
            streams: HashMap::new(),
            services: HashMap::new(),
            therapists: HashMap::new(),
            next_session: 0,
        }
    }

    /// Registers a patient and makes it the current one.
    pub fn patient(&mut self, patient_id: Uuid, birth_year: i32, gender: Gender) -> &mut Log {
        self.patient = patient_id;
        self.record(PatientRegistered { patient_id, birth_year, gender, national_id: None })
    }

    /// Makes an already registered patient the current one.
    pub fn on(&mut self, patient_id: Uuid) -> &mut Log {
        assert!(self.model.patients.contains_key(&patient_id), "patient {patient_id} is registered");
        self.patient = patient_id;
        self
    }

    /// Decides the command that records `event` and folds the event it yields.
    pub fn record(&mut self, event: impl Into<Event>) -> &mut Log {
        let event = event.into();
        let command = Command::recording(self.patient, event.clone());
        let patient_id = command.stream().patient_id();
        let refs = References {
            service: command.referenced_service().and_then(|id| self.services.get(&id).cloned()),
            therapist: command.referenced_therapist().and_then(|id| self.therapists.get(&id).cloned()),
        };
        let history = self.streams.entry(command.stream()).or_default();
        let decided = decide(&StreamState::from_events(history.iter()), &refs, command)
            .unwrap_or_else(|e| panic!("the domain refuses {event:?}: {} {e}", e.code()));
        assert_eq!(decided, event, "the domain records what was asked");
        history.push(event.clone());
        match &event {
            Event::ServiceRegistered(e) => {
                self.services.insert(e.service_id, e.clone());
            }
            Event::TherapistRegistered(e) => {
                self.therapists.insert(e.therapist_id, e.clone());
            }
            _ => {}
        }

        let meta = EventMeta { position: self.next_position, stream_version: history.len() as u64, patient_id };
        self.model.apply(meta, &event);
        self.next_position += 1;
        assert_eq!(self.model.position, self.next_position, "the read model has folded every event");
        self
    }

    /// Records a session with a fresh id.
    pub fn session(&mut self, episode_id: Uuid, therapist_id: Uuid, attendance: Attendance, at: Timestamp) -> &mut Log {
        self.next_session += 1;
        let session_id = Uuid::from_u128(0x5e55_0000 + self.next_session);
        self.record(SessionRecorded { session_id, episode_id, therapist_id, attendance, at })
    }

    /// Records an attended session with a fresh id.
    pub fn attended(&mut self, episode_id: Uuid, therapist_id: Uuid, at: Timestamp) -> &mut Log {
        self.session(episode_id, therapist_id, Attendance::Attended, at)
    }
}
