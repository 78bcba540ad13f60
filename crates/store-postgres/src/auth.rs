//! [`AuthStore`] on PostgreSQL, so that several Continuum servers sharing one database share
//! their users, clients, codes, tokens and launches. The tables carry the prefix `auth_` and
//! their own migration table `auth_migration`, beside (and independent of) the record store's
//! `continuum_migration`; an advisory lock (its own key) keeps two processes from migrating at
//! once.
//!
//! The server's id_token signing key is kept in the database too (`auth_signing_key`, one
//! row): every node signs with the same key, so an id_token from one verifies against the
//! `/auth/jwks` of any other. Whoever can read that table can sign id_tokens (not access
//! tokens: those are opaque and stored only as hashes), so grant it like the key file.
//!
//! Errors carry only the SQLSTATE: the server's messages can quote values, and values here are
//! usernames, password hashes and token hashes.

use ::auth::model::{Client, ClientKind, CodeRecord, Identity, LaunchContext, TokenKind, TokenRecord, User};
use ::auth::{AuthConfig, AuthStore, Authority, Error, OneTimePassword, Reseal, Result, SecretsKey, ServerKey};
use postgres::types::ToSql;
use postgres::{NoTls, Row, Statement};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Most connections the pool opens: authorization traffic is light.
const POOL_SIZE: u32 = 8;
/// How long a caller waits for a free connection.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// The longest a statement may run before the server cancels it.
const STATEMENT_TIMEOUT: &str = "10s";
/// Key of the advisory lock held while migrating ("authcont"; the record store uses another).
const MIGRATION_LOCK: i64 = 0x6175_7468_636f_6e74;

