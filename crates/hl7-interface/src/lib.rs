//! The HL7 v2 interface: messages received over MLLP are logged verbatim, mapped to FHIR and
//! written through the access-checked door ([`access::Door`], entered as the job [`JOB`]: its
//! reads audited under that name, its writes in their own transaction) as one transaction
//! Bundle each, and acknowledged only once that commit is durable.
//!
//! - [`listener::serve`] — the MLLP listener (tokio), with per-connection limits; it admits
//!   only peers on the allow-list ([`partners`]: registered inbound partners by address, or
//!   loopback while none is registered), over plain TCP or TLS ([`tls`]: mutual when given a
//!   client CA).
//! - [`Interface`] — one message from bytes to ACK: log under its partner, duplicate check
//!   (same MSH-10 from the same MSH-3/MSH-4 *and the same partner*), destructive events only
//!   from partners allowed them, mapping, commit, outcome; [`Interface::replay`] re-runs a dead-letter
//!   message and [`Interface::recover`] settles messages a crash left unfinished.
//! - `map` — ADT, ORU^R01, VXU^V04 and SIU^S12–S15 to Patient, Encounter, Location,
//!   Practitioner, DiagnosticReport, Observation, Specimen, Immunization and Appointment, each
//!   write carried by a Provenance naming the source message.
//!
//! - [`outbound`] — ADT notifications of Encounter changes queued in the outbox in the write's
//!   own transaction ([`outbound::AdtNotifier`]), the MLLP sender that delivers them at least
//!   once ([`outbound::deliver`]), and the ORU^R01 of a DiagnosticReport ([`outbound::oru_r01`]).
//!
//! The message log lives behind [`store::MessageLog`], so every backend can keep it. Errors
//! sent back in ACKs and written to logs never carry message content.

mod ingest;
pub mod listener;
mod map;
pub mod outbound;
pub mod partners;
pub mod tls;

pub use ingest::{Handled, Interface, ReplayError};

/// The name the interface goes through the door under (its audit agent).
pub const JOB: &str = "hl7-interface";
pub use listener::{ListenerConfig, serve};
pub use map::{MESSAGE_LOG_SYSTEM, MapError, provenance_id};
pub use partners::{AllowList, Peer};
