//! Why a document is refused as a whole.

/// Why [`crate::read()`] refused a document (nothing of it may be stored), or why
/// [`crate::write()`] could not make one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Larger than [`crate::MAX_DOCUMENT_BYTES`].
    #[error("the document is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not well-formed XML (truncated, not UTF-8, a DTD or entity declarations).
    #[error("the document is not well-formed XML: {0}")]
    NotXml(String),
    /// Well-formed XML whose root is not an HL7 v3 `ClinicalDocument`.
    #[error("the document is not a CDA ClinicalDocument")]
    NotClinicalDocument,
    /// A `ClinicalDocument` without what every document must have (its patient, its code).
    #[error("the document lacks {0}")]
    Incomplete(&'static str),
    /// The resources given to [`crate::write()`] cannot make a document.
    #[error("cannot write the document: {0}")]
    CannotWrite(String),
}
