//! Reading a C-CDA document into FHIR R4 resources.

use crate::Error;
use serde_json::Value;

/// The document templates read (C-CDA R2.1, and R1.1 as far as their templates allow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentTemplate {
    /// Continuity of Care Document.
    Ccd,
    /// Discharge Summary.
    DischargeSummary,
    /// Referral Note.
    ReferralNote,
    /// Consultation Note.
    ConsultationNote,
    /// History and Physical.
    HistoryAndPhysical,
    /// Progress Note.
    ProgressNote,
    /// Transfer Summary.
    TransferSummary,
    /// Operative Note.
    OperativeNote,
    /// Procedure Note.
    ProcedureNote,
    /// Care Plan.
    CarePlan,
    /// A ClinicalDocument of no template above (US Realm Header only).
    Other,
}

/// The sections whose entries become resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// Problems (and discharge / admission diagnoses).
    Problems,
    /// Allergies and intolerances.
    Allergies,
    /// Medications (and admission / discharge medications).
    Medications,
    /// Immunizations.
    Immunizations,
    /// Results.
    Results,
    /// Vital signs.
    VitalSigns,
    /// Procedures.
    Procedures,
    /// Encounters.
    Encounters,
    /// Social history.
    SocialHistory,
    /// Plan of treatment (plan of care).
    PlanOfTreatment,
    /// Goals.
    Goals,
    /// Health concerns.
    HealthConcerns,
    /// Functional status.
    FunctionalStatus,
    /// Mental status.
    MentalStatus,
}

/// One resource made from the document.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// Its `urn:uuid:` name inside the document's resources; references between them use it.
    pub full_url: String,
    /// The FHIR R4 resource, without `id`.
    pub resource: Value,
    /// The section whose entry it came from; `None` for the header's people and organizations
    /// and for those named by entries (authors, performers).
    pub section: Option<SectionKind>,
}

/// An entry that could not be mapped (never dropped silently).
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    /// Where: the section's LOINC code or title, and the entry's position in it.
    pub location: String,
    /// Why, without the document's content.
    pub message: String,
}

/// A document read.
#[derive(Debug, Clone)]
pub struct Document {
    /// Its template.
    pub template: DocumentTemplate,
    /// Whether it declares the R2.1 templates (extension `2015-08-01`); `false`: R1.1.
    pub r2: bool,
    /// `ClinicalDocument.id` as a FHIR Identifier.
    pub id: Value,
    /// `ClinicalDocument.setId` as a FHIR Identifier, when present.
    pub set_id: Option<Value>,
    /// `ClinicalDocument.versionNumber`, when present.
    pub version_number: Option<u32>,
    /// `ClinicalDocument.code` as a FHIR CodeableConcept (LOINC).
    pub code: Value,
    /// `ClinicalDocument.title`.
    pub title: Option<String>,
    /// `ClinicalDocument.effectiveTime` as a FHIR dateTime.
    pub effective_time: Option<String>,
    /// The `urn:uuid:` name of the patient among [`Document::resources`].
    pub patient_url: String,
    /// The `urn:uuid:` names of the document's authors (Practitioner or Device).
    pub author_urls: Vec<String>,
    /// The `urn:uuid:` name of the organization the authors act for, when given.
    pub author_organization_url: Option<String>,
    /// The `urn:uuid:` name of the custodian organization.
    pub custodian_url: Option<String>,
    /// Every resource made: the patient, people and organizations, and the sections' entries.
    pub resources: Vec<Mapped>,
    /// Entries not mapped, and why.
    pub warnings: Vec<Warning>,
}

/// Reads a C-CDA document. Refused as a whole ([`Error`]) when it is too large, not
/// well-formed, not a `ClinicalDocument`, or has no patient; entries that cannot be mapped
/// become [`Warning`]s.
pub fn read(xml: &[u8]) -> Result<Document, Error> {
    if xml.len() > crate::MAX_DOCUMENT_BYTES {
        return Err(Error::TooLarge { limit: crate::MAX_DOCUMENT_BYTES });
    }
    Err(Error::Incomplete("a reader (not written yet)"))
}
