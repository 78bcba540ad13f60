//! `$export`: the kick-off request read and checked, and the job that writes the snapshot.
//!
//! The snapshot: at kick-off the store's latest sequence is the cut
//! ([`store::Backend::latest_sequence`]) and the instant its `transactionTime`. The job then
//! pages through each type as it stood at the cut ([`store::Backend::snapshot`]): a resource
//! written since is read from its history, one created since is left out, one deleted since
//! is still there. Writes go on meanwhile; what the export holds does not move. Memory stays
//! flat: a page of versions at a time, streamed into the files.

use super::Inner;
use super::state::{JobState, OutputFile};
use crate::{Error, Result};
use access::{Access, TypeCheck};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::sync::atomic::Ordering;
use store::audit::Outcome;
use time::OffsetDateTime;

/// Resources read from the store at a time.
const PAGE: usize = 1000;

/// Which resources an export covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// `[base]/$export`: everything.
    System,
    /// `[base]/Patient/$export`: every patient's compartment.
    Patient,
    /// `[base]/Group/[id]/$export`: the compartments of the group's patients.
    Group(String),
}

/// A kick-off request, read and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    /// The level.
    pub level: Level,
    /// `_type`: the types asked for (`None`: every type the level covers).
    pub types: Option<Vec<String>>,
    /// `_since`, as an FHIR instant: only resources changed after it.
    pub since: Option<String>,
    /// `_typeFilter`: `(type, query)`; several for one type are alternatives.
    pub type_filters: Vec<(String, String)>,
}

/// The formats `_outputFormat` may name (all are NDJSON).
const FORMATS: &[&str] = &["application/fhir+ndjson", "application/ndjson", "ndjson"];

impl ExportRequest {
    /// Reads the kick-off parameters (`pairs`, from the query or a `Parameters` body).
    /// Unknown parameters, unknown types, a malformed `_since` or `_typeFilter` and a format
    /// other than NDJSON are refused (400), as the Bulk Data specification asks of a strict
    /// server.
    pub fn parse(level: Level, pairs: &[(String, String)]) -> Result<ExportRequest> {
        let mut request = ExportRequest { level, types: None, since: None, type_filters: Vec::new() };
        let definitions = fhir::definitions();
        for (name, value) in pairs {
            match name.as_str() {
                "_outputFormat" => {
                    if !FORMATS.contains(&value.as_str()) {
                        return Err(Error::invalid(format!(
                            "_outputFormat `{value}` is not offered; this server writes application/fhir+ndjson"
                        )));
                    }
                }
                "_type" => {
                    let types = request.types.get_or_insert_with(Vec::new);
                    for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                        if !definitions.is_resource_type(t) {
                            return Err(Error::invalid(format!("_type names `{t}`, which is not a resource type")));
                        }
                        if !types.iter().any(|k| k == t) {
                            types.push(t.to_string());
                        }
                    }
                }
                "_since" => {
                    let at = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
                        .map_err(|_| Error::invalid("_since must be an instant, e.g. 2026-01-01T00:00:00Z"))?;
                    request.since = Some(store::format_instant(at));
                }
                "_typeFilter" => {
                    for filter in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                        let Some((t, query)) = filter.split_once('?') else {
                            return Err(Error::invalid("_typeFilter wants Type?search-parameters"));
                        };
                        if !definitions.is_resource_type(t) {
                            return Err(Error::invalid(format!(
                                "_typeFilter names `{t}`, which is not a resource type"
                            )));
                        }
                        // Read now, so that a malformed filter is refused at kick-off.
                        search_query(t, query)?;
                        request.type_filters.push((t.to_string(), query.to_string()));
                    }
                }
                other => {
                    return Err(Error::invalid(format!("$export does not take `{other}`")));
                }
            }
        }
        if let Some(types) = &request.types {
            if types.is_empty() {
                return Err(Error::invalid("_type names no type"));
            }
            if let Some((t, _)) = request.type_filters.iter().find(|(t, _)| !types.contains(t)) {
                return Err(Error::invalid(format!("_typeFilter names `{t}`, which _type does not ask for")));
            }
        }
        if request.level != Level::System
            && let Some(types) = &request.types
            && let Some(t) = types.iter().find(|t| !in_compartment(t))
        {
            return Err(Error::invalid(format!("`{t}` is not in the Patient compartment; ask for it at system level")));
        }
        Ok(request)
    }
}

