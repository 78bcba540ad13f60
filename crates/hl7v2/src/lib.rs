//! HL7 v2.x (2.3–2.8) messages: model, reader, encoder, segment groups, ACKs and MLLP framing.
//!
//! - [`Message::parse`] reads one message, keeping each segment's raw text so that
//!   [`Message::encode`] gives back the same bytes (segment terminators normalised to CR).
//!   Values are read through views ([`Segment::field`] → [`Field::repetitions`] →
//!   [`Repetition::component`] → [`Component::subcomponent`]) whose `text()` resolves escape
//!   sequences, or through paths: `msg.get("PID-3(2).4.1")`.
//! - [`Batch::parse`] reads FHS/BHS batch files into messages.
//! - [`group`] arranges a message's segments into the groups of its structure (ADT_A01,
//!   ORU_R01, VXU_V04, SIU_S12, …).
//! - [`ack()`] builds the acknowledgement of a message; [`ack_unparseable`] the rejection of
//!   input that is not a usable message.
//! - [`mllp`] frames and unframes messages on a byte stream, without any I/O of its own.
//!
//! Reading never panics, whatever the input; error texts never carry message content.

mod ack;
mod batch;
mod delimiters;
mod error;
mod message;
pub mod mllp;
mod path;
mod segment;
mod structure;

pub use ack::{AckCode, AckError, AckHeader, ErrorCode, ErrorLocation, Severity, ack, ack_unparseable};
pub use batch::{Batch, BatchGroup};
pub use delimiters::Delimiters;
pub use error::{Error, Result};
pub use message::{Header, Message, Warning};
pub use path::{Location, Path};
pub use segment::{Component, Field, Repetition, Segment, Subcomponent, is_segment_id};
pub use structure::{
    Element, ElementKind, Group, Grouping, Node, Structure, group, group_lenient, parse_notation, structure_for,
};
