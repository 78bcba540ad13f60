//! The access decision at the HTTP edge: every FHIR interaction asks [`policy::Policy`]
//! before it touches the store, and checks each resource it hands out or overwrites.
//!
//! A server built without a policy ([`crate::AppState::new`] alone) is open: that is for the
//! REST layer's own tests and for benchmarks comparing the cost of access control; `continuum
//! serve` always installs the policy unless told `--no-auth`.

use crate::{ApiError, AppState};
use auth::Interaction;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use fhir::IssueCode;
use policy::{Caller, Policy, Reach, Refusal, Restriction};
use search::query::SearchQuery;
use serde_json::Value;
use std::sync::Arc;
use store::ResourceVersion;

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unauthenticated(why) => ApiError::new(StatusCode::UNAUTHORIZED, IssueCode::Login, why),
            Refusal::Forbidden(why) => ApiError::new(StatusCode::FORBIDDEN, IssueCode::Forbidden, why),
            Refusal::Hidden => ApiError::not_found("resource not found"),
            Refusal::Store(e) => ApiError::from(e),
        }
    }
}

/// Who is calling: nobody checked (an open server) or an authenticated caller.
#[derive(Clone)]
pub(crate) enum Access {
    Open,
    Caller { policy: Arc<Policy>, caller: Arc<Caller>, address: Option<std::net::SocketAddr> },
}

impl FromRequestParts<AppState> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(policy) = state.policy().cloned() else { return Ok(Access::Open) };
        let header = parts.headers.get(header::AUTHORIZATION).map(|v| v.to_str().map(str::to_string));
        let header = match header {
            Some(Ok(h)) => Some(h),
            Some(Err(_)) => {
                return Err(Refusal::Unauthenticated("the Authorization header is not readable".into()).into());
            }
            None => None,
        };
        let checking = policy.clone();
        let caller = tokio::task::spawn_blocking(move || checking.authenticate(header.as_deref()))
            .await
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, IssueCode::Exception, "request failed"))??;
        let caller = Arc::new(caller);
        if let Some(slot) = parts.extensions.get::<crate::audit::CallerSlot>() {
            let _ = slot.0.set(caller.clone());
        }
        let address = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
        Ok(Access::Caller { policy, caller, address })
    }
}

/// The decision for one interaction on one type, carried into the blocking work that checks
/// each resource.
#[derive(Clone)]
pub(crate) struct Gate {
    inner: Option<GateInner>,
}

#[derive(Clone)]
struct GateInner {
    policy: Arc<Policy>,
    caller: Arc<Caller>,
    restriction: Restriction,
    resource_type: String,
}

impl Access {
    /// The type-level decision (403 when the scopes or roles do not allow it).
    pub(crate) fn gate(
        &self,
        interaction: Interaction,
        resource_type: &str,
        params: &[(String, String)],
    ) -> Result<Gate, ApiError> {
        match self {
            Access::Open => Ok(Gate { inner: None }),
            Access::Caller { policy, caller, .. } => {
                let restriction = policy.authorize(caller, interaction, resource_type, params)?;
                Ok(Gate {
                    inner: Some(GateInner {
                        policy: policy.clone(),
                        caller: caller.clone(),
                        restriction,
                        resource_type: resource_type.to_string(),
                    }),
                })
            }
        }
    }

    /// Whether the caller sees only part of `resource_type` (limited to some patients, or by
    /// scope constraints or hidden categories), as opposed to open or an unlimited service.
    pub(crate) fn restricted_for(&self, interaction: Interaction, resource_type: &str) -> Result<bool, ApiError> {
        let gate = self.gate(interaction, resource_type, &[])?;
        Ok(gate.restricted())
    }

    /// Narrows a parsed search to what the caller may see (each type by its own rule, chains,
    /// `_has` and `_contained` containers included); 403 when a type is not theirs to search.
    pub(crate) fn narrow(
        &self,
        interaction: Interaction,
        query: &mut SearchQuery,
        params: &[(String, String)],
    ) -> Result<(), ApiError> {
        match self {
            Access::Open => Ok(()),
            Access::Caller { policy, caller, .. } => Ok(policy.narrow(caller, interaction, query, params)?),
        }
    }

    /// The policy, after a write: forget computed reaches when the write may change them.
    pub(crate) fn written(&self, resource_type: &str) {
        if let Access::Caller { policy, .. } = self
            && Policy::changes_reach(resource_type)
        {
            policy.forget_reaches();
        }
    }

    /// The records to write through: as the caller (each version checked by the policy and
    /// audited inside its own transaction), or as they are on an open server.
    pub(crate) fn records(&self, records: &store::Records) -> store::Records {
        match self {
            Access::Open => records.clone(),
            Access::Caller { policy, caller, address } => {
                records.as_actor(crate::audit::actor(caller, *address, None)).guarded(policy.guard(caller.clone()))
            }
        }
    }

