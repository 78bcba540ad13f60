//! Helpers on resource JSON: type, validation, identifiers, and the `id`/`meta` the store writes.

use crate::{Error, Result};
use fhir::Issue;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

/// `meta.lastUpdated` format: a FHIR instant in UTC with microseconds.
const INSTANT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Formats `t` as a FHIR instant in UTC (`2026-11-25T09:01:02.123456Z`).
#[allow(
    clippy::expect_used,
    reason = "an OffsetDateTime has every component INSTANT names, and a String cannot fail to write"
)]
pub fn format_instant(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(INSTANT).expect("a UTC instant always formats")
}

/// Now, truncated to whole microseconds (what backends keep).
#[allow(clippy::expect_used, reason = "whole microseconds are fewer than 10^9 nanoseconds, always in range")]
pub(crate) fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000).expect("truncated nanoseconds are in range")
}

/// A new server-assigned id: a random UUID, which is a valid FHIR id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether `name` has the shape of a resource type name (`Patient`), known or not.
pub(crate) fn looks_like_type(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

/// Whether `name` is an R4 resource type.
pub(crate) fn is_resource_type(name: &str) -> bool {
    looks_like_type(name) && fhir::definitions().is_resource_type(name)
}

/// The `resourceType` of `resource`, which must be a JSON object.
pub(crate) fn resource_type(resource: &Value) -> Result<&str> {
    let object = resource.as_object().ok_or_else(|| Error::invalid("the resource is not a JSON object"))?;
    match object.get("resourceType") {
        Some(Value::String(t)) if is_resource_type(t) => Ok(t),
        Some(Value::String(t)) => Err(Error::invalid(format!("`{t}` is not a resource type"))),
        _ => Err(Error::invalid("the resource has no resourceType")),
    }
}

/// The `id` element of `resource`, if it has one.
pub(crate) fn body_id(resource: &Value) -> Result<Option<&str>> {
    match resource.get("id") {
        None => Ok(None),
        Some(Value::String(id)) if fhir::reference::is_id(id) => Ok(Some(id)),
        Some(_) => Err(Error::Invalid(vec![
            Issue::error(fhir::IssueCode::Value, "the resource id is not a valid FHIR id")
                .at(format!("{}.id", resource_type(resource).unwrap_or("Resource"))),
        ])),
    }
}

/// Checks an id taken from a URL.
pub(crate) fn check_id(id: &str) -> Result<()> {
    if fhir::reference::is_id(id) { Ok(()) } else { Err(Error::invalid(format!("`{id}` is not a valid FHIR id"))) }
}

/// Validation errors become `Invalid` (with every issue, warnings included).
pub(crate) fn check_issues(issues: Vec<Issue>) -> Result<()> {
    if issues.iter().any(Issue::is_error) { Err(Error::Invalid(issues)) } else { Ok(()) }
}

/// Validates `resource` against the R4 definitions.
pub(crate) fn check_valid(resource: &Value) -> Result<()> {
    resource_type(resource)?;
    check_issues(fhir::validate(resource))
}

/// Validates many resources, spread over the available cores when there are many.
pub(crate) fn validate_all(resources: &[&Value]) -> Vec<Vec<Issue>> {
    const PER_THREAD: usize = 64;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || resources.len() < 2 * PER_THREAD {
        return resources.iter().map(|r| fhir::validate(r)).collect();
    }
    let chunk = resources.len().div_ceil(threads).max(PER_THREAD);
    std::thread::scope(|scope| {
        let handles: Vec<_> = resources
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|r| fhir::validate(r)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

/// `(system, value)` of each top-level `identifier` (an array or a single object) that has a
/// value; `None` when it has no system.
pub(crate) fn identifiers(resource: &Value) -> Vec<(Option<String>, String)> {
    let one = |i: &Value| {
        let value = i.get("value")?.as_str()?;
        Some((i.get("system").and_then(Value::as_str).map(str::to_string), value.to_string()))
    };
    match resource.get("identifier") {
        Some(Value::Array(list)) => list.iter().filter_map(one).collect(),
        Some(object @ Value::Object(_)) => one(object).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Writes `id`, `meta.versionId` and `meta.lastUpdated` into `resource`, keeping the rest of
/// `meta` and the element order; new elements go right after `resourceType`.
pub(crate) fn stamp(resource: &mut Value, id: &str, version: u64, last_updated: OffsetDateTime) {
    let Some(object) = resource.as_object_mut() else { return };
    let stamped_meta = |meta: Option<Value>| {
        let mut meta = match meta {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        meta.insert("versionId".into(), Value::String(version.to_string()));
        meta.insert("lastUpdated".into(), Value::String(format_instant(last_updated)));
        Value::Object(meta)
    };
    if object.contains_key("id")
        && let Some(meta) = object.get_mut("meta")
    {
        *meta = stamped_meta(Some(meta.take()));
        object.insert("id".into(), Value::String(id.to_string()));
        return;
    }
    let old = std::mem::take(object);
    let had_meta = old.contains_key("meta");
    for (key, value) in old {
        match key.as_str() {
            "resourceType" => {
                object.insert(key, value);
                object.insert("id".into(), Value::String(id.to_string()));
                if !had_meta {
                    object.insert("meta".into(), stamped_meta(None));
                }
            }
            "id" => {}
            "meta" => {
                object.insert(key, stamped_meta(Some(value)));
            }
            _ => {
                object.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamp_adds_id_and_meta_after_resource_type() {
        let mut r = json!({"resourceType": "Patient", "active": true});
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_764_061_262_123_456_000).unwrap();
        stamp(&mut r, "p1", 3, t);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"3","lastUpdated":"2025-11-25T09:01:02.123456Z"},"active":true}"#
        );
    }

    #[test]
    fn stamp_keeps_other_meta_and_order() {
        let mut r = json!({"resourceType": "Patient", "active": true, "meta": {"tag": [{"code": "x"}], "versionId": "9"}, "id": "old"});
        let t = OffsetDateTime::from_unix_timestamp(0).unwrap();
        stamp(&mut r, "new", 1, t);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"resourceType":"Patient","active":true,"meta":{"tag":[{"code":"x"}],"versionId":"1","lastUpdated":"1970-01-01T00:00:00.000000Z"},"id":"new"}"#
        );
        let mut r = json!({"resourceType": "Patient", "id": "a", "text": {}});
        stamp(&mut r, "a", 2, t);
        let keys: Vec<_> = r.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["resourceType", "id", "meta", "text"]);
    }

    #[test]
    fn identifiers_from_array_or_object() {
        let r = json!({"identifier": [{"system": "s", "value": "1"}, {"value": "2"}, {"system": "x"}]});
        assert_eq!(identifiers(&r), vec![(Some("s".into()), "1".into()), (None, "2".into())]);
        let r = json!({"identifier": {"system": "s", "value": "1"}});
        assert_eq!(identifiers(&r), vec![(Some("s".into()), "1".into())]);
    }

    #[test]
    fn decimals_keep_their_text() {
        let r: Value =
            serde_json::from_str(r#"{"resourceType":"Observation","valueQuantity":{"value":1.50}}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"resourceType":"Observation","valueQuantity":{"value":1.50}}"#
        );
    }
}
