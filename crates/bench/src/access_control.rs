//! `continuum-bench auth`: what access control and audit cost (issue 5's figure). One scratch
//! store of scaled Synthea patients is served twice in this process: open (no policy, no
//! audit: `serve --no-auth`) and secured (bearer token checked, the physician's reach
//! computed and cached, searches narrowed, each resource checked, every request audited).
//! The same reads by id and searches run against both from N keep-alive clients; the table
//! gives throughput, p50 and p99 side by side and the change.

use crate::client::{Measured, connect, exchange, run_clients};
use anyhow::{Result, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::{Method, Request};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Records;
use test_support::synthea::Scaler;

#[derive(Debug, Args)]
pub(crate) struct AuthBenchArgs {
    /// Scaled Synthea patients in the store.
    #[arg(long, default_value_t = 100)]
    patients: usize,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Synthea folders to scale from (default: the bundled sample).
    #[arg(long)]
    synthea: Vec<PathBuf>,
    /// Seed of the scaling.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The goal: at most this much slower with both on.
const GOAL_SLOWER_PERCENT: f64 = 15.0;

pub(crate) fn run(args: AuthBenchArgs) -> Result<()> {
    let roots = test_support::synthea::sample_or(&args.synthea)?;
    let scaler = Scaler::new(&roots, args.seed)?;
    let scratch = tempfile::tempdir()?;
    let data = scratch.path().join("data");
    let store = continuum::open_store(&data, &continuum::DatabaseArg::default())?;
    // Audited as a server audits: keyed entries, each response sent once its entry is durable.
    let key = continuum::audit::AuditKeyArg::default().load_or_create(&data)?;
    let records = continuum::audit::keyed(store.records, &*store.audit, key, "continuum-bench")?;
    let trail = store.audit;
    let started = Instant::now();
    let resources = crate::searches::ingest(&records, &scaler, args.patients)?;
    println!("{} patients, {resources} resources loaded in {:.1} s", args.patients, started.elapsed().as_secs_f64());

    let ids =
        |t: &str, n: usize| -> Result<Vec<String>> { Ok(stored(&records, t, n)?.into_iter().map(|v| v.id).collect()) };
    let organizations = ids("Organization", 100_000)?;
    let observations = ids("Observation", 500)?;
    let patients = ids("Patient", 500)?;
    if observations.is_empty() || patients.is_empty() {
        bail!("the scaled store has no observations or patients");
    }

    // A physician of every organization the patients were seen at: the reach is everyone, so
    // both servers answer the same; the difference is the cost of deciding and auditing it.
    let authority = bench_physician(&scratch.path().join("auth"), organizations)?;
    let token = authority.mint_token("bench-physician", "user/*.rs", None, 3600)?.access_token;
    let authority = Arc::new(authority);

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let open = start(records.clone(), None).await?;
        let policy = Arc::new(policy::Policy::new(authority, records.clone()));
        let secured = start(records.clone(), Some((policy, trail))).await?;
        let reads: Arc<Vec<String>> = Arc::new(observations.iter().map(|id| format!("/fhir/Observation/{id}")).collect());
        let searches: Arc<Vec<String>> =
            Arc::new(patients.iter().map(|id| format!("/fhir/Observation?patient={id}&_count=20")).collect());
        // Both answer every request alike (checked once, so that a refusal is not measured).
        for path in reads.iter().take(20).chain(searches.iter().take(20)) {
            let mut a = connect(open.0).await?;
            let mut b = connect(secured.0).await?;
            let (sa, body_a) = exchange(&mut a, get(path, None)).await?;
            let (sb, body_b) = exchange(&mut b, get(path, Some(&token))).await?;
            let total = |body: &Bytes| {
                serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v.get("total").cloned())
            };
            if sa != 200 || sb != 200 || total(&body_a) != total(&body_b) {
                bail!("GET {path}: open {sa}, secured {sb}: the two servers must answer alike");
            }
        }
        let duration = Duration::from_secs(args.seconds);
        println!(
            "\n{} clients, {} s each; load average before: {}",
            args.clients,
            args.seconds,
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
        );
        println!(
            "{:<22} {:>10} {:>8} {:>8} | {:>10} {:>8} {:>8} | {:>9}",
            "workload", "open r/s", "p50 ms", "p99 ms", "auth r/s", "p50 ms", "p99 ms", "change"
        );
        for (name, paths) in [("read by id", reads.clone()), ("search by patient", searches.clone())] {
            let off = load(open.0, args.clients, duration, paths.clone(), None).await?;
            let on = load(secured.0, args.clients, duration, paths, Some(token.clone())).await?;
            let p = |measured: &Measured, q| measured.percentile(q).unwrap_or(f64::NAN);
            let change = (on.per_second() / off.per_second() - 1.0) * 100.0;
            println!(
                "{name:<22} {:>10.0} {:>8.2} {:>8.2} | {:>10.0} {:>8.2} {:>8.2} | {:>+8.1}%  (errors {}/{}; goal ≥ -{GOAL_SLOWER_PERCENT:.0}%)",
                off.per_second(),
                p(&off, 0.5),
                p(&off, 0.99),
                on.per_second(),
                p(&on, 0.5),
                p(&on, 0.99),
                change,
                off.errors,
                on.errors
            );
        }
        let _ = open.1.send(());
        let _ = secured.1.send(());
        // Let the auditor append what is queued before the store goes.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}

/// Up to `count` stored resources of `resource_type`, read straight from the backend.
pub(crate) fn stored(records: &Records, resource_type: &str, count: usize) -> Result<Vec<store::ResourceVersion>> {
    let query =
        search::query::SearchQuery::parse(Some(resource_type), &[], false).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let keys = records.backend().search(&query, count)?;
    Ok(records.backend().fetch(&keys)?.into_iter().map(|(_, v)| v).collect())
}

/// The password of the benchmarks' physician (a scratch authorization store only).
pub(crate) const BENCH_PASSWORD: &str = "bench password, only in this scratch store";

/// A scratch authorization store in `dir` with one physician, `bench-physician`, of
/// `organizations`.
pub(crate) fn bench_physician(dir: &std::path::Path, organizations: Vec<String>) -> Result<auth::Authority> {
    std::fs::create_dir_all(dir)?;
    let (authority, _) = store_sqlite::auth::open_authority(dir, auth::AuthConfig::new("http://127.0.0.1/fhir"))?;
    authority.add_user(auth::NewUser {
        username: "bench-physician".into(),
        identity: auth::Identity::Staff {
            roles: vec![auth::Role::Physician],
            organizations,
            practitioner: None,
            practitioner_roles: Vec::new(),
        },
        password: Some(BENCH_PASSWORD.into()),
    })?;
    Ok(authority)
}

type Running = (SocketAddr, tokio::sync::oneshot::Sender<()>);

async fn start(records: Records, policy: Option<(Arc<policy::Policy>, Arc<dyn store::AuditLog>)>) -> Result<Running> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let mut state =
        server::AppState::new(records.clone(), format!("http://{address}/fhir"), crate::client::bench_limits());
    if let Some((policy, trail)) = policy {
        let (auditor, _task) = server::audit::Auditor::start(records, trail);
        state = state.with_policy(policy).with_auditor(auditor);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    Ok((address, stop))
}

fn get(path: &str, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(Method::GET).uri(path).header("host", "bench");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Full::new(Bytes::new())).unwrap_or_default()
}

/// `clients` connections getting `paths` in turn (each from its own place in the list), with
/// `token` when given.
async fn load(
    address: SocketAddr,
    clients: usize,
    duration: Duration,
    paths: Arc<Vec<String>>,
    token: Option<String>,
) -> Result<Measured> {
    run_clients(address, clients, duration, move |worker, i| {
        get(&paths[(worker * 7 + i) % paths.len()], token.as_deref())
    })
    .await
}
