//! EpisodeOfCare: an episode started (accepting its referral), its therapists assigned and
//! released over time, and its end.

use chrono::{DateTime, Utc};
use forlop_domain::events::{EpisodeEnded, EpisodeStarted, ReferralDecided, TherapistAssigned, TherapistReleased};
use forlop_domain::text::quote;
use forlop_domain::{Command, EndReason, ReferralDecision, ReleaseReason};
use uuid::Uuid;

use super::resolving::{ResourceRef, Target};
use super::terminology::{EXT_ACUTE, EXT_END_REASON, EXT_PATIENT_NOTIFIED, EXT_RELEASE_REASON};
use super::{practitioner, time, Fact, Issues, Mapper, Placed};
use crate::outcome::{Issue, IssueType};
use crate::resources::{CareTeamParticipant, Contained, EpisodeOfCare, Resource};

/// What an episode is opened with: who, where, on which referral, and when.
struct Opened {
    patient_id: Uuid,
    service_id: Uuid,
    referral_id: Option<Uuid>,
    started_at: DateTime<Utc>,
    /// Given when the episode is finished or cancelled.
    ended_at: Option<DateTime<Utc>>,
}

/// A therapist's part in an episode: from when, and how it ended if it has.
struct Assignment {
    therapist_id: Uuid,
    assigned_at: DateTime<Utc>,
    release: Option<Release>,
}

/// When a therapist's part in an episode ended, why, and whether the patient was told.
struct Release {
    released_at: DateTime<Utc>,
    reason: ReleaseReason,
    patient_notified: bool,
}

impl<'a> Mapper<'a> {
    pub(super) fn episode(&self, p: &'a Placed, r: &'a EpisodeOfCare) -> Result<Vec<Fact>, Issues> {
        if !carries_facts(r, &p.path)? {
            return Ok(vec![]);
        }
        let opened = self.opened(p, r)?;
        let mut facts = self.contained_therapists(p, r)?;
        if let Some(referral_id) = opened.referral_id {
            facts.extend(self.acceptance(&opened, referral_id));
        }
        let acute = r.extension.iter().any(|e| e.url == EXT_ACUTE && e.value_boolean == Some(true));
        facts.push(Fact::of(
            p.id,
            "started",
            Command::StartEpisode {
                patient_id: opened.patient_id,
                event: EpisodeStarted {
                    episode_id: p.id,
                    service_id: opened.service_id,
                    referral_id: opened.referral_id,
                    started_at: opened.started_at,
                    acute,
                },
            },
        ));
        let mut assignments = self.assignments(p, r, &opened)?;
        assignments.sort_by_key(|a| a.assigned_at);
        facts.extend(assignments.into_iter().flat_map(|a| assignment_facts(p, opened.patient_id, a)));
        if let Some(ended_at) = opened.ended_at {
            facts.push(ended(p, r, opened.patient_id, ended_at)?);
        }
        Ok(facts)
    }

    /// The patient, service, referral and dates, or every issue with them.
    fn opened(&self, p: &'a Placed, r: &'a EpisodeOfCare) -> Result<Opened, Issues> {
        let path = p.path.as_str();
        let mut issues = Vec::new();
        let patient = self
            .patient(r.patient.as_ref(), &format!("{path}.patient"), p, &r.contained)
            .map_err(|i| issues.push(i))
            .ok();
        let service = self
            .service(r.managing_organization.as_ref(), &format!("{path}.managingOrganization"), p, &r.contained)
            .map_err(|i| issues.push(i))
            .ok();
        let referral_id = match r.referral_request.first() {
            None => None,
            Some(rr) => self
                .resolve(rr, &format!("{path}.referralRequest[0]"), &["ServiceRequest"], &r.contained, p)
                .map_err(|i| issues.push(i))
                .ok()
                .map(|t| t.id),
        };
        // The start: period.start, else the first active status in the history.
        let start_text =
            r.period.as_ref().and_then(|x| x.start.clone()).or_else(|| {
                r.status_history.iter().find(|h| h.status == "active").and_then(|h| h.period.start.clone())
            });
        let start = time(start_text.as_deref(), &format!("{path}.period.start")).map_err(|i| issues.push(i)).ok();
        let ended_at = end(r, path).map_err(|i| issues.push(i)).ok().flatten();
        let (Some(patient_id), Some(service_id), Some(started_at), true) = (patient, service, start, issues.is_empty())
        else {
            return Err(issues);
        };
        Ok(Opened { patient_id, service_id, referral_id, started_at, ended_at })
    }

