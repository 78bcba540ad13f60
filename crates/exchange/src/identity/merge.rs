//! Patient merge and unmerge: the semantics of FHIR R5's `Patient/$merge` on the R4 record,
//! whatever the door (the API's `$merge`, HL7 v2 `A40`).
//!
//! A merge finds every resource that references the source patient — for every type linked
//! to patients ([`store::compartment::linking_params`]: the R4 Patient compartment and the
//! few types outside it that hold one patient's data), a search through the door by each
//! linking parameter, other Patients' `link` among them — and rewrites each `reference` to
//! `Patient/{source}` (or an absolute URL ending in it) to `Patient/{target}`. Everything is
//! written in one transaction Bundle, each moved resource with `If-Match` on the version read:
//! the moved resources, the target (or the `result` given) with a `replaces` link, the source
//! made inactive with a `replaced-by` link, and a `Provenance` whose `target` names every
//! version written and whose `entity` (role `revision`) names the version each replaced. That
//! Provenance is what [`unmerge`] reads. A concurrent write (412/409) makes the merge read
//! again and retry, up to [`ATTEMPTS`] times.
//!
//! Writes that name the source after the merge are refused by the write hook
//! [`MergedPatients`]. A resource written for the source between the merge's searches and its
//! commit is found by a second look right after the commit (from then on none can appear) and
//! moved too (as the job [`JOB`] when a person or app merged), its versions added to the same
//! Provenance.
//!
//! The searches run as the caller. A person or app who sees only part of what references the
//! source (sensitive categories, scope constraints) is refused (403): the merge moves all of
//! it or nothing.
//!
//! Not moved: `Provenance` and `AuditEvent` (they record what happened, to the record as it
//! was), and versioned references (`Patient/{source}/_history/n` pins a version of the source).
//! The source's identifiers are not copied to the target (R5 suggests it; the person ids of
//! the patient index would then clash).

use super::matcher::is_merged_away;
use crate::{Error, Result};
use access::Access;
use fhir::ErrorClass;
use search::query::SearchQuery;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use store::audit::Subtype;
use store::{NewVersion, ResourceVersion, Transaction, WriteHook};

/// How many times a merge or unmerge reads again and retries after a concurrent write.
pub const ATTEMPTS: usize = 5;
/// The most resources one merge moves.
pub const MAX_MOVED: usize = 20_000;
/// Matches read per search page.
const PAGE: usize = 1_000;
/// The ISO 21089 record lifecycle events (`merge`, `unmerge`), as R5's Provenance uses them.
pub const LIFECYCLE: &str = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle";
/// R4's own activity codes (`UPDATE`), carried beside the lifecycle event.
const DATA_OPERATION: &str = "http://terminology.hl7.org/CodeSystem/v3-DataOperation";
/// Types whose references are never moved: they record what happened.
const NOT_MOVED: &[&str] = &["Provenance", "AuditEvent"];

/// A merge of one Patient into another.
#[derive(Debug, Clone, Default)]
pub struct MergeRequest {
    /// The id of the Patient merged away (made inactive).
    pub source: String,
    /// The id of the Patient that remains.
    pub target: String,
    /// A full Patient to become the target's new content (keeping the target's id).
    pub result: Option<Value>,
    /// Only tell what would change; write nothing.
    pub preview: bool,
}

/// What a merge did (or, previewed, would do).
#[derive(Debug, Clone)]
pub struct MergeOutcome {
    /// The source's id.
    pub source: String,
    /// The target's id.
    pub target: String,
    /// Whether this was only a preview (nothing written).
    pub preview: bool,
    /// The resources moved (or to move) per type, other Patients included.
    pub moved: BTreeMap<String, usize>,
    /// The target Patient as it stands after the merge (as it would, previewed).
    pub target_patient: Value,
    /// The id of the merge's Provenance (none when previewed).
    pub provenance: Option<String>,
    /// How many of `moved` were written for the source while the merge ran, and moved right
    /// after its commit.
    pub moved_after_commit: usize,
}

