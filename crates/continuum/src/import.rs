//! `continuum import`: loads Bundles, single resources, NDJSON and C-CDA documents into the
//! store, directly through the write path (validation and history included), several files at
//! a time. A C-CDA document (`.xml`) is filed as `$ccda-import` files it (`exchange`), through an
//! open door acting as this command.

use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use store::{ErrorKind, Records};

/// The arguments of `continuum import`: the store, and the files to load.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Data directory of the embedded store.
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data: PathBuf,
    #[command(flatten)]
    database: crate::DatabaseArg,
    /// Files or folders: `.json` (a Bundle or one resource), `.ndjson` (one resource a line) and
    /// `.xml` (a C-CDA document, filed to its patient as `POST /fhir/$ccda-import` does).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// `continuum import`: loads the files and reports what was stored and what failed.
pub fn run(args: ImportArgs) -> Result<()> {
    let records = crate::open_store(&args.data, &args.database)?.records;
    let report = import_paths(&records, &args.paths, true)?;
    for (path, error) in &report.failures {
        eprintln!("failed: {}: {error}", path.display());
    }
    println!(
        "Imported {} resources from {} files in {:.1} s ({:.0} resources/s)",
        report.resources,
        report.files,
        report.elapsed.as_secs_f64(),
        report.rate()
    );
    if !report.failures.is_empty() {
        bail!("{} file(s) could not be imported", report.failures.len());
    }
    Ok(())
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Resources stored.
    pub resources: u64,
    /// Files read.
    pub files: usize,
    /// The files that failed, with why.
    pub failures: Vec<(PathBuf, String)>,
    /// How long it took.
    pub elapsed: Duration,
}

impl ImportReport {
    /// Resources stored per second.
    pub fn rate(&self) -> f64 {
        self.resources as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Imports every file under `paths`. Files run in parallel; a file that fails because what
/// it references is not there yet (e.g. a patient bundle before its practitioners) is retried
/// once after all others.
pub fn import_paths(records: &Records, paths: &[PathBuf], show_progress: bool) -> Result<ImportReport> {
    let files = collect_files(paths)?;
    let total_bytes: u64 = files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    let progress = if show_progress { ProgressBar::new(total_bytes) } else { ProgressBar::hidden() };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let resources = AtomicU64::new(0);
    let (first, rest): (Vec<PathBuf>, Vec<PathBuf>) = files.iter().cloned().partition(|f| is_shared_reference_data(f));
    let mut deferred = Vec::new();
    let mut failures = Vec::new();
    for batch in [first, rest] {
        let outcome = import_files(records, &batch, &resources, &progress);
        for (path, error) in outcome {
            match error {
                FileError::MaybeOrder(_) => deferred.push(path),
                FileError::Fatal(message) => failures.push((path, message)),
            }
        }
    }
    for (path, error) in import_files(records, &deferred, &resources, &progress) {
        let message = match error {
            FileError::MaybeOrder(message) | FileError::Fatal(message) => message,
        };
        failures.push((path, message));
    }
    progress.finish_and_clear();
    // Part of the import's time: searches of a freshly loaded PostgreSQL store need it.
    records.backend().refresh_statistics()?;
    Ok(ImportReport { resources: resources.into_inner(), files: files.len(), failures, elapsed: started.elapsed() })
}

/// Synthea writes the organizations and practitioners its patient bundles point at into
/// these two files; they must be loaded first.
fn is_shared_reference_data(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with("hospitalInformation") || name.starts_with("practitionerInformation")
}

fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
            entries.sort();
            files.extend(collect_files(&entries)?);
        } else if path.is_file() {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if matches!(ext, "json" | "ndjson" | "xml") {
                files.push(path.clone());
            }
        } else {
            bail!("no such file or folder: {}", path.display());
        }
    }
    Ok(files)
}

enum FileError {
    /// Failed in a way that loading other files first may cure.
    MaybeOrder(String),
    Fatal(String),
}

fn import_files(
    records: &Records,
    files: &[PathBuf],
    resources: &AtomicU64,
    progress: &ProgressBar,
) -> Vec<(PathBuf, FileError)> {
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(files.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some(path) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                    match import_file(records, path) {
                        Ok(n) => {
                            resources.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(error) => errors.lock().unwrap_or_else(|e| e.into_inner()).push((path.clone(), error)),
                    }
                    progress.inc(size);
                    progress.set_message(format!("{} resources", resources.load(Ordering::Relaxed)));
                }
            });
        }
    });
    errors.into_inner().unwrap_or_else(|e| e.into_inner())
}

