//! `continuum-bench exchange`: issue 18's figures.
//!
//! 1. **Bulk export** (goal ≥ 100,000 resources/s, and < 50 MB of server memory above idle):
//!    a store of N scaled Synthea patients (built as `continuum-bench search` builds its stores,
//!    or reused from `--data`) is served by the release `continuum serve --no-auth` started as
//!    a child process (the binary next to this one, or `--server`); a system-level
//!    `GET /fhir/$export` with `Prefer: respond-async` is kicked off over loopback and its
//!    status URL polled every 20 ms until it answers 200. The time is kick-off → manifest (so
//!    it includes up to 20 ms of polling slack); the rate is the manifest's counts summed over
//!    that time. The memory figure is the server's peak `VmRSS` (sampled every 10 ms) during
//!    the export minus its `VmRSS` just before the kick-off; the verdict is on the largest peak
//!    above the freshly started server's idle `VmRSS` (what the first export grows is kept by
//!    the allocator and SQLite's cache, so later runs' own growth is smaller). The first run
//!    after the server starts is cold (SQLite's cache empty). What it measures: the whole
//!    export path of an open server (the door without policy, every resource read from the
//!    snapshot and written to NDJSON files on the local disk, the job's state saved per type).
//!    What it does not: a secured server's policy decisions and audit per patient, the download
//!    of the files, or a concurrent write load. The job (and its files) is deleted after each
//!    run, untimed.
//! 2. **C-CDA import** (goal ≥ 200 documents/s): the 8 shared HL7 examples imported in-process
//!    through `exchange::documents::import_ccda`, through an unrestricted door (an open
//!    server's), each into a fresh SQLite store (made untimed; some examples share their
//!    document id), so that every import files a whole document (reading, matching, reconciliation, one durable transaction) rather
//!    than finding a duplicate. The reader alone (`ccda::read`) is timed on the same documents
//!    for comparison. Not measured: HTTP, a secured server's policy and audit, or imports into
//!    a large store.
//! 3. **CCD export** (goal p50 < 50 ms): one patient holding about 2,000 resources (several
//!    scaled Synthea patients' records filed to one patient in one transaction) in a scratch
//!    SQLite store; `exchange::documents::export_ccda` of a CCD over the whole record, through
//!    an unrestricted door, timed one after another (one untimed warm-up). Not measured: HTTP,
//!    policy, or the store being large.

use crate::client::{connect, exchange, percentile_ms};
use access::{Door, Who};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::{Method, Request};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use test_support::synthea::Scaler;

/// Goals of issue 18.
const GOAL_EXPORT_PER_S: f64 = 100_000.0;
const GOAL_EXPORT_MB: f64 = 50.0;
const GOAL_IMPORT_PER_S: f64 = 200.0;
const GOAL_CCD_P50_MS: f64 = 50.0;

/// The shared HL7 C-CDA examples.
const CCDA_EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/ccda/hl7-c-cda-examples");

#[derive(Debug, Args)]
pub(crate) struct ExchangeBenchArgs {
    /// Scaled Synthea patients in the store exported.
    #[arg(long, default_value_t = 1000)]
    patients: usize,
    /// Keep the scaled store under this folder (as `DIR/exchange-N-seedS`) and reuse it next
    /// time.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Bulk exports timed (each printed, then the median).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Rounds of the C-CDA import (each imports every example into a fresh store).
    #[arg(long, default_value_t = 25)]
    rounds: usize,
    /// CCD exports timed.
    #[arg(long, default_value_t = 50)]
    ccd_exports: usize,
    /// Resources (of the types a CCD is made from) of the CCD's patient, at least.
    #[arg(long, default_value_t = 2000)]
    ccd_resources: usize,
    /// The `continuum` binary to serve the store with (default: the one next to this binary).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Leave out the bulk export (figure 1).
    #[arg(long)]
    skip_bulk: bool,
    /// Synthea folders to scale from (default: the bundled sample).
    #[arg(long)]
    synthea: Vec<PathBuf>,
    /// Seed of the scaling.
    #[arg(long, default_value_t = test_support::synthea::DEFAULT_SEED)]
    seed: u64,
}

