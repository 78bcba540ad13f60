//! The FHIR RESTful interactions: routes and handlers.

use crate::caller::Caller;
use crate::extract::{FhirJson, Instance, Negotiated, TypeName};
use crate::format::{fhir_json_response, raw_fhir_response};
use crate::search::{self, Scope};
use crate::{ApiError, AppState, capability, history};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fhir::{Issue, IssueCode, operation_outcome};
use serde_json::Value;
use std::collections::HashMap;
use std::time::SystemTime;
use store::{HistoryQuery, ResourceVersion, WriteKind, WriteOutcome};

/// Routes below `/fhir`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(search_system).post(system_bundle))
        .route("/_search", post(search_system_post))
        .route("/{resource_type}/_search", post(search_type_post))
        .route("/{resource_type}/{id}/{target}", get(search_compartment).post(instance_operation))
        .route("/metadata", get(metadata))
        .route("/$export", get(crate::bulk_data::export_system).post(crate::bulk_data::export_system_post))
        .route("/Patient/$export", get(crate::bulk_data::export_patients).post(crate::bulk_data::export_patients_post))
        .route("/Group/{id}/$export", get(crate::bulk_data::export_group))
        .route("/$import", post(crate::bulk_data::import))
        .route("/$ccda-import", post(crate::bulk_data::ccda_import))
        .route("/Patient/$match", post(crate::identity::match_patient))
        .route("/Patient/{id}/$locate", get(crate::peers::locate))
        .route("/Patient/{id}/$pull", post(crate::peers::pull))
        .route("/Patient/{id}/$push", post(crate::peers::push))
        .route("/Subscription/{id}/$status", get(crate::subscriptions::status).post(crate::subscriptions::status))
        .route("/Subscription/{id}/$events", get(crate::subscriptions::events).post(crate::subscriptions::events))
        .route(crate::subscriptions::WEBSOCKET_PATH, get(crate::subscriptions::websocket))
        .route("/Patient/$match-review", get(crate::identity::review_list).post(crate::identity::review_decide))
        .route("/Patient/$merge", post(crate::merge::merge_patient))
        .route("/Patient/$unmerge", post(crate::merge::unmerge_patient))
        .route("/DocumentReference/$docref", get(crate::bulk_data::docref).post(crate::bulk_data::docref))
        .route("/bulk-status/{id}", get(crate::bulk_data::status).delete(crate::bulk_data::cancel))
        .route("/bulk-files/{id}/{file}", get(crate::bulk_data::file))
        .route("/_history", get(system_history))
        .route("/{resource_type}", post(create).put(conditional_update).delete(conditional_delete).get(search_type))
        .route("/{resource_type}/_history", get(type_history))
        .route("/{resource_type}/$validate", post(validate))
        .route("/{resource_type}/{id}", get(read).put(update).patch(patch).delete(delete))
        .route("/{resource_type}/{id}/_history", get(instance_history))
        .route("/{resource_type}/{id}/_history/{version}", get(vread))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// Answer for paths that name nothing this server has.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, IssueCode::NotSupported, "method not allowed on this endpoint")
}

/// Runs store work on the blocking pool (the store is synchronous).
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, IssueCode::Exception, "request failed")),
    }
}

/// Like [`blocking`], for work that also makes access decisions.
pub(crate) async fn blocking_checked<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, IssueCode::Exception, "request failed")),
    }
}

/// Like [`blocking_checked`], for a search through the door: abandoned with 503 after the
/// search timeout. The backend interrupts its own statements after the same time (see
/// `store-sqlite`), so the thread left behind stops soon after too.
pub(crate) async fn searching_checked<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let limit = state.limits().search_timeout;
    if limit == std::time::Duration::MAX {
        return blocking_checked(work).await;
    }
    match tokio::time::timeout(limit, blocking_checked(work)).await {
        Ok(result) => result,
        Err(_) => Err(crate::limits::search_timed_out()),
    }
}

fn check_body_type(resource: &Value, resource_type: &str) -> Result<(), ApiError> {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == resource_type => Ok(()),
        Some(_) => Err(ApiError::bad_request("resourceType of the body does not match the URL")),
        None => Err(ApiError::bad_request("the body is not a FHIR resource (no resourceType)")),
    }
}

