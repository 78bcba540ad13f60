//! The exchange edge: FHIR Bulk Data (`$export`, `$import`, the status and file URLs) and C-CDA
//! documents (`$ccda-import`, `Patient/[id]/$ccda-export`, `DocumentReference/$docref`). What
//! the requests do is the `exchange` service's; this module only reads HTTP and writes it.

use crate::caller::Caller;
use crate::format::fhir_json_response;
use crate::rest::blocking_checked;
use crate::{ApiError, AppState};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use exchange::bulk::{Bulk, ExportRequest, JobStatus, Level};
use fhir::IssueCode;
use serde_json::{Value, json};

impl From<exchange::Error> for ApiError {
    fn from(error: exchange::Error) -> Self {
        match error {
            exchange::Error::Access(e) => e.into(),
            exchange::Error::Files(e) => {
                tracing::error!(error = %e, "bulk data files");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    IssueCode::Exception,
                    "the server could not keep the job's files",
                )
            }
            other => ApiError { status: crate::error::status_of(other.class()), issues: other.issues() },
        }
    }
}

/// The request's body, or an OperationOutcome saying why it cannot be read (413 past the
/// server's body limit).
pub(crate) fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                IssueCode::TooCostly,
                "the request body is larger than this server accepts",
            )
        } else {
            ApiError::bad_request("the request body could not be read")
        }
    })
}

fn bulk(state: &AppState) -> Result<Bulk, ApiError> {
    state.bulk().cloned().ok_or_else(|| ApiError::not_found("Bulk Data is not offered by this server"))
}

/// The Bulk Data kick-off asks for `Prefer: respond-async`.
fn require_async(headers: &HeaderMap) -> Result<(), ApiError> {
    let asked = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"));
    if asked {
        Ok(())
    } else {
        Err(ApiError::bad_request("Bulk Data requests need the header `Prefer: respond-async`"))
    }
}

fn pairs_of(query: Option<&str>) -> Vec<(String, String)> {
    query.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// The parameters of a `POST` kick-off's `Parameters` body, as query pairs.
fn pairs_of_parameters(body: &Value) -> Result<Vec<(String, String)>, ApiError> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ApiError::bad_request("a POSTed $export takes a Parameters resource"));
    }
    let mut pairs = Vec::new();
    for parameter in body.get("parameter").and_then(Value::as_array).into_iter().flatten() {
        let name = parameter.get("name").and_then(Value::as_str).unwrap_or_default();
        let value = parameter
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")))
            .and_then(|(_, v)| v.as_str())
            .ok_or_else(|| ApiError::bad_request(format!("parameter `{name}` needs a value")))?;
        pairs.push((name.to_string(), value.to_string()));
    }
    Ok(pairs)
}

fn status_url(state: &AppState, id: &str) -> String {
    format!("{}/bulk-status/{id}", state.base_url())
}

fn accepted(state: &AppState, id: &str) -> Response {
    let mut response = (StatusCode::ACCEPTED, Body::empty()).into_response();
    if let Ok(location) = HeaderValue::from_str(&status_url(state, id)) {
        response.headers_mut().insert(header::CONTENT_LOCATION, location);
    }
    response
}

async fn kick_off_export(
    state: AppState,
    access: access::Access,
    level: Level,
    pairs: Vec<(String, String)>,
    headers: &HeaderMap,
    request_url: String,
) -> Result<Response, ApiError> {
    require_async(headers)?;
    let bulk = bulk(&state)?;
    let request = ExportRequest::parse(level, &pairs)?;
    let id = blocking_checked(move || Ok(bulk.kick_off_export(&access, request, &request_url)?)).await?;
    Ok(accepted(&state, &id))
}

fn request_url(state: &AppState, path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) if !q.is_empty() => format!("{}{path}?{q}", state.base_url()),
        _ => format!("{}{path}", state.base_url()),
    }
}