impl MergeOutcome {
    /// How many resources were moved in all.
    pub fn total_moved(&self) -> usize {
        self.moved.values().sum()
    }
}

/// What an unmerge did.
#[derive(Debug, Clone)]
pub struct UnmergeOutcome {
    /// The source's id (active again).
    pub source: String,
    /// The target's id.
    pub target: String,
    /// The resources moved back per type.
    pub restored: BTreeMap<String, usize>,
    /// The id of the unmerge's Provenance.
    pub provenance: String,
    /// The source Patient as it stands after the unmerge.
    pub source_patient: Value,
}

impl MergeRequest {
    /// Reads the `Parameters` of `Patient/$merge` (or `$unmerge`): `source-patient` and
    /// `target-patient` (valueReference), or `source-patient-identifier` and
    /// `target-patient-identifier` (valueIdentifier, resolved through the door to exactly one
    /// Patient), `result-patient` (resource) and `preview` (valueBoolean).
    pub fn from_parameters(access: &Access, body: &Value) -> Result<MergeRequest> {
        may_merge(access)?;
        if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
            return Err(Error::invalid("$merge takes a Parameters resource"));
        }
        let mut request = MergeRequest::default();
        let (mut source, mut target) = (None, None);
        for parameter in body.get("parameter").and_then(Value::as_array).into_iter().flatten() {
            match parameter.get("name").and_then(Value::as_str) {
                Some("source-patient") => source = Some(patient_id_of(parameter, "source-patient")?),
                Some("target-patient") => target = Some(patient_id_of(parameter, "target-patient")?),
                Some("source-patient-identifier") if source.is_none() => {
                    source = Some(by_identifier(access, parameter, "source-patient-identifier")?);
                }
                Some("target-patient-identifier") if target.is_none() => {
                    target = Some(by_identifier(access, parameter, "target-patient-identifier")?);
                }
                Some("result-patient") => {
                    let resource = parameter.get("resource").cloned().unwrap_or(Value::Null);
                    if resource.get("resourceType").and_then(Value::as_str) != Some("Patient") {
                        return Err(Error::invalid("result-patient must be a Patient resource"));
                    }
                    request.result = Some(resource);
                }
                Some("preview") => {
                    request.preview = parameter
                        .get("valueBoolean")
                        .and_then(Value::as_bool)
                        .ok_or_else(|| Error::invalid("preview must be a valueBoolean"))?;
                }
                _ => {}
            }
        }
        request.source =
            source.ok_or_else(|| Error::invalid("source-patient (or source-patient-identifier) is required"))?;
        request.target =
            target.ok_or_else(|| Error::invalid("target-patient (or target-patient-identifier) is required"))?;
        Ok(request)
    }
}

/// Refuses (403) before anything is read or written unless the caller may update Patients
/// (the door checks every write of the merge as well).
fn may_merge(access: &Access) -> Result<()> {
    access.may(auth::Interaction::Update, "Patient")?;
    Ok(())
}

/// The Patient id of a `valueReference` parameter (`Patient/id` or an absolute URL).
fn patient_id_of(parameter: &Value, name: &'static str) -> Result<String> {
    let reference = parameter.pointer("/valueReference/reference").and_then(Value::as_str).unwrap_or("");
    let mut parts = reference.trim_end_matches('/').rsplit('/');
    match (parts.next(), parts.next()) {
        (Some(id), Some("Patient")) if fhir::reference::is_id(id) => Ok(id.to_string()),
        _ => Err(Error::Invalid(vec![fhir::Issue::error(
            fhir::IssueCode::Invalid,
            format!("{name} must be a valueReference to a Patient"),
        )])),
    }
}

