//! [`Records`]: the one write path and the reads beside it.

use crate::recording::RecordingTx;
use crate::refs::RefChecker;
use crate::resource::{body_id, check_id, check_issues, check_valid, new_id, resource_type, validate_all};
use crate::write::{self, Written};
use crate::{Backend, Criteria, Error, HistoryQuery, ResourceVersion, Result, Transaction, Work, WriteHook};
use fhir::{Issue, IssueCode};
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// How often a patch is retried when the resource changes between reading and writing it.
const PATCH_ATTEMPTS: usize = 8;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// A new resource was created (201).
    Created,
    /// A new version of an existing resource was written (200).
    Updated,
    /// A conditional create matched an existing resource; nothing was written (200).
    Matched,
    /// A deletion version was written (200/204).
    Deleted,
    /// Delete of a resource that was already deleted or never existed: nothing written (204).
    NothingToDelete,
}

/// The result of a write: what happened and the version now current.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// What the write did.
    pub kind: WriteKind,
    /// The version written (or matched); `None` only for `NothingToDelete`.
    pub version: Option<ResourceVersion>,
}

/// The write path and reads over one backend.
#[derive(Clone)]
pub struct Records {
    backend: Arc<dyn Backend>,
    base: Option<Arc<str>>,
    snapshots: Arc<crate::searches::Snapshots>,
    /// Run inside the unit of work of every write of the types they want, in this order.
    hooks: Arc<[Arc<dyn WriteHook>]>,
    /// Told of every commit, after it is durable, in commit order.
    feed: Arc<crate::feed::ChangeFeed>,
    /// Who acts: each version written is audited in its own transaction.
    actor: Option<Arc<crate::Agent>>,
    /// The actor's access rules, checked on every version written and every conditional match.
    guard: Option<Arc<dyn crate::guard::AccessGuard>>,
    /// The audit chain's key: entries appended through these records are keyed with it.
    audit_key: Option<crate::audit::AuditKey>,
}

