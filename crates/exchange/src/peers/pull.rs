//! The pull: a patient's record copied from a peer.
//!
//! The peer's patient is found by its `Patient/$match` (a certain match only; otherwise the
//! candidates are answered and nothing is copied), its `Patient/[id]/$everything` read page
//! by page (`next` links on the peer's own base only), and everything received written in
//! one transaction Bundle through the door (so a pull is all or nothing: references between
//! resources of different pages resolve, and a failure half-way leaves nothing behind).
//!
//! Each pulled resource gets a local id derived from the peer's URL and its own type and id
//! (the same on every pull: a repeated pull finds what it wrote before), `meta.source` =
//! the peer's versioned URL, and references rewritten: to the local copy when the target
//! was pulled, else to the peer's absolute URL. A resource whose `meta.source` is already
//! that version is skipped; a newer version is written as the copy's next version. Every
//! resource written gets a Provenance (one per pulled resource, its next version on each
//! change): target the local copy, `entity.what` the peer's versioned URL, `agent.who` the
//! peer's Organization when registered, else the peer's name.
//!
//! The peer's Patient is kept as a Patient record of its own (not merged into the local
//! one): the local patient gets a `link` of type `seealso` to it and it one back, and the
//! pulled clinical resources reference it. Linking keeps the origin of every item plain and
//! lets the duplicate review decide on a merge.

use super::Peers;
use super::locate::{ask, subject_of};
use crate::{Error, Result};
use access::{Access, Who};
use auth::Interaction;
use search::query::SearchQuery;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use store::audit::{Outcome, Subtype};

/// The most pages followed.
const MAX_PAGES: usize = 1000;
/// The most resources one pull takes.
pub const MAX_RESOURCES: usize = 10_000;
/// The page size asked of the peer.
const PAGE_SIZE: usize = 500;

/// What a pull did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PullReport {
    /// The peer's name.
    pub peer: String,
    /// The peer's Patient (full URL).
    pub source: String,
    /// The local id of the pulled Patient.
    pub patient: String,
    /// Resources received, per type.
    pub received: BTreeMap<String, u64>,
    /// Resources written as new copies.
    pub created: u64,
    /// Copies updated to a newer version.
    pub updated: u64,
    /// Resources already held at the version received.
    pub unchanged: u64,
    /// What the peer said it left out or refused (its OperationOutcome entries' texts).
    pub omitted: Vec<String>,
}

pub(crate) fn pull(peers: &Peers, access: &Access, id: &str, name: &str) -> Result<PullReport> {
    let peer = peers.registry().get(name)?;
    let local = access.read("Patient", id)?;
    let local_patient: Value = local
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or_else(|| Error::invalid("the patient's record could not be read"))?;
    for resource_type in ["Patient", "Provenance"] {
        access.may(Interaction::Create, resource_type)?;
        access.may(Interaction::Update, resource_type)?;
    }
    let query_text = format!("Patient/{id}/$pull peer={name}");
    let result = (|| {
        let session = peers.session(peer.clone())?;
        let candidates = ask(&session, &subject_of(&local_patient))?;
        let certain: Vec<_> = candidates.iter().filter(|c| c.grade == "certain").collect();
        let [theirs] = certain.as_slice() else {
            return Err(Error::NoCertainMatch(
                candidates.iter().map(|c| format!("{} ({}, {:.4})", c.reference, c.grade, c.score)).collect(),
            ));
        };
        let base = session.peer.url.clone();
        let (resources, omitted) = fetch(&session, &base, &theirs.id)?;
        // The copies are written by the pull's job: the caller must be one who may write
        // every type of patient data received (the directory's Practitioners and
        // Organizations come along as the record's context).
        let types: HashSet<&str> = resources
            .iter()
            .filter_map(|r| r.get("resourceType").and_then(Value::as_str))
            .filter(|t| store::compartment::patient_owned(t))
            .collect();
        for resource_type in types {
            access.may(Interaction::Create, resource_type)?;
            access.may(Interaction::Update, resource_type)?;
        }
        write(access, &peer, &base, id, local.version, &local_patient, &theirs.id, resources, omitted)
    })();
    let (entities, outcome) = match &result {
        Ok(report) => (vec![format!("Patient/{id}"), format!("Patient/{}", report.patient)], Outcome::Success),
        Err(_) => (vec![format!("Patient/{id}")], Outcome::MinorFailure),
    };
    access.noted_operation(entities, &query_text, Some(id), outcome);
    result
}

