//! The scorer: every `QuestionnaireResponse` of the PHQ-9 or GAD-7 written through a door
//! other than [`super::submit`] (the FHIR API, a transaction Bundle, an import) is scored right
//! behind its commit.
//!
//! The store's history is the queue: the scorer keeps a checkpoint (the sequence of the last
//! QuestionnaireResponse version it processed, in the job table) and reads the versions written
//! since, so nothing is missed across a crash or a restart. Each score is written through the
//! door as the job [`JOB`] with a conditional create on its identifier
//! ([`super::SCORE_SYSTEM`]`|QuestionnaireResponse/{id}`): a response already scored (by the
//! app's own transaction, or by a pass whose checkpoint was lost in a crash) is never scored
//! twice, and servers sharing a database may all run it. It is told of commits by the
//! in-process feed and also looks every few seconds (another server's writes).
//!
//! Only the current version of a `completed` or `amended` response is scored; one that cannot
//! be scored (an item unanswered, an answer outside the list) is left as it is and logged
//! without its content. A response changed after it was scored gets its score corrected (the
//! same Observation's next version, status `amended`).

use super::{Instrument, Score, score_criteria, score_observation};
use crate::Result;
use access::{Door, Who};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use store::{HistoryQuery, JobStore, ResourceVersion, StoredJob, WriteKind};
use time::OffsetDateTime;

/// The job the scorer writes as (audited under this name).
pub const JOB: &str = "screening";
const CHECKPOINT_KIND: &str = "screening";
const CHECKPOINT_ID: &str = "screening-checkpoint";
/// Versions read per step.
const STEP: usize = 500;
/// How often the scorer looks for writes it was not told of.
const POLL: Duration = Duration::from_secs(5);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// QuestionnaireResponse versions read.
    pub read: usize,
    /// Scores written.
    pub scored: usize,
    /// Responses already scored (a score with their identifier was on file).
    pub already: usize,
    /// Scores corrected because their response was changed since (the score is then
    /// `amended`).
    pub rescored: usize,
    /// Responses of a screening instrument that could not be scored.
    pub unscorable: usize,
}

/// The scorer over one store.
#[derive(Clone)]
pub struct Scorer {
    inner: Arc<Inner>,
}

struct Inner {
    door: Door,
    jobs: Arc<dyn JobStore>,
    stop: AtomicBool,
}

impl Scorer {
    /// The scorer of the records behind `door`, its checkpoint in `jobs`.
    pub fn new(door: Door, jobs: Arc<dyn JobStore>) -> Scorer {
        Scorer { inner: Arc::new(Inner { door, jobs, stop: AtomicBool::new(false) }) }
    }