/// Migration `i` brings the schema from version `i` to `i + 1`. Never edit one that shipped;
/// append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the tables of the SQLite store (times in Unix seconds), and the signing key.
    r#"
    CREATE TABLE auth_user (
        id                   TEXT COLLATE "C" PRIMARY KEY,
        username             TEXT COLLATE "C" NOT NULL UNIQUE,
        identity             TEXT NOT NULL,  -- JSON
        password_hash        TEXT NOT NULL,
        must_change_password BOOLEAN NOT NULL,
        password_expires_at  BIGINT,
        disabled             BOOLEAN NOT NULL DEFAULT false,
        created_at           BIGINT NOT NULL
    );
    CREATE TABLE auth_client (
        id             TEXT COLLATE "C" PRIMARY KEY,
        name           TEXT NOT NULL,
        kind           TEXT NOT NULL,
        secret_hash    TEXT,
        redirect_uris  TEXT NOT NULL,  -- JSON array
        allowed_scopes TEXT NOT NULL,
        jwks           TEXT,           -- JSON
        jwks_uri       TEXT,
        disabled       BOOLEAN NOT NULL DEFAULT false,
        created_at     BIGINT NOT NULL
    );
    CREATE TABLE auth_code (
        hash           TEXT COLLATE "C" PRIMARY KEY,
        grant_id       TEXT NOT NULL,
        client_id      TEXT NOT NULL,
        redirect_uri   TEXT NOT NULL,
        code_challenge TEXT NOT NULL,
        user_id        TEXT NOT NULL,
        scope          TEXT NOT NULL,
        patient        TEXT,
        encounter      TEXT,
        nonce          TEXT,
        expires_at     BIGINT NOT NULL,
        used           BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX auth_code_expiry ON auth_code (expires_at);
    CREATE TABLE auth_token (
        hash       TEXT COLLATE "C" PRIMARY KEY,
        kind       TEXT NOT NULL,
        grant_id   TEXT COLLATE "C" NOT NULL,
        client_id  TEXT,
        user_id    TEXT,
        scope      TEXT NOT NULL,
        patient    TEXT,
        encounter  TEXT,
        issued_at  BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        revoked    BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX auth_token_grant ON auth_token (grant_id);
    CREATE INDEX auth_token_expiry ON auth_token (expires_at);
    CREATE TABLE auth_launch (
        id         TEXT COLLATE "C" PRIMARY KEY,
        patient    TEXT,
        encounter  TEXT,
        expires_at BIGINT NOT NULL
    );
    CREATE TABLE auth_assertion_id (
        client_id  TEXT COLLATE "C" NOT NULL,
        jti        TEXT COLLATE "C" NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (client_id, jti)
    );
    CREATE INDEX auth_assertion_id_expiry ON auth_assertion_id (expires_at);
    CREATE TABLE auth_signing_key (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        pkcs8      BYTEA NOT NULL,  -- ES256 private key, PKCS#8 DER
        created_at BIGINT NOT NULL
    );
    "#,
    // 2: sign-in safety: failed sign-ins and lock-out, staff TOTP secrets with the last step
    // used (replay), and the last use of a token (idle sessions).
    r#"
    ALTER TABLE auth_user ADD COLUMN failed_sign_ins INTEGER NOT NULL DEFAULT 0,
                          ADD COLUMN locked_until BIGINT;
    ALTER TABLE auth_token ADD COLUMN last_used_at BIGINT;
    CREATE TABLE auth_totp (
        user_id     TEXT COLLATE "C" PRIMARY KEY,
        secret      BYTEA NOT NULL,
        last_step   BIGINT,
        enrolled_at BIGINT NOT NULL
    );
    "#,
];

/// A `Storage` error for a failed `operation`, with the SQLSTATE only.
fn storage(operation: &'static str) -> impl Fn(postgres::Error) -> Error {
    move |e| match e.code() {
        Some(code) => Error::Storage(format!("{operation}: PostgreSQL {}", code.code())),
        None if e.is_closed() => Error::Storage(format!("{operation}: the database connection closed")),
        None => Error::Storage(format!("{operation}: database error")),
    }
}

fn is_unique_violation(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code() == "23505")
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// One database session with its prepared statements (all SQL here is static).
pub(crate) struct Conn {
    /// `None` only while being dropped.
    client: Option<postgres::Client>,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    fn new(client: postgres::Client) -> Conn {
        Conn { client: Some(client), statements: HashMap::new() }
    }

    fn client(&mut self) -> std::result::Result<&mut postgres::Client, postgres::Error> {
        match &mut self.client {
            Some(client) => Ok(client),
            None => unreachable!("the client is taken only on drop"),
        }
    }

    fn statement(&mut self, sql: &'static str) -> std::result::Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client()?.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    fn query(&mut self, sql: &'static str, params: Params<'_>) -> std::result::Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client()?.query(&statement, params)
    }

    fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> std::result::Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client()?.query_opt(&statement, params)
    }

    fn query_one(&mut self, sql: &'static str, params: Params<'_>) -> std::result::Result<Row, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client()?.query_one(&statement, params)
    }

    fn execute(&mut self, sql: &'static str, params: Params<'_>) -> std::result::Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client()?.execute(&statement, params)
    }

    fn batch(&mut self, sql: &str) -> std::result::Result<(), postgres::Error> {
        self.client()?.batch_execute(sql)
    }
}

/// The synchronous client closes its session by blocking on its own runtime, which panics on a
/// thread that drives async tasks (a server dropping its last handle on the store at shutdown).
/// There the session is closed from a thread of its own.
impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new().name("auth-pg-close".into()).spawn(move || drop(client));
        }
    }
}

/// Opens connections for the pool.
pub(crate) struct Manager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<Conn, postgres::Error> {
        Ok(Conn::new(self.config.connect(NoTls)?))
    }

    fn is_valid(&self, conn: &mut Conn) -> std::result::Result<(), postgres::Error> {
        conn.client()?.simple_query("").map(drop)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.as_ref().is_none_or(postgres::Client::is_closed)
    }
}

