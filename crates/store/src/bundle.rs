//! Batch and transaction Bundle processing (FHIR R4 http.html#transaction): parsing entries,
//! validating their resources off the writer, and building the response Bundle. The entries'
//! writes themselves run in [`crate::transaction`].

use crate::records::{Records, check_update_shape, conditional_criteria, take};
use crate::resource::{check_issues, format_instant, is_resource_type, new_id, resource_type, validate_all};
use crate::transaction::execute;
use crate::write::parse_patch;
use crate::{Criteria, Error, ResourceVersion, Result, WriteKind, WriteOutcome};
use base64::Engine as _;
use fhir::{Issue, IssueCode, operation_outcome};
use serde_json::{Map, Value, json};

/// An entry's `request.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// Processing order within a transaction: DELETE, POST, PUT/PATCH, GET/HEAD.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Method::Delete => 0,
            Method::Post => 1,
            Method::Put | Method::Patch => 2,
            Method::Get | Method::Head => 3,
        }
    }
}

/// What an entry's `request.url` addresses.
#[derive(Debug)]
pub(crate) enum Target {
    /// `Type` (a create).
    Type,
    /// `Type/id` or `Type/id/_history/vid`.
    Instance { id: String, version: Option<u64> },
    /// `Type?criteria`.
    Conditional(Criteria),
}

/// One parsed Bundle entry.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Position in the request Bundle.
    pub index: usize,
    pub method: Method,
    pub resource_type: String,
    pub target: Target,
    pub full_url: Option<String>,
    /// The resource of a POST or PUT.
    pub body: Option<Value>,
    /// The JSON Patch of a PATCH.
    pub patch: Option<json_patch::Patch>,
    pub if_none_exist: Option<Criteria>,
    pub if_match: Option<u64>,
    /// The id a create (or a conditional update that matches nothing) gets.
    pub new_id: String,
}

/// Processes a `batch` or `transaction` Bundle.
pub(crate) fn process(records: &Records, mut bundle: Value) -> Result<Value> {
    if resource_type(&bundle)? != "Bundle" {
        return Err(Error::invalid("a batch or transaction must be a Bundle"));
    }
    let kind = bundle.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    let entries = match bundle.get_mut("entry").map(Value::take) {
        None => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(Error::invalid("Bundle.entry is not an array")),
    };
    match kind.as_str() {
        "transaction" => transaction(records, entries),
        "batch" => batch(records, entries),
        other => Err(Error::Invalid(vec![
            Issue::error(IssueCode::Value, format!("Bundle.type `{other}` is neither batch nor transaction"))
                .at("Bundle.type"),
        ])),
    }
}

/// All or nothing: one unit of work; any failing entry fails the whole Bundle.
fn transaction(records: &Records, raw: Vec<Value>) -> Result<Value> {
    let entries = raw
        .into_iter()
        .enumerate()
        .map(|(i, e)| parse_entry(i, e).map_err(|e| e.in_entry(i)))
        .collect::<Result<Vec<_>>>()?;
    let bodies: Vec<&Value> = entries.iter().filter_map(|e| e.body.as_ref()).collect();
    let mut issues = Vec::new();
    let with_body = entries.iter().filter(|e| e.body.is_some());
    for (entry, found) in with_body.zip(validate_all(&bodies)) {
        if let Err(e) = check_issues(found) {
            issues.extend(e.in_entry(entry.index).issues());
        }
    }
    if !issues.is_empty() {
        return Err(Error::Invalid(issues));
    }
    let base = records.base().map(str::to_string);
    let responses = records.run(move |tx| execute(tx, entries, base.as_deref()))?;
    Ok(response_bundle("transaction-response", responses))
}

