//! Why a command was refused, and the mark that separates what a refusal says of the command
//! from what it quotes of the recorded facts.

/// Why a command was refused. Each variant maps to a stable error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidInput(String),
}

impl DomainError {
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::NotFound(_) => "NOT_FOUND",
            DomainError::AlreadyExists(_) => "ALREADY_EXISTS",
            DomainError::InvalidInput(_) => "INVALID_INPUT",
        }
    }

    /// The refusal without the recorded facts it quotes (everything from [`RECORDED`] on): what
    /// an adapter tells a caller who may not read the patient's facts (an integration). It
    /// still says what is wrong with the command, in the command's own terms, and keeps its code.
    pub fn without_records(&self) -> DomainError {
        let cut = |m: &str| m.find(RECORDED).map_or(m, |i| &m[..i]).to_owned();
        match self {
            DomainError::NotFound(m) => DomainError::NotFound(cut(m)),
            DomainError::AlreadyExists(m) => DomainError::AlreadyExists(cut(m)),
            DomainError::InvalidInput(m) => DomainError::InvalidInput(cut(m)),
        }
    }
}

/// Where a refusal's message starts quoting what is recorded on the stream (a date, another
/// fact's id); it runs to the end of the message, closed by `)`. Before it a message names only
/// what the command itself carries (its ids, times and codes, never free text), so nothing a
/// caller sends can fake this mark. See [`DomainError::without_records`].
pub const RECORDED: &str = " (recorded: ";

pub(crate) fn invalid(msg: impl Into<String>) -> DomainError {
    DomainError::InvalidInput(msg.into())
}
