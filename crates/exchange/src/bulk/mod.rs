//! FHIR Bulk Data 2.0: `$export` at system, Patient and Group level, and `$import`, as
//! asynchronous jobs.
//!
//! A kick-off checks the request, keeps the job's state in the store ([`store::JobStore`])
//! and starts it on a thread of its own; the edge answers `202 Accepted` with the status URL.
//! The status answers "in progress" (with a progress text), the manifest, or the error; a
//! cancel stops the job and deletes its files. Files are NDJSON in the job's folder (one
//! folder per job under the configured directory), served only to whoever started the job,
//! and deleted with the job's state after the configured time. Every resource goes through
//! the door: the caller's policy (reach, scopes, consent) decides what is exported, and an
//! import writes as the caller.
//!
//! A running job saves its state at least every [`HEARTBEAT`]; one left in progress whose state
//! has not been saved for [`STALE_AFTER`] was interrupted (its server stopped). Servers look
//! for such jobs when they open the jobs and every [`MAINTENANCE_EVERY`] after (servers
//! sharing a database each look). It is run again from its start for owners the server can
//! act for again (the command line's jobs, an open server's); a person's or an app's job is
//! marked failed instead, saying why, since their authorization cannot be restored without
//! their token. Expired jobs are deleted on the same rounds.

pub mod export;
pub mod import;
mod state;

use crate::{Error, Result};
use access::{Access, Door, Who};
use fhir::Issue;
use serde_json::{Value, json};
use state::{JobState, KIND, Operation, OutputFile, Phase, owner_of};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{JobStore, StoredJob};
use time::OffsetDateTime;

pub use export::{ExportRequest, Level};
pub use import::{ImportInput, ImportPlan};

/// How the bulk jobs run.
#[derive(Debug, Clone)]
pub struct BulkConfig {
    /// The folder holding one folder per job (e.g. `bulk` in the data directory).
    pub dir: PathBuf,
    /// The folder `$import` reads the files a `Parameters` names from.
    pub import_dir: PathBuf,
    /// How long a finished job's files and status are kept.
    pub keep_for: Duration,
    /// Lines per export file before the next file of the type begins.
    pub lines_per_file: usize,
}

impl BulkConfig {
    /// The defaults under `data`: `bulk/` and `import/`, files kept for a day, 100,000 lines a
    /// file.
    pub fn in_data_dir(data: &Path) -> BulkConfig {
        BulkConfig {
            dir: data.join("bulk"),
            import_dir: data.join("import"),
            keep_for: Duration::from_secs(24 * 3600),
            lines_per_file: 100_000,
        }
    }
}

/// Counters of the bulk jobs, for the metrics.
#[derive(Debug, Default)]
pub struct BulkMetrics {
    /// Jobs running now.
    pub running: AtomicU64,
    /// Resources written into export files since start.
    pub exported: AtomicU64,
    /// Resources imported since start.
    pub imported: AtomicU64,
}

/// Where a job stands, for its status request.
#[derive(Debug, Clone)]
pub enum JobStatus {
    /// Still running: the progress text (`X-Progress`).
    InProgress(String),
    /// Done: the manifest.
    Complete(Value),
    /// Failed: why.
    Failed(Vec<Issue>),
}

/// The bulk jobs of one server.
#[derive(Clone)]
pub struct Bulk {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) door: Door,
    jobs: Arc<dyn JobStore>,
    pub(crate) config: BulkConfig,
    cancels: Mutex<HashMap<String, Arc<AtomicBool>>>,
    pub(crate) metrics: BulkMetrics,
}

impl Inner {
    pub(crate) fn job_dir(&self, id: &str) -> PathBuf {
        self.config.dir.join(id)
    }

    pub(crate) fn cancel_flag(&self, id: &str) -> Arc<AtomicBool> {
        self.cancels.lock().unwrap_or_else(|p| p.into_inner()).entry(id.to_string()).or_default().clone()
    }

