//! Commands and the decisions taken on them. `decide` checks a command against state folded from
//! past events and yields the one event it records; `apply` folds an event into state and never fails.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::events::*;
use crate::stream::StreamRef;
use crate::types::*;

/// Why a command was refused. Each variant maps to a stable error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidInput(String),
}

impl DomainError {
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::NotFound(_) => "NOT_FOUND",
            DomainError::AlreadyExists(_) => "ALREADY_EXISTS",
            DomainError::InvalidInput(_) => "INVALID_INPUT",
        }
    }

    /// The refusal without the recorded facts it quotes (everything from [`RECORDED`] on): what
    /// an adapter tells a caller who may not read the patient's facts (an integration). It
    /// still says what is wrong with the command, in the command's own terms, and keeps its code.
    pub fn without_records(&self) -> DomainError {
        let cut = |m: &str| m.find(RECORDED).map_or(m, |i| &m[..i]).to_owned();
        match self {
            DomainError::NotFound(m) => DomainError::NotFound(cut(m)),
            DomainError::AlreadyExists(m) => DomainError::AlreadyExists(cut(m)),
            DomainError::InvalidInput(m) => DomainError::InvalidInput(cut(m)),
        }
    }
}

/// Where a refusal's message starts quoting what is recorded on the stream (a date, another
/// fact's id); it runs to the end of the message, closed by `)`. Before it a message names only
/// what the command itself carries (its ids, times and codes, never free text), so nothing a
/// caller sends can fake this mark. See [`DomainError::without_records`].
pub const RECORDED: &str = " (recorded: ";

fn invalid(msg: impl Into<String>) -> DomainError {
    DomainError::InvalidInput(msg.into())
}

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

/// Reference data a decision may need: looked up by the caller, so `decide` stays pure.
#[derive(Debug, Clone, Default)]
pub struct References {
    pub service: Option<ServiceRegistered>,
    pub therapist: Option<TherapistRegistered>,
}

/// State of one stream, folded from its events. Reference streams only need to know they exist.
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    pub exists: bool,
    pub patient: PatientState,
}

#[derive(Debug, Clone, Default)]
pub struct PatientState {
    pub referrals: HashMap<Uuid, ReferralState>,
    pub episodes: HashMap<Uuid, EpisodeState>,
    pub admissions: HashMap<Uuid, AdmissionState>,
    pub sessions: HashSet<Uuid>,
    pub forgotten: bool,
}

