//! What the `continuum` binary's commands share, as a library that `continuum-bench` uses too:
//! opening the configured store (`open_store`, `DatabaseArg`), the data directory kept private,
//! importing FHIR files (`import`), and the audit trail's key (`audit`).

pub mod audit;
pub mod import;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::Records;

/// Sets up a process of Continuum's: everything it creates (the data directory, the databases
/// with their -wal and -shm files, auth.db, the key files) is its owner's only (0700
/// directories, 0600 files), and it logs to stderr at the level `CONTINUUM_LOG` names (default
/// `warn`).
pub fn init_process() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONTINUUM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Opens the embedded store in `data` (created if absent).
pub fn open_records(data: &Path) -> Result<Records> {
    Ok(open_store(data, &DatabaseArg::default())?.records)
}

/// The database a command works on: the embedded SQLite store in the data directory, or the
/// PostgreSQL database named with `--database postgres://USER@HOST:PORT/DB`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DatabaseArg {
    /// PostgreSQL database to keep the records, the HL7 message log and the outbox in, and
    /// the users, SMART clients and tokens (`postgres://USER@HOST:PORT/DB`); default: the
    /// embedded store and `auth.db` in `--data`.
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
    /// Key file sealing the secrets the server keeps recoverably (staff TOTP secrets): 32
    /// random bytes, created at first start (mode 0600). Default: `secrets.key` in `--data`.
    /// Servers sharing a PostgreSQL database must all be given the same file; keep it apart
    /// from the database's backups.
    #[arg(long, global = true, value_name = "FILE")]
    pub secrets_key: Option<PathBuf>,
    /// A streaming-replication standby of `--database` that answers reads and searches
    /// (repeatable); writes go to the primary, and reads wait for nothing: until a standby has
    /// replayed this process's latest write, reads go to the primary.
    #[arg(long = "database-replica", global = true, value_name = "URL", requires = "database")]
    pub replicas: Vec<String>,
}

/// An opened store: the records with the ADT notifier, and the interface tables beside them.
pub struct Store {
    /// The records, with the ADT notifier as their write hook.
    pub records: Records,
    /// The HL7 v2 message log.
    pub message_log: Arc<dyn store::MessageLog>,
    /// The HL7 v2 outbox.
    pub outbox: Arc<dyn store::Outbox>,
    /// The audit trail.
    pub audit: Arc<dyn store::AuditLog>,
    /// The state of Bulk Data jobs.
    pub jobs: Arc<dyn store::JobStore>,
    /// The notification outbox (care alerts, Subscription events, e-mails, webhooks).
    pub notifications: Arc<dyn store::Notifications>,
    /// The embedded backend, when that is what is open (its search timeout is set per server).
    pub sqlite: Option<Arc<store_sqlite::SqliteBackend>>,
    /// The active FHIR Subscriptions, whose hook matches every write (load it with
    /// `Registry::load` before serving).
    pub subscriptions: Arc<subscriptions::Registry>,
}

/// Opens the store: PostgreSQL at `database` when given (migrated to the current schema), else
/// the embedded store in `data` (created if absent).
pub fn open_store(data: &Path, database: &DatabaseArg) -> Result<Store> {
    // The write hooks, run inside every write's own transaction whatever the door (API,
    // Bundles, the web app, HL7, import): Encounter changes queue their ADT notifications in
    // the outbox; a signed note is changed only by an amendment; nothing more is written
    // for a patient merged into another record; a write matching an active FHIR Subscription
    // queues its notification (and a bad Subscription is refused).
    let subscriptions = subscriptions::Registry::new();
    let hooks = |records: Records| {
        records
            .with_hook(Arc::new(hl7_interface::outbound::AdtNotifier))
            .with_hook(Arc::new(chart::NoteLifecycle))
            .with_hook(Arc::new(exchange::identity::MergedPatients))
            .with_hook(subscriptions.hook())
            .with_hook(Arc::new(care::alerts::AlertHook))
            // A Task's status changes only along its lifecycle, with a reason where one is due.
            .with_hook(Arc::new(care::tasks::TaskLifecycle))
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
            jobs: Arc::new(backend.job_store()),
            notifications: Arc::new(backend.notifications()),
            sqlite: None,
            subscriptions,
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
        jobs: Arc::new(backend.job_store().context("cannot open the job states")?),
        notifications: Arc::new(backend.notifications().context("cannot open the notification outbox")?),
        sqlite: Some(backend),
        subscriptions,
    })
}

/// Creates the data directory `data` if absent and makes it and what it holds its owner's
/// only: the directory 0700, its files 0600. The umask set in `main` covers what this process
/// creates; this mends a directory made by an earlier version or by hand.
pub fn private_data_dir(data: &Path) -> Result<()> {
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
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("continuum-data")
}
