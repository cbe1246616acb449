//! `decide`: checks a command against the state of its stream and the references it names, and
//! yields the one event it records. The checks every command gets are here; each kind of fact's
//! rules are in a module of their own.

mod assignments;
mod episodes;
mod outcomes;
mod referrals;
mod registrations;
mod rules;
mod sessions;
mod stays;

use crate::commands::Command;
use crate::error::{invalid, DomainError};
use crate::events::Event;
use crate::stream_state::{References, StreamState};

pub use registrations::BIRTH_YEARS;
use rules::PatientFacts;

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
        Command::RegisterService(e) => registrations::service(state, e),
        Command::RegisterTherapist(e) => registrations::therapist(state, e),
        Command::RegisterPatient(e) => registrations::patient(state, e),
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
    let facts = PatientFacts { patient_id, p: &state.patient, refs };
    match command {
        Command::ReceiveReferral { event, .. } => referrals::receive(&facts, event),
        Command::DecideReferral { event, .. } => referrals::decide(&facts, event),
        Command::StartEpisode { event, .. } => episodes::start(&facts, event),
        Command::EndEpisode { event, .. } => episodes::end(&facts, event),
        Command::AssignTherapist { event, .. } => assignments::assign(&facts, event),
        Command::ReleaseTherapist { event, .. } => assignments::release(&facts, event),
        Command::RecordSession { event, .. } => sessions::record(&facts, event),
        Command::RecordStay { event, .. } => stays::record_stay(&facts, event),
        Command::AdmitPatient { event, .. } => stays::admit(&facts, event),
        Command::DischargePatient { event, .. } => stays::discharge(&facts, event),
        Command::RecordOutcome { event, .. } => outcomes::record(&facts, event),
        // Refused above once the patient is forgotten (as a patient never registered is).
        Command::ForgetPatient(e) => Ok(e.into()),
        Command::RegisterService(_) | Command::RegisterTherapist(_) | Command::RegisterPatient(_) => {
            unreachable!("reference commands are decided in `decide`")
        }
    }
}
