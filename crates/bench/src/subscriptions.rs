//! `continuum-bench subscriptions`: FHIR Subscriptions' figures (issue 20). A scratch store is
//! opened with the same wiring as `continuum serve` (`continuum::open_store`: the matching
//! hook on every write; the registry loaded; the sender thread running over an open door), and
//! written through the records' one write path.
//!
//! - **Latency**: `--subscriptions` (100) active R4 rest-hook subscriptions, each on its own
//!   LOINC code, delivering the resource to an HTTP receiver in this process; Observations
//!   written at `--rate` (100/s) for `--seconds`, each matching one subscription. The latency
//!   of an event is from the moment its write returned (committed) to the moment the
//!   receiver read the notification; p50 and p99 are printed.
//! - **Ingest cost of matching**: `--ingest` Observations written by `--writers` threads with
//!   no subscription, then with `--ingest-subscriptions` (1,000) active ones on Observation
//!   that the writes do not match, in turns over `--rounds`; the medians and the slowdown are
//!   printed.

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub(crate) struct SubscriptionBenchArgs {
    /// Active subscriptions during the latency run.
    #[arg(long, default_value_t = 100)]
    subscriptions: usize,
    /// Matching writes per second during the latency run.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Seconds the latency run lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Observations written in each ingest run.
    #[arg(long, default_value_t = 5000)]
    ingest: usize,
    /// Writer threads of the ingest runs.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Active subscriptions during the second ingest run.
    #[arg(long, default_value_t = 1000)]
    ingest_subscriptions: usize,
    /// Ingest rounds (each measures both stores in turn; the medians are compared).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

const LOINC: &str = "http://loinc.org";

/// When each resource id's notification arrived.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

fn receive(stream: TcpStream, arrivals: Arrivals) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let at = Instant::now();
        if let Ok(resource) = serde_json::from_slice::<Value>(&body)
            && let Some(id) = resource.get("id").and_then(Value::as_str)
        {
            arrivals.lock().unwrap_or_else(|e| e.into_inner()).entry(id.to_string()).or_insert(at);
        }
        if writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

/// An HTTP receiver on loopback: its URL.
fn receiver(arrivals: Arrivals) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let arrivals = Arc::clone(&arrivals);
            std::thread::spawn(move || receive(stream, arrivals));
        }
    });
    Ok(url)
}

fn observation(code: &str) -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/bench"},
        "valueQuantity": {"value": 5.5, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    })
}

struct Opened {
    records: store::Records,
    sender: ::subscriptions::Sender,
    registry: Arc<::subscriptions::Registry>,
}

fn open(data: &Path) -> Result<Opened> {
    let store = continuum::open_store(data, &continuum::DatabaseArg::default())?;
    let registry = Arc::clone(&store.subscriptions);
    registry.set_allow_list(::subscriptions::AllowList::parse(&["127.0.0.1"]).map_err(anyhow::Error::msg)?);
    registry.load(&store.records, &*store.notifications).context("cannot load the subscriptions")?;
    let door = access::Door::open(store.records.clone());
    let sender = ::subscriptions::Sender::start(
        Arc::clone(&registry),
        Arc::clone(&store.notifications),
        door,
        ::subscriptions::DeliveryConfig::new("http://127.0.0.1/fhir"),
    )?;
    store.records.update("Patient", "bench", json!({"resourceType": "Patient", "id": "bench"}), None)?;
    Ok(Opened { records: store.records, sender, registry })
}

fn subscribe(records: &store::Records, count: usize, code: impl Fn(usize) -> String, endpoint: &str) -> Result<()> {
    for i in 0..count {
        records.create(
            json!({
                "resourceType": "Subscription", "status": "requested", "reason": "bench",
                "criteria": format!("Observation?code={LOINC}|{}", code(i)),
                "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}
            }),
            None,
        )?;
    }
    Ok(())
}

/// Waits until every subscription is active (its status written by the sender), so that
/// activations do not run during a measurement.
fn all_active(registry: &::subscriptions::Registry) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while registry.all().iter().any(|e| e.spec.status != "active") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn latency(args: &SubscriptionBenchArgs) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let opened = open(dir.path())?;
    let arrivals: Arrivals = Arc::default();
    let url = receiver(Arc::clone(&arrivals))?;
    subscribe(&opened.records, args.subscriptions, |i| format!("bench-{i}"), &url)?;
    all_active(&opened.registry);
    let total = (args.rate * args.seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let mut committed: Vec<(String, Instant)> = Vec::with_capacity(total);
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let written = opened.records.create(observation(&format!("bench-{}", i % args.subscriptions.max(1))), None)?;
        let at = Instant::now();
        let id = written.version.map(|v| v.id).unwrap_or_default();
        committed.push((id, at));
    }
    let wait_until = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().unwrap_or_else(|e| e.into_inner()).len() < total && Instant::now() < wait_until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let arrived = arrivals.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut latencies: Vec<Duration> =
        committed.iter().filter_map(|(id, at)| arrived.get(id).map(|got| got.saturating_duration_since(*at))).collect();
    latencies.sort();
    println!(
        "latency (write committed -> rest-hook received), {} active subscriptions, {} events/s for {} s: \
         {} of {} delivered, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        args.subscriptions,
        args.rate,
        args.seconds,
        latencies.len(),
        total,
        percentile(&latencies, 50.0).as_secs_f64() * 1000.0,
        percentile(&latencies, 99.0).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    opened.sender.stop();
    Ok(())
}

/// Observations written per second by `writers` threads, `count` in all.
fn ingest_rate(records: &store::Records, count: usize, writers: usize) -> Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..writers.max(1))
        .map(|_| {
            let (records, next) = (records.clone(), Arc::clone(&next));
            std::thread::spawn(move || -> Result<()> {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    records.create(observation("2345-7"), None)?;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| anyhow::anyhow!("a writer panicked"))??;
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

fn ingest(args: &SubscriptionBenchArgs) -> Result<()> {
    // Both stores open side by side, measured in turns, so that what else runs on the machine
    // weighs on both alike.
    let mut stores = Vec::new();
    for subscriptions in [0, args.ingest_subscriptions] {
        let dir = tempfile::tempdir()?;
        let opened = open(dir.path())?;
        let url = receiver(Arc::default())?;
        subscribe(&opened.records, subscriptions, |i| format!("other-{i}"), &url)?;
        all_active(&opened.registry);
        ingest_rate(&opened.records, args.ingest / 10, args.writers)?;
        stores.push((subscriptions, opened, dir));
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(), Vec::new()];
    for round in 1..=args.rounds.max(1) {
        for (i, (subscriptions, opened, _)) in stores.iter().enumerate() {
            let rate = ingest_rate(&opened.records, args.ingest, args.writers)?;
            println!(
                "round {round}: ingest with {subscriptions} active subscriptions on Observation: {rate:.0} Observations/s ({} writers)",
                args.writers
            );
            rates[i].push(rate);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (without, with) = (median(&mut rates[0]), median(&mut rates[1]));
    println!(
        "ingest, median of {} rounds: {without:.0}/s with no subscription, {with:.0}/s with {}: {:.1}% slower",
        args.rounds.max(1),
        args.ingest_subscriptions,
        (1.0 - with / without) * 100.0
    );
    for (_, opened, _) in stores {
        opened.sender.stop();
    }
    Ok(())
}

pub(crate) fn run(args: SubscriptionBenchArgs) -> Result<()> {
    latency(&args)?;
    ingest(&args)
}