    /// Runs the scorer on a thread of its own until [`Scorer::stop`]: a pass at once (catching
    /// up with what was written while it was not running), then one after every commit that
    /// wrote a QuestionnaireResponse, and every few seconds.
    pub fn start(&self) -> std::io::Result<()> {
        let feed = self.inner.door.records().changes().subscribe(1024);
        let scorer = self.clone();
        std::thread::Builder::new().name("screening-scorer".into()).spawn(move || {
            while !scorer.inner.stop.load(Ordering::Relaxed) {
                match scorer.run_pass() {
                    Ok(pass) if pass.read > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(class = ?e.class(), "the screening scorer could not run a pass"),
                }
                let deadline = std::time::Instant::now() + POLL;
                loop {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match feed.recv_timeout(left) {
                        Ok(changes) if changes.iter().any(|c| c.resource_type == "QuestionnaireResponse") => break,
                        Ok(_) => continue,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                        // Dropped by the feed (fell behind): polling still finds everything.
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

    /// The sequence of the last version processed.
    pub fn checkpoint(&self) -> Result<i64> {
        Ok(self
            .inner
            .jobs
            .job(CHECKPOINT_ID)?
            .and_then(|j| serde_json::from_str::<Value>(&j.state).ok())
            .and_then(|v| v.get("sequence").and_then(Value::as_i64))
            .unwrap_or(0))
    }

    fn save_checkpoint(&self, sequence: i64) -> Result<()> {
        self.inner.jobs.save_job(&StoredJob {
            id: CHECKPOINT_ID.into(),
            kind: CHECKPOINT_KIND.into(),
            state: json!({"sequence": sequence}).to_string(),
            updated_at: OffsetDateTime::now_utc(),
        })?;
        Ok(())
    }

    /// The QuestionnaireResponse versions written after `after`, oldest first, at most [`STEP`].
    fn versions_after(&self, after: i64) -> Result<Vec<ResourceVersion>> {
        let records = self.inner.door.records();
        if records.backend().latest_sequence()? <= after {
            return Ok(Vec::new());
        }
        let mut newest_first = Vec::new();
        let mut before = None;
        // History pages newest first: page back to the checkpoint, keeping the oldest STEP.
        loop {
            let query = HistoryQuery {
                resource_type: Some("QuestionnaireResponse".into()),
                id: None,
                since: None,
                before_sequence: before,
                count: STEP,
            };
            let page = records.history(&query)?;
            let done = page.len() < STEP;
            let mut reached = false;
            for version in page {
                if version.sequence <= after {
                    reached = true;
                    break;
                }
                before = Some(version.sequence);
                newest_first.push(version);
            }
            if reached || done {
                break;
            }
            if newest_first.len() > STEP * 4 {
                newest_first.drain(..newest_first.len() - STEP);
            }
        }
        newest_first.reverse();
        newest_first.truncate(STEP);
        Ok(newest_first)
    }

    /// Scores the responses written since the checkpoint (at most one step of them) and moves
    /// the checkpoint past them.
    pub fn run_pass(&self) -> Result<Pass> {
        let after = self.checkpoint()?;
        let versions = self.versions_after(after)?;
        let mut pass = Pass { read: versions.len(), ..Pass::default() };
        let access = self.inner.door.enter(Who::Job(JOB));
        let mut last = after;
        let mut failed = None;
        for version in &versions {
            if let Err(e) = self.process(&access, version, &mut pass) {
                failed = Some(e);
                break;
            }
            last = version.sequence;
        }
        access.settle_queued();
        if last > after {
            self.save_checkpoint(last)?;
        }
        match failed {
            // The checkpoint stops before it: the next pass tries again.
            Some(e) => Err(e),
            None => Ok(pass),
        }
    }

    /// Runs passes until one reads nothing (tests, the command line).
    pub fn catch_up(&self) -> Result<Pass> {
        let mut total = Pass::default();
        loop {
            let pass = self.run_pass()?;
            if pass.read == 0 {
                return Ok(total);
            }
            total.read += pass.read;
            total.scored += pass.scored;
            total.already += pass.already;
            total.unscorable += pass.unscorable;
            total.rescored += pass.rescored;
        }
    }

    fn process(&self, access: &access::Access, version: &ResourceVersion, pass: &mut Pass) -> Result<()> {
        if version.is_deleted() {
            return Ok(());
        }
        let records = self.inner.door.records();
        // Only the latest version is scored (a later one is on its way).
        let current = match records.read("QuestionnaireResponse", &version.id) {
            Ok(current) if current.version == version.version => current,
            _ => return Ok(()),
        };
        let Some(response) = current.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else {
            return Ok(());
        };
        let Some(instrument) = response.get("questionnaire").and_then(Value::as_str).and_then(Instrument::of_canonical)
        else {
            return Ok(());
        };
        if !matches!(response.get("status").and_then(Value::as_str), Some("completed" | "amended")) {
            return Ok(());
        }
        let Some(patient) = response
            .pointer("/subject/reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Patient/"))
            .filter(|p| fhir::reference::is_id(p))
        else {
            pass.unscorable += 1;
            tracing::info!(instrument = instrument.label(), "a screening response names no patient; not scored");
            return Ok(());
        };
        let score = match Score::of_response(instrument, &response) {
            Ok(score) => score,
            Err(_) => {
                pass.unscorable += 1;
                // The reason names items, never answers; still, only the instrument is logged.
                tracing::info!(instrument = instrument.label(), "a screening response could not be scored");
                return Ok(());
            }
        };
        let reference = format!("QuestionnaireResponse/{}", version.id);
        let at = response
            .get("authored")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| store::format_instant(OffsetDateTime::now_utc()));
        let encounter = response.pointer("/encounter/reference").and_then(Value::as_str);
        let author = response.pointer("/author/reference").and_then(Value::as_str);
        let observation = score_observation(&score, &reference, patient, encounter, author, &at);
        match access.create(observation.clone(), Some(&score_criteria(&reference))) {
            Ok(outcome) if outcome.kind == WriteKind::Matched => {
                let on_file = outcome
                    .version
                    .as_ref()
                    .and_then(|v| Some((v, serde_json::from_str::<Value>(v.body.as_deref()?).ok()?)));
                match on_file {
                    // The response was changed since it was scored: the score follows, as its
                    // next version (`If-Match`: a concurrent correction is tried again).
                    Some((version, existing)) if !same_score(&existing, &observation) => {
                        let mut corrected = observation;
                        corrected["id"] = json!(version.id);
                        corrected["status"] = json!("amended");
                        access.update("Observation", &version.id, corrected, Some(version.version))?;
                        pass.rescored += 1;
                    }
                    _ => pass.already += 1,
                }
            }
            Ok(_) => pass.scored += 1,
            // Refused for what it holds (a reference gone since the response was written): it
            // would be refused again, so it is passed over; anything else is tried again.
            Err(e) if matches!(e.class().status(), 400 | 422) => {
                pass.unscorable += 1;
                tracing::warn!(instrument = instrument.label(), class = ?e.class(), "a screening score was refused");
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}

/// Whether two score Observations say the same: total, band and item 9.
fn same_score(a: &Value, b: &Value) -> bool {
    let said = |o: &Value| {
        (
            o.get("valueInteger").cloned(),
            o.pointer("/interpretation/0/coding/0/code").cloned(),
            o.pointer("/component/0/valueInteger").cloned(),
        )
    };
    said(a) == said(b)
}
