//! `OperationOutcome` issues: the one shape in which every problem is reported.

use serde_json::{Value, json};

/// How bad an issue is (`OperationOutcome.issue.severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The issue stopped the processing of the whole request.
    Fatal,
    /// The request or resource is wrong and was not acted on.
    Error,
    /// Acted on, but something looks wrong.
    Warning,
    /// Nothing wrong: a note about how the request was handled.
    Information,
}

impl Severity {
    /// The FHIR code of this severity.
    pub fn code(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// The kind of an issue (a subset of the FHIR `issue-type` value set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    /// Content is invalid in general (`invalid`).
    Invalid,
    /// The content does not have the structure of a FHIR resource, e.g. an unknown element or the wrong JSON type (`structure`).
    Structure,
    /// A required element is missing (`required`).
    Required,
    /// An element's value is wrong for its type or format (`value`).
    Value,
    /// A constraint (invariant) of the definitions is not met (`invariant`).
    Invariant,
    /// A code is not in the value set of its required binding (`code-invalid`).
    CodeInvalid,
    /// The request asks for something this server does not do (`not-supported`).
    NotSupported,
    /// The resource or version asked for does not exist, or may not be known to exist (`not-found`).
    NotFound,
    /// The resource existed but has been deleted (`deleted`).
    Deleted,
    /// The write conflicts with the resource's current state, e.g. a version conflict (`conflict`).
    Conflict,
    /// The content would duplicate a resource already held (`duplicate`).
    Duplicate,
    /// The request is well formed but cannot be carried out, e.g. a JSON Patch that does not apply (`processing`).
    Processing,
    /// A rule of the record was broken, e.g. a reference to a resource that does not exist (`business-rule`).
    BusinessRule,
    /// The operation would cost too much to run, e.g. too many results (`too-costly`).
    TooCostly,
    /// The request or resource is larger than the server accepts (`too-long`).
    TooLong,
    /// An unexpected failure inside the server (`exception`).
    Exception,
    /// A passing failure (storage busy or unavailable): the same request may succeed later (`transient`).
    Transient,
    /// The caller sent too many requests and must slow down (`throttled`).
    Throttled,
    /// Not a problem: a note carried in the outcome (`informational`).
    Informational,
    /// Authentication needed or failed (`login`).
    Login,
    /// Authenticated, but not allowed (`forbidden`).
    Forbidden,
}

impl IssueCode {
    /// The FHIR code of this issue type.
    pub fn code(self) -> &'static str {
        match self {
            IssueCode::Invalid => "invalid",
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::Invariant => "invariant",
            IssueCode::CodeInvalid => "code-invalid",
            IssueCode::NotSupported => "not-supported",
            IssueCode::NotFound => "not-found",
            IssueCode::Deleted => "deleted",
            IssueCode::Conflict => "conflict",
            IssueCode::Duplicate => "duplicate",
            IssueCode::Processing => "processing",
            IssueCode::BusinessRule => "business-rule",
            IssueCode::TooCostly => "too-costly",
            IssueCode::TooLong => "too-long",
            IssueCode::Exception => "exception",
            IssueCode::Transient => "transient",
            IssueCode::Throttled => "throttled",
            IssueCode::Informational => "informational",
            IssueCode::Login => "login",
            IssueCode::Forbidden => "forbidden",
        }
    }
}

/// One problem found in a request or resource, with its FHIRPath-style location.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// How bad it is (`issue.severity`).
    pub severity: Severity,
    /// What kind of problem it is (`issue.code`).
    pub code: IssueCode,
    /// The human-readable explanation (`issue.diagnostics`).
    pub diagnostics: String,
    /// Where, e.g. `Patient.birthDate` or `Bundle.entry[2].resource`.
    pub expression: Option<String>,
}

impl Issue {
    /// An error-severity issue.
    pub fn error(code: IssueCode, diagnostics: impl Into<String>) -> Self {
        Issue { severity: Severity::Error, code, diagnostics: diagnostics.into(), expression: None }
    }

    /// A warning-severity issue.
    pub fn warning(code: IssueCode, diagnostics: impl Into<String>) -> Self {
        Issue { severity: Severity::Warning, code, diagnostics: diagnostics.into(), expression: None }
    }

    /// An information-severity issue.
    pub fn information(diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Information,
            code: IssueCode::Informational,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    /// The same issue located at `expression`.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }

    /// Whether this issue makes the resource or request unacceptable.
    pub fn is_error(&self) -> bool {
        matches!(self.severity, Severity::Fatal | Severity::Error)
    }

    /// This issue as an `OperationOutcome.issue` element.
    pub fn to_json(&self) -> Value {
        let mut issue = json!({
            "severity": self.severity.code(),
            "code": self.code.code(),
            "diagnostics": self.diagnostics,
        });
        if let Some(expression) = &self.expression {
            issue["expression"] = json!([expression]);
        }
        issue
    }
}

/// An `OperationOutcome` resource holding `issues` (an informational "All OK" when empty).
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = if issues.is_empty() {
        vec![Issue::information("All OK").to_json()]
    } else {
        issues.iter().map(Issue::to_json).collect()
    };
    json!({ "resourceType": "OperationOutcome", "issue": issues })
}

