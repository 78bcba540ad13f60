//! Writing a C-CDA R2.1 document from a patient's FHIR R4 resources.

use crate::Error;
use serde_json::Value;
use time::OffsetDateTime;

/// The documents written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentType {
    /// Continuity of Care Document (LOINC 34133-9).
    Ccd,
    /// Referral Note (LOINC 57133-1).
    Referral,
    /// Discharge Summary (LOINC 18842-5).
    Discharge,
}

/// What a document is made from.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// The patient (a FHIR Patient with `id`).
    pub patient: &'a Value,
    /// The patient's resources (their compartment, and the Medications, Practitioners and
    /// Organizations these reference), each with `id`.
    pub resources: &'a [Value],
    /// The organization that makes and keeps the document (a FHIR Organization).
    pub custodian: &'a Value,
    /// The document's author: the person asking for it (a FHIR Practitioner), else the
    /// custodian as an authoring system.
    pub author: Option<&'a Value>,
    /// The document's id (a UUID).
    pub document_id: &'a str,
    /// When it is made.
    pub now: OffsetDateTime,
    /// Only what happened in this period (`start`, `end`), when given.
    pub period: (Option<OffsetDateTime>, Option<OffsetDateTime>),
}

/// Writes the document of `kind` for `chart`.
pub fn write(chart: &Chart<'_>, kind: DocumentType) -> Result<String, Error> {
    let _ = (chart, kind);
    Err(Error::CannotWrite("the writer is not written yet".into()))
}