/// `GET [base]/$export`.
pub(crate) async fn export_system(
    State(state): State<AppState>,
    Caller(access): Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let url = request_url(&state, "/$export", query.as_deref());
    kick_off_export(state, access, Level::System, pairs_of(query.as_deref()), &headers, url).await
}

/// `POST [base]/$export` with a `Parameters` body.
pub(crate) async fn export_system_post(
    State(state): State<AppState>,
    Caller(access): Caller,
    headers: HeaderMap,
    crate::extract::FhirJson(body): crate::extract::FhirJson,
) -> Result<Response, ApiError> {
    let url = request_url(&state, "/$export", None);
    kick_off_export(state, access, Level::System, pairs_of_parameters(&body)?, &headers, url).await
}

/// `GET [base]/Patient/$export`.
pub(crate) async fn export_patients(
    State(state): State<AppState>,
    Caller(access): Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let url = request_url(&state, "/Patient/$export", query.as_deref());
    kick_off_export(state, access, Level::Patient, pairs_of(query.as_deref()), &headers, url).await
}

/// `POST [base]/Patient/$export` with a `Parameters` body.
pub(crate) async fn export_patients_post(
    State(state): State<AppState>,
    Caller(access): Caller,
    headers: HeaderMap,
    crate::extract::FhirJson(body): crate::extract::FhirJson,
) -> Result<Response, ApiError> {
    let url = request_url(&state, "/Patient/$export", None);
    kick_off_export(state, access, Level::Patient, pairs_of_parameters(&body)?, &headers, url).await
}

/// `GET [base]/Group/[id]/$export`.
pub(crate) async fn export_group(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !fhir::reference::is_id(&id) {
        return Err(ApiError::bad_request("invalid resource id"));
    }
    let url = request_url(&state, &format!("/Group/{id}/$export"), query.as_deref());
    kick_off_export(state, access, Level::Group(id), pairs_of(query.as_deref()), &headers, url).await
}

/// `POST [base]/$import`: NDJSON in the body (`Content-Type: application/fhir+ndjson`,
/// `?_type=` to declare the type of every line), or a `Parameters` naming files of the
/// server's import folder.
pub(crate) async fn import(
    State(state): State<AppState>,
    Caller(access): Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_of(body)?;
    require_async(&headers)?;
    let bulk = bulk(&state)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let pairs = pairs_of(query.as_deref());
    let mut declared = None;
    for (name, value) in pairs {
        match name.as_str() {
            "_type" if fhir::definitions().is_resource_type(&value) => declared = Some(value),
            "_type" => return Err(ApiError::bad_request(format!("_type `{value}` is not a resource type"))),
            other => return Err(ApiError::bad_request(format!("$import does not take `{other}`"))),
        }
    }
    let url = request_url(&state, "/$import", query.as_deref());
    let id = match content_type.as_str() {
        "application/fhir+ndjson" | "application/ndjson" | "application/x-ndjson" => {
            blocking_checked(move || Ok(bulk.kick_off_import_body(&access, &body, declared.as_deref(), &url)?)).await?
        }
        "application/fhir+json" | "application/json" => {
            let parameters: Value =
                serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("the body is not valid JSON"))?;
            blocking_checked(move || Ok(bulk.kick_off_import_files(&access, &parameters, &url)?)).await?
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                IssueCode::NotSupported,
                "$import takes application/fhir+ndjson, or a Parameters resource as application/fhir+json",
            ));
        }
    };
    Ok(accepted(&state, &id))
}

