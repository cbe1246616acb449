//! What is wrong, in FHIR's words: the issue types forlop answers with (each with the one HTTP
//! status it is answered with), the issues themselves, and OperationOutcomes as R4 JSON.

use forlop_domain::DomainError;
use forlop_engine::EngineError;
use serde_json::{json, Value};

/// The codes of FHIR's IssueType code system (`http://hl7.org/fhir/issue-type`) that forlop
/// uses. Each has one HTTP status, as FHIR's RESTful API answers it: content that cannot be
/// read or is not valid 400, a reference or resource not found 404, a version or duplicate
/// conflict 409, a server business rule 422.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueType {
    /// The content could not be read: not JSON, or not the shape of the resource.
    Structure,
    /// A required element is missing.
    Required,
    /// An element's value is not valid.
    Value,
    /// A code is not one of its value set's.
    CodeInvalid,
    /// A resource, an element or a request forlop does not take.
    NotSupported,
    /// The caller must authenticate.
    Login,
    /// The caller may not do this.
    Forbidden,
    /// A reference or a resource that is not there (yet).
    NotFound,
    /// A fact recorded before with other content, or a stream moved on.
    Conflict,
    /// A record that exists already.
    Duplicate,
    /// Too much in one request.
    TooCostly,
    /// A rule of the domain refuses the fact.
    BusinessRule,
    /// A dependency is unavailable; the same request may succeed later.
    Transient,
    /// A failure of the server itself.
    Exception,
    /// Not a problem: a summary.
    Informational,
}

impl IssueType {
    /// The code as FHIR writes it in `OperationOutcome.issue.code`.
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::NotSupported => "not-supported",
            IssueType::Login => "login",
            IssueType::Forbidden => "forbidden",
            IssueType::NotFound => "not-found",
            IssueType::Conflict => "conflict",
            IssueType::Duplicate => "duplicate",
            IssueType::TooCostly => "too-costly",
            IssueType::BusinessRule => "business-rule",
            IssueType::Transient => "transient",
            IssueType::Exception => "exception",
            IssueType::Informational => "informational",
        }
    }

    /// The HTTP status a request (or a batch entry) failing for this is answered with.
    pub fn status(self) -> u16 {
        match self {
            IssueType::Structure
            | IssueType::Required
            | IssueType::Value
            | IssueType::CodeInvalid
            | IssueType::NotSupported => 400,
            IssueType::Login => 401,
            IssueType::Forbidden => 403,
            IssueType::NotFound => 404,
            IssueType::Conflict | IssueType::Duplicate => 409,
            IssueType::TooCostly => 413,
            IssueType::BusinessRule => 422,
            IssueType::Exception => 500,
            IssueType::Transient => 503,
            IssueType::Informational => 200,
        }
    }

    /// `status` with its reason phrase, as a Bundle's `entry.response.status` carries it.
    pub fn status_line(self) -> &'static str {
        match self.status() {
            200 => "200 OK",
            401 => "401 Unauthorized",
            403 => "403 Forbidden",
            404 => "404 Not Found",
            409 => "409 Conflict",
            413 => "413 Payload Too Large",
            422 => "422 Unprocessable Entity",
            500 => "500 Internal Server Error",
            503 => "503 Service Unavailable",
            _ => "400 Bad Request",
        }
    }
}

impl From<&EngineError> for IssueType {
    fn from(e: &EngineError) -> IssueType {
        match e {
            EngineError::Domain(DomainError::NotFound(_)) => IssueType::NotFound,
            EngineError::Domain(DomainError::AlreadyExists(_)) => IssueType::Duplicate,
            EngineError::Domain(DomainError::InvalidInput(_)) | EngineError::InvalidInput(_) => IssueType::BusinessRule,
            EngineError::IdempotencyConflict(_) | EngineError::WrongExpectedVersion { .. } => IssueType::Conflict,
            EngineError::Unauthenticated(_) => IssueType::Login,
            EngineError::Forbidden(_) => IssueType::Forbidden,
            EngineError::Unavailable(_) => IssueType::Transient,
            EngineError::Internal(_) => IssueType::Exception,
        }
    }
}

