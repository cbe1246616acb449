//! Roles and the authenticated caller.

use std::fmt;
use std::str::FromStr;

/// What a caller may do. Roles come from the token's role claim; the server maps them to
/// permissions, this crate only names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Integration,
    Clinician,
    Analyst,
    Auditor,
    Admin,
    Patient,
}

impl Role {
    pub const ALL: [Role; 6] =
        [Role::Integration, Role::Clinician, Role::Analyst, Role::Auditor, Role::Admin, Role::Patient];

    /// The lowercase name, as in tokens and in the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Integration => "integration",
            Role::Clinician => "clinician",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Patient => "patient",
        }
    }

    /// Rank for [`Principal::primary_role`]; higher is more privileged.
    fn privilege(self) -> u8 {
        match self {
            Role::Admin => 5,
            Role::Auditor => 4,
            Role::Clinician => 3,
            Role::Integration => 2,
            Role::Analyst => 1,
            Role::Patient => 0,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`] (names are lowercase and matched exactly).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// The authenticated caller, built from a verified token.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    pub sub: String,
    pub name: Option<String>,
    /// Sorted and deduplicated; role names this version does not know are dropped.
    pub roles: Vec<Role>,
    /// The services (units) the caller acts for. Sorted and deduplicated.
    pub services: Vec<uuid::Uuid>,
    /// The national identity number (fødselsnummer) from the pid claim. Personal data: kept out
    /// of `Debug` so it cannot leak into logs.
    pub national_id: Option<String>,
    /// The HPR number (Norwegian health personnel register) of a clinician.
    pub hpr_number: Option<String>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The caller under `--auth off`: sub "anonymous", role Admin only.
    pub fn anonymous_admin() -> Principal {
        Principal {
            sub: "anonymous".to_owned(),
            name: None,
            roles: vec![Role::Admin],
            services: Vec::new(),
            national_id: None,
            hpr_number: None,
        }
    }

    /// The highest-privileged role, for display and for recording who acted:
    /// Admin > Auditor > Clinician > Integration > Analyst > Patient.
    pub fn primary_role(&self) -> Option<Role> {
        self.roles.iter().copied().max_by_key(|r| r.privilege())
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("sub", &self.sub)
            .field("name", &self.name)
            .field("roles", &self.roles)
            .field("services", &self.services)
            .field("national_id", &self.national_id.as_ref().map(|_| "<redacted>"))
            .field("hpr_number", &self.hpr_number)
            .finish()
    }
}