pub(crate) fn run(args: ExchangeBenchArgs) -> Result<()> {
    let roots = test_support::synthea::sample_or(&args.synthea)?;
    let scaler = Scaler::new(&roots, args.seed)?;
    println!("load average at the start: {}", load_average());
    if !args.skip_bulk {
        bulk_export(&args, &scaler)?;
    }
    ccda_import(&args)?;
    ccd_export(&args, &scaler)?;
    println!("load average at the end: {}", load_average());
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// CPU seconds (user + system) this process has used so far (Linux `/proc`, 10 ms ticks).
fn cpu_seconds() -> f64 {
    process_cpu_seconds("self")
}

/// CPU seconds (user + system) process `pid` (or `self`) has used so far.
fn process_cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

// ---------------------------------------------------------------------------------------------
// 1. Bulk export

/// The child server, stopped when dropped.
struct ServerProcess {
    child: Child,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One timed export.
struct ExportRun {
    seconds: f64,
    resources: u64,
    bytes: u64,
    idle_mb: f64,
    peak_mb: f64,
    /// CPU seconds the server used during the export.
    server_cpu: f64,
    /// (type, resources, seconds) in the order written, from the progress seen while polling.
    per_type: Vec<(String, u64, f64)>,
}

fn bulk_export(args: &ExchangeBenchArgs, scaler: &Scaler) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let root = args.data.clone().unwrap_or_else(|| scratch.path().to_path_buf());
    let dir = root.join(format!("exchange-{}-seed{}", args.patients, args.seed));
    let started = Instant::now();
    let (records, resources) = crate::searches::build_store(scaler, args.patients, &dir)?;
    drop(records);
    println!(
        "store ready in {:.1} s: {} patients, {resources} resources",
        started.elapsed().as_secs_f64(),
        args.patients
    );

    let binary = match &args.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.parent().context("the bench binary has no folder")?.join("continuum"),
    };
    if !binary.exists() {
        bail!(
            "no server binary at {}: build it (`cargo build --release -p continuum`) or name one with --server",
            binary.display()
        );
    }
    let address: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?
    };
    let log = scratch.path().join("server.log");
    let child = Command::new(&binary)
        .arg("serve")
        .arg("--no-auth")
        .arg("--data")
        .arg(&dir)
        .arg("--listen")
        .arg(address.to_string())
        .arg("--rate-limit")
        .arg("0")
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&log)?))
        .stderr(Stdio::from(std::fs::File::create(scratch.path().join("server.err"))?))
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let server = ServerProcess { child };
    let pid = server.child.id();
    println!("serving it with `{} serve --no-auth` (pid {pid}) on {address}", binary.display());

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut runs = Vec::new();
    runtime.block_on(async {
        wait_until_up(address, &scratch.path().join("server.err")).await?;
        // Let the server settle (the jobs' sweep, the first pages of the store).
        tokio::time::sleep(Duration::from_secs(2)).await;
        for run in 0..args.runs {
            let measured = export_once(address, pid, &dir).await?;
            println!(
                "run {}: {} resources ({:.0} MB of NDJSON) in {:.2} s = {:.0} resources/s, the server busy {:.2} s of CPU; server RSS {:.1} MB idle, {:.1} MB peak, +{:.1} MB",
                run + 1,
                measured.resources,
                measured.bytes as f64 / 1e6,
                measured.seconds,
                measured.resources as f64 / measured.seconds,
                measured.server_cpu,
                measured.idle_mb,
                measured.peak_mb,
                measured.peak_mb - measured.idle_mb
            );
            runs.push(measured);
        }
        Ok::<(), anyhow::Error>(())
    })?;
    drop(server);

    if let Some(first) = runs.first() {
        let mut slowest = first.per_type.clone();
        slowest.sort_by(|a, b| b.2.total_cmp(&a.2));
        let shown: Vec<String> = slowest
            .iter()
            .take(6)
            .map(|(t, n, s)| format!("{t} {n} in {s:.2} s ({:.0}/s)", *n as f64 / s.max(1e-9)))
            .collect();
        if !shown.is_empty() {
            println!("slowest types of run 1 (from the progress polled every 20 ms, so roughly): {}", shown.join("; "));
        }
    }
    let rates: Vec<f64> = runs.iter().map(|r| r.resources as f64 / r.seconds).collect();
    let seconds: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
    let growth: Vec<f64> = runs.iter().map(|r| r.peak_mb - r.idle_mb).collect();
    let rate = median(&rates);
    // Against the freshly started server's idle memory: what run 1 grew (caches, allocator
    // arenas) stays, so later runs' own growth understates what an export needs.
    let fresh_idle = runs.first().map_or(f64::NAN, |r| r.idle_mb);
    let worst = runs.iter().map(|r| r.peak_mb - fresh_idle).fold(f64::NAN, f64::max);
    let mb = median(&growth);
    println!(
        "== 1. bulk export ({} patients, {resources} resources stored): median {:.2} s, {rate:.0} resources/s \
         (goal >= {GOAL_EXPORT_PER_S:.0}: {}); server memory: median +{mb:.1} MB above the RSS before each kick-off, \
         at most +{worst:.1} MB above the freshly started server's {fresh_idle:.1} MB (goal < {GOAL_EXPORT_MB:.0} MB, on the latter: {})",
        args.patients,
        median(&seconds),
        met(rate >= GOAL_EXPORT_PER_S),
        met(worst < GOAL_EXPORT_MB)
    );
    Ok(())
}

