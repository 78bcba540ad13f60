//! The policy inside the write path: a [`store::AccessGuard`] for one caller, so that every
//! version a caller's request writes — whatever door it came through (REST create, update,
//! patch, conditional operations, each Bundle entry, the web app's forms) — is checked as it
//! is finally stored, references resolved and patches applied, and conditional operations
//! match only what the caller may see.

use crate::{Caller, Policy, Reach, Refusal, narrowing, patient_owned};
use auth::Interaction;
use search::query::{Filter, SearchQuery};
use std::sync::Arc;
use store::compartment::patients_in_index;
use store::{Change, NewVersion, Transaction};

/// The write-path guard of one caller.
pub struct CallerGuard {
    policy: Arc<Policy>,
    caller: Arc<Caller>,
}

impl CallerGuard {
    /// The guard of `caller` under `policy`.
    pub fn new(policy: Arc<Policy>, caller: Arc<Caller>) -> CallerGuard {
        CallerGuard { policy, caller }
    }

    fn interaction(change: Change) -> Interaction {
        match change {
            Change::Created => Interaction::Create,
            Change::Updated => Interaction::Update,
            Change::Deleted => Interaction::Delete,
        }
    }

    /// Whether `resource_type/ids` are visible to the caller under `interaction`, as seen
    /// inside `tx`: the same narrowing a search gets.
    fn seen(
        &self,
        tx: &mut dyn Transaction,
        interaction: Interaction,
        resource_type: &str,
        ids: &[String],
        params: &[(String, String)],
    ) -> store::Result<Vec<String>> {
        let restriction = match self.policy.authorize(&self.caller, interaction, resource_type, params) {
            Ok(r) => r,
            Err(Refusal::Forbidden(_)) | Err(Refusal::Hidden) => return Ok(Vec::new()),
            Err(e) => return Err(to_store(e)),
        };
        seen_under(tx, resource_type, ids, restriction)
    }
}

/// `ids` of `resource_type` that `restriction` lets through, as seen inside `tx`.
fn seen_under(
    tx: &mut dyn Transaction,
    resource_type: &str,
    ids: &[String],
    restriction: crate::Restriction,
) -> store::Result<Vec<String>> {
    if restriction.reach == Reach::All && restriction.pairs.is_empty() {
        return Ok(ids.to_vec());
    }
    let query = by_id(resource_type, ids, restriction)?;
    tx.search_ids(&query, ids.len().max(1))
}

/// A search for `ids` of `resource_type`, narrowed by `restriction`.
fn by_id(resource_type: &str, ids: &[String], restriction: crate::Restriction) -> store::Result<SearchQuery> {
    let mut filters = vec![Filter::Id(ids.to_vec())];
    filters.extend(narrowing(&[(resource_type.to_string(), restriction)], false).map_err(to_store)?);
    Ok(SearchQuery { types: vec![resource_type.to_string()], filters, ..SearchQuery::default() })
}

fn to_store(refusal: Refusal) -> store::Error {
    match refusal {
        Refusal::Unauthenticated(why) | Refusal::Forbidden(why) => store::Error::Forbidden(why),
        Refusal::Hidden => store::Error::Forbidden(NOT_YOURS.into()),
        Refusal::Store(e) => e,
    }
}

const NOT_YOURS: &str = "the resource must belong only to patients whose record you may write";

/// A Binary is a patient's when its `securityContext` names them (see `Policy::authorize`):
/// a person writes one only for a patient whose record they may write, and replaces or
/// deletes only such a one.
fn binary_is_theirs(
    reach: &Reach,
    previous: Option<&store::ResourceVersion>,
    version: &NewVersion<'_>,
) -> store::Result<()> {
    let Reach::Patients(patients) = reach else { return Ok(()) };
    let theirs = |body: Option<&str>| {
        body.and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok()).is_some_and(|binary| {
            binary
                .pointer("/securityContext/reference")
                .and_then(serde_json::Value::as_str)
                .and_then(|r| r.strip_prefix("Patient/"))
                .is_some_and(|owner| patients.iter().any(|p| p == owner))
        })
    };
    if let Some(previous) = previous.filter(|p| !p.is_deleted())
        && !theirs(previous.body.as_deref())
    {
        return Err(hidden("Binary", version.id));
    }
    if version.body.is_some() && !theirs(version.body) {
        return Err(store::Error::Forbidden(NOT_YOURS.into()));
    }
    Ok(())
}

