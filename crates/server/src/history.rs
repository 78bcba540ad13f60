//! History bundles (instance, type and system level) with `_since`, `_count` and stable paging.

use crate::format::{Query, fhir_json_response};
use crate::rest::blocking_checked;
use crate::{ApiError, AppState};
use access::Access;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use store::{HistoryQuery, ResourceVersion};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const DEFAULT_COUNT: usize = 50;
/// The paging cursor: the sequence below which the next page starts. Opaque to clients.
const CURSOR: &str = "_cursor";

/// Answers a history interaction over `scope`.
pub(crate) async fn respond(
    state: AppState,
    access: Access,
    query: Query,
    mut scope: HistoryQuery,
) -> Result<Response, ApiError> {
    scope.count = parse_count(query.get("_count"), state.limits().max_count)?;
    scope.since = query.get("_since").map(parse_instant).transpose()?;
    scope.before_sequence = query
        .get(CURSOR)
        .map(|c| c.parse::<i64>().map_err(|_| ApiError::bad_request("invalid paging cursor")))
        .transpose()?;
    let page_query = scope.clone();
    let (versions, total) = blocking_checked(move || Ok(access.history(&page_query)?)).await?;
    let bundle = history_bundle(&state, &scope, &query, &versions, total);
    Ok(fhir_json_response(StatusCode::OK, &bundle))
}

fn parse_count(value: Option<&str>, max: usize) -> Result<usize, ApiError> {
    match value {
        None => Ok(DEFAULT_COUNT.min(max)),
        Some(v) => match v.parse::<usize>() {
            Ok(n) => Ok(n.min(max)),
            Err(_) => Err(ApiError::bad_request("_count must be a non-negative integer")),
        },
    }
}

/// Parses a FHIR instant or dateTime with a time zone (`_since`).
fn parse_instant(value: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|_| ApiError::bad_request("_since must be an instant such as 2026-01-01T00:00:00Z"))
}

fn instant(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

fn scope_path(scope: &HistoryQuery) -> String {
    match (&scope.resource_type, &scope.id) {
        (Some(t), Some(id)) => format!("{t}/{id}/_history"),
        (Some(t), None) => format!("{t}/_history"),
        _ => "_history".to_string(),
    }
}

fn history_bundle(
    state: &AppState,
    scope: &HistoryQuery,
    query: &Query,
    versions: &[ResourceVersion],
    total: u64,
) -> Value {
    let base = state.base_url();
    let mut params: Vec<String> = vec![format!("_count={}", scope.count)];
    if let Some(since) = query.get("_since") {
        params.push(format!("_since={}", form_urlencoded::byte_serialize(since.as_bytes()).collect::<String>()));
    }
    let self_url = format!("{base}/{}?{}", scope_path(scope), query.raw);
    let mut links = vec![json!({"relation": "self", "url": self_url})];
    if versions.len() == scope.count
        && let Some(last) = versions.last()
    {
        let next = format!("{base}/{}?{}&{CURSOR}={}", scope_path(scope), params.join("&"), last.sequence);
        links.push(json!({"relation": "next", "url": next}));
    }
    let entries: Vec<Value> = versions.iter().map(|v| history_entry(base, v)).collect();
    json!({
        "resourceType": "Bundle",
        "type": "history",
        "total": total,
        "link": links,
        "entry": entries,
    })
}

fn history_entry(base: &str, version: &ResourceVersion) -> Value {
    let path = format!("{}/{}", version.resource_type, version.id);
    let mut entry = Map::new();
    entry.insert("fullUrl".into(), json!(format!("{base}/{path}")));
    if let Some(body) = &version.body
        && let Ok(resource) = serde_json::from_str::<Value>(body)
    {
        entry.insert("resource".into(), resource);
    }
    let (url, status) = match version.change {
        store::Change::Created => (version.resource_type.clone(), "201 Created"),
        store::Change::Updated => (path.clone(), "200 OK"),
        store::Change::Deleted => (path.clone(), "204 No Content"),
    };
    entry.insert("request".into(), json!({"method": version.change.method(), "url": url}));
    entry.insert(
        "response".into(),
        json!({
            "status": status,
            "etag": format!("W/\"{}\"", version.version),
            "lastModified": instant(version.last_updated),
        }),
    );
    Value::Object(entry)
}