/// Parses an ETag-style version (`W/"3"`, `"3"` or `3`).
fn parse_etag(value: &str) -> Option<u64> {
    let v = value.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.trim_matches('"').parse().ok()
}

fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(parse_etag)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("If-Match must be a version ETag such as W/\"1\"")),
    }
}

/// What the client asked to get back after a write (`Prefer: return=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

fn prefer_return(headers: &HeaderMap) -> Return {
    let prefer = headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    for part in prefer.split([',', ';']) {
        match part.trim().replace(' ', "").as_str() {
            "return=minimal" => return Return::Minimal,
            "return=OperationOutcome" => return Return::OperationOutcome,
            "return=representation" => return Return::Representation,
            _ => {}
        }
    }
    Return::Representation
}

fn http_date(version: &ResourceVersion) -> Option<HeaderValue> {
    let time = SystemTime::from(version.last_updated);
    HeaderValue::from_str(&httpdate::fmt_http_date(time)).ok()
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\"")).unwrap_or(HeaderValue::from_static("W/\"0\""))
}

/// The version headers (`ETag`, `Last-Modified`) of a stored version.
fn set_version_headers(response: &mut Response, version: &ResourceVersion) {
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag(version.version));
    if let Some(date) = http_date(version) {
        headers.insert(header::LAST_MODIFIED, date);
    }
}

fn resource_response(status: StatusCode, version: &ResourceVersion) -> Response {
    let body = version.body.clone().map(|b| Body::from(Bytes::from_owner(StoredJson(b)))).unwrap_or_default();
    let mut response = raw_fhir_response(status, body);
    set_version_headers(&mut response, version);
    response
}

/// A stored body handed to the response without copying.
struct StoredJson(std::sync::Arc<str>);

impl AsRef<[u8]> for StoredJson {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

fn write_response(state: &AppState, outcome: WriteOutcome, prefer: Return) -> Response {
    let Some(version) = outcome.version else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let status = match outcome.kind {
        WriteKind::Created => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let mut response = match (outcome.kind, prefer) {
        (WriteKind::NothingToDelete, _) => return StatusCode::NO_CONTENT.into_response(),
        (WriteKind::Deleted, Return::Minimal) => StatusCode::NO_CONTENT.into_response(),
        (WriteKind::Deleted, _) => {
            fhir_json_response(StatusCode::OK, &operation_outcome(&[Issue::information("resource deleted")]))
        }
        (_, Return::Minimal) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = status;
            response
        }
        (_, Return::OperationOutcome) => {
            let note = match outcome.kind {
                WriteKind::Created => "resource created",
                WriteKind::Matched => "an existing resource matched; nothing was created",
                _ => "resource updated",
            };
            fhir_json_response(status, &operation_outcome(&[Issue::information(note)]))
        }
        (_, Return::Representation) => resource_response(status, &version),
    };
    set_version_headers(&mut response, &version);
    if matches!(outcome.kind, WriteKind::Created | WriteKind::Updated) {
        let location =
            format!("{}/{}/{}/_history/{}", state.base_url(), version.resource_type, version.id, version.version);
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value.clone());
            response.headers_mut().insert(header::CONTENT_LOCATION, value);
        }
    }
    response
}

async fn metadata(State(state): State<AppState>, _: Negotiated) -> Response {
    let mut statement = capability::capability_statement(state.base_url());
    crate::subscriptions::advertise(&state, &mut statement);
    fhir_json_response(StatusCode::OK, &statement)
}

async fn read(
    State(state): State<AppState>,
    Caller(access): Caller,
    _: Negotiated,
    at: Instance,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // On the blocking pool like all store work: a backend may block (PostgreSQL's synchronous
    // client even refuses to run on an async worker thread).
    let version = blocking_checked(move || Ok(access.read(&at.resource_type, &at.id)?)).await?;
    drop(state);
    if not_modified(&headers, &version) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        set_version_headers(&mut response, &version);
        return Ok(response);
    }
    Ok(resource_response(StatusCode::OK, &version))
}

