//! `continuum-bench app`: the clinician web app's page times (issue 7's figure: every page in
//! under 100 ms of server time on the 1,000-patient data set). A scratch store of scaled
//! Synthea patients is served with access control and audit on, as `continuum serve` does;
//! a physician of every organization signs in, and each chart page of a sample of patients
//! is fetched in turn by one keep-alive client, so each time is one page's server time plus
//! a loopback round trip. The table gives p50, p95 and the slowest per page.

use crate::access_control::stored;
use crate::client::{connect, exchange, percentile_ms};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::{Method, Request};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::synthea::Scaler;

#[derive(Debug, Args)]
pub(crate) struct AppBenchArgs {
    /// Scaled Synthea patients in the store.
    #[arg(long, default_value_t = 1000)]
    patients: usize,
    /// Patients whose charts are opened (spread over the store).
    #[arg(long, default_value_t = 50)]
    sample: usize,
    /// Synthea folders to scale from (default: the bundled sample).
    #[arg(long)]
    synthea: Vec<PathBuf>,
    /// Seed of the scaling.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the scaled store under this folder (as `DIR/app-N-seedS`) and reuse it next time.
    #[arg(long)]
    data: Option<PathBuf>,
}

/// The goal per page, in milliseconds of server time.
const GOAL_MS: f64 = 100.0;

/// The pages timed for each sampled patient: (name, path after `/app/patients/{id}`).
const PAGES: &[(&str, &str)] = &[
    ("summary", ""),
    ("timeline", "/timeline"),
    ("timeline, results only", "/timeline?type=result"),
    ("trends: blood pressure", "/trends?measure=bp"),
    ("trends: HbA1c", "/trends?measure=hba1c"),
    ("new note (SOAP)", "/notes/new?template=soap"),
    ("vitals form", "/vitals"),
    ("problem/allergy/med lists", "/lists"),
];

