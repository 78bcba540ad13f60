//! The HTTP edge of patient merge (the `exchange::identity::merge` service):
//! `Patient/$merge` (FHIR R5's operation on the R4 record) and `Patient/$unmerge`
//! (Continuum's own, with the same parameters). Parses, calls the service on the blocking
//! pool, renders.

use crate::ApiError;
use crate::bulk_data::body_of;
use crate::caller::Caller;
use crate::format::fhir_json_response;
use crate::rest::blocking_checked;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::Response;
use exchange::identity::merge::{self, MergeRequest};
use fhir::Issue;
use serde_json::{Value, json};

/// The request's body as JSON (an OperationOutcome saying why not, otherwise).
pub(crate) fn parameters_of(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body_of(body)?;
    serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("the body is not valid JSON"))
}

/// The answer of `$merge` and `$unmerge`: `input`, `outcome` and `result`.
fn answer(input: Value, issues: &[Issue], result: Value) -> Response {
    let answer = json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "input", "resource": input},
            {"name": "outcome", "resource": fhir::operation_outcome(issues)},
            {"name": "result", "resource": result}
        ]
    });
    fhir_json_response(StatusCode::OK, &answer)
}

/// `POST [base]/Patient/$merge`: a `Parameters` with `source-patient` and `target-patient`
/// (valueReference; or `source-patient-identifier` / `target-patient-identifier`),
/// `result-patient` and `preview`; answers a `Parameters` with `input` (the request),
/// `outcome` (an OperationOutcome) and `result` (the target Patient as merged, or as it
/// would be).
pub(crate) async fn merge_patient(
    Caller(access): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let input = parameters_of(body)?;
    let echo = input.clone();
    let outcome = blocking_checked(move || {
        let request = MergeRequest::from_parameters(&access, &input)?;
        Ok(merge::merge(&access, &request)?)
    })
    .await?;
    let message = if outcome.preview {
        format!("preview only: the merge would move {} resources; nothing was written", outcome.total_moved())
    } else {
        format!("the source patient was merged into the target patient; {} resources moved", outcome.total_moved())
    };
    let mut issues = vec![Issue::information(message)];
    issues.extend(outcome.moved.iter().map(|(t, n)| Issue::information(format!("{t}: {n}"))));
    Ok(answer(echo, &issues, outcome.target_patient))
}

/// `POST [base]/Patient/$unmerge`: the parameters of `$merge` (`source-patient`,
/// `target-patient` or their identifiers) name a merge to undo; answers a `Parameters` with
/// `input`, `outcome` and `result` (the source Patient, active again).
pub(crate) async fn unmerge_patient(
    Caller(access): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let input = parameters_of(body)?;
    let echo = input.clone();
    let outcome = blocking_checked(move || {
        let request = MergeRequest::from_parameters(&access, &input)?;
        Ok(merge::unmerge(&access, &request.source, &request.target)?)
    })
    .await?;
    let restored: usize = outcome.restored.values().sum();
    let mut issues = vec![Issue::information(format!(
        "the merge was undone; {restored} resources moved back to the source patient"
    ))];
    issues.extend(outcome.restored.iter().map(|(t, n)| Issue::information(format!("{t}: {n}"))));
    Ok(answer(echo, &issues, outcome.source_patient))
}
