//! A pooled connection with its prepared statements, and the r2d2 manager that opens them.
//! Statements are prepared once per connection and kept (up to [`MAX_STATEMENTS`]): the
//! client would otherwise parse and describe every query again, one round trip more each.

use crate::storage;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};
use std::collections::HashMap;
use store::{Error, Result};

/// Prepared statements kept per connection; past this the cache starts afresh (search SQL
/// varies with the query's shape).
const MAX_STATEMENTS: usize = 512;

/// Bound values of a statement.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// One database session.
pub struct Conn {
    /// Always `Some` until dropped.
    client: Option<Client>,
    statements: HashMap<String, Statement>,
}

impl Conn {
    fn new(client: Client) -> Conn {
        Conn { client: Some(client), statements: HashMap::new() }
    }

    #[allow(clippy::expect_used, reason = "`client` is taken only by `drop`: present until then")]
    fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("the client lives as long as the connection")
    }

    fn statement(&mut self, sql: &str) -> std::result::Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client().prepare(sql)?;
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    /// Rows of `sql`.
    pub(crate) fn query(&mut self, sql: &str, params: Params<'_>) -> std::result::Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client().query(&statement, params)
    }

    /// The one row of `sql`, if any.
    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> std::result::Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client().query_opt(&statement, params)
    }

    /// The one row of `sql`.
    pub(crate) fn query_one(&mut self, sql: &str, params: Params<'_>) -> std::result::Result<Row, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client().query_one(&statement, params)
    }

    /// Runs `sql`; the number of rows it changed.
    pub(crate) fn execute(&mut self, sql: &str, params: Params<'_>) -> std::result::Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client().execute(&statement, params)
    }

    /// Runs statements without parameters (transaction control, migrations).
    pub(crate) fn batch(&mut self, sql: &str) -> std::result::Result<(), postgres::Error> {
        self.client().batch_execute(sql)
    }

    fn is_closed(&self) -> bool {
        self.client.as_ref().is_none_or(Client::is_closed)
    }
}

/// The synchronous client closes its session by blocking on a runtime of its own, which panics
/// on a thread that drives async tasks (a server dropping its store, and so its pool, at a
/// graceful shutdown). There the session is closed from a thread of its own.
impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new().name("pg-close".into()).spawn(move || drop(client));
        }
    }
}

/// Opens connections for the pool.
pub struct Manager {
    config: postgres::Config,
}

impl Manager {
    pub(crate) fn new(config: postgres::Config) -> Manager {
        Manager { config }
    }

    /// One connection, outside the pool.
    pub(crate) fn connect(config: &postgres::Config) -> Result<Conn> {
        let client = config.connect(NoTls).map_err(|e| match e.code() {
            Some(_) => storage("connect")(e),
            None => Error::Unavailable("cannot connect to PostgreSQL".into()),
        })?;
        Ok(Conn::new(client))
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<Conn, postgres::Error> {
        let client = self.config.connect(NoTls)?;
        Ok(Conn::new(client))
    }

    fn is_valid(&self, conn: &mut Conn) -> std::result::Result<(), postgres::Error> {
        conn.client().simple_query("").map(drop)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.is_closed()
    }
}