    /// Saves a job's state, unless it was cancelled (under the lock [`Bulk::cancel`] takes,
    /// so that a cancelled job's state is not written back after its removal).
    pub(crate) fn save(&self, id: &str, state: &JobState) -> Result<()> {
        let text = serde_json::to_string(state).map_err(|_| Error::invalid("a job state could not be written"))?;
        let cancels = self.cancels.lock().unwrap_or_else(|p| p.into_inner());
        if cancels.get(id).is_some_and(|flag| flag.load(Ordering::Relaxed)) {
            return Ok(());
        }
        self.jobs.save_job(&StoredJob {
            id: id.to_string(),
            kind: KIND.into(),
            state: text,
            updated_at: OffsetDateTime::now_utc(),
        })?;
        Ok(())
    }

    /// Saves the state when the last save is [`HEARTBEAT`] old, so that the job is not taken
    /// for interrupted.
    pub(crate) fn heartbeat(&self, id: &str, state: &JobState, last: &mut std::time::Instant) -> Result<()> {
        if last.elapsed() >= HEARTBEAT {
            self.save(id, state)?;
            *last = std::time::Instant::now();
        }
        Ok(())
    }

    fn load(&self, id: &str) -> Result<Option<JobState>> {
        let Some(stored) = self.jobs.job(id)? else { return Ok(None) };
        if stored.kind != KIND {
            return Ok(None);
        }
        Ok(serde_json::from_str(&stored.state).ok())
    }
}

/// A running job saves its state at least this often.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A job in progress whose state was not saved for this long was interrupted.
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// How often a server deletes expired jobs and looks for interrupted ones.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(30);

impl Bulk {
    /// Opens the bulk jobs kept in `jobs`: creates the folders, deletes what expired, settles
    /// the jobs a stopped server left in progress, and keeps doing so on a thread of its own
    /// while the returned handle (or a clone) lives (see the module's text).
    pub fn open(door: Door, jobs: Arc<dyn JobStore>, config: BulkConfig) -> Result<Bulk> {
        let bulk = Bulk::open_quietly(door, jobs, config)?;
        bulk.maintain()?;
        let weak = Arc::downgrade(&bulk.inner);
        let spawned = std::thread::Builder::new().name("bulk-maintenance".into()).spawn(move || {
            loop {
                std::thread::sleep(MAINTENANCE_EVERY);
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = (Bulk { inner }).maintain() {
                    tracing::warn!(class = ?e.class(), "bulk job maintenance failed");
                }
            }
        });
        if spawned.is_err() {
            tracing::error!("the bulk job maintenance thread could not be started");
        }
        Ok(bulk)
    }

    /// Opens the jobs without looking after the others' (for a command that runs one job and
    /// exits while servers may be running theirs).
    pub fn open_quietly(door: Door, jobs: Arc<dyn JobStore>, config: BulkConfig) -> Result<Bulk> {
        std::fs::create_dir_all(&config.dir).map_err(Error::Files)?;
        std::fs::create_dir_all(&config.import_dir).map_err(Error::Files)?;
        Ok(Bulk {
            inner: Arc::new(Inner {
                door,
                jobs,
                config,
                cancels: Mutex::new(HashMap::new()),
                metrics: BulkMetrics::default(),
            }),
        })
    }

    /// Deletes expired jobs and settles interrupted ones (see the module's text).
    pub fn maintain(&self) -> Result<()> {
        self.maintain_silent_for(STALE_AFTER)
    }

