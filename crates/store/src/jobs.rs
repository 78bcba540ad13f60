//! The state of long-running jobs (Bulk Data exports and imports), kept in the store so that a
//! job's status, manifest and files outlive a restart of the server that ran it, and so that
//! servers sharing a database see each other's jobs. The state itself is opaque JSON text,
//! written by the service that runs the job.

use crate::Result;
use time::OffsetDateTime;

/// One job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJob {
    /// The job's id (a UUID, used in its status URL).
    pub id: String,
    /// What kind of job (`bulk-export`, `bulk-import`).
    pub kind: String,
    /// Its state, as JSON text.
    pub state: String,
    /// When the state was last saved.
    pub updated_at: OffsetDateTime,
}

/// Where job states are kept. Each call is its own durable write or read.
pub trait JobStore: Send + Sync + 'static {
    /// Inserts or replaces `job` (by id), durably.
    fn save_job(&self, job: &StoredJob) -> Result<()>;
    /// The job with this id.
    fn job(&self, id: &str) -> Result<Option<StoredJob>>;
    /// The jobs of a kind, oldest update first.
    fn jobs(&self, kind: &str) -> Result<Vec<StoredJob>>;
    /// Removes a job; `false` when there was none.
    fn remove_job(&self, id: &str) -> Result<bool>;
}
