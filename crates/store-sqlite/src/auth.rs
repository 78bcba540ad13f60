//! The authorization server's [`AuthStore`] on its own SQLite file, `auth.db` in the data
//! directory, with its own migrations. A separate file keeps credentials out of the record
//! database (and out of its backups and exports) and lets the two schemas evolve independently.

use ::auth::model::{Client, ClientKind, CodeRecord, Identity, LaunchContext, TokenKind, TokenRecord, User};
use ::auth::{AuthConfig, AuthStore, Authority, Error, OneTimePassword, Reseal, Result, SecretsKey, ServerKey};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Name of the database file inside the data directory.
pub const AUTH_DATABASE_FILE: &str = "auth.db";

/// Opens the authority of data directory `dir` (`auth.db`, the signing key, the secrets key
/// `secrets.key`, each created at first start). On first start it creates the administrator
/// `admin` and returns its one-time password, which the caller prints once.
pub fn open_authority(dir: &Path, config: AuthConfig) -> Result<(Authority, Option<OneTimePassword>)> {
    open_authority_with_secrets_key(dir, &dir.join(::auth::SECRETS_KEY_FILE), config)
}

/// [`open_authority`] with the secrets key in the file `secrets_key` (created if absent) rather
/// than in the data directory.
pub fn open_authority_with_secrets_key(
    dir: &Path,
    secrets_key: &Path,
    config: AuthConfig,
) -> Result<(Authority, Option<OneTimePassword>)> {
    let store = Arc::new(SqliteAuthStore::open(dir)?);
    let key = ServerKey::load_or_create(dir)?;
    let secrets = SecretsKey::load_or_create(secrets_key)?;
    Authority::start(store, key, secrets, config)
}

/// Each entry brings the schema from version `i` to `i + 1`; append only.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    identity TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    must_change_password INTEGER NOT NULL,
    password_expires_at INTEGER,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    secret_hash TEXT,
    redirect_uris TEXT NOT NULL,
    allowed_scopes TEXT NOT NULL,
    jwks TEXT,
    jwks_uri TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE codes (
    hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    patient TEXT,
    encounter TEXT,
    nonce TEXT,
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    client_id TEXT,
    user_id TEXT,
    scope TEXT NOT NULL,
    patient TEXT,
    encounter TEXT,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tokens_grant ON tokens(grant_id);
CREATE TABLE launches (
    id TEXT PRIMARY KEY,
    patient TEXT,
    encounter TEXT,
    expires_at INTEGER NOT NULL
);
CREATE TABLE assertion_ids (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
",
    r"
ALTER TABLE users ADD COLUMN failed_sign_ins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until INTEGER;
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;
CREATE TABLE totp_secrets (
    user_id TEXT PRIMARY KEY,
    secret BLOB NOT NULL,
    last_step INTEGER,
    enrolled_at INTEGER NOT NULL
);
",
];

/// The SQLite [`AuthStore`]: a few connections, each behind a mutex (every FHIR request
/// checks its token here, so one connection was the bottleneck of an authorized server); a
/// method holds one connection for its whole work, and SQLite orders the writers.
pub struct SqliteAuthStore {
    conns: Vec<Mutex<Connection>>,
    next: std::sync::atomic::AtomicUsize,
}

/// Connections of an auth store.
const CONNECTIONS: usize = 4;

fn storage(what: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::Storage(format!("{what}: {e}"))
}

impl SqliteAuthStore {
    /// Opens (creating if needed) `dir/auth.db`, bringing its schema up to date.
    pub fn open(dir: &Path) -> Result<SqliteAuthStore> {
        std::fs::create_dir_all(dir)?;
        let mut conn = Connection::open(dir.join(AUTH_DATABASE_FILE)).map_err(storage("open"))?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(storage("configure"))?;
        conn.pragma_update(None, "journal_mode", "wal").map_err(storage("configure"))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(storage("configure"))?;
        // Deleted and overwritten content is zeroed, not left in free space: secrets replaced
        // (a re-enrolment, the sealing of an old clear-text secret) leave no copy behind.
        conn.pragma_update(None, "secure_delete", "ON").map_err(storage("configure"))?;
        migrate(&mut conn)?;
        let mut conns = vec![Mutex::new(conn)];
        for _ in 1..CONNECTIONS {
            let conn = Connection::open(dir.join(AUTH_DATABASE_FILE)).map_err(storage("open"))?;
            conn.busy_timeout(Duration::from_secs(10)).map_err(storage("configure"))?;
            conn.pragma_update(None, "synchronous", "FULL").map_err(storage("configure"))?;
            conn.pragma_update(None, "secure_delete", "ON").map_err(storage("configure"))?;
            conns.push(Mutex::new(conn));
        }
        Ok(SqliteAuthStore { conns, next: std::sync::atomic::AtomicUsize::new(0) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..self.conns.len() {
            if let Ok(guard) = self.conns[(start + i) % self.conns.len()].try_lock() {
                return guard;
            }
        }
        // A panic while holding the lock leaves no half-done SQLite work behind (each
        // statement is atomic), so a poisoned lock is safe to reuse.
        self.conns[start % self.conns.len()].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(storage("migrate"))?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(storage("migrate"))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(Error::Storage("auth.db was written by a newer Continuum".into()));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql).map_err(storage("migrate"))?;
        tx.pragma_update(None, "user_version", i64::try_from(i + 1).unwrap_or(i64::MAX)).map_err(storage("migrate"))?;
    }
    tx.commit().map_err(storage("migrate"))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

const USER_COLUMNS: &str = "id, username, identity, password_hash, must_change_password, password_expires_at, \
                            disabled, created_at, failed_sign_ins, locked_until";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    let identity: String = row.get(2)?;
    let identity: Identity = serde_json::from_str(&identity)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        identity,
        password_hash: row.get(3)?,
        must_change_password: row.get(4)?,
        password_expires_at: row.get(5)?,
        disabled: row.get(6)?,
        created_at: row.get(7)?,
        failed_sign_ins: row.get(8)?,
        locked_until: row.get(9)?,
    })
}