    /// [`Bulk::maintain`], taking jobs silent for `stale` as interrupted (tests).
    pub fn maintain_silent_for(&self, stale: Duration) -> Result<()> {
        self.sweep()?;
        let now = OffsetDateTime::now_utc();
        for stored in self.inner.jobs.jobs(KIND)? {
            let Ok(mut state) = serde_json::from_str::<JobState>(&stored.state) else { continue };
            let silent = (now - stored.updated_at).unsigned_abs() >= stale;
            if state.phase != Phase::InProgress || !silent || self.runs(&stored.id) {
                continue;
            }
            let _ = std::fs::remove_dir_all(self.inner.job_dir(&stored.id));
            match resumable(&self.inner.door, &state.owner) {
                Some(who) => {
                    tracing::info!("an interrupted bulk job is run again");
                    state.output.clear();
                    state.error.clear();
                    state.progress = "restarted".into();
                    self.inner.save(&stored.id, &state)?;
                    let access = self.inner.door.enter(who);
                    self.spawn(access, stored.id.clone(), state);
                }
                None => {
                    let interrupted =
                        Error::invalid("the job was interrupted by a restart of the server; start it again");
                    self.finish(&stored.id, &mut state, Err(interrupted))?;
                }
            }
        }
        Ok(())
    }

    /// Whether this server runs job `id` now.
    fn runs(&self, id: &str) -> bool {
        self.inner.cancels.lock().unwrap_or_else(|p| p.into_inner()).contains_key(id)
    }

    /// The counters of the jobs.
    pub fn metrics(&self) -> &BulkMetrics {
        &self.inner.metrics
    }

    /// The configuration.
    pub fn config(&self) -> &BulkConfig {
        &self.inner.config
    }

    /// Starts an export for `access` and returns the job's id. The request's types, group
    /// and filters are checked first (4xx, nothing started); the snapshot's cut is taken now.
    pub fn kick_off_export(&self, access: &Access, request: ExportRequest, request_url: &str) -> Result<String> {
        export::types_to_export(&self.inner, access, &request)?;
        if let export::Level::Group(group) = &request.level {
            export::group_members(access, group)?;
        }
        let backend = self.inner.door.records().backend();
        let cut = backend.latest_sequence()?;
        // The instant of the cut: the last committed version's `lastUpdated`. Versions are
        // stamped inside their transaction, in commit order, so every version up to the cut
        // was modified at or before it and every later one after it.
        let last = backend.history(&store::HistoryQuery {
            before_sequence: Some(cut.saturating_add(1)),
            count: 1,
            ..Default::default()
        })?;
        let transaction_time = last.first().map_or_else(OffsetDateTime::now_utc, |v| v.last_updated);
        let state = JobState {
            operation: Operation::Export(request),
            owner: owner_of(access),
            request: request_url.to_string(),
            phase: Phase::InProgress,
            transaction_time: store::format_instant(transaction_time),
            cut,
            progress: "queued".into(),
            output: Vec::new(),
            error: Vec::new(),
            failure: None,
            expires_at: None,
        };
        let id = uuid::Uuid::new_v4().to_string();
        self.inner.save(&id, &state)?;
        self.spawn(access.clone(), id.clone(), state);
        Ok(id)
    }

    /// Starts an import of an NDJSON body (checked line by line first: see [`import`]) and
    /// returns the job's id. `declared`: the type every line must be.
    pub fn kick_off_import_body(
        &self,
        access: &Access,
        body: &[u8],
        declared: Option<&str>,
        request_url: &str,
    ) -> Result<String> {
        import::check_ndjson(body, declared)?;
        let id = uuid::Uuid::new_v4().to_string();
        let dir = self.inner.job_dir(&id);
        std::fs::create_dir_all(&dir).map_err(Error::Files)?;
        let path = dir.join(import::BODY_INPUT);
        std::fs::write(&path, body).map_err(Error::Files)?;
        let plan = ImportPlan {
            inputs: vec![ImportInput { resource_type: declared.map(str::to_string), path, name: "body".into() }],
        };
        self.start_import(access, id, plan, request_url)
    }