/// Waits (up to a minute) until the server answers its capability statement.
async fn wait_until_up(address: SocketAddr, errors: &Path) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut client) = connect(address).await
            && let Ok((200, _)) = exchange(&mut client, get("/fhir/metadata")).await
        {
            return Ok(());
        }
        if Instant::now() > until {
            bail!(
                "the server did not answer within a minute: {}",
                std::fs::read_to_string(errors).unwrap_or_default().trim()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("host", "bench")
        .header("accept", "application/fhir+json")
        .body(Full::new(Bytes::new()))
        .unwrap_or_default()
}

/// Samples `VmRSS` of `pid` every 10 ms until `stop`; the largest seen, in MB.
fn sample_peak(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut peak: f64 = 0.0;
        while !stop.load(Ordering::Relaxed) {
            if let Some(mb) = rss_mb(pid) {
                peak = peak.max(mb);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(mb) = rss_mb(pid) {
            peak = peak.max(mb);
        }
        peak
    })
}

/// `VmRSS` of process `pid`, in MB.
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// One system-level export, kick-off to manifest; its job deleted afterwards.
async fn export_once(address: SocketAddr, pid: u32, dir: &Path) -> Result<ExportRun> {
    let mut client = connect(address).await?;
    let idle_mb = rss_mb(pid).context("cannot read the server's memory")?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak(pid, Arc::clone(&stop));
    let kick_off = Request::builder()
        .method(Method::GET)
        .uri("/fhir/$export")
        .header("host", "bench")
        .header("accept", "application/fhir+json")
        .header("prefer", "respond-async")
        .body(Full::new(Bytes::new()))
        .unwrap_or_default();
    let cpu_before = process_cpu_seconds(&pid.to_string());
    let started = Instant::now();
    let response = {
        client.ready().await?;
        client.send_request(kick_off).await?
    };
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_default();
    let _ = http_body_util::BodyExt::collect(response.into_body()).await?;
    if status != 202 || location.is_empty() {
        stop.store(true, Ordering::Relaxed);
        bail!("the kick-off answered {status} without a status URL");
    }
    let status_path = match location.find("/fhir/") {
        Some(at) => location[at..].to_string(),
        None => bail!("unexpected status URL {location}"),
    };
    // Progress texts seen, with when they were first seen.
    let mut progress: Vec<(String, f64)> = Vec::new();
    let manifest = loop {
        let response = {
            client.ready().await?;
            client.send_request(get(&status_path)).await?
        };
        let code = response.status().as_u16();
        let text = response.headers().get("x-progress").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = http_body_util::BodyExt::collect(response.into_body()).await?.to_bytes();
        match code {
            200 => break serde_json::from_slice::<Value>(&body).context("the manifest is not JSON")?,
            202 => {
                if let Some(text) = text
                    && progress.last().is_none_or(|(p, _)| *p != text)
                {
                    progress.push((text, started.elapsed().as_secs_f64()));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => {
                stop.store(true, Ordering::Relaxed);
                bail!("the status answered {other}: {}", String::from_utf8_lossy(&body));
            }
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let server_cpu = process_cpu_seconds(&pid.to_string()) - cpu_before;
    stop.store(true, Ordering::Relaxed);
    let peak_mb = sampler.join().map_err(|_| anyhow::anyhow!("the memory sampler panicked"))?;

    // Counts per type, in the order written.
    let mut per_type_counts: Vec<(String, u64)> = Vec::new();
    for output in manifest.get("output").and_then(Value::as_array).into_iter().flatten() {
        let kind = output.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
        let count = output.get("count").and_then(Value::as_u64).unwrap_or(0);
        match per_type_counts.last_mut() {
            Some((last, n)) if *last == kind => *n += count,
            _ => per_type_counts.push((kind, count)),
        }
    }
    let resources: u64 = per_type_counts.iter().map(|(_, n)| n).sum();
    // The time of type i: from the progress "i of M" first seen to "i+1 of M" first seen (the
    // last type to the manifest). Only when every type was written to a file (else the
    // types cannot be told apart from the progress alone).
    let mut done_at: HashMap<usize, f64> = HashMap::new();
    let mut total_types = 0;
    for (text, at) in &progress {
        let mut words = text.split_whitespace();
        if let (Some(Ok(done)), Some("of"), Some(Ok(of))) =
            (words.next().map(str::parse::<usize>), words.next(), words.next().map(str::parse::<usize>))
        {
            done_at.entry(done).or_insert(*at);
            total_types = of;
        }
    }
    let mut per_type = Vec::new();
    if total_types == per_type_counts.len() {
        let mut previous = 0.0;
        for (i, (kind, count)) in per_type_counts.iter().enumerate() {
            // A type done between two polls: the first progress seen at or after it.
            let end =
                done_at.iter().filter(|(done, _)| **done > i).map(|(_, at)| *at).fold(seconds, f64::min).max(previous);
            per_type.push((kind.clone(), *count, end - previous));
            previous = end;
        }
    }

    // The files' size, then the job deleted (untimed).
    let id = status_path.rsplit('/').next().unwrap_or_default().to_string();
    let bytes = std::fs::read_dir(dir.join("bulk").join(&id))
        .map(|entries| entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    let delete = Request::builder()
        .method(Method::DELETE)
        .uri(&status_path)
        .header("host", "bench")
        .body(Full::new(Bytes::new()))
        .unwrap_or_default();
    let (code, _) = exchange(&mut client, delete).await?;
    if !(200..300).contains(&code) {
        bail!("deleting the job answered {code}");
    }
    Ok(ExportRun { seconds, resources, bytes, idle_mb, peak_mb, server_cpu, per_type })
}

// ---------------------------------------------------------------------------------------------
// 2. C-CDA import

fn ccda_examples() -> Result<Vec<(String, Vec<u8>)>> {
    let mut documents = Vec::new();
    for entry in std::fs::read_dir(CCDA_EXAMPLES).with_context(|| format!("cannot read {CCDA_EXAMPLES}"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "xml") {
            let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            documents.push((name, std::fs::read(&path)?));
        }
    }
    documents.sort();
    if documents.is_empty() {
        bail!("no C-CDA examples in {CCDA_EXAMPLES}");
    }
    Ok(documents)
}

fn ccda_import(args: &ExchangeBenchArgs) -> Result<()> {
    let documents = ccda_examples()?;
    let rounds = args.rounds.max(1);
    // The reader alone.
    for (name, xml) in &documents {
        ccda::read(xml).with_context(|| format!("{name} cannot be read"))?;
    }
    let started = Instant::now();
    for _ in 0..rounds {
        for (_, xml) in &documents {
            std::hint::black_box(ccda::read(xml)?);
        }
    }
    let read_seconds = started.elapsed().as_secs_f64();
    let read_rate = (rounds * documents.len()) as f64 / read_seconds;

    let mut per_document: Vec<Vec<f64>> = vec![Vec::new(); documents.len()];
    let mut filed = 0usize;
    let mut timed = Duration::ZERO;
    let mut cpu = 0.0;
    for _ in 0..rounds {
        for (i, (name, xml)) in documents.iter().enumerate() {
            // A fresh store for every document: some examples share their document id (the
            // second would be a duplicate) and entries' ids.
            let scratch = tempfile::tempdir()?;
            let records = continuum::open_records(scratch.path())?;
            let access = Door::open(records).enter(Who::Anyone);
            let (started, cpu_before) = (Instant::now(), cpu_seconds());
            let report = ::exchange::documents::import_ccda(&access, xml, None)
                .with_context(|| format!("importing {name} failed"))?;
            let elapsed = started.elapsed();
            cpu += cpu_seconds() - cpu_before;
            timed += elapsed;
            per_document[i].push(elapsed.as_secs_f64() * 1000.0);
            if report.already_imported {
                bail!("{name} was found already imported in a fresh store");
            }
            filed += report.filed.values().sum::<usize>();
        }
    }
    let imports = rounds * documents.len();
    let rate = imports as f64 / timed.as_secs_f64();
    println!();
    println!("C-CDA import, {rounds} rounds x {} documents, each into a fresh SQLite store:", documents.len());
    for (i, (name, xml)) in documents.iter().enumerate() {
        println!("  {name:<28} {:>7} bytes  median {:.2} ms", xml.len(), median(&per_document[i]));
    }
    println!(
        "== 2. C-CDA import: {imports} documents in {:.2} s = {rate:.0} documents/s (goal >= {GOAL_IMPORT_PER_S:.0}: {}); \
         {:.1} resources filed per document, {:.1} ms of CPU per document (the rest of the time waiting); \
         the reader alone: {read_rate:.0} documents/s",
        timed.as_secs_f64(),
        met(rate >= GOAL_IMPORT_PER_S),
        filed as f64 / imports as f64,
        cpu * 1000.0 / imports as f64
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. CCD export

/// Whether an entry's resource is of a type a CCD is made from.
fn chart_entry(entry: &Value) -> bool {
    entry
        .pointer("/resource/resourceType")
        .and_then(Value::as_str)
        .is_some_and(|t| exchange::documents::CHART_TYPES.contains(&t))
}

fn patient_uuid(bundle: &Value) -> Option<String> {
    bundle.get("entry").and_then(Value::as_array)?.iter().find_map(|e| {
        if e.pointer("/resource/resourceType").and_then(Value::as_str) == Some("Patient") {
            e.get("fullUrl").and_then(Value::as_str).and_then(|u| u.strip_prefix("urn:uuid:")).map(str::to_string)
        } else {
            None
        }
    })
}

/// Every string of `value` with `from` replaced by `to`.
fn repoint(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        Value::Array(items) => items.iter_mut().for_each(|v| repoint(v, from, to)),
        Value::Object(fields) => fields.values_mut().for_each(|v| repoint(v, from, to)),
        _ => {}
    }
}

/// One transaction Bundle of scaled patient 0 with the records of the next patients filed to
/// it, until it holds at least `wanted` resources of the types a CCD is made from.
fn big_patient(scaler: &Scaler, wanted: usize) -> Result<(Value, usize)> {
    let mut bundle = scaler.bundle(0)?;
    let target = patient_uuid(&bundle).context("the scaled bundle has no Patient")?;
    let mut entries: Vec<Value> = bundle.get("entry").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut chart = entries.iter().filter(|e| chart_entry(e)).count();
    let mut k = 1;
    while chart < wanted {
        if k > 200 {
            bail!("200 scaled patients do not hold {wanted} resources");
        }
        let other = scaler.bundle(k)?;
        k += 1;
        let Some(source) = patient_uuid(&other) else { continue };
        for mut entry in other.get("entry").and_then(Value::as_array).cloned().unwrap_or_default() {
            if entry.pointer("/resource/resourceType").and_then(Value::as_str) == Some("Patient") {
                continue;
            }
            repoint(&mut entry, &source, &target);
            if chart_entry(&entry) {
                chart += 1;
            }
            entries.push(entry);
        }
    }
    if let Some(fields) = bundle.as_object_mut() {
        fields.insert("entry".into(), Value::Array(entries));
    }
    Ok((bundle, chart))
}

fn ccd_export(args: &ExchangeBenchArgs, scaler: &Scaler) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let records = continuum::open_records(scratch.path())?;
    let shared = continuum::import::import_paths(&records, scaler.shared(), false)?;
    if let Some((path, error)) = shared.failures.first() {
        bail!("loading {} failed: {error}", path.display());
    }
    let (bundle, chart) = big_patient(scaler, args.ccd_resources)?;
    let stored = continuum::import::import_parsed(&records, bundle)?;
    let patients = crate::access_control::stored(&records, "Patient", 10)?;
    let [patient] = patients.as_slice() else { bail!("expected one patient, found {}", patients.len()) };
    let patient = patient.id.clone();
    let access = Door::open(records).enter(Who::Anyone);
    let custodian = json!({"resourceType": "Organization", "id": "continuum", "name": "Continuum EHR",
                           "telecom": [{"system": "url", "value": "http://127.0.0.1/fhir"}]});
    let warm =
        ::exchange::documents::export_ccda(&access, &patient, ccda::DocumentType::Ccd, (None, None), &custodian)?;
    let mut times = Vec::new();
    let cpu_before = cpu_seconds();
    for _ in 0..args.ccd_exports.max(1) {
        let started = Instant::now();
        let document =
            ::exchange::documents::export_ccda(&access, &patient, ccda::DocumentType::Ccd, (None, None), &custodian)?;
        times.push(started.elapsed().as_micros() as u64);
        std::hint::black_box(document);
    }
    let cpu = (cpu_seconds() - cpu_before) * 1000.0 / times.len() as f64;
    times.sort_unstable();
    let p50 = percentile_ms(&times, 0.5).unwrap_or(f64::NAN);
    let p90 = percentile_ms(&times, 0.9).unwrap_or(f64::NAN);
    println!();
    println!(
        "CCD export: patient {patient} with {chart} resources of the CCD's types ({stored} stored in its transaction); \
         the document is made from {} of them and is {:.0} KB",
        warm.resources,
        warm.xml.len() as f64 / 1024.0
    );
    println!(
        "== 3. CCD export ({} resources): {} exports, p50 {p50:.1} ms, p90 {p90:.1} ms, max {:.1} ms, {cpu:.1} ms of CPU each (goal p50 < {GOAL_CCD_P50_MS:.0} ms: {})",
        warm.resources,
        times.len(),
        percentile_ms(&times, 1.0).unwrap_or(f64::NAN),
        met(p50 < GOAL_CCD_P50_MS)
    );
    Ok(())
}
