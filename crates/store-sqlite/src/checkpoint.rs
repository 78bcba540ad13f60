//! The checkpointer: copies committed WAL frames into the database file on its own thread and
//! connection, so that the writer's commits only append to the WAL and fsync it.

use crate::storage;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::Connection;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;
use store::{Error, Result};

/// How often the WAL is checkpointed.
const INTERVAL: Duration = Duration::from_millis(100);

/// Stops the checkpointer when dropped (after one last checkpoint).
pub(crate) struct Checkpointer {
    stop: Option<Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path`.
    pub(crate) fn spawn(path: &Path) -> Result<Checkpointer> {
        let conn = Connection::open(path).map_err(storage("open checkpointer"))?;
        // The checkpoint fsyncs the database before the WAL may be reused.
        conn.pragma_update(None, "synchronous", "FULL").map_err(storage("open checkpointer"))?;
        conn.busy_timeout(crate::BUSY_TIMEOUT).map_err(storage("open checkpointer"))?;
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let handle = std::thread::Builder::new()
            .name("store-sqlite-checkpoint".into())
            .spawn(move || run(&conn, &stopped))
            .map_err(|e| Error::Storage(format!("cannot start the checkpointer: {e}")))?;
        Ok(Checkpointer { stop: Some(stop), handle: Some(handle) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn run(conn: &Connection, stopped: &Receiver<()>) {
    loop {
        let last = matches!(stopped.recv_timeout(INTERVAL), Err(RecvTimeoutError::Disconnected) | Ok(()));
        // PASSIVE never waits for readers or the writer; what it cannot copy now it copies
        // next time. A failure is retried on the next tick, and the writer's own automatic
        // checkpoint stays as a backstop.
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if last {
            return;
        }
    }
}
