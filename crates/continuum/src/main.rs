//! `continuum`: the Continuum EHR binary (serve the FHIR API and the web app, import data,
//! migrate stores, administer users, clients, HL7 partners and the audit trail). Benchmarks
//! are `continuum-bench`'s (crates/bench).

mod access;
mod export;
mod hl7;
mod migrate;
mod peers;
mod serve;

// What the commands share lives in the library beside this binary; imported here so that the
// commands name it as `crate::…`.
use anyhow::Result;
use clap::{Parser, Subcommand};
use continuum::{DatabaseArg, Store, audit, default_data_dir, import, open_store, private_data_dir};

/// Continuum: an open-source electronic health record on FHIR R4.
#[derive(Debug, Parser)]
#[command(name = "continuum", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the FHIR R4 REST API.
    Serve(Box<serve::ServeArgs>),
    /// Load FHIR Bundles, resources, NDJSON files and C-CDA documents into the store (the server
    /// may be stopped).
    Import(import::ImportArgs),
    /// Write a Bulk Data export of the store (NDJSON per type) into a folder.
    Export(export::ExportArgs),
    /// Apply schema migrations, or copy a whole store with its history to another backend
    /// (`--from sqlite:DIR --to postgres://…`).
    Migrate(migrate::MigrateArgs),
    /// The HL7 v2 message log: list, show and replay received messages.
    Hl7(hl7::Hl7Args),
    /// Users: add, list, disable.
    User(access::UserArgs),
    /// SMART clients: add, list.
    Client(access::ClientArgs),
    /// Create an EHR launch context (patient, encounter) and print its `launch` value.
    Launch(access::LaunchArgs),
    /// Mint a bearer token for a user (scripts and tests on this machine).
    Token(access::TokenArgs),
    /// The audit trail: verify its hash chain.
    Audit(audit::AuditArgs),
    /// Peer Continuum nodes: add, list, remove, keygen, pull.
    Peer(peers::PeerArgs),
}

/// mimalloc rather than glibc's allocator: the write path allocates and frees many small JSON
/// nodes across threads, and glibc's consolidation and free-list work showed up at about 15%
/// of an import's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    continuum::init_process();
    match Cli::parse().command {
        Command::Serve(args) => serve::run(*args),
        Command::Import(args) => import::run(args),
        Command::Export(args) => export::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Hl7(args) => hl7::run(args),
        Command::User(args) => access::run_user(args),
        Command::Client(args) => access::run_client(args),
        Command::Launch(args) => access::run_launch(args),
        Command::Token(args) => access::run_token(args),
        Command::Audit(args) => audit::run(args),
        Command::Peer(args) => peers::run(args),
    }
}
