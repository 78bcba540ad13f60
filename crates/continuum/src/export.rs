//! `continuum export`: a Bulk Data export of the store into a folder, on the command line: the
//! same job as `GET /fhir/$export` (a snapshot at the moment it starts, NDJSON per type), run
//! through an open door acting as this command, with a progress bar. Servers may keep running
//! meanwhile.

use anyhow::{Context, Result, bail};
use clap::Args;
use exchange::bulk::{Bulk, BulkConfig, ExportRequest, JobStatus, Level};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The name this command's exports act under in the audit trail.
const EXPORTER: &str = "continuum-export";

/// The arguments of `continuum export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Data directory of the embedded store.
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data: PathBuf,
    #[command(flatten)]
    database: crate::DatabaseArg,
    /// Only these resource types (comma-separated, as `_type`).
    #[arg(long = "type", value_name = "TYPES")]
    types: Option<String>,
    /// Only resources changed after this instant (as `_since`, e.g. 2026-01-01T00:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// A `_typeFilter` such as `Observation?category=laboratory` (repeatable).
    #[arg(long = "type-filter", value_name = "TYPE?QUERY")]
    type_filters: Vec<String>,
    /// Every patient's compartment (`Patient/$export`) rather than everything.
    #[arg(long, conflicts_with = "group")]
    patients: bool,
    /// The compartments of this Group's patients (`Group/[id]/$export`).
    #[arg(long, value_name = "ID")]
    group: Option<String>,
    /// The folder to write the NDJSON files into (created if absent).
    dir: PathBuf,
}

pub(crate) fn run(args: ExportArgs) -> Result<()> {
    let crate::Store { records, jobs, .. } = crate::open_store(&args.data, &args.database)?;
    let door = access::Door::open(records.as_actor(store::audit::Agent::system(EXPORTER)));
    let access = door.enter(access::Who::Anyone);
    let bulk = Bulk::open_quietly(door, jobs, BulkConfig::in_data_dir(&args.data))
        .context("cannot open the bulk data jobs")?;
    let level = match (&args.group, args.patients) {
        (Some(group), _) => Level::Group(group.clone()),
        (None, true) => Level::Patient,
        (None, false) => Level::System,
    };
    let mut pairs = Vec::new();
    if let Some(types) = &args.types {
        pairs.push(("_type".to_string(), types.clone()));
    }
    if let Some(since) = &args.since {
        pairs.push(("_since".to_string(), since.clone()));
    }
    for filter in &args.type_filters {
        pairs.push(("_typeFilter".to_string(), filter.clone()));
    }
    let request = ExportRequest::parse(level, &pairs).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let started = Instant::now();
    let id = bulk.kick_off_export(&access, request, "continuum export").map_err(|e| anyhow::anyhow!("{e}"))?;
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let manifest = loop {
        match bulk.status(&access, &id, "").map_err(|e| anyhow::anyhow!("{e}"))? {
            JobStatus::InProgress(text) => {
                let exported = bulk.metrics().exported.load(Ordering::Relaxed);
                progress.set_message(format!("{exported} resources; {text}"));
                progress.tick();
                std::thread::sleep(Duration::from_millis(100));
            }
            JobStatus::Complete(manifest) => break manifest,
            JobStatus::Failed(issues) => {
                progress.finish_and_clear();
                let _ = bulk.cancel(&access, &id);
                bail!(
                    "the export failed: {}",
                    issues.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; ")
                );
            }
        }
    };
    progress.finish_and_clear();
    let mut total = 0;
    for output in manifest["output"].as_array().into_iter().flatten() {
        let name = output["url"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string();
        let from = bulk.job_dir(&id).join(&name);
        let to = args.dir.join(&name);
        if std::fs::rename(&from, &to).is_err() {
            std::fs::copy(&from, &to).with_context(|| format!("cannot write {}", to.display()))?;
        }
        let count = output["count"].as_u64().unwrap_or(0);
        total += count;
        println!("{:>10} {:<28} {}", count, output["type"].as_str().unwrap_or_default(), to.display());
    }
    // The files are the folder's now; the job is done with.
    bulk.cancel(&access, &id).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !access.settle_queued() {
        eprintln!("warning: the export's audit entries could not be recorded");
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "Exported {total} resources as of {} in {seconds:.1} s ({:.0} resources/s)",
        manifest["transactionTime"].as_str().unwrap_or_default(),
        total as f64 / seconds.max(1e-9)
    );
    Ok(())
}
