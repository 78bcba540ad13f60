//! The audit trail's key and `continuum audit verify`.
//!
//! The chain is keyed (HMAC-SHA256, see `store::audit`) with 32 random bytes kept outside the
//! database: `DATA/audit.key`, created with mode 0600 at first start, or the file named by
//! `--audit-key` / `CONTINUUM_AUDIT_KEY_FILE` (servers sharing a PostgreSQL database must all
//! use the same key; the database never holds it). `continuum audit verify` checks every
//! link, hash and HMAC and names the first entry that was edited, inserted, removed or
//! rewritten without the key.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use store::audit::{AuditKey, KeyCheck, Verification};

/// The name of the audit key file in the data directory.
const KEY_FILE: &str = "audit.key";

/// Where the audit chain's key is kept.
#[derive(Debug, Clone, Default, Args)]
pub struct AuditKeyArg {
    /// The audit trail's key file: 32 random bytes, created with mode 0600 when absent
    /// (default: DATA/audit.key). Servers sharing a PostgreSQL database must use the same key.
    #[arg(long = "audit-key", env = "CONTINUUM_AUDIT_KEY_FILE", value_name = "FILE")]
    file: Option<PathBuf>,
}

impl AuditKeyArg {
    /// The key file: the one named, else the data directory's.
    pub fn path(&self, data: &Path) -> PathBuf {
        self.file.clone().unwrap_or_else(|| data.join(KEY_FILE))
    }

    /// Loads the key, creating the file (and its directory) with a fresh key when absent.
    pub fn load_or_create(&self, data: &Path) -> Result<AuditKey> {
        let path = self.path(data);
        match read_key(&path)? {
            Some(key) => Ok(key),
            None => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create the directory of {}", path.display()))?;
                }
                create_key(&path)
            }
        }
    }
}

/// Reads a key file (`None`: there is none).
fn read_key(path: &Path) -> Result<Option<AuditKey>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            warn_if_readable_by_others(path);
            let key = AuditKey::from_bytes(&bytes)
                .with_context(|| format!("{} is not an audit key (32 bytes)", path.display()))?;
            Ok(Some(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read the audit key {}", path.display())),
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the audit key file is readable by others than its owner (chmod 600 it)");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

fn random_bytes() -> Result<[u8; AuditKey::LEN]> {
    use rand_core::RngCore;
    let mut bytes = [0u8; AuditKey::LEN];
    rand_core::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system's random number generator failed"))?;
    Ok(bytes)
}

/// Writes a new key to `path` (mode 0600). It is written whole to a file of its own first and
/// then linked into place, so that a process starting at the same moment reads either no file
/// or the whole key, and the first to link wins.
fn create_key(path: &Path) -> Result<AuditKey> {
    use std::io::Write;
    let bytes = random_bytes()?;
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&partial).and_then(|mut file| {
        file.write_all(&bytes)?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&partial, path));
    let _ = std::fs::remove_file(&partial);
    match linked {
        Ok(()) => {
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
                && let Ok(dir) = std::fs::File::open(dir)
            {
                let _ = dir.sync_all();
            }
            tracing::info!(path = %path.display(), "created the audit trail's key");
            Ok(AuditKey::from_bytes(&bytes)?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key(path)?.with_context(|| format!("the audit key {} vanished", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot create the audit key {}", path.display())),
    }
}

/// The records keyed with `key`, after checking that the chain's newest entry was written with
/// it. On an empty chain, or one from before keys, an entry that marks where keying begins is
/// appended first, as `door`: the trail's newest entry then always names its key, so that a
/// second server sharing the database with another key refuses to start rather than break
/// the chain.
pub fn keyed(records: store::Records, log: &dyn store::AuditLog, key: AuditKey, door: &str) -> Result<store::Records> {
    let records = records.with_audit_key(key.clone());
    match store::audit::check_key(log, &key).context("cannot read the audit trail's head")? {
        KeyCheck::Matches => {}
        KeyCheck::Empty | KeyCheck::Plain => {
            let entry = store::audit::keying_began(&store::Agent::system(door), time::OffsetDateTime::now_utc());
            records.append_audit(vec![entry]).context("cannot mark where the audit trail's keying begins")?;
            tracing::info!("the audit trail is keyed from this entry on");
        }
        KeyCheck::Other => bail!(
            "the audit trail's newest entry was not written with this audit key (--audit-key): servers sharing \
             a database must use the same key file; `continuum audit verify` checks the trail"
        ),
    }
    Ok(records)
}

/// The arguments of `continuum audit`: its subcommand (`verify`).
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every entry of the audit trail against its hash chain and key (exit status 1 when
    /// broken).
    Verify {
        /// Data directory of the embedded store.
        #[arg(long, default_value_os_t = crate::default_data_dir())]
        data: PathBuf,
        #[command(flatten)]
        database: crate::DatabaseArg,
        #[command(flatten)]
        key: AuditKeyArg,
    },
}

/// `continuum audit`: verifies the trail's hash chain.
pub fn run(args: AuditArgs) -> Result<()> {
    match args.command {
        AuditCommand::Verify { data, database, key } => {
            let path = key.path(&data);
            let audit_key = read_key(&path)?;
            if audit_key.is_none() && key.file.is_some() {
                bail!("there is no audit key at {}", path.display());
            }
            let store = crate::open_store(&data, &database)?;
            match store::audit::verify(&*store.audit, audit_key.as_ref())? {
                Verification::Intact { entries, keyed } => {
                    let how = match &audit_key {
                        Some(_) if keyed == entries => format!("every entry keyed with {}", path.display()),
                        Some(_) => format!(
                            "{keyed} keyed with {}, the {} before keying began with plain hashes",
                            path.display(),
                            entries - keyed
                        ),
                        None => format!(
                            "no key at {}: plain hashes only, a consistent rewrite would not be found",
                            path.display()
                        ),
                    };
                    println!("audit trail intact: {entries} entries, every hash and link checked ({how})");
                    Ok(())
                }
                Verification::Broken { sequence, problem } => {
                    println!("audit trail BROKEN at entry {sequence}: {problem}");
                    bail!("the audit trail was tampered with")
                }
            }
        }
    }
}