/// `GET [base]/bulk-status/[id]`: 202 with `X-Progress` while it runs, then the manifest.
pub(crate) async fn status(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let bulk = bulk(&state)?;
    let files = format!("{}/bulk-files", state.base_url());
    let status = blocking_checked(move || Ok(bulk.status(&access, &id, &files)?)).await?;
    Ok(match status {
        JobStatus::InProgress(progress) => {
            let mut response = (StatusCode::ACCEPTED, Body::empty()).into_response();
            if let Ok(progress) = HeaderValue::from_str(&progress) {
                response.headers_mut().insert("x-progress", progress);
            }
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        JobStatus::Complete(manifest) => {
            let mut response = (StatusCode::OK, manifest.to_string()).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response.headers_mut().insert(header::EXPIRES, HeaderValue::from_static("0"));
            response
        }
        JobStatus::Failed(issues) => {
            fhir_json_response(StatusCode::INTERNAL_SERVER_ERROR, &fhir::operation_outcome(&issues))
        }
    })
}

/// `DELETE [base]/bulk-status/[id]`: cancels the job and deletes its files.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let bulk = bulk(&state)?;
    blocking_checked(move || Ok(bulk.cancel(&access, &id)?)).await?;
    Ok((StatusCode::ACCEPTED, Body::empty()).into_response())
}

/// `GET [base]/bulk-files/[id]/[file]`: one NDJSON file of a finished job, streamed.
pub(crate) async fn file(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let bulk = bulk(&state)?;
    let path = blocking_checked(move || Ok(bulk.file(&access, &id, &name)?)).await?;
    let file = tokio::fs::File::open(&path).await.map_err(|_| ApiError::from(exchange::Error::Expired))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024));
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+ndjson"));
    Ok(response)
}

// ----- C-CDA documents -----

/// `POST [base]/$ccda-import[?patient=ID]`: a C-CDA document in the body
/// (`application/xml`, `application/cda+xml` or `text/xml`), filed to its patient. Answers a
/// `Parameters` with the patient, the DocumentReference, what was filed per section, the items
/// pending reconciliation, and an OperationOutcome listing the entries not mapped.
pub(crate) async fn ccda_import(
    State(state): State<AppState>,
    Caller(access): Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_of(body)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !matches!(
        content_type.as_str(),
        "application/xml" | "application/cda+xml" | "text/xml" | "application/hl7-cda+xml"
    ) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueCode::NotSupported,
            "$ccda-import takes a C-CDA document as application/xml or application/cda+xml",
        ));
    }
    let mut patient = None;
    for (name, value) in pairs_of(query.as_deref()) {
        match name.as_str() {
            "patient" if fhir::reference::is_id(&value) => patient = Some(value),
            "patient" => return Err(ApiError::bad_request("patient must be a Patient id")),
            other => return Err(ApiError::bad_request(format!("$ccda-import does not take `{other}`"))),
        }
    }
    let report =
        blocking_checked(move || Ok(exchange::documents::import_ccda(&access, &body, patient.as_deref())?)).await?;
    let _ = &state;
    let mut parameters = vec![
        json!({"name": "patient", "valueReference": {"reference": format!("Patient/{}", report.patient)}}),
        json!({"name": "patientCreated", "valueBoolean": report.patient_created}),
        json!({"name": "documentReference", "valueReference": {"reference": format!("DocumentReference/{}", report.document_reference)}}),
        json!({"name": "alreadyImported", "valueBoolean": report.already_imported}),
        json!({"name": "alreadyOnChart", "valueInteger": report.already_on_chart}),
    ];
    for (section, count) in &report.filed {
        parameters.push(json!({"name": "filed", "part": [
            {"name": "section", "valueCode": section}, {"name": "count", "valueInteger": count}]}));
    }
    for item in &report.pending {
        parameters.push(json!({"name": "pending", "valueReference": {"reference": item}}));
    }
    let issues: Vec<fhir::Issue> = report
        .warnings
        .iter()
        .map(|w| fhir::Issue::warning(IssueCode::NotSupported, format!("{}: {}", w.location, w.message)))
        .collect();
    parameters.push(json!({"name": "outcome", "resource": fhir::operation_outcome(&issues)}));
    let status = if report.already_imported { StatusCode::OK } else { StatusCode::CREATED };
    Ok(fhir_json_response(status, &json!({"resourceType": "Parameters", "parameter": parameters})))
}

