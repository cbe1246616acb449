//! Every recording a client can ask for, and what each one names: its stream, the global id it
//! introduces, the reference data it needs and the event it proposes. The rules it is decided
//! by are in `decisions/`.

use uuid::Uuid;

use crate::events::*;
use crate::stream::StreamRef;

/// Every recording a client can ask for. Each yields exactly one event on its target stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    RegisterService(ServiceRegistered),
    RegisterTherapist(TherapistRegistered),
    RegisterPatient(PatientRegistered),
    ReceiveReferral {
        patient_id: Uuid,
        event: ReferralReceived,
    },
    DecideReferral {
        patient_id: Uuid,
        event: ReferralDecided,
    },
    StartEpisode {
        patient_id: Uuid,
        event: EpisodeStarted,
    },
    EndEpisode {
        patient_id: Uuid,
        event: EpisodeEnded,
    },
    AssignTherapist {
        patient_id: Uuid,
        event: TherapistAssigned,
    },
    ReleaseTherapist {
        patient_id: Uuid,
        event: TherapistReleased,
    },
    RecordSession {
        patient_id: Uuid,
        event: SessionRecorded,
    },
    AdmitPatient {
        patient_id: Uuid,
        event: PatientAdmitted,
    },
    DischargePatient {
        patient_id: Uuid,
        event: PatientDischarged,
    },
    /// A past stay with both times, checked for overlap against both ends.
    RecordStay {
        patient_id: Uuid,
        event: StayRecorded,
    },
    /// `total` in the event is ignored and derived from the items.
    RecordOutcome {
        patient_id: Uuid,
        event: OutcomeRecorded,
    },
    /// Erasure: the caller destroys the data key; this records that it was done, and by whom.
    ForgetPatient(PatientForgotten),
}

/// The kinds of id a patient command introduces. These ids are global: one referral, episode,
/// session or admission id names one fact of one patient, so that a record system's id (FHIR)
/// maps to exactly one thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewId {
    Referral(Uuid),
    Episode(Uuid),
    Session(Uuid),
    Admission(Uuid),
}

impl NewId {
    pub fn id(self) -> Uuid {
        match self {
            NewId::Referral(id) | NewId::Episode(id) | NewId::Session(id) | NewId::Admission(id) => id,
        }
    }

    /// The input field that carries it.
    pub fn field(self) -> &'static str {
        match self {
            NewId::Referral(_) => "referralId",
            NewId::Episode(_) => "episodeId",
            NewId::Session(_) => "sessionId",
            NewId::Admission(_) => "admissionId",
        }
    }
}

impl Command {
    /// The global id this command introduces, if any.
    pub fn new_id(&self) -> Option<NewId> {
        match self {
            Command::ReceiveReferral { event, .. } => Some(NewId::Referral(event.referral_id)),
            Command::StartEpisode { event, .. } => Some(NewId::Episode(event.episode_id)),
            Command::RecordSession { event, .. } => Some(NewId::Session(event.session_id)),
            Command::AdmitPatient { event, .. } => Some(NewId::Admission(event.admission_id)),
            Command::RecordStay { event, .. } => Some(NewId::Admission(event.admission_id)),
            _ => None,
        }
    }

    pub fn stream(&self) -> StreamRef {
        match self {
            Command::RegisterService(e) => StreamRef::Service(e.service_id),
            Command::RegisterTherapist(e) => StreamRef::Therapist(e.therapist_id),
            Command::RegisterPatient(e) => StreamRef::Patient(e.patient_id),
            Command::ForgetPatient(e) => StreamRef::Patient(e.patient_id),
            Command::ReceiveReferral { patient_id, .. }
            | Command::DecideReferral { patient_id, .. }
            | Command::StartEpisode { patient_id, .. }
            | Command::EndEpisode { patient_id, .. }
            | Command::AssignTherapist { patient_id, .. }
            | Command::ReleaseTherapist { patient_id, .. }
            | Command::RecordSession { patient_id, .. }
            | Command::AdmitPatient { patient_id, .. }
            | Command::DischargePatient { patient_id, .. }
            | Command::RecordStay { patient_id, .. }
            | Command::RecordOutcome { patient_id, .. } => StreamRef::Patient(*patient_id),
        }
    }

    /// The event this command records if it is accepted, before any check. Used to recognise
    /// an idempotent retry, which today's rules may no longer accept.
    pub fn proposed_event(&self) -> Event {
        match self.clone() {
            Command::RegisterService(e) => e.into(),
            Command::RegisterTherapist(e) => e.into(),
            Command::RegisterPatient(e) => e.into(),
            Command::ForgetPatient(e) => e.into(),
            Command::ReceiveReferral { event, .. } => event.into(),
            Command::DecideReferral { event, .. } => event.into(),
            Command::StartEpisode { event, .. } => event.into(),
            Command::EndEpisode { event, .. } => event.into(),
            Command::AssignTherapist { event, .. } => event.into(),
            Command::ReleaseTherapist { event, .. } => event.into(),
            Command::RecordSession { event, .. } => event.into(),
            Command::AdmitPatient { event, .. } => event.into(),
            Command::DischargePatient { event, .. } => event.into(),
            Command::RecordStay { event, .. } => event.into(),
            Command::RecordOutcome { mut event, .. } => {
                event.total = event.items.iter().map(|&i| u32::from(i)).sum();
                event.into()
            }
        }
    }

    /// The command that records `event`: the inverse of `proposed_event`. Patient facts go to
    /// `patient_id`'s stream; registrations name their own stream and ignore it.
    pub fn recording(patient_id: Uuid, event: Event) -> Command {
        match event {
            Event::ServiceRegistered(e) => Command::RegisterService(e),
            Event::TherapistRegistered(e) => Command::RegisterTherapist(e),
            Event::PatientRegistered(e) => Command::RegisterPatient(e),
            Event::ReferralReceived(event) => Command::ReceiveReferral { patient_id, event },
            Event::ReferralDecided(event) => Command::DecideReferral { patient_id, event },
            Event::EpisodeStarted(event) => Command::StartEpisode { patient_id, event },
            Event::EpisodeEnded(event) => Command::EndEpisode { patient_id, event },
            Event::TherapistAssigned(event) => Command::AssignTherapist { patient_id, event },
            Event::TherapistReleased(event) => Command::ReleaseTherapist { patient_id, event },
            Event::SessionRecorded(event) => Command::RecordSession { patient_id, event },
            Event::PatientAdmitted(event) => Command::AdmitPatient { patient_id, event },
            Event::PatientDischarged(event) => Command::DischargePatient { patient_id, event },
            Event::StayRecorded(event) => Command::RecordStay { patient_id, event },
            Event::OutcomeRecorded(event) => Command::RecordOutcome { patient_id, event },
            Event::PatientForgotten(e) => Command::ForgetPatient(e),
        }
    }

    /// The service this command refers to, which the caller must look up before deciding.
    pub fn referenced_service(&self) -> Option<Uuid> {
        match self {
            Command::ReceiveReferral { event, .. } => Some(event.service_id),
            Command::StartEpisode { event, .. } => Some(event.service_id),
            Command::AdmitPatient { event, .. } => Some(event.service_id),
            Command::RecordStay { event, .. } => Some(event.service_id),
            _ => None,
        }
    }

    /// The therapist this command refers to, which the caller must look up before deciding.
    pub fn referenced_therapist(&self) -> Option<Uuid> {
        match self {
            Command::AssignTherapist { event, .. } => Some(event.therapist_id),
            Command::RecordSession { event, .. } => Some(event.therapist_id),
            _ => None,
        }
    }
}
