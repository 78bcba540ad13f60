//! A scratch database per test: created on the server named by `CONTINUUM_TEST_POSTGRES`,
//! dropped (with any connections left) when the guard goes. With
//! `CONTINUUM_TEST_POSTGRES_PARTITIONS=N`, the database gets `continuum.partitions = 'N'`, so
//! that its patient-owned tables are created hash-partitioned by shard key (CI runs the whole
//! suite once that way; see `docs/scale-out.md`).

/// The server's administrative database when `CONTINUUM_TEST_POSTGRES` is not set.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

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
        let name = format!("continuum_test_{}", uuid::Uuid::new_v4().simple());
        let mut client = connect(&admin);
        client.batch_execute(&format!("CREATE DATABASE {name}")).expect("create the scratch database");
        if let Some(n) = partitions() {
            client
                .batch_execute(&format!("ALTER DATABASE {name} SET continuum.partitions = '{n}'"))
                .expect("set the scratch database's partitions");
        }
        let url = url_for(&admin, &name);
        Database { admin, name, url }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let mut client = connect(&self.admin);
        let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// The partitions asked for by `CONTINUUM_TEST_POSTGRES_PARTITIONS` (unset or empty: none).
pub fn partitions() -> Option<u32> {
    let value = std::env::var("CONTINUUM_TEST_POSTGRES_PARTITIONS").ok().filter(|v| !v.trim().is_empty())?;
    Some(value.trim().parse().expect("CONTINUUM_TEST_POSTGRES_PARTITIONS is a number"))
}

fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap_or_else(|e| {
        panic!("PostgreSQL is required for these tests and is not reachable at CONTINUUM_TEST_POSTGRES ({url}): {e}")
    })
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