/// Whether `If-None-Match` or `If-Modified-Since` say the client's copy is current.
fn not_modified(headers: &HeaderMap, version: &ResourceVersion) -> bool {
    if let Some(value) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return value.split(',').any(|tag| tag.trim() == "*" || parse_etag(tag) == Some(version.version));
    }
    if let Some(since) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    {
        let modified = SystemTime::from(version.last_updated);
        // HTTP dates have whole seconds: compare at that precision.
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        return secs(modified) <= secs(since);
    }
    false
}

async fn vread(
    State(state): State<AppState>,
    Caller(access): Caller,
    _: Negotiated,
    at: Instance,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let version = params.get("version").and_then(|v| v.parse::<u64>().ok());
    let version = version.ok_or_else(|| ApiError::not_found("no such version"))?;
    let found = blocking_checked(move || Ok(access.vread(&at.resource_type, &at.id, version)?)).await?;
    drop(state);
    Ok(resource_response(StatusCode::OK, &found))
}

async fn create(
    State(state): State<AppState>,
    Caller(access): Caller,
    _: Negotiated,
    TypeName(resource_type): TypeName,
    headers: HeaderMap,
    FhirJson(resource): FhirJson,
) -> Result<Response, ApiError> {
    check_body_type(&resource, &resource_type)?;
    let if_none_exist = headers
        .get("if-none-exist")
        .map(|v| v.to_str().map(|s| conditional_query(s, &resource_type)))
        .transpose()
        .map_err(|_| ApiError::bad_request("If-None-Exist must be a query string"))?;
    let outcome = blocking_checked(move || Ok(access.create(resource, if_none_exist.as_deref())?)).await?;
    Ok(write_response(&state, outcome, prefer_return(&headers)))
}

/// `If-None-Exist` may be `a=b` or `Type?a=b` (some clients send the latter).
fn conditional_query(value: &str, resource_type: &str) -> String {
    let value = value.trim();
    let value = value.strip_prefix(resource_type).and_then(|v| v.strip_prefix('?')).unwrap_or(value);
    value.trim_start_matches('?').to_string()
}

async fn update(
    State(state): State<AppState>,
    Caller(access): Caller,
    _: Negotiated,
    at: Instance,
    headers: HeaderMap,
    FhirJson(resource): FhirJson,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    check_body_type(&resource, &at.resource_type)?;
    let outcome = blocking_checked(move || Ok(access.update(&at.resource_type, &at.id, resource, expected)?)).await?;
    Ok(write_response(&state, outcome, prefer_return(&headers)))
}

async fn conditional_update(
    State(state): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
    TypeName(resource_type): TypeName,
    headers: HeaderMap,
    FhirJson(resource): FhirJson,
) -> Result<Response, ApiError> {
    let criteria = query.criteria();
    if criteria.is_empty() {
        return Err(ApiError::bad_request("PUT needs an id in the URL or search criteria"));
    }
    check_body_type(&resource, &resource_type)?;
    let outcome = blocking_checked(move || Ok(access.conditional_update(&resource_type, &criteria, resource)?)).await?;
    Ok(write_response(&state, outcome, prefer_return(&headers)))
}

async fn patch(
    State(state): State<AppState>,
    Caller(access): Caller,
    _: Negotiated,
    at: Instance,
    headers: HeaderMap,
    FhirJson(patch): FhirJson,
) -> Result<Response, ApiError> {
    let media = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !media.trim_start().starts_with("application/json-patch+json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueCode::NotSupported,
            "PATCH takes a JSON Patch document (application/json-patch+json)",
        ));
    }
    let expected = if_match(&headers)?;
    let outcome = blocking_checked(move || Ok(access.patch(&at.resource_type, &at.id, &patch, expected)?)).await?;
    Ok(write_response(&state, outcome, prefer_return(&headers)))
}

async fn delete(
    State(state): State<AppState>,
    Caller(access): Caller,
    _: Negotiated,
    at: Instance,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let outcome = blocking_checked(move || Ok(access.delete(&at.resource_type, &at.id, expected)?)).await?;
    Ok(write_response(&state, outcome, prefer_return(&headers)))
}