/// Opens the authority kept in the PostgreSQL database at `url` (the `auth_` tables, the
/// signing key among them), for servers that share one database: they share users, clients,
/// tokens and the key. The secrets kept recoverably are sealed with the key file `secrets_key`
/// (created if absent): every server sharing the database must be given the same file. The
/// first start of an empty database creates `admin` and returns its one-time password, as
/// `store_sqlite::auth::open_authority` does.
pub fn open_authority(
    url: &str,
    secrets_key: &Path,
    config: AuthConfig,
) -> Result<(Authority, Option<OneTimePassword>)> {
    let secrets = SecretsKey::load_or_create(secrets_key)?;
    let store = PostgresAuthStore::connect(url)?;
    let key = ServerKey::from_pkcs8(&store.signing_key_or_insert(&ServerKey::new_pkcs8()?)?)?;
    Authority::start(Arc::new(store), key, secrets, config)
}

/// The PostgreSQL [`AuthStore`]: a pool of connections, each statement its own transaction
/// unless said otherwise.
pub struct PostgresAuthStore {
    pool: r2d2::Pool<Manager>,
}

impl PostgresAuthStore {
    /// Connects to the database at `url` (`postgres://USER@HOST:PORT/DB`) and brings the
    /// authorization tables up to date.
    pub fn connect(url: &str) -> Result<PostgresAuthStore> {
        let mut config: postgres::Config =
            url.parse().map_err(|_| Error::Storage("the PostgreSQL URL is not valid".into()))?;
        config.options(&format!("-c statement_timeout={STATEMENT_TIMEOUT}"));
        config.application_name("continuum-auth");
        let mut first = Conn::new(config.connect(NoTls).map_err(|e| match e.code() {
            Some(_) => storage("connect")(e),
            None => Error::Storage("cannot connect to PostgreSQL".into()),
        })?);
        migrate(&mut first)?;
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(0))
            .connection_timeout(POOL_WAIT)
            .build_unchecked(Manager { config });
        Ok(PostgresAuthStore { pool })
    }

    /// The schema version of the authorization tables (migrations applied).
    pub fn schema_version(&self) -> Result<usize> {
        applied(&mut *self.conn()?)
    }

    /// The schema version this program creates.
    pub fn latest_schema_version() -> usize {
        MIGRATIONS.len()
    }

    /// The signing key (PKCS#8 DER) kept in the database; `candidate` becomes it if there is
    /// none yet. Nodes starting at once agree: the first insert wins, the others read it.
    pub fn signing_key_or_insert(&self, candidate: &[u8]) -> Result<Vec<u8>> {
        let fail = storage("signing key");
        let mut conn = self.conn()?;
        conn.execute(
            "INSERT INTO auth_signing_key (id, pkcs8, created_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
            &[&candidate, &time::OffsetDateTime::now_utc().unix_timestamp()],
        )
        .map_err(&fail)?;
        let row = conn.query_one("SELECT pkcs8 FROM auth_signing_key WHERE id = 1", &[]).map_err(&fail)?;
        row.try_get(0).map_err(&fail)
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>> {
        self.pool.get().map_err(|_| Error::Storage("no database connection is available".into()))
    }
}

/// Applies the migrations the database lacks, each in its own transaction.
fn migrate(conn: &mut Conn) -> Result<()> {
    let fail = storage("migration");
    loop {
        conn.batch("BEGIN").map_err(&fail)?;
        match migrate_one(conn) {
            Ok(more) => {
                conn.batch("COMMIT").map_err(&fail)?;
                if !more {
                    return Ok(());
                }
            }
            Err(e) => {
                let _ = conn.batch("ROLLBACK");
                return Err(e);
            }
        }
    }
}