    /// A contained Practitioner with an HPR number is a therapist like any other.
    fn contained_therapists(&self, p: &'a Placed, r: &'a EpisodeOfCare) -> Result<Vec<Fact>, Issues> {
        let mut facts = Vec::new();
        for (ci, c) in r.contained.iter().enumerate() {
            let Contained::Practitioner(pr) = c else { continue };
            let local = pr.id.as_deref().unwrap_or_default();
            let therapist_id =
                self.contained_id(c, p, local, &format!("{}.contained[{ci}]", p.path)).map_err(|i| vec![i])?;
            facts.extend(practitioner::contained_registration(therapist_id, pr));
        }
        Ok(facts)
    }

    /// Care starting on a referral means it was accepted, by then at the latest: unless it is
    /// decided already (or revoked in this Bundle).
    fn acceptance(&self, opened: &Opened, referral_id: Uuid) -> Option<Fact> {
        let decided_in_bundle = self
            .scope
            .with_id(referral_id)
            .any(|q| matches!(&q.resource, Resource::ServiceRequest(s) if s.status == "revoked"));
        if decided_in_bundle || self.lookup.referral_decided(opened.patient_id, referral_id) {
            return None;
        }
        Some(Fact::of(
            referral_id,
            "accepted",
            Command::DecideReferral {
                patient_id: opened.patient_id,
                event: ReferralDecided {
                    referral_id,
                    decision: ReferralDecision::Accepted,
                    reason: None,
                    decided_at: opened.started_at,
                },
            },
        ))
    }

