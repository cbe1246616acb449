//! Value types shared by events, commands and read models.

use serde::{Deserialize, Serialize};

macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $code)] $variant),+ }

        impl $name {
            /// Every value, in declaration order (reports list every key, even when empty).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable wire name, as used in GraphQL and exports.
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

code_enum!(
    /// Level of care a service belongs to (NPR omsorgsnivå, widened with the municipal level).
    CareLevel {
        Municipal = "MUNICIPAL",
        SpecialistOutpatient = "SPECIALIST_OUTPATIENT",
        SpecialistDay = "SPECIALIST_DAY",
        SpecialistInpatient = "SPECIALIST_INPATIENT",
    }
);
code_enum!(Gender { Female = "FEMALE", Male = "MALE", Other = "OTHER", Unknown = "UNKNOWN" });
// `Self` is a keyword, hence `SelfReferral`; its wire name is still "SELF".
code_enum!(ReferralSource {
    SelfReferral = "SELF",
    Gp = "GP",
    HealthPersonnel = "HEALTH_PERSONNEL",
    Relative = "RELATIVE",
    Nav = "NAV",
    Other = "OTHER",
});
code_enum!(ReferralDecision { Accepted = "ACCEPTED", Rejected = "REJECTED" });
code_enum!(RejectionReason {
    Capacity = "CAPACITY",
    NotInTargetGroup = "NOT_IN_TARGET_GROUP",
    NeedsOtherLevel = "NEEDS_OTHER_LEVEL",
    Other = "OTHER",
});
code_enum!(ReleaseReason {
    SickLeave = "SICK_LEAVE",
    LeftPosition = "LEFT_POSITION",
    PositionEnded = "POSITION_ENDED",
    PatientRequest = "PATIENT_REQUEST",
    Transfer = "TRANSFER",
    EpisodeEnded = "EPISODE_ENDED",
    Other = "OTHER",
});
code_enum!(Attendance {
    Attended = "ATTENDED",
    CancelledByPatient = "CANCELLED_BY_PATIENT",
    CancelledByService = "CANCELLED_BY_SERVICE",
    NoShow = "NO_SHOW",
});
code_enum!(Instrument { Phq9 = "PHQ9", Gad7 = "GAD7" });
code_enum!(MeasurePhase { Intake = "INTAKE", Interim = "INTERIM", Discharge = "DISCHARGE" });
code_enum!(EndReason {
    Completed = "COMPLETED",
    DroppedOut = "DROPPED_OUT",
    ReferredOnward = "REFERRED_ONWARD",
    Moved = "MOVED",
    Other = "OTHER",
});

impl Instrument {
    /// Number of items on the questionnaire.
    pub fn item_count(self) -> usize {
        match self {
            Instrument::Phq9 => 9,
            Instrument::Gad7 => 7,
        }
    }

    /// Caseness threshold at intake (NHS Talking Therapies): PHQ-9 >= 10, GAD-7 >= 8.
    pub fn caseness(self) -> u32 {
        match self {
            Instrument::Phq9 => 10,
            Instrument::Gad7 => 8,
        }
    }

    /// Smallest change that counts as reliable: PHQ-9 6 points, GAD-7 4 points.
    pub fn reliable_change(self) -> u32 {
        match self {
            Instrument::Phq9 => 6,
            Instrument::Gad7 => 4,
        }
    }
}
