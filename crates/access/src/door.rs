//! [`Door`] (shared by every edge) and [`Access`] (one caller's handle on it).

use crate::{Auditor, Error};
use auth::Interaction;
use policy::{Caller, Policy, Reach, Restriction};
use search::query::SearchQuery;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use store::audit::{Action, Agent, Happening, NewAuditEntry, Outcome, Subtype};
use store::{HistoryQuery, Records, ResourceVersion, SearchPage, WriteKind, WriteOutcome};

/// The door to one store: the records, the policy that decides (none: an open door, for the
/// REST layer's own tests and benchmarks without access control), and the auditor.
#[derive(Clone)]
pub struct Door {
    inner: Arc<DoorInner>,
}

struct DoorInner {
    records: Records,
    policy: Option<Arc<Policy>>,
    auditor: Option<Arc<Auditor>>,
}

/// Who comes through the door.
#[derive(Clone)]
pub enum Who {
    /// Anyone: the door has no policy (an open server).
    Anyone,
    /// An authenticated person or app, from a network address.
    Caller {
        /// The caller, as the policy accepted their token.
        caller: Arc<Caller>,
        /// Where the request came from.
        address: Option<SocketAddr>,
    },
    /// A named job of the server itself (the subscription sender, a scheduled export), acting
    /// for no person: unrestricted, and audited under its name.
    Job(&'static str),
}

impl Door {
    /// A door without access control: everything is allowed and nothing audited.
    pub fn open(records: Records) -> Door {
        Door { inner: Arc::new(DoorInner { records, policy: None, auditor: None }) }
    }

    /// A door deciding with `policy` and auditing through `auditor`.
    pub fn secured(records: Records, policy: Arc<Policy>, auditor: Option<Arc<Auditor>>) -> Door {
        Door { inner: Arc::new(DoorInner { records, policy: Some(policy), auditor }) }
    }

    /// The policy, when the door has one.
    pub fn policy(&self) -> Option<&Arc<Policy>> {
        self.inner.policy.as_ref()
    }

    /// The auditor, when the door audits.
    pub fn auditor(&self) -> Option<&Arc<Auditor>> {
        self.inner.auditor.as_ref()
    }

    /// The records behind the door, for what is no person's or app's access: validation,
    /// the base URL, health checks.
    pub fn records(&self) -> &Records {
        &self.inner.records
    }

    /// Turns an `Authorization` header into a caller (blocking: reads the token store and, for
    /// staff, their reach). An open door accepts anyone.
    pub fn authenticate(&self, authorization: Option<&str>, address: Option<SocketAddr>) -> Result<Who, Error> {
        match &self.inner.policy {
            None => Ok(Who::Anyone),
            Some(policy) => Ok(Who::Caller { caller: Arc::new(policy.authenticate(authorization)?), address }),
        }
    }

    /// The handle through which `who` reaches the record.
    pub fn enter(&self, who: Who) -> Access {
        let who = match (&self.inner.policy, who) {
            // A door without policy lets nobody be anybody in particular.
            (None, _) => Who::Anyone,
            (Some(_), who) => who,
        };
        Access {
            inner: Arc::new(AccessInner {
                door: self.clone(),
                who,
                pending: Mutex::new(Vec::new()),
                used: AtomicBool::new(false),
            }),
        }
    }
}

/// One caller's handle on the door. Cheap to clone (clones share what is noted for the audit).
/// Its methods are synchronous: run them on a blocking thread. What they read is noted for the
/// audit on the handle; the edge must [`settle`](Access::settle) it before serving.
#[derive(Clone)]
pub struct Access {
    inner: Arc<AccessInner>,
}

struct AccessInner {
    door: Door,
    who: Who,
    pending: Mutex<Vec<NewAuditEntry>>,
    used: AtomicBool,
}

impl Drop for AccessInner {
    fn drop(&mut self) {
        let pending = std::mem::take(self.pending.get_mut().unwrap_or_else(|p| p.into_inner()));
        if pending.is_empty() {
            return;
        }
        // An edge that forgot to settle: the entries still go to the trail.
        tracing::error!(count = pending.len(), "a door handle was dropped with unsettled audit entries");
        if let Some(auditor) = &self.door.inner.auditor
            && !auditor.queue_without_waiting(pending)
        {
            tracing::error!("the unsettled audit entries could not be queued");
        }
    }
}

/// A `Patient/[id]/$everything` request, its parameters read (see the `export` service).
#[derive(Debug, Clone, Default)]
pub struct Everything {
    /// The types asked for (`_type`); `None`: every type of the Patient compartment.
    pub types: Option<Vec<String>>,
    /// Only versions changed since (`_since`).
    pub since: Option<search::values::DateRange>,
    /// The page cursor (`_page`).
    pub page: Option<String>,
    /// The parameters to echo in the paging links.
    pub echo: Vec<(String, String)>,
    /// Other records of the same person (linked by the patient index) whose compartments are
    /// included too, those the caller may open.
    pub linked: Vec<String>,
}

impl Access {
    /// Who this handle acts for.
    pub fn who(&self) -> &Who {
        &self.inner.who
    }

