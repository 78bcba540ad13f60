//! The writer thread and its group commit: it owns the one write connection, takes every
//! pending unit of work (up to [`MAX_GROUP`]), runs each in its own savepoint inside one
//! `BEGIN IMMEDIATE … COMMIT`, and only then answers the callers. One fsync thus covers many
//! writes, and a failing unit of work rolls back alone.

use crate::{queries, storage};
use crossbeam_channel::{Receiver, Sender};
use rusqlite::Connection;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;
use store::{Error, NewVersion, ResourceVersion, Result, Transaction, Work};

/// Most units of work in one commit; bounds how long the first caller of a group waits.
const MAX_GROUP: usize = 256;
/// Pending units of work beyond which callers wait to enqueue (back-pressure).
const QUEUE: usize = 4096;

/// A unit of work and where its result goes.
pub(crate) struct Job {
    pub work: Work,
    pub reply: Sender<Result<()>>,
}

/// Starts the writer thread on `conn`. It ends, after finishing what is queued, once every
/// sender is dropped.
pub(crate) fn spawn(conn: Connection) -> std::io::Result<(Sender<Job>, JoinHandle<()>)> {
    let (sender, receiver) = crossbeam_channel::bounded(QUEUE);
    let handle = std::thread::Builder::new().name("store-sqlite-writer".into()).spawn(move || run(conn, receiver))?;
    Ok((sender, handle))
}

fn run(conn: Connection, receiver: Receiver<Job>) {
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&conn, group);
    }
}

/// Runs `group` in one transaction and answers each caller once it is durable (or failed).
fn commit_group(conn: &Connection, group: Vec<Job>) {
    let (works, replies): (Vec<Work>, Vec<Sender<Result<()>>>) = group.into_iter().map(|j| (j.work, j.reply)).unzip();
    let results = match conn.execute_batch("BEGIN IMMEDIATE") {
        Ok(()) => run_in_transaction(conn, works),
        Err(e) => {
            let error = storage("begin")(e);
            works.iter().map(|_| Err(clone_storage(&error))).collect()
        }
    };
    for (reply, result) in replies.into_iter().zip(results) {
        // A caller that gave up waiting is no reason to stop.
        let _ = reply.send(result);
    }
}

fn run_in_transaction(conn: &Connection, works: Vec<Work>) -> Vec<Result<()>> {
    let mut results = Vec::with_capacity(works.len());
    let mut broken = None;
    for work in works {
        if broken.is_some() {
            results.push(Err(Error::Storage("the group's transaction failed".into())));
            continue;
        }
        match run_one(conn, work) {
            Ok(result) => results.push(result),
            Err(e) => {
                results.push(Err(clone_storage(&e)));
                broken = Some(e);
            }
        }
    }
    let committed = match broken {
        None => conn.execute_batch("COMMIT").map_err(storage("commit")),
        Some(e) => Err(e),
    };
    if let Err(e) = committed {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for result in results.iter_mut().filter(|r| r.is_ok()) {
            *result = Err(clone_storage(&e));
        }
    }
    results
}

/// Runs one unit of work in a savepoint. The outer error means the transaction itself is no
/// longer usable; the inner result is the work's own.
fn run_one(conn: &Connection, work: Work) -> Result<Result<()>> {
    exec(conn, "SAVEPOINT work")?;
    let mut tx = WriterTx { conn };
    let result = catch_unwind(AssertUnwindSafe(|| work(&mut tx)))
        .unwrap_or_else(|_| Err(Error::Storage("a unit of work panicked".into())));
    if conn.is_autocommit() {
        // SQLite rolled the whole transaction back (e.g. disk full): nothing can be saved.
        return Err(Error::Storage("the transaction was rolled back by the database".into()));
    }
    if result.is_err() {
        exec(conn, "ROLLBACK TO work")?;
    }
    exec(conn, "RELEASE work")?;
    Ok(result)
}

fn exec(conn: &Connection, sql: &'static str) -> Result<()> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(drop).map_err(storage("savepoint"))
}

fn clone_storage(error: &Error) -> Error {
    match error {
        Error::Storage(message) => Error::Storage(message.clone()),
        other => Error::Storage(other.to_string()),
    }
}

/// The writer's view of its open transaction.
struct WriterTx<'c> {
    conn: &'c Connection,
}

impl Transaction for WriterTx<'_> {
    fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<ResourceVersion>> {
        queries::current(self.conn, resource_type, id)
    }

    fn find_by_identifier(&mut self, resource_type: &str, system: Option<&str>, value: &str) -> Result<Vec<String>> {
        queries::find_by_identifier(self.conn, resource_type, system, value)
    }

    fn version(&mut self, resource_type: &str, id: &str, version: u64) -> Result<Option<ResourceVersion>> {
        queries::version(self.conn, resource_type, id, version)
    }

    fn current_version(&mut self, resource_type: &str, id: &str) -> Result<Option<(u64, bool)>> {
        queries::current_version(self.conn, resource_type, id)
    }

    fn put(&mut self, version: &NewVersion<'_>) -> Result<i64> {
        queries::put(self.conn, version)
    }
}
