//! Reading and writing a chart on behalf of the signed-in user, through the policy: each
//! search is allowed for its type, narrowed to the user's reach (and hidden categories)
//! before it runs; each resource read by id is checked; each write is checked and goes
//! through the one write path as the user (validated and audited in its transaction).
//! Runs on blocking threads.

use crate::WebApp;
use crate::error::WebError;
use auth::Interaction;
use policy::Caller;
use search::query::SearchQuery;
use serde_json::Value;
use std::sync::Arc;
use store::audit::Happening;

/// Drops the version and time the store gave a resource read back (it sets them again on
/// the next write), and the `meta` left empty by that (FHIR's ele-1 forbids empty elements).
pub(crate) fn forget_version(resource: &mut Value) {
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            resource.as_object_mut().map(|r| r.remove("meta"));
        }
    }
}

/// A transaction entry that writes `resource` (read earlier) back as its next version, only
/// if nobody changed it meanwhile (`If-Match` on the version it was read at).
pub(crate) fn update_entry(mut resource: Value) -> Value {
    let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_string();
    let id = resource.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    let version = resource.pointer("/meta/versionId").and_then(Value::as_str).unwrap_or("1").to_string();
    forget_version(&mut resource);
    serde_json::json!({"resource": resource, "request": {
        "method": "PUT", "url": format!("{resource_type}/{id}"), "ifMatch": format!("W/\"{version}\"")}})
}

/// The user's view of the record.
pub(crate) struct Reader {
    pub app: WebApp,
    pub caller: Arc<Caller>,
    pub address: Option<std::net::SocketAddr>,
}

impl Reader {
    pub(crate) fn new(app: &WebApp, session: &crate::session::Session) -> Reader {
        Reader { app: app.clone(), caller: session.caller.clone(), address: session.address }
    }

    /// A search of `resource_type` with `pairs`, as the user may see it (up to `count`).
    pub(crate) fn search(
        &self,
        resource_type: &str,
        pairs: &[(&str, String)],
        count: usize,
    ) -> Result<Vec<Value>, WebError> {
        let policy = &self.app.inner.policy;
        let params: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let mut query = SearchQuery::parse(Some(resource_type), &params, false)
            .map_err(|e| WebError::BadRequest(issues_text(&e.0)))?;
        policy.narrow(&self.caller, Interaction::Search, &mut query, &params)?;
        let page = self.app.inner.records.search(&query, count)?;
        Ok(page.matches.iter().filter_map(|v| v.body.as_deref()).filter_map(|b| serde_json::from_str(b).ok()).collect())
    }

