//! The door at the HTTP edge: the [`Caller`] extractor authenticates the request's bearer token
//! through [`access::Door`] and hands the handler an [`access::Access`] for it. Every FHIR
//! interaction then goes through that handle, which allows, narrows, checks and audits it; the
//! audit middleware settles the handle before the response leaves.
//!
//! A server built without a policy ([`crate::AppState::new`] alone) has an open door: that is
//! for the REST layer's own tests and for benchmarks comparing the cost of access control;
//! `continuum serve` always installs the policy unless told `--no-auth`.

use crate::{ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

/// The handler's way to the record: the door, entered as the request's caller.
pub(crate) struct Caller(pub access::Access);

impl std::ops::Deref for Caller {
    type Target = access::Access;

    fn deref(&self) -> &access::Access {
        &self.0
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let door = state.door().clone();
        let address = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
        let header = match parts.headers.get(header::AUTHORIZATION).map(|v| v.to_str().map(str::to_string)) {
            Some(Ok(h)) => Some(h),
            Some(Err(_)) => {
                return Err(access::Error::Unauthenticated("the Authorization header is not readable".into()).into());
            }
            None => None,
        };
        let who = if door.policy().is_some() {
            let checking = door.clone();
            crate::rest::blocking_checked(move || Ok(checking.authenticate(header.as_deref(), address)?)).await?
        } else {
            access::Who::Anyone
        };
        let handle = door.enter(who);
        if let Some(slot) = parts.extensions.get::<crate::audit::HandleSlot>() {
            let _ = slot.0.set(handle.clone());
        }
        Ok(Caller(handle))
    }
}