    /// Starts an import of the files a `Parameters` resource names in the import folder.
    pub fn kick_off_import_files(&self, access: &Access, parameters: &Value, request_url: &str) -> Result<String> {
        let plan = import::plan_from_parameters(parameters, &self.inner.config.import_dir)?;
        self.start_import(access, uuid::Uuid::new_v4().to_string(), plan, request_url)
    }

    fn start_import(&self, access: &Access, id: String, plan: ImportPlan, request_url: &str) -> Result<String> {
        let state = JobState {
            operation: Operation::Import(plan),
            owner: owner_of(access),
            request: request_url.to_string(),
            phase: Phase::InProgress,
            transaction_time: store::format_instant(OffsetDateTime::now_utc()),
            cut: 0,
            progress: "queued".into(),
            output: Vec::new(),
            error: Vec::new(),
            failure: None,
            expires_at: None,
        };
        self.inner.save(&id, &state)?;
        self.spawn(access.clone(), id.clone(), state);
        Ok(id)
    }

    fn spawn(&self, access: Access, id: String, mut state: JobState) {
        let bulk = self.clone();
        let name = match state.operation {
            Operation::Export(_) => "bulk-export",
            Operation::Import(_) => "bulk-import",
        };
        bulk.inner.cancel_flag(&id);
        let spawned = std::thread::Builder::new().name(name.into()).spawn(move || {
            let inner = &bulk.inner;
            inner.metrics.running.fetch_add(1, Ordering::Relaxed);
            let operation = state.operation.clone();
            let outcome = match &operation {
                Operation::Export(request) => export::run(inner, &access, &id, &mut state, request),
                Operation::Import(plan) => import::run(inner, &access, &id, &mut state, plan),
            };
            inner.metrics.running.fetch_sub(1, Ordering::Relaxed);
            if !access.settle_queued() {
                tracing::error!("the audit entries of a bulk job could not be queued");
            }
            if let Err(e) = bulk.finish(&id, &mut state, outcome) {
                tracing::error!(error = %e, "a bulk job's end could not be recorded");
            }
            let cancelled = inner.cancels.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            if cancelled.is_some_and(|flag| flag.load(Ordering::Relaxed)) {
                // Files written after the cancel removed the folder.
                let _ = std::fs::remove_dir_all(inner.job_dir(&id));
            }
        });
        if spawned.is_err() {
            tracing::error!("a bulk job's thread could not be started");
        }
    }

    fn finish(&self, id: &str, state: &mut JobState, outcome: Result<()>) -> Result<()> {
        match outcome {
            Ok(()) => {
                state.phase = Phase::Complete;
                state.progress = "complete".into();
            }
            Err(error) => {
                tracing::warn!(class = ?error.class(), "a bulk job failed");
                state.phase = Phase::Failed;
                state.failure = Some(error.to_string());
                let _ = std::fs::remove_dir_all(self.inner.job_dir(id));
                state.output.clear();
            }
        }
        let keep = i64::try_from(self.inner.config.keep_for.as_secs()).unwrap_or(i64::MAX);
        state.expires_at = Some(OffsetDateTime::now_utc().unix_timestamp().saturating_add(keep));
        self.inner.save(id, state)
    }

    /// The job `id` of the caller (another's is, for them, no job at all).
    fn owned(&self, access: &Access, id: &str) -> Result<JobState> {
        let state = self.inner.load(id)?.ok_or(Error::NoSuchJob)?;
        if state.owner != owner_of(access) {
            return Err(Error::NoSuchJob);
        }
        Ok(state)
    }

    /// Where the job stands; a complete job's manifest names its files under
    /// `files_base` (`{files_base}/{job}/{file}`).
    pub fn status(&self, access: &Access, id: &str, files_base: &str) -> Result<JobStatus> {
        let state = self.owned(access, id)?;
        Ok(match state.phase {
            Phase::InProgress => JobStatus::InProgress(state.progress),
            Phase::Failed => JobStatus::Failed(vec![Issue::error(
                fhir::IssueCode::Exception,
                state.failure.unwrap_or_else(|| "the job failed".into()),
            )]),
            Phase::Complete => JobStatus::Complete(manifest(&state, id, files_base)),
        })
    }