impl Records {
    /// Records stored in `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Records {
            backend,
            base: None,
            snapshots: Arc::default(),
            hooks: Arc::new([]),
            feed: Arc::default(),
            actor: None,
            guard: None,
            audit_key: None,
        }
    }

    /// The same records, treating absolute references that start with `base` (e.g.
    /// `https://host/fhir`) as references to this server.
    pub fn with_base(mut self, base: impl Into<String>) -> Self {
        let base: String = base.into();
        self.base = Some(Arc::from(base.trim_end_matches('/')));
        self
    }

    /// The same records, also running `hook` inside the unit of work of every write it wants
    /// (outbound notifications queued in the write's own transaction, rules a resource's
    /// lifecycle imposes), after the hooks added before it. Any hook's error rolls the write
    /// back.
    pub fn with_hook(mut self, hook: Arc<dyn WriteHook>) -> Self {
        let mut hooks = self.hooks.to_vec();
        hooks.push(hook);
        self.hooks = hooks.into();
        self
    }

    /// The feed of committed changes, shared by these records and every clone of them: see
    /// [`crate::feed`].
    pub fn changes(&self) -> &crate::feed::ChangeFeed {
        &self.feed
    }

    /// The same records, writing as `actor`: every version written is recorded in the audit
    /// trail inside the write's own transaction (a write that fails leaves no entry, and no
    /// committed write lacks one).
    pub fn as_actor(&self, actor: crate::Agent) -> Records {
        let mut records = self.clone();
        records.actor = Some(Arc::new(actor));
        records
    }

    /// The same records, checking every version written (and every resource a conditional
    /// operation matches) with `guard` inside the write's own transaction.
    pub fn guarded(&self, guard: Arc<dyn crate::guard::AccessGuard>) -> Records {
        let mut records = self.clone();
        records.guard = Some(guard);
        records
    }

    /// The same records, keying the audit entries they append with `key` (see
    /// [`crate::audit`]: a chain rewritten without the key is then found).
    pub fn with_audit_key(mut self, key: crate::audit::AuditKey) -> Records {
        self.audit_key = Some(key);
        self
    }

    /// The audit chain's key, if these records have one.
    pub fn audit_key(&self) -> Option<&crate::audit::AuditKey> {
        self.audit_key.as_ref()
    }

    /// Appends entries to the audit trail as a unit of work of their own (reads, searches,
    /// refusals: what has no write to ride with). The caller must not serve what it could
    /// not audit.
    pub fn append_audit(&self, entries: Vec<crate::audit::NewAuditEntry>) -> Result<()> {
        let key = self.audit_key.clone();
        let work: Work = Box::new(move |tx| tx.append_audit(&entries, key.as_ref()));
        self.backend.execute(work)
    }

    /// Snapshots of recent searches, for paging.
    pub(crate) fn snapshots(&self) -> &crate::searches::Snapshots {
        &self.snapshots
    }

    /// The backend underneath.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Validation issues of `resource` (what `$validate` answers), without storing anything.
    pub fn validate(&self, resource: &Value) -> Vec<Issue> {
        fhir::validate(resource)
    }

    /// The current version; `NotFound` or `Gone` otherwise.
    pub fn read(&self, resource_type: &str, id: &str) -> Result<ResourceVersion> {
        match self.backend.current(resource_type, id)? {
            Some(v) if v.is_deleted() => Err(gone(&v)),
            Some(v) => Ok(v),
            None => Err(not_found(resource_type, id)),
        }
    }

    /// One version (a deleted version answers `Gone`).
    pub fn vread(&self, resource_type: &str, id: &str, version: u64) -> Result<ResourceVersion> {
        match self.backend.version(resource_type, id, version)? {
            Some(v) if v.is_deleted() => Err(gone(&v)),
            Some(v) => Ok(v),
            None => Err(not_found(resource_type, id)),
        }
    }

    /// Creates `resource` with a server-assigned id. With `if_none_exist` (a query string), an
    /// existing match is returned instead (`Matched`); several matches fail (412).
    pub fn create(&self, resource: Value, if_none_exist: Option<&str>) -> Result<WriteOutcome> {
        let resource_type = resource_type(&resource)?.to_string();
        check_valid(&resource)?;
        let criteria = if_none_exist.map(|q| conditional_criteria(q, &resource_type)).transpose()?;
        let id = new_id();
        let base = self.base.clone();
        self.run(move |tx| {
            let written = write::create(tx, &resource_type, &id, resource, criteria.as_ref())?;
            checked(tx, base.as_deref(), written)
        })
    }

    /// Updates (or creates, with the client's id) `resource_type/id`. `if_match` is the expected
    /// current version (412 when different).
    pub fn update(
        &self,
        resource_type: &str,
        id: &str,
        resource: Value,
        if_match: Option<u64>,
    ) -> Result<WriteOutcome> {
        check_update_body(resource_type, Some(id), &resource)?;
        let (resource_type, id) = (resource_type.to_string(), id.to_string());
        let base = self.base.clone();
        self.run(move |tx| {
            let written = write::update(tx, &resource_type, &id, resource, if_match)?;
            checked(tx, base.as_deref(), written)
        })
    }

    /// Conditional update: no match creates, one match updates it, several fail (412).
    pub fn conditional_update(&self, resource_type: &str, criteria: &str, resource: Value) -> Result<WriteOutcome> {
        check_update_body(resource_type, None, &resource)?;
        let criteria = conditional_criteria(criteria, resource_type)?;
        let resource_type = resource_type.to_string();
        let new_id = new_id();
        let base = self.base.clone();
        self.run(move |tx| {
            let body_id = body_id(&resource)?.map(str::to_string);
            let id = write::conditional_target(tx, &resource_type, &criteria, body_id.as_deref(), &new_id)?;
            let written = write::update(tx, &resource_type, &id, resource, None)?;
            checked(tx, base.as_deref(), written)
        })
    }

    /// Applies a JSON Patch (RFC 6902) document to the current version and stores the result.
    pub fn patch(&self, resource_type: &str, id: &str, patch: &Value, if_match: Option<u64>) -> Result<WriteOutcome> {
        check_id(id)?;
        let patch = write::parse_patch(patch)?;
        // Patch and validate off the writer; the write then checks that nothing changed in
        // between, and the whole thing is retried if something did.
        for _ in 0..PATCH_ATTEMPTS {
            let current = self.read(resource_type, id)?;
            if let Some(guard) = &self.guard
                && !guard.may_read(&current)?
            {
                return Err(not_found(resource_type, id));
            }
            write::check_if_match(if_match, Some(&current))?;
            let patched = write::apply_patch(&current, &patch)?;
            let (resource_type, id, seen) = (resource_type.to_string(), id.to_string(), current.version);
            let base = self.base.clone();
            let outcome = self.run(move |tx| {
                match tx.current_version(&resource_type, &id)? {
                    Some((version, false)) if version == seen => {}
                    _ => return Ok(None),
                }
                let written = write::update(tx, &resource_type, &id, patched, None)?;
                checked(tx, base.as_deref(), written).map(Some)
            })?;
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
        }
        Err(Error::Conflict(format!("{resource_type}/{id} kept changing while being patched; retry")))
    }

    /// Deletes (a deletion version is added to history).
    pub fn delete(&self, resource_type: &str, id: &str, if_match: Option<u64>) -> Result<WriteOutcome> {
        check_id(id)?;
        let (resource_type, id) = (resource_type.to_string(), id.to_string());
        self.run(move |tx| Ok(write::delete(tx, &resource_type, &id, if_match)?.outcome))
    }

    /// Conditional delete: deletes every match (zero matches is not an error).
    pub fn conditional_delete(&self, resource_type: &str, criteria: &str) -> Result<Vec<WriteOutcome>> {
        let criteria = conditional_criteria(criteria, resource_type)?;
        let resource_type = resource_type.to_string();
        self.run(move |tx| {
            let ids = criteria.find(tx, &resource_type)?;
            ids.iter().map(|id| Ok(write::delete(tx, &resource_type, id, None)?.outcome)).collect()
        })
    }

    /// History entries, newest first.
    pub fn history(&self, query: &HistoryQuery) -> Result<Vec<ResourceVersion>> {
        self.backend.history(query)
    }

    /// How many history entries match `query` (for `Bundle.total` of a history Bundle).
    pub fn history_total(&self, query: &HistoryQuery) -> Result<u64> {
        self.backend.history_total(query)
    }

    /// Processes a `batch` or `transaction` Bundle and returns the response Bundle.
    pub fn process_bundle(&self, bundle: Value) -> Result<Value> {
        crate::bundle::process(self, bundle)
    }

    /// Stores resources that carry their own ids (bulk load, e.g. NDJSON) as creates or
    /// updates, validated, in one transaction; references are not checked.
    pub fn load(&self, resources: Vec<Value>) -> Result<usize> {
        let mut keys = Vec::with_capacity(resources.len());
        for (i, resource) in resources.iter().enumerate() {
            let located = |e: Error| Error::Invalid(located_issues(e, i));
            let resource_type = resource_type(resource).map_err(located)?.to_string();
            match body_id(resource).map_err(located)? {
                Some(id) => keys.push((resource_type, id.to_string())),
                None => return Err(located(Error::invalid("a loaded resource needs an id"))),
            }
        }
        let all: Vec<&Value> = resources.iter().collect();
        for (i, issues) in validate_all(&all).into_iter().enumerate() {
            check_issues(issues).map_err(|e| Error::Invalid(located_issues(e, i)))?;
        }
        self.run(move |tx| {
            let count = resources.len();
            for ((resource_type, id), resource) in keys.iter().zip(resources) {
                write::update(tx, resource_type, id, resource, None)?;
            }
            Ok(count)
        })
    }

    /// Copies `versions` (in the order they were written in their store) into this one as they
    /// were stored, in one transaction, without running the write hook: moving a store to
    /// another backend with its whole history. Versions this store already has are skipped;
    /// returns how many were written.
    pub fn restore(&self, versions: Vec<ResourceVersion>) -> Result<usize> {
        let (work, slot) = capture(move |tx| {
            let mut written = 0;
            for v in &versions {
                written += usize::from(write::restore_version(tx, v)?);
            }
            Ok(written)
        });
        self.backend.execute(work)?;
        take(&slot)
    }

    /// The base URL references to this server may start with.
    pub(crate) fn base(&self) -> Option<&str> {
        self.base.as_deref()
    }

    /// Runs `f` as one unit of work on the backend and returns its result once durable.
    pub(crate) fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Transaction) -> Result<T> + Send + 'static,
    {
        let (work, slot, announce) = self.capture(f);
        let executed = self.backend.execute(work);
        announce.settle(executed.is_ok());
        executed?;
        take(&slot)
    }

    /// [`capture`], through the records' [`RecordingTx`] (guard, hooks, audit, feed), and what
    /// announces its changes to the feed once the backend has answered.
    pub(crate) fn capture<T, F>(&self, f: F) -> (Work, Arc<Mutex<Option<T>>>, Announcement)
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Transaction) -> Result<T> + Send + 'static,
    {
        let actor = self.actor.clone();
        let hooks = self.hooks.clone();
        let guard = self.guard.clone();
        let key = self.audit_key.clone();
        let feed = self.feed.wanted().then(|| self.feed.clone());
        let announcement = Announcement(Arc::new(Mutex::new(None)));
        let pending = Arc::clone(&announcement.0);
        let (work, slot) = capture(move |tx| {
            let mut recording = RecordingTx {
                inner: tx,
                actor: actor.as_deref(),
                hooks: &hooks,
                guard: guard.as_deref(),
                entries: Vec::new(),
                changes: feed.is_some().then(Vec::new),
            };
            let value = f(&mut recording)?;
            let entries = std::mem::take(&mut recording.entries);
            let changes = recording.changes.take();
            if !entries.is_empty() {
                // The write fails with its audit entry: nothing is written unaudited.
                tx.append_audit(&entries, key.as_ref()).map_err(audit_unavailable)?;
            }
            if let (Some(feed), Some(changes)) = (feed, changes)
                && !changes.is_empty()
            {
                // The ticket is taken last, inside the transaction: see `feed`.
                *pending.lock().unwrap_or_else(|p| p.into_inner()) = Some((feed.ticket(), changes));
            }
            Ok(value)
        });
        (work, slot, announcement)
    }
}