/// Each entry on its own: a failing entry gets an error response, the others are processed.
fn batch(records: &Records, raw: Vec<Value>) -> Result<Value> {
    let mut responses = vec![Value::Null; raw.len()];
    let mut entries = Vec::new();
    for (i, entry) in raw.into_iter().enumerate() {
        match parse_entry(i, entry) {
            Ok(entry) => entries.push(entry),
            Err(e) => responses[i] = error_response(&e.in_entry(i)),
        }
    }
    let bodies: Vec<&Value> = entries.iter().filter_map(|e| e.body.as_ref()).collect();
    let mut invalid = vec![false; responses.len()];
    let with_body = entries.iter().filter(|e| e.body.is_some());
    for (entry, found) in with_body.zip(validate_all(&bodies)) {
        if let Err(e) = check_issues(found) {
            invalid[entry.index] = true;
            responses[entry.index] = error_response(&e.in_entry(entry.index));
        }
    }
    let mut writes = Vec::new();
    for entry in entries.into_iter().filter(|e| !invalid[e.index]) {
        match entry.method {
            Method::Get | Method::Head => responses[entry.index] = read_entry(records, &entry),
            _ => writes.push(entry),
        }
    }
    let base = records.base().map(Into::<std::sync::Arc<str>>::into);
    let mut indexes = Vec::with_capacity(writes.len());
    let mut works = Vec::with_capacity(writes.len());
    let mut slots = Vec::with_capacity(writes.len());
    let mut announcements = Vec::with_capacity(writes.len());
    for entry in writes {
        indexes.push(entry.index);
        let base = base.clone();
        let (work, slot, announcement) = records.capture(move |tx| execute(tx, vec![entry], base.as_deref()));
        works.push(work);
        slots.push(slot);
        announcements.push(announcement);
    }
    let results = records.backend().execute_all(works);
    for (announcement, result) in announcements.into_iter().zip(&results) {
        announcement.settle(result.is_ok());
    }
    for ((index, slot), result) in indexes.into_iter().zip(slots).zip(results) {
        responses[index] = match result.and_then(|()| take(&slot)) {
            Ok(mut one) => one.pop().unwrap_or(Value::Null),
            Err(e) => error_response(&e.in_entry(index)),
        };
    }
    Ok(response_bundle("batch-response", responses))
}

/// A batch GET, answered from the readers.
fn read_entry(records: &Records, entry: &Entry) -> Value {
    let read = match &entry.target {
        Target::Instance { id, version: None } => records.read(&entry.resource_type, id),
        Target::Instance { id, version: Some(v) } => records.vread(&entry.resource_type, id, *v),
        _ => Err(Error::NotSupported("search in a batch".into())),
    };
    match read.and_then(|v| read_response(&v, entry.method == Method::Head)) {
        Ok(response) => response,
        Err(e) => error_response(&e.in_entry(entry.index)),
    }
}

fn response_bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "type": kind, "entry": entries })
}

/// The response entry of a write.
pub(crate) fn write_response(outcome: &WriteOutcome) -> Value {
    let status = match outcome.kind {
        WriteKind::Created => "201 Created",
        WriteKind::Updated | WriteKind::Matched => "200 OK",
        WriteKind::Deleted | WriteKind::NothingToDelete => "204 No Content",
    };
    let mut response = Map::new();
    response.insert("status".into(), status.into());
    if let Some(v) = &outcome.version {
        if !v.is_deleted() {
            response.insert("location".into(), format!("{}/{}/_history/{}", v.resource_type, v.id, v.version).into());
        }
        response.insert("etag".into(), format!("W/\"{}\"", v.version).into());
        response.insert("lastModified".into(), format_instant(v.last_updated).into());
    }
    json!({ "response": response })
}

/// The response entry of a read: the resource (unless `head`) and its version.
pub(crate) fn read_response(v: &ResourceVersion, head: bool) -> Result<Value> {
    let mut entry = Map::new();
    if !head {
        let body = v.body.as_deref().unwrap_or("null");
        let resource: Value =
            serde_json::from_str(body).map_err(|_| Error::Storage("a stored resource is not valid JSON".into()))?;
        entry.insert("resource".into(), resource);
    }
    entry.insert(
        "response".into(),
        json!({
            "status": "200 OK",
            "location": format!("{}/{}/_history/{}", v.resource_type, v.id, v.version),
            "etag": format!("W/\"{}\"", v.version),
            "lastModified": format_instant(v.last_updated),
        }),
    );
    Ok(Value::Object(entry))
}

/// The response entry of a failed batch entry.
fn error_response(error: &Error) -> Value {
    json!({ "response": {
        "status": error.kind().status_line(),
        "outcome": operation_outcome(&error.issues()),
    }})
}

fn entry_error(index: usize, element: &str, diagnostics: impl Into<String>) -> Error {
    Error::Invalid(vec![Issue::error(IssueCode::Invalid, diagnostics).at(format!("Bundle.entry[{index}].{element}"))])
}