/// Every resource of the peer's `$everything` for `theirs`, and the texts of its outcome
/// entries.
fn fetch(session: &super::client::Session<'_>, base: &str, theirs: &str) -> Result<(Vec<Value>, Vec<String>)> {
    let mut url = format!("{base}/Patient/{theirs}/$everything?_count={PAGE_SIZE}");
    let mut resources = Vec::new();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut omitted = Vec::new();
    for page in 0.. {
        if page >= MAX_PAGES {
            return Err(Error::PeerAnswer(format!("its $everything has more than {MAX_PAGES} pages")));
        }
        let bundle = session.get(&url)?;
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(Error::PeerAnswer("its $everything answer is not a Bundle".into()));
        }
        for entry in bundle.get("entry").and_then(Value::as_array).into_iter().flatten() {
            let Some(resource) = entry.get("resource") else { continue };
            let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
            if resource_type == "OperationOutcome" {
                for issue in resource.get("issue").and_then(Value::as_array).into_iter().flatten() {
                    let text = issue
                        .get("diagnostics")
                        .and_then(Value::as_str)
                        .or_else(|| issue.get("code").and_then(Value::as_str))
                        .unwrap_or("an issue without text");
                    omitted.push(text.chars().take(300).collect());
                }
                continue;
            }
            let resource_id = resource.get("id").and_then(Value::as_str).unwrap_or_default();
            if !fhir::definitions().is_resource_type(resource_type) || !fhir::reference::is_id(resource_id) {
                omitted.push("an entry without a resource type or id was left out".into());
                continue;
            }
            if seen.insert((resource_type.to_string(), resource_id.to_string())) {
                resources.push(resource.clone());
            }
            if resources.len() > MAX_RESOURCES {
                return Err(Error::PeerAnswer(format!("the record has more than {MAX_RESOURCES} resources")));
            }
        }
        let next = bundle
            .get("link")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))
            .and_then(|l| l.get("url").and_then(Value::as_str));
        match next {
            None => break,
            Some(next) if next.starts_with(&format!("{base}/")) || next.starts_with(&format!("{base}?")) => {
                url = next.to_string();
            }
            Some(_) => return Err(Error::PeerAnswer("its next page is on another server".into())),
        }
    }
    if !seen.contains(&("Patient".to_string(), theirs.to_string())) {
        return Err(Error::PeerAnswer("its $everything did not include the patient".into()));
    }
    Ok((resources, omitted))
}

/// The local id of the peer's `resource_type/id` (the same on every pull).
fn local_id(base: &str, resource_type: &str, id: &str, what: &str) -> String {
    let digest = Sha256::digest(format!("{what}|{base}|{resource_type}/{id}").as_bytes());
    digest.iter().take(20).map(|b| format!("{b:02x}")).collect()
}