/// The one Patient carrying the `valueIdentifier` of a parameter.
fn by_identifier(access: &Access, parameter: &Value, name: &'static str) -> Result<String> {
    let identifier = parameter.get("valueIdentifier");
    let system = identifier.and_then(|i| i.get("system")).and_then(Value::as_str);
    let Some(value) = identifier.and_then(|i| i.get("value")).and_then(Value::as_str) else {
        return Err(Error::Invalid(vec![fhir::Issue::error(
            fhir::IssueCode::Invalid,
            format!("{name} must be a valueIdentifier with a value"),
        )]));
    };
    let found = access.by_identifier("Patient", system, value)?;
    match found.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(Error::MergeRefused("a patient identifier given matches no patient")),
        _ => Err(Error::MergeRefused("a patient identifier given matches more than one patient")),
    }
}

/// Merges `request.source` into `request.target` (see the module's documentation). Only a
/// caller who may update Patients may merge (403 before anything happens).
pub fn merge(access: &Access, request: &MergeRequest) -> Result<MergeOutcome> {
    may_merge(access)?;
    if request.source == request.target {
        return Err(Error::MergeRefused("a patient cannot be merged into itself"));
    }
    if let Some(result) = &request.result {
        match result.get("id").and_then(Value::as_str) {
            None => {}
            Some(id) if id == request.target => {}
            Some(_) => return Err(Error::MergeRefused("result-patient must keep the target patient's id")),
        }
    }
    let mut attempt = 0;
    let mut outcome = loop {
        attempt += 1;
        match merge_once(access, request) {
            Err(e) if raced(&e) && attempt < ATTEMPTS => continue,
            other => break other?,
        }
    };
    if let Some(provenance) = outcome.provenance.clone() {
        // Completing a committed merge is the record's business, not the caller's reach: what
        // was written meanwhile is moved as the job (through the door, audited under its name).
        let swept = match access.caller() {
            Some(_) => {
                let job = access.door().enter(access::Who::Job(JOB));
                let swept = sweep(&job, request, &provenance, &mut outcome.moved);
                job.settle_queued();
                swept
            }
            None => sweep(access, request, &provenance, &mut outcome.moved),
        };
        outcome.moved_after_commit = swept?;
        let target = access.read("Patient", &request.target)?;
        outcome.target_patient = body_of(&target)?;
    }
    Ok(outcome)
}

fn merge_once(access: &Access, request: &MergeRequest) -> Result<MergeOutcome> {
    let source_ref = format!("Patient/{}", request.source);
    let target_ref = format!("Patient/{}", request.target);
    let source = access.read("Patient", &request.source)?;
    let target = access.read("Patient", &request.target)?;
    let mut source_body = body_of(&source)?;
    if is_merged_away(&source_body) {
        return Err(Error::AlreadyMerged);
    }
    let target_current = body_of(&target)?;
    if is_merged_away(&target_current) {
        return Err(Error::MergeRefused(
            "the target patient was itself merged into another record; merge into that record instead",
        ));
    }
    let skip = [source_ref.clone(), target_ref.clone()];
    let moved = referencing(access, &source_ref, &target_ref, &skip)?;
    whole_record_seen(access, &source_ref, &target_ref, &skip, &moved)?;

    // The target: the result given, or its own content; its links to the source replaced by
    // one `replaces`.
    let mut target_body = match &request.result {
        Some(result) => {
            let mut result = result.clone();
            result["id"] = Value::from(request.target.clone());
            result
        }
        None => target_current,
    };
    rewrite(&mut target_body, &source_ref, &target_ref);
    drop_links(&mut target_body, &source_ref);
    drop_links(&mut target_body, &target_ref);
    add_link(&mut target_body, &source_ref, "replaces");
    // The source: inactive, `replaced-by` the target.
    drop_links(&mut source_body, &target_ref);
    add_link(&mut source_body, &target_ref, "replaced-by");
    source_body["active"] = Value::Bool(false);

    let mut counts = BTreeMap::new();
    for (version, _) in &moved {
        *counts.entry(version.resource_type.clone()).or_insert(0) += 1;
    }
    if request.preview {
        return Ok(MergeOutcome {
            source: request.source.clone(),
            target: request.target.clone(),
            preview: true,
            moved: counts,
            target_patient: target_body,
            provenance: None,
            moved_after_commit: 0,
        });
    }

    // Moved resources first, the source made inactive last: the write hook sees the source
    // still active while the moved versions are put (they name the target anyway).
    let mut entries: Vec<Value> = moved.iter().map(|(v, body)| put(v, body.clone())).collect();
    entries.push(put(&target, target_body));
    entries.push(put(&source, source_body));
    let mut written: Vec<&ResourceVersion> = moved.iter().map(|(v, _)| v).collect();
    written.push(&target);
    written.push(&source);
    let provenance_id = uuid::Uuid::new_v4().to_string();
    let provenance = provenance(&provenance_id, "merge", "Merge", &written);
    entries.push(json!({
        "fullUrl": format!("Provenance/{provenance_id}"),
        "resource": provenance,
        "request": {"method": "PUT", "url": format!("Provenance/{provenance_id}")}
    }));
    access.transaction_for(transaction(entries), Some(&request.target))?;
    let target_after = access.read("Patient", &request.target)?;
    Ok(MergeOutcome {
        source: request.source.clone(),
        target: request.target.clone(),
        preview: false,
        moved: counts,
        target_patient: body_of(&target_after)?,
        provenance: Some(provenance_id),
        moved_after_commit: 0,
    })
}

