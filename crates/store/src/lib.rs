//! The one write path and the storage contract. Every door (REST, import, later HL7 v2 and
//! the web app) writes through [`Records`]: validate → store the new version (current row,
//! history row, index rows) in one database transaction → commit. Backends implement
//! [`Backend`] and [`Transaction`]; only backend crates know SQL.

pub mod audit;
pub mod backend;
pub mod bundle;
pub mod compartment;
pub mod criteria;
pub mod error;
pub mod feed;
pub mod guard;
pub mod jobs;
#[cfg(test)]
mod memory;
pub mod messages;
pub mod notify;
pub mod outbox;
mod recording;
pub mod records;
mod refs;
mod resource;
pub mod searches;
mod transaction;
mod write;

pub use audit::{Agent, AuditLog};
pub use backend::{Backend, Change, HistoryQuery, NewVersion, ResourceVersion, Transaction, Work};
pub use criteria::Criteria;
pub use error::{Error, ErrorKind, Result};
pub use feed::{ChangeFeed, CommitListener, Committed};
pub use guard::AccessGuard;
pub use jobs::{JobStore, StoredJob};
pub use messages::{InboundPartner, MessageLog, MessageQuery, MessageStatus, StoredMessage};
pub use notify::{NewNotification, Notification, Notifications};
pub use outbox::{Outbox, WriteHook};
pub use records::{Records, WriteKind, WriteOutcome};
pub use resource::format_instant;
pub use searches::SearchPage;
