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