    /// The patient a patient or proxy caller acts for.
    pub(crate) fn own_patient(&self) -> Option<String> {
        match self {
            Access::Caller { caller, .. } => caller.own_patient().map(str::to_string),
            Access::Open => None,
        }
    }

    /// After a Bundle: it may have written anything, so computed reaches are forgotten.
    pub(crate) fn bundle_written(&self) {
        if let Access::Caller { policy, .. } = self {
            policy.forget_reaches();
        }
    }

    /// Break-the-glass for `patient`.
    pub(crate) fn break_glass(&self, patient: &str, reason: &str) -> Result<std::time::Duration, ApiError> {
        match self {
            Access::Open => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                IssueCode::NotSupported,
                "this server runs without access control; there is no glass to break",
            )),
            Access::Caller { policy, caller, .. } => Ok(policy.break_glass(caller, patient, reason)?),
        }
    }

    /// Whether the caller may open `patient` at all (for `$everything`).
    pub(crate) fn may_open_patient(&self, patient: &str) -> Result<bool, ApiError> {
        match self {
            Access::Open => Ok(true),
            Access::Caller { policy, caller, .. } => Ok(policy.may_open_patient(caller, patient)?),
        }
    }

    /// Whether the caller may see one resource (an included one, a history entry).
    pub(crate) fn may_read(&self, version: &ResourceVersion) -> Result<bool, ApiError> {
        let Access::Caller { policy, caller, .. } = self else { return Ok(true) };
        let Some(body) = version.body.as_deref() else { return Ok(true) };
        let resource: Value = serde_json::from_str(body).map_err(|_| stored_json_unreadable())?;
        Ok(policy.may_read(caller, &version.resource_type, &resource)?)
    }
}

fn stored_json_unreadable() -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, IssueCode::Exception, "a stored resource could not be read")
}

impl Gate {
    /// Checks a resource the caller reads, or the current version it overwrites or deletes.
    pub(crate) fn check_version(&self, version: &ResourceVersion) -> Result<(), ApiError> {
        let Some(inner) = &self.inner else { return Ok(()) };
        let Some(body) = version.body.as_deref() else { return Ok(()) };
        let resource: Value = serde_json::from_str(body).map_err(|_| stored_json_unreadable())?;
        inner.policy.check_resource(&inner.caller, &inner.restriction, &inner.resource_type, &resource)?;
        Ok(())
    }

    /// A read of a deleted resource answers 410 only when the caller could see its last
    /// version with content; otherwise it is, for them, a resource that never existed (404).
    pub(crate) fn hide_gone(&self, records: &store::Records, error: store::Error) -> ApiError {
        let store::Error::Gone { resource_type, id, version } = &error else { return error.into() };
        let Some(inner) = &self.inner else { return error.into() };
        let last = (1..*version)
            .rev()
            .find_map(|v| records.backend().version(resource_type, id, v).ok().flatten().filter(|v| v.body.is_some()));
        let visible = last
            .as_ref()
            .and_then(|v| v.body.as_deref())
            .and_then(|b| serde_json::from_str::<Value>(b).ok())
            .is_some_and(|resource| {
                inner.policy.check_resource(&inner.caller, &inner.restriction, &inner.resource_type, &resource).is_ok()
            });
        if visible { error.into() } else { ApiError::not_found("resource not found") }
    }

    /// Whether the caller sees only part of the type (limited to some patients, or by scope
    /// constraints or hidden categories).
    pub(crate) fn restricted(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|g| matches!(g.restriction.reach, Reach::Patients(_)) || !g.restriction.pairs.is_empty())
    }
}

/// Checks every entry of a Bundle a caller posts: the type-level decision for each entry's
/// interaction. What each entry writes is checked as it is stored (the policy's guard on the
/// write path, with references resolved); reads inside a Bundle are not available to callers
/// who see only part of a type (they would bypass the search narrowing).
pub(crate) fn check_bundle(access: &Access, bundle: &Value) -> Result<(), ApiError> {
    let Access::Caller { .. } = access else { return Ok(()) };
    for entry in bundle.get("entry").and_then(Value::as_array).into_iter().flatten() {
        let method = entry.pointer("/request/method").and_then(Value::as_str).unwrap_or("");
        let url = entry.pointer("/request/url").and_then(Value::as_str).unwrap_or("");
        let path = url.split_once('?').map_or(url, |(p, _)| p);
        let resource_type = path.trim_start_matches('/').split('/').next().unwrap_or("");
        if !fhir::definitions().is_resource_type(resource_type) {
            return Err(ApiError::bad_request("a Bundle entry's request.url does not name a resource type"));
        }
        let interaction = match method {
            "POST" => Interaction::Create,
            "PUT" | "PATCH" => Interaction::Update,
            "DELETE" => Interaction::Delete,
            _ => Interaction::Read,
        };
        let gate = access.gate(interaction, resource_type, &[])?;
        if interaction == Interaction::Read && gate.restricted() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                IssueCode::Forbidden,
                "reads in a Bundle are not available to you; send them as separate requests",
            ));
        }
    }
    Ok(())
}