#[allow(clippy::too_many_arguments, reason = "one step of `pull`, its state passed as it stands")]
fn write(
    access: &Access,
    peer: &super::Peer,
    base: &str,
    id: &str,
    local_version: u64,
    local_patient: &Value,
    theirs: &str,
    resources: Vec<Value>,
    omitted: Vec<String>,
) -> Result<PullReport> {
    let key = |r: &Value| {
        (
            r.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_string(),
            r.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
        )
    };
    let pulled: HashMap<(String, String), String> = resources
        .iter()
        .map(|r| {
            let (t, i) = key(r);
            let local = local_id(base, &t, &i, "copy");
            ((t, i), local)
        })
        .collect();
    let copy_of_patient = pulled.get(&("Patient".to_string(), theirs.to_string())).cloned().unwrap_or_default();
    let job = access.door().enter(Who::Job(super::PULL_JOB));
    let held = held_sources(&job, &pulled)?;
    let mut report = PullReport {
        peer: peer.name.clone(),
        source: format!("{base}/Patient/{theirs}"),
        patient: copy_of_patient.clone(),
        omitted,
        ..PullReport::default()
    };
    let now = store::format_instant(time::OffsetDateTime::now_utc());
    let who = match &peer.organization {
        Some(org) => json!({"reference": format!("{base}/{org}"), "display": peer.name}),
        None => json!({"display": peer.name}),
    };
    let mut entries = Vec::new();
    for resource in &resources {
        let (resource_type, their_id) = key(resource);
        *report.received.entry(resource_type.clone()).or_default() += 1;
        let version = resource.pointer("/meta/versionId").and_then(Value::as_str);
        let source = match version {
            Some(v) => format!("{base}/{resource_type}/{their_id}/_history/{v}"),
            None => format!("{base}/{resource_type}/{their_id}"),
        };
        let local = &pulled[&(resource_type.clone(), their_id.clone())];
        let activity = match held.get(&(resource_type.clone(), local.clone())) {
            Some(Some(held)) if *held == source && version.is_some() => {
                report.unchanged += 1;
                continue;
            }
            Some(_) => {
                report.updated += 1;
                "UPDATE"
            }
            None => {
                report.created += 1;
                "CREATE"
            }
        };
        let mut copy = resource.clone();
        rewrite(&mut copy, base, &pulled);
        copy["id"] = json!(local);
        copy["meta"] = meta_of(resource.get("meta"), &source);
        if resource_type == "Patient" && their_id == theirs {
            add_link(&mut copy, &format!("Patient/{id}"));
        }
        entries.push(json!({
            "resource": copy,
            "request": {"method": "PUT", "url": format!("{resource_type}/{local}")}
        }));
        let provenance_id = local_id(base, &resource_type, &their_id, "provenance");
        entries.push(json!({
            "resource": {
                "resourceType": "Provenance",
                "id": provenance_id,
                "target": [{"reference": format!("{resource_type}/{local}")}],
                "recorded": now,
                "activity": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": activity
                }]},
                "agent": [{
                    "type": {"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                        "code": "author"
                    }]},
                    "who": who
                }],
                "entity": [{"role": "source", "what": {"reference": source}}]
            },
            "request": {"method": "PUT", "url": format!("Provenance/{provenance_id}")}
        }));
    }
    // The local patient points at the copy of the peer's.
    let link = format!("Patient/{copy_of_patient}");
    if !has_link(local_patient, &link) {
        let mut patient = local_patient.clone();
        add_link(&mut patient, &link);
        entries.push(json!({
            "resource": patient,
            "request": {"method": "PUT", "url": format!("Patient/{id}"), "ifMatch": format!("W/\"{local_version}\"")}
        }));
    }
    if !entries.is_empty() {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let written = job.transaction(bundle);
        job.settle_queued();
        written?;
    } else {
        job.settle_queued();
    }
    Ok(report)
}

/// The `meta.source` of the copies already held, by local `(type, id)`.
fn held_sources(
    job: &Access,
    pulled: &HashMap<(String, String), String>,
) -> Result<HashMap<(String, String), Option<String>>> {
    let mut by_type: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for ((resource_type, _), local) in pulled {
        by_type.entry(resource_type.as_str()).or_default().push(local.as_str());
    }
    let mut held = HashMap::new();
    for (resource_type, ids) in by_type {
        for chunk in ids.chunks(100) {
            let params = vec![("_id".to_string(), chunk.join(","))];
            let query = SearchQuery::parse(Some(resource_type), &params, false).map_err(|e| Error::Invalid(e.0))?;
            let page = job.search(query, &params, chunk.len(), Subtype::SearchType)?;
            for version in page.matches {
                let source = version
                    .body
                    .as_deref()
                    .and_then(|b| serde_json::from_str::<Value>(b).ok())
                    .and_then(|v| v.pointer("/meta/source").and_then(Value::as_str).map(str::to_string));
                held.insert((version.resource_type.clone(), version.id.clone()), source);
            }
        }
    }
    Ok(held)
}