/// Applies the next migration inside the open transaction; `false` when none is left. The
/// lock comes first, before even the migration table is created: two processes creating it at
/// once fail with one of several SQLSTATEs (23505, 42P07, 42710), none of which is then needed.
fn migrate_one(conn: &mut Conn) -> Result<bool> {
    let fail = storage("migration");
    conn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(&fail)?;
    conn.batch(
        "CREATE TABLE IF NOT EXISTS auth_migration (
            version    INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .map_err(&fail)?;
    let done = applied(conn)?;
    if done > MIGRATIONS.len() {
        return Err(Error::Storage(format!(
            "the authorization tables have schema version {done}, newer than this program's {}",
            MIGRATIONS.len()
        )));
    }
    let Some(sql) = MIGRATIONS.get(done) else { return Ok(false) };
    conn.batch(sql).map_err(&fail)?;
    let version = i32::try_from(done + 1).map_err(|_| Error::Storage("bad schema version".into()))?;
    conn.execute("INSERT INTO auth_migration (version) VALUES ($1)", &[&version]).map_err(&fail)?;
    Ok(true)
}

fn applied(conn: &mut Conn) -> Result<usize> {
    let fail = storage("schema");
    let n: i64 =
        conn.query_one("SELECT count(*) FROM auth_migration", &[]).map_err(&fail)?.try_get(0).map_err(&fail)?;
    usize::try_from(n).map_err(|_| Error::Storage("bad schema version".into()))
}

fn json_error(e: &serde_json::Error) -> Error {
    // Only the position: the message could quote the stored value.
    Error::Storage(format!("auth storage: a stored JSON value is damaged (line {}, column {})", e.line(), e.column()))
}

fn user_from_row(row: &Row) -> Result<User> {
    let fail = storage("read user");
    let identity: String = row.try_get(2).map_err(&fail)?;
    Ok(User {
        id: row.try_get(0).map_err(&fail)?,
        username: row.try_get(1).map_err(&fail)?,
        identity: serde_json::from_str::<Identity>(&identity).map_err(|e| json_error(&e))?,
        password_hash: row.try_get(3).map_err(&fail)?,
        must_change_password: row.try_get(4).map_err(&fail)?,
        password_expires_at: row.try_get(5).map_err(&fail)?,
        disabled: row.try_get(6).map_err(&fail)?,
        created_at: row.try_get(7).map_err(&fail)?,
        failed_sign_ins: u32::try_from(row.try_get::<_, i32>(8).map_err(&fail)?).unwrap_or(0),
        locked_until: row.try_get(9).map_err(&fail)?,
    })
}

fn client_from_row(row: &Row) -> Result<Client> {
    let fail = storage("read client");
    let kind: String = row.try_get(2).map_err(&fail)?;
    let redirect_uris: String = row.try_get(4).map_err(&fail)?;
    let jwks: Option<String> = row.try_get(6).map_err(&fail)?;
    Ok(Client {
        id: row.try_get(0).map_err(&fail)?,
        name: row.try_get(1).map_err(&fail)?,
        kind: kind.parse::<ClientKind>().map_err(|_| Error::Storage("read client: unknown client kind".into()))?,
        secret_hash: row.try_get(3).map_err(&fail)?,
        redirect_uris: serde_json::from_str(&redirect_uris).map_err(|e| json_error(&e))?,
        allowed_scopes: row.try_get(5).map_err(&fail)?,
        jwks: jwks.map(|j| serde_json::from_str(&j)).transpose().map_err(|e| json_error(&e))?,
        jwks_uri: row.try_get(7).map_err(&fail)?,
        disabled: row.try_get(8).map_err(&fail)?,
        created_at: row.try_get(9).map_err(&fail)?,
    })
}

fn code_from_row(row: &Row) -> Result<CodeRecord> {
    let fail = storage("read code");
    Ok(CodeRecord {
        hash: row.try_get(0).map_err(&fail)?,
        grant_id: row.try_get(1).map_err(&fail)?,
        client_id: row.try_get(2).map_err(&fail)?,
        redirect_uri: row.try_get(3).map_err(&fail)?,
        code_challenge: row.try_get(4).map_err(&fail)?,
        user_id: row.try_get(5).map_err(&fail)?,
        scope: row.try_get(6).map_err(&fail)?,
        patient: row.try_get(7).map_err(&fail)?,
        encounter: row.try_get(8).map_err(&fail)?,
        nonce: row.try_get(9).map_err(&fail)?,
        expires_at: row.try_get(10).map_err(&fail)?,
        used: row.try_get(11).map_err(&fail)?,
    })
}

fn token_from_row(row: &Row) -> Result<TokenRecord> {
    let fail = storage("read token");
    let kind: String = row.try_get(1).map_err(&fail)?;
    Ok(TokenRecord {
        hash: row.try_get(0).map_err(&fail)?,
        kind: if kind == TokenKind::Refresh.as_str() { TokenKind::Refresh } else { TokenKind::Access },
        grant_id: row.try_get(2).map_err(&fail)?,
        client_id: row.try_get(3).map_err(&fail)?,
        user_id: row.try_get(4).map_err(&fail)?,
        scope: row.try_get(5).map_err(&fail)?,
        patient: row.try_get(6).map_err(&fail)?,
        encounter: row.try_get(7).map_err(&fail)?,
        issued_at: row.try_get(8).map_err(&fail)?,
        expires_at: row.try_get(9).map_err(&fail)?,
        revoked: row.try_get(10).map_err(&fail)?,
        last_used_at: row.try_get(11).map_err(&fail)?,
    })
}

/// `SELECT` of a whole user, for `concat!` (statements are cached by their static text).
macro_rules! select_user {
    () => {
        "SELECT id, username, identity, password_hash, must_change_password, password_expires_at, disabled, \
         created_at, failed_sign_ins, locked_until FROM auth_user"
    };
}

/// `SELECT` of a whole client.
macro_rules! select_client {
    () => {
        "SELECT id, name, kind, secret_hash, redirect_uris, allowed_scopes, jwks, jwks_uri, disabled, created_at \
         FROM auth_client"
    };
}

impl AuthStore for PostgresAuthStore {
    fn insert_user(&self, user: &User) -> Result<()> {
        let identity = serde_json::to_string(&user.identity).map_err(|e| Error::Invalid(e.to_string()))?;
        let result = self.conn()?.execute(
            "INSERT INTO auth_user (id, username, identity, password_hash, must_change_password, \
             password_expires_at, disabled, created_at, failed_sign_ins, locked_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &user.id,
                &user.username,
                &identity,
                &user.password_hash,
                &user.must_change_password,
                &user.password_expires_at,
                &user.disabled,
                &user.created_at,
                &i32::try_from(user.failed_sign_ins).unwrap_or(i32::MAX),
                &user.locked_until,
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::Conflict("a user with this username exists".into())),
            Err(e) => Err(storage("insert user")(e)),
        }
    }

    fn user_by_username(&self, username: &str) -> Result<Option<User>> {
        const SQL: &str = concat!(select_user!(), " WHERE username = $1");
        let row = self.conn()?.query_opt(SQL, &[&username]).map_err(storage("read user"))?;
        row.as_ref().map(user_from_row).transpose()
    }

    fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        const SQL: &str = concat!(select_user!(), " WHERE id = $1");
        let row = self.conn()?.query_opt(SQL, &[&id]).map_err(storage("read user"))?;
        row.as_ref().map(user_from_row).transpose()
    }

    fn users(&self) -> Result<Vec<User>> {
        const SQL: &str = concat!(select_user!(), " ORDER BY username");
        self.conn()?.query(SQL, &[]).map_err(storage("list users"))?.iter().map(user_from_row).collect()
    }

    fn count_users(&self) -> Result<u64> {
        let fail = storage("count users");
        let n: i64 =
            self.conn()?.query_one("SELECT count(*) FROM auth_user", &[]).map_err(&fail)?.try_get(0).map_err(&fail)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<bool> {
        let n = self
            .conn()?
            .execute("UPDATE auth_user SET disabled = $2 WHERE username = $1", &[&username, &disabled])
            .map_err(storage("disable user"))?;
        Ok(n > 0)
    }

    fn set_password(&self, user_id: &str, hash: &str, must_change: bool, expires_at: Option<i64>) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE auth_user SET password_hash = $2, must_change_password = $3, password_expires_at = $4 \
                 WHERE id = $1",
                &[&user_id, &hash, &must_change, &expires_at],
            )
            .map_err(storage("set password"))?;
        Ok(())
    }

    /// One statement: the row lock makes concurrent failures (on any server) count one after
    /// the other; a count starting again at 0 is this failure's lock.
    fn record_failed_sign_in(&self, user_id: &str, now: i64, limit: u32, lock_seconds: i64) -> Result<Option<i64>> {
        let fail = storage("count failed sign-in");
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let row = self
            .conn()?
            .query_opt(
                "UPDATE auth_user SET \
                 failed_sign_ins = CASE WHEN failed_sign_ins + 1 >= $2 THEN 0 ELSE failed_sign_ins + 1 END, \
                 locked_until = CASE WHEN failed_sign_ins + 1 >= $2 THEN $3 ELSE locked_until END \
                 WHERE id = $1 RETURNING failed_sign_ins, locked_until",
                &[&user_id, &limit, &(now + lock_seconds)],
            )
            .map_err(&fail)?;
        let Some(row) = row else { return Ok(None) };
        let count: i32 = row.try_get(0).map_err(&fail)?;
        let until: Option<i64> = row.try_get(1).map_err(&fail)?;
        Ok(if count == 0 { until } else { None })
    }

    fn clear_failed_sign_ins(&self, user_id: &str) -> Result<()> {
        self.conn()?
            .execute("UPDATE auth_user SET failed_sign_ins = 0, locked_until = NULL WHERE id = $1", &[&user_id])
            .map_err(storage("clear failed sign-ins"))?;
        Ok(())
    }

    fn set_totp_secret(&self, user_id: &str, secret: Option<&[u8]>, now: i64) -> Result<()> {
        let mut conn = self.conn()?;
        match secret {
            Some(secret) => conn.execute(
                "INSERT INTO auth_totp (user_id, secret, last_step, enrolled_at) VALUES ($1, $2, NULL, $3) \
                 ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, last_step = NULL, \
                 enrolled_at = excluded.enrolled_at",
                &[&user_id, &secret, &now],
            ),
            None => conn.execute("DELETE FROM auth_totp WHERE user_id = $1", &[&user_id]),
        }
        .map_err(storage("set TOTP secret"))?;
        Ok(())
    }

    fn totp_secret(&self, user_id: &str) -> Result<Option<Vec<u8>>> {
        let fail = storage("read TOTP secret");
        let row =
            self.conn()?.query_opt("SELECT secret FROM auth_totp WHERE user_id = $1", &[&user_id]).map_err(&fail)?;
        row.map(|row| row.try_get(0).map_err(&fail)).transpose()
    }

    /// Locks the rows it reads (`FOR UPDATE`): servers starting at once seal each secret once.
    fn reseal_totp_secrets(&self, reseal: Reseal<'_>) -> Result<usize> {
        let fail = storage("reseal");
        let mut conn = self.conn()?;
        conn.batch("BEGIN").map_err(&fail)?;
        let result = (|| {
            let rows = conn.query("SELECT user_id, secret FROM auth_totp FOR UPDATE", &[]).map_err(&fail)?;
            let mut changed = 0;
            for row in rows {
                let user_id: String = row.try_get(0).map_err(&fail)?;
                let stored: Vec<u8> = row.try_get(1).map_err(&fail)?;
                if let Some(new) = reseal(&user_id, &stored)? {
                    conn.execute("UPDATE auth_totp SET secret = $2 WHERE user_id = $1", &[&user_id, &new])
                        .map_err(&fail)?;
                    changed += 1;
                }
            }
            Ok(changed)
        })();
        match result {
            Ok(changed) => {
                conn.batch("COMMIT").map_err(&fail)?;
                Ok(changed)
            }
            Err(e) => {
                let _ = conn.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// The row lock decides between concurrent uses of one code: the second re-reads the
    /// committed step and updates nothing.
    fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool> {
        let n = self
            .conn()?
            .execute(
                "UPDATE auth_totp SET last_step = $2 WHERE user_id = $1 AND (last_step IS NULL OR last_step < $2)",
                &[&user_id, &step],
            )
            .map_err(storage("use TOTP step"))?;
        Ok(n == 1)
    }

    fn insert_client(&self, client: &Client) -> Result<()> {
        let redirect_uris = serde_json::to_string(&client.redirect_uris).map_err(|e| Error::Invalid(e.to_string()))?;
        let jwks = client.jwks.as_ref().map(serde_json::Value::to_string);
        let result = self.conn()?.execute(
            "INSERT INTO auth_client (id, name, kind, secret_hash, redirect_uris, allowed_scopes, jwks, jwks_uri, \
             disabled, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &client.id,
                &client.name,
                &client.kind.as_str(),
                &client.secret_hash,
                &redirect_uris,
                &client.allowed_scopes,
                &jwks,
                &client.jwks_uri,
                &client.disabled,
                &client.created_at,
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::Conflict("a client with this id exists".into())),
            Err(e) => Err(storage("insert client")(e)),
        }
    }

    fn client(&self, id: &str) -> Result<Option<Client>> {
        const SQL: &str = concat!(select_client!(), " WHERE id = $1");
        let row = self.conn()?.query_opt(SQL, &[&id]).map_err(storage("read client"))?;
        row.as_ref().map(client_from_row).transpose()
    }

    fn clients(&self) -> Result<Vec<Client>> {
        const SQL: &str = concat!(select_client!(), " ORDER BY id");
        self.conn()?.query(SQL, &[]).map_err(storage("list clients"))?.iter().map(client_from_row).collect()
    }

    fn insert_code(&self, code: &CodeRecord) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO auth_code (hash, grant_id, client_id, redirect_uri, code_challenge, user_id, scope, \
                 patient, encounter, nonce, expires_at, used) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    &code.hash,
                    &code.grant_id,
                    &code.client_id,
                    &code.redirect_uri,
                    &code.code_challenge,
                    &code.user_id,
                    &code.scope,
                    &code.patient,
                    &code.encounter,
                    &code.nonce,
                    &code.expires_at,
                    &code.used,
                ],
            )
            .map_err(storage("insert code"))?;
        Ok(())
    }

    /// One statement: the subquery locks the row (`FOR UPDATE`; a second redeemer waits, then
    /// reads the committed `used = true`), the update marks it, and `RETURNING` answers the
    /// row as it was before.
    fn redeem_code(&self, hash: &str) -> Result<Option<CodeRecord>> {
        let row = self
            .conn()?
            .query_opt(
                "UPDATE auth_code AS c SET used = true \
                 FROM (SELECT hash, used FROM auth_code WHERE hash = $1 FOR UPDATE) AS old \
                 WHERE c.hash = old.hash \
                 RETURNING c.hash, c.grant_id, c.client_id, c.redirect_uri, c.code_challenge, c.user_id, c.scope, \
                 c.patient, c.encounter, c.nonce, c.expires_at, old.used",
                &[&hash],
            )
            .map_err(storage("redeem"))?;
        row.as_ref().map(code_from_row).transpose()
    }

    fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO auth_token (hash, kind, grant_id, client_id, user_id, scope, patient, encounter, \
                 issued_at, expires_at, revoked, last_used_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    &token.hash,
                    &token.kind.as_str(),
                    &token.grant_id,
                    &token.client_id,
                    &token.user_id,
                    &token.scope,
                    &token.patient,
                    &token.encounter,
                    &token.issued_at,
                    &token.expires_at,
                    &token.revoked,
                    &token.last_used_at,
                ],
            )
            .map_err(storage("insert token"))?;
        Ok(())
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT hash, kind, grant_id, client_id, user_id, scope, patient, encounter, issued_at, expires_at, \
                 revoked, last_used_at FROM auth_token WHERE hash = $1",
                &[&hash],
            )
            .map_err(storage("read token"))?;
        row.as_ref().map(token_from_row).transpose()
    }

    fn revoke_token(&self, hash: &str) -> Result<bool> {
        let n = self
            .conn()?
            .execute("UPDATE auth_token SET revoked = true WHERE hash = $1", &[&hash])
            .map_err(storage("revoke"))?;
        Ok(n > 0)
    }

    /// The row lock decides between concurrent retirements: the second re-reads `revoked`.
    fn retire_token(&self, hash: &str) -> Result<bool> {
        let n = self
            .conn()?
            .execute("UPDATE auth_token SET revoked = true WHERE hash = $1 AND NOT revoked", &[&hash])
            .map_err(storage("retire"))?;
        Ok(n == 1)
    }

    fn revoke_grant(&self, grant_id: &str) -> Result<()> {
        self.conn()?
            .execute("UPDATE auth_token SET revoked = true WHERE grant_id = $1", &[&grant_id])
            .map_err(storage("revoke"))?;
        Ok(())
    }

    fn touch_token(&self, hash: &str, at: i64) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE auth_token SET last_used_at = $2 WHERE hash = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
                &[&hash, &at],
            )
            .map_err(storage("touch token"))?;
        Ok(())
    }

    fn grant_last_used(&self, grant_id: &str) -> Result<Option<i64>> {
        let fail = storage("read grant");
        let row = self
            .conn()?
            .query_one(
                "SELECT max(coalesce(last_used_at, issued_at)) FROM auth_token WHERE grant_id = $1",
                &[&grant_id],
            )
            .map_err(&fail)?;
        row.try_get(0).map_err(&fail)
    }

    fn insert_launch(&self, launch: &LaunchContext) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO auth_launch (id, patient, encounter, expires_at) VALUES ($1, $2, $3, $4)",
                &[&launch.id, &launch.patient, &launch.encounter, &launch.expires_at],
            )
            .map_err(storage("insert launch"))?;
        Ok(())
    }

    fn launch(&self, id: &str) -> Result<Option<LaunchContext>> {
        let fail = storage("read launch");
        let row = self
            .conn()?
            .query_opt("SELECT id, patient, encounter, expires_at FROM auth_launch WHERE id = $1", &[&id])
            .map_err(&fail)?;
        row.map(|row| {
            Ok(LaunchContext {
                id: row.try_get(0).map_err(&fail)?,
                patient: row.try_get(1).map_err(&fail)?,
                encounter: row.try_get(2).map_err(&fail)?,
                expires_at: row.try_get(3).map_err(&fail)?,
            })
        })
        .transpose()
    }

    /// The primary key decides: of concurrent inserts of one `(client_id, jti)`, one inserts a
    /// row and the others, after waiting for it to commit, insert none.
    fn record_assertion_id(&self, client_id: &str, jti: &str, expires_at: i64) -> Result<bool> {
        let n = self
            .conn()?
            .execute(
                "INSERT INTO auth_assertion_id (client_id, jti, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (client_id, jti) DO NOTHING",
                &[&client_id, &jti, &expires_at],
            )
            .map_err(storage("record assertion"))?;
        Ok(n == 1)
    }

    fn purge_expired(&self, now: i64) -> Result<()> {
        let fail = storage("purge");
        let mut conn = self.conn()?;
        for sql in [
            "DELETE FROM auth_code WHERE expires_at < $1",
            "DELETE FROM auth_token WHERE expires_at < $1",
            "DELETE FROM auth_launch WHERE expires_at < $1",
            "DELETE FROM auth_assertion_id WHERE expires_at < $1",
        ] {
            conn.execute(sql, &[&now]).map_err(&fail)?;
        }
        Ok(())
    }
}
