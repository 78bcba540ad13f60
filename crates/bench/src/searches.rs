//! `continuum-bench search`: the search figures of issue 3. For each population size it builds
//! (or reuses) a store of scaled Synthea patients, serves it on a loopback port, picks query
//! values from the stored data, checks every query once, then measures each query and a mixed
//! run at N keep-alive clients and compares the sizes against the goals.

use crate::client::{connect, exchange, request};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::Method;
use hyper::client::conn::http1::SendRequest;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Records;
use test_support::synthea::{self, Scaler};

#[derive(Debug, Args)]
pub(crate) struct SearchBenchArgs {
    /// Population sizes to measure, in patients.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    pub patients: Vec<usize>,
    /// Concurrent HTTP clients (keep-alive connections).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds each query (and the mixed run) is measured.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Folder keeping the stores (`search-N-seedS` in it), reused when complete; default: a
    /// temporary folder, removed afterwards.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Template folders (default: the repository's testdata/synthea).
    #[arg(long)]
    pub synthea: Vec<PathBuf>,
    /// Seed of the scaled population.
    #[arg(long, default_value_t = synthea::DEFAULT_SEED)]
    pub seed: u64,
}

/// Goals of issue 3.
const GOAL_P99_MS: f64 = 20.0;
const GOAL_SEARCHES_PER_S: f64 = 6_000.0;
const GOAL_EVERYTHING_P50_MS: f64 = 20.0;
const GOAL_RATIO: f64 = 1.5;
/// Title of the `$everything` row, which is measured but not part of the mixed run.
const EVERYTHING: &str = "Patient/ID/$everything";

pub(crate) fn run(args: SearchBenchArgs) -> Result<()> {
    let roots = test_support::synthea::sample_or(&args.synthea)?;
    let scaler = Scaler::new(&roots, args.seed)?;
    let scratch = tempfile::tempdir()?;
    let root = args.data.clone().unwrap_or_else(|| scratch.path().to_path_buf());
    let runtime = tokio::runtime::Runtime::new()?;
    let mut sizes = Vec::new();
    for &patients in &args.patients {
        let dir = root.join(format!("search-{patients}-seed{}", args.seed));
        let (records, resources) = build_store(&scaler, patients, &dir)?;
        let size = runtime.block_on(measure(records, patients, resources, &args))?;
        sizes.push(size);
        if args.data.is_none() {
            std::fs::remove_dir_all(&dir).ok();
        }
    }
    print_goals(&sizes);
    Ok(())
}

/// Opens the complete store of `patients` in `dir`, or builds it; the store and its resource count.
pub(crate) fn build_store(scaler: &Scaler, patients: usize, dir: &Path) -> Result<(Records, u64)> {
    let marker = dir.join("bench-complete");
    if let Ok(text) = std::fs::read_to_string(&marker) {
        let resources = text.trim().parse().context("bad bench-complete marker")?;
        println!("reusing the store of {patients} patients in {} ({resources} resources)", dir.display());
        return Ok((continuum::open_records(dir)?, resources));
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear the partial store {}", dir.display()))?;
    }
    let records = continuum::open_records(dir)?;
    let started = Instant::now();
    let stored = ingest(&records, scaler, patients)?;
    std::fs::write(&marker, stored.to_string())?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "built a store of {patients} patients: {stored} resources in {elapsed:.1} s ({:.0} resources/s) in {}",
        stored as f64 / elapsed,
        dir.display()
    );
    Ok((records, stored))
}