/// What is wrong with an element, for an OperationOutcome issue.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub code: IssueType,
    /// FHIRPath of the element, e.g. `Bundle.entry[2].resource.subject`.
    pub path: String,
    pub message: String,
}

impl Issue {
    pub fn new(code: IssueType, path: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue { code, path: path.into(), message: message.into() }
    }

    /// An engine refusal, with the engine's stable code before its public message.
    pub fn refused(path: impl Into<String>, e: &EngineError) -> Issue {
        Issue::new(IssueType::from(e), path, format!("{}: {}", e.code(), refusal_message(e)))
    }
}

/// What the engine's refusal says to a client.
pub fn refusal_message(e: &EngineError) -> String {
    match e {
        EngineError::IdempotencyConflict(_) => {
            "this fact was recorded before with other content; forlop never edits a recorded fact".to_owned()
        }
        other => other.public_message(),
    }
}

/// The HTTP status of a request that fails with `issues`: the first one's.
pub fn status_of(issues: &[Issue]) -> u16 {
    issues.first().map_or(400, |i| i.code.status())
}

pub fn operation_outcome(issues: &[Issue]) -> Value {
    outcome_with(issues, "error")
}

/// An OperationOutcome whose issues all have `severity` (`warning` for a held resource).
pub fn outcome_with(issues: &[Issue], severity: &str) -> Value {
    let issue: Vec<Value> = issues.iter().map(|i| issue_json(severity, i.code.code(), &i.message, &i.path)).collect();
    outcome_of(issue)
}

/// One `OperationOutcome.issue`; `code` is an IssueType code, `path` (when not empty) its
/// FHIRPath.
pub fn issue_json(severity: &str, code: &str, diagnostics: &str, path: &str) -> Value {
    let mut v = json!({ "severity": severity, "code": code, "diagnostics": diagnostics });
    if !path.is_empty() {
        v["expression"] = json!([path]);
    }
    v
}

/// An informational issue: a summary, not a problem.
pub fn information(diagnostics: &str) -> Value {
    issue_json("information", IssueType::Informational.code(), diagnostics, "")
}

/// An OperationOutcome of issues already in JSON (`issue_json`).
pub fn outcome_of(issue: Vec<Value>) -> Value {
    json!({ "resourceType": "OperationOutcome", "issue": issue })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_refusal_has_one_issue_type_and_that_types_status() {
        let cases = [
            (EngineError::Domain(DomainError::NotFound("x".into())), "not-found", 404, "404 Not Found"),
            (EngineError::Domain(DomainError::AlreadyExists("x".into())), "duplicate", 409, "409 Conflict"),
            (
                EngineError::Domain(DomainError::InvalidInput("x".into())),
                "business-rule",
                422,
                "422 Unprocessable Entity",
            ),
            (EngineError::InvalidInput("x".into()), "business-rule", 422, "422 Unprocessable Entity"),
            (EngineError::IdempotencyConflict(uuid::Uuid::nil()), "conflict", 409, "409 Conflict"),
            (EngineError::Unauthenticated("x".into()), "login", 401, "401 Unauthorized"),
            (EngineError::Forbidden("x".into()), "forbidden", 403, "403 Forbidden"),
            (EngineError::Unavailable("x".into()), "transient", 503, "503 Service Unavailable"),
            (EngineError::Internal("x".into()), "exception", 500, "500 Internal Server Error"),
        ];
        for (e, code, status, line) in cases {
            let t = IssueType::from(&e);
            assert_eq!((t.code(), t.status(), t.status_line()), (code, status, line), "{e:?}");
        }
        assert_eq!(IssueType::Structure.status_line(), "400 Bad Request");
        assert_eq!(IssueType::TooCostly.status(), 413);
    }
}
