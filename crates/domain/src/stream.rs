//! Stream naming: one stream per patient, one per service, one per therapist.

use uuid::Uuid;

/// The stream a fact belongs to. The store knows streams only by their `name()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamRef {
    Patient(Uuid),
    Service(Uuid),
    Therapist(Uuid),
}

impl StreamRef {
    pub fn name(&self) -> String {
        match self {
            StreamRef::Patient(id) => format!("patient-{id}"),
            StreamRef::Service(id) => format!("service-{id}"),
            StreamRef::Therapist(id) => format!("therapist-{id}"),
        }
    }

    pub fn parse(name: &str) -> Option<StreamRef> {
        let (kind, id) = name.split_once('-')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "patient" => Some(StreamRef::Patient(id)),
            "service" => Some(StreamRef::Service(id)),
            "therapist" => Some(StreamRef::Therapist(id)),
            _ => None,
        }
    }

    pub fn patient_id(&self) -> Option<Uuid> {
        match self {
            StreamRef::Patient(id) => Some(*id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_round_trip() {
        let id = Uuid::from_u128(7);
        for s in [StreamRef::Patient(id), StreamRef::Service(id), StreamRef::Therapist(id)] {
            assert_eq!(StreamRef::parse(&s.name()), Some(s));
        }
        assert_eq!(StreamRef::parse("ward-00000000-0000-0000-0000-000000000007"), None);
    }
}
