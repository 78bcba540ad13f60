//! `$import`: NDJSON written through the door, as `continuum import` writes it (validated,
//! resources keeping their ids, in batches), each refused line reported with its number and
//! why.
//!
//! Input is either the request's body (copied into the job's folder at kick-off, so that the
//! job outlives a restart and memory stays flat) or files already in the server's import
//! folder, named by a `Parameters` resource. A body is checked line by line at kick-off: a line
//! that is not a JSON object with a `resourceType`, or is of another type than the one
//! declared, refuses the whole request (400) and nothing is stored.

use super::Inner;
use super::state::{JobState, OutputFile};
use crate::{Error, Result};
use access::Access;
use fhir::{Issue, IssueCode, Severity};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// Lines written in one transaction.
const BATCH: usize = 500;
/// Most issues a refused kick-off lists.
const MAX_ISSUES: usize = 50;

/// One input of an import: a file, and the type its lines must have (`None`: any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportInput {
    /// The type every line must be, when declared.
    pub resource_type: Option<String>,
    /// The file (absolute: in the job's folder or the server's import folder).
    pub path: PathBuf,
    /// How the request named it (for the manifest).
    pub name: String,
}

/// What an import job reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportPlan {
    /// The inputs, in order.
    pub inputs: Vec<ImportInput>,
}

/// Checks an NDJSON body line by line (see the module's text): the issues of every bad line,
/// or nothing.
pub fn check_ndjson(body: &[u8], declared: Option<&str>) -> Result<()> {
    let text = std::str::from_utf8(body).map_err(|_| Error::invalid("the NDJSON body is not UTF-8"))?;
    let mut issues = Vec::new();
    let mut lines = 0;
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        if let Err(why) = line_type(line, declared) {
            issues.push(line_issue(number + 1, &why));
            if issues.len() == MAX_ISSUES {
                break;
            }
        }
    }
    if !issues.is_empty() {
        return Err(Error::Invalid(issues));
    }
    if lines == 0 {
        return Err(Error::invalid("the NDJSON body holds no resource"));
    }
    Ok(())
}

/// The resource type of one NDJSON line, checked against the type declared.
fn line_type(line: &str, declared: Option<&str>) -> std::result::Result<String, String> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(rename = "resourceType")]
        resource_type: Option<String>,
    }
    let head: Head = serde_json::from_str(line).map_err(|e| format!("not a JSON object (column {})", e.column()))?;
    let resource_type = head.resource_type.ok_or("the line has no resourceType")?;
    if !fhir::definitions().is_resource_type(&resource_type) {
        return Err(format!("`{resource_type}` is not a resource type"));
    }
    if let Some(declared) = declared
        && declared != resource_type
    {
        return Err(format!("a {resource_type} where the input declares {declared}"));
    }
    Ok(resource_type)
}

fn line_issue(number: usize, why: &str) -> Issue {
    Issue {
        severity: Severity::Error,
        code: IssueCode::Invalid,
        diagnostics: format!("line {number}: {why}"),
        expression: None,
    }
}

/// Reads the `Parameters` of a kick-off naming files of the import folder: each `input` with
/// a `url` part (a file name in `folder`) and an optional `type` part.
pub fn plan_from_parameters(parameters: &Value, folder: &Path) -> Result<ImportPlan> {
    if parameters.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(Error::invalid("$import takes NDJSON or a Parameters resource"));
    }
    let mut inputs = Vec::new();
    for parameter in parameters.get("parameter").and_then(Value::as_array).into_iter().flatten() {
        match parameter.get("name").and_then(Value::as_str) {
            Some("input") => {}
            Some("inputFormat") | Some("inputSource") | Some("storageDetail") => continue,
            Some(other) => return Err(Error::invalid(format!("$import does not take `{other}`"))),
            None => return Err(Error::invalid("a parameter without a name")),
        }
        let part = |name: &str| {
            parameter
                .get("part")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        };
        let url = part("url")
            .and_then(|p| p.get("valueUri").or_else(|| p.get("valueUrl")).or_else(|| p.get("valueString")))
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid("an input needs a url part: the name of a file in the import folder"))?;
        let name = url.trim_start_matches("file:").trim_start_matches('/');
        if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(Error::invalid("an input's url must be the plain name of a file in the import folder"));
        }
        let path = folder.join(name);
        if !path.is_file() {
            return Err(Error::invalid(format!("no file `{name}` in the import folder")));
        }
        let resource_type = part("type").and_then(|p| p.get("valueCode")).and_then(Value::as_str).map(str::to_string);
        if let Some(t) = &resource_type
            && !fhir::definitions().is_resource_type(t)
        {
            return Err(Error::invalid(format!("an input's type `{t}` is not a resource type")));
        }
        inputs.push(ImportInput { resource_type, path, name: name.to_string() });
    }
    if inputs.is_empty() {
        return Err(Error::invalid("$import needs at least one input"));
    }
    Ok(ImportPlan { inputs })
}

/// Refused lines, written as OperationOutcomes into the job's error file.
struct Refusals<'a> {
    inner: &'a Inner,
    job: &'a str,
    writer: Option<std::io::BufWriter<std::fs::File>>,
    count: u64,
}

