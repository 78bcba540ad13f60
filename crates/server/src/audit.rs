//! The audit trail at the HTTP edge: every FHIR request of a server with a policy leaves an
//! `AuditEvent` — who (user, app, address), what (interaction, resources, query), which
//! patient, when, and the outcome (refusals included).
//!
//! Writes are audited by the store inside their own transaction ([`store::Records::as_actor`]);
//! everything else (reads, searches, history, operations, refusals) is appended here, in
//! batches (group commit: one unit of work per batch, so that auditing a read costs a share of
//! a commit rather than a commit of its own). A response is sent only once its entries are
//! durably appended: the middleware waits for its batch to commit, and when the append fails
//! every request of that batch is answered 503 (`transient`, "the audit trail is unavailable")
//! instead of what it would have shown. Nothing is served unaudited.

use crate::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use store::audit::{Actor, Happening, NewAuditEntry};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most requests waiting for a batch before more wait to queue.
const QUEUE: usize = 16_384;
/// Most entries in one batch.
const BATCH: usize = 2_048;
/// Batches being appended at once (each its own unit of work; the store's writer groups
/// them into commits).
const IN_FLIGHT: usize = 4;

/// Why entries were not appended: the request they describe must not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", store::audit::UNAVAILABLE)]
pub struct AuditUnavailable;

impl AuditUnavailable {
    /// The answer instead of a response that could not be audited: 503, `transient`.
    pub fn response(self) -> Response {
        crate::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            fhir::IssueCode::Transient,
            format!("{}; the request was not served", store::audit::UNAVAILABLE),
        )
        .into_response()
    }
}

/// One request's entries and where the batch's outcome goes.
struct Pending {
    entries: Vec<NewAuditEntry>,
    done: oneshot::Sender<Result<(), AuditUnavailable>>,
}

/// Appends audit entries in batches and tells each request when its entries are durable.
pub struct Auditor {
    queue: mpsc::Sender<Pending>,
    log: Arc<dyn store::AuditLog>,
}

impl Auditor {
    /// Starts the task appending to `records`' audit trail (keyed with `records`' audit key,
    /// if any); it ends, after appending what is queued, when the last handle to the auditor
    /// is dropped. `log` is the same trail, read for `GET /fhir/AuditEvent`.
    pub fn start(
        records: store::Records,
        log: Arc<dyn store::AuditLog>,
    ) -> (Arc<Auditor>, tokio::task::JoinHandle<()>) {
        let (queue, mut pending) = mpsc::channel::<Pending>(QUEUE);
        let task = tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(IN_FLIGHT));
            while let Some(first) = pending.recv().await {
                // A slot first, then the batch: what queued while every slot was busy joins it.
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
                let mut count = first.entries.len();
                let mut batch = vec![first];
                while count < BATCH {
                    match pending.try_recv() {
                        Ok(more) => {
                            count += more.entries.len();
                            batch.push(more);
                        }
                        Err(_) => break,
                    }
                }
                let records = records.clone();
                tokio::spawn(async move {
                    let entries: Vec<NewAuditEntry> =
                        batch.iter_mut().flat_map(|p| std::mem::take(&mut p.entries)).collect();
                    let outcome = match tokio::task::spawn_blocking(move || records.append_audit(entries)).await {
                        Ok(Ok(())) => Ok(()),
                        // No entry content in the log: it names patients.
                        Ok(Err(error)) => {
                            tracing::error!(%error, count, "audit entries could not be appended; their requests get 503");
                            Err(AuditUnavailable)
                        }
                        Err(_) => {
                            tracing::error!(count, "the audit append panicked; its requests get 503");
                            Err(AuditUnavailable)
                        }
                    };
                    for request in batch {
                        let _ = request.done.send(outcome);
                    }
                    drop(slot);
                });
            }
            // Every batch in flight is answered before the task ends.
            let _ = slots.acquire_many(IN_FLIGHT as u32).await;
        });
        (Arc::new(Auditor { queue, log }), task)
    }

    /// Appends entries to the trail in the next batch and waits until that batch is durable.
    /// `Err`: they could not be appended, and what they describe must not be served.
    pub async fn record(&self, entries: Vec<NewAuditEntry>) -> Result<(), AuditUnavailable> {
        if entries.is_empty() {
            return Ok(());
        }
        let (done, outcome) = oneshot::channel();
        if self.queue.send(Pending { entries, done }).await.is_err() {
            tracing::error!("the auditor has stopped; a request is refused rather than served unaudited");
            return Err(AuditUnavailable);
        }
        outcome.await.unwrap_or(Err(AuditUnavailable))
    }
}