pub(crate) fn run(args: AppBenchArgs) -> Result<()> {
    let roots = test_support::synthea::sample_or(&args.synthea)?;
    let scaler = Scaler::new(&roots, args.seed)?;
    let scratch = tempfile::tempdir()?;
    let root = args.data.clone().unwrap_or_else(|| scratch.path().to_path_buf());
    let dir = root.join(format!("app-{}-seed{}", args.patients, args.seed));
    // Built (or found complete) as the search benchmark builds its stores, then reopened with
    // the audit trail that the secured server writes to.
    let (records, resources) = crate::searches::build_store(&scaler, args.patients, &dir)?;
    drop(records);
    println!("{} patients, {resources} resources", args.patients);
    let store = continuum::open_store(&dir, &continuum::DatabaseArg::default())?;
    let key = continuum::audit::AuditKeyArg::default().load_or_create(&dir)?;
    let records = continuum::audit::keyed(store.records, &*store.audit, key, "continuum-bench")?;
    let trail = store.audit;

    let organizations: Vec<String> = stored(&records, "Organization", 100_000)?.into_iter().map(|v| v.id).collect();
    // (id, family name) of every patient: the name is searched for on the patient search page.
    let patients: Vec<(String, String)> = stored(&records, "Patient", 100_000)?
        .into_iter()
        .map(|v| {
            let family = v
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                .and_then(|p| p.pointer("/name/0/family").and_then(|f| f.as_str()).map(str::to_string))
                .unwrap_or_default();
            (v.id, family)
        })
        .collect();
    if patients.is_empty() {
        bail!("the scaled store has no patients");
    }
    let step = (patients.len() / args.sample.max(1)).max(1);
    let sample: Vec<(String, String)> = patients.iter().step_by(step).take(args.sample).cloned().collect();

    // A physician of every organization: every chart opens, each decision still made.
    // (The audit trail of the timed views grows a kept store a little each run; harmless.)
    let authority = crate::access_control::bench_physician(&scratch.path().join("auth"), organizations)?;
    let token = match authority.web_sign_in("bench-physician", crate::access_control::BENCH_PASSWORD)? {
        auth::WebSignIn::Session { token, .. } => token,
        _ => bail!("the bench physician could not sign in to the web app"),
    };
    let authority = Arc::new(authority);

    let runtime = tokio::runtime::Runtime::new()?;
    runtime
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let address = listener.local_addr()?;
            let policy = Arc::new(policy::Policy::new(Arc::clone(&authority), records.clone()));
            let (auditor, _task) = server::audit::Auditor::start(records.clone(), trail);
            let state =
                server::AppState::new(records.clone(), format!("http://{address}/fhir"), crate::client::bench_limits())
                    .with_policy(Arc::clone(&policy))
                    .with_auditor(Arc::clone(&auditor));
            let config = web::WebConfig { secure_cookies: false, sign_in_attempts_per_minute: 0 };
            let app = web::WebApp::new(state.door().clone(), config).context("the web app needs a policy")?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(server::serve_with(listener, state, web::router(app), async {
                let _ = stopped.await;
            }));
            let mut client = connect(address).await?;
            let cookie = format!("continuum_app={token}");
            let get = |path: String| {
                Request::builder()
                    .method(Method::GET)
                    .uri(path)
                    .header("host", "bench")
                    .header("cookie", cookie.clone())
                    .body(Full::new(Bytes::new()))
                    .unwrap_or_default()
            };
            // The first page computes the physician's reach (then cached): not timed.
            let (status, body) = exchange(&mut client, get(format!("/app/patients/{}", sample[0].0))).await?;
            if status != 200 {
                bail!("the first chart answered {status}: {}", String::from_utf8_lossy(&body));
            }
            let mut rows: Vec<(String, Vec<u64>)> = PAGES.iter().map(|(n, _)| (n.to_string(), Vec::new())).collect();
            rows.push(("timeline, next page".into(), Vec::new()));
            rows.push(("patient search by name".into(), Vec::new()));
            let mut bytes = 0usize;
            for (patient, family) in &sample {
                for (i, (name, suffix)) in PAGES.iter().enumerate() {
                    let sent = Instant::now();
                    let (status, body) = exchange(&mut client, get(format!("/app/patients/{patient}{suffix}"))).await?;
                    rows[i].1.push(sent.elapsed().as_micros() as u64);
                    if status != 200 {
                        bail!("{name} of patient {patient} answered {status}");
                    }
                    bytes += body.len();
                    if *suffix == "/timeline"
                        && let Some(next) = next_link(&body)
                    {
                        let sent = Instant::now();
                        let (status, _) = exchange(&mut client, get(next)).await?;
                        rows[PAGES.len()].1.push(sent.elapsed().as_micros() as u64);
                        if status != 200 {
                            bail!("the timeline's next page of patient {patient} answered {status}");
                        }
                    }
                }
                let sent = Instant::now();
                let (status, _) = exchange(&mut client, get(format!("/app/patients?name={}", encode(family)))).await?;
                rows[PAGES.len() + 1].1.push(sent.elapsed().as_micros() as u64);
                if status != 200 {
                    bail!("the patient search answered {status}");
                }
            }
            println!(
                "\n{} charts of {} patients, one client, access control and audit on; load average: {}",
                sample.len(),
                args.patients,
                std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
            );
            println!("{:<28} {:>6} {:>9} {:>9} {:>9}   goal", "page", "pages", "p50 ms", "p95 ms", "max ms");
            let mut worst: f64 = 0.0;
            for (name, mut times) in rows {
                times.sort_unstable();
                let max = times.last().map_or(f64::NAN, |t| *t as f64 / 1000.0);
                worst = worst.max(max);
                println!(
                    "{name:<28} {:>6} {:>9.2} {:>9.2} {:>9.2}   {}",
                    times.len(),
                    percentile_ms(&times, 0.5).unwrap_or(f64::NAN),
                    percentile_ms(&times, 0.95).unwrap_or(f64::NAN),
                    max,
                    if max < GOAL_MS { "< 100 ms: met" } else { "< 100 ms: NOT met" }
                );
            }
            println!(
                "slowest page {worst:.1} ms (goal < {GOAL_MS:.0} ms); {:.0} KiB of HTML per chart",
                bytes as f64 / 1024.0 / sample.len() as f64
            );
            let _ = stop.send(());
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<(), anyhow::Error>(())
        })
        .context("timing the web app")?;
    Ok(())
}

/// The timeline's "Older entries" link.
fn next_link(body: &Bytes) -> Option<String> {
    let html = std::str::from_utf8(body).ok()?;
    if !html.contains("rel=\"next\"") {
        return None;
    }
    let before = html.split("rel=\"next\"").next()?;
    let href = before.rsplit("href=\"").next()?;
    Some(href.split('"').next()?.replace("&amp;", "&"))
}

fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}