/// Loads the shared resources and `patients` scaled patients into `records`, four loaders at
/// a time; the number of resources stored.
pub(crate) fn ingest(records: &Records, scaler: &Scaler, patients: usize) -> Result<u64> {
    let shared = continuum::import::import_paths(records, scaler.shared(), false)?;
    if let Some((path, error)) = shared.failures.first() {
        bail!("loading {} failed: {error}", path.display());
    }
    let stored = AtomicU64::new(shared.resources);
    let next = AtomicUsize::new(0);
    let failure = Mutex::new(None);
    let progress = ProgressBar::new(patients as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} patients {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // More loaders than cores: each validates on its own thread while the writer commits.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= patients {
                        break;
                    }
                    match scaler
                        .bundle(k)
                        .map_err(anyhow::Error::from)
                        .and_then(|bundle| continuum::import::import_parsed(records, bundle))
                    {
                        Ok(n) => {
                            stored.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(error) => {
                            *failure.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(error.context(format!("patient {k}")));
                            next.store(patients, Ordering::Relaxed);
                        }
                    }
                    progress.inc(1);
                    progress.set_message(format!("{} resources", stored.load(Ordering::Relaxed)));
                }
            });
        }
    });
    progress.finish_and_clear();
    if let Some(error) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(error);
    }
    records.backend().refresh_statistics()?;
    Ok(stored.into_inner())
}

/// The figures of one population size.
pub(crate) struct SizeResult {
    patients: usize,
    pub rows: Vec<Measured>,
    pub mixed: Measured,
}

/// One measured query (or the mixed run).
pub(crate) struct Measured {
    pub name: String,
    ok: u64,
    pub errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Measured {
    pub fn percentile(&self, p: f64) -> f64 {
        crate::client::percentile_ms(&self.latencies_us, p).unwrap_or(f64::NAN)
    }

    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, note: &str) {
        println!(
            "{:<62} {:>7.2} {:>7.2} {:>8.0} {:>8} {:>6}  {note}",
            self.name,
            self.percentile(0.50),
            self.percentile(0.99),
            self.per_second(),
            self.ok,
            self.errors
        );
        if let Some(error) = &self.first_error {
            println!("    first error: {error}");
        }
    }
}

/// A query of the issue and the concrete requests (paths) it is measured with.
struct Query {
    name: &'static str,
    paths: Vec<String>,
}

pub(crate) async fn measure(
    records: Records,
    patients: usize,
    resources: u64,
    args: &SearchBenchArgs,
) -> Result<SizeResult> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let state = server::AppState::new(records, format!("http://{address}/fhir"), crate::client::bench_limits());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, state, async {
        let _ = stopped.await;
    }));

    let mut setup = connect(address).await?;
    let queries = pick_queries(&mut setup).await?;
    println!();
    println!("== {patients} patients, {resources} resources: what each query returns (every request once) ==");
    for query in &queries {
        check(&mut setup, query).await?;
    }
    drop(setup);

    println!();
    println!(
        "== {patients} patients: {} clients, {} s per query; load average before: {} ==",
        args.clients,
        args.seconds,
        load_average()
    );
    println!("{:<62} {:>7} {:>7} {:>8} {:>8} {:>6}", "query", "p50 ms", "p99 ms", "req/s", "ok", "errors");
    let duration = Duration::from_secs(args.seconds);
    let mut rows = Vec::new();
    for query in &queries {
        let measured = load(address, args.clients, duration, query.name, Arc::new(query.paths.clone())).await?;
        let goal = if query.name == EVERYTHING {
            format!("goal p50 < {GOAL_EVERYTHING_P50_MS} ms")
        } else {
            format!("goal p99 < {GOAL_P99_MS} ms")
        };
        measured.print(&goal);
        rows.push(measured);
        if query.name == EVERYTHING {
            // 16 clients on 2 cores queue behind each other; a lone request's latency too.
            let name = format!("{EVERYTHING} (1 client)");
            let alone = load(address, 1, duration, &name, Arc::new(query.paths.clone())).await?;
            alone.print(&format!("goal p50 < {GOAL_EVERYTHING_P50_MS} ms"));
            rows.push(alone);
        }
    }
    let searches: Vec<&Query> = queries.iter().filter(|q| q.name != EVERYTHING).collect();
    let longest = searches.iter().map(|q| q.paths.len()).max().unwrap_or(0);
    let mut mix = Vec::new();
    for i in 0..longest {
        mix.extend(searches.iter().map(|q| q.paths[i % q.paths.len()].clone()));
    }
    let name = format!("mixed run ({} searches in turn)", searches.len());
    let mixed = load(address, args.clients, duration, &name, Arc::new(mix)).await?;
    mixed.print(&format!("goal >= {GOAL_SEARCHES_PER_S:.0} searches/s, p99 < {GOAL_P99_MS} ms"));
    println!("load average after: {}", load_average());

    let _ = stop.send(());
    server.await.context("server task")??;
    Ok(SizeResult { patients, rows, mixed })
}

