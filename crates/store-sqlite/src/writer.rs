//! The writer thread and its group commit: it owns the one write connection, takes every
//! pending unit of work (up to [`MAX_GROUP`]), runs each in its own savepoint inside one
//! `BEGIN IMMEDIATE … COMMIT`, and hands the group's answers to the syncer thread, which
//! answers the callers once an fsync has made the commit durable. One fsync thus covers many
//! writes, a failing unit of work rolls back alone, and the writer never waits for the disk.
//!
//! # Why the commit is pipelined, and why that is still durable
//!
//! With `synchronous=FULL` SQLite fsyncs the WAL inside `COMMIT`, and the writer (the one
//! thread every write goes through) sat idle for every fsync: throughput was group size over
//! fsync time. The write connection therefore runs with `synchronous=NORMAL`, where `COMMIT`
//! only appends the transaction's frames to the WAL, and durability is restored outside
//! SQLite: after `COMMIT` returns, the group's answers go to the syncer, which calls
//! `fdatasync` on the WAL file (its own descriptor; on Linux, as on every POSIX system, an
//! fsync flushes the file's data whichever descriptor wrote it) and only then answers the
//! callers. Meanwhile the writer runs the next group; one fsync covers every commit made
//! before it started.
//!
//! An fsync issued after commit N returned covers N even if the WAL was restarted (rewritten
//! from its start) in between: SQLite restarts the WAL only once a checkpoint has copied every
//! frame into the database file *and*, with `synchronous` NORMAL or FULL, fsynced the database
//! file (the checkpoint syncs the database before it advances `nBackfill` to the end of the
//! WAL, and a restart requires exactly that). So commit N is then durable in the database file
//! itself, and the new frames that overwrite it in the WAL are not needed to recover it. The
//! checkpoint also syncs the WAL before copying it, so nothing unsynced is ever copied. The
//! WAL file is never deleted while the write connection is open, and the syncer is stopped
//! before that connection closes, so its descriptor always names the live WAL.
//!
//! What this changes: a commit is visible to readers as soon as `COMMIT` returns, a few
//! milliseconds before it is durable and acknowledged. A power loss in that window loses a
//! write that a concurrent reader may have seen, but never one whose writer was told it
//! succeeded. Writes that depend on it (a later update) commit after it and are acknowledged
//! only after a sync that covers both.
//!
//! If an fsync fails the syncer answers that write, and every later one, with an error and
//! stops the writer from running more work: after a failed fsync the kernel may have dropped
//! the dirty pages, and a later fsync that succeeds proves nothing about them.

use crate::{queries, storage};
use crossbeam_channel::{Receiver, Sender};
use rusqlite::Connection;
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use store::{Error, NewVersion, ResourceVersion, Result, Transaction, Work};

/// Most units of work in one commit; bounds how long the first caller of a group waits.
const MAX_GROUP: usize = 256;
/// Pending units of work beyond which callers wait to enqueue (back-pressure).
const QUEUE: usize = 4096;
/// Committed groups waiting for the syncer beyond which the writer waits.
const SYNC_QUEUE: usize = 1024;

/// A unit of work and where its result goes.
pub(crate) struct Job {
    pub work: Work,
    pub reply: Sender<Result<()>>,
}

/// The answers of one committed (or failed) group, to be sent once the WAL is synced.
type Answers = Vec<(Sender<Result<()>>, Result<()>)>;

/// Starts the writer thread on `conn`, whose WAL is `wal` (opened by the caller so that a
/// missing file is an error at open, not at the first write). The writer ends, after
/// finishing what is queued and waiting for the syncer to answer it, once every sender is
/// dropped.
pub(crate) fn spawn(conn: Connection, wal: File) -> std::io::Result<(Sender<Job>, JoinHandle<()>)> {
    let (sender, receiver) = crossbeam_channel::bounded(QUEUE);
    let (to_sync, synced) = crossbeam_channel::bounded(SYNC_QUEUE);
    let failed = Arc::new(AtomicBool::new(false));
    let syncer_failed = Arc::clone(&failed);
    let syncer = std::thread::Builder::new()
        .name("store-sqlite-sync".into())
        .spawn(move || sync(&wal, &synced, &syncer_failed))?;
    let handle = std::thread::Builder::new().name("store-sqlite-writer".into()).spawn(move || {
        run(&conn, &receiver, &to_sync, &failed);
        // Every answer must be sent (after its fsync) before the connection closes.
        drop(to_sync);
        let _ = syncer.join();
        drop(conn);
    })?;
    Ok((sender, handle))
}

fn run(conn: &Connection, receiver: &Receiver<Job>, to_sync: &Sender<Answers>, failed: &AtomicBool) {
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let answers = if failed.load(Ordering::Acquire) {
            group.into_iter().map(|job| (job.reply, Err(sync_failed()))).collect()
        } else {
            commit_group(conn, group)
        };
        if let Err(unsent) = to_sync.send(answers) {
            // The syncer is gone (it panicked): nothing can be confirmed durable.
            for (reply, _) in unsent.into_inner() {
                let _ = reply.send(Err(sync_failed()));
            }
        }
    }
}