    /// The caller, for a person or an app.
    pub fn caller(&self) -> Option<&Arc<Caller>> {
        match &self.inner.who {
            Who::Caller { caller, .. } => Some(caller),
            _ => None,
        }
    }

    /// The door it was made by.
    pub fn door(&self) -> &Door {
        &self.inner.door
    }

    fn records(&self) -> &Records {
        &self.inner.door.inner.records
    }

    fn policy_and_caller(&self) -> Option<(&Arc<Policy>, &Arc<Caller>)> {
        match (&self.inner.door.inner.policy, &self.inner.who) {
            (Some(policy), Who::Caller { caller, .. }) => Some((policy, caller)),
            _ => None,
        }
    }

    /// Whether any interaction went through this handle (an edge audits the rest itself).
    pub fn used(&self) -> bool {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// Appends what this handle noted to the audit trail and waits until it is durable. Call
    /// before serving what was read; on `Err` serve 503 instead.
    pub async fn settle(&self) -> Result<(), crate::AuditUnavailable> {
        let pending = std::mem::take(&mut *self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()));
        match &self.inner.door.inner.auditor {
            Some(auditor) if !pending.is_empty() => auditor.record(pending).await,
            _ => Ok(()),
        }
    }

    /// Hands what this handle noted to the auditor's next batch without waiting for it to be
    /// durable: for a job whose reads serve nobody a page (an interface matching what it
    /// receives), from blocking code. `false` when the auditor's queue is full or it stopped
    /// (the entries are then lost, and the error logged).
    pub fn settle_queued(&self) -> bool {
        let pending = std::mem::take(&mut *self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()));
        match &self.inner.door.inner.auditor {
            Some(auditor) if !pending.is_empty() => {
                let queued = auditor.queue_without_waiting(pending);
                if !queued {
                    tracing::error!("audit entries of a job could not be queued");
                }
                queued
            }
            _ => true,
        }
    }

    /// The patient a patient or proxy caller acts for.
    pub fn own_patient(&self) -> Option<String> {
        self.caller().and_then(|c| c.own_patient().map(str::to_string))
    }

    // ----- the decisions -----

    /// The type-level decision (403 when the scopes or roles do not allow it); `None` for an
    /// unrestricted caller.
    fn allow(
        &self,
        interaction: Interaction,
        resource_type: &str,
        params: &[(String, String)],
    ) -> Result<Option<Restriction>, Error> {
        match self.policy_and_caller() {
            None => Ok(None),
            Some((policy, caller)) => Ok(Some(policy.authorize(caller, interaction, resource_type, params)?)),
        }
    }

    /// Refuses (403) unless the caller may do `interaction` on `resource_type` at all (forms
    /// are not offered to those whose posts would be refused).
    pub fn may(&self, interaction: Interaction, resource_type: &str) -> Result<(), Error> {
        self.allow(interaction, resource_type, &[]).map(drop)
    }

    /// Whether the caller sees only part of `resource_type` (some patients, scope
    /// constraints, hidden categories), as opposed to all of it.
    pub fn restricted(&self, interaction: Interaction, resource_type: &str) -> Result<bool, Error> {
        Ok(self.allow(interaction, resource_type, &[])?.is_some_and(|r| is_restricted(&r)))
    }

    /// Whether the caller may open `patient`'s record at all.
    pub fn may_open_patient(&self, patient: &str) -> Result<bool, Error> {
        match self.policy_and_caller() {
            None => Ok(true),
            Some((policy, caller)) => Ok(policy.may_open_patient(caller, patient)?),
        }
    }

    fn check(&self, restriction: &Option<Restriction>, version: &ResourceVersion) -> Result<(), Error> {
        let (Some(restriction), Some((policy, caller))) = (restriction, self.policy_and_caller()) else {
            return Ok(());
        };
        let Some(body) = version.body.as_deref() else { return Ok(()) };
        let resource: Value = serde_json::from_str(body).map_err(|_| unreadable())?;
        policy.check_resource(caller, restriction, &version.resource_type, &resource)?;
        Ok(())
    }

    /// Whether the caller may see one version (an included resource, a history entry).
    fn may_read(&self, version: &ResourceVersion) -> Result<bool, Error> {
        let Some((policy, caller)) = self.policy_and_caller() else { return Ok(true) };
        let Some(body) = version.body.as_deref() else { return Ok(true) };
        let resource: Value = serde_json::from_str(body).map_err(|_| unreadable())?;
        Ok(policy.may_read(caller, &version.resource_type, &resource)?)
    }

    /// The records as this caller writes them: every version checked by the policy's guard
    /// and audited inside its own transaction.
    fn writer(&self, patient: Option<&str>) -> Records {
        let records = self.records();
        match (&self.inner.door.inner.policy, &self.inner.who) {
            (Some(policy), Who::Caller { caller, address }) => {
                records.as_actor(actor(caller, *address, patient)).guarded(policy.guard(caller.clone()))
            }
            (Some(_), Who::Job(name)) => records.as_actor(Agent::system(name)),
            _ => records.clone(),
        }
    }