/// The copy's `meta`: the peer's profiles, security labels and tags, and `source`.
fn meta_of(meta: Option<&Value>, source: &str) -> Value {
    let mut out = Map::new();
    for field in ["profile", "security", "tag"] {
        if let Some(value) = meta.and_then(|m| m.get(field)) {
            out.insert(field.into(), value.clone());
        }
    }
    out.insert("source".into(), json!(source));
    Value::Object(out)
}

fn has_link(patient: &Value, reference: &str) -> bool {
    patient.get("link").and_then(Value::as_array).is_some_and(|links| {
        links.iter().any(|l| l.pointer("/other/reference").and_then(Value::as_str) == Some(reference))
    })
}

fn add_link(patient: &mut Value, reference: &str) {
    if has_link(patient, reference) {
        return;
    }
    let link = json!({"other": {"reference": reference}, "type": "seealso"});
    match patient.get_mut("link").and_then(Value::as_array_mut) {
        Some(links) => links.push(link),
        None => patient["link"] = json!([link]),
    }
}

/// Rewrites every `reference` in `value`: to the local copy when its target was pulled,
/// else to the peer's absolute URL; contained (`#`), `urn:` and other servers' references
/// are left as they are.
fn rewrite(value: &mut Value, base: &str, pulled: &HashMap<(String, String), String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if key == "reference"
                    && let Value::String(reference) = child
                {
                    if let Some(rewritten) = rewritten(reference, base, pulled) {
                        *reference = rewritten;
                    }
                } else {
                    rewrite(child, base, pulled);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite(item, base, pulled)),
        _ => {}
    }
}

fn rewritten(reference: &str, base: &str, pulled: &HashMap<(String, String), String>) -> Option<String> {
    if reference.starts_with('#') || reference.starts_with("urn:") {
        return None;
    }
    let relative = match reference.strip_prefix(base).and_then(|r| r.strip_prefix('/')) {
        Some(relative) => relative,
        None if reference.contains("://") || reference.contains('?') => return None,
        None => reference,
    };
    let parts: Vec<&str> = relative.split('/').collect();
    let (resource_type, id) = match parts.as_slice() {
        [t, i] | [t, i, "_history", _] => (*t, *i),
        _ => return None,
    };
    if !fhir::definitions().is_resource_type(resource_type) || !fhir::reference::is_id(id) {
        return None;
    }
    match pulled.get(&(resource_type.to_string(), id.to_string())) {
        Some(local) => Some(format!("{resource_type}/{local}")),
        None => Some(format!("{base}/{relative}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_go_to_copies_or_to_the_peer() {
        let base = "http://peer/fhir";
        let pulled: HashMap<(String, String), String> =
            [(("Encounter".to_string(), "e1".to_string()), "abc".to_string())].into_iter().collect();
        let mut resource = json!({
            "resourceType": "Observation",
            "encounter": {"reference": "Encounter/e1"},
            "subject": {"reference": "http://peer/fhir/Encounter/e1/_history/2"},
            "performer": [{"reference": "Practitioner/p9"}, {"reference": "#c1"}, {"reference": "http://other/fhir/Practitioner/p9"}]
        });
        rewrite(&mut resource, base, &pulled);
        assert_eq!(resource["encounter"]["reference"], "Encounter/abc");
        assert_eq!(resource["subject"]["reference"], "Encounter/abc");
        assert_eq!(resource["performer"][0]["reference"], "http://peer/fhir/Practitioner/p9");
        assert_eq!(resource["performer"][1]["reference"], "#c1");
        assert_eq!(resource["performer"][2]["reference"], "http://other/fhir/Practitioner/p9");
        assert_eq!(local_id(base, "Encounter", "e1", "copy"), local_id(base, "Encounter", "e1", "copy"));
        assert_ne!(local_id(base, "Encounter", "e1", "copy"), local_id(base, "Encounter", "e1", "provenance"));
    }
}