#[derive(Debug, Clone)]
pub struct ReferralState {
    pub service_id: Uuid,
    pub received_at: Timestamp,
    pub decision: Option<ReferralDecision>,
    pub decided_at: Option<Timestamp>,
    /// The episode this referral opened, if any: a referral opens at most one.
    pub opened: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub struct EpisodeState {
    pub service_id: Uuid,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub assignments: Vec<AssignmentState>,
    pub last_session_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct AssignmentState {
    pub therapist_id: Uuid,
    pub assigned_at: Timestamp,
    pub released_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct AdmissionState {
    pub service_id: Uuid,
    pub admitted_at: Timestamp,
    pub discharged_at: Option<Timestamp>,
}

impl StreamState {
    /// Folds one event. No logic, cannot fail: the event was valid when it was decided.
    pub fn apply(&mut self, event: &Event) {
        let p = &mut self.patient;
        match event {
            Event::ServiceRegistered(_) | Event::TherapistRegistered(_) | Event::PatientRegistered(_) => {
                self.exists = true
            }
            Event::ReferralReceived(e) => {
                p.referrals.insert(
                    e.referral_id,
                    ReferralState {
                        service_id: e.service_id,
                        received_at: e.received_at,
                        decision: None,
                        decided_at: None,
                        opened: None,
                    },
                );
            }
            Event::ReferralDecided(e) => {
                if let Some(r) = p.referrals.get_mut(&e.referral_id) {
                    r.decision = Some(e.decision);
                    r.decided_at = Some(e.decided_at);
                }
            }
            Event::EpisodeStarted(e) => {
                if let Some(r) = e.referral_id.and_then(|rid| p.referrals.get_mut(&rid)) {
                    r.opened = Some(e.episode_id);
                }
                p.episodes.insert(
                    e.episode_id,
                    EpisodeState {
                        service_id: e.service_id,
                        started_at: e.started_at,
                        ended_at: None,
                        assignments: Vec::new(),
                        last_session_at: None,
                    },
                );
            }
            Event::EpisodeEnded(e) => {
                if let Some(ep) = p.episodes.get_mut(&e.episode_id) {
                    ep.ended_at = Some(e.ended_at);
                }
            }
            Event::TherapistAssigned(e) => {
                if let Some(ep) = p.episodes.get_mut(&e.episode_id) {
                    ep.assignments.push(AssignmentState {
                        therapist_id: e.therapist_id,
                        assigned_at: e.assigned_at,
                        released_at: None,
                    });
                }
            }
            Event::TherapistReleased(e) => {
                if let Some(a) = p.episodes.get_mut(&e.episode_id).and_then(|ep| {
                    ep.assignments.iter_mut().find(|a| a.therapist_id == e.therapist_id && a.released_at.is_none())
                }) {
                    a.released_at = Some(e.released_at);
                }
            }
            Event::SessionRecorded(e) => {
                p.sessions.insert(e.session_id);
                if let Some(ep) = p.episodes.get_mut(&e.episode_id) {
                    ep.last_session_at = ep.last_session_at.max(Some(e.at));
                }
            }
            Event::PatientAdmitted(e) => {
                p.admissions.insert(
                    e.admission_id,
                    AdmissionState { service_id: e.service_id, admitted_at: e.admitted_at, discharged_at: None },
                );
            }
            Event::PatientDischarged(e) => {
                if let Some(a) = p.admissions.get_mut(&e.admission_id) {
                    a.discharged_at = Some(e.discharged_at);
                }
            }
            Event::StayRecorded(e) => {
                p.admissions.insert(
                    e.admission_id,
                    AdmissionState {
                        service_id: e.service_id,
                        admitted_at: e.admitted_at,
                        discharged_at: Some(e.discharged_at),
                    },
                );
            }
            Event::OutcomeRecorded(_) => {}
            Event::PatientForgotten(_) => p.forgotten = true,
        }
    }

    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut s = StreamState::default();
        for e in events {
            s.apply(e);
        }
        s
    }
}

/// Earliest and latest birth years accepted.
pub const BIRTH_YEARS: std::ops::RangeInclusive<i32> = 1900..=2100;

/// Checks every id the command carries and its clinical time, whatever its kind.
fn check_ids_and_time(command: &Command) -> Result<(), DomainError> {
    let proposed = command.proposed_event();
    if let Some(bad) = proposed.first_bad_field() {
        return Err(invalid(bad));
    }
    if let Some(t) = proposed.clinical_time() {
        if chrono::Timelike::nanosecond(&t) >= 1_000_000_000 {
            return Err(invalid(format!("{t}: a leap second (:60) is not a time forlop records")));
        }
    }
    Ok(())
}

/// Decides a command against the state of its stream and the references it names.
pub fn decide(state: &StreamState, refs: &References, command: Command) -> Result<Event, DomainError> {
    check_ids_and_time(&command)?;
    match command {
        Command::RegisterService(e) => {
            if state.exists {
                return Err(DomainError::AlreadyExists(format!("service {} already exists", e.service_id)));
            }
            non_empty("name", &e.name)?;
            Ok(e.into())
        }
        Command::RegisterTherapist(e) => {
            if state.exists {
                return Err(DomainError::AlreadyExists(format!("therapist {} already exists", e.therapist_id)));
            }
            non_empty("name", &e.name)?;
            if let Some(hpr) = &e.hpr_number {
                if hpr.is_empty() || hpr.len() > 9 || !hpr.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid("hprNumber must be 1 to 9 digits"));
                }
            }
            Ok(e.into())
        }
        Command::RegisterPatient(e) => {
            if state.exists {
                return Err(DomainError::AlreadyExists(format!("patient {} already exists", e.patient_id)));
            }
            if !BIRTH_YEARS.contains(&e.birth_year) {
                return Err(invalid(format!("birthYear {} is outside {BIRTH_YEARS:?}", e.birth_year)));
            }
            Ok(e.into())
        }
        command => decide_patient(state, refs, command),
    }
}

