//! `continuum-bench load`: a sustained mixed workload against a running `continuum serve`
//! (issue 8's figure): reads by id, searches and writes from N keep-alive clients for M
//! minutes, reported per interval (throughput, p50/p99 latency, errors, the server's RSS) so
//! that drift shows: the goal is 0 errors, every interval's p99 within 2× of the first one's,
//! and flat memory under 300 MB.

use anyhow::{Context, Result, bail};
use clap::Args;
use hyper::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{connect, exchange, percentile_ms, request};

#[derive(Debug, Args)]
pub(crate) struct LoadBenchArgs {
    /// The server's address (`HOST:PORT` of `continuum serve --listen`).
    #[arg(long)]
    server: SocketAddr,
    /// The server's process id, to sample its resident memory (Linux `/proc`).
    #[arg(long)]
    pid: Option<u32>,
    /// How long the load lasts.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Seconds per reported interval.
    #[arg(long, default_value_t = 60)]
    interval: u64,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
}

/// One request's outcome: when it was sent (since the start), its latency, and whether it
/// was answered with a 2xx.
struct Sample {
    at: Duration,
    latency_us: u64,
    ok: bool,
}

/// Out of every 20 requests: 11 reads by id, 6 searches, 3 writes.
const MIX: usize = 20;

pub(crate) fn run(args: LoadBenchArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(load(args))
}

async fn load(args: LoadBenchArgs) -> Result<()> {
    let patients = Arc::new(patient_ids(args.server).await?);
    println!(
        "mixed load: {} clients for {} min against {} ({} patients sampled; per {MIX} requests: 11 reads, 6 searches, 3 writes)",
        args.clients,
        args.minutes,
        args.server,
        patients.len()
    );
    let started = Instant::now();
    let duration = Duration::from_secs(args.minutes * 60);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let memory = tokio::spawn(sample_memory(args.pid, Duration::from_secs(args.interval), stopped));
    let mut tasks = Vec::new();
    for worker in 0..args.clients {
        let (patients, address) = (patients.clone(), args.server);
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let Ok(mut sender) = connect(address).await else { return samples };
            let mut i = 0usize;
            while started.elapsed() < duration {
                let patient = &patients[(worker * 7919 + i * 104_729) % patients.len()];
                let sent = Instant::now();
                let ok = match exchange(&mut sender, next_request(worker, i, patient)).await {
                    Ok((status, _)) => (200..300).contains(&status),
                    Err(_) => {
                        match connect(address).await {
                            Ok(fresh) => sender = fresh,
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                        false
                    }
                };
                samples.push(Sample { at: sent - started, latency_us: sent.elapsed().as_micros() as u64, ok });
                i += 1;
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await?);
    }
    let _ = stop.send(());
    let rss = memory.await?;
    report(&samples, &rss, Duration::from_secs(args.interval));
    Ok(())
}

/// Request `i` of client `worker`, about `patient` (an id).
fn next_request(worker: usize, i: usize, patient: &str) -> hyper::Request<http_body_util::Full<bytes::Bytes>> {
    match i % MIX {
        0..=6 => request(Method::GET, &format!("/fhir/Patient/{patient}"), None),
        7..=10 => request(Method::GET, &format!("/fhir/Observation?subject=Patient/{patient}&_count=20"), None),
        11 => request(Method::GET, &format!("/fhir/Encounter?patient={patient}&_sort=-date&_count=10"), None),
        12 => request(Method::GET, &format!("/fhir/Observation?patient={patient}&code=http://loinc.org|8867-4"), None),
        13 => request(Method::GET, &format!("/fhir/Condition?patient={patient}&clinical-status=active"), None),
        14 | 15 => request(Method::GET, "/fhir/Patient?family=bench-load&_count=5", None),
        16 => request(Method::GET, &format!("/fhir/MedicationRequest?patient={patient}&status=active"), None),
        17 | 18 => {
            let observation = json!({
                "resourceType": "Observation",
                "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
                "subject": {"reference": format!("Patient/{patient}")},
                "effectiveDateTime": "2026-11-25T09:00:00Z",
                "valueQuantity": {"value": 60 + (worker + i) % 40, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
            });
            request(Method::POST, "/fhir/Observation", Some(observation))
        }
        _ => {
            let patient = json!({
                "resourceType": "Patient",
                "id": format!("bench-load-{worker}"),
                "name": [{"family": "bench-load", "given": [format!("W{worker}"), format!("N{i}")]}],
                "gender": "unknown"
            });
            request(Method::PUT, &format!("/fhir/Patient/bench-load-{worker}"), Some(patient))
        }
    }
}

/// Up to 1,000 patient ids from the server (the load spreads over them).
async fn patient_ids(address: SocketAddr) -> Result<Vec<String>> {
    let mut sender = connect(address).await.context("cannot reach the server")?;
    let (status, body) =
        exchange(&mut sender, request(Method::GET, "/fhir/Patient?_count=1000&_elements=id", None)).await?;
    if status != 200 {
        bail!("listing patients answered {status}");
    }
    let bundle: Value = serde_json::from_slice(&body)?;
    let ids: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_string))
        .collect();
    if ids.is_empty() {
        bail!("the server has no patients: load a data set first (continuum import)");
    }
    Ok(ids)
}

