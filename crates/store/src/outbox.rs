//! The contract of the interface outbox: messages to send to partners (HL7 v2 ADT over MLLP
//! today), written in the same transaction as the record change they announce, so that a
//! committed change is never left unannounced, and delivered at least once by a sender that
//! retries with backoff. Backends implement [`Outbox`] and the two outbox methods of
//! [`crate::Transaction`]; no SQL here.
//!
//! [`WriteHook`] is how a change becomes an outbox row: [`crate::Records::with_hook`] calls it
//! inside the unit of work after every version written of a resource type it wants.

use crate::{NewVersion, ResourceVersion, Result, Transaction};
use time::OffsetDateTime;

/// Something run inside the unit of work of every write of the resource types it wants (to
/// add outbox rows in the same transaction). An error rolls the write back.
pub trait WriteHook: Send + Sync + 'static {
    /// Whether writes of `resource_type` concern this hook (checked before anything is read).
    fn wants(&self, resource_type: &str) -> bool;
    /// Called after `new` was put (at history position `sequence`); `previous` is the version
    /// it replaced, if any.
    fn written(
        &self,
        tx: &mut dyn Transaction,
        previous: Option<&ResourceVersion>,
        new: &NewVersion<'_>,
        sequence: i64,
    ) -> Result<()>;
    /// Like [`WriteHook::written`], told who writes (`None`: a write of the server itself, or
    /// of an open door). What the records call; by default it forgets the actor and calls
    /// [`WriteHook::written`]. A hook that must remember who wrote (a Subscription's owner)
    /// overrides it.
    fn written_by(
        &self,
        tx: &mut dyn Transaction,
        previous: Option<&ResourceVersion>,
        new: &NewVersion<'_>,
        sequence: i64,
        actor: Option<&crate::Agent>,
    ) -> Result<()> {
        let _ = actor;
        self.written(tx, previous, new, sequence)
    }
}

/// A partner that receives outbound messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    /// Its name (unique).
    pub name: String,
    /// `HOST:PORT` of its MLLP listener.
    pub address: String,
    /// The trigger events it takes (`A01`, `A03`…).
    pub events: Vec<String>,
}

/// A message to queue for every partner named, inside a write's transaction.
#[derive(Debug, Clone)]
pub struct NewOutbound<'a> {
    /// The partners to send it to.
    pub partners: &'a [String],
    /// The trigger event (`A01`).
    pub event: &'a str,
    /// The message type (`ADT^A01`).
    pub message_type: &'a str,
    /// MSH-10 of the message.
    pub control_id: &'a str,
    /// `Type/id` of the resource the message announces.
    pub resource: &'a str,
    /// The Patient id it concerns, when known.
    pub patient: Option<&'a str>,
    /// The encoded message.
    pub payload: &'a str,
}

/// Where an outbound message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboundStatus {
    /// Waiting for (another) attempt.
    Pending,
    /// The partner acknowledged it (`AA`/`CA`).
    Delivered,
    /// Every attempt failed; no more are made.
    Dead,
}

impl OutboundStatus {
    /// Every status, in a fixed order.
    pub const ALL: [OutboundStatus; 3] = [OutboundStatus::Pending, OutboundStatus::Delivered, OutboundStatus::Dead];

    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundStatus::Pending => "pending",
            OutboundStatus::Delivered => "delivered",
            OutboundStatus::Dead => "dead",
        }
    }

    /// The status named `name`.
    pub fn parse(name: &str) -> Option<OutboundStatus> {
        OutboundStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One queued message for one partner.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    /// Its outbox id (increasing with creation).
    pub id: i64,
    /// The partner's name.
    pub partner: String,
    /// When it was queued (the commit of the change).
    pub created_at: OffsetDateTime,
    /// See [`NewOutbound::event`].
    pub event: String,
    /// See [`NewOutbound::message_type`].
    pub message_type: String,
    /// See [`NewOutbound::control_id`].
    pub control_id: String,
    /// See [`NewOutbound::resource`].
    pub resource: String,
    /// See [`NewOutbound::patient`].
    pub patient: Option<String>,
    /// Where it stands.
    pub status: OutboundStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (pending messages).
    pub next_attempt_at: OffsetDateTime,
    /// Why the last attempt failed, in fixed words (never message content).
    pub last_error: Option<String>,
    /// The encoded message; empty when listed without it.
    pub payload: String,
}

/// Which outbound messages to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct OutboundQuery {
    /// Only these statuses (any when empty).
    pub statuses: Vec<OutboundStatus>,
    /// Only this partner.
    pub partner: Option<String>,
    /// At most this many (0: a default of 100).
    pub limit: usize,
}

/// The outbox and partner list of a store.
pub trait Outbox: Send + Sync + 'static {
    /// Adds (or replaces) a partner.
    fn put_partner(&self, partner: &Partner) -> Result<()>;
    /// Removes a partner and its pending messages; whether it existed.
    fn remove_partner(&self, name: &str) -> Result<bool>;
    /// Every partner, by name.
    fn partners(&self) -> Result<Vec<Partner>>;
    /// Pending messages due at `now`, oldest first, at most `limit`; none of a partner while an
    /// earlier message of it waits for a retry (each partner gets its messages in order).
    fn due(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<OutboundMessage>>;
    /// Marks a message delivered; counts the attempt.
    fn delivered(&self, id: i64) -> Result<()>;
    /// Records a failed attempt: retried at `retry_at`, or dead when `None`.
    fn attempt_failed(&self, id: i64, error: &str, retry_at: Option<OffsetDateTime>) -> Result<()>;
    /// Messages matching `query`, newest first (without payloads).
    fn list(&self, query: &OutboundQuery) -> Result<Vec<OutboundMessage>>;
    /// How many messages are in each status (the backlog is `pending`), for monitoring.
    fn count_by_status(&self) -> Result<Vec<(OutboundStatus, u64)>>;
}
