//! The in-memory read model: reference data and one view per patient, folded from the log.

use std::sync::Arc;

use imbl::OrdMap;

/// A persistent hash map with foldhash rather than SipHash: the read model's maps are looked up
/// hundreds of thousands of times per report and replay, so the hash's cost shows. foldhash is
/// seeded per process, so client-chosen ids cannot be aimed at one bucket ahead of time.
pub type HashMap<K, V> = imbl::GenericHashMap<K, V, foldhash::fast::RandomState, imbl::shared_ptr::DefaultSharedPtr>;

use forlop_domain::events::*;
use forlop_domain::{
    Attendance, CareLevel, Event, Gender, Instrument, MeasurePhase, ReferralDecision, ReferralSource, RejectionReason,
    StreamRef,
};

pub use crate::continuity_figures::ContinuityCache;
use uuid::Uuid;

/// Envelope facts a fold needs besides the event itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventMeta {
    pub position: u64,
    pub stream_version: u64,
    /// The patient whose stream holds the event, if any.
    pub patient_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServiceView {
    pub id: Uuid,
    pub name: String,
    pub care_level: CareLevel,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TherapistView {
    pub id: Uuid,
    pub name: String,
    pub hpr_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReferralView {
    pub id: Uuid,
    pub service_id: Uuid,
    pub source: ReferralSource,
    #[serde(with = "forlop_domain::time_codec")]
    pub received_at: Timestamp,
    #[serde(with = "decision_codec")]
    pub decision: Option<(ReferralDecision, Option<RejectionReason>, Timestamp)>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpisodeView {
    pub id: Uuid,
    pub service_id: Uuid,
    /// The service's care level, fixed when the episode started.
    pub care_level: CareLevel,
    pub referral_id: Option<Uuid>,
    #[serde(with = "forlop_domain::time_codec")]
    pub started_at: Timestamp,
    pub ended: Option<EpisodeEnded>,
    /// An emergency admission without a referral.
    #[serde(default)]
    pub acute: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdmissionView {
    pub id: Uuid,
    pub service_id: Uuid,
    #[serde(with = "forlop_domain::time_codec")]
    pub admitted_at: Timestamp,
    #[serde(with = "forlop_domain::time_codec::option")]
    pub discharged_at: Option<Timestamp>,
}

/// A patient's facts are kept in recording order (log order), which breaks ties in clinical
/// time: the first of equal times is the earliest recorded. So they carry no log position.
///
/// A session as the read model keeps it: 36 bytes where the event takes 64, because sessions
/// are most of what it holds (eight a patient at city scale). Its episode and therapist are
/// indexes into the patient's `episodes` and `therapists`; `PatientView::sessions` gives them
/// back as ids.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionFact {
    pub session_id: Uuid,
    #[serde(with = "forlop_domain::time_codec")]
    pub at: Timestamp,
    therapist: u32,
    episode: u16,
    pub attendance: Attendance,
}

/// The episode index of a fact whose episode is not among the patient's (the command path never
/// records one; a log imported with `--trust-unverified` might hold one). It reads as the nil
/// id, which no episode has, so such a fact counts for no episode, as its unknown id did before.
const NO_EPISODE: u16 = u16::MAX;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AssignmentFact {
    pub episode_id: Uuid,
    pub therapist_id: Uuid,
    #[serde(with = "forlop_domain::time_codec")]
    pub assigned_at: Timestamp,
    #[serde(with = "forlop_domain::time_codec::option")]
    pub released_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReleaseFact {
    pub event: TherapistReleased,
}

/// An outcome measure as the read model keeps it: 32 bytes where the event takes 64 and a heap
/// allocation for its items. Its episode is an index into the patient's `episodes`
/// (`PatientView::outcome_episode_id`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutcomeFact {
    episode: u16,
    pub instrument: Instrument,
    pub phase: MeasurePhase,
    item_count: u8,
    items: [u8; MAX_ITEMS],
    pub total: u32,
    #[serde(with = "forlop_domain::time_codec")]
    pub measured_at: Timestamp,
}

/// Items the read model keeps of an outcome: PHQ-9's nine, the most of any instrument forlop
/// records. The command path checks each instrument's exact count; the log keeps every item.
pub const MAX_ITEMS: usize = 9;

impl OutcomeFact {
    /// The item scores, in the instrument's order.
    pub fn items(&self) -> &[u8] {
        &self.items[..usize::from(self.item_count)]
    }
}

/// Everything recorded about one patient, in recording order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PatientView {
    pub id: Uuid,
    /// Version of the patient's stream (its last event).
    pub version: u64,
    pub birth_year: i32,
    pub gender: Gender,
    pub referrals: List<ReferralView>,
    pub episodes: List<EpisodeView>,
    pub admissions: List<AdmissionView>,
    /// Sessions in recording order; read them through `sessions()`, which names their episode
    /// and therapist.
    pub session_facts: List<SessionFact>,
    /// Every therapist a session of this patient names, in order of first appearance: the
    /// sessions refer to them by index.
    pub therapists: List<Uuid>,
    pub assignments: List<AssignmentFact>,
    pub releases: List<ReleaseFact>,
    pub outcomes: List<OutcomeFact>,
    /// The national id as sealed in the log; only the vault can open it, and not after erasure.
    pub sealed_national_id: Option<String>,
    /// True once the patient's data key was destroyed on request.
    pub forgotten: bool,
    /// The patient's continuity, computed on first read after a change.
    #[serde(skip)]
    pub cached_continuity: ContinuityCache,
}

/// A patient's list of facts: a boxed slice, 16 bytes where a `Vec` takes 24 and no spare
/// capacity. A patient has eight of them and most grow a few times in its life, so the extra
/// reallocation per fact (`push`) is cheap, and at 190,000 patients the headers alone save 12 MB.
pub type List<T> = Box<[T]>;

/// Appends `item` to `list`.
fn push<T>(list: &mut List<T>, item: T) {
    let mut grown = std::mem::take(list).into_vec();
    grown.reserve_exact(1);
    grown.push(item);
    *list = grown.into_boxed_slice();
}

impl PatientView {
    /// Every referral, episode, session and admission id of this patient (ids that are global).
    pub fn fact_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.referrals
            .iter()
            .map(|r| r.id)
            .chain(self.episodes.iter().map(|e| e.id))
            .chain(self.session_facts.iter().map(|s| s.session_id))
            .chain(self.admissions.iter().map(|a| a.id))
    }

    /// The sessions in recording order, each as the event that recorded it.
    pub fn sessions(&self) -> impl ExactSizeIterator<Item = SessionRecorded> + Clone + '_ {
        self.session_facts.iter().map(|s| self.session(s))
    }

    /// The sessions of one episode, in recording order.
    pub fn sessions_of(&self, episode: Uuid) -> impl Iterator<Item = SessionRecorded> + '_ {
        let index = self.episode_index(episode);
        self.session_facts.iter().filter(move |s| index != NO_EPISODE && s.episode == index).map(|s| self.session(s))
    }

    fn session(&self, s: &SessionFact) -> SessionRecorded {
        SessionRecorded {
            session_id: s.session_id,
            episode_id: self.episode_id_at(s.episode),
            therapist_id: self.therapists.get(s.therapist as usize).copied().unwrap_or_default(),
            attendance: s.attendance,
            at: s.at,
        }
    }

    /// The episode an outcome was measured in.
    pub fn outcome_episode_id(&self, o: &OutcomeFact) -> Uuid {
        self.episode_id_at(o.episode)
    }

    /// The outcomes of one episode, in recording order.
    pub fn outcomes_of(&self, episode: Uuid) -> impl Iterator<Item = &OutcomeFact> + '_ {
        let index = self.episode_index(episode);
        self.outcomes.iter().filter(move |o| index != NO_EPISODE && o.episode == index)
    }

    fn episode_id_at(&self, index: u16) -> Uuid {
        self.episodes.get(usize::from(index)).map_or(Uuid::nil(), |e| e.id)
    }

    /// The index by which facts name one of the patient's episodes (`NO_EPISODE` if it is not one).
    fn episode_index(&self, id: Uuid) -> u16 {
        self.episodes.iter().rposition(|e| e.id == id).and_then(|i| u16::try_from(i).ok()).unwrap_or(NO_EPISODE)
    }

    fn therapist_index(&mut self, id: Uuid) -> u32 {
        match self.therapists.iter().position(|t| *t == id) {
            Some(i) => i as u32,
            None => {
                push(&mut self.therapists, id);
                (self.therapists.len() - 1) as u32
            }
        }
    }

    pub fn episode(&self, id: Uuid) -> Option<&EpisodeView> {
        self.episodes.iter().find(|e| e.id == id)
    }

    pub fn referral(&self, id: Uuid) -> Option<&ReferralView> {
        self.referrals.iter().find(|r| r.id == id)
    }
}

