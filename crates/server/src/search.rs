//! Search: `GET [type]`, `POST [type]/_search`, system-level `GET /fhir?…`, compartments
//! (`GET Patient/123/Observation`), answered as `searchset` Bundles.

use crate::format::{Query, raw_fhir_response};
use crate::rest::searching_checked;
use crate::{ApiError, AppState};
use access::Access;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fhir::{IssueCode, operation_outcome};
use search::query::{Filter, QueryError, SearchQuery, Summary};
use serde_json::{Map, Value, json};
use store::audit::Subtype;
use store::{ResourceVersion, SearchPage};

/// `_count` when the client names none.
const DEFAULT_COUNT: usize = 20;

/// Where a search runs.
pub(crate) enum Scope {
    System,
    Type(String),
    /// `compartment/id/resource_type`.
    Compartment {
        compartment: String,
        id: String,
        resource_type: String,
    },
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, issues: error.0 }
    }
}

/// `Prefer: handling=strict`.
fn strict(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case("handling=strict"))
}

/// Runs a search over `pairs` (the query string's, plus a form body's for POST).
pub(crate) async fn respond(
    state: AppState,
    access: Access,
    scope: Scope,
    pairs: Vec<(String, String)>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let resource_type = match &scope {
        Scope::System => None,
        Scope::Type(t) => Some(t.clone()),
        Scope::Compartment { resource_type, .. } => Some(resource_type.clone()),
    };
    let pairs: Vec<(String, String)> =
        pairs.into_iter().filter(|(name, _)| name != "_format" && name != "_pretty").collect();
    let mut query = SearchQuery::parse(resource_type.as_deref(), &pairs, strict(headers))?;
    if let Scope::Compartment { compartment, id, resource_type } = &scope {
        query.filters.push(compartment_filter(compartment, id, resource_type)?);
    }
    // The door allows each searched type and narrows the search to what the caller may see
    // before it runs (a search without `_type` by a caller names no type and is refused).
    let mut params = pairs.clone();
    if let Scope::Compartment { compartment, id, .. } = &scope
        && compartment == "Patient"
    {
        params.push(("patient".into(), id.clone()));
    }
    let subtype = match &scope {
        Scope::System => Subtype::SearchSystem,
        Scope::Type(_) => Subtype::SearchType,
        Scope::Compartment { .. } => Subtype::Search,
    };
    let count = query.count.unwrap_or(DEFAULT_COUNT).min(state.limits().max_count);
    let run = query.clone();
    let mut page = searching_checked(&state, move || Ok(access.search(run, &params, count, subtype)?)).await?;
    if query.count.is_some_and(|asked| asked > count) {
        let note = format!("_count was lowered to {count}, the most this server returns in one page");
        page.ignored.push(fhir::Issue::warning(IssueCode::TooCostly, note));
    }
    let bundle = searchset(&state, &scope, &query, count, &page);
    Ok(raw_fhir_response(StatusCode::OK, bundle.into()))
}

/// `Patient/[id]/$everything` with `_since`, `_type`, `_count` and paging: read by the
/// export service, run through the door.
pub(crate) async fn everything(
    state: AppState,
    access: Access,
    id: String,
    pairs: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let max = state.limits().max_count;
    let patient = id.clone();
    let (query, result, count) = searching_checked(&state, move || {
        let (query, page, count) = export::everything(&access, &patient, &pairs, max)?;
        Ok((query, page, count))
    })
    .await?;
    let scope = Scope::Compartment { compartment: "Patient".into(), id, resource_type: "$everything".into() };
    Ok(raw_fhir_response(StatusCode::OK, searchset(&state, &scope, &query, count, &result).into()))
}

