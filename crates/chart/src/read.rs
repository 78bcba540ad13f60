//! Reading the record through the door as a chart does: searches and reads that answer the
//! resources themselves, and writing back what was read only if nobody changed it meanwhile.

use crate::{Error, Result};
use access::Access;
use fhir::ErrorClass;
use search::query::SearchQuery;
use serde_json::{Value, json};
use store::audit::Subtype;

/// A search of `resource_type` with `pairs`, as the caller may see it (up to `count`).
pub fn search(access: &Access, resource_type: &str, pairs: &[(&str, String)], count: usize) -> Result<Vec<Value>> {
    let params: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let query = SearchQuery::parse(Some(resource_type), &params, false).map_err(access::Error::from)?;
    let page = access.search(query, &params, count, Subtype::SearchType)?;
    Ok(page.matches.iter().filter_map(|v| v.body.as_deref()).filter_map(|b| serde_json::from_str(b).ok()).collect())
}

/// Like [`search`], but `None` when the caller may not read the type at all (a front desk and
/// results, say): a view shows the rest and says what it leaves out.
pub fn search_if_allowed(
    access: &Access,
    resource_type: &str,
    pairs: &[(&str, String)],
    count: usize,
) -> Result<Option<Vec<Value>>> {
    match search(access, resource_type, pairs, count) {
        Ok(found) => Ok(Some(found)),
        Err(e) if matches!(e.class(), ErrorClass::Forbidden | ErrorClass::Unauthenticated) => Ok(None),
        Err(other) => Err(other),
    }
}

/// One resource by id, when the caller may see it (else [`Error::NotOnChart`]), with its
/// `meta.versionId`.
pub fn read(access: &Access, resource_type: &str, id: &str) -> Result<Value> {
    if !fhir::reference::is_id(id) {
        return Err(Error::NotOnChart);
    }
    let version = access.read(resource_type, id)?;
    version.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).ok_or(Error::NotOnChart)
}

/// Drops the version and time the store gave a resource read back (it sets them again on
/// the next write), and the `meta` left empty by that (FHIR's ele-1 forbids empty elements).
pub fn forget_version(resource: &mut Value) {
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            resource.as_object_mut().map(|r| r.remove("meta"));
        }
    }
}

/// A transaction entry that writes `resource` (read earlier) back as its next version, only
/// if nobody changed it meanwhile (`If-Match` on the version it was read at).
pub fn update_entry(mut resource: Value) -> Value {
    let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_string();
    let id = resource.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    let version = resource.pointer("/meta/versionId").and_then(Value::as_str).unwrap_or("1").to_string();
    forget_version(&mut resource);
    json!({"resource": resource, "request": {
        "method": "PUT", "url": format!("{resource_type}/{id}"), "ifMatch": format!("W/\"{version}\"")}})
}

/// Writes `resource` (read earlier) back as its next version, only if nobody changed it since
/// (`If-Match` on the version it was read at).
pub fn write_back(access: &Access, mut resource: Value) -> Result<()> {
    let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_string();
    let id = resource.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    let read_at = resource.pointer("/meta/versionId").and_then(Value::as_str).and_then(|v| v.parse().ok());
    forget_version(&mut resource);
    access.update(&resource_type, &id, resource, read_at)?;
    Ok(())
}

/// Refuses unless the caller may open (and so write to) `patient`'s chart.
pub fn may_write(access: &Access, patient: &str) -> Result<()> {
    if access.may_open_patient(patient)? {
        Ok(())
    } else {
        Err(access::Error::Forbidden("you may not write to this patient's record".into()).into())
    }
}
