//! Extractors that every handler shares: content negotiation, the checked resource type and
//! id from the path, and the FHIR JSON body within the size limit.

use crate::format::{Query, negotiate, read_json};
use crate::{ApiError, AppState};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use serde_json::Value;
use std::collections::HashMap;

/// The decoded query of a request whose client accepts FHIR JSON (406 otherwise).
pub(crate) struct Negotiated(pub Query);

impl<S: Send + Sync> FromRequestParts<S> for Negotiated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = Query::parse(parts.uri.query());
        negotiate(&parts.headers, &query)?;
        Ok(Negotiated(query))
    }
}

async fn path_params<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<HashMap<String, String>, ApiError> {
    Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map(|Path(params)| params)
        .map_err(|_| ApiError::bad_request("the URL could not be decoded"))
}

fn checked_type(params: &mut HashMap<String, String>) -> Result<String, ApiError> {
    let resource_type = params.remove("resource_type").unwrap_or_default();
    if fhir::definitions().is_resource_type(&resource_type) {
        Ok(resource_type)
    } else {
        Err(ApiError::not_found("unknown resource type"))
    }
}

/// The resource type named by the path (404 when R4 has no such type).
pub(crate) struct TypeName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TypeName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        checked_type(&mut path_params(parts, state).await?).map(TypeName)
    }
}

/// `Type/id` named by the path, both checked.
pub(crate) struct Instance {
    pub resource_type: String,
    pub id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Instance {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let mut params = path_params(parts, state).await?;
        let resource_type = checked_type(&mut params)?;
        let id = params.remove("id").unwrap_or_default();
        if !fhir::reference::is_id(&id) {
            return Err(ApiError::bad_request("invalid resource id: ids are 1-64 characters of A-Z a-z 0-9 - ."));
        }
        Ok(Instance { resource_type, id })
    }
}

/// A JSON request body within the server's size limit (413, 415 and 400 otherwise).
pub(crate) struct FhirJson(pub Value);

impl FromRequest<AppState> for FhirJson {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        read_json(&parts.headers, body, state.limits().max_body_bytes).await.map(FhirJson)
    }
}
