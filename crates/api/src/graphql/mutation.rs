//! Recording mutations: one per command, each appending exactly one event.

use async_graphql::{Context, InputObject, Object, Result};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use forlop_domain::events as ev;
use forlop_domain::Command;
use forlop_store::ExpectedVersion;

use super::context::{caller, engine};
use super::enums::*;
use super::objects::Recorded;
use crate::error::{ApiError, GqlResult, ToGql};
use forlop_domain::national_id::NationalId;
use forlop_engine::RecordOptions;

/// Declares an input object with the two fields every recording takes.
macro_rules! recording_input {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),+ $(,)? }) => {
        $(#[$m])*
        #[derive(InputObject, Debug)]
        pub struct $name {
            $($(#[$fm])* pub $field: $ty,)+
            /// Idempotency key: recording the same eventId with the same content again returns the
            /// original result and writes nothing; with other content it fails with IDEMPOTENCY_CONFLICT.
            pub event_id: Option<Uuid>,
            /// Record only if the target stream is at this version (-1: only if it does not exist
            /// yet); otherwise fail with WRONG_EXPECTED_VERSION.
            pub expected_version: Option<i32>,
        }
    };
}

recording_input!(RegisterServiceInput { service_id: Uuid, name: String, care_level: CareLevel });
recording_input!(RegisterTherapistInput {
    therapist_id: Uuid,
    name: String,
    /// Health personnel register number (HPR), digits only.
    hpr_number: Option<String>,
});
recording_input!(RegisterPatientInput {
    patient_id: Uuid,
    birth_year: i32,
    gender: Gender,
    /// Fødselsnummer, D- or H-number (synthetic test numbers too), checked with both check digits.
    /// Stored only sealed under the patient's data key, never in clear text.
    national_id: Option<String>,
});

/// Erasure on request: destroys the patient's data key (admins only).
#[derive(InputObject, Debug)]
pub struct ForgetPatientInput {
    pub patient_id: Uuid,
    pub event_id: Option<Uuid>,
}
recording_input!(ReceiveReferralInput {
    patient_id: Uuid,
    referral_id: Uuid,
    service_id: Uuid,
    source: ReferralSource,
    received_at: DateTime<Utc>,
});
recording_input!(DecideReferralInput {
    patient_id: Uuid,
    referral_id: Uuid,
    decision: ReferralDecision,
    /// Required when the decision is REJECTED, and only then.
    reason: Option<RejectionReason>,
    decided_at: DateTime<Utc>,
});
recording_input!(StartEpisodeInput {
    patient_id: Uuid,
    episode_id: Uuid,
    service_id: Uuid,
    /// The referral that led here: it must be accepted, and opens one episode. None only for
    /// municipal low-threshold services, or with `acute`.
    referral_id: Option<Uuid>,
    started_at: DateTime<Utc>,
    /// An emergency admission (øyeblikkelig hjelp): a specialist episode without a referral.
    acute: Option<bool>,
});
recording_input!(EndEpisodeInput { patient_id: Uuid, episode_id: Uuid, reason: EndReason, ended_at: DateTime<Utc> });
recording_input!(AssignTherapistInput {
    patient_id: Uuid,
    episode_id: Uuid,
    therapist_id: Uuid,
    assigned_at: DateTime<Utc>,
});
recording_input!(ReleaseTherapistInput {
    patient_id: Uuid,
    episode_id: Uuid,
    therapist_id: Uuid,
    reason: ReleaseReason,
    /// Whether the patient was told.
    patient_notified: bool,
    released_at: DateTime<Utc>,
});
recording_input!(RecordSessionInput {
    patient_id: Uuid,
    episode_id: Uuid,
    session_id: Uuid,
    therapist_id: Uuid,
    attendance: Attendance,
    at: DateTime<Utc>,
});
recording_input!(AdmitPatientInput {
    patient_id: Uuid,
    admission_id: Uuid,
    /// Must be a SPECIALIST_INPATIENT service.
    service_id: Uuid,
    admitted_at: DateTime<Utc>,
});
recording_input!(DischargePatientInput { patient_id: Uuid, admission_id: Uuid, discharged_at: DateTime<Utc> });
recording_input!(RecordStayInput {
    patient_id: Uuid,
    admission_id: Uuid,
    /// Must be a SPECIALIST_INPATIENT service.
    service_id: Uuid,
    admitted_at: DateTime<Utc>,
    /// After `admittedAt`. The stay must not overlap another at either end.
    discharged_at: DateTime<Utc>,
});
recording_input!(RecordOutcomeInput {
    patient_id: Uuid,
    episode_id: Uuid,
    instrument: Instrument,
    phase: MeasurePhase,
    /// Item scores 0-3: exactly 9 for PHQ9, 7 for GAD7. The total is derived.
    items: Vec<i32>,
    measured_at: DateTime<Utc>,
});

fn options(event_id: Option<Uuid>, expected_version: Option<i32>) -> Result<RecordOptions, ApiError> {
    let expected_version = match expected_version {
        None => None,
        Some(-1) => Some(ExpectedVersion::NoStream),
        Some(v) if v >= 0 => Some(ExpectedVersion::Exact(v as u64)),
        Some(v) => return Err(ApiError::invalid(format!("expectedVersion {v} is not a version (use -1 for none)"))),
    };
    Ok(RecordOptions { event_id, expected_version })
}

async fn record(
    ctx: &Context<'_>,
    command: Command,
    event_id: Option<Uuid>,
    expected: Option<i32>,
) -> Result<Recorded> {
    record_with(ctx, command, None, event_id, expected).await
}

async fn record_with(
    ctx: &Context<'_>,
    command: Command,
    national_id: Option<NationalId>,
    event_id: Option<Uuid>,
    expected: Option<i32>,
) -> Result<Recorded> {
    let caller = caller(ctx)?;
    let opts = options(event_id, expected).gql()?;
    engine(ctx).record(caller, command, national_id, opts).await.map(Recorded::from).gql()
}

/// Names are stored trimmed and in NFC; anything the cleaning refuses goes on to `decide` as
/// given, which refuses it with a message naming the character.
fn clean(name: String) -> String {
    forlop_domain::text::clean_name(&name).unwrap_or(name)
}

pub struct Mutation;

#[Object]
impl Mutation {
    async fn register_service(&self, ctx: &Context<'_>, input: RegisterServiceInput) -> Result<Recorded> {
        let c = Command::RegisterService(ev::ServiceRegistered {
            service_id: input.service_id,
            name: clean(input.name),
            care_level: input.care_level.into(),
        });
        record(ctx, c, input.event_id, input.expected_version).await
    }

    async fn register_therapist(&self, ctx: &Context<'_>, input: RegisterTherapistInput) -> Result<Recorded> {
        let c = Command::RegisterTherapist(ev::TherapistRegistered {
            therapist_id: input.therapist_id,
            name: clean(input.name),
            hpr_number: input.hpr_number,
        });
        record(ctx, c, input.event_id, input.expected_version).await
    }

    async fn register_patient(&self, ctx: &Context<'_>, input: RegisterPatientInput) -> Result<Recorded> {
        // The domain has no clock; a birth year in the future is caught here.
        let this_year = chrono::Datelike::year(&Utc::now());
        if input.birth_year > this_year {
            return Err(ApiError::invalid(format!("birthYear {} is in the future", input.birth_year)).gql());
        }
        let national_id = match input.national_id.as_deref() {
            None => None,
            Some(n) => Some(NationalId::parse(n).map_err(|e| ApiError::invalid(format!("nationalId: {e}")).gql())?),
        };
        let c = Command::RegisterPatient(ev::PatientRegistered {
            patient_id: input.patient_id,
            birth_year: input.birth_year,
            gender: input.gender.into(),
            national_id: None,
        });
        record_with(ctx, c, national_id, input.event_id, input.expected_version).await
    }

    /// Erasure (GDPR art. 17), admins only: destroys the patient's data key, so their national id
    /// can never be opened again and no longer finds them; the pseudonymous pathway stays in the
    /// log and in aggregate reports, and the log still verifies.
    async fn forget_patient(&self, ctx: &Context<'_>, input: ForgetPatientInput) -> Result<Recorded> {
        let caller = caller(ctx)?;
        let opts = RecordOptions { event_id: input.event_id, expected_version: None };
        engine(ctx).forget_patient(caller, input.patient_id, opts).await.map(Recorded::from).gql()
    }

    async fn receive_referral(&self, ctx: &Context<'_>, input: ReceiveReferralInput) -> Result<Recorded> {
        let c = Command::ReceiveReferral {
            patient_id: input.patient_id,
            event: ev::ReferralReceived {
                referral_id: input.referral_id,
                service_id: input.service_id,
                source: input.source.into(),
                received_at: input.received_at,
            },
        };
        record(ctx, c, input.event_id, input.expected_version).await
    }

    async fn decide_referral(&self, ctx: &Context<'_>, input: DecideReferralInput) -> Result<Recorded> {
        let c = Command::DecideReferral {
            patient_id: input.patient_id,
            event: ev::ReferralDecided {
                referral_id: input.referral_id,
                decision: input.decision.into(),
                reason: input.reason.map(Into::into),
                decided_at: input.decided_at,
            },
        };
        record(ctx, c, input.event_id, input.expected_version).await
    }

    async fn start_episode(&self, ctx: &Context<'_>, input: StartEpisodeInput) -> Result<Recorded> {
        let c = Command::StartEpisode {
            patient_id: input.patient_id,
            event: ev::EpisodeStarted {
                episode_id: input.episode_id,
                service_id: input.service_id,
                referral_id: input.referral_id,
                started_at: input.started_at,
                acute: input.acute.unwrap_or(false),
            },
        };
        record(ctx, c, input.event_id, input.expected_version).await
    }

    async fn end_episode(&self, ctx: &Context<'_>, input: EndEpisodeInput) -> Result<Recorded> {
        let c = Command::EndEpisode {
            patient_id: input.patient_id,
            event: ev::EpisodeEnded {
                episode_id: input.episode_id,
                reason: input.reason.into(),
                ended_at: input.ended_at,
            },
        };
        record(ctx, c, input.event_id, input.expected_version).await
    }

    async fn assign_therapist(&self, ctx: &Context<'_>, input: AssignTherapistInput) -> Result<Recorded> {
        let c = Command::AssignTherapist {
            patient_id: input.patient_id,
            event: ev::TherapistAssigned {
                episode_id: input.episode_id,
                therapist_id: input.therapist_id,
                assigned_at: input.assigned_at,
            },
        };
        record(ctx, c, input.event_id, input.expected_version).await
    }

    async fn release_therapist(&self, ctx: &Context<'_>, input: ReleaseTherapistInput) -> Result<Recorded> {
        let c = Command::ReleaseTherapist {
            patient_id: input.patient_id,
            event: ev::TherapistReleased {
                episode_id: input.episode_id,
                therapist_id: input.therapist_id,
                reason: input.reason.into(),
                patient_notified: input.patient_notified,
                released_at: input.released_at,
            },
        };
        record(ctx, c, input.event_id, input.expected_version).await
    }

    async fn record_session(&self, ctx: &Context<'_>, input: RecordSessionInput) -> Result<Recorded> {
        let c = Command::RecordSession {
            patient_id: input.patient_id,
            event: ev::SessionRecorded {
                session_id: input.session_id,
                episode_id: input.episode_id,
                therapist_id: input.therapist_id,
                attendance: input.attendance.into(),
                at: input.at,
            },
        };
        record(ctx, c, input.event_id, input.expected_version).await
    }

    async fn admit_patient(&self, ctx: &Context<'_>, input: AdmitPatientInput) -> Result<Recorded> {
        let c = Command::AdmitPatient {
            patient_id: input.patient_id,
            event: ev::PatientAdmitted {
                admission_id: input.admission_id,
                service_id: input.service_id,
                admitted_at: input.admitted_at,
            },
        };
        record(ctx, c, input.event_id, input.expected_version).await
    }

    async fn discharge_patient(&self, ctx: &Context<'_>, input: DischargePatientInput) -> Result<Recorded> {
        let c = Command::DischargePatient {
            patient_id: input.patient_id,
            event: ev::PatientDischarged { admission_id: input.admission_id, discharged_at: input.discharged_at },
        };
        record(ctx, c, input.event_id, input.expected_version).await
    }

    /// A past stay with both of its times, for back-loads that send stays in any order: unlike
    /// `admitPatient`, which is open-ended until discharged, it may precede a stay already
    /// recorded, as long as the two do not overlap.
    async fn record_stay(&self, ctx: &Context<'_>, input: RecordStayInput) -> Result<Recorded> {
        let c = Command::RecordStay {
            patient_id: input.patient_id,
            event: ev::StayRecorded {
                admission_id: input.admission_id,
                service_id: input.service_id,
                admitted_at: input.admitted_at,
                discharged_at: input.discharged_at,
            },
        };
        record(ctx, c, input.event_id, input.expected_version).await
    }

    async fn record_outcome(&self, ctx: &Context<'_>, input: RecordOutcomeInput) -> Result<Recorded> {
        let items = input.items.iter().map(|&i| u8::try_from(i).ok().filter(|i| *i <= 3)).collect::<Option<Vec<u8>>>();
        let Some(items) = items else {
            return Err(ApiError::invalid("items are scored 0 to 3").gql());
        };
        let c = Command::RecordOutcome {
            patient_id: input.patient_id,
            event: ev::OutcomeRecorded {
                episode_id: input.episode_id,
                instrument: input.instrument.into(),
                phase: input.phase.into(),
                items,
                total: 0,
                measured_at: input.measured_at,
            },
        };
        record(ctx, c, input.event_id, input.expected_version).await
    }
}