/// All read models, folded from the log in position order.
///
/// Persistent maps (`imbl`) with each patient behind an `Arc`: a clone is a snapshot that costs a
/// few reference counts, and folding an event into the next version copies only the path to what
/// changed (the patient's view once, and a few map nodes). Readers keep the snapshot they started
/// with; the projector never waits for them.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReadModel {
    pub services: HashMap<Uuid, ServiceView>,
    pub therapists: HashMap<Uuid, TherapistView>,
    /// An ordered map: its B-tree nodes hold patients densely, where a hash trie of 190,000
    /// patients left most of its fixed 32-slot nodes empty (about 110 bytes a patient).
    pub patients: OrdMap<Uuid, Arc<PatientView>>,
    /// Per service: (startedAt, episode id) -> the episode's patient and end, for cohorts by
    /// start date. Derived from `patients`, so checkpoints leave both indexes out (`reindex`).
    #[serde(skip)]
    pub episodes_by_service: EpisodesByService,
    /// Per service: (receivedAt, referral id) -> patient id.
    #[serde(skip)]
    pub referrals_by_service: ReferralsByService,
    /// Number of log events folded so far (the next position expected).
    pub position: u64,
}

/// Per service: (startedAt, episode id) -> the episode's patient and end.
pub type EpisodesByService = HashMap<Uuid, OrdMap<(Timestamp, Uuid), EpisodeEntry>>;
/// Per service: (receivedAt, referral id) -> patient id.
pub type ReferralsByService = HashMap<Uuid, OrdMap<(Timestamp, Uuid), Uuid>>;

