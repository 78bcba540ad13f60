//! `continuum`: the Continuum EHR binary (serve the FHIR API, import data, benchmark).

mod access;
mod app_bench;
mod audit;
mod auth_bench;
mod backend_bench;
mod bench;
mod hl7;
mod import;
mod load_bench;
mod migrate;
mod mllp_bench;
mod pg_cluster;
mod scale;
mod search_bench;
mod serve;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::Records;

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
    Serve(serve::ServeArgs),
    /// Load FHIR Bundles, resources and NDJSON files into the store (the server may be stopped).
    Import(import::ImportArgs),
    /// Measure ingest, read and write throughput on a scratch store and print the figures.
    Bench(bench::BenchArgs),
    /// Apply schema migrations, or copy a whole store with its history to another backend
    /// (`--from sqlite:DIR --to postgres://…`).
    Migrate(migrate::MigrateArgs),
    /// Write N patient bundles replicated from the Synthea sample (fresh ids, shifted dates).
    SyntheaScale(scale::ScaleArgs),
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
}

/// mimalloc rather than glibc's allocator: the write path allocates and frees many small JSON
/// nodes across threads, and glibc's consolidation and free-list work showed up at about 15%
/// of an import's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    // Everything this process creates (the data directory, the databases with their -wal and
    // -shm files, auth.db, the key files) is its owner's only: 0700 directories, 0600 files.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONTINUUM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve::run(args),
        Command::Import(args) => import::run(args),
        Command::Bench(args) => bench::run(args),
        Command::SyntheaScale(args) => scale::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Hl7(args) => hl7::run(args),
        Command::User(args) => access::run_user(args),
        Command::Client(args) => access::run_client(args),
        Command::Launch(args) => access::run_launch(args),
        Command::Token(args) => access::run_token(args),
        Command::Audit(args) => audit::run(args),
    }
}

/// Opens the embedded store in `data` (created if absent).
fn open_records(data: &Path) -> Result<Records> {
    Ok(open_store(data, &DatabaseArg::default())?.records)
}

/// The database a command works on: the embedded SQLite store in the data directory, or the
/// PostgreSQL database named with `--database postgres://USER@HOST:PORT/DB`.
#[derive(Debug, Clone, Default, clap::Args)]
struct DatabaseArg {
    /// PostgreSQL database to keep the records, the HL7 message log and the outbox in, and
    /// the users, SMART clients and tokens (`postgres://USER@HOST:PORT/DB`); default: the
    /// embedded store and `auth.db` in `--data`.
    #[arg(long, global = true, value_name = "URL")]
    database: Option<String>,
    /// Key file sealing the secrets the server keeps recoverably (staff TOTP secrets): 32
    /// random bytes, created at first start (mode 0600). Default: `secrets.key` in `--data`.
    /// Servers sharing a PostgreSQL database must all be given the same file; keep it apart
    /// from the database's backups.
    #[arg(long, global = true, value_name = "FILE")]
    secrets_key: Option<PathBuf>,
    /// A streaming-replication standby of `--database` that answers reads and searches
    /// (repeatable); writes go to the primary, and reads wait for nothing: until a standby has
    /// replayed this process's latest write, reads go to the primary.
    #[arg(long = "database-replica", global = true, value_name = "URL", requires = "database")]
    replicas: Vec<String>,
}

/// An opened store: the records with the ADT notifier, and the interface tables beside them.
struct Store {
    records: Records,
    message_log: Arc<dyn store::MessageLog>,
    outbox: Arc<dyn store::Outbox>,
    /// The audit trail.
    audit: Arc<dyn store::AuditLog>,
    /// The embedded backend, when that is what is open (its search timeout is set per server).
    sqlite: Option<Arc<store_sqlite::SqliteBackend>>,
}

/// Opens the store: PostgreSQL at `database` when given (migrated to the current schema), else
/// the embedded store in `data` (created if absent).
fn open_store(data: &Path, database: &DatabaseArg) -> Result<Store> {
    // The write hooks, run inside every write's own transaction whatever the door (API,
    // Bundles, the web app, HL7, import): Encounter changes queue their ADT notifications in
    // the outbox; a signed note is changed only by an amendment.
    let hooks = |records: Records| {
        records.with_hook(Arc::new(hl7_interface::outbound::AdtNotifier)).with_hook(Arc::new(chart::NoteLifecycle))
    };
    if let Some(url) = database.database.as_deref() {
        for url in std::iter::once(url).chain(database.replicas.iter().map(String::as_str)) {
            if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
                anyhow::bail!("--database and --database-replica take a postgres://USER@HOST:PORT/DB URL");
            }
        }
        let backend = Arc::new(
            store_postgres::PostgresBackend::connect_with_replicas(url, &database.replicas)
                .context("cannot open the PostgreSQL database")?,
        );
        return Ok(Store {
            records: hooks(Records::new(backend.clone())),
            message_log: Arc::new(backend.message_log()),
            outbox: Arc::new(backend.outbox()),
            audit: backend.clone(),
            sqlite: None,
        });
    }
    private_data_dir(data)?;
    let backend = Arc::new(
        store_sqlite::SqliteBackend::open(data)
            .with_context(|| format!("cannot open the store in {}", data.display()))?,
    );
    Ok(Store {
        records: hooks(Records::new(backend.clone())),
        message_log: Arc::new(backend.message_log().context("cannot open the HL7 message log")?),
        outbox: Arc::new(backend.outbox().context("cannot open the HL7 outbox")?),
        audit: backend.clone(),
        sqlite: Some(backend),
    })
}

/// Creates the data directory `data` if absent and makes it and what it holds its owner's
/// only: the directory 0700, its files 0600. The umask set in `main` covers what this process
/// creates; this mends a directory made by an earlier version or by hand.
fn private_data_dir(data: &Path) -> Result<()> {
    std::fs::create_dir_all(data).with_context(|| format!("cannot create data directory {}", data.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let tighten = |path: &Path, mode: u32| -> Result<()> {
            let metadata =
                std::fs::symlink_metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
            if !metadata.file_type().is_symlink() && metadata.permissions().mode() & 0o777 != mode {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .with_context(|| format!("cannot make {} private", path.display()))?;
            }
            Ok(())
        };
        tighten(data, 0o700)?;
        let entries = std::fs::read_dir(data).with_context(|| format!("cannot read {}", data.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", data.display()))?;
            let file_type = entry.file_type().with_context(|| format!("cannot read {}", data.display()))?;
            if file_type.is_file() {
                tighten(&entry.path(), 0o600)?;
            } else if file_type.is_dir() {
                tighten(&entry.path(), 0o700)?;
            }
        }
    }
    Ok(())
}

/// The default data directory.
fn default_data_dir() -> PathBuf {
    PathBuf::from("continuum-data")
}
