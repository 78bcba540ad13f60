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
use search::query::{Filter, SearchQuery};
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

    /// Whether the caller is limited to some patients (as opposed to open or a service).
    pub(crate) fn restricted_for(&self, interaction: Interaction, resource_type: &str) -> Result<bool, ApiError> {
        let gate = self.gate(interaction, resource_type, &[])?;
        Ok(gate.inner.is_some_and(|g| matches!(g.restriction.reach, Reach::Patients(_))))
    }

    /// The policy, after a write: forget computed reaches when the write may change them.
    pub(crate) fn written(&self, resource_type: &str) {
        if let Access::Caller { policy, .. } = self
            && Policy::changes_reach(resource_type)
        {
            policy.forget_reaches();
        }
    }

    /// The records to write through: as the caller (each version audited in its own
    /// transaction), or as they are on an open server.
    pub(crate) fn records(&self, records: &store::Records) -> store::Records {
        match self {
            Access::Open => records.clone(),
            Access::Caller { caller, address, .. } => records.as_actor(crate::audit::actor(caller, *address, None)),
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

    /// Checks a resource the caller writes. A new Patient has no record to be part of yet:
    /// creating one needs only the type-level permission.
    pub(crate) fn check_new(&self, resource: &Value, creating: bool) -> Result<(), ApiError> {
        let Some(inner) = &self.inner else { return Ok(()) };
        if creating && inner.resource_type == "Patient" {
            return Ok(());
        }
        inner.policy.check_resource(&inner.caller, &inner.restriction, &inner.resource_type, resource).map_err(
            |refusal| match refusal {
                Refusal::Hidden => ApiError::new(
                    StatusCode::FORBIDDEN,
                    IssueCode::Forbidden,
                    "the resource must belong to a patient whose record you may write",
                ),
                other => other.into(),
            },
        )
    }

    /// Whether the caller is limited to some patients.
    pub(crate) fn restricted(&self) -> bool {
        self.inner.as_ref().is_some_and(|g| matches!(g.restriction.reach, Reach::Patients(_)))
    }

    /// Narrows a parsed search (`types` as searched) to what the caller may see.
    pub(crate) fn narrow(&self, query: &mut SearchQuery) -> Result<(), ApiError> {
        let Some(inner) = &self.inner else { return Ok(()) };
        query.filters.extend(restriction_filters(&inner.restriction, &query.types)?);
        inner.policy.restrict(&inner.restriction, query)?;
        Ok(())
    }

    /// Only the category filters of the restriction (for `$everything`, whose own filters
    /// already name the patient).
    pub(crate) fn narrow_categories(&self, query: &mut SearchQuery) -> Result<(), ApiError> {
        let Some(inner) = &self.inner else { return Ok(()) };
        query.filters.extend(restriction_filters(&inner.restriction, &query.types)?);
        Ok(())
    }
}

/// The restriction's extra parameters as filters on `types` (parsed apart from the request's
/// own, so that they never show in the Bundle's links).
fn restriction_filters(restriction: &Restriction, types: &[String]) -> Result<Vec<Filter>, ApiError> {
    if restriction.pairs.is_empty() {
        return Ok(Vec::new());
    }
    let parsed = match types {
        [one] => SearchQuery::parse(Some(one), &restriction.pairs, true),
        _ => {
            let mut pairs = vec![("_type".to_string(), types.join(","))];
            pairs.extend(restriction.pairs.iter().cloned());
            SearchQuery::parse(None, &pairs, true)
        }
    };
    parsed.map(|q| q.filters).map_err(|_| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            IssueCode::Forbidden,
            "the token's scope constraints do not apply to this search",
        )
    })
}

/// Checks every entry of a Bundle a restricted caller posts: creates and updates of
/// resources in their reach, deletes of resources they may delete; reads and conditional
/// entries are not available to them (they would bypass the per-resource checks).
pub(crate) fn check_bundle(access: &Access, records: &store::Records, bundle: &Value) -> Result<(), ApiError> {
    let Access::Caller { .. } = access else { return Ok(()) };
    for entry in bundle.get("entry").and_then(Value::as_array).into_iter().flatten() {
        let method = entry.pointer("/request/method").and_then(Value::as_str).unwrap_or("");
        let url = entry.pointer("/request/url").and_then(Value::as_str).unwrap_or("");
        let resource = entry.get("resource");
        let (path, query) = url.split_once('?').map_or((url, None), |(p, q)| (p, Some(q)));
        let mut parts = path.trim_start_matches('/').split('/');
        let (resource_type, id) = (parts.next().unwrap_or(""), parts.next());
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
        if !gate.restricted() {
            continue;
        }
        if interaction == Interaction::Read || query.is_some() && method != "POST" || method == "PATCH" {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                IssueCode::Forbidden,
                "reads, patches and conditional updates or deletes in a Bundle are not available to you; send them as separate requests",
            ));
        }
        let existing = match id {
            Some(id) => match records.backend().current(resource_type, id)? {
                Some(v) if !v.is_deleted() => Some(v),
                _ => None,
            },
            None => None,
        };
        if let Some(existing) = &existing {
            gate.check_version(existing)?;
        }
        if let Some(resource) = resource
            && interaction != Interaction::Delete
        {
            gate.check_new(resource, existing.is_none())?;
        }
    }
    Ok(())
}
