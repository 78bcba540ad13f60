//! `continuum-bench`: Continuum's benchmarks, each on a scratch store served in this process
//! (or, for `load`, against a running server), printing the figures the issues set goals for.
//! With no subcommand: Synthea ingest rate, read-by-id and durable write throughput.

mod access_control;
mod backends;
mod client;
mod exchange;
mod identity;
mod load;
mod mllp;
mod peers;
mod scale;
mod searches;
mod subscriptions;
mod throughput;
mod web_app;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Continuum's benchmarks: ingest, reads and writes by default, or the subcommand's figures.
#[derive(Debug, Parser)]
#[command(name = "continuum-bench", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    throughput: throughput::ThroughputArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Search latency and throughput over scaled Synthea stores (issue 3's figures).
    Search(searches::SearchBenchArgs),
    /// Sustained HL7 v2 ingest over MLLP with ACK-after-commit (issue 6's figure).
    Mllp(mllp::MllpBenchArgs),
    /// A sustained mixed read/search/write load against a running server (issue 8's figure).
    Load(load::LoadBenchArgs),
    /// Ingest and search on SQLite, PostgreSQL and PostgreSQL with a standby, side by side
    /// (issue 4's figures).
    Backends(backends::BackendBenchArgs),
    /// Reads and searches with access control and audit on and off, side by side (issue 5's
    /// figure).
    Auth(access_control::AuthBenchArgs),
    /// The clinician web app's page times with access control and audit on (issue 7's
    /// figure).
    App(web_app::AppBenchArgs),
    /// Bulk export, C-CDA import and CCD export over scaled Synthea data (issue 18's figures).
    Exchange(exchange::ExchangeBenchArgs),
    /// `$match` latency over a large generated population (issue 19's figure).
    Match(identity::MatchBenchArgs),
    /// A 2,000-resource record pulled between two nodes (issue 19's figure).
    Pull(peers::PullBenchArgs),
    /// Write N patient bundles replicated from the Synthea sample (fresh ids, shifted dates).
    SyntheaScale(scale::ScaleArgs),
    /// FHIR Subscriptions: event-to-notification latency and the ingest cost of matching
    /// (issue 20's figures).
    Subscriptions(subscriptions::SubscriptionBenchArgs),
}

/// The server's allocator (see `continuum`'s `main.rs`), so that the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    continuum::init_process();
    let cli = Cli::parse();
    match cli.command {
        None => throughput::run(cli.throughput),
        Some(Command::Search(args)) => searches::run(args),
        Some(Command::Subscriptions(args)) => subscriptions::run(args),
        Some(Command::Mllp(args)) => mllp::run(args),
        Some(Command::Load(args)) => load::run(args),
        Some(Command::Backends(args)) => backends::run(args),
        Some(Command::Auth(args)) => access_control::run(args),
        Some(Command::App(args)) => web_app::run(args),
        Some(Command::Exchange(args)) => exchange::run(args),
        Some(Command::SyntheaScale(args)) => scale::run(args),
        Some(Command::Match(args)) => identity::run(args),
        Some(Command::Pull(args)) => peers::run(args),
    }
}