fn hidden(resource_type: &str, id: &str) -> store::Error {
    store::Error::NotFound { resource_type: resource_type.to_string(), id: id.to_string() }
}

impl store::AccessGuard for CallerGuard {
    fn before_put(&self, tx: &mut dyn Transaction, version: &NewVersion<'_>) -> store::Result<()> {
        let (resource_type, id) = (version.resource_type, version.id);
        let interaction = Self::interaction(version.change);
        let restriction = self.policy.authorize(&self.caller, interaction, resource_type, &[]).map_err(to_store)?;
        if restriction.reach == Reach::All && restriction.pairs.is_empty() {
            return Ok(());
        }
        let previous = tx.current(resource_type, id)?;
        if resource_type == "Binary" {
            return binary_is_theirs(&restriction.reach, previous.as_ref(), version);
        }
        let ids = [id.to_string()];
        match &previous {
            // The version replaced must be one the caller may see (else it does not exist
            // for them).
            Some(p) if !p.is_deleted() && seen_under(tx, resource_type, &ids, restriction.clone())?.is_empty() => {
                return Err(hidden(resource_type, id));
            }
            Some(p) if !p.is_deleted() => {}
            // A deleted Patient comes back only for those who may open it: reviving it would
            // bring back every record still pointing at it.
            Some(_) if resource_type == "Patient" => {
                if let Reach::Patients(patients) = &restriction.reach
                    && !patients.iter().any(|p| p == id)
                {
                    return Err(hidden(resource_type, id));
                }
            }
            _ => {}
        }
        if version.body.is_none() || !patient_owned(resource_type) {
            return Ok(());
        }
        let Reach::Patients(patients) = &restriction.reach else { return Ok(()) };
        if resource_type == "Patient" {
            // A new Patient has no record to be part of yet; an existing one was checked above.
            return Ok(());
        }
        let owners = patients_in_index(resource_type, version.index);
        if owners.is_empty() || !owners.iter().all(|o| patients.contains(o)) {
            return Err(store::Error::Forbidden(NOT_YOURS.into()));
        }
        Ok(())
    }

    fn after_put(&self, tx: &mut dyn Transaction, version: &NewVersion<'_>) -> store::Result<()> {
        if version.body.is_none() {
            return Ok(());
        }
        let (resource_type, id) = (version.resource_type, version.id);
        let interaction = Self::interaction(version.change);
        let owners = if resource_type == "Patient" {
            vec![id.to_string()]
        } else {
            patients_in_index(resource_type, version.index)
        };
        let params: Vec<(String, String)> =
            if owners.is_empty() { Vec::new() } else { vec![("patient".into(), owners.join(","))] };
        let restriction = self.policy.authorize(&self.caller, interaction, resource_type, &params).map_err(to_store)?;
        if restriction.pairs.is_empty() {
            return Ok(());
        }
        // Scope constraints and hidden categories, checked on the version as stored.
        let only_pairs = crate::Restriction { pairs: restriction.pairs, reach: Reach::All };
        let query = by_id(resource_type, &[id.to_string()], only_pairs)?;
        if tx.search_ids(&query, 1)?.is_empty() {
            return Err(store::Error::Forbidden(
                "the resource is outside what your token's scopes and your access let you write".into(),
            ));
        }
        Ok(())
    }

    fn visible(&self, tx: &mut dyn Transaction, resource_type: &str, ids: Vec<String>) -> store::Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(ids);
        }
        let mut seen = self.seen(tx, Interaction::Read, resource_type, &ids, &[])?;
        seen.sort();
        Ok(seen)
    }

    fn may_read(&self, version: &store::ResourceVersion) -> store::Result<bool> {
        let Some(body) = version.body.as_deref() else { return Ok(true) };
        let resource: serde_json::Value =
            serde_json::from_str(body).map_err(|_| store::Error::Storage("a stored resource is not JSON".into()))?;
        self.policy.may_read(&self.caller, &version.resource_type, &resource).map_err(to_store)
    }
}