/// An entry of `episodes_by_service`: whose episode it is and when it ended, so that a scan for
/// open episodes (care alerts, the services overview) skips closed ones without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpisodeEntry {
    pub patient_id: Uuid,
    pub ended_at: Option<Timestamp>,
}

impl EpisodeEntry {
    /// Whether the episode (started before `as_of`, as the index range says) is open then.
    pub fn open_at(&self, as_of: Timestamp) -> bool {
        self.ended_at.is_none_or(|end| end > as_of)
    }
}

/// A referral's decision with its time in the compact encoding (see `time_codec`).
mod decision_codec {
    use forlop_domain::time_codec::Compact;
    use forlop_domain::{ReferralDecision, RejectionReason, Timestamp};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Decision = Option<(ReferralDecision, Option<RejectionReason>, Timestamp)>;

    pub fn serialize<S: Serializer>(d: &Decision, s: S) -> Result<S::Ok, S::Error> {
        d.map(|(decision, reason, at)| (decision, reason, Compact(at))).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decision, D::Error> {
        let got = Option::<(ReferralDecision, Option<RejectionReason>, Compact)>::deserialize(d)?;
        Ok(got.map(|(decision, reason, at)| (decision, reason, at.0)))
    }
}

impl ReadModel {
    /// Whether the model holds the patient, service or therapist whose stream this is.
    pub fn holds(&self, stream: StreamRef) -> bool {
        match stream {
            StreamRef::Patient(id) => self.patients.contains_key(&id),
            StreamRef::Service(id) => self.services.contains_key(&id),
            StreamRef::Therapist(id) => self.therapists.contains_key(&id),
        }
    }

    /// Rebuilds the per-service indexes from the patients (after decoding a checkpoint, which
    /// leaves them out).
    pub fn reindex(&mut self) {
        (self.episodes_by_service, self.referrals_by_service) = self.service_indexes();
    }

    /// The per-service indexes, derived from the patients (see `reindex`).
    pub fn service_indexes(&self) -> (EpisodesByService, ReferralsByService) {
        let mut episodes = EpisodesByService::default();
        let mut referrals = ReferralsByService::default();
        for p in self.patients.values() {
            for r in &p.referrals {
                referrals.entry(r.service_id).or_default().insert((r.received_at, r.id), p.id);
            }
            for e in &p.episodes {
                let entry = EpisodeEntry { patient_id: p.id, ended_at: e.ended.as_ref().map(|end| end.ended_at) };
                episodes.entry(e.service_id).or_default().insert((e.started_at, e.id), entry);
            }
        }
        (episodes, referrals)
    }

