//! C-CDA R2.1 documents, HTTP- and storage-free: [`read()`] turns a `ClinicalDocument` into
//! FHIR R4 resources (what the `exchange` service files, reconciles and keeps provenance of),
//! and [`write()`] makes a document from a patient's FHIR resources.
//!
//! Why by hand: no maintained Rust crate reads or writes C-CDA; the XML itself is parsed by
//! `roxmltree` (no DTDs, so no entity expansion and nothing fetched: an "XML bomb" is refused,
//! never expanded).
//!
//! Reading never panics, whatever the input; error texts never carry document content.

mod error;
pub mod read;
pub mod write;

pub use error::Error;
pub use read::{Document, DocumentTemplate, Mapped, SectionKind, Warning, read};
pub use write::{Chart, DocumentType, ENTRY_ID_ROOT, write};

/// The largest document [`read()`] accepts, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// The CDA namespace.
pub const CDA_NS: &str = "urn:hl7-org:v3";
/// The SDTC extensions' namespace.
pub const SDTC_NS: &str = "urn:hl7-org:sdtc";
/// `DocumentReference.content.format` of a C-CDA R2.1 structured-body document.
pub const FORMAT_STRUCTURED_BODY_R21: &str = "urn:hl7-org:sdwg:ccda-structuredBody:2.1";
/// `DocumentReference.content.format` of a C-CDA R1.1 structured-body document.
pub const FORMAT_STRUCTURED_BODY_R11: &str = "urn:hl7-org:sdwg:ccda-structuredBody:1.1";
