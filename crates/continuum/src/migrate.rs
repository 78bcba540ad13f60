//! `continuum migrate`: brings a database's schema up to date, or copies a whole store (every
//! version of every resource, deletions included, with its version numbers and `lastUpdated`)
//! from one backend to another — moving a clinic's embedded store onto PostgreSQL.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use store::{Backend, HistoryQuery, Records};

/// Versions copied per transaction.
const BATCH: usize = 1000;

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// Data directory of the embedded store (without `--from`: the store to migrate).
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data: PathBuf,
    #[command(flatten)]
    database: crate::DatabaseArg,
    /// Copy from this store: `sqlite:DIR` (an embedded store's data directory) or
    /// `postgres://USER@HOST:PORT/DB`.
    #[arg(long, value_name = "STORE", requires = "to")]
    from: Option<String>,
    /// Copy into this store (migrated first): `postgres://…` or `sqlite:DIR`. It must be empty
    /// unless `--resume` is given.
    #[arg(long, value_name = "STORE", requires = "from")]
    to: Option<String>,
    /// Continue a copy that was interrupted: versions the target already has are skipped.
    #[arg(long, requires = "from")]
    resume: bool,
}

pub(crate) fn run(args: MigrateArgs) -> Result<()> {
    let (Some(from), Some(to)) = (&args.from, &args.to) else {
        return migrate_in_place(&args);
    };
    let source = open(from).with_context(|| format!("cannot open the source store {}", describe(from)))?;
    let target = open(to).with_context(|| format!("cannot open the target store {}", describe(to)))?;
    let existing = target.history_total(&HistoryQuery::default())?;
    if existing > 0 && !args.resume {
        bail!("the target store already holds {existing} versions; copy into an empty one, or give --resume");
    }
    let records = Records::new(target.clone());
    let started = Instant::now();
    let (mut read, mut written, mut after) = (0u64, 0u64, 0i64);
    loop {
        let versions = source.versions_after(after, BATCH)?;
        let Some(last) = versions.last() else { break };
        after = last.sequence;
        read += versions.len() as u64;
        written += records.restore(versions).context("copying a batch of versions")? as u64;
        if read % 100_000 < BATCH as u64 {
            eprintln!("  {read} versions read, {written} written");
        }
    }
    target.refresh_statistics()?;
    check_copy(&*source, &*target)?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "Copied {written} versions ({read} read) from {} to {} in {seconds:.1} s; resources and history counts match",
        describe(from),
        describe(to)
    );
    copy_identities(from, to)?;
    Ok(())
}

/// Copies the users and SMART clients (password hashes, roles, links, TOTP enrolments,
/// registrations) along with the records; codes and tokens are not copied (users sign in again). A username or
/// client id the target already has is kept as the target has it, and listed.
fn copy_identities(from: &str, to: &str) -> Result<()> {
    let Some(source) = open_auth(from, false)? else {
        println!("No users or clients to copy (the source has no authorization data)");
        return Ok(());
    };
    let target = open_auth(to, true)?.context("the target's authorization data")?;
    let (mut users, mut clients, mut kept, mut second_factors) = (0, 0, Vec::new(), 0);
    for user in source.users()? {
        match target.insert_user(&user) {
            Ok(()) => {
                // A staff user keeps their second factor: without it a copy would sign them
                // in with the password alone.
                if let Some(secret) = source.totp_secret(&user.id)? {
                    target.set_totp_secret(
                        &user.id,
                        Some(&secret),
                        time::OffsetDateTime::now_utc().unix_timestamp(),
                    )?;
                    second_factors += 1;
                }
                users += 1;
            }
            Err(auth::Error::Conflict(_)) => kept.push(format!("user {}", user.username)),
            Err(e) => return Err(e).context("copying a user"),
        }
    }
    for client in source.clients()? {
        match target.insert_client(&client) {
            Ok(()) => clients += 1,
            Err(auth::Error::Conflict(_)) => kept.push(format!("client {}", client.id)),
            Err(e) => return Err(e).context("copying a client"),
        }
    }
    println!("Copied {users} users and {clients} clients");
    if second_factors > 0 {
        // Copied sealed, as they were: they open only with the source's key file.
        println!(
            "{second_factors} TOTP enrolments are sealed with the source's secrets key: give the target's servers \
             that key file (--secrets-key FILE; for sqlite:DIR it is DIR/{})",
            auth::SECRETS_KEY_FILE
        );
    }
    if !kept.is_empty() {
        println!("Already in the target, kept as they are there: {}", kept.join(", "));
    }
    Ok(())
}

/// The authorization store of a store named `sqlite:DIR` or `postgres://…`; `None` for a data
/// directory without one (unless `create`).
fn open_auth(name: &str, create: bool) -> Result<Option<Box<dyn auth::AuthStore>>> {
    if let Some(dir) = name.strip_prefix("sqlite:") {
        let dir = PathBuf::from(dir);
        if !create && !dir.join(store_sqlite::auth::AUTH_DATABASE_FILE).exists() {
            return Ok(None);
        }
        return Ok(Some(Box::new(store_sqlite::auth::SqliteAuthStore::open(&dir)?)));
    }
    Ok(Some(Box::new(store_postgres::auth::PostgresAuthStore::connect(name)?)))
}

/// Without `--from`: opens the store named by `--database` (or `--data`), which applies the
/// migrations it lacks, and reports its schema version.
fn migrate_in_place(args: &MigrateArgs) -> Result<()> {
    match args.database.database.as_deref() {
        Some(url) => {
            check_postgres_url(url)?;
            let backend =
                store_postgres::PostgresBackend::connect(url).context("cannot open the PostgreSQL database")?;
            println!("PostgreSQL schema at version {}", backend.schema_version()?);
        }
        None => {
            crate::open_store(&args.data, &crate::DatabaseArg::default())?;
            println!("Embedded store in {} is up to date", args.data.display());
        }
    }
    Ok(())
}

/// The live resources per type and the number of versions are the same in both stores.
fn check_copy(source: &dyn Backend, target: &dyn Backend) -> Result<()> {
    let (from, to) = (source.count_by_type()?, target.count_by_type()?);
    if from != to {
        bail!("after the copy the live resources per type differ: source {from:?}, target {to:?}");
    }
    let all = HistoryQuery::default();
    let (from, to) = (source.history_total(&all)?, target.history_total(&all)?);
    if from != to {
        bail!("after the copy the source has {from} versions and the target {to}");
    }
    Ok(())
}

/// A store named `sqlite:DIR` or `postgres://…`.
fn open(name: &str) -> Result<Arc<dyn Backend>> {
    if let Some(dir) = name.strip_prefix("sqlite:") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        return Ok(Arc::new(store_sqlite::SqliteBackend::open(&dir)?));
    }
    check_postgres_url(name)?;
    Ok(Arc::new(store_postgres::PostgresBackend::connect(name)?))
}

fn check_postgres_url(url: &str) -> Result<()> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(())
    } else {
        bail!("a store is `sqlite:DIR` or `postgres://USER@HOST:PORT/DB`")
    }
}

/// The store's name without a password.
fn describe(name: &str) -> String {
    match (name.find("://"), name.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = &name[scheme + 3..at];
            let user = user.split(':').next().unwrap_or_default();
            format!("{}{user}@{}", &name[..scheme + 3], &name[at + 1..])
        }
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn descriptions_leave_out_passwords() {
        assert_eq!(describe("postgres://u:secret@h:5432/db"), "postgres://u@h:5432/db");
        assert_eq!(describe("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(describe("sqlite:/var/lib/continuum"), "sqlite:/var/lib/continuum");
    }
}
