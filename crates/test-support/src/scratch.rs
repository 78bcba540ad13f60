//! A scratch database per test: created on the server named by `CONTINUUM_TEST_POSTGRES`,
//! dropped (with any connections left) when the guard goes. With
//! `CONTINUUM_TEST_POSTGRES_PARTITIONS=N`, the database gets `continuum.partitions = 'N'`, so
//! that its patient-owned tables are created hash-partitioned by shard key (CI runs the whole
//! suite once that way; see `docs/scale-out.md`). The benchmarks make theirs on the server they
//! are given (`Database::create_on`).

/// The server's administrative database when `CONTINUUM_TEST_POSTGRES` is not set.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Why a scratch database cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScratchError {
    /// The server does not answer at the administrative URL.
    #[error("PostgreSQL is not reachable at {url}")]
    Unreachable {
        /// The administrative database's URL.
        url: String,
        /// Why.
        source: postgres::Error,
    },
    /// The server refused to create or set up the database.
    #[error("cannot create the scratch database")]
    Create(#[source] postgres::Error),
}

/// A database that exists while this value lives.
pub struct Database {
    admin: String,
    name: String,
    /// The URL of the scratch database.
    pub url: String,
}

impl Database {
    /// Creates `continuum_test_<random>`; panics (failing the test) if the server is unreachable.
    pub fn create() -> Database {
        let admin = std::env::var("CONTINUUM_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.to_string());
        Database::create_on(&admin, "continuum_test", partitions()).unwrap_or_else(|e| match e {
            ScratchError::Unreachable { url, source } => panic!(
                "PostgreSQL is required for these tests and is not reachable at CONTINUUM_TEST_POSTGRES ({url}): {source}"
            ),
            other => panic!("{other}: {:?}", std::error::Error::source(&other)),
        })
    }

    /// Creates `{prefix}_<random>` on the server whose administrative database is `admin`, its
    /// patient-owned tables in `partitions` hash partitions when given.
    pub fn create_on(admin: &str, prefix: &str, partitions: Option<u32>) -> Result<Database, ScratchError> {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut client = postgres::Client::connect(admin, postgres::NoTls)
            .map_err(|source| ScratchError::Unreachable { url: admin.to_string(), source })?;
        client.batch_execute(&format!("CREATE DATABASE {name}")).map_err(ScratchError::Create)?;
        let database = Database { admin: admin.to_string(), url: url_for(admin, &name), name };
        if let Some(n) = partitions {
            client
                .batch_execute(&format!("ALTER DATABASE {} SET continuum.partitions = '{n}'", database.name))
                .map_err(ScratchError::Create)?;
        }
        Ok(database)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// The partitions asked for by `CONTINUUM_TEST_POSTGRES_PARTITIONS` (unset or empty: none).
pub fn partitions() -> Option<u32> {
    let value = std::env::var("CONTINUUM_TEST_POSTGRES_PARTITIONS").ok().filter(|v| !v.trim().is_empty())?;
    Some(value.trim().parse().expect("CONTINUUM_TEST_POSTGRES_PARTITIONS is a number"))
}

/// `admin` with its database name replaced by `name`.
fn url_for(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    format!("{base}/{name}{query}")
}