    /// Folds one event. Events the read model has no use for only advance the position.
    pub fn apply(&mut self, meta: EventMeta, event: &Event) {
        self.position = meta.position + 1;
        match event {
            Event::ServiceRegistered(e) => {
                self.services.insert(
                    e.service_id,
                    ServiceView { id: e.service_id, name: e.name.clone(), care_level: e.care_level },
                );
                return;
            }
            Event::TherapistRegistered(e) => {
                self.therapists.insert(
                    e.therapist_id,
                    TherapistView { id: e.therapist_id, name: e.name.clone(), hpr_number: e.hpr_number.clone() },
                );
                return;
            }
            Event::PatientRegistered(e) => {
                self.patients.insert(
                    e.patient_id,
                    Arc::new(PatientView {
                        id: e.patient_id,
                        version: meta.stream_version,
                        birth_year: e.birth_year,
                        gender: e.gender,
                        referrals: List::default(),
                        episodes: List::default(),
                        admissions: List::default(),
                        session_facts: List::default(),
                        therapists: List::default(),
                        assignments: List::default(),
                        releases: List::default(),
                        outcomes: List::default(),
                        sealed_national_id: e.national_id.clone(),
                        forgotten: false,
                        cached_continuity: ContinuityCache::default(),
                    }),
                );
                return;
            }
            _ => {}
        }
        let Some(p) = meta.patient_id.and_then(|id| self.patients.get_mut(&id)) else {
            return;
        };
        // Copies the view only if a snapshot still holds this version of it.
        let p = Arc::make_mut(p);
        p.version = meta.stream_version;
        p.cached_continuity = ContinuityCache::default();

        match event {
            Event::ReferralReceived(e) => {
                self.referrals_by_service.entry(e.service_id).or_default().insert((e.received_at, e.referral_id), p.id);
                push(
                    &mut p.referrals,
                    ReferralView {
                        id: e.referral_id,
                        service_id: e.service_id,
                        source: e.source,
                        received_at: e.received_at,
                        decision: None,
                    },
                )
            }
            Event::ReferralDecided(e) => {
                if let Some(r) = p.referrals.iter_mut().find(|r| r.id == e.referral_id) {
                    r.decision = Some((e.decision, e.reason, e.decided_at));
                }
            }
            Event::EpisodeStarted(e) => {
                let care_level = self.services.get(&e.service_id).map_or(CareLevel::Municipal, |s| s.care_level);
                let entry = EpisodeEntry { patient_id: p.id, ended_at: None };
                self.episodes_by_service.entry(e.service_id).or_default().insert((e.started_at, e.episode_id), entry);
                push(
                    &mut p.episodes,
                    EpisodeView {
                        id: e.episode_id,
                        service_id: e.service_id,
                        care_level,
                        referral_id: e.referral_id,
                        started_at: e.started_at,
                        ended: None,
                        acute: e.acute,
                    },
                );
            }
            Event::EpisodeEnded(e) => {
                if let Some(ep) = p.episodes.iter_mut().find(|ep| ep.id == e.episode_id) {
                    ep.ended = Some(e.clone());
                    let entry = self
                        .episodes_by_service
                        .get_mut(&ep.service_id)
                        .and_then(|m| m.get_mut(&(ep.started_at, ep.id)));
                    if let Some(entry) = entry {
                        entry.ended_at = Some(e.ended_at);
                    }
                }
            }
            Event::TherapistAssigned(e) => push(
                &mut p.assignments,
                AssignmentFact {
                    episode_id: e.episode_id,
                    therapist_id: e.therapist_id,
                    assigned_at: e.assigned_at,
                    released_at: None,
                },
            ),
            Event::TherapistReleased(e) => {
                if let Some(a) = p.assignments.iter_mut().find(|a| {
                    a.episode_id == e.episode_id && a.therapist_id == e.therapist_id && a.released_at.is_none()
                }) {
                    a.released_at = Some(e.released_at);
                }
                push(&mut p.releases, ReleaseFact { event: e.clone() });
            }
            Event::SessionRecorded(e) => {
                let fact = SessionFact {
                    session_id: e.session_id,
                    at: e.at,
                    therapist: p.therapist_index(e.therapist_id),
                    episode: p.episode_index(e.episode_id),
                    attendance: e.attendance,
                };
                push(&mut p.session_facts, fact);
            }
            Event::PatientAdmitted(e) => push(
                &mut p.admissions,
                AdmissionView {
                    id: e.admission_id,
                    service_id: e.service_id,
                    admitted_at: e.admitted_at,
                    discharged_at: None,
                },
            ),
            Event::PatientDischarged(e) => {
                if let Some(a) = p.admissions.iter_mut().find(|a| a.id == e.admission_id) {
                    a.discharged_at = Some(e.discharged_at);
                }
            }
            Event::StayRecorded(e) => push(
                &mut p.admissions,
                AdmissionView {
                    id: e.admission_id,
                    service_id: e.service_id,
                    admitted_at: e.admitted_at,
                    discharged_at: Some(e.discharged_at),
                },
            ),
            Event::OutcomeRecorded(e) => {
                let mut items = [0; MAX_ITEMS];
                let kept = e.items.len().min(MAX_ITEMS);
                items[..kept].copy_from_slice(&e.items[..kept]);
                let fact = OutcomeFact {
                    episode: p.episode_index(e.episode_id),
                    instrument: e.instrument,
                    phase: e.phase,
                    item_count: kept as u8,
                    items,
                    total: e.total,
                    measured_at: e.measured_at,
                };
                push(&mut p.outcomes, fact);
            }
            Event::PatientForgotten(_) => {
                p.forgotten = true;
                p.sealed_national_id = None;
            }
            Event::ServiceRegistered(_) | Event::TherapistRegistered(_) | Event::PatientRegistered(_) => {}
        }
    }
}