/// The classes every error of Continuum falls into, and **the one table** from a class to
/// the HTTP status it answers with and the `OperationOutcome.issue.code` it carries. The
/// store's, the policy's, the authorization server's and the services' errors each name
/// their class; every edge (the FHIR API, the web app, the authorization server's endpoints,
/// Bundle entry responses) answers from this table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A malformed request or resource: 400, `invalid`.
    Invalid,
    /// Something the server does not support: 400, `not-supported`.
    NotSupported,
    /// No credentials, or credentials that are not valid: 401, `login`.
    Unauthenticated,
    /// Authenticated but not allowed: 403, `forbidden`.
    Forbidden,
    /// Does not exist, or is not the caller's to know of: 404, `not-found`.
    NotFound,
    /// The request conflicts with the current state: 409, `conflict`.
    Conflict,
    /// Was deleted: 410, `deleted`.
    Gone,
    /// A version precondition (`If-Match`) failed, or a conditional operation matched several:
    /// 412, `conflict`.
    PreconditionFailed,
    /// Too large to take: 413, `too-costly`.
    TooLarge,
    /// Well formed, but against a business rule: 422, `business-rule`.
    BusinessRule,
    /// Too many requests from this client: 429, `throttled`.
    Throttled,
    /// The server failed: 500, `exception`.
    Internal,
    /// Busy, shutting down, or a dependency (the audit trail) unavailable: 503, `transient`.
    Unavailable,
    /// Another server this one asked (a peer node) answered something unusable: 502,
    /// `exception`.
    BadGateway,
    /// Another server this one asked did not answer in time: 504, `transient`.
    GatewayTimeout,
}

impl ErrorClass {
    /// The HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            ErrorClass::Invalid | ErrorClass::NotSupported => 400,
            ErrorClass::Unauthenticated => 401,
            ErrorClass::Forbidden => 403,
            ErrorClass::NotFound => 404,
            ErrorClass::Conflict => 409,
            ErrorClass::Gone => 410,
            ErrorClass::PreconditionFailed => 412,
            ErrorClass::TooLarge => 413,
            ErrorClass::BusinessRule => 422,
            ErrorClass::Throttled => 429,
            ErrorClass::Internal => 500,
            ErrorClass::Unavailable => 503,
            ErrorClass::BadGateway => 502,
            ErrorClass::GatewayTimeout => 504,
        }
    }

    /// The issue code of an `OperationOutcome` answering an error of this class.
    pub fn issue_code(self) -> IssueCode {
        match self {
            ErrorClass::Invalid => IssueCode::Invalid,
            ErrorClass::NotSupported => IssueCode::NotSupported,
            ErrorClass::Unauthenticated => IssueCode::Login,
            ErrorClass::Forbidden => IssueCode::Forbidden,
            ErrorClass::NotFound => IssueCode::NotFound,
            ErrorClass::Conflict | ErrorClass::PreconditionFailed => IssueCode::Conflict,
            ErrorClass::Gone => IssueCode::Deleted,
            ErrorClass::TooLarge => IssueCode::TooCostly,
            ErrorClass::BusinessRule => IssueCode::BusinessRule,
            ErrorClass::Throttled => IssueCode::Throttled,
            ErrorClass::Internal | ErrorClass::BadGateway => IssueCode::Exception,
            ErrorClass::Unavailable | ErrorClass::GatewayTimeout => IssueCode::Transient,
        }
    }

    /// The status line, as `Bundle.entry.response.status` writes it (`412 Precondition Failed`).
    pub fn status_line(self) -> &'static str {
        match self {
            ErrorClass::Invalid | ErrorClass::NotSupported => "400 Bad Request",
            ErrorClass::Unauthenticated => "401 Unauthorized",
            ErrorClass::Forbidden => "403 Forbidden",
            ErrorClass::NotFound => "404 Not Found",
            ErrorClass::Conflict => "409 Conflict",
            ErrorClass::Gone => "410 Gone",
            ErrorClass::PreconditionFailed => "412 Precondition Failed",
            ErrorClass::TooLarge => "413 Content Too Large",
            ErrorClass::BusinessRule => "422 Unprocessable Entity",
            ErrorClass::Throttled => "429 Too Many Requests",
            ErrorClass::Internal => "500 Internal Server Error",
            ErrorClass::Unavailable => "503 Service Unavailable",
            ErrorClass::BadGateway => "502 Bad Gateway",
            ErrorClass::GatewayTimeout => "504 Gateway Timeout",
        }
    }

    /// Whether the client may retry the same request later (409, 412 after re-reading, 429,
    /// 503) rather than change it.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Conflict
                | ErrorClass::PreconditionFailed
                | ErrorClass::Throttled
                | ErrorClass::Unavailable
                | ErrorClass::GatewayTimeout
        )
    }
}

#[cfg(test)]
mod error_class_tests {
    use super::*;

    #[test]
    fn every_class_has_one_status_its_line_agrees_with() {
        use ErrorClass::*;
        let all = [
            Invalid,
            NotSupported,
            Unauthenticated,
            Forbidden,
            NotFound,
            Conflict,
            Gone,
            PreconditionFailed,
            TooLarge,
            BusinessRule,
            Throttled,
            Internal,
            Unavailable,
            BadGateway,
            GatewayTimeout,
        ];
        for class in all {
            assert!(class.status_line().starts_with(&class.status().to_string()), "{class:?}");
        }
        assert_eq!(PreconditionFailed.status(), 412);
        assert_eq!(Unauthenticated.issue_code(), IssueCode::Login);
    }
}