async fn conditional_delete(
    State(_): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
    TypeName(resource_type): TypeName,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let criteria = query.criteria();
    if criteria.is_empty() {
        return Err(ApiError::bad_request("DELETE needs an id in the URL or search criteria"));
    }
    let outcomes = blocking_checked(move || Ok(access.conditional_delete(&resource_type, &criteria)?)).await?;
    let deleted = outcomes.iter().filter(|o| o.kind == WriteKind::Deleted).count();
    if prefer_return(&headers) == Return::Minimal || deleted == 0 {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let note = Issue::information(format!("{deleted} resource(s) deleted"));
    Ok(fhir_json_response(StatusCode::OK, &operation_outcome(&[note])))
}

async fn search_type(
    State(state): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
    TypeName(resource_type): TypeName,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if resource_type == "AuditEvent" && state.door().auditor().is_some() {
        return crate::audit::search(state, access, search::query_pairs(&query)).await;
    }
    search::respond(state, access, Scope::Type(resource_type), search::query_pairs(&query), &headers).await
}

/// `POST [type]/_search`: parameters in the query and in a form-encoded body.
async fn search_type_post(
    State(state): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
    TypeName(resource_type): TypeName,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut pairs = search::query_pairs(&query);
    pairs.extend(search_form(&headers, &body, state.limits().max_body_bytes)?);
    search::respond(state, access, Scope::Type(resource_type), pairs, &headers).await
}

/// The form body of a `_search` POST (415 unless form-encoded).
fn search_form(headers: &HeaderMap, body: &[u8], limit: usize) -> Result<Vec<(String, String)>, ApiError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    if body.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueCode::TooCostly,
            "the request body is too large",
        ));
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueCode::NotSupported,
            "a _search POST takes application/x-www-form-urlencoded parameters",
        ));
    }
    Ok(search::form_pairs(body))
}

pub(crate) async fn search_system(
    State(state): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    search::respond(state, access, Scope::System, search::query_pairs(&query), &headers).await
}

async fn search_system_post(
    State(state): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut pairs = search::query_pairs(&query);
    pairs.extend(search_form(&headers, &body, state.limits().max_body_bytes)?);
    search::respond(state, access, Scope::System, pairs, &headers).await
}

/// `GET [compartment]/[id]/[type]`.
async fn search_compartment(
    State(state): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let compartment = params.get("resource_type").cloned().unwrap_or_default();
    let id = params.get("id").cloned().unwrap_or_default();
    let resource_type = params.get("target").cloned().unwrap_or_default();
    if resource_type == "$everything" {
        if compartment != "Patient" {
            return Err(ApiError::not_found("$everything is supported on Patient"));
        }
        if !fhir::reference::is_id(&id) {
            return Err(ApiError::bad_request("invalid resource id"));
        }
        return search::everything(state, access, id, search::query_pairs(&query)).await;
    }
    if resource_type == "$ccda-export" {
        if compartment != "Patient" {
            return Err(ApiError::not_found("$ccda-export is supported on Patient"));
        }
        if !fhir::reference::is_id(&id) {
            return Err(ApiError::bad_request("invalid resource id"));
        }
        return crate::bulk_data::ccda_export(state, access, id, search::query_pairs(&query)).await;
    }
    let defs = fhir::definitions();
    if !defs.is_resource_type(&compartment) || !defs.is_resource_type(&resource_type) {
        return Err(search::unknown_type());
    }
    if !fhir::reference::is_id(&id) {
        return Err(ApiError::bad_request("invalid resource id"));
    }
    let scope = Scope::Compartment { compartment, id, resource_type };
    search::respond(state, access, scope, search::query_pairs(&query), &headers).await
}

/// `POST [type]/[id]/$operation`: `Patient/[id]/$break-the-glass` (emergency access to a
/// patient outside the caller's reach, for the reason given in a `reason` parameter; time-
/// limited and audited).
async fn instance_operation(
    Caller(access): Caller,
    _: Negotiated,
    Path(params): Path<HashMap<String, String>>,
    FhirJson(body): FhirJson,
) -> Result<Response, ApiError> {
    let resource_type = params.get("resource_type").map(String::as_str).unwrap_or_default();
    let id = params.get("id").cloned().unwrap_or_default();
    let operation = params.get("target").map(String::as_str).unwrap_or_default();
    if resource_type != "Patient" || operation != "$break-the-glass" {
        return Err(not_found().await);
    }
    if !fhir::reference::is_id(&id) {
        return Err(ApiError::bad_request("invalid resource id"));
    }
    let reason = body
        .get("parameter")
        .and_then(Value::as_array)
        .and_then(|ps| ps.iter().find(|p| p.get("name").and_then(Value::as_str) == Some("reason")))
        .and_then(|p| p.get("valueString"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request("$break-the-glass takes a Parameters with a `reason` valueString"))?;
    let patient = id.clone();
    let lasts = blocking_checked(move || Ok(access.break_glass(&patient, &reason)?)).await?;
    let until = time::OffsetDateTime::now_utc() + lasts;
    let answer = serde_json::json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": format!("Patient/{id}")}},
            {"name": "expires", "valueInstant": store::format_instant(until)},
        ]
    });
    Ok(fhir_json_response(StatusCode::OK, &answer))
}