/// The filter of a compartment search: any of the type's linking parameters points at the
/// compartment's owner.
fn compartment_filter(compartment: &str, id: &str, resource_type: &str) -> Result<Filter, ApiError> {
    let definition = fhir::definitions()
        .compartment(compartment)
        .ok_or_else(|| ApiError::not_found(format!("there is no {compartment} compartment")))?;
    let params = definition.params(resource_type);
    if params.is_empty() {
        return Err(ApiError::not_found(format!("{resource_type} is not in the {compartment} compartment")));
    }
    let keys = params
        .iter()
        .filter_map(|p| search::registry().param(resource_type, p))
        .filter(|p| p.kind == search::ParamKind::Reference)
        .map(|p| p.key)
        .collect();
    Ok(Filter::Compartment { keys, target_type: compartment.to_string(), ids: vec![id.to_string()] })
}

fn scope_path(scope: &Scope) -> String {
    match scope {
        Scope::System => String::new(),
        Scope::Type(t) => t.clone(),
        Scope::Compartment { compartment, id, resource_type } => format!("{compartment}/{id}/{resource_type}"),
    }
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn link(state: &AppState, scope: &Scope, query: &SearchQuery, count: usize, page: Option<&str>) -> String {
    let mut parts: Vec<String> =
        query.echo.iter().filter(|(n, _)| n != "_count").map(|(n, v)| format!("{}={}", encode(n), encode(v))).collect();
    parts.push(format!("_count={count}"));
    if let Some(page) = page {
        parts.push(format!("_page={}", encode(page)));
    }
    let path = scope_path(scope);
    let sep = if path.is_empty() { "" } else { "/" };
    format!("{}{sep}{path}?{}", state.base_url(), parts.join("&"))
}

/// The `searchset` Bundle as JSON text. Unless `_summary`/`_elements` reshape them, the
/// stored resources are spliced in as they are stored (compact JSON the write path produced)
/// rather than parsed and serialised again, which was half the CPU of a large search.
fn searchset(state: &AppState, scope: &Scope, query: &SearchQuery, count: usize, page: &SearchPage) -> Vec<u8> {
    let mut links = vec![json!({"relation": "self", "url": link(state, scope, query, count, query.page.as_deref())})];
    if let Some(next) = &page.next {
        links.push(json!({"relation": "next", "url": link(state, scope, query, count, Some(next))}));
    }
    if let Some(previous) = &page.previous {
        links.push(json!({"relation": "previous", "url": link(state, scope, query, count, Some(previous))}));
    }
    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), json!("Bundle"));
    bundle.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
    bundle.insert("meta".into(), json!({"lastUpdated": store::format_instant(time::OffsetDateTime::now_utc())}));
    bundle.insert("type".into(), json!("searchset"));
    if let Some(total) = page.total
        && query.total != search::query::Total::None
    {
        bundle.insert("total".into(), json!(total));
    }
    bundle.insert("link".into(), Value::Array(links));
    let versions = page.matches.iter().map(|v| (v, "match")).chain(page.included.iter().map(|v| (v, "include")));
    let outcome = (!page.ignored.is_empty()).then(|| {
        json!({
            "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            "resource": operation_outcome(&page.ignored),
            "search": {"mode": "outcome"},
        })
    });
    let reshaped = query.summary != Summary::False || !query.elements.is_empty();
    if reshaped {
        let mut entries: Vec<Value> = versions.map(|(v, mode)| entry(state, query, v, mode)).collect();
        entries.extend(outcome);
        if !entries.is_empty() {
            bundle.insert("entry".into(), Value::Array(entries));
        }
        return serde_json::to_vec(&Value::Object(bundle)).unwrap_or_default();
    }
    let mut out = serde_json::to_vec(&Value::Object(bundle)).unwrap_or_default();
    out.pop(); // the closing brace; entries follow
    let mut first = true;
    for (version, mode) in versions {
        let Some(body) = version.body.as_deref() else { continue };
        out.extend_from_slice(if first { b",\"entry\":[" } else { b"," });
        first = false;
        let full_url = format!("{}/{}/{}", state.base_url(), version.resource_type, version.id);
        out.extend_from_slice(b"{\"fullUrl\":");
        out.extend_from_slice(&serde_json::to_vec(&full_url).unwrap_or_default());
        out.extend_from_slice(b",\"resource\":");
        out.extend_from_slice(body.as_bytes());
        out.extend_from_slice(b",\"search\":{\"mode\":\"");
        out.extend_from_slice(mode.as_bytes());
        out.extend_from_slice(b"\"}}");
    }
    if let Some(outcome) = outcome {
        out.extend_from_slice(if first { b",\"entry\":[" } else { b"," });
        first = false;
        out.extend_from_slice(&serde_json::to_vec(&outcome).unwrap_or_default());
    }
    if !first {
        out.push(b']');
    }
    out.push(b'}');
    out
}