fn in_compartment(resource_type: &str) -> bool {
    resource_type == "Patient" || store::compartment::patient_owned(resource_type)
}

fn search_query(resource_type: &str, query: &str) -> Result<search::query::SearchQuery> {
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).into_owned().filter(|(n, _)| !n.is_empty()).collect();
    Ok(search::query::SearchQuery::parse(Some(resource_type), &pairs, false).map_err(access::Error::from)?)
}

/// The types an export at `level` covers for `access`, given the store's contents: those
/// asked for, else every type with resources (the compartment's for Patient and Group).
/// Types the caller may not read are left out when none were asked for, refused when asked.
pub(crate) fn types_to_export(inner: &Inner, access: &Access, request: &ExportRequest) -> Result<Vec<String>> {
    let asked = request.types.is_some();
    let candidates: Vec<String> = match &request.types {
        Some(types) => types.clone(),
        None => inner
            .door
            .records()
            .backend()
            .count_by_type()?
            .into_iter()
            .filter(|(t, n)| *n > 0 && (request.level == Level::System || in_compartment(t)))
            .map(|(t, _)| t)
            .collect(),
    };
    let mut types = Vec::new();
    for t in candidates {
        match access.type_check(&t) {
            Ok(_) => types.push(t),
            Err(e @ access::Error::Forbidden(_)) if asked => return Err(e.into()),
            Err(access::Error::Forbidden(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if types.is_empty() && asked {
        return Err(Error::invalid("nothing asked for is readable"));
    }
    Ok(types)
}

/// The patients of a Group (its `member.entity` references to Patients), read through the
/// door (the caller must see the Group).
pub(crate) fn group_members(access: &Access, group: &str) -> Result<HashSet<String>> {
    let version = access.read("Group", group)?;
    let body: serde_json::Value = serde_json::from_str(version.body.as_deref().unwrap_or("{}"))
        .map_err(|_| Error::invalid("the Group could not be read"))?;
    let mut members = HashSet::new();
    for member in body.get("member").and_then(serde_json::Value::as_array).into_iter().flatten() {
        if member.get("inactive").and_then(serde_json::Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(reference) = member.pointer("/entity/reference").and_then(serde_json::Value::as_str)
            && let Some(id) = reference.strip_prefix("Patient/")
        {
            members.insert(id.to_string());
        }
    }
    Ok(members)
}

/// The files of one type being written, split every `lines_per_file` lines.
struct TypeFiles<'a> {
    inner: &'a Inner,
    job: &'a str,
    resource_type: &'a str,
    current: Option<(std::io::BufWriter<std::fs::File>, OutputFile)>,
    done: Vec<OutputFile>,
}

impl TypeFiles<'_> {
    fn write(&mut self, line: &str) -> Result<()> {
        if self.current.as_ref().is_some_and(|(_, f)| f.count >= self.inner.config.lines_per_file as u64) {
            self.finish_file()?;
        }
        if self.current.is_none() {
            let file = format!("{}-{}.ndjson", self.resource_type, self.done.len() + 1);
            let path = self.inner.job_dir(self.job).join(&file);
            let handle = std::fs::File::create(&path).map_err(Error::Files)?;
            self.current = Some((
                std::io::BufWriter::with_capacity(256 * 1024, handle),
                OutputFile { resource_type: self.resource_type.to_string(), file, count: 0 },
            ));
        }
        if let Some((writer, file)) = &mut self.current {
            writer.write_all(line.as_bytes()).map_err(Error::Files)?;
            writer.write_all(b"\n").map_err(Error::Files)?;
            file.count += 1;
        }
        Ok(())
    }

    fn finish_file(&mut self) -> Result<()> {
        if let Some((writer, file)) = self.current.take() {
            let handle = writer.into_inner().map_err(|e| Error::Files(e.into_error()))?;
            handle.sync_all().map_err(Error::Files)?;
            self.done.push(file);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<OutputFile>> {
        self.finish_file()?;
        Ok(self.done)
    }
}

/// What decides, per resource, whether it goes into the export.
struct Selection {
    members: Option<HashSet<String>>,
    patient_level: bool,
    since: Option<OffsetDateTime>,
}

impl Selection {
    fn needs_body(&self, resource_type: &str) -> bool {
        (self.patient_level || self.members.is_some()) && resource_type != "Patient"
    }

    fn keeps(&self, resource_type: &str, id: &str, body: Option<&serde_json::Value>) -> bool {
        if !self.patient_level && self.members.is_none() {
            return true;
        }
        if resource_type == "Patient" {
            return self.members.as_ref().is_none_or(|m| m.contains(id));
        }
        let Some(body) = body else { return false };
        let owners = store::compartment::patients_of(resource_type, body);
        match &self.members {
            Some(members) => owners.iter().any(|o| members.contains(o)),
            None => !owners.is_empty(),
        }
    }
}

/// Runs an export job to its end (or its cancellation): every type in turn, page by page.
pub(crate) fn run(
    inner: &Inner,
    access: &Access,
    id: &str,
    state: &mut JobState,
    request: &ExportRequest,
) -> Result<()> {
    let cancelled = inner.cancel_flag(id);
    let types = types_to_export(inner, access, request)?;
    let members = match &request.level {
        Level::Group(group) => Some(group_members(access, group)?),
        _ => None,
    };
    let since = request
        .since
        .as_deref()
        .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok());
    let selection = Selection { members, patient_level: request.level == Level::Patient, since };
    std::fs::create_dir_all(inner.job_dir(id)).map_err(Error::Files)?;
    let backend = inner.door.records().backend().clone();
    let mut patients = BTreeSet::new();
    let mut beat = std::time::Instant::now();
    for (done, resource_type) in types.iter().enumerate() {
        let check: Option<TypeCheck> = access.type_check(resource_type)?;
        let filter = type_filter_ids(inner, request, resource_type)?;
        let mut files = TypeFiles { inner, job: id, resource_type, current: None, done: Vec::new() };
        let mut after = String::new();
        loop {
            if cancelled.load(Ordering::Relaxed) {
                return Ok(());
            }
            inner.heartbeat(id, state, &mut beat)?;
            let (page, next) = backend.snapshot(resource_type, state.cut, &after, PAGE)?;
            for version in &page {
                if let Some(since) = selection.since
                    && version.last_updated <= since
                {
                    continue;
                }
                if let Some(ids) = &filter
                    && !ids.contains(&version.id)
                {
                    continue;
                }
                let Some(body) = version.body.as_deref() else { continue };
                let parsed = if check.is_some() || selection.needs_body(resource_type) {
                    Some(serde_json::from_str::<serde_json::Value>(body).map_err(|_| unreadable())?)
                } else {
                    None
                };
                if !selection.keeps(resource_type, &version.id, parsed.as_ref()) {
                    continue;
                }
                if let (Some(check), Some(resource)) = (&check, &parsed)
                    && !check.sees(resource)?
                {
                    continue;
                }
                files.write(body)?;
                if resource_type == "Patient" {
                    patients.insert(version.id.clone());
                }
                inner.metrics.exported.fetch_add(1, Ordering::Relaxed);
            }
            match next {
                Some(next) => after = next,
                None => break,
            }
        }
        state.output.extend(files.finish()?);
        state.progress = format!("{} of {} types written", done + 1, types.len());
        inner.save(id, state)?;
    }
    // The audit: one entry per patient whose record went out, naming the job.
    let query = format!("$export job={id}");
    for patient in &patients {
        access.noted_operation(vec![format!("Patient/{patient}")], &query, Some(patient), Outcome::Success);
    }
    if patients.is_empty() {
        access.noted_operation(Vec::new(), &query, None, Outcome::Success);
    }
    Ok(())
}

/// The ids a type's `_typeFilter`s match (`None`: no filter for the type), searched when the
/// job runs, narrowed to what the caller may see later like every resource.
fn type_filter_ids(inner: &Inner, request: &ExportRequest, resource_type: &str) -> Result<Option<HashSet<String>>> {
    let filters: Vec<&str> =
        request.type_filters.iter().filter(|(t, _)| t == resource_type).map(|(_, q)| q.as_str()).collect();
    if filters.is_empty() {
        return Ok(None);
    }
    let backend = inner.door.records().backend();
    let mut ids = HashSet::new();
    for filter in filters {
        let query = search_query(resource_type, filter)?;
        let keys = backend.search(&query, usize::MAX)?;
        for chunk in keys.chunks(PAGE) {
            ids.extend(backend.fetch(chunk)?.into_iter().map(|(_, v)| v.id));
        }
    }
    Ok(Some(ids))
}

fn unreadable() -> Error {
    Error::Access(access::Error::Store(store::Error::Storage("a stored resource could not be read".into())))
}