/// The changes a unit of work will announce to the feed once the backend has answered.
pub(crate) struct Announcement(Arc<Mutex<Option<Pending>>>);

/// A unit of work's place in the feed and the changes it made.
type Pending = (crate::feed::Ticket, Vec<crate::feed::Committed>);

impl Announcement {
    /// Announces the changes when the work committed, else cancels its place in the feed.
    pub(crate) fn settle(self, committed: bool) {
        let pending = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((ticket, changes)) = pending
            && committed
        {
            ticket.announce(changes);
        }
    }
}

/// The error of a write whose audit entry could not be appended: the trail is unavailable
/// (503), whatever the backend said (its detail is not passed on to the caller).
fn audit_unavailable(_: Error) -> Error {
    Error::Unavailable(crate::audit::UNAVAILABLE.into())
}

/// Refuses, as if it did not exist, a live resource the acting caller may not see (before
/// anything else about it, such as its version, is compared).
pub(crate) fn require_visible(tx: &mut dyn Transaction, resource_type: &str, id: &str) -> Result<()> {
    // Unguarded transactions see everything: no lookup at all.
    if !tx.visible(resource_type, vec![id.to_string()])?.is_empty() {
        return Ok(());
    }
    match tx.current_version(resource_type, id)? {
        Some((_, false)) => Err(not_found(resource_type, id)),
        _ => Ok(()),
    }
}

