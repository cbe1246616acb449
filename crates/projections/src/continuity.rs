//! Continuity of care for one patient, across care levels (the indices' definitions are in
//! docs/integration/graphql.md). Computed on demand from the patient's view: cheap, and always
//! exact for late entries.

use std::sync::Arc;

use forlop_domain::events::Timestamp;
use forlop_domain::{Attendance, CareLevel};
use uuid::Uuid;

pub use crate::continuity_figures::{Continuity, Handover, Indices, Segment};
use crate::read_model::PatientView;

/// Computes the indices over therapists of attended sessions in clinical order.
pub fn indices(therapists: &[Uuid]) -> Indices {
    let n = therapists.len();
    if n < 2 {
        return Indices::default();
    }
    let mut counts: Vec<(Uuid, u64)> = Vec::new();
    for t in therapists {
        match counts.iter_mut().find(|(id, _)| id == t) {
            Some((_, c)) => *c += 1,
            None => counts.push((*t, 1)),
        }
    }
    let nf = n as f64;
    let sum_sq: u64 = counts.iter().map(|(_, c)| c * c).sum();
    let max = counts.iter().map(|(_, c)| *c).max().unwrap_or(0);
    let same_pairs = therapists.windows(2).filter(|w| w[0] == w[1]).count();
    let k = counts.len() as f64;
    Indices {
        coc: Some((sum_sq as f64 - nf) / (nf * (nf - 1.0))),
        upc: Some(max as f64 / nf),
        secon: Some(same_pairs as f64 / (nf - 1.0)),
        mmci: Some((1.0 - k / (nf + 0.1)) / (1.0 - 1.0 / (nf + 0.1))),
    }
}

fn care_level_at(p: &PatientView, episode_id: Uuid, at: Timestamp) -> CareLevel {
    let admitted = p.admissions.iter().any(|a| a.admitted_at <= at && a.discharged_at.is_none_or(|d| at < d));
    if admitted {
        return CareLevel::SpecialistInpatient;
    }
    p.episode(episode_id).map_or(CareLevel::Municipal, |e| e.care_level)
}

impl PatientView {
    /// Continuity of care over the whole pathway, cached until the patient's next event.
    pub fn continuity(&self) -> Arc<Continuity> {
        self.cached_continuity.get_or_init(|| continuity(self))
    }
}

pub fn continuity(p: &PatientView) -> Continuity {
    let mut attended: Vec<_> = p.sessions().filter(|s| s.attendance == Attendance::Attended).collect();
    // Stable: sessions at the same time stay in recording order.
    attended.sort_by_key(|s| s.at);
    let therapists: Vec<Uuid> = attended.iter().map(|s| s.therapist_id).collect();

    let mut segments: Vec<Segment> = Vec::new();
    // For each segment after the first: did the therapist of the session before it appear in it?
    let mut kept: Vec<bool> = Vec::new();
    for s in &attended {
        let level = care_level_at(p, s.episode_id, s.at);
        let t = s.therapist_id;
        match segments.last_mut() {
            Some(seg) if seg.care_level == level => {
                seg.to = s.at;
                seg.sessions += 1;
                if !seg.therapist_ids.contains(&t) {
                    seg.therapist_ids.push(t);
                }
            }
            _ => {
                if !segments.is_empty() {
                    kept.push(false);
                }
                segments.push(Segment { care_level: level, from: s.at, to: s.at, therapist_ids: vec![t], sessions: 1 });
            }
        }
    }
    // A transition keeps the therapist when the last therapist before it holds a session after it.
    let mut idx = 0;
    for (i, pair) in segments.windows(2).enumerate() {
        idx += pair[0].sessions as usize;
        let before = therapists[idx - 1];
        kept[i] = pair[1].therapist_ids.contains(&before);
    }
    let transitions = kept.len() as u32;
    let keeping = kept.iter().filter(|k| **k).count() as u32;
    let mut distinct = therapists.clone();
    distinct.sort_unstable();
    distinct.dedup();

    Continuity {
        attended_sessions: attended.len() as u32,
        distinct_therapists: distinct.len() as u32,
        care_level_transitions: transitions,
        transitions_keeping_therapist: keeping,
        same_therapist_across_care_levels: (transitions > 0).then_some(keeping == transitions),
        indices: indices(&therapists),
        segments,
        handovers: handovers(p),
    }
}

fn days_between(a: Timestamp, b: Timestamp) -> f64 {
    (b - a).num_milliseconds() as f64 / 86_400_000.0
}

fn handovers(p: &PatientView) -> Vec<Handover> {
    let mut releases: Vec<_> = p.releases.iter().collect();
    releases.sort_by_key(|r| r.event.released_at);
    releases
        .into_iter()
        .map(|r| {
            let e = &r.event;
            let t = e.released_at;
            let of_episode = || p.assignments.iter().filter(|a| a.episode_id == e.episode_id);
            // Another therapist already active at the release takes over at once.
            let active = of_episode()
                .filter(|a| a.therapist_id != e.therapist_id)
                .filter(|a| a.assigned_at <= t && a.released_at.is_none_or(|rel| rel > t))
                .max_by_key(|a| a.assigned_at);
            let (to, gap) = match active {
                Some(a) => (Some(a.therapist_id), Some(0.0)),
                None => match of_episode().filter(|a| a.assigned_at >= t).min_by_key(|a| a.assigned_at) {
                    Some(a) => (Some(a.therapist_id), Some(days_between(t, a.assigned_at))),
                    None => (None, None),
                },
            };
            Handover {
                episode_id: e.episode_id,
                from_therapist_id: e.therapist_id,
                to_therapist_id: to,
                reason: e.reason,
                patient_notified: e.patient_notified,
                released_at: t,
                gap_days: gap,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(pattern: &str) -> Vec<Uuid> {
        pattern.bytes().map(|b| Uuid::from_u128(b as u128)).collect()
    }

    fn check(pattern: &str, index: fn(&Indices) -> Option<f64>, want: f64) {
        let got = index(&indices(&ids(pattern))).expect("defined");
        assert!((got - want).abs() < 5e-5, "{pattern}: got {got}, want {want}");
    }

    #[test]
    fn coc_matches_published_values() {
        let coc = |i: &Indices| i.coc;
        check("AAAABBBC", coc, 18.0 / 56.0);
        check("AAAABBCC", coc, 16.0 / 56.0);
        check("AAAAAAAABB", coc, 0.6444);
        check("AAAAAAAAAB", coc, 0.8);
        check("ABCDE", coc, 0.0);
        check("AAB", coc, 0.3333);
        check("DDDE", coc, 0.5);
    }

    #[test]
    fn secon_matches_published_values() {
        let secon = |i: &Indices| i.secon;
        check("AAB", secon, 0.5);
        check(&"AB".repeat(50), secon, 0.0);
        check("BAAA", secon, 0.6667);
    }

    #[test]
    fn mmci_matches_published_values() {
        let mmci = |i: &Indices| i.mmci;
        check("AA", mmci, 1.0);
        check("AAABB", mmci, 0.7561);
        check("AB", mmci, 0.0909);
    }

    #[test]
    fn upc_is_share_of_usual_provider() {
        check("AAAABBBC", |i| i.upc, 0.5);
        check("AB", |i| i.upc, 0.5);
    }

    #[test]
    fn indices_are_undefined_below_two_sessions() {
        assert_eq!(indices(&ids("A")), Indices::default());
        assert_eq!(indices(&[]), Indices::default());
    }
}