/// `/proc/loadavg`'s three averages (the machine is shared; the figures depend on it).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn get_json(sender: &mut SendRequest<Full<Bytes>>, path: &str) -> Result<Value> {
    let (status, body) = exchange(sender, request(Method::GET, path, None)).await?;
    if status != 200 {
        bail!("GET {path} answered {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
    }
    Ok(serde_json::from_slice(&body)?)
}

/// The matches of a search, following `next` links; and `Bundle.total` of the first page.
async fn all_matches(sender: &mut SendRequest<Full<Bytes>>, first: &str) -> Result<(Vec<Value>, Option<u64>)> {
    let mut path = first.to_string();
    let mut matches = Vec::new();
    let mut total = None;
    loop {
        let bundle = get_json(sender, &path).await?;
        total = total.or_else(|| bundle.get("total").and_then(Value::as_u64));
        for entry in bundle.get("entry").and_then(Value::as_array).into_iter().flatten() {
            if entry.pointer("/search/mode").and_then(Value::as_str) != Some("include")
                && let Some(resource) = entry.get("resource")
            {
                matches.push(resource.clone());
            }
        }
        let next = bundle.get("link").and_then(Value::as_array).into_iter().flatten().find_map(|link| {
            (link.get("relation").and_then(Value::as_str) == Some("next"))
                .then(|| link.get("url").and_then(Value::as_str))
                .flatten()
        });
        match next.and_then(|url| url.find("/fhir/").map(|at| url[at..].to_string())) {
            Some(next) => path = next,
            None => return Ok((matches, total)),
        }
    }
}

/// A patient as the queries need it.
struct Patient {
    id: String,
    family: String,
    birth_date: String,
    gender: String,
}