async fn validate(
    State(state): State<AppState>,
    _authenticated: Caller,
    _: Negotiated,
    TypeName(resource_type): TypeName,
    FhirJson(body): FhirJson,
) -> Result<Response, ApiError> {
    let resource = resource_to_validate(body)?;
    check_body_type(&resource, &resource_type)?;
    let records = state.records().clone();
    let issues = blocking(move || Ok(records.validate(&resource))).await?;
    // $validate answers 200 whenever validation ran; the outcome says whether it passed.
    Ok(fhir_json_response(StatusCode::OK, &operation_outcome(&issues)))
}

/// `$validate` takes the resource itself or a `Parameters` with a `resource` parameter.
fn resource_to_validate(body: Value) -> Result<Value, ApiError> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Ok(body);
    }
    body.get("parameter")
        .and_then(Value::as_array)
        .and_then(|params| params.iter().find(|p| p.get("name").and_then(Value::as_str) == Some("resource")))
        .and_then(|p| p.get("resource").cloned())
        .ok_or_else(|| ApiError::bad_request("Parameters for $validate must carry a 'resource' parameter"))
}

pub(crate) async fn system_bundle(
    State(state): State<AppState>,
    Caller(access): Caller,
    _: Negotiated,
    FhirJson(bundle): FhirJson,
) -> Result<Response, ApiError> {
    check_body_type(&bundle, "Bundle")?;
    let entries = bundle.get("entry").and_then(Value::as_array).map_or(0, Vec::len);
    let max = state.limits().max_bundle_entries;
    if entries > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueCode::TooCostly,
            format!("the Bundle has {entries} entries; this server takes at most {max} in one Bundle"),
        ));
    }
    let response = blocking_checked(move || Ok(access.transaction(bundle)?)).await?;
    Ok(fhir_json_response(StatusCode::OK, &response))
}

async fn system_history(
    State(state): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
) -> Result<Response, ApiError> {
    history::respond(state, access, query, HistoryQuery::default()).await
}

async fn type_history(
    State(state): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
    TypeName(resource_type): TypeName,
) -> Result<Response, ApiError> {
    let scope = HistoryQuery { resource_type: Some(resource_type), ..HistoryQuery::default() };
    history::respond(state, access, query, scope).await
}

async fn instance_history(
    State(state): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
    at: Instance,
) -> Result<Response, ApiError> {
    let scope = HistoryQuery { resource_type: Some(at.resource_type), id: Some(at.id), ..HistoryQuery::default() };
    history::respond(state, access, query, scope).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_parse_in_their_usual_forms() {
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"12\""), Some(12));
        assert_eq!(parse_etag("7"), Some(7));
        assert_eq!(parse_etag("W/\"x\""), None);
    }

    #[test]
    fn prefer_header_is_read() {
        let mut headers = HeaderMap::new();
        assert_eq!(prefer_return(&headers), Return::Representation);
        headers.insert("prefer", HeaderValue::from_static("return=minimal"));
        assert_eq!(prefer_return(&headers), Return::Minimal);
        headers.insert("prefer", HeaderValue::from_static("handling=strict, return=OperationOutcome"));
        assert_eq!(prefer_return(&headers), Return::OperationOutcome);
    }

    #[test]
    fn if_none_exist_accepts_both_forms() {
        assert_eq!(conditional_query("Patient?identifier=a|b", "Patient"), "identifier=a|b");
        assert_eq!(conditional_query("identifier=a|b", "Patient"), "identifier=a|b");
    }
}