/// After the merge committed, moves what was written for the source between the merge's
/// searches and its commit (from then on the write hook refuses such writes), adding the
/// versions to the merge's Provenance; returns how many it moved. For a person or app, it runs
/// as the job [`JOB`].
fn sweep(
    access: &Access,
    request: &MergeRequest,
    provenance_id: &str,
    counts: &mut BTreeMap<String, usize>,
) -> Result<usize> {
    let mut swept = 0;
    let source_ref = format!("Patient/{}", request.source);
    let target_ref = format!("Patient/{}", request.target);
    let skip = [source_ref.clone(), target_ref.clone()];
    // Each round either finds nothing (done), moves what it found, or lost a race; rounds
    // that moved something are bounded too, in case writes keep slipping through.
    for _ in 0..ATTEMPTS * 2 {
        let left = referencing(access, &source_ref, &target_ref, &skip)?;
        if left.is_empty() {
            return Ok(swept);
        }
        let current = access.read("Provenance", provenance_id)?;
        let mut provenance = body_of(&current)?;
        let written: Vec<&ResourceVersion> = left.iter().map(|(v, _)| v).collect();
        extend_provenance(&mut provenance, &written);
        let mut entries: Vec<Value> = left.iter().map(|(v, body)| put(v, body.clone())).collect();
        entries.push(put(&current, provenance));
        match access.transaction_for(transaction(entries), Some(&request.target)) {
            Ok(_) => {
                swept += left.len();
                for (version, _) in &left {
                    *counts.entry(version.resource_type.clone()).or_insert(0) += 1;
                }
            }
            // Written meanwhile: read again.
            Err(e) if is_race(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Access(access::Error::Store(store::Error::Conflict(
        "the record kept changing while the merge moved the last resources; run the merge again".into(),
    ))))
}

/// Undoes the latest merge of `source` into `target`: the resources it moved go back to the
/// source in their current versions (`If-Match` on the version read), the two links are
/// removed, the source is active again, and a Provenance of the unmerge is written — one
/// transaction. The source is re-activated first in the Bundle, so that the write hook sees
/// it active when the moved-back versions name it.
pub fn unmerge(access: &Access, source: &str, target: &str) -> Result<UnmergeOutcome> {
    may_merge(access)?;
    if source == target {
        return Err(Error::MergeRefused("a patient cannot be unmerged from itself"));
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        match unmerge_once(access, source, target) {
            Err(e) if raced(&e) && attempt < ATTEMPTS => continue,
            other => return other,
        }
    }
}

fn unmerge_once(access: &Access, source: &str, target: &str) -> Result<UnmergeOutcome> {
    let source_ref = format!("Patient/{source}");
    let target_ref = format!("Patient/{target}");
    let source_version = access.read("Patient", source)?;
    let target_version = access.read("Patient", target)?;
    let mut source_body = body_of(&source_version)?;
    if !is_merged_away(&source_body) || !has_link(&source_body, &target_ref, "replaced-by") {
        return Err(Error::NoMerge);
    }
    let merge_provenance = latest_merge(access, &source_ref, &target_ref)?.ok_or(Error::NoMerge)?;
    let mut moved = Vec::new();
    let mut seen = HashSet::new();
    for entity in merge_provenance.get("entity").and_then(Value::as_array).into_iter().flatten() {
        let Some(what) = entity.pointer("/what/reference").and_then(Value::as_str) else { continue };
        let mut parts = what.split('/');
        let (Some(t), Some(id)) = (parts.next(), parts.next()) else { continue };
        let local = format!("{t}/{id}");
        if local == source_ref || local == target_ref || !seen.insert(local) {
            continue;
        }
        let version = match access.read(t, id) {
            Ok(version) => version,
            // Deleted since: nothing to move back.
            Err(access::Error::Store(store::Error::NotFound { .. } | store::Error::Gone { .. })) => continue,
            Err(access::Error::Hidden) => return Err(partly_seen()),
            Err(e) => return Err(e.into()),
        };
        let mut body = body_of(&version)?;
        if rewrite(&mut body, &target_ref, &source_ref) {
            moved.push((version, body));
        }
    }
    source_body["active"] = Value::Bool(true);
    drop_links_of_type(&mut source_body, &target_ref, "replaced-by");
    let mut target_body = body_of(&target_version)?;
    drop_links_of_type(&mut target_body, &source_ref, "replaces");

    let mut restored = BTreeMap::new();
    for (version, _) in &moved {
        *restored.entry(version.resource_type.clone()).or_insert(0) += 1;
    }
    // The source active again first: the hook then lets the moved-back versions name it.
    let mut entries = vec![put(&source_version, source_body), put(&target_version, target_body)];
    entries.extend(moved.iter().map(|(v, body)| put(v, body.clone())));
    let mut written: Vec<&ResourceVersion> = vec![&source_version, &target_version];
    written.extend(moved.iter().map(|(v, _)| v));
    let provenance_id = uuid::Uuid::new_v4().to_string();
    let mut provenance = provenance(&provenance_id, "unmerge", "Unmerge", &written);
    if let (Some(id), Some(list)) =
        (merge_provenance.get("id").and_then(Value::as_str), provenance.get_mut("entity").and_then(Value::as_array_mut))
    {
        list.push(json!({"role": "source", "what": {"reference": format!("Provenance/{id}")}}));
    }
    entries.push(json!({
        "fullUrl": format!("Provenance/{provenance_id}"),
        "resource": provenance,
        "request": {"method": "PUT", "url": format!("Provenance/{provenance_id}")}
    }));
    access.transaction_for(transaction(entries), Some(source))?;
    let source_after = access.read("Patient", source)?;
    Ok(UnmergeOutcome {
        source: source.to_string(),
        target: target.to_string(),
        restored,
        provenance: provenance_id,
        source_patient: body_of(&source_after)?,
    })
}

/// The latest merge Provenance naming both patients.
fn latest_merge(access: &Access, source_ref: &str, target_ref: &str) -> Result<Option<Value>> {
    let params = vec![("target".to_string(), source_ref.to_string())];
    let mut query = SearchQuery::parse(Some("Provenance"), &params, false).map_err(access::Error::from)?;
    let mut best: Option<Value> = None;
    loop {
        let page = access.search(query.clone(), &params, PAGE, Subtype::SearchType)?;
        for version in &page.matches {
            let body = body_of(version)?;
            let is_merge = body
                .pointer("/activity/coding")
                .and_then(Value::as_array)
                .is_some_and(|c| c.iter().any(|c| c["system"] == LIFECYCLE && c["code"] == "merge"));
            let names = |r: &str| {
                body.get("target").and_then(Value::as_array).is_some_and(|targets| {
                    targets.iter().any(|t| {
                        t.get("reference")
                            .and_then(Value::as_str)
                            .is_some_and(|t| t.starts_with(&format!("{r}/_history/")))
                    })
                })
            };
            if !is_merge || !names(source_ref) || !names(target_ref) {
                continue;
            }
            let recorded = |b: &Value| b.get("recorded").and_then(Value::as_str).map(str::to_string);
            if best.as_ref().is_none_or(|b| recorded(b) < recorded(&body)) {
                best = Some(body);
            }
        }
        match page.next {
            Some(next) => query.page = Some(next),
            None => return Ok(best),
        }
    }
}

/// The job a merge checks completeness as (audited under this name).
pub const JOB: &str = "patient-merge";

/// Refuses (403) a person or app who sees only part of what references the source: a merge
/// must move it all (what stayed behind would name a patient no write may name any more). The
/// whole is searched as the job [`JOB`], through the door; nothing of it is handed out.
fn whole_record_seen(
    access: &Access,
    from: &str,
    to: &str,
    skip: &[String],
    seen: &[(ResourceVersion, Value)],
) -> Result<()> {
    if access.caller().is_none() {
        return Ok(());
    }
    let job = access.door().enter(access::Who::Job(JOB));
    let all = referencing(&job, from, to, skip);
    job.settle_queued();
    let seen: HashSet<(&str, &str)> = seen.iter().map(|(v, _)| (v.resource_type.as_str(), v.id.as_str())).collect();
    if all?.iter().all(|(v, _)| seen.contains(&(v.resource_type.as_str(), v.id.as_str()))) {
        Ok(())
    } else {
        Err(partly_seen())
    }
}

fn partly_seen() -> Error {
    Error::Access(access::Error::Forbidden(
        "this patient has records outside what you may see; a merge moves them all, so it is for someone who sees the whole record".into(),
    ))
}

/// Every live resource (outside [`NOT_MOVED`] and `skip`) with a reference to `from`, with
/// its body rewritten to reference `to`.
fn referencing(access: &Access, from: &str, to: &str, skip: &[String]) -> Result<Vec<(ResourceVersion, Value)>> {
    let mut seen: HashSet<String> = skip.iter().cloned().collect();
    let mut found = Vec::new();
    for resource_type in fhir::definitions().resource_types() {
        if NOT_MOVED.contains(&resource_type) {
            continue;
        }
        for param in store::compartment::linking_params(resource_type) {
            let params = vec![(param, from.to_string())];
            let Ok(mut query) = SearchQuery::parse(Some(resource_type), &params, false) else { continue };
            loop {
                let page = access.search(query.clone(), &params, PAGE, Subtype::SearchType)?;
                for version in page.matches {
                    if !seen.insert(format!("{resource_type}/{}", version.id)) {
                        continue;
                    }
                    let mut body = body_of(&version)?;
                    if rewrite(&mut body, from, to) {
                        found.push((version, body));
                    }
                }
                if found.len() > MAX_MOVED {
                    return Err(Error::MergeRefused("the patient has too many resources to move in one merge"));
                }
                match page.next {
                    Some(next) => query.page = Some(next),
                    None => break,
                }
            }
        }
    }
    Ok(found)
}

/// Replaces every `reference` equal to `from` (or an absolute URL ending in `/{from}`) with
/// `to` (keeping the absolute URL's base); `true` when anything changed.
pub fn rewrite(value: &mut Value, from: &str, to: &str) -> bool {
    match value {
        Value::Object(map) => {
            let mut changed = false;
            for (key, v) in map.iter_mut() {
                if key == "reference"
                    && let Value::String(text) = v
                {
                    if text == from {
                        *text = to.to_string();
                        changed = true;
                    } else if text.contains("://")
                        && let Some(base) = text.strip_suffix(from).filter(|b| b.ends_with('/'))
                    {
                        *text = format!("{base}{to}");
                        changed = true;
                    }
                } else {
                    changed |= rewrite(v, from, to);
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |changed, v| rewrite(v, from, to) | changed),
        _ => false,
    }
}

fn links(patient: &Value) -> impl Iterator<Item = &Value> {
    patient.get("link").and_then(Value::as_array).into_iter().flatten()
}

fn has_link(patient: &Value, other: &str, kind: &str) -> bool {
    links(patient).any(|l| {
        l.pointer("/other/reference").and_then(Value::as_str) == Some(other)
            && l.get("type").and_then(Value::as_str) == Some(kind)
    })
}

fn add_link(patient: &mut Value, other: &str, kind: &str) {
    let link = json!({"other": {"reference": other}, "type": kind});
    match patient.get_mut("link").and_then(Value::as_array_mut) {
        Some(list) => list.push(link),
        None => patient["link"] = json!([link]),
    }
}

/// Removes the links to `other` of `kind` (any kind: `None`); drops an emptied `link`.
fn retain_links(patient: &mut Value, other: &str, kind: Option<&str>) {
    let Some(object) = patient.as_object_mut() else { return };
    let Some(list) = object.get_mut("link").and_then(Value::as_array_mut) else { return };
    list.retain(|l| {
        l.pointer("/other/reference").and_then(Value::as_str) != Some(other)
            || kind.is_some_and(|k| l.get("type").and_then(Value::as_str) != Some(k))
    });
    if list.is_empty() {
        object.remove("link");
    }
}

fn drop_links(patient: &mut Value, other: &str) {
    retain_links(patient, other, None);
}

fn drop_links_of_type(patient: &mut Value, other: &str, kind: &str) {
    retain_links(patient, other, Some(kind));
}

fn body_of(version: &ResourceVersion) -> Result<Value> {
    version.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).ok_or_else(|| {
        Error::Access(access::Error::Store(store::Error::Storage("a stored resource is not JSON".into())))
    })
}

fn put(version: &ResourceVersion, body: Value) -> Value {
    let url = format!("{}/{}", version.resource_type, version.id);
    json!({
        "fullUrl": url,
        "resource": body,
        "request": {"method": "PUT", "url": url, "ifMatch": format!("W/\"{}\"", version.version)}
    })
}

fn transaction(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn versioned(version: &ResourceVersion, number: u64) -> Value {
    json!({"reference": format!("{}/{}/_history/{number}", version.resource_type, version.id)})
}

/// The Provenance of a merge or unmerge writing the next version of each of `written`.
fn provenance(id: &str, code: &str, display: &str, written: &[&ResourceVersion]) -> Value {
    let mut provenance = json!({
        "resourceType": "Provenance",
        "id": id,
        "target": [],
        "recorded": store::format_instant(time::OffsetDateTime::now_utc()),
        "activity": {
            "coding": [
                {"system": LIFECYCLE, "code": code, "display": display},
                {"system": DATA_OPERATION, "code": "UPDATE", "display": "revise"}
            ],
            "text": display
        },
        "reason": [{"text": format!("patient {code}")}],
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "performer"}]},
            "who": {"display": "Continuum patient merge"}
        }],
        "entity": []
    });
    extend_provenance(&mut provenance, written);
    provenance
}