/// The syncer: waits for committed groups, makes everything committed so far durable with one
/// `fdatasync` of the WAL, then answers the groups' callers.
fn sync(wal: &File, synced: &Receiver<Answers>, failed: &AtomicBool) {
    while let Ok(first) = synced.recv() {
        let mut answers = first;
        while let Ok(more) = synced.try_recv() {
            answers.extend(more);
        }
        let any_committed = answers.iter().any(|(_, result)| result.is_ok());
        if any_committed && !failed.load(Ordering::Acquire) && wal.sync_data().is_err() {
            failed.store(true, Ordering::Release);
        }
        let broken = failed.load(Ordering::Acquire);
        for (reply, result) in answers {
            let result = match result {
                Ok(()) if broken => Err(sync_failed()),
                other => other,
            };
            // A caller that gave up waiting is no reason to stop.
            let _ = reply.send(result);
        }
    }
}

fn sync_failed() -> Error {
    Error::Storage("the store could not make a write durable (fsync failed); it accepts no more writes".into())
}

/// Runs `group` in one transaction and returns each caller's answer (not yet durable).
fn commit_group(conn: &Connection, group: Vec<Job>) -> Answers {
    let (works, replies): (Vec<Work>, Vec<Sender<Result<()>>>) = group.into_iter().map(|j| (j.work, j.reply)).unzip();
    let results = match exec(conn, "BEGIN IMMEDIATE") {
        Ok(()) => run_in_transaction(conn, works),
        Err(error) => works.iter().map(|_| Err(clone_storage(&error))).collect(),
    };
    replies.into_iter().zip(results).collect()
}

fn run_in_transaction(conn: &Connection, works: Vec<Work>) -> Vec<Result<()>> {
    let mut results = Vec::with_capacity(works.len());
    let mut broken = None;
    let mut text = Vec::new();
    for work in works {
        if broken.is_some() {
            results.push(Err(Error::Storage("the group's transaction failed".into())));
            continue;
        }
        match run_one(conn, work, &mut text) {
            Ok(result) => results.push(result),
            Err(e) => {
                results.push(Err(clone_storage(&e)));
                broken = Some(e);
            }
        }
    }
    let committed = match broken {
        None => crate::index_rows::apply_text(conn, &text).and_then(|()| exec(conn, "COMMIT")),
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
/// longer usable; the inner result is the work's own. The full-text changes of a successful
/// work are added to `text`.
fn run_one(conn: &Connection, work: Work, text: &mut Vec<crate::index_rows::TextChange>) -> Result<Result<()>> {
    exec(conn, "SAVEPOINT work")?;
    let mut tx = WriterTx { conn, text: Vec::new() };
    let result = catch_unwind(AssertUnwindSafe(|| work(&mut tx)))
        .unwrap_or_else(|_| Err(Error::Storage("a unit of work panicked".into())));
    if conn.is_autocommit() {
        // SQLite rolled the whole transaction back (e.g. disk full): nothing can be saved.
        return Err(Error::Storage("the transaction was rolled back by the database".into()));
    }
    if result.is_err() {
        exec(conn, "ROLLBACK TO work")?;
    } else {
        text.append(&mut tx.text);
    }
    exec(conn, "RELEASE work")?;
    Ok(result)
}

/// Runs one of the writer's fixed transaction-control statements (cached, never re-parsed).
fn exec(conn: &Connection, sql: &'static str) -> Result<()> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(drop).map_err(storage(sql))
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
    /// Full-text changes, applied at the end of the group if this work succeeds.
    text: Vec<crate::index_rows::TextChange>,
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
        let (sequence, rid) = queries::put(self.conn, version)?;
        self.text.push(crate::index_rows::TextChange {
            rid,
            existed: version.version > 1,
            text: version.full_text.cloned(),
        });
        Ok(sequence)
    }

    fn search_ids(&mut self, query: &search::query::SearchQuery, limit: usize) -> Result<Vec<String>> {
        crate::search_sql::search_ids(self.conn, query, limit)
    }

    fn outbound_partners(&mut self, event: &str) -> Result<Vec<String>> {
        crate::outbox::partners_for(self.conn, event)
    }

    fn enqueue_outbound(&mut self, message: &store::outbox::NewOutbound<'_>) -> Result<()> {
        crate::outbox::enqueue(self.conn, message)
    }

    fn enqueue_notification(&mut self, notification: &store::notify::NewNotification<'_>) -> Result<i64> {
        crate::notify::enqueue(self.conn, notification)
    }

    fn append_audit(
        &mut self,
        entries: &[store::audit::NewAuditEntry],
        key: Option<&store::audit::AuditKey>,
    ) -> Result<()> {
        crate::audit::append(self.conn, entries, key)
    }
}
