//! The HTTP edge of patient identity (the `exchange::identity` service): `Patient/$match` and
//! the duplicate review work list (`Patient/$match-review`).
//! Parses, calls the service on the blocking pool, renders.

use crate::caller::Caller;
use crate::format::fhir_json_response;
use crate::merge::parameters_of;
use crate::rest::blocking_checked;
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::Response;
use exchange::identity::{Decision, Identity, Match, PatientIndex, ReviewItem, Status};
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
    let request = Identity::request_of(parameters_of(body)?)?;
    let identity = state.identity().clone();
    let answer = blocking_checked(move || Ok(identity.find(&access, &request)?)).await?;
    let base = state.base_url().to_string();
    let mut entries: Vec<Value> = answer.matches.iter().map(|m| entry(&base, m)).collect();
    let total = entries.len();
    if answer.outside_reach > 0 {
        entries.push(json!({
            "resource": {"resourceType": "OperationOutcome", "issue": [{
                "severity": "information",
                "code": "informational",
                "diagnostics": format!(
                    "{} more record(s) match outside your reach; ask an administrator before registering a new patient",
                    answer.outside_reach
                )
            }]},
            "search": {"mode": "outcome"}
        }));
    }
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": total, "entry": entries});
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

/// `GET [base]/Patient/$match-review[?status=open|linked|not-a-match|merged]`: the duplicate
/// review work list (administrators and registration staff) as a `Parameters` with one `pair`
/// per candidate pair: the two records, the score, the grade, the status and each field's
/// agreement.
pub(crate) async fn review_list(
    State(state): State<AppState>,
    Caller(access): Caller,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    let mut status = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "status" => {
                status = Some(
                    serde_json::from_value::<Status>(Value::String(value.to_string()))
                        .map_err(|_| ApiError::bad_request("status is one of open, linked, not-a-match, merged"))?,
                )
            }
            "_format" => {}
            other => return Err(ApiError::bad_request(format!("$match-review does not take `{other}`"))),
        }
    }
    let index = index(&state)?;
    let items = blocking_checked(move || Ok(index.work_list(&access, status)?)).await?;
    let parameters = json!({"resourceType": "Parameters", "parameter": items.iter().map(pair).collect::<Vec<_>>()});
    Ok(fhir_json_response(StatusCode::OK, &parameters))
}

/// `POST [base]/Patient/$match-review`: a `Parameters` with `pair` (valueString `a~b`) and
/// `decision` (valueCode `link`, `not-a-match`, or `merge` with `target-patient`, the
/// record of the pair that remains); answers the pair as decided.
pub(crate) async fn review_decide(
    State(state): State<AppState>,
    Caller(access): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let parameters = parameters_of(body)?;
    let value = |name: &str, kind: &str| {
        parameters
            .get("parameter")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|p| p.get(kind))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let pair_id =
        value("pair", "valueString").ok_or_else(|| ApiError::bad_request("$match-review needs `pair` (a~b)"))?;
    let survivor = parameters
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("name").and_then(Value::as_str) == Some("target-patient"))
        .and_then(|p| p.pointer("/valueReference/reference"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let decision =
        value("decision", "valueCode").and_then(|d| Decision::parse(&d, survivor.as_deref())).ok_or_else(|| {
            ApiError::bad_request(
                "`decision` is link, not-a-match, or merge with `target-patient` (the surviving record)",
            )
        })?;
    let index = index(&state)?;
    let item = blocking_checked(move || Ok(index.decide(&access, &pair_id, decision)?)).await?;
    let parameters = json!({"resourceType": "Parameters", "parameter": [pair(&item)]});
    Ok(fhir_json_response(StatusCode::OK, &parameters))
}

fn index(state: &AppState) -> Result<PatientIndex, ApiError> {
    state.patient_index().cloned().ok_or_else(|| ApiError::not_found("this server keeps no patient index"))
}

fn pair(item: &ReviewItem) -> Value {
    let status = serde_json::to_value(item.status).unwrap_or(Value::Null);
    let mut parts = vec![
        json!({"name": "id", "valueString": item.id}),
        json!({"name": "patient", "valueReference": {"reference": format!("Patient/{}", item.a)}}),
        json!({"name": "patient", "valueReference": {"reference": format!("Patient/{}", item.b)}}),
        json!({"name": "score", "valueDecimal": (item.score * 10_000.0).round() / 10_000.0}),
        json!({"name": "grade", "valueCode": item.grade}),
        json!({"name": "status", "valueCode": status}),
    ];
    if let Some(by) = &item.decided_by {
        parts.push(json!({"name": "decidedBy", "valueString": by}));
    }
    for field in &item.fields {
        parts.push(json!({"name": "field", "part": [
            {"name": "name", "valueCode": field.field},
            {"name": "agreement", "valueCode": field.level},
            {"name": "weight", "valueDecimal": field.weight}
        ]}));
    }
    json!({"name": "pair", "part": parts})
}