    // ----- reads -----

    /// Refuses with not-found unless a live `resource_type/id` exists; shows nothing of it
    /// (staff need to know that a patient outside their reach exists, to break the glass).
    pub fn exists(&self, resource_type: &str, id: &str) -> Result<(), Error> {
        self.records().read(resource_type, id)?;
        Ok(())
    }

    /// The current version of `resource_type/id`, when the caller may see it.
    pub fn read(&self, resource_type: &str, id: &str) -> Result<ResourceVersion, Error> {
        let entity = format!("{resource_type}/{id}");
        let result = (|| {
            let restriction = self.allow(Interaction::Read, resource_type, &[])?;
            let version =
                self.records().read(resource_type, id).map_err(|e| self.hide_gone(&restriction, resource_type, e))?;
            self.check(&restriction, &version)?;
            Ok(version)
        })();
        self.note_result(Action::Read, Subtype::Read, &result, |v| vec![v], Some(&entity), None);
        result
    }

    /// One version of `resource_type/id`, when the caller may see it.
    pub fn vread(&self, resource_type: &str, id: &str, version: u64) -> Result<ResourceVersion, Error> {
        let entity = format!("{resource_type}/{id}/_history/{version}");
        let result = (|| {
            let restriction = self.allow(Interaction::Read, resource_type, &[])?;
            let found = self
                .records()
                .vread(resource_type, id, version)
                .map_err(|e| self.hide_gone(&restriction, resource_type, e))?;
            self.check(&restriction, &found)?;
            Ok(found)
        })();
        self.note_result(Action::Read, Subtype::Vread, &result, |v| vec![v], Some(&entity), None);
        result
    }

    /// A deleted resource answers 410 only when the caller could see its last version with
    /// content; otherwise it is, for them, a resource that never existed (404).
    fn hide_gone(&self, restriction: &Option<Restriction>, resource_type: &str, error: store::Error) -> Error {
        let store::Error::Gone { id, version, .. } = &error else { return error.into() };
        if restriction.is_none() {
            return error.into();
        }
        let last = (1..*version).rev().find_map(|v| {
            self.records().backend().version(resource_type, id, v).ok().flatten().filter(|v| v.body.is_some())
        });
        match last {
            Some(last) if self.check(restriction, &last).is_ok() => error.into(),
            _ => Error::Hidden,
        }
    }

    /// Runs a parsed search, narrowed first to what the caller may see (each type by its own
    /// rule, chains, `_has` and `_contained` containers included), returning up to `count`
    /// matches and the included resources the caller may see. `params` are the request's
    /// (with a compartment's owner as `patient`); `subtype` is how the audit names it.
    pub fn search(
        &self,
        mut query: SearchQuery,
        params: &[(String, String)],
        count: usize,
        subtype: Subtype,
    ) -> Result<SearchPage, Error> {
        // The audit's query text only when there is an audit.
        let text = self.inner.door.inner.auditor.as_ref().and_then(|_| query_text(params));
        let result = (|| {
            if let Some((policy, caller)) = self.policy_and_caller() {
                policy.narrow(caller, Interaction::Search, &mut query, params)?;
            }
            let mut page = self.records().search(&query, count)?;
            self.keep_visible_included(&mut page)?;
            Ok(page)
        })();
        let patient = named_patient(params);
        self.note_result(
            Action::Execute,
            subtype,
            &result,
            |page: &SearchPage| page.matches.iter().chain(&page.included).collect(),
            None,
            Some((text.as_deref(), patient.as_deref())),
        );
        result
    }

    /// The live resources of `resource_type` carrying the identifier `system|value` (`system`
    /// `None`: any system) that the caller may see, by the store's identifier index (an
    /// interface matching what it receives to what is recorded). Audited as a search.
    pub fn by_identifier(
        &self,
        resource_type: &str,
        system: Option<&str>,
        value: &str,
    ) -> Result<Vec<ResourceVersion>, Error> {
        let result = (|| {
            let restriction = self.allow(Interaction::Search, resource_type, &[])?;
            let mut found = Vec::new();
            for id in self.records().backend().find_by_identifier(resource_type, system, value)? {
                // Deleted meanwhile: not there any more.
                let Ok(version) = self.records().read(resource_type, &id) else { continue };
                if restriction.is_none() || self.check(&restriction, &version).is_ok() {
                    found.push(version);
                }
            }
            Ok(found)
        })();
        let text = self.inner.door.inner.auditor.as_ref().map(|_| format!("{resource_type}?identifier"));
        self.note_result(
            Action::Execute,
            Subtype::SearchType,
            &result,
            |found: &Vec<ResourceVersion>| found.iter().collect(),
            None,
            Some((text.as_deref(), None)),
        );
        result
    }

