//! `continuum-bench` without a subcommand: the three figures on a scratch store —
//! Synthea ingest rate, read-by-id throughput and latency at N concurrent clients, durable
//! write throughput.

use crate::client::{Measured, bench_limits, connect, exchange, request, run_clients};
use anyhow::{Context, Result, bail};
use clap::Args;
use hyper::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::{HistoryQuery, Records};

#[derive(Debug, Args)]
pub(crate) struct ThroughputArgs {
    /// Synthea bundles to ingest (default: the repository's testdata/synthea).
    #[arg(long)]
    synthea: Vec<PathBuf>,
    /// How many times to ingest the bundles (each round creates new resources).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent HTTP clients for the read and write phases.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds each of the read and write phases lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Scratch data directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    data: Option<PathBuf>,
}

pub(crate) fn run(args: ThroughputArgs) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let data = args.data.clone().unwrap_or_else(|| scratch.path().join("data"));
    let records = continuum::open_records(&data)?;
    let synthea = test_support::synthea::sample_or(&args.synthea)?;

    let mut ingested = 0u64;
    let mut ingest_time = Duration::ZERO;
    for _ in 0..args.rounds {
        let report = continuum::import::import_paths(&records, &synthea, false)?;
        if let Some((path, error)) = report.failures.first() {
            bail!("ingest failed on {}: {error}", path.display());
        }
        ingested += report.resources;
        ingest_time += report.elapsed;
    }
    println!(
        "ingest:     {ingested} resources in {:.2} s = {:.0} resources/s (validation and history on, {} rounds)",
        ingest_time.as_secs_f64(),
        ingested as f64 / ingest_time.as_secs_f64(),
        args.rounds
    );

    let targets = read_targets(&records)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(http_phases(records, targets, &args))
}

/// `Type/id` of up to 10,000 stored resources, to read at random.
fn read_targets(records: &Records) -> Result<Vec<String>> {
    let query = HistoryQuery { count: 10_000, ..HistoryQuery::default() };
    let targets: Vec<String> = records
        .history(&query)?
        .into_iter()
        .filter(|v| !v.is_deleted())
        .map(|v| format!("{}/{}", v.resource_type, v.id))
        .collect();
    if targets.is_empty() {
        bail!("nothing was ingested");
    }
    Ok(targets)
}

async fn http_phases(records: Records, targets: Vec<String>, args: &ThroughputArgs) -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let state = server::AppState::new(records, format!("http://{address}/fhir"), bench_limits());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let duration = Duration::from_secs(args.seconds);

    let targets = Arc::new(targets);
    let reads = run_clients(address, args.clients, duration, move |worker, i| {
        let target = &targets[(worker * 7919 + i * 104_729) % targets.len()];
        request(Method::GET, &format!("/fhir/{target}"), None)
    })
    .await?;
    print_phase("read-by-id", &reads, args.clients);

    let patient = create_patient(address).await?;
    let writes = run_clients(address, args.clients, duration, move |worker, i| {
        if i % 2 == 0 {
            request(Method::POST, "/fhir/Observation", Some(observation(&patient, worker, i)))
        } else {
            request(Method::PUT, &format!("/fhir/Patient/bench-{worker}"), Some(bench_patient(worker, i)))
        }
    })
    .await?;
    print_phase("write", &writes, args.clients);

    let _ = stop.send(());
    server.await.context("server task")??;
    Ok(())
}

async fn create_patient(address: SocketAddr) -> Result<String> {
    let mut sender = connect(address).await?;
    let body = json!({"resourceType": "Patient", "name": [{"family": "Bench"}]});
    let (status, body) = exchange(&mut sender, request(Method::POST, "/fhir/Patient", Some(body))).await?;
    if status != 201 {
        bail!("creating the bench patient answered {status}");
    }
    let created: Value = serde_json::from_slice(&body)?;
    let id = created.get("id").and_then(Value::as_str).context("created patient has no id")?;
    Ok(format!("Patient/{id}"))
}

fn observation(patient: &str, worker: usize, i: usize) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": patient},
        "effectiveDateTime": "2026-11-25T09:00:00Z",
        "valueQuantity": {"value": 60 + (worker + i) % 40, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

fn bench_patient(worker: usize, i: usize) -> Value {
    json!({
        "resourceType": "Patient",
        "id": format!("bench-{worker}"),
        "name": [{"family": "Bench", "given": [format!("W{worker}"), format!("N{i}")]}],
        "gender": "unknown"
    })
}

/// Prints one phase's figures.
fn print_phase(name: &str, phase: &Measured, clients: usize) {
    let percentile = |p| phase.percentile(p).unwrap_or(0.0);
    println!(
        "{name:<11} {:.0} requests/s over {:.1} s, {clients} clients, p50 {:.2} ms, p99 {:.2} ms, {} ok, {} errors",
        phase.per_second(),
        phase.elapsed.as_secs_f64(),
        percentile(0.50),
        percentile(0.99),
        phase.ok,
        phase.errors
    );
}
