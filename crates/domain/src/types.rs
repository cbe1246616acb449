//! Value types shared by events, commands and read models.

use serde::{Deserialize, Serialize};

/// How a code this version does not know is shown (GraphQL, exports of read models).
pub const UNRECOGNISED: &str = "UNRECOGNISED";

/// Writes a code: its name in JSON (events, exports), its index in binary formats (read-model
/// checkpoints; one byte, as serde's derived unit variants wrote it).
fn serialize_code<S: serde::Serializer>(s: S, code: &'static str, index: Option<usize>) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(code)
    } else {
        // `Unrecognised` is written as 255, past every known code.
        s.serialize_u8(index.unwrap_or(u8::MAX as usize) as u8)
    }
}

/// Reads a code without allocating. One this version does not know becomes `unrecognised` and
/// is counted, so that a newer writer's events neither stop replay nor a stream's decisions.
fn deserialize_code<'de, D, T>(
    d: D,
    name: &'static str,
    parse: fn(&str) -> Option<T>,
    all: &'static [T],
    unrecognised: T,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Copy,
{
    struct Code<T: 'static>(fn(&str) -> Option<T>, &'static str, &'static [T], T);
    impl<T: Copy> Code<T> {
        fn unrecognised(&self) -> T {
            metrics::counter!("forlop_unrecognised_codes_total", "enum" => self.1).increment(1);
            self.3
        }
    }
    impl<T: Copy> serde::de::Visitor<'_> for Code<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a {} code", self.1)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            Ok(self.0(v).unwrap_or_else(|| self.unrecognised()))
        }
        fn visit_u8<E: serde::de::Error>(self, v: u8) -> Result<T, E> {
            Ok(self.2.get(usize::from(v)).copied().unwrap_or_else(|| self.unrecognised()))
        }
    }
    if d.is_human_readable() {
        d.deserialize_str(Code(parse, name, all, unrecognised))
    } else {
        d.deserialize_u8(Code(parse, name, all, unrecognised))
    }
}

macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($variant,)+
            /// A code this version does not know, stored by a newer forlop. It is read, counted
            /// (`forlop_unrecognised_codes_total`) and shown as `UNRECOGNISED`; never recorded.
            Unrecognised,
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_code(s, self.code(), $name::ALL.iter().position(|v| v == self))
            }
        }

        impl $name {
            /// Every recordable value, in declaration order (reports list every key, even when
            /// empty); `Unrecognised` is not one.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable wire name, as used in GraphQL and exports.
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code,)+ $name::Unrecognised => UNRECOGNISED }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let parse = |code: &str| match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                };
                deserialize_code(d, stringify!($name), parse, $name::ALL, $name::Unrecognised)
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
            // Never recorded (`decide` refuses it), so no item count fits.
            Instrument::Unrecognised => 0,
        }
    }

    /// Caseness threshold at intake (NHS Talking Therapies): PHQ-9 >= 10, GAD-7 >= 8.
    pub fn caseness(self) -> u32 {
        match self {
            Instrument::Phq9 => 10,
            Instrument::Gad7 => 8,
            // A score on an unknown scale is never judged to be at caseness.
            Instrument::Unrecognised => u32::MAX,
        }
    }

    /// Smallest change that counts as reliable: PHQ-9 6 points, GAD-7 4 points.
    pub fn reliable_change(self) -> u32 {
        match self {
            Instrument::Phq9 => 6,
            Instrument::Gad7 => 4,
            // ... nor a reliable change.
            Instrument::Unrecognised => u32::MAX,
        }
    }
}
