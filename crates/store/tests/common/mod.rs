//! Access records for the access-log tests of every backend.

use chrono::{DateTime, Duration, TimeZone, Utc};
use forlop_store::access_log::{AccessOutcome, AccessRecord};
use uuid::Uuid;

pub fn t(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap() + Duration::minutes(minute) + Duration::nanoseconds(123_456_789)
}

pub fn rec(patient: Uuid, actor: &str, outcome: AccessOutcome, at: DateTime<Utc>) -> AccessRecord {
    AccessRecord {
        patient_id: patient,
        actor_sub: actor.into(),
        actor_name: Some(format!("Dr. {actor}")),
        role: "physician".into(),
        hpr_number: Some("1234567".into()),
        operation: "PatientView".into(),
        fields: "patient,events".into(),
        outcome,
        reason: (outcome == AccessOutcome::Emergency).then(|| "bevisstløs pasient".into()),
        correlation_id: Some(Uuid::new_v4()),
        at,
    }
}
