//! The contract of the notification outbox: notifications (care alerts, FHIR Subscription
//! events, e-mails, webhooks) written in the same transaction as the record change they
//! announce, so that a committed change is never left unannounced, and delivered at least once
//! by a sender that retries with backoff. Backends implement [`Notifications`] and
//! [`crate::Transaction::enqueue_notification`]; no SQL here.
//!
//! Every notification belongs to a **channel** (`sub:ID` for a Subscription, `alert` for care
//! alerts, `email:…`, `webhook:…`), is numbered from 1 within its channel in commit order (the
//! event number a Subscription's notifications carry), and is handed out in that order: a
//! channel's later notifications wait while an earlier one waits for a retry.

use crate::Result;
use crate::outbox::OutboundStatus;
use time::OffsetDateTime;

/// A notification to queue inside a write's transaction.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    /// Its channel (see the module's documentation).
    pub channel: &'a str,
    /// What happened, in fixed words (`encounter-start`, `subscription-match`).
    pub event: &'a str,
    /// `Type/id` (or `Type/id/_history/N`) of the resource that triggered it.
    pub resource: &'a str,
    /// The Patient id it concerns, when known.
    pub patient: Option<&'a str>,
    /// What the sender needs (JSON text, the channel's own shape).
    pub payload: &'a str,
}

/// One queued notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Its id (increasing with creation, across channels).
    pub id: i64,
    /// Its channel.
    pub channel: String,
    /// Its number within the channel, from 1, in commit order.
    pub number: i64,
    /// When it was queued.
    pub created_at: OffsetDateTime,
    /// See [`NewNotification::event`].
    pub event: String,
    /// See [`NewNotification::resource`].
    pub resource: String,
    /// See [`NewNotification::patient`].
    pub patient: Option<String>,
    /// Where it stands.
    pub status: OutboundStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (pending notifications).
    pub next_attempt_at: OffsetDateTime,
    /// Why the last attempt failed, in fixed words (never content).
    pub last_error: Option<String>,
    /// See [`NewNotification::payload`].
    pub payload: String,
}

/// The notification outbox of a store. Bookkeeping calls (everything but the enqueue, which
/// runs inside a write's transaction) are small statements of their own: a delivery mark lost
/// in a crash only means the notification is sent once more (at least once).
pub trait Notifications: Send + Sync + 'static {
    /// Queues a notification outside any write (a sender fanning one notification out to
    /// channels of its own); its number within its channel.
    fn enqueue(&self, notification: &NewNotification<'_>) -> Result<i64>;
    /// Pending notifications due at `now` whose channel starts with `channel_prefix`, oldest
    /// first, at most `limit`; none of a channel while an earlier pending notification of it
    /// is not yet due (each channel gets its notifications in order).
    fn due(&self, now: OffsetDateTime, channel_prefix: &str, limit: usize) -> Result<Vec<Notification>>;
    /// Marks a notification delivered; counts the attempt.
    fn delivered(&self, id: i64) -> Result<()>;
    /// Records a failed attempt: retried at `retry_at`, or dead when `None`.
    fn attempt_failed(&self, id: i64, error: &str, retry_at: Option<OffsetDateTime>) -> Result<()>;
    /// The notifications of `channel` numbered `from..=to` (any status), in order, at most
    /// `limit` (a Subscription's `$events`).
    fn events(&self, channel: &str, from: i64, to: i64, limit: usize) -> Result<Vec<Notification>>;
    /// The highest number given in `channel` so far (0 when none).
    fn latest_number(&self, channel: &str) -> Result<i64>;
    /// Makes every pending notification of `channel` due now (a receiver fixed, a
    /// subscription resumed); how many.
    fn retry_now(&self, channel: &str) -> Result<u64>;
    /// Gives up every pending notification of `channel` (its subscription deleted): they are
    /// kept as dead, with the error `dropped`, so that numbers are never given twice; how many.
    fn drop_pending(&self, channel: &str) -> Result<u64>;
    /// How many notifications whose channel starts with `channel_prefix` are in each status.
    fn count_by_status(&self, channel_prefix: &str) -> Result<Vec<(OutboundStatus, u64)>>;
}