/// Adds the next version of each of `written` to `target` and the version it replaces to
/// `entity` (role `revision`).
fn extend_provenance(provenance: &mut Value, written: &[&ResourceVersion]) {
    for version in written {
        if let Some(list) = provenance.get_mut("target").and_then(Value::as_array_mut) {
            list.push(versioned(version, version.version + 1));
        }
        if let Some(list) = provenance.get_mut("entity").and_then(Value::as_array_mut) {
            list.push(json!({"role": "revision", "what": versioned(version, version.version)}));
        }
    }
}

/// Whether the transaction failed because of a concurrent write (read again and retry).
fn raced(error: &Error) -> bool {
    matches!(error, Error::Access(e) if is_race(e))
}

fn is_race(error: &access::Error) -> bool {
    matches!(error.class(), ErrorClass::PreconditionFailed | ErrorClass::Conflict)
}

/// The write hook that keeps a merged patient's record closed: any write of a resource
/// belonging to patients (a type with [`store::compartment::linking_params`]) that names a
/// Patient whose current version is inactive with a `replaced-by` link is refused (422), with
/// the record to write to instead. Cheap: it reads only the Patients the version names, and
/// only when it names one.
///
/// Exempt: `Patient` itself (the merged record and the links to it are the merge's own
/// business), `Provenance` and `AuditEvent` (they record what happened, also to a merged
/// record). The merge's own writes pass by their order in the Bundle: a merge puts the moved
/// versions (naming the target) before the source is made inactive, an unmerge re-activates
/// the source before the versions moved back name it.
#[derive(Debug, Default, Clone, Copy)]
pub struct MergedPatients;

