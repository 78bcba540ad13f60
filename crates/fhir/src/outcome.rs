//! `OperationOutcome` issues: the one shape in which every problem is reported.

use serde_json::{Value, json};

/// How bad an issue is (`OperationOutcome.issue.severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
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
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    CodeInvalid,
    NotSupported,
    NotFound,
    Deleted,
    Conflict,
    Duplicate,
    Processing,
    BusinessRule,
    TooCostly,
    TooLong,
    Exception,
    Transient,
    Throttled,
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
    pub severity: Severity,
    pub code: IssueCode,
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