    /// Therapists: the care manager from the start, and each team member over its period.
    fn assignments(&self, p: &'a Placed, r: &'a EpisodeOfCare, opened: &Opened) -> Result<Vec<Assignment>, Issues> {
        let path = p.path.as_str();
        let mut issues = Vec::new();
        let mut assignments = Vec::new();
        if let Some(cm) = &r.care_manager {
            match self.therapist(cm, &format!("{path}.careManager"), p, &r.contained) {
                Ok(therapist_id) => {
                    assignments.push(Assignment { therapist_id, assigned_at: opened.started_at, release: None })
                }
                Err(i) => issues.push(i),
            }
        }
        for (ti, team) in r.team.iter().enumerate() {
            let tpath = format!("{path}.team[{ti}]");
            let participants = match self.resolve(team, &tpath, &["CareTeam"], &r.contained, p) {
                Ok(Target { resource: Some(ResourceRef::Contained(Contained::CareTeam(ct))), .. }) => &ct.participant,
                Ok(Target {
                    resource: Some(ResourceRef::Top(Placed { resource: Resource::CareTeam(ct), .. })),
                    ..
                }) => &ct.participant,
                Ok(_) => {
                    issues.push(Issue::new(
                        IssueType::NotFound,
                        tpath,
                        "the CareTeam must be contained or in the Bundle",
                    ));
                    continue;
                }
                Err(i) => {
                    issues.push(i);
                    continue;
                }
            };
            for (pi, part) in participants.iter().enumerate() {
                let ppath = format!("{tpath} (CareTeam.participant[{pi}])");
                match self.team_member(p, r, part, &ppath, opened) {
                    Ok(a) => assignments.extend(a),
                    Err(i) => issues.push(i),
                }
            }
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(assignments)
    }

    /// A CareTeam participant's assignment; none for a participant without a member.
    fn team_member(
        &self,
        p: &'a Placed,
        r: &'a EpisodeOfCare,
        part: &CareTeamParticipant,
        ppath: &str,
        opened: &Opened,
    ) -> Result<Option<Assignment>, Issue> {
        let Some(member) = &part.member else { return Ok(None) };
        let therapist_id = self.therapist(member, &format!("{ppath}.member"), p, &r.contained)?;
        let assigned_at = match part.period.as_ref().and_then(|x| x.start.as_deref()) {
            Some(s) => time(Some(s), &format!("{ppath}.period.start"))?,
            None => opened.started_at,
        };
        let release = match part.period.as_ref().and_then(|x| x.end.as_deref()) {
            None => None,
            Some(e) => Some(release(part, time(Some(e), &format!("{ppath}.period.end"))?, ppath, opened.ended_at)?),
        };
        Ok(Some(Assignment { therapist_id, assigned_at, release }))
    }
}

/// Whether an episode in this status carries facts, or the issue with its status.
fn carries_facts(r: &EpisodeOfCare, path: &str) -> Result<bool, Issues> {
    match r.status.as_str() {
        "planned" | "waitlist" | "entered-in-error" => Ok(false),
        "active" | "onhold" | "finished" | "cancelled" => Ok(true),
        other => Err(vec![Issue::new(
            IssueType::CodeInvalid,
            format!("{path}.status"),
            format!("{} is not an EpisodeOfCare status", quote(other)),
        )]),
    }
}

/// The end of a finished or cancelled episode (which must have one); none for one still open.
fn end(r: &EpisodeOfCare, path: &str) -> Result<Option<DateTime<Utc>>, Issue> {
    if !matches!(r.status.as_str(), "finished" | "cancelled") {
        return Ok(None);
    }
    match r.period.as_ref().and_then(|x| x.end.as_deref()) {
        Some(e) => time(Some(e), &format!("{path}.period.end")).map(Some),
        None => Err(Issue::new(
            IssueType::Required,
            format!("{path}.period.end"),
            "a finished or cancelled episode needs its end",
        )),
    }
}

/// A participant's release at `released_at`: the reason its extension gives, else the
/// episode's end if it is then, else another reason.
fn release(
    part: &CareTeamParticipant,
    released_at: DateTime<Utc>,
    ppath: &str,
    episode_end: Option<DateTime<Utc>>,
) -> Result<Release, Issue> {
    let code = part.extension.iter().find(|x| x.url == EXT_RELEASE_REASON).and_then(|x| x.value_code.as_deref());
    let reason = match code {
        Some(c) => *ReleaseReason::ALL.iter().find(|r| r.code() == c).ok_or_else(|| {
            Issue::new(
                IssueType::CodeInvalid,
                format!("{ppath}.extension"),
                format!("{} is not a release reason", quote(c)),
            )
        })?,
        None if Some(released_at) == episode_end => ReleaseReason::EpisodeEnded,
        None => ReleaseReason::Other,
    };
    let patient_notified =
        part.extension.iter().find(|x| x.url == EXT_PATIENT_NOTIFIED).and_then(|x| x.value_boolean).unwrap_or(false);
    Ok(Release { released_at, reason, patient_notified })
}

/// The facts of one assignment: the therapist assigned, and released if they were.
fn assignment_facts(p: &Placed, patient_id: Uuid, a: Assignment) -> Vec<Fact> {
    let Assignment { therapist_id, assigned_at, release } = a;
    let mut facts = vec![Fact::of(
        p.id,
        &format!("assigned:{therapist_id}:{}", assigned_at.timestamp()),
        Command::AssignTherapist {
            patient_id,
            event: TherapistAssigned { episode_id: p.id, therapist_id, assigned_at },
        },
    )];
    if let Some(Release { released_at, reason, patient_notified }) = release {
        facts.push(Fact::of(
            p.id,
            &format!("released:{therapist_id}:{}", assigned_at.timestamp()),
            Command::ReleaseTherapist {
                patient_id,
                event: TherapistReleased { episode_id: p.id, therapist_id, reason, patient_notified, released_at },
            },
        ));
    }
    facts
}

/// The episode's end, for the reason its extension gives, else by its status.
fn ended(p: &Placed, r: &EpisodeOfCare, patient_id: Uuid, ended_at: DateTime<Utc>) -> Result<Fact, Issues> {
    let code = r.extension.iter().find(|x| x.url == EXT_END_REASON).and_then(|x| x.value_code.as_deref());
    let reason = match code {
        Some(c) => *EndReason::ALL.iter().find(|r| r.code() == c).ok_or_else(|| {
            vec![Issue::new(
                IssueType::CodeInvalid,
                format!("{}.extension", p.path),
                format!("{} is not an end reason", quote(c)),
            )]
        })?,
        None if r.status == "cancelled" => EndReason::DroppedOut,
        None => EndReason::Completed,
    };
    Ok(Fact::of(
        p.id,
        "ended",
        Command::EndEpisode { patient_id, event: EpisodeEnded { episode_id: p.id, reason, ended_at } },
    ))
}