/// `f` as a [`Work`] whose result lands in the returned slot.
pub(crate) fn capture<T, F>(f: F) -> (Work, Arc<Mutex<Option<T>>>)
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Transaction) -> Result<T> + Send + 'static,
{
    let slot = Arc::new(Mutex::new(None));
    let out = Arc::clone(&slot);
    let work: Work = Box::new(move |tx| {
        let value = f(tx)?;
        *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        Ok(())
    });
    (work, slot)
}

/// The result a successful [`capture`]d work left.
pub(crate) fn take<T>(slot: &Mutex<Option<T>>) -> Result<T> {
    slot.lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or_else(|| Error::Storage("a unit of work reported success without running".into()))
}

/// Checks the references of what was written (an error rolls the write back).
fn checked(tx: &mut dyn Transaction, base: Option<&str>, written: Written) -> Result<WriteOutcome> {
    if let Some(body) = &written.body {
        RefChecker::new(base).check(tx, body)?;
    }
    Ok(written.outcome)
}

/// Checks an update body: its type is `resource_type`, its id (required when `url_id` is
/// given) equals `url_id`, and it is valid.
pub(crate) fn check_update_body(resource_type: &str, url_id: Option<&str>, resource: &Value) -> Result<()> {
    check_update_shape(resource_type, url_id, resource)?;
    check_valid(resource)
}

