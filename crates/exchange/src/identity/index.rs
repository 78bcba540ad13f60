//! The master patient index: every Patient written — whatever the door (the API, a
//! transaction Bundle, HL7 ADT, a C-CDA import, a pull from a peer) — is matched against the
//! others right behind its commit. Certain matches are linked at once: one person id (an
//! identifier under [`Identity::enterprise_system`]) shared by every linked record (a record
//! linked to none gets none, so creating a patient writes one version, not two), and
//! `Patient.link` (`seealso`) both ways. Probable matches go to the review work list.
//!
//! The store's history is the queue: the index keeps a checkpoint (the sequence of the last
//! Patient version it processed, in the job table) and reads the Patient versions written since,
//! so nothing is missed across a crash or a restart, and servers sharing a database may all run
//! it (every link is written with `If-Match`, and linking twice changes nothing). It is told of
//! commits by the in-process feed and also looks every few seconds (another server's writes).
//! A version whose demographics equal its predecessor's (the index's own links, a changed
//! telecom use) is not matched again.

use super::review::{FieldAgreement, ReviewItem, ReviewList, Status, now_text, pair_id};
use super::{Identity, matcher};
use crate::Result;
use access::{Access, Door, Who};
use matching::{Demographics, Grade, IdentifierKind};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use store::{HistoryQuery, JobStore, ResourceVersion, StoredJob};
use time::OffsetDateTime;

/// The job the index reads and writes as (audited under this name).
pub const JOB: &str = "patient-index";
const CHECKPOINT_KIND: &str = "patient-index";
const CHECKPOINT_ID: &str = "patient-index-checkpoint";
/// Patient versions read per step.
const STEP: usize = 500;
/// How often the index looks for writes it was not told of.
const POLL: Duration = Duration::from_secs(5);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Patient versions read.
    pub read: usize,
    /// Patients matched.
    pub matched: usize,
    /// Links written (pairs).
    pub linked: usize,
    /// Pairs sent to review.
    pub queued: usize,
}

/// The index over one store.
#[derive(Clone)]
pub struct PatientIndex {
    inner: Arc<Inner>,
}

struct Inner {
    identity: Arc<Identity>,
    door: Door,
    jobs: Arc<dyn JobStore>,
    review: ReviewList,
    stop: AtomicBool,
}

impl PatientIndex {
    /// The index of the records behind `door`, its checkpoint and review list in `jobs`.
    pub fn new(identity: Arc<Identity>, door: Door, jobs: Arc<dyn JobStore>) -> PatientIndex {
        let review = ReviewList::new(jobs.clone());
        PatientIndex { inner: Arc::new(Inner { identity, door, jobs, review, stop: AtomicBool::new(false) }) }
    }

    /// The review work list.
    pub fn review(&self) -> &ReviewList {
        &self.inner.review
    }

