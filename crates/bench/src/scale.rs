//! `continuum-bench synthea-scale`: the scaled Synthea population (`test_support::synthea`) as
//! files, loadable with `continuum import`.

use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use test_support::synthea::{DEFAULT_SEED, Scaler};

#[derive(Debug, Args)]
pub(crate) struct ScaleArgs {
    /// How many patient bundles to write.
    #[arg(long)]
    patients: usize,
    /// Folder to write them to (created; the shared practitioner and hospital files are copied).
    #[arg(long)]
    out: PathBuf,
    /// Template folders (default: the repository's testdata/synthea/smart-2019 and synthea-v3).
    #[arg(long)]
    synthea: Vec<PathBuf>,
    /// Seed of ids, identifiers and date shifts.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
}

pub(crate) fn run(args: ScaleArgs) -> Result<()> {
    let roots = if args.synthea.is_empty() { test_support::synthea::sample_folders()? } else { args.synthea.clone() };
    let scaler = Scaler::new(&roots, args.seed)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    for shared in scaler.shared() {
        let name = shared.file_name().context("shared file without a name")?;
        std::fs::copy(shared, args.out.join(name)).with_context(|| format!("cannot copy {}", shared.display()))?;
    }
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let failure = Mutex::new(None);
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= args.patients {
                        break;
                    }
                    if let Err(error) = write_bundle(&scaler, k, &args.out) {
                        *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
                        next.store(args.patients, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    if let Some(error) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(error);
    }
    println!(
        "Wrote {} patient bundles to {} in {:.1} s (seed {}); load them with `continuum import {}`",
        args.patients,
        args.out.display(),
        started.elapsed().as_secs_f64(),
        args.seed,
        args.out.display()
    );
    Ok(())
}

fn write_bundle(scaler: &Scaler, k: usize, out: &Path) -> Result<()> {
    let bundle = scaler.bundle(k)?;
    let path = out.join(format!("patient-{k:05}.json"));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    serde_json::to_writer(&mut file, &bundle)?;
    file.flush().with_context(|| format!("cannot write {}", path.display()))
}
