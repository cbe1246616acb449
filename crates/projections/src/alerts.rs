//! Care alerts: open episodes where a patient has no therapist, has fallen away, or lost a
//! therapist without being told. Evaluated as of a clinical time, from facts at or before it.

use forlop_domain::events::Timestamp;
use forlop_domain::Attendance;
use uuid::Uuid;

use crate::read_model::{EpisodeView, PatientView, ReadModel};
use crate::reports::days_between;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    /// No therapist assigned, for longer than the threshold.
    Unassigned,
    /// No attended session for longer than the threshold: the patient may have fallen away.
    Inactive,
    /// A therapist was released in the last 30 days and the patient was not told.
    HandoverNotNotified,
}

impl AlertKind {
    pub fn code(self) -> &'static str {
        match self {
            AlertKind::Unassigned => "UNASSIGNED",
            AlertKind::Inactive => "INACTIVE",
            AlertKind::HandoverNotNotified => "HANDOVER_NOT_NOTIFIED",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CareAlert {
    pub kind: AlertKind,
    pub patient_id: Uuid,
    pub episode_id: Uuid,
    pub service_id: Uuid,
    /// When the condition began: episode start, last release, last attended session, or the release.
    pub since: Timestamp,
    /// Days from `since` to the evaluation time.
    pub days: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertThresholds {
    pub unassigned_days: f64,
    pub inactive_days: f64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds { unassigned_days: 7.0, inactive_days: 28.0 }
    }
}

/// How far back an unnotified release still raises an alert.
pub const HANDOVER_WINDOW_DAYS: f64 = 30.0;

/// Whether the episode is open at `as_of`, counting only facts at or before it.
pub fn open_at(e: &EpisodeView, as_of: Timestamp) -> bool {
    e.started_at < as_of && e.ended.as_ref().is_none_or(|end| end.ended_at > as_of)
}

/// The alerts of one episode as of `as_of` (empty unless the episode is open then).
pub fn episode_alerts(p: &PatientView, e: &EpisodeView, as_of: Timestamp, t: AlertThresholds) -> Vec<CareAlert> {
    let mut out = Vec::new();
    if !open_at(e, as_of) {
        return out;
    }
    let alert = |kind, since: Timestamp| CareAlert {
        kind,
        patient_id: p.id,
        episode_id: e.id,
        service_id: e.service_id,
        since,
        days: days_between(since, as_of),
    };
    let assignments = || p.assignments.iter().filter(|a| a.episode_id == e.id && a.assigned_at <= as_of);
    let assigned = assignments().any(|a| a.released_at.is_none_or(|r| r > as_of));
    if !assigned {
        let last_release = assignments().filter_map(|a| a.released_at).max();
        let since = last_release.map_or(e.started_at, |r| r.max(e.started_at));
        if days_between(since, as_of) > t.unassigned_days {
            out.push(alert(AlertKind::Unassigned, since));
        }
    }
    let last_attended =
        p.sessions_of(e.id).filter(|s| s.attendance == Attendance::Attended && s.at <= as_of).map(|s| s.at).max();
    let since = last_attended.unwrap_or(e.started_at);
    if days_between(since, as_of) > t.inactive_days {
        out.push(alert(AlertKind::Inactive, since));
    }
    for r in &p.releases {
        let r = &r.event;
        if r.episode_id == e.id && !r.patient_notified && r.released_at <= as_of {
            let days = days_between(r.released_at, as_of);
            if days <= HANDOVER_WINDOW_DAYS {
                out.push(alert(AlertKind::HandoverNotNotified, r.released_at));
            }
        }
    }
    out
}

/// Every alert as of `as_of`, for one service or all; by kind, then longest-standing first.
pub fn care_alerts(model: &ReadModel, as_of: Timestamp, service: Option<Uuid>, t: AlertThresholds) -> Vec<CareAlert> {
    let mut out = Vec::new();
    for (service_id, index) in &model.episodes_by_service {
        if service.is_some_and(|s| s != *service_id) {
            continue;
        }
        for ((_, episode_id), entry) in index.range(..(as_of, Uuid::nil())) {
            if !entry.open_at(as_of) {
                continue;
            }
            let Some(p) = model.patients.get(&entry.patient_id) else { continue };
            let Some(e) = p.episode(*episode_id) else { continue };
            if open_at(e, as_of) {
                out.extend(episode_alerts(p, e, as_of, t));
            }
        }
    }
    out.sort_by(|a, b| a.kind.cmp(&b.kind).then(b.days.total_cmp(&a.days)).then(a.episode_id.cmp(&b.episode_id)));
    out
}