    /// Cancels the job: stops it if running, deletes its files and state.
    pub fn cancel(&self, access: &Access, id: &str) -> Result<()> {
        let state = self.owned(access, id)?;
        let mut cancels = self.inner.cancels.lock().unwrap_or_else(|p| p.into_inner());
        cancels.entry(id.to_string()).or_default().store(true, Ordering::Relaxed);
        self.inner.jobs.remove_job(id)?;
        if state.phase != Phase::InProgress {
            // No thread of it runs to take the flag away.
            cancels.remove(id);
        }
        drop(cancels);
        let _ = std::fs::remove_dir_all(self.inner.job_dir(id));
        Ok(())
    }

    /// The path of one of the job's files, for the caller who started it.
    pub fn file(&self, access: &Access, id: &str, name: &str) -> Result<PathBuf> {
        let state = self.owned(access, id)?;
        let listed = state.output.iter().chain(&state.error).any(|f| !f.file.is_empty() && f.file == name);
        if state.phase != Phase::Complete || !listed {
            return Err(Error::NoSuchJob);
        }
        let path = self.inner.job_dir(id).join(name);
        if !path.is_file() {
            return Err(Error::Expired);
        }
        Ok(path)
    }

    /// Deletes the files and states of jobs past their time; returns how many.
    pub fn sweep(&self) -> Result<usize> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut removed = 0;
        for stored in self.inner.jobs.jobs(KIND)? {
            let expired = serde_json::from_str::<JobState>(&stored.state)
                .map(|s| s.expires_at.is_some_and(|at| at <= now))
                .unwrap_or(true);
            if expired {
                let _ = std::fs::remove_dir_all(self.inner.job_dir(&stored.id));
                self.inner.jobs.remove_job(&stored.id)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Waits until job `id` is no longer in progress (for the CLI and tests), at most
    /// `timeout`; `false` when it still runs.
    pub fn wait(&self, id: &str, timeout: Duration) -> Result<bool> {
        let until = std::time::Instant::now() + timeout;
        loop {
            match self.inner.load(id)? {
                Some(state) if state.phase == Phase::InProgress => {}
                _ => return Ok(true),
            }
            if std::time::Instant::now() >= until {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The folder of a job's files (for the CLI, which copies them out).
    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.inner.job_dir(id)
    }
}

/// The owners whose job the server may run again after a restart.
fn resumable(door: &Door, owner: &str) -> Option<Who> {
    match owner {
        "anyone" if door.policy().is_none() => Some(Who::Anyone),
        "job:continuum-cli" => Some(Who::Job(CLI_JOB)),
        _ => None,
    }
}

/// The name the command line's exports act under.
pub const CLI_JOB: &str = "continuum-cli";

fn manifest(state: &JobState, id: &str, files_base: &str) -> Value {
    let url = |f: &OutputFile| format!("{files_base}/{id}/{}", f.file);
    match &state.operation {
        Operation::Export(_) => json!({
            "transactionTime": state.transaction_time,
            "request": state.request,
            "requiresAccessToken": true,
            "output": state.output.iter().map(|f| json!({"type": f.resource_type, "url": url(f), "count": f.count})).collect::<Vec<_>>(),
            "error": state.error.iter().map(|f| json!({"type": f.resource_type, "url": url(f), "count": f.count})).collect::<Vec<_>>(),
        }),
        Operation::Import(_) => json!({
            "transactionTime": state.transaction_time,
            "request": state.request,
            "requiresAccessToken": true,
            "output": import::output_json(&state.output),
            "error": state.error.iter().map(|f| json!({"type": f.resource_type, "url": url(f), "count": f.count})).collect::<Vec<_>>(),
        }),
    }
}