const CLIENT_COLUMNS: &str =
    "id, name, kind, secret_hash, redirect_uris, allowed_scopes, jwks, jwks_uri, disabled, created_at";

fn client_from_row(row: &Row<'_>) -> rusqlite::Result<Client> {
    let bad = |i: usize, e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e)
    };
    let kind: String = row.get(2)?;
    let redirect_uris: String = row.get(4)?;
    let jwks: Option<String> = row.get(6)?;
    Ok(Client {
        id: row.get(0)?,
        name: row.get(1)?,
        kind: kind.parse::<ClientKind>().map_err(|e| bad(2, Box::new(e)))?,
        secret_hash: row.get(3)?,
        redirect_uris: serde_json::from_str(&redirect_uris).map_err(|e| bad(4, Box::new(e)))?,
        allowed_scopes: row.get(5)?,
        jwks: jwks.map(|j| serde_json::from_str(&j)).transpose().map_err(|e| bad(6, Box::new(e)))?,
        jwks_uri: row.get(7)?,
        disabled: row.get(8)?,
        created_at: row.get(9)?,
    })
}

const CODE_COLUMNS: &str = "hash, grant_id, client_id, redirect_uri, code_challenge, user_id, scope, patient, \
                            encounter, nonce, expires_at, used";

fn code_from_row(row: &Row<'_>) -> rusqlite::Result<CodeRecord> {
    Ok(CodeRecord {
        hash: row.get(0)?,
        grant_id: row.get(1)?,
        client_id: row.get(2)?,
        redirect_uri: row.get(3)?,
        code_challenge: row.get(4)?,
        user_id: row.get(5)?,
        scope: row.get(6)?,
        patient: row.get(7)?,
        encounter: row.get(8)?,
        nonce: row.get(9)?,
        expires_at: row.get(10)?,
        used: row.get(11)?,
    })
}

