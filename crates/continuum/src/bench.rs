//! `continuum bench`: the three figures on a scratch store — Synthea ingest rate,
//! read-by-id throughput and latency at N concurrent clients, durable write throughput.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{HistoryQuery, Records};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
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

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Search latency and throughput over scaled Synthea stores (issue 3's figures).
    Search(crate::search_bench::SearchBenchArgs),
    /// Sustained HL7 v2 ingest over MLLP with ACK-after-commit (issue 6's figure).
    Mllp(crate::mllp_bench::MllpBenchArgs),
    /// A sustained mixed read/search/write load against a running server (issue 8's figure).
    Load(crate::load_bench::LoadBenchArgs),
    /// Ingest and search on SQLite, PostgreSQL and PostgreSQL with a standby, side by side
    /// (issue 4's figures).
    Backends(crate::backend_bench::BackendBenchArgs),
    /// Reads and searches with access control and audit on and off, side by side (issue 5's
    /// figure).
    Auth(crate::auth_bench::AuthBenchArgs),
    /// The clinician web app's page times with access control and audit on (issue 7's
    /// figure).
    App(crate::app_bench::AppBenchArgs),
}

pub(crate) fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        Some(BenchCommand::Search(search)) => return crate::search_bench::run(search),
        Some(BenchCommand::Mllp(mllp)) => return crate::mllp_bench::run(mllp),
        Some(BenchCommand::Load(load)) => return crate::load_bench::run(load),
        Some(BenchCommand::Backends(backends)) => return crate::backend_bench::run(backends),
        Some(BenchCommand::Auth(auth)) => return crate::auth_bench::run(auth),
        Some(BenchCommand::App(app)) => return crate::app_bench::run(app),
        None => {}
    }
    let scratch = tempfile::tempdir()?;
    let data = args.data.clone().unwrap_or_else(|| scratch.path().join("data"));
    let records = crate::open_records(&data)?;
    let synthea = if args.synthea.is_empty() { default_synthea()? } else { args.synthea.clone() };

    let mut ingested = 0u64;
    let mut ingest_time = Duration::ZERO;
    for _ in 0..args.rounds {
        let report = crate::import::import_paths(&records, &synthea, false)?;
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

pub(crate) fn default_synthea() -> Result<Vec<PathBuf>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/synthea");
    if !root.is_dir() {
        bail!("no Synthea data at {}; pass --synthea DIR", root.display());
    }
    Ok(vec![root.join("smart-2019"), root.join("synthea-v3")])
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

async fn http_phases(records: Records, targets: Vec<String>, args: &BenchArgs) -> Result<()> {
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
    reads.print("read-by-id", args.clients);

    let patient = create_patient(address).await?;
    let writes = run_clients(address, args.clients, duration, move |worker, i| {
        if i % 2 == 0 {
            request(Method::POST, "/fhir/Observation", Some(observation(&patient, worker, i)))
        } else {
            request(Method::PUT, &format!("/fhir/Patient/bench-{worker}"), Some(bench_patient(worker, i)))
        }
    })
    .await?;
    writes.print("write", args.clients);

    let _ = stop.send(());
    server.await.context("server task")??;
    Ok(())
}

pub(crate) fn request(method: Method, path: &str, body: Option<Value>) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path).header("host", "bench");
    let body = match body {
        Some(value) => {
            builder = builder.header("content-type", "application/fhir+json");
            Bytes::from(value.to_string())
        }
        None => Bytes::new(),
    };
    builder.body(Full::new(body)).unwrap_or_default()
}

/// One HTTP/1.1 keep-alive connection, as a load-generating client holds it.
pub(crate) async fn connect(address: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one request and reads the whole answer; the status and body.
pub(crate) async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(u16, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
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

/// Throughput and latency of one phase.
struct PhaseResult {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl PhaseResult {
    fn percentile(&self, p: f64) -> f64 {
        crate::bench::percentile_ms(&self.latencies_us, p).unwrap_or(0.0)
    }

    fn print(&self, name: &str, clients: usize) {
        println!(
            "{name:<11} {:.0} requests/s over {:.1} s, {clients} clients, p50 {:.2} ms, p99 {:.2} ms, {} ok, {} errors",
            self.ok as f64 / self.elapsed.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.ok,
            self.errors
        );
    }
}

/// Runs `clients` connections, each sending `make(worker, i)` one after another, for `duration`.
async fn run_clients<F>(address: SocketAddr, clients: usize, duration: Duration, make: F) -> Result<PhaseResult>
where
    F: Fn(usize, usize) -> Request<Full<Bytes>> + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let make = make.clone();
        let mut sender = connect(address).await?;
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
            let mut i = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match exchange(&mut sender, make(worker, i)).await {
                    Ok((status, _)) if (200..300).contains(&status) => ok += 1,
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        match connect(address).await {
                            Ok(fresh) => sender = fresh,
                            Err(_) => break,
                        }
                    }
                }
                latencies.push(sent.elapsed().as_micros() as u64);
                i += 1;
            }
            (ok, errors, latencies)
        }));
    }
    let mut result = PhaseResult { ok: 0, errors: 0, elapsed: Duration::ZERO, latencies_us: Vec::new() };
    for task in tasks {
        let (ok, errors, latencies) = task.await?;
        result.ok += ok;
        result.errors += errors;
        result.latencies_us.extend(latencies);
    }
    result.elapsed = started.elapsed();
    result.latencies_us.sort_unstable();
    Ok(result)
}

/// The `p` quantile (0 to 1) of latencies sorted in microseconds, in milliseconds (`None` when
/// there are none).
pub(crate) fn percentile_ms(sorted_us: &[u64], p: f64) -> Option<f64> {
    let last = sorted_us.len().checked_sub(1)?;
    let index = ((last as f64) * p).round() as usize;
    Some(sorted_us[index.min(last)] as f64 / 1000.0)
}

/// The server's default limits, but no per-client rate limit: every simulated client shares
/// one address, and the bench measures the server, not the limiter.
pub(crate) fn bench_limits() -> server::Limits {
    server::Limits { rate_limit: None, ..server::Limits::default() }
}
