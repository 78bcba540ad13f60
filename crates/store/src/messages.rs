//! The contract of the interface message log: every message received by an interface (HL7 v2
//! over MLLP today) is kept verbatim with its processing state, so that duplicates are
//! recognised, failures wait in a dead-letter state until replayed, and administrators can
//! see what arrived. Backends implement [`MessageLog`]; no SQL here.

use crate::Result;
use time::OffsetDateTime;

/// Where a received message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    /// Stored, not yet (or not completely) processed.
    Received,
    /// Its effects are committed; acknowledged with `AA`.
    Processed,
    /// Processing failed (`AE`): the dead-letter state, replayable.
    Failed,
    /// Refused for its form or header (`AR`): not a usable message, or not one we take.
    Rejected,
    /// A copy of a message already processed: acknowledged without being applied again.
    Duplicate,
}

impl MessageStatus {
    /// Every status, in a fixed order.
    pub const ALL: [MessageStatus; 5] = [
        MessageStatus::Received,
        MessageStatus::Processed,
        MessageStatus::Failed,
        MessageStatus::Rejected,
        MessageStatus::Duplicate,
    ];

    /// The status as stored and shown (`received`, `processed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Received => "received",
            MessageStatus::Processed => "processed",
            MessageStatus::Failed => "failed",
            MessageStatus::Rejected => "rejected",
            MessageStatus::Duplicate => "duplicate",
        }
    }

    /// The status named `name` (as [`MessageStatus::as_str`] spells it).
    pub fn parse(name: &str) -> Option<MessageStatus> {
        MessageStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the message sits in the dead-letter state (failed or rejected).
    pub fn is_dead_letter(self) -> bool {
        matches!(self, MessageStatus::Failed | MessageStatus::Rejected)
    }
}

/// A message as received, before processing.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// The partner the message came from, as the listener established it from the connection
    /// (the inbound partner whose addresses the peer matched), never from the message's own
    /// header. Duplicates are recognised within one partner only.
    pub partner: &'a str,
    /// The sender: MSH-3 and MSH-4 as sent (empty when the header could not be read).
    pub sender: &'a str,
    /// MSH-10 (empty when unreadable).
    pub control_id: &'a str,
    /// Message code and trigger, e.g. `ADT^A01` (empty when unreadable).
    pub message_type: &'a str,
    /// The bytes exactly as received (the frame's content).
    pub raw: &'a [u8],
}

/// How processing of a message ended.
#[derive(Debug, Clone, Default)]
pub struct MessageOutcome {
    /// The acknowledgement code sent (`AA`, `AE`, `AR`).
    pub ack_code: String,
    /// Why it failed, in fixed words (never message content).
    pub error: Option<String>,
    /// The id of the Patient the message concerns, when known.
    pub patient: Option<String>,
    /// `Type/id` of each resource the message wrote.
    pub resources: Vec<String>,
    /// For a duplicate: the log id of the message it repeats.
    pub duplicate_of: Option<i64>,
}

/// One logged message.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The log id (increasing with arrival).
    pub id: i64,
    /// When it was received.
    pub received_at: OffsetDateTime,
    /// When its status last changed.
    pub updated_at: OffsetDateTime,
    /// See [`NewMessage::partner`] (empty for messages logged before partners were recorded).
    pub partner: String,
    /// See [`NewMessage::sender`].
    pub sender: String,
    /// See [`NewMessage::control_id`].
    pub control_id: String,
    /// See [`NewMessage::message_type`].
    pub message_type: String,
    /// Where it stands.
    pub status: MessageStatus,
    /// How many times processing was attempted.
    pub attempts: u32,
    /// The outcome of the last attempt (default while `Received`).
    pub outcome: MessageOutcome,
    /// The bytes as received; empty when listed without them.
    pub raw: Vec<u8>,
}

/// Which messages to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    /// Only these statuses (any when empty).
    pub statuses: Vec<MessageStatus>,
    /// Only messages about this Patient id.
    pub patient: Option<String>,
    /// Only this message type (`ADT^A01`; `ADT` matches every ADT trigger).
    pub message_type: Option<String>,
    /// Only messages received at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only messages with an id below this (paging cursor).
    pub before_id: Option<i64>,
    /// At most this many (0: a default of 100).
    pub limit: usize,
    /// Whether to load the raw bytes too.
    pub with_raw: bool,
}

/// The message log of a store.
pub trait MessageLog: Send + Sync + 'static {
    /// Stores a received message, status [`MessageStatus::Received`], and returns its log id.
    /// Called before processing starts.
    fn receive(&self, message: &NewMessage<'_>) -> Result<i64>;
    /// The log id of a processed message received from `partner` with `sender` (MSH-3|MSH-4)
    /// and `control_id`, other than `except`, if any. Messages of other partners never count.
    fn find_processed(&self, partner: &str, sender: &str, control_id: &str, except: i64) -> Result<Option<i64>>;
    /// Records the end of an attempt: the new status and its outcome; counts the attempt.
    fn finish(&self, id: i64, status: MessageStatus, outcome: &MessageOutcome) -> Result<()>;
    /// One message with its raw bytes.
    fn get(&self, id: i64) -> Result<Option<StoredMessage>>;
    /// Messages matching `query`, newest first.
    fn list(&self, query: &MessageQuery) -> Result<Vec<StoredMessage>>;
    /// How many messages are in each status, for monitoring.
    fn count_by_status(&self) -> Result<Vec<(MessageStatus, u64)>>;
    /// Adds an inbound partner, or replaces the one of that name.
    fn put_inbound_partner(&self, partner: &InboundPartner) -> Result<()>;
    /// The inbound partners, by name.
    fn inbound_partners(&self) -> Result<Vec<InboundPartner>>;
    /// Removes an inbound partner; `false` when there was none of that name.
    fn remove_inbound_partner(&self, name: &str) -> Result<bool>;
}

/// A partner allowed to send messages to the MLLP listener: the peer addresses it connects
/// from (the listener's allow-list) and the destructive events it may send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InboundPartner {
    /// Its name (unique): the identity its messages are logged and de-duplicated under.
    pub name: String,
    /// The peer addresses it connects from: IP addresses or CIDR blocks (`10.1.2.3`,
    /// `10.1.0.0/16`, `fd00::/8`), as text.
    pub addresses: Vec<String>,
    /// The destructive trigger events it may send (`A40`, `A11`, `A13`, `S15`); others of
    /// those are refused with `AR`.
    pub allowed_events: Vec<String>,
}
