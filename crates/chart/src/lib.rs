//! The chart service, HTTP-free: domain rules of the clinical record that hold whichever door a
//! write comes through (the FHIR API, the clinician web app, HL7 v2, an import), and the
//! chart's operations and views written once for every edge, through the access-checked door.
//!
//! - [`notes`]: the note lifecycle — a `DocumentReference` is a draft (`docStatus`
//!   `preliminary`), then signed (`final`), then changed only by an amendment (a new note with
//!   `docStatus` `amended` that `replaces` it, the original kept as `superseded`). The rule is a
//!   [`store::WriteHook`] ([`notes::NoteLifecycle`]), so it runs inside every write's own
//!   transaction; [`notes::amend`] writes an amendment with `If-Match` on the version read.
//! - [`vitals`]: vital signs entered, recorded as vital-sign Observations with a BMI.
//! - [`lists`]: the problem, allergy and medication lists and their edits.
//! - [`summary`] and [`trends`]: the views of the summary page and of one measure over time.
//! - [`timeline`]: the longitudinal timeline across organizations, a page at a time.
//! - [`elements`] and [`read`]: reading FHIR elements as a chart shows them, and the record
//!   through the door.

pub mod elements;
mod error;
pub mod lists;
pub mod notes;
pub mod read;
pub mod reconcile;
pub mod summary;
pub mod timeline;
pub mod trends;
pub mod vitals;

pub use error::{Error, Result};
pub use notes::NoteLifecycle;
