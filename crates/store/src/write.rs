//! The writes themselves, run inside a backend transaction (within a [`crate::Work`]); every
//! check against current state happens here so that concurrent writers cannot interleave.

use crate::resource::{body_id, check_valid, identifiers, now, stamp};
use crate::{Change, Criteria, Error, NewVersion, ResourceVersion, Result, Transaction, WriteKind, WriteOutcome};
use fhir::{Issue, IssueCode};
use serde_json::Value;
use std::sync::Arc;

/// A write done: its outcome and the stored body (with `id` and `meta`), kept for reference
/// checks.
pub(crate) struct Written {
    pub outcome: WriteOutcome,
    pub body: Option<Value>,
}

impl Written {
    fn new(kind: WriteKind, version: Option<ResourceVersion>, body: Option<Value>) -> Self {
        Written { outcome: WriteOutcome { kind, version }, body }
    }
}

/// Stores the version after `previous` (version 1 when there is none): stamps `id` and `meta`
/// into `body`, serialises it and puts it with its identifiers.
pub(crate) fn put_version(
    tx: &mut dyn Transaction,
    resource_type: &str,
    id: &str,
    body: Option<&mut Value>,
    previous: Option<&ResourceVersion>,
    change: Change,
) -> Result<ResourceVersion> {
    let version = previous.map_or(1, |p| p.version + 1);
    // lastUpdated never goes backwards within a resource, even if the clock does.
    let last_updated = previous.map_or_else(now, |p| now().max(p.last_updated));
    let (text, identifiers, index, full_text) = match body {
        Some(body) => {
            stamp(body, id, version, last_updated);
            let text = serde_json::to_string(body).map_err(|_| Error::invalid("the resource cannot be serialised"))?;
            let index = search::extract(resource_type, body, &search::IndexContext::default());
            let full_text = search::FullText::of(body);
            (Some(text), identifiers(body), index, Some(full_text))
        }
        None => (None, Vec::new(), Vec::new(), None),
    };
    let sequence = tx.put(&NewVersion {
        resource_type,
        id,
        version,
        last_updated,
        change,
        body: text.as_deref(),
        identifiers: &identifiers,
        index: &index,
        full_text: full_text.as_ref(),
    })?;
    Ok(ResourceVersion {
        resource_type: resource_type.to_string(),
        id: id.to_string(),
        version,
        last_updated,
        change,
        body: text.map(Arc::from),
        sequence,
    })
}

/// Writes a version copied from another store exactly as it was stored (its version number,
/// `lastUpdated`, change and body text), with index rows derived from the body; `false` when
/// this store already has that version (a copy that is run again resumes). A version that
/// does not follow the resource's current one is refused: history is copied in order.
pub(crate) fn restore_version(tx: &mut dyn Transaction, v: &ResourceVersion) -> Result<bool> {
    let current = tx.current_version(&v.resource_type, &v.id)?.map_or(0, |(version, _)| version);
    if current >= v.version {
        return Ok(false);
    }
    if current + 1 != v.version {
        return Err(Error::invalid(format!(
            "{}/{} version {} cannot follow version {current}: versions are copied in order",
            v.resource_type, v.id, v.version
        )));
    }
    let parsed: Option<Value> = match &v.body {
        Some(text) => {
            Some(serde_json::from_str(text).map_err(|_| Error::invalid("a stored version is not valid JSON"))?)
        }
        None => None,
    };
    let (ids, index, full_text) = match &parsed {
        Some(body) => (
            identifiers(body),
            search::extract(&v.resource_type, body, &search::IndexContext::default()),
            Some(search::FullText::of(body)),
        ),
        None => (Vec::new(), Vec::new(), None),
    };
    tx.put(&NewVersion {
        resource_type: &v.resource_type,
        id: &v.id,
        version: v.version,
        last_updated: v.last_updated,
        change: v.change,
        body: v.body.as_deref(),
        identifiers: &ids,
        index: &index,
        full_text: full_text.as_ref(),
    })?;
    Ok(true)
}

/// `PreconditionFailed` unless the current version is `if_match` (when given).
pub(crate) fn check_if_match(if_match: Option<u64>, current: Option<&ResourceVersion>) -> Result<()> {
    match (if_match, current) {
        (None, _) => Ok(()),
        (Some(expected), Some(c)) if c.version == expected => Ok(()),
        (Some(expected), Some(c)) => Err(Error::PreconditionFailed(format!(
            "{}/{} is at version {}, not {expected}",
            c.resource_type, c.id, c.version
        ))),
        (Some(expected), None) => {
            Err(Error::PreconditionFailed(format!("the resource does not exist, so is not at version {expected}")))
        }
    }
}

/// Creates `body` as `resource_type/id`, unless `criteria` (If-None-Exist) match: one match is
/// returned as `Matched`, several fail.
pub(crate) fn create(
    tx: &mut dyn Transaction,
    resource_type: &str,
    id: &str,
    mut body: Value,
    criteria: Option<&Criteria>,
) -> Result<Written> {
    if let Some(criteria) = criteria
        && let Some(existing) = find_one(tx, resource_type, criteria)?
    {
        return matched(tx, resource_type, &existing);
    }
    let version = put_version(tx, resource_type, id, Some(&mut body), None, Change::Created)?;
    Ok(Written::new(WriteKind::Created, Some(version), Some(body)))
}

