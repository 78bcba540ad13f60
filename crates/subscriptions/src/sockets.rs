//! The R4 websocket channel's bindings: the edge accepts a websocket, reads `bind ID`, and
//! holds the receiving end of a queue this registry hands out; the sender pushes `ping ID`
//! into every queue bound to the subscription. No HTTP here: lines of text only.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// The sockets bound to each subscription.
#[derive(Default)]
pub struct Sockets {
    bound: Mutex<HashMap<String, Vec<UnboundedSender<String>>>>,
}

impl Sockets {
    /// Binds a new socket to subscription `id`: the lines to send it.
    pub fn bind(&self, id: &str) -> UnboundedReceiver<String> {
        let (sender, receiver) = unbounded_channel();
        self.bound.lock().unwrap_or_else(|e| e.into_inner()).entry(id.to_string()).or_default().push(sender);
        receiver
    }

    /// Sends `line` to every socket bound to `id` that is still open; how many.
    pub fn send(&self, id: &str, line: &str) -> usize {
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        let Some(senders) = bound.get_mut(id) else { return 0 };
        senders.retain(|s| s.send(line.to_string()).is_ok());
        let count = senders.len();
        if count == 0 {
            bound.remove(id);
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_reach_open_sockets_only() {
        let sockets = Sockets::default();
        assert_eq!(sockets.send("a", "ping a"), 0);
        let mut first = sockets.bind("a");
        let second = sockets.bind("a");
        drop(second);
        assert_eq!(sockets.send("a", "ping a"), 1);
        assert_eq!(first.try_recv().ok().as_deref(), Some("ping a"));
        drop(first);
        assert_eq!(sockets.send("a", "ping a"), 0);
    }
}