impl WriteHook for MergedPatients {
    fn wants(&self, resource_type: &str) -> bool {
        resource_type != "Patient"
            && !NOT_MOVED.contains(&resource_type)
            && !store::compartment::compartment_keys(resource_type).is_empty()
    }

    fn written(
        &self,
        tx: &mut dyn Transaction,
        _previous: Option<&ResourceVersion>,
        new: &NewVersion<'_>,
        _sequence: i64,
    ) -> store::Result<()> {
        if new.body.is_none() {
            return Ok(());
        }
        for patient in store::compartment::patients_in_index(new.resource_type, new.index) {
            let Some(current) = tx.current("Patient", &patient)? else { continue };
            // Most patients were never merged: no need to read their JSON.
            let Some(body) = current.body.as_deref().filter(|b| b.contains("replaced-by")) else { continue };
            let body: Value =
                serde_json::from_str(body).map_err(|_| store::Error::Storage("a stored Patient is not JSON".into()))?;
            if !is_merged_away(&body) {
                continue;
            }
            let into = links(&body)
                .find(|l| l.get("type").and_then(Value::as_str) == Some("replaced-by"))
                .and_then(|l| l.pointer("/other/reference").and_then(Value::as_str))
                .unwrap_or("another record");
            return Err(store::Error::Unprocessable(vec![fhir::Issue::error(
                fhir::IssueCode::BusinessRule,
                format!("this patient was merged into {into}; write to that record instead"),
            )]));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_rewritten_wherever_they_are() {
        let mut obs = json!({
            "subject": {"reference": "Patient/a"},
            "performer": [{"reference": "http://x/fhir/Patient/a"}, {"reference": "Patient/ab"}],
            "focus": [{"reference": "Patient/a/_history/2"}],
            "note": [{"text": "Patient/a"}]
        });
        assert!(rewrite(&mut obs, "Patient/a", "Patient/b"));
        assert_eq!(obs["subject"]["reference"], "Patient/b");
        assert_eq!(obs["performer"][0]["reference"], "http://x/fhir/Patient/b");
        assert_eq!(obs["performer"][1]["reference"], "Patient/ab");
        assert_eq!(obs["focus"][0]["reference"], "Patient/a/_history/2");
        assert_eq!(obs["note"][0]["text"], "Patient/a");
        assert!(!rewrite(&mut obs, "Patient/a", "Patient/b"));
    }

    #[test]
    fn links_are_added_and_removed() {
        let mut p =
            json!({"resourceType": "Patient", "link": [{"other": {"reference": "Patient/b"}, "type": "seealso"}]});
        drop_links(&mut p, "Patient/b");
        assert!(p.get("link").is_none());
        add_link(&mut p, "Patient/b", "replaced-by");
        assert!(has_link(&p, "Patient/b", "replaced-by"));
        drop_links_of_type(&mut p, "Patient/b", "seealso");
        assert!(has_link(&p, "Patient/b", "replaced-by"));
        drop_links_of_type(&mut p, "Patient/b", "replaced-by");
        assert!(p.get("link").is_none());
    }
}