fn text(value: &Value, pointer: &str) -> String {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The issue's queries, with parameter values taken from the stored data.
async fn pick_queries(sender: &mut SendRequest<Full<Bytes>>) -> Result<Vec<Query>> {
    let (stored, _) = all_matches(sender, "/fhir/Patient?_count=1000").await?;
    let patients: Vec<Patient> = stored
        .iter()
        .map(|p| Patient {
            id: text(p, "/id"),
            family: text(p, "/name/0/family"),
            birth_date: text(p, "/birthDate"),
            gender: text(p, "/gender"),
        })
        .filter(|p| !p.id.is_empty())
        .collect();
    if patients.is_empty() {
        bail!("the store has no patients");
    }

    // Observations of a sample of patients: per patient, its most frequent codes with a median
    // date (so `date=ge` keeps about half of them); across the sample, codes by frequency.
    let step = (patients.len() / 40).max(1);
    let mut code_frequency: HashMap<String, usize> = HashMap::new();
    let mut code_date = Vec::new();
    for patient in patients.iter().step_by(step) {
        let path = format!("/fhir/Observation?patient={}&_count=1000", encode(&patient.id));
        let (observations, _) = all_matches(sender, &path).await?;
        let mut dates: HashMap<String, Vec<String>> = HashMap::new();
        for observation in &observations {
            let code =
                format!("{}|{}", text(observation, "/code/coding/0/system"), text(observation, "/code/coding/0/code"));
            *code_frequency.entry(code.clone()).or_default() += 1;
            let date = text(observation, "/effectiveDateTime");
            if date.len() >= 10 {
                dates.entry(code).or_default().push(date[..10].to_string());
            }
        }
        let mut codes: Vec<(String, Vec<String>)> = dates.into_iter().collect();
        codes.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        for (code, mut dates) in codes.into_iter().take(3) {
            dates.sort();
            code_date.push((patient.id.clone(), code, dates[dates.len() / 2].clone()));
        }
    }
    let mut codes: Vec<(String, usize)> = code_frequency.into_iter().collect();
    codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let common_codes: Vec<&String> = codes.iter().step_by(2).take(10).map(|(c, _)| c).collect();

    let per_patient = |make: &dyn Fn(&Patient) -> String| -> Vec<String> { patients.iter().map(make).collect() };
    let heavy: Vec<&Patient> = patients
        .iter()
        .filter(|p| {
            let digits = p.family.trim_start_matches(|c: char| !c.is_ascii_digit());
            digits.parse::<usize>().is_ok_and(synthea::is_heavy)
        })
        .collect();
    let everything = if heavy.is_empty() {
        vec![format!("/fhir/Patient/{}/$everything", encode(&patients[0].id))]
    } else {
        heavy.iter().map(|p| format!("/fhir/Patient/{}/$everything", encode(&p.id))).collect()
    };
    Ok(vec![
        Query { name: "Patient?name=", paths: per_patient(&|p| format!("/fhir/Patient?name={}", encode(&p.family))) },
        Query {
            name: "Patient?birthdate=ge…&gender=",
            paths: per_patient(&|p| {
                format!("/fhir/Patient?birthdate=ge{}&gender={}", encode(&p.birth_date), encode(&p.gender))
            }),
        },
        Query {
            name: "Observation?patient=&code=&date=ge…",
            paths: code_date
                .iter()
                .map(|(id, code, date)| {
                    format!("/fhir/Observation?patient={}&code={}&date=ge{date}", encode(id), encode(code))
                })
                .collect(),
        },
        Query {
            name: "Observation?patient=&category=laboratory&_sort=-date&_count=20",
            paths: per_patient(&|p| {
                format!("/fhir/Observation?patient={}&category=laboratory&_sort=-date&_count=20", encode(&p.id))
            }),
        },
        Query {
            name: "Condition?patient=&clinical-status=active",
            paths: per_patient(&|p| format!("/fhir/Condition?patient={}&clinical-status=active", encode(&p.id))),
        },
        Query {
            name: "Encounter?patient=&_revinclude=Provenance:target",
            paths: per_patient(&|p| format!("/fhir/Encounter?patient={}&_revinclude=Provenance:target", encode(&p.id))),
        },
        Query {
            name: "Observation?code=&_summary=count (all patients)",
            paths: common_codes
                .iter()
                .map(|c| format!("/fhir/Observation?code={}&_summary=count", encode(c)))
                .collect(),
        },
        Query { name: EVERYTHING, paths: everything },
    ])
}

/// Sends every request of `query` once, checks each answer is a searchset Bundle and prints
/// how much the query returns.
async fn check(sender: &mut SendRequest<Full<Bytes>>, query: &Query) -> Result<()> {
    let (mut matched, mut included, mut totals, mut empty, mut bytes) = (0usize, 0usize, 0u64, 0usize, 0usize);
    for path in &query.paths {
        let (status, body) = exchange(sender, request(Method::GET, path, None)).await?;
        if status != 200 {
            bail!("GET {path} answered {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
        }
        bytes += body.len();
        let bundle: Value = serde_json::from_slice(&body)?;
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle")
            || bundle.get("type").and_then(Value::as_str) != Some("searchset")
        {
            bail!("GET {path} did not answer a searchset Bundle");
        }
        let entries = bundle.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let matches = entries.iter().filter(|e| e.pointer("/search/mode").and_then(Value::as_str) != Some("include"));
        let n = matches.count();
        matched += n;
        included += entries.len() - n;
        let total = bundle.get("total").and_then(Value::as_u64).unwrap_or(0);
        totals += total;
        if n == 0 && total == 0 {
            empty += 1;
        }
    }
    let requests = query.paths.len().max(1) as f64;
    println!(
        "{:<62} {:>4} requests; per request {:>7.1} matches on the page, {:>6.1} included, total {:>8.1}, {:>7.1} kB; {} empty",
        query.name,
        query.paths.len(),
        matched as f64 / requests,
        included as f64 / requests,
        totals as f64 / requests,
        bytes as f64 / requests / 1000.0,
        empty
    );
    Ok(())
}

/// Whether an answer is what a search must answer: 200 and a Bundle.
fn is_bundle(status: u16, body: &[u8]) -> bool {
    const MARK: &[u8] = br#""resourceType":"Bundle""#;
    status == 200 && body.len() >= MARK.len() && body[..body.len().min(64)].windows(MARK.len()).any(|w| w == MARK)
}

/// Runs `clients` connections for `duration`, each sending `paths` (spread over the list) one
/// after another; every answer is checked.
async fn load(
    address: SocketAddr,
    clients: usize,
    duration: Duration,
    name: &str,
    paths: Arc<Vec<String>>,
) -> Result<Measured> {
    if paths.is_empty() {
        bail!("no requests for {name}");
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let paths = paths.clone();
        let mut sender = connect(address).await?;
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut first_error, mut latencies) = (0u64, 0u64, None, Vec::new());
            let mut i = 0usize;
            while Instant::now() < deadline {
                let path = &paths[(worker * 7919 + i * 104_729) % paths.len()];
                let sent = Instant::now();
                match exchange(&mut sender, request(Method::GET, path, None)).await {
                    Ok((status, body)) if is_bundle(status, &body) => ok += 1,
                    Ok((status, body)) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!("{path}: {status} {}", String::from_utf8_lossy(&body[..body.len().min(200)]))
                        });
                    }
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{path}: {error}"));
                        match connect(address).await {
                            Ok(fresh) => sender = fresh,
                            Err(_) => break,
                        }
                    }
                }
                latencies.push(sent.elapsed().as_micros() as u64);
                i += 1;
            }
            (ok, errors, first_error, latencies)
        }));
    }
    let mut measured = Measured {
        name: name.to_string(),
        ok: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        let (ok, errors, first_error, latencies) = task.await?;
        measured.ok += ok;
        measured.errors += errors;
        measured.first_error = measured.first_error.or(first_error);
        measured.latencies_us.extend(latencies);
    }
    measured.elapsed = started.elapsed();
    measured.latencies_us.sort_unstable();
    Ok(measured)
}

