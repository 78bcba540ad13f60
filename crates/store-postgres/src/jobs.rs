//! The job states ([`store::JobStore`]) in the `job` table. Each call is one statement on a
//! pooled connection, committed (durably) before it returns.

use crate::{PostgresBackend, storage};
use postgres::Row;
use store::Result;
use store::jobs::{JobStore, StoredJob};

/// The job states of a PostgreSQL store.
pub struct PostgresJobStore {
    pool: r2d2::Pool<crate::conn::Manager>,
}

impl PostgresBackend {
    /// The job states kept in this store's database.
    pub fn job_store(&self) -> PostgresJobStore {
        PostgresJobStore { pool: self.pool.clone() }
    }
}

fn job_row(row: &Row) -> std::result::Result<StoredJob, postgres::Error> {
    Ok(StoredJob {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        state: row.try_get(2)?,
        updated_at: search::from_micros(row.try_get(3)?).unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
    })
}

impl JobStore for PostgresJobStore {
    fn save_job(&self, job: &StoredJob) -> Result<()> {
        let mut conn = crate::pooled(&self.pool)?;
        conn.execute(
            "INSERT INTO job (id, kind, state, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, state = excluded.state,
             updated_at = excluded.updated_at",
            &[&job.id, &job.kind, &job.state, &search::micros(job.updated_at)],
        )
        .map_err(storage("save job"))?;
        Ok(())
    }

    fn job(&self, id: &str) -> Result<Option<StoredJob>> {
        let mut conn = crate::pooled(&self.pool)?;
        let row = conn
            .query_opt("SELECT id, kind, state, updated_at FROM job WHERE id = $1", &[&id])
            .map_err(storage("read job"))?;
        row.as_ref().map(job_row).transpose().map_err(storage("read job"))
    }

    fn jobs(&self, kind: &str) -> Result<Vec<StoredJob>> {
        let mut conn = crate::pooled(&self.pool)?;
        let rows = conn
            .query("SELECT id, kind, state, updated_at FROM job WHERE kind = $1 ORDER BY updated_at, id", &[&kind])
            .map_err(storage("list jobs"))?;
        rows.iter().map(job_row).collect::<std::result::Result<_, _>>().map_err(storage("list jobs"))
    }

    fn remove_job(&self, id: &str) -> Result<bool> {
        let mut conn = crate::pooled(&self.pool)?;
        let removed = conn.execute("DELETE FROM job WHERE id = $1", &[&id]).map_err(storage("remove job"))?;
        Ok(removed > 0)
    }
}
