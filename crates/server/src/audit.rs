//! The audit trail at the HTTP edge: every FHIR request of a server with a policy leaves an
//! `AuditEvent` — who (user, app, address), what (interaction, resources, query), which
//! patient, when, and the outcome (refusals included).
//!
//! What goes through the door ([`access::Access`]) is audited by it: writes inside their own
//! transaction, everything else noted on the request's handle, which this middleware settles
//! (waits until its entries are durable) before the response leaves — 503 instead when they
//! could not be appended. A request that never reached the door (refused before it: no or a
//! bad token, a malformed body) is audited here from its method, path and status. Nothing is
//! served unaudited.

use crate::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use store::audit::{Action, Agent, Happening, NewAuditEntry, Outcome, Subtype};

pub use access::{AuditUnavailable, Auditor, actor};

/// Where the `Caller` extractor leaves the request's door handle for the middleware.
#[derive(Clone, Default)]
pub(crate) struct HandleSlot(pub Arc<OnceLock<access::Access>>);

/// The middleware: runs the request, then settles its audit.
pub(crate) async fn audit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(auditor) = state.door().auditor().cloned() else { return next.run(request).await };
    let slot = HandleSlot::default();
    request.extensions_mut().insert(slot.clone());
    let address = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let response = next.run(request).await;
    let handle = slot.0.get().cloned();
    if let Some(handle) = handle.as_ref().filter(|h| h.used()) {
        return match handle.settle().await {
            Ok(()) => response,
            Err(unavailable) => crate::ApiError::from(unavailable).into_response(),
        };
    }
    if path.ends_with("/metadata") || path.contains("/.well-known/") {
        return response;
    }
    let outcome = Outcome::of_status(response.status().as_u16());
    let (action, subtype) = interaction(&method, &path);
    let patient = path_patient(&path, query.as_deref());
    let actor = match handle.as_ref().and_then(|h| h.caller()) {
        Some(caller) => actor(caller, address, patient.as_deref()),
        None => {
            Agent { name: "unauthenticated".into(), address: address.map(|a| a.ip().to_string()), ..Agent::default() }
        }
    };
    let entities: Vec<String> = path_entity(&path).into_iter().collect();
    let happening = Happening {
        action,
        subtype,
        outcome,
        entities: &entities,
        query: query.as_deref(),
        patient: patient.as_deref(),
        reason: None,
    };
    let entries: Vec<NewAuditEntry> = vec![store::audit::event(&actor, &happening, time::OffsetDateTime::now_utc())];
    match auditor.record(entries).await {
        Ok(()) => response,
        Err(unavailable) => crate::ApiError::from(unavailable).into_response(),
    }
}

/// The FHIR action and RESTful interaction of a request, from its method and path's shape.
fn interaction(method: &axum::http::Method, path: &str) -> (Action, Subtype) {
    let parts: Vec<&str> = path.trim_start_matches("/fhir").split('/').filter(|p| !p.is_empty()).collect();
    let history = parts.contains(&"_history");
    let operation = parts.last().is_some_and(|p| p.starts_with('$'));
    match (method.as_str(), parts.len()) {
        _ if operation => (Action::Execute, Subtype::Operation),
        ("GET", 0) => (Action::Execute, Subtype::SearchSystem),
        ("GET", _) if history && parts.len() == 4 => (Action::Read, Subtype::Vread),
        ("GET", _) if history && parts.len() == 3 => (Action::Read, Subtype::HistoryInstance),
        ("GET", _) if history && parts.len() == 2 => (Action::Read, Subtype::HistoryType),
        ("GET", _) if history => (Action::Read, Subtype::HistorySystem),
        ("GET", 1) => (Action::Execute, Subtype::SearchType),
        ("GET", 2) => (Action::Read, Subtype::Read),
        ("GET", 3) => (Action::Execute, Subtype::Search),
        ("POST", 0) => (Action::Execute, Subtype::Transaction),
        ("POST", 2) if parts[1] == "_search" => (Action::Execute, Subtype::SearchType),
        ("POST", 1) if parts[0] == "_search" => (Action::Execute, Subtype::SearchSystem),
        ("POST", _) => (Action::Create, Subtype::Create),
        ("PUT", _) => (Action::Update, Subtype::Update),
        ("PATCH", _) => (Action::Update, Subtype::Patch),
        ("DELETE", _) => (Action::Delete, Subtype::Delete),
        _ => (Action::Execute, Subtype::Operation),
    }
}

