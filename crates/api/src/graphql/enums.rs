//! GraphQL mirrors of the domain's enums (the domain knows nothing of GraphQL).

use async_graphql::Enum;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::CareLevel")]
pub enum CareLevel {
    Municipal,
    SpecialistOutpatient,
    SpecialistDay,
    SpecialistInpatient,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::Gender")]
pub enum Gender {
    Female,
    Male,
    Other,
    Unknown,
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
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::ReferralDecision")]
pub enum ReferralDecision {
    Accepted,
    Rejected,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::RejectionReason")]
pub enum RejectionReason {
    Capacity,
    NotInTargetGroup,
    NeedsOtherLevel,
    Other,
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
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::Attendance")]
pub enum Attendance {
    Attended,
    CancelledByPatient,
    CancelledByService,
    NoShow,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::Instrument")]
pub enum Instrument {
    #[graphql(name = "PHQ9")]
    Phq9,
    #[graphql(name = "GAD7")]
    Gad7,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::MeasurePhase")]
pub enum MeasurePhase {
    Intake,
    Interim,
    Discharge,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "forlop_domain::EndReason")]
pub enum EndReason {
    Completed,
    DroppedOut,
    ReferredOnward,
    Moved,
    Other,
}