    /// The identity service it matches with.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.inner.identity
    }

    /// Runs the index on a thread of its own until [`PatientIndex::stop`]: a pass at once
    /// (catching up with what was written while it was not running), then one after every
    /// commit that wrote a Patient, and every few seconds.
    pub fn start(&self) -> std::io::Result<()> {
        let feed = self.inner.door.records().changes().subscribe(1024);
        let index = self.clone();
        std::thread::Builder::new().name("patient-index".into()).spawn(move || {
            while !index.inner.stop.load(Ordering::Relaxed) {
                match index.run_pass() {
                    Ok(pass) if pass.read > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(class = ?e.class(), "the patient index could not run a pass"),
                }
                let deadline = std::time::Instant::now() + POLL;
                loop {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match feed.recv_timeout(left) {
                        Ok(changes) if changes.iter().any(|c| c.resource_type == "Patient") => break,
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

    fn checkpoint(&self) -> Result<i64> {
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

    /// The Patient versions written after `after`, oldest first, at most [`STEP`].
    fn versions_after(&self, after: i64) -> Result<Vec<ResourceVersion>> {
        let records = self.inner.door.records();
        // Nothing written since: no history read (the thread looks every few seconds).
        if records.backend().latest_sequence()? <= after {
            return Ok(Vec::new());
        }
        let mut newest_first = Vec::new();
        let mut before = None;
        // History pages newest first: page back to the checkpoint, keeping the oldest STEP.
        loop {
            let query = HistoryQuery {
                resource_type: Some("Patient".into()),
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
                // Far behind: keep only the oldest pages in memory.
                newest_first.drain(..newest_first.len() - STEP);
            }
        }
        newest_first.reverse();
        newest_first.truncate(STEP);
        Ok(newest_first)
    }

    /// Processes the Patient versions written since the checkpoint (at most one step of
    /// them) and moves the checkpoint past them.
    pub fn run_pass(&self) -> Result<Pass> {
        let after = self.checkpoint()?;
        let versions = self.versions_after(after)?;
        let mut pass = Pass { read: versions.len(), ..Pass::default() };
        let access = self.inner.door.enter(Who::Job(JOB));
        let mut last = after;
        for version in &versions {
            self.process(&access, version, &mut pass)?;
            last = version.sequence;
        }
        access.settle_queued();
        if last > after {
            self.save_checkpoint(last)?;
        }
        Ok(pass)
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
            total.matched += pass.matched;
            total.linked += pass.linked;
            total.queued += pass.queued;
        }
    }

    fn process(&self, access: &Access, version: &ResourceVersion, pass: &mut Pass) -> Result<()> {
        if version.is_deleted() {
            return Ok(());
        }
        let records = self.inner.door.records();
        // Only the latest version is matched (a later one is on its way).
        let current = match records.read("Patient", &version.id) {
            Ok(current) if current.version == version.version => current,
            _ => return Ok(()),
        };
        let Some(patient) = current.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else {
            return Ok(());
        };
        if matcher::is_merged_away(&patient) {
            return Ok(());
        }
        let system = self.inner.identity.enterprise_system.clone();
        let demographics = Demographics::of_patient(&patient, Some(&system));
        let person = person_id(&demographics);
        if version.version > 1 {
            let previous = records.vread("Patient", &version.id, version.version - 1).ok();
            let unchanged = previous
                .and_then(|p| p.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()))
                .is_some_and(|p| same_demographics(&Demographics::of_patient(&p, Some(&system)), &demographics));
            if unchanged {
                return Ok(());
            }
        }
        pass.matched += 1;
        let candidates = matcher::candidates(access, &demographics, Some(&version.id))?;
        let matches = matcher::score(&self.inner.identity, access, &demographics, candidates);
        let mut certain = Vec::new();
        for found in matches {
            let other = &found.version.id;
            let decided = self.inner.review.get(&version.id, other)?;
            if decided.as_ref().is_some_and(|d| d.status == Status::NotAMatch) {
                continue;
            }
            match found.comparison.grade {
                Grade::Certain => certain.push(found),
                Grade::Probable if decided.is_none() && !already_linked(&patient, other) => {
                    let fields = found
                        .comparison
                        .fields
                        .iter()
                        .map(|f| FieldAgreement {
                            field: f.field.name().into(),
                            level: f.level.name().into(),
                            weight: (f.weight * 100.0).round() / 100.0,
                        })
                        .collect();
                    let (a, b) = if version.id <= *other {
                        (version.id.clone(), other.clone())
                    } else {
                        (other.clone(), version.id.clone())
                    };
                    self.inner.review.save(&ReviewItem {
                        id: pair_id(&a, &b),
                        a,
                        b,
                        score: found.comparison.score,
                        weight: found.comparison.weight,
                        grade: found.comparison.grade.code().into(),
                        fields,
                        status: Status::Open,
                        decided_by: None,
                        updated: now_text(),
                    })?;
                    pass.queued += 1;
                }
                _ => {}
            }
        }
        let others: Vec<(ResourceVersion, Value)> = certain
            .into_iter()
            .filter_map(|m| {
                let body: Value = serde_json::from_str(m.version.body.as_deref()?).ok()?;
                Some((m.version, body))
            })
            .collect();
        if others.is_empty() {
            // Nobody to link: a record alone is its own person, and gets no id (nor a second
            // version) until it is linked.
            return Ok(());
        }
        let person = person
            .or_else(|| others.iter().find_map(|(_, body)| person_id(&Demographics::of_patient(body, Some(&system)))))
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let linked = link(access, &system, &person, (&current, patient), others)?;
        pass.linked += linked;
        Ok(())
    }
}

/// The person id a record carries.
fn person_id(d: &Demographics) -> Option<String> {
    d.identifiers_of(IdentifierKind::Enterprise).next().map(|i| i.value.clone())
}

/// Whether two normalised records are the same but for their person id.
fn same_demographics(a: &Demographics, b: &Demographics) -> bool {
    let strip = |d: &Demographics| {
        let mut d = d.clone();
        d.identifiers.retain(|i| i.kind != IdentifierKind::Enterprise);
        format!("{d:?}")
    };
    strip(a) == strip(b)
}

fn already_linked(patient: &Value, other: &str) -> bool {
    let target = format!("Patient/{other}");
    patient.get("link").and_then(Value::as_array).is_some_and(|links| {
        links.iter().any(|l| l.pointer("/other/reference").and_then(Value::as_str) == Some(target.as_str()))
    })
}

/// Gives `patient` the person id `person` (replacing another) and a `seealso` link to each
/// of `others`, whether or not it had them; `true` when it changed.
pub(crate) fn with_person(patient: &mut Value, system: &str, person: &str, others: &[&str]) -> bool {
    let mut changed = false;
    let Some(object) = patient.as_object_mut() else { return false };
    let identifiers = object.entry("identifier").or_insert_with(|| Value::Array(Vec::new()));
    if let Some(list) = identifiers.as_array_mut() {
        let has = list.iter().any(|i| {
            i.get("system").and_then(Value::as_str) == Some(system)
                && i.get("value").and_then(Value::as_str) == Some(person)
        });
        if !has {
            list.retain(|i| i.get("system").and_then(Value::as_str) != Some(system));
            list.push(json!({"use": "secondary", "system": system, "value": person}));
            changed = true;
        }
    }
    for other in others {
        let target = format!("Patient/{other}");
        let links = object.entry("link").or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = links.as_array_mut()
            && !list.iter().any(|l| l.pointer("/other/reference").and_then(Value::as_str) == Some(target.as_str()))
        {
            list.push(json!({"other": {"reference": target}, "type": "seealso"}));
            changed = true;
        }
    }
    changed
}

/// Writes the person id and the links of `patient` and its certain matches in one
/// transaction, each with `If-Match` on the version read; returns the pairs linked.
fn link(
    access: &Access,
    system: &str,
    person: &str,
    (current, mut patient): (&ResourceVersion, Value),
    others: Vec<(ResourceVersion, Value)>,
) -> Result<usize> {
    let mut entries = Vec::new();
    let other_ids: Vec<&str> = others.iter().map(|(v, _)| v.id.as_str()).collect();
    let pairs = others.iter().filter(|(v, _)| !already_linked(&patient, &v.id)).count();
    if with_person(&mut patient, system, person, &other_ids) {
        entries.push(put(current, patient));
    }
    for (version, mut body) in others {
        if with_person(&mut body, system, person, &[current.id.as_str()]) {
            entries.push(put(&version, body));
        }
    }
    if entries.is_empty() {
        return Ok(0);
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    match access.transaction(bundle) {
        Ok(_) => Ok(pairs),
        // Written meanwhile: the newer version is read by a later pass.
        Err(access::Error::Store(store::Error::PreconditionFailed(_) | store::Error::Conflict(_))) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

fn put(version: &ResourceVersion, body: Value) -> Value {
    json!({
        "fullUrl": format!("Patient/{}", version.id),
        "resource": body,
        "request": {"method": "PUT", "url": format!("Patient/{}", version.id), "ifMatch": format!("W/\"{}\"", version.version)}
    })
}

/// A reviewer's decision on a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// One person: link the two records (person id and `seealso` both ways).
    Link,
    /// Two people: remembered, the pair is never proposed again.
    NotAMatch,
    /// One person, one record too many: the other record of the pair is merged into this one
    /// (a Patient id of the pair), as `Patient/$merge` does.
    MergeInto(String),
}

impl Decision {
    /// Reads `link`, `not-a-match`, or `merge` with the surviving record's id.
    pub fn parse(code: &str, survivor: Option<&str>) -> Option<Decision> {
        match (code, survivor) {
            ("link", _) => Some(Decision::Link),
            ("not-a-match", _) => Some(Decision::NotAMatch),
            ("merge", Some(id)) => Some(Decision::MergeInto(id.trim_start_matches("Patient/").to_string())),
            _ => None,
        }
    }
}

/// Refuses (403) unless the caller reviews duplicates: administrators and registration (front
/// desk) staff, or the server's own jobs.
pub fn may_review(access: &Access) -> Result<()> {
    match access.who() {
        Who::Caller { caller, .. } => {
            if caller.roles().iter().any(|r| matches!(r, auth::Role::Administrator | auth::Role::FrontDesk)) {
                Ok(())
            } else {
                Err(access::Error::Forbidden(
                    "only administrators and registration staff review duplicate records".into(),
                )
                .into())
            }
        }
        Who::Anyone | Who::Job(_) => Ok(()),
    }
}

fn who_decided(access: &Access) -> String {
    match access.who() {
        Who::Caller { caller, .. } => caller.principal.subject.name().to_string(),
        Who::Job(name) => format!("job:{name}"),
        Who::Anyone => "anyone".into(),
    }
}

impl PatientIndex {
    /// The work list: pairs with `status` (all when `None`), best score first.
    pub fn work_list(&self, access: &Access, status: Option<Status>) -> Result<Vec<ReviewItem>> {
        may_review(access)?;
        let items = self.inner.review.items(status)?;
        access.noted_operation(vec!["Patient".into()], "Patient/$match-review", None, store::audit::Outcome::Success);
        Ok(items)
    }

    /// Records a reviewer's decision on the pair `pair` (`a~b`): a link is written by the index
    /// (the decision and its maker are audited and kept on the item).
    pub fn decide(&self, access: &Access, pair: &str, decision: Decision) -> Result<ReviewItem> {
        may_review(access)?;
        let (a, b) = pair.split_once('~').ok_or_else(|| crate::Error::invalid("a pair is `a~b`, two Patient ids"))?;
        let mut item = self.inner.review.get(a, b)?.ok_or(crate::Error::NoSuchPair)?;
        let entities = vec![format!("Patient/{}", item.a), format!("Patient/{}", item.b)];
        match decision {
            Decision::NotAMatch => item.status = Status::NotAMatch,
            Decision::MergeInto(survivor) => {
                let source = if survivor == item.a {
                    item.b.clone()
                } else if survivor == item.b {
                    item.a.clone()
                } else {
                    return Err(crate::Error::invalid("the surviving record must be one of the pair"));
                };
                // Decided by a reviewer, done by the index: registration staff and
                // administrators do not write clinical records themselves.
                let job = self.inner.door.enter(Who::Job(JOB));
                let merged = super::merge::merge(
                    &job,
                    &super::merge::MergeRequest { source, target: survivor, result: None, preview: false },
                );
                job.settle_queued();
                merged?;
                item.status = Status::Merged;
            }
            Decision::Link => {
                let job = self.inner.door.enter(Who::Job(JOB));
                let records = self.inner.door.records();
                let system = self.inner.identity.enterprise_system.clone();
                let first = records.read("Patient", &item.a)?;
                let second = records.read("Patient", &item.b)?;
                let body = |v: &ResourceVersion| v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok());
                let (Some(first_body), Some(second_body)) = (body(&first), body(&second)) else {
                    return Err(crate::Error::NoSuchPair);
                };
                let person = person_id(&Demographics::of_patient(&first_body, Some(&system)))
                    .or_else(|| person_id(&Demographics::of_patient(&second_body, Some(&system))))
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let linked = link(&job, &system, &person, (&first, first_body), vec![(second, second_body)]);
                job.settle_queued();
                linked?;
                item.status = Status::Linked;
            }
        }
        item.decided_by = Some(who_decided(access));
        item.updated = now_text();
        self.inner.review.save(&item)?;
        access.noted_operation(entities, "Patient/$match-review", Some(&item.a), store::audit::Outcome::Success);
        Ok(item)
    }
}