/// What a handler tells the audit about its request (in the response's extensions).
#[derive(Clone, Debug, Default)]
pub(crate) struct AuditNote {
    /// Resources handed out or touched, per patient (`None`: not a patient's).
    pub touched: Vec<(Option<String>, Vec<String>)>,
    /// The store already audited it (a write, inside its transaction).
    pub written: bool,
    /// A stated reason (break-the-glass).
    pub reason: Option<String>,
    /// What was handed out is audited as a read whatever the request's method (a
    /// conditional create that matched, a Bundle's reads).
    pub read: bool,
}

impl AuditNote {
    /// The note of resources handed out: `(patient, Type/id)` pairs grouped by patient.
    pub(crate) fn of(pairs: impl IntoIterator<Item = (Option<String>, String)>) -> AuditNote {
        let mut touched: Vec<(Option<String>, Vec<String>)> = Vec::new();
        for (patient, reference) in pairs {
            match touched.iter_mut().find(|(p, _)| *p == patient) {
                Some((_, refs)) => refs.push(reference),
                None => touched.push((patient, vec![reference])),
            }
        }
        AuditNote { touched, ..AuditNote::default() }
    }
}

/// The note of versions handed out (each attributed to its first patient).
pub(crate) fn note_of<'a>(versions: impl IntoIterator<Item = &'a store::ResourceVersion>) -> AuditNote {
    AuditNote::of(versions.into_iter().map(|v| {
        let patient = if v.resource_type == "Patient" {
            Some(v.id.clone())
        } else {
            v.body
                .as_deref()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                .and_then(|json| store::compartment::patients_of(&v.resource_type, &json).into_iter().next())
        };
        (patient, format!("{}/{}/_history/{}", v.resource_type, v.id, v.version))
    }))
}

/// The note of what a Bundle's reads and matching conditional creates handed out (`reads`:
/// which entries of the request were such), audited as reads.
pub(crate) fn bundle_reads(reads: &[bool], response: &serde_json::Value) -> AuditNote {
    let entries = response.get("entry").and_then(serde_json::Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let mut pairs = Vec::new();
    for (entry, _) in entries.iter().zip(reads).filter(|(_, read)| **read) {
        let status = entry.pointer("/response/status").and_then(serde_json::Value::as_str).unwrap_or_default();
        if !status.starts_with("200") {
            continue;
        }
        let Some(resource) = entry.get("resource") else {
            // A match answered by its location only.
            if let Some(location) = entry.pointer("/response/location").and_then(serde_json::Value::as_str) {
                pairs.push((None, location.to_string()));
            }
            continue;
        };
        let (Some(t), Some(id)) = (
            resource.get("resourceType").and_then(serde_json::Value::as_str),
            resource.get("id").and_then(serde_json::Value::as_str),
        ) else {
            continue;
        };
        if t == "Bundle" {
            // A search entry's searchset: each match in it.
            for inner in resource.get("entry").and_then(serde_json::Value::as_array).into_iter().flatten() {
                if let Some(r) = inner.get("resource") {
                    pairs.push(handed_out(r));
                }
            }
            continue;
        }
        let patient = if t == "Patient" {
            Some(id.to_string())
        } else {
            store::compartment::patients_of(t, resource).into_iter().next()
        };
        pairs.push((patient, format!("{t}/{id}")));
    }
    let mut note = AuditNote::of(pairs.into_iter().filter(|(_, r)| !r.is_empty()));
    note.read = true;
    note
}

fn handed_out(resource: &serde_json::Value) -> (Option<String>, String) {
    let t = resource.get("resourceType").and_then(serde_json::Value::as_str).unwrap_or_default();
    let id = resource.get("id").and_then(serde_json::Value::as_str).unwrap_or_default();
    if t.is_empty() || id.is_empty() {
        return (None, String::new());
    }
    let patient = if t == "Patient" {
        Some(id.to_string())
    } else {
        store::compartment::patients_of(t, resource).into_iter().next()
    };
    (patient, format!("{t}/{id}"))
}

/// Notes the versions a response hands out, when the server audits.
pub(crate) fn noted_versions<'a>(
    state: &AppState,
    response: Response,
    versions: impl IntoIterator<Item = &'a store::ResourceVersion>,
) -> Response {
    if state.auditor().is_none() {
        return response;
    }
    noted(response, note_of(versions))
}

/// Marks a response whose write the store audited.
pub(crate) fn written(mut response: Response) -> Response {
    response.extensions_mut().insert(AuditNote { written: true, ..AuditNote::default() });
    response
}

/// Adds `note` to a response.
pub(crate) fn noted(mut response: Response, note: AuditNote) -> Response {
    response.extensions_mut().insert(note);
    response
}

/// Where the request's caller is left by the `Access` extractor for the audit to read.
#[derive(Clone, Default)]
pub(crate) struct CallerSlot(pub Arc<OnceLock<Arc<policy::Caller>>>);

