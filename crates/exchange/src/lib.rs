//! Exchange between organizations, HTTP-free, through the access-checked door
//! ([`access::Access`]):
//!
//! - [`bulk`]: FHIR Bulk Data 2.0 `$export` (system, Patient and Group level, a consistent
//!   snapshot streamed into NDJSON files) and `$import`, as asynchronous jobs whose state is
//!   kept in the store;
//! - [`documents`]: C-CDA documents in (filed to the patient, the original kept, Provenance
//!   on every resource, problems, allergies and medications held for reconciliation) and out
//!   (a CCD, referral note or discharge summary of a patient's record);
//! - [`identity`]: patient identity — `Patient/$match`, the patient index and its review
//!   list, and the merge and unmerge of two records of one person (`Patient/$merge`, HL7 A40).
//! - [`peers`]: other Continuum nodes, reached as a SMART backend service: the record
//!   locator (`$locate`) and the pull of a patient's record (`$pull`), and the referral packet (`$push`).
//!
//! The edges (the FHIR API, the command line, the clinician app) only translate requests to
//! these calls and their answers to their media.

pub mod bulk;
pub mod documents;
mod error;
pub mod identity;
pub mod peers;

pub use error::{Error, Result};
