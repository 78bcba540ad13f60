//! The HTTP edge of patient identity (the `exchange::identity` service): `Patient/$match`.
//! Parses, calls the service on the blocking pool, renders.

use crate::bulk_data::body_of;
use crate::caller::Caller;
use crate::format::fhir_json_response;
use crate::rest::blocking_checked;
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::Response;
use exchange::identity::{Identity, Match};
use serde_json::{Value, json};

/// The extension that grades a `$match` entry (FHIR R4 core).
pub(crate) const MATCH_GRADE: &str = "http://hl7.org/fhir/StructureDefinition/match-grade";

/// `POST [base]/Patient/$match`: a `Parameters` with `resource` (a Patient),
/// `onlyCertainMatches` and `count`; answers a searchset Bundle, best match first, each
/// entry with `search.score` and its `match-grade`.
pub(crate) async fn match_patient(
    State(state): State<AppState>,
    Caller(access): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_of(body)?;
    let parameters: Value =
        serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("the body is not valid JSON"))?;
    let request = Identity::request_of(parameters)?;
    let identity = state.identity().clone();
    let matches = blocking_checked(move || Ok(identity.find(&access, &request)?)).await?;
    let base = state.base_url().to_string();
    let entries: Vec<Value> = matches.iter().map(|m| entry(&base, m)).collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries});
    Ok(fhir_json_response(StatusCode::OK, &bundle))
}

fn entry(base: &str, found: &Match) -> Value {
    let resource: Value =
        found.version.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    // Four decimals are plenty for a ranking, and keep the JSON number short.
    let score = (found.comparison.score * 10_000.0).round() / 10_000.0;
    json!({
        "fullUrl": format!("{base}/Patient/{}", found.version.id),
        "resource": resource,
        "search": {
            "extension": [{"url": MATCH_GRADE, "valueCode": found.comparison.grade.code()}],
            "mode": "match",
            "score": score
        }
    })
}