/// The goals beside the figures, and the latency ratio of the largest size to the smallest.
fn print_goals(sizes: &[SizeResult]) {
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!();
    println!("== goals ==");
    for size in sizes {
        let searches: Vec<&Measured> = size.rows.iter().filter(|m| !m.name.starts_with(EVERYTHING)).collect();
        let worst = searches.iter().map(|m| m.percentile(0.99)).fold(0.0, f64::max);
        let errors: u64 = size.rows.iter().map(|m| m.errors).sum::<u64>() + size.mixed.errors;
        println!(
            "{:>5} patients: every search p99 < {GOAL_P99_MS} ms: worst {worst:.2} ms, {}; mixed {:.0} searches/s (goal {GOAL_SEARCHES_PER_S:.0}), {}; {errors} errors",
            size.patients,
            verdict(worst < GOAL_P99_MS),
            size.mixed.per_second(),
            verdict(size.mixed.per_second() >= GOAL_SEARCHES_PER_S),
        );
        for everything in size.rows.iter().filter(|m| m.name.starts_with(EVERYTHING)) {
            let p50 = everything.percentile(0.5);
            println!(
                "{:>5} patients: {} p50 {p50:.2} ms (goal < {GOAL_EVERYTHING_P50_MS} ms), {}",
                size.patients,
                everything.name,
                verdict(p50 < GOAL_EVERYTHING_P50_MS)
            );
        }
    }
    let (Some(small), Some(large)) = (sizes.first(), sizes.last()) else { return };
    if sizes.len() < 2 {
        return;
    }
    println!();
    println!("latency at {} vs {} patients (goal <= {GOAL_RATIO}x):", large.patients, small.patients);
    println!("{:<62} {:>9} {:>9}", "query", "p50 ratio", "p99 ratio");
    let pairs = small.rows.iter().zip(&large.rows).chain(std::iter::once((&small.mixed, &large.mixed)));
    for (s, l) in pairs {
        let (r50, r99) = (l.percentile(0.5) / s.percentile(0.5), l.percentile(0.99) / s.percentile(0.99));
        println!("{:<62} {r50:>8.2}x {r99:>8.2}x  {}", s.name, verdict(r50 <= GOAL_RATIO && r99 <= GOAL_RATIO));
    }
}
