//! Encounter: an inpatient stay (class IMP: admitted, discharged, or both at once) or a
//! session (AMB, VR, DT), attended or not.

use chrono::{DateTime, Utc};
use forlop_domain::events::{PatientAdmitted, PatientDischarged, SessionRecorded, StayRecorded};
use forlop_domain::text::quote;
use forlop_domain::{Attendance, Command};
use uuid::Uuid;

use super::{time, Fact, Issues, Mapper, Placed};
use crate::outcome::{Issue, IssueType};
use crate::resources::Encounter;

/// What every class of Encounter is read for first: its patient and its start, and the issues
/// with them so far.
struct Begun {
    patient: Option<Uuid>,
    start: Result<DateTime<Utc>, Issue>,
    issues: Issues,
}

impl<'a> Mapper<'a> {
    pub(super) fn encounter(&self, p: &'a Placed, r: &'a Encounter) -> Result<Vec<Fact>, Issues> {
        let path = p.path.as_str();
        let class = r.class.as_ref().and_then(|c| c.code.as_deref()).ok_or_else(|| {
            vec![Issue::new(IssueType::Required, format!("{path}.class"), "the encounter class is required")]
        })?;
        let mut issues = Vec::new();
        let patient =
            self.patient(r.subject.as_ref(), &format!("{path}.subject"), p, &[]).map_err(|i| issues.push(i)).ok();
        let start = time(r.period.as_ref().and_then(|x| x.start.as_deref()), &format!("{path}.period.start"));
        let begun = Begun { patient, start, issues };
        match class {
            "IMP" => self.stay(p, r, begun),
            "AMB" | "VR" | "DT" => self.session(p, r, begun),
            other => Err(vec![Issue::new(
                IssueType::NotSupported,
                format!("{path}.class"),
                format!("class {} is not a pathway fact forlop records (IMP, AMB, VR, DT)", quote(other)),
            )]),
        }
    }

    /// A stay: admitted while it lasts, discharged once it has ended, or recorded whole.
    fn stay(&self, p: &'a Placed, r: &'a Encounter, begun: Begun) -> Result<Vec<Fact>, Issues> {
        let path = p.path.as_str();
        if matches!(r.status.as_str(), "planned" | "cancelled" | "entered-in-error") {
            return Ok(vec![]);
        }
        let Begun { patient, start, mut issues } = begun;
        let service = self
            .service(r.service_provider.as_ref(), &format!("{path}.serviceProvider"), p, &[])
            .map_err(|i| issues.push(i))
            .ok();
        let admitted = start.map_err(|i| issues.push(i)).ok();
        let discharged = match (r.status.as_str(), r.period.as_ref().and_then(|x| x.end.as_deref())) {
            ("finished", Some(e)) => time(Some(e), &format!("{path}.period.end")).map_err(|i| issues.push(i)).ok(),
            ("finished", None) => {
                issues.push(Issue::new(
                    IssueType::Required,
                    format!("{path}.period.end"),
                    "a finished stay needs its end",
                ));
                None
            }
            _ => None,
        };
        let (Some(patient_id), Some(service_id), Some(admitted_at), true) =
            (patient, service, admitted, issues.is_empty())
        else {
            return Err(issues);
        };
        let admission_id = p.id;
        Ok(match (self.lookup.admission_open(patient_id, admission_id), discharged) {
            // Recorded while it lasted: now it has ended.
            (Some(true), Some(discharged_at)) => vec![Fact::of(
                p.id,
                "discharged",
                Command::DischargePatient { patient_id, event: PatientDischarged { admission_id, discharged_at } },
            )],
            // Recorded as it is: nothing new.
            (Some(_), _) => vec![],
            // A past stay, both times at once: it may precede stays already recorded.
            (None, Some(discharged_at)) => vec![Fact::of(
                p.id,
                "stay",
                Command::RecordStay {
                    patient_id,
                    event: StayRecorded { admission_id, service_id, admitted_at, discharged_at },
                },
            )],
            (None, None) => vec![Fact::of(
                p.id,
                "admitted",
                Command::AdmitPatient { patient_id, event: PatientAdmitted { admission_id, service_id, admitted_at } },
            )],
        })
    }

    /// A session of an episode, held by a practitioner, attended or not.
    fn session(&self, p: &'a Placed, r: &'a Encounter, begun: Begun) -> Result<Vec<Fact>, Issues> {
        let path = p.path.as_str();
        let attendance = match r.status.as_str() {
            "finished" => Attendance::Attended,
            "cancelled" => cancellation(r),
            "planned" | "arrived" | "triaged" | "in-progress" | "onleave" | "entered-in-error" | "unknown" => {
                return Ok(vec![])
            }
            other => {
                return Err(vec![Issue::new(
                    IssueType::CodeInvalid,
                    format!("{path}.status"),
                    format!("{} is not an Encounter status", quote(other)),
                )])
            }
        };
        let Begun { patient, start, mut issues } = begun;
        let episode = match r.episode_of_care.first() {
            Some(e) => self
                .resolve(e, &format!("{path}.episodeOfCare[0]"), &["EpisodeOfCare"], &[], p)
                .map_err(|i| issues.push(i))
                .ok()
                .map(|t| t.id),
            None => {
                issues.push(Issue::new(
                    IssueType::Required,
                    format!("{path}.episodeOfCare"),
                    "a session must name its EpisodeOfCare",
                ));
                None
            }
        };
        let therapist = match r.participant.iter().find_map(|x| x.individual.as_ref()) {
            Some(ind) => self
                .therapist(ind, &format!("{path}.participant[0].individual"), p, &[])
                .map_err(|i| issues.push(i))
                .ok(),
            None => {
                issues.push(Issue::new(
                    IssueType::Required,
                    format!("{path}.participant"),
                    "a session needs the practitioner who held it (participant.individual): continuity is counted by therapist",
                ));
                None
            }
        };
        let at = start.map_err(|i| issues.push(i)).ok();
        let (Some(patient_id), Some(episode_id), Some(therapist_id), Some(at), true) =
            (patient, episode, therapist, at, issues.is_empty())
        else {
            return Err(issues);
        };
        Ok(vec![Fact::of(
            p.id,
            "session",
            Command::RecordSession {
                patient_id,
                event: SessionRecorded { session_id: p.id, episode_id, therapist_id, attendance, at },
            },
        )])
    }
}

/// Who cancelled a session, as its reason says: a no-show, the service, else the patient.
fn cancellation(r: &Encounter) -> Attendance {
    let says = |needle: &str| {
        r.reason_code.iter().any(|c| c.codes().chain(c.text.as_deref()).any(|t| t.to_lowercase().contains(needle)))
    };
    if says("no-show") || says("noshow") || says("ikke møtt") {
        Attendance::NoShow
    } else if says("service") || says("behandler") {
        Attendance::CancelledByService
    } else {
        Attendance::CancelledByPatient
    }
}