/// [`check_update_body`] without validation.
pub(crate) fn check_update_shape(resource_type: &str, url_id: Option<&str>, resource: &Value) -> Result<()> {
    let body_type = crate::resource::resource_type(resource)?;
    if body_type != resource_type {
        return Err(Error::invalid(format!("the resource is a {body_type}, not a {resource_type}")));
    }
    let id = body_id(resource)?;
    let Some(url_id) = url_id else { return Ok(()) };
    check_id(url_id)?;
    let problem = match id {
        None => Issue::error(IssueCode::Required, "an update needs the resource id in the body"),
        Some(id) if id != url_id => {
            Issue::error(IssueCode::Invalid, format!("the resource id `{id}` is not `{url_id}` of the URL"))
        }
        Some(_) => return Ok(()),
    };
    Err(Error::Invalid(vec![problem.at(format!("{resource_type}.id"))]))
}

/// Criteria of a conditional operation on `resource_type` (a `Type?` prefix is tolerated);
/// empty criteria are refused, as they would match everything.
pub(crate) fn conditional_criteria(query: &str, resource_type: &str) -> Result<Criteria> {
    let query = match query.split_once('?') {
        Some((prefix, rest)) if prefix.is_empty() || prefix == resource_type => rest,
        Some((prefix, _)) => {
            return Err(Error::invalid(format!("criteria for {prefix} used on a {resource_type}")));
        }
        None => query,
    };
    let criteria = Criteria::parse(query)?;
    if criteria.is_empty() {
        return Err(Error::invalid("a conditional operation needs search criteria"));
    }
    Ok(criteria)
}

/// The issues of `error`, each naming resource number `index` of a load.
fn located_issues(error: Error, index: usize) -> Vec<Issue> {
    error
        .issues()
        .into_iter()
        .map(|mut issue| {
            issue.diagnostics = format!("resource {index}: {}", issue.diagnostics);
            issue
        })
        .collect()
}

fn not_found(resource_type: &str, id: &str) -> Error {
    Error::NotFound { resource_type: resource_type.to_string(), id: id.to_string() }
}

fn gone(version: &ResourceVersion) -> Error {
    Error::Gone { resource_type: version.resource_type.clone(), id: version.id.clone(), version: version.version }
}