    /// Like [`Reader::search`], but `None` when the user's role may not read the type at all
    /// (a front desk and results, say): the page shows the rest and says what it leaves out.
    pub(crate) fn search_if_allowed(
        &self,
        resource_type: &str,
        pairs: &[(&str, String)],
        count: usize,
    ) -> Result<Option<Vec<Value>>, WebError> {
        match self.search(resource_type, pairs, count) {
            Ok(found) => Ok(Some(found)),
            Err(WebError::Forbidden(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// One resource, when the user may see it (else [`WebError::NotFound`]).
    pub(crate) fn read(&self, resource_type: &str, id: &str) -> Result<Value, WebError> {
        if !fhir::reference::is_id(id) {
            return Err(WebError::NotFound);
        }
        let policy = &self.app.inner.policy;
        let restriction = policy.authorize(&self.caller, Interaction::Read, resource_type, &[])?;
        let version = self.app.inner.records.read(resource_type, id)?;
        let resource: Value =
            version.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).ok_or(WebError::NotFound)?;
        policy.check_resource(&self.caller, &restriction, resource_type, &resource)?;
        Ok(resource)
    }

    /// Refuses (403) unless the user's role and scopes let them create `resource_type`: forms
    /// are not offered to those whose posts would be refused.
    pub(crate) fn may_create(&self, resource_type: &str) -> Result<(), WebError> {
        self.app.inner.policy.authorize(&self.caller, Interaction::Create, resource_type, &[])?;
        Ok(())
    }

    /// Whether the user may open this patient's chart at all.
    pub(crate) fn may_open(&self, patient: &str) -> Result<bool, WebError> {
        Ok(self.app.inner.policy.may_open_patient(&self.caller, patient)?)
    }

    /// Writes a new resource (or a new version of one) as the user: the type's write
    /// permission, the resource inside the user's reach, then the one write path.
    pub(crate) fn write(&self, resource: Value, patient: &str) -> Result<Value, WebError> {
        let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_string();
        let id = resource.get("id").and_then(Value::as_str).map(str::to_string);
        let interaction = if id.is_some() { Interaction::Update } else { Interaction::Create };
        let policy = &self.app.inner.policy;
        let restriction = policy.authorize(&self.caller, interaction, &resource_type, &[])?;
        policy.check_resource(&self.caller, &restriction, &resource_type, &resource).map_err(|r| match r {
            policy::Refusal::Hidden => WebError::Forbidden("you may not write to this patient's record".into()),
            other => other.into(),
        })?;
        if let Some(id) = &id {
            // The version overwritten must be one the user may see too.
            self.read(&resource_type, id)?;
        }
        let records = self.records(patient);
        let outcome = match id {
            Some(id) => records.update(&resource_type, &id, resource, None)?,
            None => records.create(resource, None)?,
        };
        if policy::Policy::changes_reach(&resource_type) {
            policy.forget_reaches();
        }
        let body = outcome.version.as_ref().and_then(|v| v.body.as_deref()).ok_or(WebError::Internal)?;
        serde_json::from_str(body).map_err(|_| WebError::Internal)
    }

    /// Writes a transaction Bundle as the user; every entry is a create or update inside the
    /// patient's record (checked here first).
    pub(crate) fn transaction(&self, bundle: Value, patient: &str) -> Result<Value, WebError> {
        let policy = &self.app.inner.policy;
        for entry in bundle.get("entry").and_then(Value::as_array).into_iter().flatten() {
            let resource = entry.get("resource").ok_or(WebError::Internal)?;
            let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
            let interaction = if entry.pointer("/request/method").and_then(Value::as_str) == Some("PUT") {
                Interaction::Update
            } else {
                Interaction::Create
            };
            let restriction = policy.authorize(&self.caller, interaction, resource_type, &[])?;
            policy.check_resource(&self.caller, &restriction, resource_type, resource).map_err(|r| match r {
                policy::Refusal::Hidden => WebError::Forbidden("you may not write to this patient's record".into()),
                other => other.into(),
            })?;
        }
        Ok(self.records(patient).process_bundle(bundle)?)
    }

    /// The records as the user writes them: every version checked by the policy's guard and
    /// audited inside its own transaction.
    fn records(&self, patient: &str) -> store::Records {
        self.app
            .inner
            .records
            .as_actor(server::audit::actor(&self.caller, self.address, Some(patient)))
            .guarded(self.app.inner.policy.guard(self.caller.clone()))
    }

    /// The audit entry of a page that showed (part of) `patient`'s chart.
    pub(crate) fn viewed(
        &self,
        patient: &str,
        page: &str,
        outcome: store::audit::Outcome,
    ) -> store::audit::NewAuditEntry {
        let actor = server::audit::actor(&self.caller, self.address, Some(patient));
        let entities = [format!("Patient/{patient}")];
        let query = format!("app={page}");
        let happening = Happening {
            action: store::audit::Action::Read,
            subtype: store::audit::Subtype::Read,
            outcome,
            entities: &entities,
            query: Some(&query),
            patient: Some(patient),
            reason: None,
        };
        store::audit::event(&actor, &happening, time::OffsetDateTime::now_utc())
    }
}

/// Appends a page view to the audit trail (when the app has one) and waits until it is
/// durable; when it cannot be appended the page is not shown (503).
pub(crate) async fn audit(app: &WebApp, entry: store::audit::NewAuditEntry) -> Result<(), WebError> {
    match &app.inner.auditor {
        Some(auditor) => auditor.record(vec![entry]).await.map_err(|_| WebError::AuditUnavailable),
        None => Ok(()),
    }
}

/// The diagnostics of issues, as one sentence for a page.
pub(crate) fn issues_text(issues: &[fhir::Issue]) -> String {
    issues.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; ")
}
