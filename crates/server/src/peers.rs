//! The HTTP edge of the peers service (`exchange::peers`): `Patient/[id]/$locate` (which
//! peers hold the patient), `Patient/[id]/$pull?peer=NAME` (copy the record from one) and
//! `Patient/[id]/$push?peer=NAME` (send one a referral packet).
//! Parses, calls the service on the blocking pool, renders a `Parameters`.

use crate::bulk_data::body_of;
use crate::caller::Caller;
use crate::extract::Negotiated;
use crate::format::Query;
use crate::format::fhir_json_response;
use crate::rest::blocking_checked;
use crate::search::query_pairs;
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use exchange::peers::{Located, Peers, PullReport, PushReport};
use serde_json::{Value, json};

fn peers(state: &AppState) -> Result<Peers, ApiError> {
    state.peers().cloned().ok_or_else(|| ApiError::not_found("this server has no peers"))
}

/// `GET [base]/Patient/[id]/$locate`: asks every peer's `Patient/$match` for the patient;
/// answers a `Parameters` with one `peer` per peer: its `name`, and a `match` per candidate
/// (`patient` as the peer's full URL, `score`, `grade`) or the `outcome` of its failure.
pub(crate) async fn locate(
    State(state): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !fhir::reference::is_id(&id) {
        return Err(ApiError::bad_request("invalid resource id"));
    }
    let pairs = query_pairs(&query);
    if let Some((name, _)) = pairs.iter().find(|(n, _)| n != "_format" && n != "_pretty") {
        return Err(ApiError::bad_request(format!("$locate does not take `{name}`")));
    }
    let peers = peers(&state)?;
    let located = blocking_checked(move || Ok(peers.locate(&access, &id)?)).await?;
    let parameter: Vec<Value> = located.iter().map(peer_part).collect();
    Ok(fhir_json_response(StatusCode::OK, &json!({"resourceType": "Parameters", "parameter": parameter})))
}

fn peer_part(located: &Located) -> Value {
    let mut parts = vec![json!({"name": "name", "valueString": located.peer})];
    match &located.outcome {
        Ok(candidates) => {
            for c in candidates {
                parts.push(json!({"name": "match", "part": [
                    {"name": "patient", "valueReference": {"reference": c.reference}},
                    {"name": "score", "valueDecimal": (c.score * 10_000.0).round() / 10_000.0},
                    {"name": "grade", "valueCode": c.grade}
                ]}));
            }
        }
        Err(error) => {
            parts.push(json!({"name": "outcome", "resource": fhir::operation_outcome(&error.issues())}));
        }
    }
    json!({"name": "peer", "part": parts})
}

/// `POST [base]/Patient/[id]/$pull?peer=NAME` (or `peer` as a valueString parameter of a
/// `Parameters` body): copies the record of the peer's patient matching this one (a certain
/// match only: otherwise 409 with the candidates); answers a `Parameters` with `peer`,
/// `source` (the peer's patient), `patient` (its local copy), `received` per type,
/// `created`, `updated`, `unchanged` and `omitted` (what the peer said it left out).
pub(crate) async fn pull(
    State(state): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let input = OperationInput::read("$pull", &id, &query, body)?;
    let peer = input.peer("$pull")?;
    let peers = peers(&state)?;
    let report = blocking_checked(move || Ok(peers.pull(&access, &id, &peer)?)).await?;
    Ok(fhir_json_response(StatusCode::OK, &report_parameters(&report)))
}

/// `POST [base]/Patient/[id]/$push?peer=NAME` (optionally a `Parameters` body with
/// `reason`, a valueString): sends the patient's referral packet to the peer as one
/// transaction; answers a `Parameters` with `peer`, `sent` per type, and where the peer filed
/// the `patient` and the `task`.
pub(crate) async fn push(
    State(state): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let input = OperationInput::read("$push", &id, &query, body)?;
    let peer = input.peer("$push")?;
    let reason = input.named("reason");
    let peers = peers(&state)?;
    let report = blocking_checked(move || Ok(peers.push(&access, &id, &peer, reason.as_deref())?)).await?;
    Ok(fhir_json_response(StatusCode::OK, &push_parameters(&report)))
}

/// What `$pull` and `$push` are given: `peer` in the query, or `peer` (and other valueString
/// parameters) in an optional `Parameters` body.
struct OperationInput {
    peer: Option<String>,
    body: Option<Value>,
}

impl OperationInput {
    fn read(
        operation: &str,
        id: &str,
        query: &Query,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<OperationInput, ApiError> {
        if !fhir::reference::is_id(id) {
            return Err(ApiError::bad_request("invalid resource id"));
        }
        let body = body_of(body)?;
        let body: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("the body is not valid JSON"))?)
        };
        let mut peer = None;
        for (name, value) in query_pairs(query) {
            match name.as_str() {
                "peer" => peer = Some(value),
                "_format" | "_pretty" => {}
                other => return Err(ApiError::bad_request(format!("{operation} does not take `{other}`"))),
            }
        }
        Ok(OperationInput { peer, body })
    }

    /// A valueString parameter of the body.
    fn named(&self, name: &str) -> Option<String> {
        self.body
            .as_ref()
            .and_then(|b| b.get("parameter"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|p| p.get("valueString").and_then(Value::as_str))
            .map(str::to_string)
    }

    /// The peer named in the query, else in the body.
    fn peer(&self, operation: &str) -> Result<String, ApiError> {
        self.peer
            .clone()
            .or_else(|| self.named("peer"))
            .ok_or_else(|| ApiError::bad_request(format!("{operation} needs `peer` (the peer's name)")))
    }
}

fn push_parameters(report: &PushReport) -> Value {
    let mut parameter = vec![json!({"name": "peer", "valueString": report.peer})];
    for (resource_type, count) in &report.sent {
        parameter.push(json!({"name": "sent", "part": [
            {"name": "type", "valueCode": resource_type},
            {"name": "count", "valueInteger": count}
        ]}));
    }
    if let Some(patient) = &report.patient {
        parameter.push(json!({"name": "patient", "valueReference": {"reference": patient}}));
    }
    if let Some(task) = &report.task {
        parameter.push(json!({"name": "task", "valueReference": {"reference": task}}));
    }
    json!({"resourceType": "Parameters", "parameter": parameter})
}

/// A pull's report as a `Parameters`.
pub fn report_parameters(report: &PullReport) -> Value {
    let mut parameter = vec![
        json!({"name": "peer", "valueString": report.peer}),
        json!({"name": "source", "valueReference": {"reference": report.source}}),
        json!({"name": "patient", "valueReference": {"reference": format!("Patient/{}", report.patient)}}),
    ];
    for (resource_type, count) in &report.received {
        parameter.push(json!({"name": "received", "part": [
            {"name": "type", "valueCode": resource_type},
            {"name": "count", "valueInteger": count}
        ]}));
    }
    parameter.push(json!({"name": "created", "valueInteger": report.created}));
    parameter.push(json!({"name": "updated", "valueInteger": report.updated}));
    parameter.push(json!({"name": "unchanged", "valueInteger": report.unchanged}));
    for text in &report.omitted {
        parameter.push(json!({"name": "omitted", "valueString": text}));
    }
    json!({"resourceType": "Parameters", "parameter": parameter})
}
