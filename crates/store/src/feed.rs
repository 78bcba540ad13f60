//! The in-process feed of committed changes: every version written through [`crate::Records`]
//! is announced after its unit of work is durable, in commit order, with its version, to the
//! listeners registered on the records (and every clone of them). It is for live consumers
//! inside this process — the policy's reach cache, websocket subscriptions, dashboards — and
//! keeps nothing: a consumer that must not miss a change reads the durable outbox or history.
//!
//! Order: each unit of work takes a ticket inside its own transaction, after its last write
//! (so a later writer of the same resource, which waits for the earlier one's row lock or runs
//! after it on SQLite's single writer, takes a later ticket), and announces (or cancels, when
//! it rolled back) that ticket once `execute` answered. Tickets are released strictly in
//! order: a commit waits in the feed until every earlier ticket is resolved.

use crate::Change;
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};

/// One version committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Its resource type.
    pub resource_type: String,
    /// Its id.
    pub id: String,
    /// The version written.
    pub version: u64,
    /// Created, updated or deleted.
    pub change: Change,
    /// Its position in the store's history.
    pub sequence: i64,
}

/// Something told of every commit, synchronously, before the writer's call returns (keep it
/// short: it runs under the feed's lock).
pub trait CommitListener: Send + Sync + 'static {
    /// `changes`: the versions one unit of work committed, in the order it wrote them.
    fn committed(&self, changes: &[Committed]);
}

/// The feed shared by a [`crate::Records`] and its clones.
#[derive(Default)]
pub struct ChangeFeed {
    state: Mutex<FeedState>,
}

#[derive(Default)]
struct FeedState {
    next_ticket: u64,
    next_release: u64,
    /// Resolved tickets waiting for an earlier one: `None` for a unit of work that rolled back.
    waiting: BTreeMap<u64, Option<Vec<Committed>>>,
    listeners: Vec<Arc<dyn CommitListener>>,
    subscribers: Vec<SyncSender<Arc<[Committed]>>>,
}

impl ChangeFeed {
    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a listener told of every later commit.
    pub fn listen(&self, listener: Arc<dyn CommitListener>) {
        self.lock().listeners.push(listener);
    }

    /// A receiver of every later commit, buffering up to `capacity` of them. A subscriber that
    /// falls further behind is dropped (its receiver then reports disconnection) rather than
    /// slowing every writer down: it must resynchronise from the history.
    pub fn subscribe(&self, capacity: usize) -> Receiver<Arc<[Committed]>> {
        let (sender, receiver) = sync_channel(capacity.max(1));
        self.lock().subscribers.push(sender);
        receiver
    }

    /// Whether anyone listens (no ticket is taken otherwise).
    pub(crate) fn wanted(&self) -> bool {
        let state = self.lock();
        !state.listeners.is_empty() || !state.subscribers.is_empty()
    }

    /// A ticket for a unit of work about to commit: taken inside its transaction.
    pub(crate) fn ticket(self: &Arc<Self>) -> Ticket {
        let mut state = self.lock();
        let number = state.next_ticket;
        state.next_ticket += 1;
        Ticket { feed: Arc::clone(self), number, resolved: false }
    }

    fn resolve(&self, number: u64, changes: Option<Vec<Committed>>) {
        let mut state = self.lock();
        state.waiting.insert(number, changes);
        loop {
            let next = state.next_release;
            let Some(changes) = state.waiting.remove(&next) else { break };
            state.next_release += 1;
            let Some(changes) = changes.filter(|c| !c.is_empty()) else { continue };
            for listener in &state.listeners {
                listener.committed(&changes);
            }
            if !state.subscribers.is_empty() {
                let shared: Arc<[Committed]> = changes.into();
                state.subscribers.retain(|s| match s.try_send(Arc::clone(&shared)) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
                });
            }
        }
    }
}

/// A place in the feed's order, held by one unit of work. Dropped unresolved (the work failed
/// or panicked), it is cancelled, so later commits are not held back.
pub(crate) struct Ticket {
    feed: Arc<ChangeFeed>,
    number: u64,
    resolved: bool,
}

impl Ticket {
    /// The unit of work committed `changes`.
    pub(crate) fn announce(mut self, changes: Vec<Committed>) {
        self.resolved = true;
        self.feed.resolve(self.number, Some(changes));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.resolved {
            self.feed.resolve(self.number, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: &str) -> Committed {
        Committed { resource_type: "Patient".into(), id: id.into(), version: 1, change: Change::Created, sequence: 1 }
    }

    #[test]
    fn commits_are_released_in_ticket_order_and_cancelled_tickets_do_not_block() {
        let feed = Arc::new(ChangeFeed::default());
        let seen = feed.subscribe(16);
        let (a, b, c) = (feed.ticket(), feed.ticket(), feed.ticket());
        c.announce(vec![change("c")]);
        assert!(seen.try_recv().is_err(), "c waits for a and b");
        b.announce(vec![change("b")]);
        assert!(seen.try_recv().is_err(), "b waits for a");
        drop(a); // rolled back
        assert_eq!(seen.try_recv().unwrap()[0].id, "b");
        assert_eq!(seen.try_recv().unwrap()[0].id, "c");
        assert!(seen.try_recv().is_err());
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_dropped() {
        let feed = Arc::new(ChangeFeed::default());
        let slow = feed.subscribe(1);
        feed.ticket().announce(vec![change("1")]);
        feed.ticket().announce(vec![change("2")]);
        assert_eq!(slow.recv().unwrap()[0].id, "1");
        assert!(slow.recv().is_err(), "disconnected after overflowing");
        assert!(!feed.wanted());
    }
}
