//! C-CDA documents in and out, through the door.
//!
//! - [`import_ccda`]: a document filed to its patient (given, found by identifier, or new)
//!   as one transaction: the exact bytes as a `Binary`, a `DocumentReference` for them, the
//!   resources the `ccda` reader made (people and organizations matched by identifier, else
//!   created), and one `Provenance` naming the document and its authoring organization as the
//!   source of every resource made. Results, vitals, encounters, procedures, immunizations
//!   and the rest are facts of the source and are filed as they are; problems, allergies and
//!   medications the chart does not already hold (any code of theirs, translations included,
//!   equal to a code of the chart's item) are filed pending reconciliation
//!   ([`chart::reconcile`]); those it holds are not filed again. The same document twice
//!   adds nothing (its id is the DocumentReference's identifier), and so does an entry seen
//!   before in another document (entries are created only if no resource carries their id).
//! - [`export_ccda`]: a CCD, referral note or discharge summary of a patient's record.
//! - [`file_outgoing`]: such a document made and kept on the patient's record as an outgoing
//!   document (a `Binary` and its `DocumentReference`, written in one transaction), ready to
//!   be sent once node-to-node exchange exists.

mod export;
mod import;
mod outgoing;

pub use export::{CHART_TYPES, ExportedDocument, custodian, document_references, export_ccda};
pub use import::{ImportReport, import_ccda};
pub use outgoing::{KeptDocument, OUTGOING, file_outgoing, kept_document};