/// Parses and checks (without validating its resource) one entry.
pub(crate) fn parse_entry(index: usize, mut raw: Value) -> Result<Entry> {
    let request = raw
        .get("request")
        .filter(|r| r.is_object())
        .ok_or_else(|| entry_error(index, "request", "the entry has no request"))?;
    let text = |name: &str| request.get(name).and_then(Value::as_str).map(str::to_string);
    let method = match text("method").as_deref() {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("POST") => Method::Post,
        Some("PUT") => Method::Put,
        Some("PATCH") => Method::Patch,
        Some("DELETE") => Method::Delete,
        _ => return Err(entry_error(index, "request.method", "request.method is missing or unknown")),
    };
    let url = text("url").ok_or_else(|| entry_error(index, "request.url", "request.url is missing"))?;
    let (resource_type, target) = parse_url(method, &url).map_err(|e| match e {
        Error::Invalid(_) => entry_error(index, "request.url", format!("request.url: {e}")),
        e => e,
    })?;
    let if_none_exist = match text("ifNoneExist") {
        Some(q) if method == Method::Post => Some(conditional_criteria(&q, &resource_type)?),
        Some(_) => return Err(entry_error(index, "request.ifNoneExist", "ifNoneExist only applies to POST")),
        None => None,
    };
    let if_match = text("ifMatch")
        .map(|m| {
            parse_etag(&m)
                .ok_or_else(|| entry_error(index, "request.ifMatch", "request.ifMatch is not an ETag such as W/\"3\""))
        })
        .transpose()?;
    let full_url = raw.get("fullUrl").and_then(Value::as_str).map(str::to_string);
    let resource = raw.get_mut("resource").map(Value::take);
    let mut entry = Entry {
        index,
        method,
        resource_type,
        target,
        full_url,
        body: None,
        patch: None,
        if_none_exist,
        if_match,
        new_id: String::new(),
    };
    match method {
        Method::Post | Method::Put => {
            let body =
                resource.ok_or_else(|| entry_error(index, "resource", "a POST or PUT entry needs a resource"))?;
            match &entry.target {
                Target::Instance { id, .. } => check_update_shape(&entry.resource_type, Some(id), &body)?,
                Target::Conditional(_) => check_update_shape(&entry.resource_type, None, &body)?,
                // A create ignores the body's id, whatever it is.
                Target::Type => check_type(&entry.resource_type, &body)?,
            }
            entry.body = Some(body);
        }
        Method::Patch => {
            let body = resource.ok_or_else(|| entry_error(index, "resource", "a PATCH entry needs a resource"))?;
            entry.patch = Some(patch_from_resource(&body)?);
        }
        _ => {}
    }
    if matches!(method, Method::Post | Method::Put) {
        entry.new_id = new_id();
    }
    Ok(entry)
}

fn check_type(resource_type: &str, body: &Value) -> Result<()> {
    let body_type = crate::resource::resource_type(body)?;
    if body_type == resource_type {
        Ok(())
    } else {
        Err(Error::invalid(format!("the resource is a {body_type}, not a {resource_type}")))
    }
}

/// `request.url` of an entry: the resource type and what it addresses.
fn parse_url(method: Method, url: &str) -> Result<(String, Target)> {
    if url.contains("://") {
        return Err(Error::invalid("only relative URLs are supported"));
    }
    let url = url.strip_prefix('/').unwrap_or(url);
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let parts: Vec<&str> = path.split('/').collect();
    if parts.iter().any(|p| p.starts_with('$')) {
        return Err(Error::NotSupported("operations in a Bundle".into()));
    }
    if !is_resource_type(parts[0]) {
        return Err(Error::invalid(format!("`{}` is not a resource type", parts[0])));
    }
    let resource_type = parts[0].to_string();
    let instance = |id: &str, version: Option<u64>| {
        crate::resource::check_id(id)?;
        Ok(Target::Instance { id: id.to_string(), version })
    };
    let target = match (method, parts.as_slice()) {
        (Method::Post, [_]) if query.is_empty() => Target::Type,
        (Method::Put | Method::Delete, [_]) if !query.is_empty() => {
            Target::Conditional(conditional_criteria(query, &resource_type)?)
        }
        (Method::Get | Method::Head, [_]) => return Err(Error::NotSupported("search in a Bundle".into())),
        (Method::Patch, [_]) => return Err(Error::NotSupported("conditional patch".into())),
        (Method::Get | Method::Head, [_, "_history"] | [_, _, "_history"]) => {
            return Err(Error::NotSupported("history in a Bundle".into()));
        }
        (Method::Get | Method::Head | Method::Put | Method::Patch | Method::Delete, [_, id]) => instance(id, None)?,
        (Method::Get | Method::Head, [_, id, "_history", v]) => {
            let version = v.parse().map_err(|_| Error::invalid("the version is not a number"))?;
            instance(id, Some(version))?
        }
        _ => return Err(Error::invalid("this URL does not fit the method")),
    };
    Ok((resource_type, target))
}

/// The version in an ETag: `W/"3"`, `"3"` or `3`.
fn parse_etag(etag: &str) -> Option<u64> {
    let etag = etag.trim();
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    let etag = etag.strip_prefix('"').and_then(|e| e.strip_suffix('"')).unwrap_or(etag);
    etag.parse().ok()
}