/// The server's resident memory in MB, at the start and once per interval until `stopped`.
async fn sample_memory(
    pid: Option<u32>,
    interval: Duration,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) -> Vec<Option<f64>> {
    let mut samples = vec![pid.and_then(rss_mb)];
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => samples.push(pid.and_then(rss_mb)),
            _ = &mut stopped => return samples,
        }
    }
}

/// `VmRSS` of process `pid`, in MB.
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn report(samples: &[Sample], rss: &[Option<f64>], interval: Duration) {
    let bucket = |s: &Sample| (s.at.as_secs() / interval.as_secs().max(1)) as usize;
    let mut buckets: Vec<Vec<&Sample>> = Vec::new();
    for sample in samples {
        let k = bucket(sample);
        if buckets.len() <= k {
            buckets.resize_with(k + 1, Vec::new);
        }
        buckets[k].push(sample);
    }
    println!("{:>8} {:>10} {:>9} {:>9} {:>7} {:>9}", "interval", "requests/s", "p50 ms", "p99 ms", "errors", "RSS MB");
    let mut p99s = Vec::new();
    for (k, inside) in buckets.iter().enumerate() {
        let mut latencies: Vec<u64> = inside.iter().map(|s| s.latency_us).collect();
        latencies.sort_unstable();
        let errors = inside.iter().filter(|s| !s.ok).count();
        let p99 = percentile_ms(&latencies, 0.99).unwrap_or(0.0);
        p99s.push(p99);
        let memory = rss.get(k + 1).copied().flatten().map_or("-".to_string(), |mb| format!("{mb:.0}"));
        println!(
            "{:>8} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>9}",
            k + 1,
            inside.len() as f64 / interval.as_secs_f64(),
            percentile_ms(&latencies, 0.50).unwrap_or(0.0),
            p99,
            errors,
            memory
        );
    }
    let errors = samples.iter().filter(|s| !s.ok).count();
    let first = p99s.first().copied().unwrap_or(0.0);
    let worst = p99s.iter().copied().fold(0.0, f64::max);
    let mut all: Vec<u64> = samples.iter().map(|s| s.latency_us).collect();
    all.sort_unstable();
    println!(
        "total: {} requests, {} errors, p50 {:.2} ms, p99 {:.2} ms; worst interval p99 {:.2} ms = {:.2}x the first's",
        samples.len(),
        errors,
        percentile_ms(&all, 0.50).unwrap_or(0.0),
        percentile_ms(&all, 0.99).unwrap_or(0.0),
        worst,
        if first > 0.0 { worst / first } else { 0.0 }
    );
    let memory: Vec<f64> = rss.iter().copied().flatten().collect();
    if let (Some(start), Some(end)) = (memory.first(), memory.last()) {
        let peak = memory.iter().copied().fold(0.0, f64::max);
        println!("server RSS: {start:.0} MB at the start, {end:.0} MB at the end, {peak:.0} MB at most");
    }
}
