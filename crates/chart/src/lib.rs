//! The chart service, HTTP-free: domain rules of the clinical record that hold whichever door a
//! write comes through (the FHIR API, the clinician web app, HL7 v2, an import), and the
//! chart's operations written once for every edge, through the access-checked door.
//!
//! - [`notes`]: the note lifecycle — a `DocumentReference` is a draft (`docStatus`
//!   `preliminary`), then signed (`final`), then changed only by an amendment (a new note with
//!   `docStatus` `amended` that `replaces` it, the original kept as `superseded`). The rule is a
//!   [`store::WriteHook`] ([`notes::NoteLifecycle`]), so it runs inside every write's own
//!   transaction; [`notes::amend`] writes an amendment with `If-Match` on the version read.

pub mod notes;

pub use notes::NoteLifecycle;