/// The one match of `criteria`, `None` for no match, `PreconditionFailed` for several.
pub(crate) fn find_one(tx: &mut dyn Transaction, resource_type: &str, criteria: &Criteria) -> Result<Option<String>> {
    let mut found = criteria.find(tx, resource_type)?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(Error::PreconditionFailed(format!("{n} {resource_type} resources match the criteria"))),
    }
}

/// The current version of a resource a conditional create matched.
pub(crate) fn matched(tx: &mut dyn Transaction, resource_type: &str, id: &str) -> Result<Written> {
    let current = tx.current(resource_type, id)?;
    let current = current
        .filter(|c| !c.is_deleted())
        .ok_or_else(|| Error::Storage("a matched resource has no current version".into()))?;
    Ok(Written::new(WriteKind::Matched, Some(current), None))
}

/// Updates `resource_type/id` with `body` (whose id, if any, was checked by the caller);
/// creates it when it does not exist or was deleted.
pub(crate) fn update(
    tx: &mut dyn Transaction,
    resource_type: &str,
    id: &str,
    mut body: Value,
    if_match: Option<u64>,
) -> Result<Written> {
    crate::records::require_visible(tx, resource_type, id)?;
    let current = tx.current(resource_type, id)?;
    check_if_match(if_match, current.as_ref())?;
    let (kind, change) = match &current {
        Some(c) if !c.is_deleted() => (WriteKind::Updated, Change::Updated),
        _ => (WriteKind::Created, Change::Created),
    };
    let version = put_version(tx, resource_type, id, Some(&mut body), current.as_ref(), change)?;
    Ok(Written::new(kind, Some(version), Some(body)))
}

/// The id a conditional update writes to: the one match (the body's id, if any, must be it),
/// or with no match the body's id (if it is not taken by a live resource) or `new_id`.
pub(crate) fn conditional_target(
    tx: &mut dyn Transaction,
    resource_type: &str,
    criteria: &Criteria,
    body_id: Option<&str>,
    new_id: &str,
) -> Result<String> {
    match (find_one(tx, resource_type, criteria)?, body_id) {
        (Some(found), Some(id)) if found != id => Err(Error::Invalid(vec![
            Issue::error(IssueCode::Invalid, format!("the resource id `{id}` is not the id of the match, `{found}`"))
                .at(format!("{resource_type}.id")),
        ])),
        (Some(found), _) => Ok(found),
        (None, Some(id)) => match tx.current_version(resource_type, id)? {
            Some((_, false)) => {
                Err(Error::Conflict(format!("{resource_type}/{id} exists but does not match the criteria")))
            }
            _ => Ok(id.to_string()),
        },
        (None, None) => Ok(new_id.to_string()),
    }
}

/// Writes a deletion version; nothing when the resource does not exist or is already deleted.
pub(crate) fn delete(
    tx: &mut dyn Transaction,
    resource_type: &str,
    id: &str,
    if_match: Option<u64>,
) -> Result<Written> {
    crate::records::require_visible(tx, resource_type, id)?;
    let current = tx.current(resource_type, id)?;
    check_if_match(if_match, current.as_ref())?;
    match current {
        Some(c) if !c.is_deleted() => {
            let version = put_version(tx, resource_type, id, None, Some(&c), Change::Deleted)?;
            Ok(Written::new(WriteKind::Deleted, Some(version), None))
        }
        _ => Ok(Written::new(WriteKind::NothingToDelete, None, None)),
    }
}

/// A JSON Patch document.
pub(crate) fn parse_patch(patch: &Value) -> Result<json_patch::Patch> {
    serde_json::from_value(patch.clone()).map_err(|_| Error::invalid("not a JSON Patch document (RFC 6902)"))
}

/// `patch` applied to the live `current` version, checked and validated (not stored).
pub(crate) fn apply_patch(current: &ResourceVersion, patch: &json_patch::Patch) -> Result<Value> {
    let (resource_type, id) = (current.resource_type.as_str(), current.id.as_str());
    let body = current.body.as_deref().ok_or_else(|| Error::Gone {
        resource_type: resource_type.to_string(),
        id: id.to_string(),
        version: current.version,
    })?;
    let mut doc: Value =
        serde_json::from_str(body).map_err(|_| Error::Storage("a stored resource is not valid JSON".into()))?;
    json_patch::patch(&mut doc, &patch.0).map_err(|e| {
        Error::Unprocessable(vec![Issue::error(IssueCode::Processing, format!("the patch cannot be applied: {e}"))])
    })?;
    if crate::resource::resource_type(&doc)? != resource_type {
        return Err(Error::invalid("a patch cannot change the resourceType"));
    }
    if body_id(&doc)? != Some(id) {
        return Err(Error::invalid("a patch cannot change or remove the id"));
    }
    check_valid(&doc)?;
    Ok(doc)
}