/// `Type/id` named by the path, if any.
fn path_entity(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.trim_start_matches("/fhir").split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [t, id, ..] if fhir::definitions().is_resource_type(t) && fhir::reference::is_id(id) => {
            Some(format!("{t}/{id}"))
        }
        _ => None,
    }
}

/// The patient a request names by its path or its `patient`/`subject` parameter.
fn path_patient(path: &str, query: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = path.trim_start_matches("/fhir").split('/').filter(|p| !p.is_empty()).collect();
    if let ["Patient", id, ..] = parts.as_slice() {
        return Some(id.to_string());
    }
    let query = query?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "patient" || k == "subject")
        .map(|(_, v)| v.trim_start_matches("Patient/").to_string())
        .filter(|v| fhir::reference::is_id(v))
}

/// `GET /fhir/AuditEvent?patient=&agent=&date=&_count=&_page=`: the trail, newest first, as
/// a `searchset` of AuditEvents (their position as id). Administrators search all of it; a
/// patient sees who opened their own record (the door limits them to it).
pub(crate) async fn search(
    state: AppState,
    access: access::Access,
    pairs: Vec<(String, String)>,
) -> Result<Response, crate::ApiError> {
    use crate::ApiError;
    let mut query = store::audit::AuditQuery { count: 50, ..Default::default() };
    for (name, value) in &pairs {
        let bad = || ApiError::bad_request(format!("AuditEvent search: `{name}` has a value this server cannot read"));
        match name.as_str() {
            "patient" => query.patient = Some(value.trim_start_matches("Patient/").to_string()),
            "agent" => query.agent = Some(value.clone()),
            "date" => {
                let (prefix, date) = value.split_at(value.len().min(2));
                let (prefix, date) =
                    if matches!(prefix, "ge" | "gt" | "lt" | "le") { (prefix, date) } else { ("eq", value.as_str()) };
                let range = search::values::DateRange::parse(date).ok_or_else(bad)?;
                let low = search::from_micros(range.low).map_err(|_| bad())?;
                let high = search::from_micros(range.high).map_err(|_| bad())?;
                match prefix {
                    "ge" | "gt" => query.since = Some(if prefix == "gt" { high } else { low }),
                    "lt" | "le" => query.until = Some(if prefix == "lt" { low } else { high }),
                    _ => {
                        query.since = Some(low);
                        query.until = Some(high);
                    }
                }
            }
            "_count" => query.count = value.parse::<usize>().map_err(|_| bad())?.min(state.limits().max_count),
            "_page" => query.before_sequence = Some(value.parse::<i64>().map_err(|_| bad())?),
            "_format" | "_pretty" => {}
            _ => return Err(ApiError::bad_request(format!("AuditEvent search does not take `{name}`"))),
        }
    }
    let asked = query.clone();
    let params = pairs.clone();
    let entries = crate::rest::blocking_checked(move || Ok(access.audit_trail(asked, &params)?)).await?;
    let mut bundle = serde_json::json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "self", "url": format!("{}/AuditEvent", state.base_url())}],
        "entry": entries.iter().map(|e| serde_json::json!({
            "fullUrl": format!("{}/AuditEvent/{}", state.base_url(), e.sequence),
            "resource": store::audit::as_resource(e),
            "search": {"mode": "match"},
        })).collect::<Vec<_>>(),
    });
    if entries.len() == query.count
        && let Some(last) = entries.last()
    {
        let mut next: Vec<String> = pairs
            .iter()
            .filter(|(n, _)| n != "_page")
            .map(|(n, v)| {
                format!(
                    "{}={}",
                    form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>(),
                    form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
            .collect();
        next.push(format!("_page={}", last.sequence));
        let url = format!("{}/AuditEvent?{}", state.base_url(), next.join("&"));
        if let Some(links) = bundle["link"].as_array_mut() {
            links.push(serde_json::json!({"relation": "next", "url": url}));
        }
    }
    Ok(crate::format::fhir_json_response(axum::http::StatusCode::OK, &bundle))
}