const TOKEN_COLUMNS: &str =
    "hash, kind, grant_id, client_id, user_id, scope, patient, encounter, issued_at, expires_at, revoked, last_used_at";

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let kind: String = row.get(1)?;
    Ok(TokenRecord {
        hash: row.get(0)?,
        kind: if kind == TokenKind::Refresh.as_str() { TokenKind::Refresh } else { TokenKind::Access },
        grant_id: row.get(2)?,
        client_id: row.get(3)?,
        user_id: row.get(4)?,
        scope: row.get(5)?,
        patient: row.get(6)?,
        encounter: row.get(7)?,
        issued_at: row.get(8)?,
        expires_at: row.get(9)?,
        revoked: row.get(10)?,
        last_used_at: row.get(11)?,
    })
}

impl AuthStore for SqliteAuthStore {
    fn insert_user(&self, user: &User) -> Result<()> {
        let identity = serde_json::to_string(&user.identity).map_err(|e| Error::Invalid(e.to_string()))?;
        let result = self.conn().execute(
            &format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            params![
                user.id,
                user.username,
                identity,
                user.password_hash,
                user.must_change_password,
                user.password_expires_at,
                user.disabled,
                user.created_at,
                user.failed_sign_ins,
                user.locked_until
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::Conflict("a user with this username exists".into())),
            Err(e) => Err(storage("insert user")(e)),
        }
    }

    fn user_by_username(&self, username: &str) -> Result<Option<User>> {
        self.conn()
            .query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"), [username], user_from_row)
            .optional()
            .map_err(storage("read user"))
    }

    fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        self.conn()
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))
            .and_then(|mut s| s.query_row([id], user_from_row))
            .optional()
            .map_err(storage("read user"))
    }

    fn users(&self) -> Result<Vec<User>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"))
            .map_err(storage("list users"))?;
        stmt.query_map([], user_from_row).and_then(|rows| rows.collect()).map_err(storage("list users"))
    }

    fn count_users(&self) -> Result<u64> {
        let n: i64 =
            self.conn().query_row("SELECT count(*) FROM users", [], |r| r.get(0)).map_err(storage("count users"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<bool> {
        let n = self
            .conn()
            .execute("UPDATE users SET disabled = ?2 WHERE username = ?1", params![username, disabled])
            .map_err(storage("disable user"))?;
        Ok(n > 0)
    }

    fn set_password(&self, user_id: &str, hash: &str, must_change: bool, expires_at: Option<i64>) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE users SET password_hash = ?2, must_change_password = ?3, password_expires_at = ?4 \
                 WHERE id = ?1",
                params![user_id, hash, must_change, expires_at],
            )
            .map_err(storage("set password"))?;
        Ok(())
    }

    fn record_failed_sign_in(&self, user_id: &str, now: i64, limit: u32, lock_seconds: i64) -> Result<Option<i64>> {
        // One statement, so that it is atomic across processes sharing the file; a count
        // starting again at 0 is this failure's lock.
        let after: Option<(u32, Option<i64>)> = self
            .conn()
            .query_row(
                "UPDATE users SET \
                 failed_sign_ins = CASE WHEN failed_sign_ins + 1 >= ?2 THEN 0 ELSE failed_sign_ins + 1 END, \
                 locked_until = CASE WHEN failed_sign_ins + 1 >= ?2 THEN ?3 ELSE locked_until END \
                 WHERE id = ?1 RETURNING failed_sign_ins, locked_until",
                params![user_id, limit, now + lock_seconds],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(storage("count failed sign-in"))?;
        Ok(after.and_then(|(count, until)| if count == 0 { until } else { None }))
    }

    fn clear_failed_sign_ins(&self, user_id: &str) -> Result<()> {
        self.conn()
            .execute("UPDATE users SET failed_sign_ins = 0, locked_until = NULL WHERE id = ?1", [user_id])
            .map_err(storage("clear failed sign-ins"))?;
        Ok(())
    }

    fn set_totp_secret(&self, user_id: &str, secret: Option<&[u8]>, now: i64) -> Result<()> {
        let conn = self.conn();
        match secret {
            Some(secret) => conn.execute(
                "INSERT INTO totp_secrets (user_id, secret, last_step, enrolled_at) VALUES (?1, ?2, NULL, ?3) \
                 ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, last_step = NULL, \
                 enrolled_at = excluded.enrolled_at",
                params![user_id, secret, now],
            ),
            None => conn.execute("DELETE FROM totp_secrets WHERE user_id = ?1", [user_id]),
        }
        .map_err(storage("set TOTP secret"))?;
        Ok(())
    }

    fn totp_secret(&self, user_id: &str) -> Result<Option<Vec<u8>>> {
        self.conn()
            .query_row("SELECT secret FROM totp_secrets WHERE user_id = ?1", [user_id], |r| r.get(0))
            .optional()
            .map_err(storage("read TOTP secret"))
    }

    fn reseal_totp_secrets(&self, reseal: Reseal<'_>) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(storage("reseal"))?;
        let rows: Vec<(String, Vec<u8>)> = {
            let mut stmt = tx.prepare("SELECT user_id, secret FROM totp_secrets").map_err(storage("reseal"))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(storage("reseal"))?
        };
        let mut changed = 0;
        for (user_id, stored) in rows {
            if let Some(new) = reseal(&user_id, &stored)? {
                tx.execute("UPDATE totp_secrets SET secret = ?2 WHERE user_id = ?1", params![user_id, new])
                    .map_err(storage("reseal"))?;
                changed += 1;
            }
        }
        tx.commit().map_err(storage("reseal"))?;
        if changed > 0 {
            // The old values must leave the files: `secure_delete` zeroed the space they held
            // in the pages, and the checkpoint writes the pages back and empties the WAL.
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(storage("checkpoint"))?;
        }
        Ok(changed)
    }

    fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE totp_secrets SET last_step = ?2 WHERE user_id = ?1 AND (last_step IS NULL OR last_step < ?2)",
                params![user_id, step],
            )
            .map_err(storage("use TOTP step"))?;
        Ok(n == 1)
    }

    fn insert_client(&self, client: &Client) -> Result<()> {
        let redirect_uris = serde_json::to_string(&client.redirect_uris).map_err(|e| Error::Invalid(e.to_string()))?;
        let jwks = client.jwks.as_ref().map(serde_json::Value::to_string);
        let result = self.conn().execute(
            &format!("INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            params![
                client.id,
                client.name,
                client.kind.as_str(),
                client.secret_hash,
                redirect_uris,
                client.allowed_scopes,
                jwks,
                client.jwks_uri,
                client.disabled,
                client.created_at
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::Conflict("a client with this id exists".into())),
            Err(e) => Err(storage("insert client")(e)),
        }
    }

    fn client(&self, id: &str) -> Result<Option<Client>> {
        self.conn()
            .prepare_cached(&format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE id = ?1"))
            .and_then(|mut s| s.query_row([id], client_from_row))
            .optional()
            .map_err(storage("read client"))
    }

    fn clients(&self) -> Result<Vec<Client>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY id"))
            .map_err(storage("list clients"))?;
        stmt.query_map([], client_from_row).and_then(|rows| rows.collect()).map_err(storage("list clients"))
    }

    fn insert_code(&self, code: &CodeRecord) -> Result<()> {
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO codes ({CODE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                ),
                params![
                    code.hash,
                    code.grant_id,
                    code.client_id,
                    code.redirect_uri,
                    code.code_challenge,
                    code.user_id,
                    code.scope,
                    code.patient,
                    code.encounter,
                    code.nonce,
                    code.expires_at,
                    code.used
                ],
            )
            .map_err(storage("insert code"))?;
        Ok(())
    }

    fn redeem_code(&self, hash: &str) -> Result<Option<CodeRecord>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(storage("redeem"))?;
        let code = tx
            .query_row(&format!("SELECT {CODE_COLUMNS} FROM codes WHERE hash = ?1"), [hash], code_from_row)
            .optional()
            .map_err(storage("redeem"))?;
        if code.is_some() {
            tx.execute("UPDATE codes SET used = 1 WHERE hash = ?1", [hash]).map_err(storage("redeem"))?;
        }
        tx.commit().map_err(storage("redeem"))?;
        Ok(code)
    }

    fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                ),
                params![
                    token.hash,
                    token.kind.as_str(),
                    token.grant_id,
                    token.client_id,
                    token.user_id,
                    token.scope,
                    token.patient,
                    token.encounter,
                    token.issued_at,
                    token.expires_at,
                    token.revoked,
                    token.last_used_at
                ],
            )
            .map_err(storage("insert token"))?;
        Ok(())
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        self.conn()
            .prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"))
            .and_then(|mut s| s.query_row([hash], token_from_row))
            .optional()
            .map_err(storage("read token"))
    }

    fn revoke_token(&self, hash: &str) -> Result<bool> {
        let n =
            self.conn().execute("UPDATE tokens SET revoked = 1 WHERE hash = ?1", [hash]).map_err(storage("revoke"))?;
        Ok(n > 0)
    }

    fn retire_token(&self, hash: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("UPDATE tokens SET revoked = 1 WHERE hash = ?1 AND revoked = 0", [hash])
            .map_err(storage("retire"))?;
        Ok(n == 1)
    }

    fn revoke_grant(&self, grant_id: &str) -> Result<()> {
        self.conn()
            .execute("UPDATE tokens SET revoked = 1 WHERE grant_id = ?1", [grant_id])
            .map_err(storage("revoke"))?;
        Ok(())
    }

    fn touch_token(&self, hash: &str, at: i64) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE tokens SET last_used_at = ?2 WHERE hash = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
                params![hash, at],
            )
            .map_err(storage("touch token"))?;
        Ok(())
    }

    fn grant_last_used(&self, grant_id: &str) -> Result<Option<i64>> {
        self.conn()
            .query_row(
                "SELECT max(coalesce(last_used_at, issued_at)) FROM tokens WHERE grant_id = ?1",
                [grant_id],
                |r| r.get(0),
            )
            .map_err(storage("read grant"))
    }

    fn insert_launch(&self, launch: &LaunchContext) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO launches (id, patient, encounter, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![launch.id, launch.patient, launch.encounter, launch.expires_at],
            )
            .map_err(storage("insert launch"))?;
        Ok(())
    }

    fn launch(&self, id: &str) -> Result<Option<LaunchContext>> {
        self.conn()
            .query_row("SELECT id, patient, encounter, expires_at FROM launches WHERE id = ?1", [id], |row| {
                Ok(LaunchContext {
                    id: row.get(0)?,
                    patient: row.get(1)?,
                    encounter: row.get(2)?,
                    expires_at: row.get(3)?,
                })
            })
            .optional()
            .map_err(storage("read launch"))
    }

    fn record_assertion_id(&self, client_id: &str, jti: &str, expires_at: i64) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "INSERT OR IGNORE INTO assertion_ids (client_id, jti, expires_at) VALUES (?1, ?2, ?3)",
                params![client_id, jti, expires_at],
            )
            .map_err(storage("record assertion"))?;
        Ok(n == 1)
    }

    fn purge_expired(&self, now: i64) -> Result<()> {
        let conn = self.conn();
        conn.execute_batch(&format!(
            "DELETE FROM codes WHERE expires_at < {now};
             DELETE FROM tokens WHERE expires_at < {now};
             DELETE FROM launches WHERE expires_at < {now};
             DELETE FROM assertion_ids WHERE expires_at < {now};"
        ))
        .map_err(storage("purge"))
    }
}
