//! GraphQL mirrors of the domain's enums (the domain knows nothing of GraphQL).

use async_graphql::Enum;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::CareLevel")]
pub enum CareLevel {
    Municipal,
    SpecialistOutpatient,
    SpecialistDay,
    SpecialistInpatient,
    /// A code a newer forlop stored that this version does not know. Read only: recording it
    /// is refused with INVALID_INPUT.
    Unrecognised,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::Gender")]
pub enum Gender {
    Female,
    Male,
    Other,
    Unknown,
    /// A code a newer forlop stored that this version does not know. Read only: recording it
    /// is refused with INVALID_INPUT.
    Unrecognised,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::ReferralSource")]
pub enum ReferralSource {
    #[graphql(name = "SELF")]
    SelfReferral,
    Gp,
    HealthPersonnel,
    Relative,
    Nav,
    Other,
    /// A code a newer forlop stored that this version does not know. Read only: recording it
    /// is refused with INVALID_INPUT.
    Unrecognised,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::ReferralDecision")]
pub enum ReferralDecision {
    Accepted,
    Rejected,
    /// A code a newer forlop stored that this version does not know. Read only: recording it
    /// is refused with INVALID_INPUT.
    Unrecognised,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::RejectionReason")]
pub enum RejectionReason {
    Capacity,
    NotInTargetGroup,
    NeedsOtherLevel,
    Other,
    /// A code a newer forlop stored that this version does not know. Read only: recording it
    /// is refused with INVALID_INPUT.
    Unrecognised,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::ReleaseReason")]
pub enum ReleaseReason {
    SickLeave,
    LeftPosition,
    PositionEnded,
    PatientRequest,
    Transfer,
    EpisodeEnded,
    Other,
    /// A code a newer forlop stored that this version does not know. Read only: recording it
    /// is refused with INVALID_INPUT.
    Unrecognised,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::Attendance")]
pub enum Attendance {
    Attended,
    CancelledByPatient,
    CancelledByService,
    NoShow,
    /// A code a newer forlop stored that this version does not know. Read only: recording it
    /// is refused with INVALID_INPUT.
    Unrecognised,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::Instrument")]
pub enum Instrument {
    #[graphql(name = "PHQ9")]
    Phq9,
    #[graphql(name = "GAD7")]
    Gad7,
    /// A code a newer forlop stored that this version does not know. Read only: recording it
    /// is refused with INVALID_INPUT.
    Unrecognised,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::MeasurePhase")]
pub enum MeasurePhase {
    Intake,
    Interim,
    Discharge,
    /// A code a newer forlop stored that this version does not know. Read only: recording it
    /// is refused with INVALID_INPUT.
    Unrecognised,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::EndReason")]
pub enum EndReason {
    Completed,
    DroppedOut,
    ReferredOnward,
    Moved,
    Other,
    /// A code a newer forlop stored that this version does not know. Read only: recording it
    /// is refused with INVALID_INPUT.
    Unrecognised,
}