fn entry(state: &AppState, query: &SearchQuery, version: &ResourceVersion, mode: &str) -> Value {
    let mut resource =
        version.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()).unwrap_or(Value::Null);
    shape(&mut resource, &version.resource_type, query);
    json!({
        "fullUrl": format!("{}/{}/{}", state.base_url(), version.resource_type, version.id),
        "resource": resource,
        "search": {"mode": mode},
    })
}

/// Applies `_summary` and `_elements` to a resource, marking it `SUBSETTED`.
fn shape(resource: &mut Value, resource_type: &str, query: &SearchQuery) {
    let Value::Object(map) = resource else { return };
    let keep: Box<dyn Fn(&str) -> bool> = match query.summary {
        Summary::True => Box::new(|name: &str| is_summary(resource_type, name)),
        Summary::Text => Box::new(|name: &str| matches!(name, "text") || is_mandatory(resource_type, name)),
        Summary::Data => Box::new(|name: &str| name != "text"),
        Summary::False | Summary::Count if !query.elements.is_empty() => {
            let elements = query.elements.clone();
            Box::new(move |name: &str| {
                elements.iter().any(|e| e == name || e.split('.').nth(1) == Some(name))
                    || is_mandatory(resource_type, name)
            })
        }
        _ => return,
    };
    let before = map.len();
    map.retain(|name, _| matches!(name.as_str(), "resourceType" | "id" | "meta") || keep(name));
    if map.len() < before || query.summary != Summary::False {
        let meta = map.entry("meta").or_insert_with(|| json!({}));
        if let Value::Object(meta) = meta {
            let tags = meta.entry("tag").or_insert_with(|| json!([]));
            if let Value::Array(tags) = tags {
                tags.push(json!({
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                    "code": "SUBSETTED",
                    "display": "subsetted"
                }));
            }
        }
    }
}

/// The top-level element named `name` (a JSON property, maybe `valueQuantity`) of the type.
fn element(resource_type: &str, name: &str) -> Option<&'static fhir::definitions::ElementDef> {
    let defs = fhir::definitions();
    let name = name.strip_prefix('_').unwrap_or(name);
    if let Some(e) = defs.element(&format!("{resource_type}.{name}")) {
        return Some(e);
    }
    // A choice element: `valueQuantity` is `value[x]`.
    let split = name.char_indices().filter(|(_, c)| c.is_ascii_uppercase()).map(|(i, _)| i).next_back()?;
    let mut at = split;
    while at > 0 {
        if let Some(e) = defs.element(&format!("{resource_type}.{}[x]", &name[..at])) {
            return Some(e);
        }
        at = name[..at].char_indices().filter(|(_, c)| c.is_ascii_uppercase()).map(|(i, _)| i).next_back().unwrap_or(0);
    }
    None
}

fn is_summary(resource_type: &str, name: &str) -> bool {
    element(resource_type, name).is_some_and(|e| e.summary || e.min > 0)
}

fn is_mandatory(resource_type: &str, name: &str) -> bool {
    element(resource_type, name).is_some_and(|e| e.min > 0)
}

/// Reads a form-encoded body (`POST [type]/_search`).
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The query's pairs.
pub(crate) fn query_pairs(query: &Query) -> Vec<(String, String)> {
    query.pairs.clone()
}

/// An error for a search on a type that does not exist.
pub(crate) fn unknown_type() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, IssueCode::NotFound, "unknown resource type")
}