fn decide_patient(state: &StreamState, refs: &References, command: Command) -> Result<Event, DomainError> {
    let patient_id = command.stream().patient_id().expect("patient command");
    // A forgotten patient's stream takes nothing more, not even a second erasure: a fact appended
    // there would sit beside the history the patient asked to have unlinked from them, and a
    // returning person is a new patient. The refusal is word for word an unknown patient's, so
    // it tells no one that this id once belonged to someone who asked to be forgotten.
    if !state.exists || state.patient.forgotten {
        return Err(DomainError::NotFound(format!("patient {patient_id} not found")));
    }
    let p = &state.patient;
    let service = |id: Uuid| {
        refs.service
            .as_ref()
            .filter(|s| s.service_id == id)
            .ok_or_else(|| DomainError::NotFound(format!("service {id} not found")))
    };
    let inpatient = |id: Uuid| -> Result<(), DomainError> {
        let s = service(id)?;
        if s.care_level != CareLevel::SpecialistInpatient {
            return Err(invalid(format!("service {id} is {}, an admission needs SPECIALIST_INPATIENT", s.care_level)));
        }
        Ok(())
    };
    let therapist = |id: Uuid| {
        refs.therapist
            .as_ref()
            .filter(|t| t.therapist_id == id)
            .ok_or_else(|| DomainError::NotFound(format!("therapist {id} not found")))
    };
    let episode = |id: Uuid| {
        p.episodes
            .get(&id)
            .ok_or_else(|| DomainError::NotFound(format!("episode {id} not found for patient {patient_id}")))
    };
    match command {
        Command::ReceiveReferral { event: e, .. } => {
            service(e.service_id)?;
            if p.referrals.contains_key(&e.referral_id) {
                return Err(DomainError::AlreadyExists(format!("referral {} already exists", e.referral_id)));
            }
            Ok(e.into())
        }
        Command::DecideReferral { event: e, .. } => {
            let r = p
                .referrals
                .get(&e.referral_id)
                .ok_or_else(|| DomainError::NotFound(format!("referral {} not found", e.referral_id)))?;
            if r.decision.is_some() {
                return Err(invalid(format!("referral {} is already decided", e.referral_id)));
            }
            match (e.decision, e.reason) {
                (ReferralDecision::Rejected, None) => return Err(invalid("a rejection needs a reason")),
                (ReferralDecision::Accepted, Some(_)) => return Err(invalid("a reason is only given for a rejection")),
                _ => {}
            }
            not_before("decidedAt", e.decided_at, "receivedAt", r.received_at)?;
            Ok(e.into())
        }
        Command::StartEpisode { event: e, .. } => {
            let s = service(e.service_id)?;
            if p.episodes.contains_key(&e.episode_id) {
                return Err(DomainError::AlreadyExists(format!("episode {} already exists", e.episode_id)));
            }
            match e.referral_id {
                Some(rid) => {
                    let r = p
                        .referrals
                        .get(&rid)
                        .ok_or_else(|| DomainError::NotFound(format!("referral {rid} not found")))?;
                    if r.service_id != e.service_id {
                        return Err(invalid(format!("referral {rid} was sent to another service")));
                    }
                    match (r.decision, r.decided_at) {
                        (Some(ReferralDecision::Accepted), Some(decided_at)) => {
                            not_before("startedAt", e.started_at, "the referral's decidedAt", decided_at)?
                        }
                        (Some(ReferralDecision::Rejected), _) => {
                            return Err(invalid(format!("referralId: referral {rid} was rejected")))
                        }
                        _ => {
                            return Err(invalid(format!(
                                "referralId: referral {rid} is not decided yet; accept it before starting an episode"
                            )))
                        }
                    }
                    if let Some(opened) = r.opened {
                        return Err(invalid(format!(
                            "referralId: referral {rid} already opened an episode{RECORDED}episode {opened})"
                        )));
                    }
                }
                // Specialist care needs a referral (spesialisthelsetjenesteloven § 2-2), except an
                // emergency admission (øyeblikkelig hjelp).
                None if s.care_level != CareLevel::Municipal && !e.acute => {
                    return Err(invalid(
                        "referralId: a specialist episode needs the referral that led to it, or acute: true for an emergency admission",
                    ))
                }
                None => {}
            }
            Ok(e.into())
        }
        Command::EndEpisode { event: e, .. } => {
            let ep = episode(e.episode_id)?;
            if ep.ended_at.is_some() {
                return Err(invalid(format!("episode {} has already ended", e.episode_id)));
            }
            not_before("endedAt", e.ended_at, "startedAt", ep.started_at)?;
            if let Some(last) = ep.last_session_at {
                not_before("endedAt", e.ended_at, "the episode's last session", last)?;
            }
            if let Some(last) = ep.assignments.iter().map(|a| a.assigned_at).max() {
                not_before("endedAt", e.ended_at, "the episode's last therapist assignment", last)?;
            }
            Ok(e.into())
        }
        Command::AssignTherapist { event: e, .. } => {
            therapist(e.therapist_id)?;
            let ep = episode(e.episode_id)?;
            within_episode("assignedAt", e.assigned_at, ep)?;
            if ep.assignments.iter().any(|a| a.therapist_id == e.therapist_id && a.released_at.is_none()) {
                return Err(DomainError::AlreadyExists(format!(
                    "therapist {} is already assigned to episode {}",
                    e.therapist_id, e.episode_id
                )));
            }
            Ok(e.into())
        }
        Command::ReleaseTherapist { event: e, .. } => {
            let ep = episode(e.episode_id)?;
            let a = ep
                .assignments
                .iter()
                .find(|a| a.therapist_id == e.therapist_id && a.released_at.is_none())
                .ok_or_else(|| {
                    invalid(format!("therapist {} is not assigned to episode {}", e.therapist_id, e.episode_id))
                })?;
            not_before("releasedAt", e.released_at, "assignedAt", a.assigned_at)?;
            within_episode("releasedAt", e.released_at, ep)?;
            Ok(e.into())
        }
        Command::RecordSession { event: e, .. } => {
            therapist(e.therapist_id)?;
            let ep = episode(e.episode_id)?;
            if p.sessions.contains(&e.session_id) {
                return Err(DomainError::AlreadyExists(format!("session {} already exists", e.session_id)));
            }
            within_episode("at", e.at, ep)?;
            Ok(e.into())
        }
        Command::RecordStay { event: e, .. } => {
            inpatient(e.service_id)?;
            if p.admissions.contains_key(&e.admission_id) {
                return Err(DomainError::AlreadyExists(format!("admission {} already exists", e.admission_id)));
            }
            if e.discharged_at <= e.admitted_at {
                return Err(invalid("dischargedAt must be after admittedAt"));
            }
            // Both ends are known: it overlaps a stay that starts before it ends and ends (or
            // is still open) after it starts, in whichever order they were recorded.
            let overlapping = p
                .admissions
                .iter()
                .find(|(_, a)| a.admitted_at < e.discharged_at && a.discharged_at.is_none_or(|d| d > e.admitted_at));
            if let Some((id, _)) = overlapping {
                return Err(invalid(format!("the stay overlaps a recorded stay{RECORDED}admission {id})")));
            }
            Ok(e.into())
        }
        Command::AdmitPatient { event: e, .. } => {
            inpatient(e.service_id)?;
            if p.admissions.contains_key(&e.admission_id) {
                return Err(DomainError::AlreadyExists(format!("admission {} already exists", e.admission_id)));
            }
            // The new stay is open-ended, so it overlaps every stay that is open or ends after it starts.
            if let Some((id, _)) = p.admissions.iter().find(|(_, a)| a.discharged_at.is_none_or(|d| d > e.admitted_at))
            {
                return Err(invalid(format!("the admission overlaps a recorded stay{RECORDED}admission {id})")));
            }
            Ok(e.into())
        }
        Command::DischargePatient { event: e, .. } => {
            let a = p
                .admissions
                .get(&e.admission_id)
                .ok_or_else(|| DomainError::NotFound(format!("admission {} not found", e.admission_id)))?;
            if a.discharged_at.is_some() {
                return Err(invalid(format!("admission {} is already discharged", e.admission_id)));
            }
            if e.discharged_at <= a.admitted_at {
                return Err(invalid("dischargedAt must be after admittedAt"));
            }
            Ok(e.into())
        }
        Command::RecordOutcome { event: mut e, .. } => {
            // The command's own input first, the recorded facts after: a refusal for bad items
            // must not say whether the time fell inside the episode (a probe that writes nothing).
            let want = e.instrument.item_count();
            if e.items.len() != want {
                return Err(invalid(format!("{} takes exactly {want} items, got {}", e.instrument, e.items.len())));
            }
            if let Some(bad) = e.items.iter().position(|&i| i > 3) {
                return Err(invalid(format!("item {} is {}, items are scored 0 to 3", bad + 1, e.items[bad])));
            }
            within_episode("measuredAt", e.measured_at, episode(e.episode_id)?)?;
            e.total = e.items.iter().map(|&i| u32::from(i)).sum();
            Ok(e.into())
        }
        // Refused above once the patient is forgotten (as a patient never registered is).
        Command::ForgetPatient(e) => Ok(e.into()),
        Command::RegisterService(_) | Command::RegisterTherapist(_) | Command::RegisterPatient(_) => {
            unreachable!("reference commands are decided in `decide`")
        }
    }
}