    fn keep_visible_included(&self, page: &mut SearchPage) -> Result<(), Error> {
        if self.policy_and_caller().is_none() {
            return Ok(());
        }
        let mut kept = Vec::with_capacity(page.included.len());
        for version in std::mem::take(&mut page.included) {
            if self.may_read(&version)? {
                kept.push(version);
            }
        }
        page.included = kept;
        Ok(())
    }

    /// The other records of the same person that the caller may open: `Patient.link` of
    /// type `seealso` (the patient index's links) of the patient's record. None when the
    /// caller cannot read that record (what asked for them then refuses on its own). The
    /// record read is audited like any read.
    pub fn linked_records(&self, patient: &str) -> Result<Vec<String>, Error> {
        let version = match self.read("Patient", patient) {
            Ok(version) => version,
            Err(Error::Hidden | Error::Forbidden(_) | Error::Store(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let Some(body) = version.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else {
            return Ok(Vec::new());
        };
        let mut linked = Vec::new();
        let links = body.get("link").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for link in links {
            if link.get("type").and_then(Value::as_str) != Some("seealso") {
                continue;
            }
            let Some(id) =
                link.pointer("/other/reference").and_then(Value::as_str).and_then(|r| r.strip_prefix("Patient/"))
            else {
                continue;
            };
            if fhir::reference::is_id(id)
                && id != patient
                && !linked.iter().any(|l| l == id)
                && self.may_open_patient(id)?
            {
                linked.push(id.to_string());
            }
        }
        Ok(linked)
    }

    /// `Patient/[id]/$everything`: the patient's compartment, only the types the caller may
    /// read, narrowed like any search. Returns the query run (for paging links) and the page.
    pub fn everything(
        &self,
        patient: &str,
        asked: Everything,
        count: usize,
    ) -> Result<(SearchQuery, SearchPage), Error> {
        let params = [("patient".to_string(), patient.to_string())];
        let text = query_text(&asked.echo);
        let result = (|| {
            self.allow(Interaction::Read, "Patient", &params)?;
            if !self.may_open_patient(patient)? {
                return Err(Error::Hidden);
            }
            self.records().read("Patient", patient)?;
            let mut types = asked.types;
            if self.policy_and_caller().is_some() {
                let wanted = match types.take() {
                    Some(wanted) => wanted,
                    None => SearchQuery::everything(patient, None, None)?.types,
                };
                let readable: Vec<String> =
                    wanted.into_iter().filter(|t| self.allow(Interaction::Read, t, &[]).is_ok()).collect();
                if readable.is_empty() {
                    // (An empty type list would mean every type.)
                    return Err(Error::Forbidden("nothing of $everything is readable by you".into()));
                }
                types = Some(readable);
            }
            let mut ids = vec![patient.to_string()];
            for other in &asked.linked {
                if !ids.contains(other) && self.may_open_patient(other)? {
                    ids.push(other.clone());
                }
            }
            let mut query = SearchQuery::everything_of(&ids, types.as_deref(), asked.since)?;
            query.page = asked.page;
            query.echo = asked.echo.clone();
            if let Some((policy, caller)) = self.policy_and_caller() {
                policy.narrow(caller, Interaction::Read, &mut query, &params)?;
            }
            let mut page = self.records().search(&query, count)?;
            self.keep_visible_included(&mut page)?;
            Ok((query, page))
        })();
        let entity = format!("Patient/{patient}");
        self.note_result(
            Action::Execute,
            Subtype::Operation,
            &result,
            |(_, page): &(SearchQuery, SearchPage)| page.matches.iter().chain(&page.included).collect(),
            Some(&entity),
            Some((text.as_deref(), Some(patient))),
        );
        result
    }

    /// History entries of `scope`, newest first, with the total. A resource's history is
    /// seen through its latest version with content; type and system history only by callers
    /// not limited to some patients (the entries' count would tell of the others).
    pub fn history(&self, scope: &HistoryQuery) -> Result<(Vec<ResourceVersion>, u64), Error> {
        let subtype = match (&scope.resource_type, &scope.id) {
            (Some(_), Some(_)) => Subtype::HistoryInstance,
            (Some(_), None) => Subtype::HistoryType,
            _ => Subtype::HistorySystem,
        };
        let entity = match (&scope.resource_type, &scope.id) {
            (Some(t), Some(id)) => Some(format!("{t}/{id}")),
            _ => None,
        };
        let result = (|| {
            let restriction = match (&scope.resource_type, &scope.id) {
                (Some(t), Some(_)) => self.allow(Interaction::Read, t, &[])?,
                (Some(t), None) => {
                    if self.restricted(Interaction::Search, t)? {
                        return Err(history_refused());
                    }
                    None
                }
                _ => {
                    if self.policy_and_caller().is_some()
                        && fhir::definitions()
                            .resource_types()
                            .into_iter()
                            .any(|t| self.restricted(Interaction::Search, t).unwrap_or(true))
                    {
                        return Err(history_refused());
                    }
                    None
                }
            };
            if let (Some(_), Some(t), Some(id)) = (&restriction, &scope.resource_type, &scope.id) {
                let latest = self
                    .records()
                    .history(&HistoryQuery {
                        resource_type: Some(t.clone()),
                        id: Some(id.clone()),
                        count: 2,
                        ..HistoryQuery::default()
                    })?
                    .into_iter()
                    .find(|v| v.body.is_some());
                if let Some(latest) = latest {
                    self.check(&restriction, &latest)?;
                }
            }
            let mut versions = self.records().history(scope)?;
            if restriction.is_some() {
                versions.retain(|v| self.check(&restriction, v).is_ok());
            }
            let total = self.records().history_total(scope)?;
            Ok((versions, total))
        })();
        self.note_result(
            Action::Read,
            subtype,
            &result,
            |(versions, _): &(Vec<ResourceVersion>, u64)| versions.iter().collect(),
            entity.as_deref(),
            None,
        );
        result
    }

    /// The audit trail (`GET AuditEvent`): administrators search all of it; a patient sees
    /// who opened their own record, and nothing of anyone else's.
    pub fn audit_trail(
        &self,
        mut query: store::audit::AuditQuery,
        params: &[(String, String)],
    ) -> Result<Vec<store::audit::AuditEntry>, Error> {
        let text = query_text(params);
        let result = (|| {
            let Some(auditor) = self.inner.door.auditor() else {
                return Err(Error::Store(store::Error::NotFound {
                    resource_type: "AuditEvent".into(),
                    id: "(this server keeps no audit trail)".into(),
                }));
            };
            if self.restricted(Interaction::Search, "AuditEvent")? {
                let own = self
                    .own_patient()
                    .ok_or_else(|| Error::Forbidden("the audit trail is for administrators".into()))?;
                match &query.patient {
                    Some(p) if p != &own => return Err(Error::Hidden),
                    _ => query.patient = Some(own),
                }
            }
            Ok(auditor.log().search(&query)?)
        })();
        let patient = named_patient(params);
        self.note_result(
            Action::Execute,
            Subtype::SearchType,
            &result,
            |_| Vec::new(),
            None,
            Some((text.as_deref(), patient.as_deref())),
        );
        result
    }

    /// How the caller may see the resources of `resource_type` when a service streams many
    /// of them (a bulk export): `Ok(None)` when it sees every one (nothing to check per
    /// resource), `Ok(Some(check))` when each must pass [`TypeCheck::sees`], and 403 when
    /// it may read none.
    pub fn type_check(&self, resource_type: &str) -> Result<Option<TypeCheck>, Error> {
        let restriction = self.allow(Interaction::Read, resource_type, &[])?;
        match (restriction, self.policy_and_caller()) {
            (Some(restriction), Some((policy, caller))) if is_restricted(&restriction) => Ok(Some(TypeCheck {
                policy: policy.clone(),
                caller: caller.clone(),
                restriction,
                resource_type: resource_type.to_string(),
            })),
            _ => Ok(None),
        }
    }

    /// Notes an operation over many resources (a bulk export or import, by its job) for the
    /// audit: `entities` names what it concerned, `query` what was asked.
    pub fn noted_operation(&self, entities: Vec<String>, query: &str, patient: Option<&str>, outcome: Outcome) {
        self.note(Action::Execute, Subtype::Operation, outcome, entities, Some(query), patient, None);
    }

    // ----- writes -----

    /// Creates `resource` (with `If-None-Exist` criteria, an existing match is handed out
    /// instead, and audited as a read).
    pub fn create(&self, resource: Value, if_none_exist: Option<&str>) -> Result<WriteOutcome, Error> {
        let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_string();
        let result = (|| {
            self.allow(Interaction::Create, &resource_type, &[])?;
            Ok(self.writer(None).create(resource, if_none_exist)?)
        })();
        match &result {
            Ok(outcome) if outcome.kind == WriteKind::Matched => {
                self.note_versions(Action::Read, Subtype::Read, Outcome::Success, outcome.version.iter(), None);
            }
            _ => self.note_write(Action::Create, Subtype::Create, &result, Some(&resource_type)),
        }
        result
    }

    /// Writes `resource` as the next version of `resource_type/id` (or creates it with the
    /// client's id); `if_match`: the version the caller read (412 when it changed since).
    pub fn update(
        &self,
        resource_type: &str,
        id: &str,
        resource: Value,
        if_match: Option<u64>,
    ) -> Result<WriteOutcome, Error> {
        let result = (|| {
            self.allow(Interaction::Update, resource_type, &[])?;
            Ok(self.writer(None).update(resource_type, id, resource, if_match)?)
        })();
        self.note_write(Action::Update, Subtype::Update, &result, Some(&format!("{resource_type}/{id}")));
        result
    }

    /// Conditional update: no match creates, one match (among what the caller may see)
    /// updates it, several fail (412).
    pub fn conditional_update(
        &self,
        resource_type: &str,
        criteria: &str,
        resource: Value,
    ) -> Result<WriteOutcome, Error> {
        let result = (|| {
            self.allow(Interaction::Update, resource_type, &[])?;
            Ok(self.writer(None).conditional_update(resource_type, criteria, resource)?)
        })();
        self.note_write(Action::Update, Subtype::Update, &result, Some(resource_type));
        result
    }

    /// Applies a JSON Patch to the current version.
    pub fn patch(
        &self,
        resource_type: &str,
        id: &str,
        patch: &Value,
        if_match: Option<u64>,
    ) -> Result<WriteOutcome, Error> {
        let result = (|| {
            self.allow(Interaction::Update, resource_type, &[])?;
            Ok(self.writer(None).patch(resource_type, id, patch, if_match)?)
        })();
        self.note_write(Action::Update, Subtype::Patch, &result, Some(&format!("{resource_type}/{id}")));
        result
    }

    /// Deletes `resource_type/id`. One the caller may not see is, for them, one that does
    /// not exist: nothing to delete.
    pub fn delete(&self, resource_type: &str, id: &str, if_match: Option<u64>) -> Result<WriteOutcome, Error> {
        let entity = format!("{resource_type}/{id}");
        let result = (|| {
            self.allow(Interaction::Delete, resource_type, &[])?;
            match self.writer(None).delete(resource_type, id, if_match) {
                Err(store::Error::NotFound { .. }) => {
                    Ok(WriteOutcome { kind: WriteKind::NothingToDelete, version: None })
                }
                other => Ok(other?),
            }
        })();
        match &result {
            Ok(outcome) if outcome.kind == WriteKind::NothingToDelete => {
                self.note(Action::Delete, Subtype::Delete, Outcome::Success, vec![entity], None, None, None);
            }
            _ => self.note_write(Action::Delete, Subtype::Delete, &result, Some(&entity)),
        }
        result
    }

    /// Stores resources that carry their own ids (a bulk import) as creates or updates,
    /// validated, in one transaction, references unchecked; each version checked as stored
    /// and audited like any write.
    pub fn load(&self, resources: Vec<Value>) -> Result<usize, Error> {
        let result = (|| {
            let mut types: Vec<&str> =
                resources.iter().filter_map(|r| r.get("resourceType").and_then(Value::as_str)).collect();
            types.sort_unstable();
            types.dedup();
            for resource_type in types {
                self.allow(Interaction::Update, resource_type, &[])?;
            }
            Ok(self.writer(None).load(resources)?)
        })();
        self.note_write(Action::Update, Subtype::Update, &result, None);
        result
    }

    /// Conditional delete: deletes every match among what the caller may see.
    pub fn conditional_delete(&self, resource_type: &str, criteria: &str) -> Result<Vec<WriteOutcome>, Error> {
        let result = (|| {
            self.allow(Interaction::Delete, resource_type, &[])?;
            Ok(self.writer(None).conditional_delete(resource_type, criteria)?)
        })();
        self.note_write(Action::Delete, Subtype::Delete, &result, Some(resource_type));
        result
    }

    /// A `transaction` or `batch` Bundle: each entry allowed for its interaction and type
    /// first, what it writes checked as stored (references resolved), its reads and matched
    /// conditional creates audited as reads. Reads inside a Bundle are not available to
    /// callers who see only part of a type (they would bypass the search narrowing).
    pub fn transaction(&self, bundle: Value) -> Result<Value, Error> {
        self.transaction_for(bundle, None)
    }

    /// [`Access::transaction`], with the entries' audit naming `patient` (a chart's form).
    pub fn transaction_for(&self, bundle: Value, patient: Option<&str>) -> Result<Value, Error> {
        let reads: Vec<bool> = entries(&bundle)
            .map(|e| match e.pointer("/request/method").and_then(Value::as_str) {
                Some("GET") | Some("HEAD") => true,
                Some("POST") => e.pointer("/request/ifNoneExist").is_some(),
                _ => false,
            })
            .collect();
        let result = (|| {
            self.check_bundle(&bundle)?;
            Ok(self.writer(patient).process_bundle(bundle)?)
        })();
        match &result {
            Ok(response) => {
                let handed_out = bundle_reads(&reads, response);
                for (patient, refs) in group_by_patient(handed_out) {
                    self.note(Action::Read, Subtype::Read, Outcome::Success, refs, None, patient.as_deref(), None);
                }
                self.inner.used.store(true, Ordering::Relaxed);
            }
            Err(error) => {
                self.note(Action::Execute, Subtype::Transaction, outcome_of(error), Vec::new(), None, patient, None)
            }
        }
        result
    }

    fn check_bundle(&self, bundle: &Value) -> Result<(), Error> {
        if self.policy_and_caller().is_none() {
            return Ok(());
        }
        for entry in entries(bundle) {
            let method = entry.pointer("/request/method").and_then(Value::as_str).unwrap_or("");
            let url = entry.pointer("/request/url").and_then(Value::as_str).unwrap_or("");
            let path = url.split_once('?').map_or(url, |(p, _)| p);
            let resource_type = path.trim_start_matches('/').split('/').next().unwrap_or("");
            if !fhir::definitions().is_resource_type(resource_type) {
                return Err(Error::invalid("a Bundle entry's request.url does not name a resource type"));
            }
            let interaction = match method {
                "POST" => Interaction::Create,
                "PUT" | "PATCH" => Interaction::Update,
                "DELETE" => Interaction::Delete,
                _ => Interaction::Read,
            };
            let restriction = self.allow(interaction, resource_type, &[])?;
            if interaction == Interaction::Read && restriction.as_ref().is_some_and(is_restricted) {
                return Err(Error::Forbidden(
                    "reads in a Bundle are not available to you; send them as separate requests".into(),
                ));
            }
        }
        Ok(())
    }

    // ----- operations -----

    /// `Patient/[id]/$break-the-glass`: emergency access to a patient outside the caller's
    /// reach, for the reason given; time-limited and audited with its reason.
    pub fn break_glass(&self, patient: &str, reason: &str) -> Result<std::time::Duration, Error> {
        let result = match self.policy_and_caller() {
            None => Err(Error::Store(store::Error::NotSupported(
                "this server runs without access control; there is no glass to break".into(),
            ))),
            Some((policy, caller)) => policy.break_glass(caller, patient, reason).map_err(Error::from),
        };
        let outcome = result.as_ref().map_or_else(outcome_of, |_| Outcome::Success);
        self.note(
            Action::Execute,
            Subtype::Operation,
            outcome,
            vec![format!("Patient/{patient}")],
            None,
            Some(patient),
            Some(reason),
        );
        result
    }

    /// Notes that a page or view showed (part of) `patient`'s record, as `view` (the web
    /// app's page name), for the audit.
    pub fn viewed(&self, patient: &str, view: &str, outcome: Outcome) {
        let query = format!("app={view}");
        self.note(
            Action::Read,
            Subtype::Read,
            outcome,
            vec![format!("Patient/{patient}")],
            Some(&query),
            Some(patient),
            None,
        );
    }

    // ----- the audit notes -----

    #[allow(clippy::too_many_arguments)]
    fn note(
        &self,
        action: Action,
        subtype: Subtype,
        outcome: Outcome,
        entities: Vec<String>,
        query: Option<&str>,
        patient: Option<&str>,
        reason: Option<&str>,
    ) {
        self.inner.used.store(true, Ordering::Relaxed);
        if self.inner.door.inner.auditor.is_none() {
            return;
        }
        let who = match &self.inner.who {
            Who::Caller { caller, address } => actor(caller, *address, patient),
            Who::Job(name) => Agent::system(name),
            Who::Anyone => Agent { name: "anyone".into(), ..Agent::default() },
        };
        let happening = Happening { action, subtype, outcome, entities: &entities, query, patient, reason };
        let entry = store::audit::event(&who, &happening, time::OffsetDateTime::now_utc());
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    }

    fn note_versions<'v>(
        &self,
        action: Action,
        subtype: Subtype,
        outcome: Outcome,
        versions: impl IntoIterator<Item = &'v ResourceVersion>,
        query: Option<(Option<&str>, Option<&str>)>,
    ) {
        if self.inner.door.inner.auditor.is_none() {
            // Nothing to audit: no body is parsed for its patient.
            self.inner.used.store(true, Ordering::Relaxed);
            return;
        }
        let (text, named) = query.unwrap_or((None, None));
        let grouped = group_by_patient(
            versions
                .into_iter()
                .map(|v| (patient_of_version(v), format!("{}/{}/_history/{}", v.resource_type, v.id, v.version))),
        );
        if grouped.is_empty() {
            self.note(action, subtype, outcome, Vec::new(), text, named, None);
        }
        for (patient, refs) in grouped {
            self.note(action, subtype, outcome, refs, text, patient.as_deref().or(named), None);
        }
    }

    fn note_result<'r, T>(
        &self,
        action: Action,
        subtype: Subtype,
        result: &'r Result<T, Error>,
        handed_out: impl FnOnce(&'r T) -> Vec<&'r ResourceVersion>,
        entity: Option<&str>,
        query: Option<(Option<&str>, Option<&str>)>,
    ) {
        match result {
            Ok(value) => self.note_versions(action, subtype, Outcome::Success, handed_out(value), query),
            Err(error) => {
                let (text, named) = query.unwrap_or((None, None));
                let patient = named.map(str::to_string).or_else(|| entity.and_then(patient_of_entity));
                self.note(
                    action,
                    subtype,
                    outcome_of(error),
                    entity.map(str::to_string).into_iter().collect(),
                    text,
                    patient.as_deref(),
                    None,
                );
            }
        }
    }

    /// A write is audited by the store inside its transaction when it succeeds; a refused or
    /// failed one is noted here.
    fn note_write<T>(&self, action: Action, subtype: Subtype, result: &Result<T, Error>, entity: Option<&str>) {
        self.inner.used.store(true, Ordering::Relaxed);
        if let Err(error) = result {
            let entity = entity.filter(|e| e.contains('/'));
            let patient = entity.and_then(patient_of_entity);
            self.note(
                action,
                subtype,
                outcome_of(error),
                entity.map(str::to_string).into_iter().collect(),
                None,
                patient.as_deref(),
                None,
            );
        }
    }
}

/// The check of each resource of one type for a caller who sees only part of it (see
/// [`Access::type_check`]).
pub struct TypeCheck {
    policy: Arc<Policy>,
    caller: Arc<Caller>,
    restriction: Restriction,
    resource_type: String,
}

impl TypeCheck {
    /// Whether the caller may see `resource` (of the type checked).
    pub fn sees(&self, resource: &Value) -> Result<bool, Error> {
        match self.policy.check_resource(&self.caller, &self.restriction, &self.resource_type, resource) {
            Ok(()) => Ok(true),
            Err(policy::Refusal::Hidden) | Err(policy::Refusal::Forbidden(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// The agent of the audit trail for a caller (`patient`: the patient concerned, for the
/// break-the-glass flag).
pub fn actor(caller: &Caller, address: Option<SocketAddr>, patient: Option<&str>) -> Agent {
    let principal = &caller.principal;
    let name = principal.subject.name().to_string();
    Agent {
        who: principal.fhir_user(),
        name,
        client_id: principal.client_id.clone(),
        address: address.map(|a| a.ip().to_string()),
        emergency: patient.is_some_and(|p| caller.under_glass(p)),
    }
}

fn is_restricted(restriction: &Restriction) -> bool {
    matches!(restriction.reach, Reach::Patients(_)) || !restriction.pairs.is_empty()
}

fn history_refused() -> Error {
    Error::Forbidden("type and system history are not available to you; ask for a resource's history".into())
}

fn unreadable() -> Error {
    Error::Store(store::Error::Storage("a stored resource could not be read".into()))
}

fn outcome_of(error: &Error) -> Outcome {
    Outcome::of_status(error.class().status())
}

fn entries(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle.get("entry").and_then(Value::as_array).into_iter().flatten()
}

/// The request's parameters as a query string, for the audit.
fn query_text(params: &[(String, String)]) -> Option<String> {
    if params.is_empty() {
        return None;
    }
    let mut text = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        text.append_pair(name, value);
    }
    Some(text.finish())
}

/// The patient a request names by its `patient` or `subject` parameter.
fn named_patient(params: &[(String, String)]) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == "patient" || k == "subject")
        .map(|(_, v)| v.split(',').next().unwrap_or(v).trim_start_matches("Patient/").to_string())
        .filter(|v| fhir::reference::is_id(v))
}

fn patient_of_entity(entity: &str) -> Option<String> {
    let rest = entity.strip_prefix("Patient/")?;
    Some(rest.split('/').next().unwrap_or(rest).to_string())
}

fn patient_of_version(version: &ResourceVersion) -> Option<String> {
    if version.resource_type == "Patient" {
        return Some(version.id.clone());
    }
    version
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|json| store::compartment::patients_of(&version.resource_type, &json).into_iter().next())
}

/// `(patient, reference)` pairs grouped by patient, in first-seen order.
fn group_by_patient(pairs: impl IntoIterator<Item = (Option<String>, String)>) -> Vec<(Option<String>, Vec<String>)> {
    let mut grouped: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for (patient, reference) in pairs {
        match grouped.iter_mut().find(|(p, _)| *p == patient) {
            Some((_, refs)) => refs.push(reference),
            None => grouped.push((patient, vec![reference])),
        }
    }
    grouped
}

/// What a Bundle's reads and matching conditional creates handed out (`reads`: which entries
/// of the request were such).
fn bundle_reads(reads: &[bool], response: &Value) -> Vec<(Option<String>, String)> {
    let mut pairs = Vec::new();
    for (entry, _) in entries(response).zip(reads).filter(|(_, read)| **read) {
        let status = entry.pointer("/response/status").and_then(Value::as_str).unwrap_or_default();
        if !status.starts_with("200") {
            continue;
        }
        let Some(resource) = entry.get("resource") else {
            // A match answered by its location only.
            if let Some(location) = entry.pointer("/response/location").and_then(Value::as_str) {
                pairs.push((None, location.to_string()));
            }
            continue;
        };
        if resource.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            // A search entry's searchset: each match in it.
            pairs.extend(entries(resource).filter_map(|inner| inner.get("resource")).filter_map(handed_out));
            continue;
        }
        pairs.extend(handed_out(resource));
    }
    pairs
}

fn handed_out(resource: &Value) -> Option<(Option<String>, String)> {
    let t = resource.get("resourceType").and_then(Value::as_str)?;
    let id = resource.get("id").and_then(Value::as_str)?;
    let patient = if t == "Patient" {
        Some(id.to_string())
    } else {
        store::compartment::patients_of(t, resource).into_iter().next()
    };
    Some((patient, format!("{t}/{id}")))
}
