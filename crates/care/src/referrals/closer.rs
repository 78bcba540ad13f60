//! Closing the loop: the follower that closes a referral when its report arrives, whatever
//! the door it came through.

use super::dashboard::{based_on, fulfil_code, related};
use super::{FOLLOW_UP_SYSTEM, JOB, State, is_referral, put_entry, step_coding, version_of};
use crate::tasks::{self, Status};
use crate::{Error, Result};
use access::{Access, Door, Who};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use store::{HistoryQuery, JobStore, ResourceVersion, StoredJob};
use time::OffsetDateTime;

/// Closes referral `service_request` because `report` (`Type/id`) came back, as the caller
/// of `access` (the follower's job): the Task walks its lifecycle to `completed` (business
/// status `report-returned`), the ServiceRequest becomes `completed`, and open follow-up
/// Tasks are cancelled — the last writes in one transaction, each with `If-Match`. Returns
/// whether anything was written (a referral already closed, or not a referral: nothing).
pub fn close(access: &Access, service_request: &str, report: &str) -> Result<bool> {
    let stored = match access.read("ServiceRequest", service_request) {
        Ok(stored) => stored,
        Err(e) if matches!(e.class(), fhir::ErrorClass::NotFound | fhir::ErrorClass::Gone) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let Some(mut sr) = stored.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else {
        return Ok(false);
    };
    if !is_referral(&sr) {
        return Ok(false);
    }
    let patient = policy::patients_of("ServiceRequest", &sr).into_iter().next();
    let mut entries = Vec::new();
    let sr_status = sr.get("status").and_then(Value::as_str).unwrap_or("");
    if matches!(sr_status, "draft" | "active" | "on-hold") {
        let version = version_of(&sr);
        sr.as_object_mut().map(|o| o.remove("meta"));
        sr["status"] = json!("completed");
        entries.push(put_entry("ServiceRequest", service_request, sr, version));
    }
    let focus = ("focus", format!("ServiceRequest/{service_request}"));
    if let Some(task) = tasks::search(access, "Task", &[focus.clone(), ("code", fulfil_code())], 1)?.into_iter().next()
    {
        let id = task.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut task = task;
        // Walk the lifecycle up to in-progress, a version per step (each with If-Match).
        let path = [tasks::Action::Accept, tasks::Action::Start];
        for action in &path {
            let status = Status::of(&task);
            let due = match action {
                tasks::Action::Accept => matches!(status, Some(Status::Requested | Status::Received)),
                _ => matches!(status, Some(Status::Accepted | Status::Ready | Status::OnHold)),
            };
            if due {
                let next = tasks::apply(&task, action)?;
                let written = access.update("Task", &id, next, Some(version_of(&task)))?;
                task = written
                    .version
                    .and_then(|v| v.body.as_deref().and_then(|b| serde_json::from_str(b).ok()))
                    .ok_or(Error::NotFound)?;
            }
        }
        if Status::of(&task) == Some(Status::InProgress) {
            let mut done = tasks::apply(&task, &tasks::Action::Complete(Some(format!("Report returned: {report}"))))?;
            done["businessStatus"] = step_coding(State::Closed);
            entries.push(put_entry("Task", &id, done, version_of(&task)));
        }
    }
    let follow_ups = tasks::search(
        access,
        "Task",
        &[("identifier", format!("{FOLLOW_UP_SYSTEM}|{service_request}")), ("status", Status::open_codes())],
        10,
    )?;
    for follow_up in follow_ups {
        let id = follow_up.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let cancel = tasks::Action::Cancel("the referral's report came back".into());
        if let Ok(next) = tasks::apply(&follow_up, &cancel) {
            entries.push(put_entry("Task", &id, next, version_of(&follow_up)));
        }
    }
    if entries.is_empty() {
        return Ok(false);
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    access.transaction_for(bundle, patient.as_deref())?;
    Ok(true)
}

/// Whether a report is one that closes a referral: a DiagnosticReport released (`final`,
/// `amended`, `corrected`, `appended`), a DocumentReference in force (`current`) that is not
/// a draft (`docStatus` `preliminary`).
pub fn is_returned(resource_type: &str, report: &Value) -> bool {
    let status = report.get("status").and_then(Value::as_str).unwrap_or("");
    match resource_type {
        "DiagnosticReport" => matches!(status, "final" | "amended" | "corrected" | "appended"),
        "DocumentReference" => {
            status == "current" && report.get("docStatus").and_then(Value::as_str) != Some("preliminary")
        }
        _ => false,
    }
}

/// The referrals a returned report names (see [`is_returned`]): a DiagnosticReport's
/// `basedOn`, a DocumentReference's `context.related` (ServiceRequests only).
pub fn referrals_named(resource_type: &str, report: &Value) -> Vec<String> {
    if !is_returned(resource_type, report) {
        return Vec::new();
    }
    match resource_type {
        "DiagnosticReport" => based_on(report, "basedOn"),
        _ => related(report),
    }
}

const CHECKPOINT_ID: &str = "referral-closer-checkpoint";
const CHECKPOINT_KIND: &str = "referral-closer";
/// The report types the closer follows.
const REPORT_TYPES: [&str; 2] = ["DocumentReference", "DiagnosticReport"];
/// Versions read per type and pass.
const STEP: usize = 500;
/// How often the closer looks for writes it was not told of (another server's).
const POLL: Duration = Duration::from_secs(5);

/// What one pass of the closer did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Report versions read.
    pub read: usize,
    /// Referrals closed.
    pub closed: usize,
    /// More is waiting: run again at once.
    pub more: bool,
}

/// The versions one type's checkpoint is behind by (one step of them).
struct Behind {
    versions: Vec<ResourceVersion>,
    end: i64,
    more: bool,
}

/// The follower that closes referrals when their report arrives, whatever the door.
#[derive(Clone)]
pub struct ReferralCloser {
    inner: Arc<CloserInner>,
}

struct CloserInner {
    door: Door,
    jobs: Arc<dyn JobStore>,
    stop: AtomicBool,
}

impl ReferralCloser {
    /// The closer of the records behind `door`, its checkpoint in `jobs`.
    pub fn new(door: Door, jobs: Arc<dyn JobStore>) -> ReferralCloser {
        ReferralCloser { inner: Arc::new(CloserInner { door, jobs, stop: AtomicBool::new(false) }) }
    }

    /// Runs on a thread of its own until [`ReferralCloser::stop`]: a pass at once, then one
    /// after every commit that wrote a report, and every few seconds.
    pub fn start(&self) -> std::io::Result<()> {
        let feed = self.inner.door.records().changes().subscribe(1024);
        let closer = self.clone();
        std::thread::Builder::new().name("referral-closer".into()).spawn(move || {
            while !closer.inner.stop.load(Ordering::Relaxed) {
                match closer.run_pass() {
                    Ok(pass) if pass.more => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(class = ?e.class(), "the referral closer could not run a pass"),
                }
                let deadline = std::time::Instant::now() + POLL;
                loop {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match feed.recv_timeout(left) {
                        Ok(changes) if changes.iter().any(|c| REPORT_TYPES.contains(&c.resource_type.as_str())) => {
                            break;
                        }
                        Ok(_) => continue,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                            std::thread::sleep(left);
                            break;
                        }
                    }
                }
            }
        })?;
        Ok(())
    }

    /// Stops the thread after its current pass.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
    }

    /// The checkpoint of each type (`None`: the closer never ran on this store).
    fn checkpoints(&self) -> Result<Option<HashMap<String, i64>>> {
        Ok(self
            .inner
            .jobs
            .job(CHECKPOINT_ID)?
            .map(|j| serde_json::from_str::<HashMap<String, i64>>(&j.state).unwrap_or_default()))
    }

    fn save_checkpoints(&self, checkpoints: &HashMap<String, i64>) -> Result<()> {
        self.inner.jobs.save_job(&StoredJob {
            id: CHECKPOINT_ID.into(),
            kind: CHECKPOINT_KIND.into(),
            state: json!(checkpoints).to_string(),
            updated_at: OffsetDateTime::now_utc(),
        })?;
        Ok(())
    }

    /// The versions of `resource_type` written after `after` (`latest`: the store's latest
    /// sequence, read before), oldest first, and the sequence the type's checkpoint moves to
    /// once they are processed. Close behind, the type's history is paged back to the
    /// checkpoint; far behind (reports written while no closer ran, a large import), the
    /// history of every type is scanned once in commit order instead, so that catching up
    /// reads each version once rather than paging back from the newest at every step.
    fn versions_after(&self, resource_type: &str, after: i64, latest: i64) -> Result<Behind> {
        let records = self.inner.door.records();
        let far = i64::try_from(STEP * 4).unwrap_or(i64::MAX);
        if latest.saturating_sub(after) > far {
            let scanned = records.backend().versions_after(after, STEP * 4)?;
            let more = scanned.len() == STEP * 4;
            let end = scanned.last().map_or(latest, |v| v.sequence);
            let versions = scanned.into_iter().filter(|v| v.resource_type == resource_type).collect();
            return Ok(Behind { versions, end, more });
        }
        let mut newest_first = Vec::new();
        let mut before = None;
        loop {
            let query = HistoryQuery {
                resource_type: Some(resource_type.into()),
                before_sequence: before,
                count: STEP,
                ..HistoryQuery::default()
            };
            let page = records.history(&query)?;
            let last_page = page.len() < STEP;
            let newer: Vec<ResourceVersion> = page.into_iter().take_while(|v| v.sequence > after).collect();
            let reached = newer.len() < STEP;
            before = newer.last().map(|v| v.sequence);
            newest_first.extend(newer);
            if reached || last_page || before.is_none() {
                break;
            }
        }
        newest_first.reverse();
        let more = newest_first.len() > STEP;
        newest_first.truncate(STEP);
        // Caught up: nothing of the type lies between the last one and the latest read first.
        let last = newest_first.last().map_or(after, |v| v.sequence);
        let end = if more { last } else { last.max(latest) };
        Ok(Behind { versions: newest_first, end, more })
    }

    /// Reads the reports written since the checkpoint (at most one step of each type),
    /// closes the referrals they name, and moves the checkpoint past them. A referral that
    /// could not be closed for a passing reason (a concurrent write, the store unavailable)
    /// stops the pass before its report, to be tried again. The first pass ever sets the
    /// checkpoint at the latest write: the reports of older referrals are not followed (the
    /// dashboard still computes them closed).
    pub fn run_pass(&self) -> Result<Pass> {
        let latest = self.inner.door.records().backend().latest_sequence()?;
        let Some(mut checkpoints) = self.checkpoints()? else {
            let start = REPORT_TYPES.iter().map(|t| (t.to_string(), latest)).collect();
            self.save_checkpoints(&start)?;
            return Ok(Pass::default());
        };
        let mut pass = Pass::default();
        let access = self.inner.door.enter(Who::Job(JOB));
        let mut outcome = Ok(());
        let mut moved = false;
        for resource_type in REPORT_TYPES {
            let after = checkpoints.get(resource_type).copied().unwrap_or(0);
            if latest <= after {
                continue;
            }
            let behind = self.versions_after(resource_type, after, latest)?;
            for version in &behind.versions {
                pass.read += 1;
                match self.process(&access, version) {
                    Ok(closed) => pass.closed += closed,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
                checkpoints.insert(resource_type.to_string(), version.sequence);
            }
            if outcome.is_err() {
                moved = true;
                break;
            }
            checkpoints.insert(resource_type.to_string(), behind.end.max(after));
            moved |= behind.end > after;
            pass.more |= behind.more;
        }
        access.settle_queued();
        if moved {
            self.save_checkpoints(&checkpoints)?;
        }
        outcome.map(|()| pass)
    }

    /// Runs passes until one reads nothing (tests, the command line).
    pub fn catch_up(&self) -> Result<Pass> {
        let mut total = Pass::default();
        loop {
            let pass = self.run_pass()?;
            total.read += pass.read;
            total.closed += pass.closed;
            if !pass.more {
                return Ok(total);
            }
        }
    }

    fn process(&self, access: &Access, version: &ResourceVersion) -> Result<usize> {
        let Some(report) = version.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else {
            return Ok(0);
        };
        let reference = format!("{}/{}", version.resource_type, version.id);
        let mut closed = 0;
        for service_request in referrals_named(&version.resource_type, &report) {
            let mut attempts = 0;
            loop {
                match close(access, &service_request, &reference) {
                    Ok(done) => {
                        closed += usize::from(done);
                        break;
                    }
                    Err(e) => {
                        use fhir::ErrorClass::{Conflict, Internal, PreconditionFailed, Unavailable};
                        // Written meanwhile: read again and retry, a few times.
                        let raced = matches!(e.class(), Conflict | PreconditionFailed);
                        if raced && attempts < 3 {
                            attempts += 1;
                            continue;
                        }
                        if raced || matches!(e.class(), Unavailable | Internal) {
                            return Err(e);
                        }
                        // A rule of the record refused it: nothing to retry.
                        tracing::warn!(class = ?e.class(), "a referral could not be closed after its report arrived");
                        break;
                    }
                }
            }
        }
        Ok(closed)
    }
}
