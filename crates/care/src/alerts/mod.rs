//! Event alerts to the care team: admissions, ED visits and discharges, new abnormal or
//! critical results, medication changes, a positive depression screen (and, to the
//! behavioral-health clinicians, a rising PHQ-9 or item 9 above 0).
//!
//! - [`events`]: what a write means (pure functions).
//! - [`hook`]: [`AlertHook`], the write hook that queues each event in the notification outbox
//!   inside the triggering write's transaction.
//! - [`rules`]: who is told of what, per organization (plain configuration).
//! - [`deliver`]: [`AlertDelivery`], which turns each queued event into a `Communication` per
//!   recipient (their in-app inbox), starts transitions of care, and queues e-mails and webhooks.
//! - [`channels`]: the outbound channels behind [`channels::AlertSender`]: e-mail through an
//!   SMTP relay and webhooks.
//! - [`inbox`]: a clinician's alerts, unread counts, marking one read.

pub mod channels;
pub mod deliver;
pub mod events;
pub mod hook;
pub mod inbox;
pub mod rules;

pub use deliver::AlertDelivery;
pub use events::AlertKind;
pub use hook::AlertHook;
pub use rules::AlertConfig;
