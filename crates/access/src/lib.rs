//! The one access-checked door to the record. Every edge — the FHIR REST API, the clinician
//! web app, and every later one (patient portal, bulk export, CDS Hooks, subscription delivery,
//! HL7 v2 acting for a partner) — reaches the record for a person, an app or a named system
//! job through an [`Access`] made by the [`Door`]:
//!
//! - each interaction (`read`, `vread`, `search`, `history`, `create`, `update`, `patch`,
//!   `delete`, `transaction`, `everything`, operations) is allowed by the [`policy::Policy`]
//!   for its type first;
//! - searches are narrowed to what the caller may see before they run, each resource handed
//!   out is checked, and every version written passes the policy's guard inside its own
//!   transaction;
//! - every access is audited: writes inside their own transaction (by the store), everything
//!   else (reads, searches, operations, refusals) noted on the handle and appended in batches
//!   by the [`Auditor`] when the edge [`settles`](Access::settle) the handle — before it
//!   serves anything;
//! - cached reaches are forgotten after every committed write that may change them, whatever
//!   wrote it (the policy listens to the store's commit feed).
//!
//! Knows no HTTP: its methods are synchronous (run them on a blocking thread) and answer typed
//! values or an [`Error`] whose class comes from the one error table ([`fhir::ErrorClass`]).

mod door;
mod error;

pub mod auditor;

pub use auditor::{AuditUnavailable, Auditor};
pub use door::{Access, Door, Everything, TypeCheck, Who, actor};
pub use error::Error;