/// The agent of the audit trail for a caller.
pub fn actor(caller: &policy::Caller, address: Option<SocketAddr>, patient: Option<&str>) -> Actor {
    let principal = &caller.principal;
    let name = match &principal.actor {
        auth::Actor::User { username, .. } => username.clone(),
        auth::Actor::Service { client_id } => client_id.clone(),
    };
    Actor {
        who: principal.fhir_user(),
        name,
        client_id: principal.client_id.clone(),
        address: address.map(|a| a.ip().to_string()),
        emergency: patient.is_some_and(|p| caller.under_glass(p)),
    }
}

/// The middleware: runs the request, then audits it.
pub(crate) async fn audit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(auditor) = state.auditor().cloned() else { return next.run(request).await };
    let slot = CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    let address = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let response = next.run(request).await;
    let note = response.extensions().get::<AuditNote>().cloned().unwrap_or_default();
    if note.written {
        return response;
    }
    let status = response.status();
    let outcome = if status.is_success() || status.is_redirection() {
        "0"
    } else if status.is_client_error() {
        "4"
    } else {
        "8"
    };
    let (action, subtype) = if note.read { ("R", "read") } else { interaction(&method, &path) };
    if path.ends_with("/metadata") || path.contains("/.well-known/") {
        return response;
    }
    let caller = slot.0.get().cloned();
    let path_entity = path_entity(&path);
    let mut touched = note.touched.clone();
    if touched.is_empty() {
        let patient = path_patient(&path, query.as_deref());
        touched.push((patient, path_entity.into_iter().collect()));
    }
    let now = time::OffsetDateTime::now_utc();
    let entries: Vec<NewAuditEntry> = touched
        .iter()
        .map(|(patient, refs)| {
            let actor = match &caller {
                Some(caller) => actor(caller, address, patient.as_deref()),
                None => Actor {
                    name: "unauthenticated".into(),
                    address: address.map(|a| a.ip().to_string()),
                    ..Actor::default()
                },
            };
            let happening = Happening {
                action,
                subtype,
                outcome,
                entities: refs,
                query: query.as_deref(),
                patient: patient.as_deref(),
                reason: note.reason.as_deref(),
            };
            store::audit::event(&actor, &happening, now)
        })
        .collect();
    match auditor.record(entries).await {
        Ok(()) => response,
        Err(unavailable) => unavailable.response(),
    }
}

/// The FHIR action and RESTful interaction of a request, from its method and path's shape.
fn interaction(method: &axum::http::Method, path: &str) -> (&'static str, &'static str) {
    let parts: Vec<&str> = path.trim_start_matches("/fhir").split('/').filter(|p| !p.is_empty()).collect();
    let history = parts.contains(&"_history");
    let operation = parts.last().is_some_and(|p| p.starts_with('$'));
    match (method.as_str(), parts.len()) {
        _ if operation => ("E", "operation"),
        ("GET", 0) => ("E", "search-system"),
        ("GET", _) if history && parts.len() == 4 => ("R", "vread"),
        ("GET", _) if history && parts.len() == 3 => ("R", "history-instance"),
        ("GET", _) if history && parts.len() == 2 => ("R", "history-type"),
        ("GET", _) if history => ("R", "history-system"),
        ("GET", 1) => ("E", "search-type"),
        ("GET", 2) => ("R", "read"),
        ("GET", 3) => ("E", "search"),
        ("POST", 0) => ("E", "transaction"),
        ("POST", 2) if parts[1] == "_search" => ("E", "search-type"),
        ("POST", 1) if parts[0] == "_search" => ("E", "search-system"),
        ("POST", _) => ("C", "create"),
        ("PUT", _) => ("U", "update"),
        ("PATCH", _) => ("U", "patch"),
        ("DELETE", _) => ("D", "delete"),
        _ => ("E", "operation"),
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
/// patient sees who opened their own record (the policy limits them to it).
pub(crate) async fn search(
    state: AppState,
    access: crate::access::Access,
    pairs: Vec<(String, String)>,
) -> Result<Response, crate::ApiError> {
    use crate::ApiError;
    use auth::Interaction;
    let Some(auditor) = state.auditor().cloned() else {
        return Err(ApiError::not_found("this server keeps no audit trail (it runs without access control)"));
    };
    let gate = access.gate(Interaction::Search, "AuditEvent", &pairs)?;
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
    if gate.restricted() {
        // A patient: their own record's trail only.
        let own = access.own_patient().ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                fhir::IssueCode::Forbidden,
                "the audit trail is for administrators",
            )
        })?;
        match &query.patient {
            Some(p) if p != &own => return Err(ApiError::not_found("resource not found")),
            _ => query.patient = Some(own),
        }
    }
    let log = auditor.log.clone();
    let asked = query.clone();
    let entries = crate::rest::blocking(move || log.search(&asked)).await?;
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
