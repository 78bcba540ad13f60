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
use store::audit::{Outcome, Subtype};

impl From<chart::Error> for WebError {
    fn from(error: chart::Error) -> Self {
        match error {
            chart::Error::Access(e) => e.into(),
            chart::Error::NotOnChart => WebError::NotFound,
            other if other.class() == fhir::ErrorClass::Forbidden => WebError::Forbidden(other.to_string()),
            other => WebError::BadRequest(other.to_string()),
        }
    }
}

/// The user's view of the record.
pub(crate) struct Reader {
    pub caller: Arc<Caller>,
    /// The door, entered as the user.
    pub access: access::Access,
}

impl Reader {
    pub(crate) fn new(app: &WebApp, session: &crate::session::Session) -> Reader {
        let who = access::Who::Caller { caller: session.caller.clone(), address: session.address };
        Reader { caller: session.caller.clone(), access: app.inner.door.enter(who) }
    }

    /// A search of `resource_type` with `pairs`, as the user may see it (up to `count`).
    pub(crate) fn search(
        &self,
        resource_type: &str,
        pairs: &[(&str, String)],
        count: usize,
    ) -> Result<Vec<Value>, WebError> {
        let params: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let query = SearchQuery::parse(Some(resource_type), &params, false)
            .map_err(|e| WebError::BadRequest(issues_text(&e.0)))?;
        let page = self.access.search(query, &params, count, Subtype::SearchType)?;
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

    /// One resource, when the user may see it (else [`WebError::NotFound`]), with its
    /// `meta.versionId`: a write of it back is made only if nobody changed it meanwhile.
    pub(crate) fn read(&self, resource_type: &str, id: &str) -> Result<Value, WebError> {
        if !fhir::reference::is_id(id) {
            return Err(WebError::NotFound);
        }
        let version = self.access.read(resource_type, id)?;
        version.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).ok_or(WebError::NotFound)
    }

    /// Refuses (403) unless the user's role and scopes let them create `resource_type`: forms
    /// are not offered to those whose posts would be refused.
    pub(crate) fn may_create(&self, resource_type: &str) -> Result<(), WebError> {
        Ok(self.access.may(Interaction::Create, resource_type)?)
    }

    /// Whether the user may open this patient's chart at all.
    pub(crate) fn may_open(&self, patient: &str) -> Result<bool, WebError> {
        Ok(self.access.may_open_patient(patient)?)
    }

    /// Notes, for the audit, that the page `page` showed (part of) `patient`'s chart.
    pub(crate) fn viewed(&self, patient: &str, page: &str, outcome: Outcome) {
        self.access.viewed(patient, page, outcome);
    }
}

/// Appends what the page read to the audit trail and waits until it is durable; when it
/// cannot be appended the page is not shown (503).
pub(crate) async fn settle(access: &access::Access) -> Result<(), WebError> {
    access.settle().await.map_err(|_| WebError::AuditUnavailable)
}

/// Runs `work` as the user on a blocking thread, then settles what it read with the audit
/// trail (whether it succeeded or not) before its answer is used.
pub(crate) async fn as_user<T: Send + 'static>(
    reader: Reader,
    work: impl FnOnce(&Reader) -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    let access = reader.access.clone();
    let done = crate::error::blocking(move || work(&reader)).await;
    settle(&access).await?;
    done
}

/// The diagnostics of issues, as one sentence for a page.
pub(crate) fn issues_text(issues: &[fhir::Issue]) -> String {
    issues.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; ")
}