/// A name must already be clean (the API cleans it before building the command, so a retry
/// compares equal); see `text::clean_name`.
fn non_empty(field: &str, value: &str) -> Result<(), DomainError> {
    match crate::text::clean_name(value) {
        Ok(clean) if clean == value => Ok(()),
        Ok(_) => Err(invalid(format!("{field} must be trimmed and in Unicode NFC"))),
        Err(crate::text::NameError::Length) => {
            Err(invalid(format!("{field} must be 1 to {} characters", crate::text::MAX_NAME_CHARS)))
        }
        Err(crate::text::NameError::Forbidden(c)) => {
            Err(invalid(format!("{field} holds {c}, a control, invisible or direction-changing character")))
        }
    }
}

/// `t` (the command's) must not be before `earlier`, a time recorded on the stream.
fn not_before(field: &str, t: Timestamp, other: &str, earlier: Timestamp) -> Result<(), DomainError> {
    if t < earlier {
        return Err(invalid(format!("{field} {t} is before {other}{RECORDED}{earlier})")));
    }
    Ok(())
}

fn within_episode(field: &str, t: Timestamp, ep: &EpisodeState) -> Result<(), DomainError> {
    not_before(field, t, "the episode's startedAt", ep.started_at)?;
    if let Some(end) = ep.ended_at {
        if t > end {
            return Err(invalid(format!("{field} {t} is after the episode's endedAt{RECORDED}{end})")));
        }
    }
    Ok(())
}