/// `GET [base]/Patient/[id]/$ccda-export?type=ccd|referral|discharge[&start=][&end=]`: a
/// C-CDA R2.1 document of the patient's record, as `application/xml`.
pub(crate) async fn ccda_export(
    state: AppState,
    access: access::Access,
    patient: String,
    pairs: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let mut kind = ccda::DocumentType::Ccd;
    let (mut start, mut end) = (None, None);
    // `start` from the beginning of its day (or instant), `end` to the end of its.
    let instant = |value: &str, end: bool| {
        search::values::DateRange::parse(value)
            .and_then(|range| search::from_micros(if end { range.high } else { range.low }).ok())
            .ok_or_else(|| ApiError::bad_request(format!("`{value}` is not a date")))
    };
    for (name, value) in pairs {
        match name.as_str() {
            "type" => {
                kind = match value.as_str() {
                    "ccd" => ccda::DocumentType::Ccd,
                    "referral" => ccda::DocumentType::Referral,
                    "discharge" => ccda::DocumentType::Discharge,
                    _ => return Err(ApiError::bad_request("type must be ccd, referral or discharge")),
                }
            }
            "start" => start = Some(instant(&value, false)?),
            "end" => end = Some(instant(&value, true)?),
            "_format" => {}
            other => return Err(ApiError::bad_request(format!("$ccda-export does not take `{other}`"))),
        }
    }
    let custodian = exchange::documents::custodian(state.base_url());
    let document = blocking_checked(move || {
        Ok(exchange::documents::export_ccda(&access, &patient, kind, (start, end), &custodian)?)
    })
    .await?;
    let mut response = (StatusCode::OK, document.xml).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml; charset=utf-8"));
    Ok(response)
}

/// `GET|POST [base]/DocumentReference/$docref?patient=ID[&start][&end][&type][&on-demand=true]`
/// (US Core): the patient's documents as a searchset Bundle; with `on-demand=true`, also a
/// DocumentReference of a fresh CCD (made when its URL is fetched).
pub(crate) async fn docref(
    State(state): State<AppState>,
    Caller(access): Caller,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_of(body)?;
    let mut pairs = pairs_of(query.as_deref());
    if !body.is_empty() {
        let parameters: Value =
            serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("the body is not valid JSON"))?;
        pairs.extend(pairs_of_parameters(&parameters)?);
    }
    let (mut patient, mut doc_type, mut start, mut end, mut on_demand) = (None, None, None, None, false);
    for (name, value) in pairs {
        match name.as_str() {
            "patient" => patient = Some(value.trim_start_matches("Patient/").to_string()),
            "type" => doc_type = Some(value),
            "start" => start = Some(value),
            "end" => end = Some(value),
            "on-demand" => on_demand = value == "true",
            "_format" => {}
            other => return Err(ApiError::bad_request(format!("$docref does not take `{other}`"))),
        }
    }
    let patient =
        patient.filter(|p| fhir::reference::is_id(p)).ok_or_else(|| ApiError::bad_request("$docref needs patient"))?;
    let ccd_url = on_demand.then(|| format!("{}/Patient/{patient}/$ccda-export?type=ccd", state.base_url()));
    let found = blocking_checked(move || {
        Ok(exchange::documents::document_references(
            &access,
            &patient,
            doc_type.as_deref(),
            start.as_deref(),
            end.as_deref(),
            ccd_url.as_deref(),
        )?)
    })
    .await?;
    let entries: Vec<Value> = found
        .into_iter()
        .map(|resource| {
            let full_url = resource
                .get("id")
                .and_then(Value::as_str)
                .map(|id| format!("{}/DocumentReference/{id}", state.base_url()));
            match full_url {
                Some(url) => json!({"fullUrl": url, "resource": resource, "search": {"mode": "match"}}),
                None => json!({"resource": resource, "search": {"mode": "match"}}),
            }
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries});
    Ok(fhir_json_response(StatusCode::OK, &bundle))
}
