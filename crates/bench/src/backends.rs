//! `continuum-bench backends`: issue 4's figures side by side in one run — Synthea ingest
//! (resources/s) and the search benchmark of `continuum-bench search` on the embedded SQLite
//! store, on PostgreSQL, and on PostgreSQL with one streaming-replication standby answering the
//! reads (a throwaway primary + standby made with `initdb`/`pg_basebackup`), in one table.

use crate::searches::{SearchBenchArgs, SizeResult};
use anyhow::{Context, Result, anyhow};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use store::Records;
use test_support::cluster::Cluster;
use test_support::scratch;
use test_support::synthea::{self, Scaler};

/// Goals of issue 4 (PostgreSQL).
const GOAL_INGEST_PER_S: f64 = 10_000.0;
const GOAL_P99_MS: f64 = 30.0;

#[derive(Debug, Args)]
pub(crate) struct BackendBenchArgs {
    /// Patients of the scaled Synthea population ingested into each backend.
    #[arg(long, default_value_t = 100)]
    patients: usize,
    /// Concurrent HTTP clients of the search runs.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds each query (and the mixed run) is measured.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// A PostgreSQL server's administrative database, on which a scratch database is created
    /// for the run and dropped afterwards.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres", value_name = "URL")]
    postgres: String,
    /// Leave out the PostgreSQL-with-standby row (it needs PostgreSQL's server programs).
    #[arg(long)]
    no_standby: bool,
    /// Template folders (default: the repository's testdata/synthea).
    #[arg(long)]
    synthea: Vec<PathBuf>,
    /// Seed of the scaled population.
    #[arg(long, default_value_t = synthea::DEFAULT_SEED)]
    seed: u64,
}

/// One row of the table.
struct Row {
    backend: &'static str,
    resources: u64,
    ingest_per_s: f64,
    search: SizeResult,
    /// Reads answered by the standby and by the primary during the search runs.
    routing: Option<store_postgres::ReadRouting>,
}

pub(crate) fn run(args: BackendBenchArgs) -> Result<()> {
    let roots = test_support::synthea::sample_or(&args.synthea)?;
    let scaler = Scaler::new(&roots, args.seed)?;
    let search_args = SearchBenchArgs {
        patients: vec![args.patients],
        clients: args.clients,
        seconds: args.seconds,
        data: None,
        synthea: Vec::new(),
        seed: args.seed,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let mut rows = Vec::new();

    let sqlite_dir = tempfile::tempdir()?;
    let records = continuum::open_records(sqlite_dir.path())?;
    rows.push(measure("SQLite (embedded)", records, None, &scaler, &search_args, &runtime)?);

    let database = scratch::Database::create_on(&args.postgres, "continuum_bench", None)
        .context("cannot make a scratch database on the PostgreSQL server given with --postgres")?;
    let records = open_postgres(&database.url, &[])?;
    rows.push(measure("PostgreSQL", records.0, None, &scaler, &search_args, &runtime)?);
    drop(database);

    if !args.no_standby {
        let cluster = Cluster::start(None).map_err(|e| anyhow!("cannot make the primary and standby: {e}"))?;
        let (records, backend) = open_postgres(&cluster.primary(), &[cluster.standby()])?;
        rows.push(measure(
            "PostgreSQL + 1 standby",
            records,
            Some((backend, &cluster)),
            &scaler,
            &search_args,
            &runtime,
        )?);
    }
    print_table(&rows, &args);
    Ok(())
}

/// Records on PostgreSQL at `url` (with `replicas`), and the backend for its routing figures.
fn open_postgres(url: &str, replicas: &[String]) -> Result<(Records, Arc<store_postgres::PostgresBackend>)> {
    let backend = Arc::new(
        store_postgres::PostgresBackend::connect_with_replicas(url, replicas).context("cannot open PostgreSQL")?,
    );
    let records = Records::new(backend.clone()).with_hook(Arc::new(hl7_interface::outbound::AdtNotifier));
    Ok((records, backend))
}

/// Ingests the scaled population into `records`, then runs the search benchmark on it (after
/// the standby, if any, has replayed the ingest).
fn measure(
    backend: &'static str,
    records: Records,
    standby: Option<(Arc<store_postgres::PostgresBackend>, &Cluster)>,
    scaler: &Scaler,
    search_args: &SearchBenchArgs,
    runtime: &tokio::runtime::Runtime,
) -> Result<Row> {
    let patients = search_args.patients[0];
    println!("\n#### {backend}: ingesting {patients} patients");
    let started = Instant::now();
    let resources = crate::searches::ingest(&records, scaler, patients)?;
    let ingest_per_s = resources as f64 / started.elapsed().as_secs_f64();
    println!(
        "{backend}: {resources} resources in {:.1} s ({ingest_per_s:.0} resources/s)",
        started.elapsed().as_secs_f64()
    );
    let before = match &standby {
        Some((routed, cluster)) => {
            cluster.wait_for_replay().map_err(|e| anyhow!(e))?;
            Some(routed.read_routing())
        }
        None => None,
    };
    let search = runtime.block_on(crate::searches::measure(records, patients, resources, search_args))?;
    let routing = match (&standby, before) {
        (Some((routed, _)), Some(before)) => {
            let after = routed.read_routing();
            Some(store_postgres::ReadRouting {
                standby: after.standby - before.standby,
                primary: after.primary - before.primary,
            })
        }
        _ => None,
    };
    Ok(Row { backend, resources, ingest_per_s, search, routing })
}

fn print_table(rows: &[Row], args: &BackendBenchArgs) {
    println!();
    println!(
        "== backends side by side: {} patients, search runs of {} clients x {} s per query ==",
        args.patients, args.clients, args.seconds
    );
    println!(
        "{:<24} {:>10} {:>12} {:>11} {:>10} {:>10} {:>14} {:>22}",
        "backend",
        "resources",
        "ingest res/s",
        "searches/s",
        "p50 ms",
        "p99 ms",
        "worst q p99 ms",
        "reads standby/primary"
    );
    for row in rows {
        let mixed = &row.search.mixed;
        let worst = row
            .search
            .rows
            .iter()
            .filter(|m| !m.name.contains("$everything"))
            .map(|m| m.percentile(0.99))
            .fold(f64::NAN, f64::max);
        let routing = row.routing.map_or("-".to_string(), |r| format!("{}/{}", r.standby, r.primary));
        println!(
            "{:<24} {:>10} {:>12.0} {:>11.0} {:>10.2} {:>10.2} {:>14.2} {:>22}",
            row.backend,
            row.resources,
            row.ingest_per_s,
            mixed.per_second(),
            mixed.percentile(0.50),
            mixed.percentile(0.99),
            worst,
            routing
        );
    }
    println!(
        "goals (PostgreSQL): ingest >= {GOAL_INGEST_PER_S:.0} resources/s, search p99 < {GOAL_P99_MS} ms; \
         searches/s, p50 and p99 are of the mixed run, worst q p99 the slowest single query's (without $everything)"
    );
    for row in rows.iter().filter(|r| r.backend.starts_with("PostgreSQL")) {
        let p99 = row.search.mixed.percentile(0.99);
        println!(
            "{}: ingest {} ({:.0} resources/s), search p99 {} ({p99:.2} ms)",
            row.backend,
            if row.ingest_per_s >= GOAL_INGEST_PER_S { "meets the goal" } else { "misses the goal" },
            row.ingest_per_s,
            if p99 < GOAL_P99_MS { "meets the goal" } else { "misses the goal" },
        );
    }
}
