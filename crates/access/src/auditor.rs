//! The batching auditor: appends the audit entries of reads, searches, operations and refusals
//! (what has no write to ride with; writes are audited by the store inside their own
//! transaction, [`store::Records::as_actor`]) in batches — group commit: one unit of work per
//! batch, so that auditing a read costs a share of a commit rather than a commit of its own —
//! and tells each waiter when its entries are durable. An edge serves what it read only once
//! that is so ([`crate::Access::settle`]); when an append fails, every waiter of that batch
//! is told [`AuditUnavailable`] and must answer 503 instead of what it would have shown.
//! Nothing is served unaudited.

use std::sync::Arc;
use store::audit::NewAuditEntry;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most requests waiting for a batch before more wait to queue.
const QUEUE: usize = 16_384;
/// Most entries in one batch.
const BATCH: usize = 2_048;
/// Batches being appended at once (each its own unit of work; the store's writer groups
/// them into commits).
const IN_FLIGHT: usize = 4;

/// Why entries were not appended: the request they describe must not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", store::audit::UNAVAILABLE)]
pub struct AuditUnavailable;

/// One request's entries and where the batch's outcome goes.
struct Pending {
    entries: Vec<NewAuditEntry>,
    done: oneshot::Sender<Result<(), AuditUnavailable>>,
}

/// Appends audit entries in batches and tells each request when its entries are durable.
pub struct Auditor {
    queue: mpsc::Sender<Pending>,
    log: Arc<dyn store::AuditLog>,
}

impl Auditor {
    /// Starts the task appending to `records`' audit trail (keyed with `records`' audit key,
    /// if any); it ends, after appending what is queued, when the last handle to the auditor
    /// is dropped. `log` is the same trail, read for `GET /fhir/AuditEvent`.
    pub fn start(
        records: store::Records,
        log: Arc<dyn store::AuditLog>,
    ) -> (Arc<Auditor>, tokio::task::JoinHandle<()>) {
        let (queue, mut pending) = mpsc::channel::<Pending>(QUEUE);
        let task = tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(IN_FLIGHT));
            while let Some(first) = pending.recv().await {
                // A slot first, then the batch: what queued while every slot was busy joins it.
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
                let mut count = first.entries.len();
                let mut batch = vec![first];
                while count < BATCH {
                    match pending.try_recv() {
                        Ok(more) => {
                            count += more.entries.len();
                            batch.push(more);
                        }
                        Err(_) => break,
                    }
                }
                let records = records.clone();
                tokio::spawn(async move {
                    let entries: Vec<NewAuditEntry> =
                        batch.iter_mut().flat_map(|p| std::mem::take(&mut p.entries)).collect();
                    let outcome = match tokio::task::spawn_blocking(move || records.append_audit(entries)).await {
                        Ok(Ok(())) => Ok(()),
                        // No entry content in the log: it names patients.
                        Ok(Err(error)) => {
                            tracing::error!(%error, count, "audit entries could not be appended; their requests get 503");
                            Err(AuditUnavailable)
                        }
                        Err(_) => {
                            tracing::error!(count, "the audit append panicked; its requests get 503");
                            Err(AuditUnavailable)
                        }
                    };
                    for request in batch {
                        let _ = request.done.send(outcome);
                    }
                    drop(slot);
                });
            }
            // Every batch in flight is answered before the task ends.
            let _ = slots.acquire_many(IN_FLIGHT as u32).await;
        });
        (Arc::new(Auditor { queue, log }), task)
    }

    /// The trail itself, for reading (`GET /fhir/AuditEvent`).
    pub fn log(&self) -> &Arc<dyn store::AuditLog> {
        &self.log
    }

    /// Queues entries for the next batch without waiting (what a handle dropped unsettled
    /// still owes the trail); `false` when the queue is full or the auditor stopped.
    pub(crate) fn queue_without_waiting(&self, entries: Vec<NewAuditEntry>) -> bool {
        let (done, _) = oneshot::channel();
        self.queue.try_send(Pending { entries, done }).is_ok()
    }

    /// Appends entries to the trail in the next batch and waits until that batch is durable.
    /// `Err`: they could not be appended, and what they describe must not be served.
    pub async fn record(&self, entries: Vec<NewAuditEntry>) -> Result<(), AuditUnavailable> {
        if entries.is_empty() {
            return Ok(());
        }
        let (done, outcome) = oneshot::channel();
        if self.queue.send(Pending { entries, done }).await.is_err() {
            tracing::error!("the auditor has stopped; a request is refused rather than served unaudited");
            return Err(AuditUnavailable);
        }
        outcome.await.unwrap_or(Err(AuditUnavailable))
    }
}