impl Refusals<'_> {
    fn refuse(&mut self, input: &str, number: usize, issues: &[Issue]) -> Result<()> {
        if self.writer.is_none() {
            let file = std::fs::File::create(self.inner.job_dir(self.job).join(ERRORS)).map_err(Error::Files)?;
            self.writer = Some(std::io::BufWriter::new(file));
        }
        let located: Vec<Issue> = issues
            .iter()
            .filter(|i| matches!(i.severity, Severity::Error | Severity::Fatal))
            .map(|i| Issue { diagnostics: format!("{input} line {number}: {}", i.diagnostics), ..i.clone() })
            .collect();
        let outcome = fhir::operation_outcome(&located);
        if let Some(writer) = &mut self.writer {
            writeln!(writer, "{outcome}").map_err(Error::Files)?;
        }
        self.count += 1;
        Ok(())
    }

    fn finish(self) -> Result<Option<OutputFile>> {
        let Some(writer) = self.writer else { return Ok(None) };
        let file = writer.into_inner().map_err(|e| Error::Files(e.into_error()))?;
        file.sync_all().map_err(Error::Files)?;
        Ok(Some(OutputFile { resource_type: "OperationOutcome".into(), file: ERRORS.into(), count: self.count }))
    }
}

/// The error file of an import.
const ERRORS: &str = "errors.ndjson";

/// One line waiting in a batch: where it came from, and the resource.
struct Pending {
    number: usize,
    resource: Value,
}

/// Runs an import job: each input line by line, in batches.
pub(crate) fn run(inner: &Inner, access: &Access, id: &str, state: &mut JobState, plan: &ImportPlan) -> Result<()> {
    let cancelled = inner.cancel_flag(id);
    std::fs::create_dir_all(inner.job_dir(id)).map_err(Error::Files)?;
    let mut refusals = Refusals { inner, job: id, writer: None, count: 0 };
    let mut written: BTreeMap<String, u64> = BTreeMap::new();
    let mut beat = std::time::Instant::now();
    for input in &plan.inputs {
        let file = std::fs::File::open(&input.path).map_err(Error::Files)?;
        let mut batch: Vec<Pending> = Vec::with_capacity(BATCH);
        for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
            if cancelled.load(Ordering::Relaxed) {
                return Ok(());
            }
            let number = index + 1;
            let line = match line {
                Ok(line) => line,
                Err(_) => {
                    refusals.refuse(&input.name, number, &[Issue::error(IssueCode::Invalid, "not UTF-8 text")])?;
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            if let Err(why) = line_type(&line, input.resource_type.as_deref()) {
                refusals.refuse(&input.name, number, &[Issue::error(IssueCode::Invalid, why)])?;
                continue;
            }
            let Ok(resource) = serde_json::from_str::<Value>(&line) else { continue };
            let issues = fhir::validate(&resource);
            if issues.iter().any(|i| matches!(i.severity, Severity::Error | Severity::Fatal)) {
                refusals.refuse(&input.name, number, &issues)?;
                continue;
            }
            batch.push(Pending { number, resource });
            if batch.len() == BATCH {
                inner.heartbeat(id, state, &mut beat)?;
                write_batch(access, std::mem::take(&mut batch), &input.name, &mut refusals, &mut written, inner)?;
            }
        }
        write_batch(access, batch, &input.name, &mut refusals, &mut written, inner)?;
        state.progress = format!("{} resources written", written.values().sum::<u64>());
        inner.save(id, state)?;
    }
    state.output = written
        .into_iter()
        .map(|(resource_type, count)| OutputFile { resource_type, file: String::new(), count })
        .collect();
    state.error.extend(refusals.finish()?);
    let query = format!("$import job={id}");
    access.noted_operation(Vec::new(), &query, None, store::audit::Outcome::Success);
    Ok(())
}

/// Writes a batch: resources with ids in one transaction (each one alone when the batch is
/// refused, to find the lines to blame), those without one as creates.
fn write_batch(
    access: &Access,
    batch: Vec<Pending>,
    input: &str,
    refusals: &mut Refusals<'_>,
    written: &mut BTreeMap<String, u64>,
    inner: &Inner,
) -> Result<()> {
    let type_of = |r: &Value| r.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_string();
    let (with_id, without_id): (Vec<Pending>, Vec<Pending>) =
        batch.into_iter().partition(|p| p.resource.get("id").and_then(Value::as_str).is_some());
    let count = |resource_type: String, written: &mut BTreeMap<String, u64>| {
        *written.entry(resource_type).or_default() += 1;
        inner.metrics.imported.fetch_add(1, Ordering::Relaxed);
    };
    if !with_id.is_empty() {
        let resources: Vec<Value> = with_id.iter().map(|p| p.resource.clone()).collect();
        match access.load(resources) {
            Ok(_) => {
                for pending in &with_id {
                    count(type_of(&pending.resource), written);
                }
            }
            Err(access::Error::AuditUnavailable) => return Err(access::Error::AuditUnavailable.into()),
            Err(_) => {
                for pending in with_id {
                    let resource_type = type_of(&pending.resource);
                    match access.load(vec![pending.resource]) {
                        Ok(_) => count(resource_type, written),
                        Err(e) => refusals.refuse(input, pending.number, &e.issues())?,
                    }
                }
            }
        }
    }
    for pending in without_id {
        let resource_type = type_of(&pending.resource);
        match access.create(pending.resource, None) {
            Ok(_) => count(resource_type, written),
            Err(e) => refusals.refuse(input, pending.number, &e.issues())?,
        }
    }
    Ok(())
}

/// The body of a kick-off kept as the job's input file.
pub(crate) const BODY_INPUT: &str = "input.ndjson";

/// The manifest's view of an import: what was written per type.
pub(crate) fn output_json(files: &[OutputFile]) -> Vec<Value> {
    files.iter().map(|f| json!({"type": f.resource_type, "count": f.count})).collect()
}