/// The JSON Patch a PATCH entry carries as a Binary (`application/json-patch+json`).
fn patch_from_resource(resource: &Value) -> Result<json_patch::Patch> {
    match resource_type(resource)? {
        "Binary" => {}
        "Parameters" => return Err(Error::NotSupported("FHIRPath Patch (a Parameters resource)".into())),
        other => return Err(Error::invalid(format!("a PATCH entry carries a Binary, not a {other}"))),
    }
    let content_type = resource.get("contentType").and_then(Value::as_str).unwrap_or_default();
    if content_type.split(';').next().map(str::trim) != Some("application/json-patch+json") {
        return Err(Error::NotSupported(format!("patch of content type `{content_type}`")));
    }
    let data =
        resource.get("data").and_then(Value::as_str).ok_or_else(|| Error::invalid("the patch Binary has no data"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| Error::invalid("the patch Binary's data is not base64"))?;
    let patch: Value =
        serde_json::from_slice(&bytes).map_err(|_| Error::invalid("the patch Binary's data is not JSON"))?;
    parse_patch(&patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(matches!(parse_url(Method::Post, "Patient").unwrap(), (t, Target::Type) if t == "Patient"));
        assert!(
            matches!(parse_url(Method::Put, "/Patient/1").unwrap().1, Target::Instance { id, version: None } if id == "1")
        );
        assert!(matches!(
            parse_url(Method::Get, "Patient/1/_history/2").unwrap().1,
            Target::Instance { version: Some(2), .. }
        ));
        assert!(matches!(parse_url(Method::Delete, "Patient?identifier=a|b").unwrap().1, Target::Conditional(_)));
        assert_eq!(parse_url(Method::Get, "Patient?name=x").unwrap_err().kind(), crate::ErrorKind::NotSupported);
        assert_eq!(parse_url(Method::Post, "Patient/1").unwrap_err().kind(), crate::ErrorKind::Invalid);
        assert_eq!(parse_url(Method::Put, "patient/1").unwrap_err().kind(), crate::ErrorKind::Invalid);
        assert_eq!(parse_url(Method::Put, "Patients/1").unwrap_err().kind(), crate::ErrorKind::Invalid);
        assert_eq!(parse_url(Method::Post, "Patient/$validate").unwrap_err().kind(), crate::ErrorKind::NotSupported);
        assert_eq!(parse_url(Method::Put, "Patient/a b").unwrap_err().kind(), crate::ErrorKind::Invalid);
    }

    #[test]
    fn etags() {
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"12\""), Some(12));
        assert_eq!(parse_etag("7"), Some(7));
        assert_eq!(parse_etag("W/\"x\""), None);
    }

    #[test]
    fn processing_order() {
        let mut methods = [Method::Get, Method::Put, Method::Post, Method::Delete, Method::Patch, Method::Post];
        methods.sort_by_key(|m| m.rank());
        assert_eq!(methods, [Method::Delete, Method::Post, Method::Post, Method::Put, Method::Patch, Method::Get]);
    }

    #[test]
    fn binary_patch() {
        let data =
            base64::engine::general_purpose::STANDARD.encode(br#"[{"op":"replace","path":"/active","value":false}]"#);
        let binary = json!({"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data});
        assert_eq!(patch_from_resource(&binary).unwrap().0.len(), 1);
        let params = json!({"resourceType": "Parameters"});
        assert_eq!(patch_from_resource(&params).unwrap_err().kind(), crate::ErrorKind::NotSupported);
    }

    #[test]
    fn a_post_ignores_the_body_id_but_not_the_type() {
        let post = |resource: Value| {
            parse_entry(0, json!({"request": {"method": "POST", "url": "Patient"}, "resource": resource}))
        };
        assert!(post(json!({"resourceType": "Patient", "id": "not a valid id!"})).is_ok());
        assert_eq!(post(json!({"resourceType": "Group"})).unwrap_err().kind(), crate::ErrorKind::Invalid);
    }

    #[test]
    fn entry_errors_name_the_entry() {
        let e = parse_entry(4, json!({"request": {"method": "PUT", "url": "Patient/1"}, "resource": {"resourceType": "Patient", "id": "2"}}))
            .unwrap_err()
            .in_entry(4);
        assert_eq!(e.issues()[0].expression.as_deref(), Some("Bundle.entry[4].resource.id"));
        let e = parse_entry(2, json!({"request": {"method": "FETCH", "url": "Patient/1"}})).unwrap_err().in_entry(2);
        assert_eq!(e.issues()[0].expression.as_deref(), Some("Bundle.entry[2].request.method"));
    }
}