const NDJSON_BATCH: usize = 500;

fn import_file(records: &Records, path: &Path) -> Result<u64, FileError> {
    if path.extension().and_then(|e| e.to_str()) == Some("xml") {
        return import_document(records, path);
    }
    let text = std::fs::read_to_string(path).map_err(|e| FileError::Fatal(format!("cannot read: {e}")))?;
    if path.extension().and_then(|e| e.to_str()) == Some("ndjson") {
        return import_ndjson(records, &text);
    }
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| FileError::Fatal(format!("invalid JSON at line {} column {}", e.line(), e.column())))?;
    import_value(records, value)
}

fn import_ndjson(records: &Records, text: &str) -> Result<u64, FileError> {
    let mut batch = Vec::with_capacity(NDJSON_BATCH);
    let mut stored = 0;
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line)
            .map_err(|e| FileError::Fatal(format!("line {}: invalid JSON at column {}", number + 1, e.column())))?;
        batch.push(value);
        if batch.len() == NDJSON_BATCH {
            stored += records.load(std::mem::take(&mut batch)).map_err(store_error)? as u64;
        }
    }
    if !batch.is_empty() {
        stored += records.load(batch).map_err(store_error)? as u64;
    }
    Ok(stored)
}

fn import_value(records: &Records, value: Value) -> Result<u64, FileError> {
    let is_bundle = value.get("resourceType").and_then(Value::as_str) == Some("Bundle");
    let bundle_type = value.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    let bundle_type = bundle_type.as_str();
    if is_bundle && matches!(bundle_type, "batch" | "transaction") {
        let response = records.process_bundle(value).map_err(store_error)?;
        return count_batch_response(&response, bundle_type);
    }
    if is_bundle && matches!(bundle_type, "collection" | "searchset") {
        let resources: Vec<Value> = value
            .get("entry")
            .and_then(Value::as_array)
            .map(|entries| entries.iter().filter_map(|e| e.get("resource").cloned()).collect())
            .unwrap_or_default();
        return Ok(records.load(resources).map_err(store_error)? as u64);
    }
    if value.get("id").is_some() {
        Ok(records.load(vec![value]).map_err(store_error)? as u64)
    } else {
        records.create(value, None).map_err(store_error)?;
        Ok(1)
    }
}

/// The name this command's document imports act under in the audit trail.
const DOCUMENT_IMPORT: &str = "continuum-import";

/// Files a C-CDA document; the resources it made (entries, the document and its provenance).
fn import_document(records: &Records, path: &Path) -> Result<u64, FileError> {
    let bytes = std::fs::read(path).map_err(|e| FileError::Fatal(format!("cannot read: {e}")))?;
    let door = access::Door::open(records.as_actor(store::audit::Agent::system(DOCUMENT_IMPORT)));
    let access = door.enter(access::Who::Anyone);
    let report = exchange::documents::import_ccda(&access, &bytes, None).map_err(|e| match e.class() {
        fhir::ErrorClass::BusinessRule | fhir::ErrorClass::PreconditionFailed => FileError::MaybeOrder(e.to_string()),
        _ => FileError::Fatal(e.to_string()),
    })?;
    for warning in &report.warnings {
        eprintln!("{}: not mapped: {}: {}", path.display(), warning.location, warning.message);
    }
    Ok(report.filed.values().sum::<usize>() as u64)
}

/// Counts the stored entries of a (batch-)response; failed batch entries fail the file.
fn count_batch_response(response: &Value, bundle_type: &str) -> Result<u64, FileError> {
    let entries = response.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let mut stored = 0;
    let mut failed = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let status = entry.pointer("/response/status").and_then(Value::as_str).unwrap_or("");
        if status.starts_with('2') {
            stored += 1;
        } else {
            failed.push(format!("entry {index}: {status}"));
        }
    }
    if failed.is_empty() {
        Ok(stored)
    } else {
        Err(FileError::Fatal(format!("{bundle_type} entries failed: {}", failed.join(", "))))
    }
}

/// Loads one parsed Bundle or resource, as `import` loads a file; the resources stored.
pub fn import_parsed(records: &Records, value: Value) -> Result<u64> {
    import_value(records, value).map_err(|error| match error {
        FileError::MaybeOrder(message) | FileError::Fatal(message) => anyhow::anyhow!(message),
    })
}

fn store_error(error: store::Error) -> FileError {
    let message = error.to_string();
    match error.kind() {
        ErrorKind::Unprocessable | ErrorKind::PreconditionFailed => FileError::MaybeOrder(message),
        _ => FileError::Fatal(message),
    }
}
