//! The authorization server's store on SQLite (`store_sqlite::auth`): the checks of
//! `store-behaviour` every `AuthStore` passes, then the upgrade of an `auth.db` of an earlier
//! schema.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use auth::AuthStore;
use store_sqlite::auth::{AUTH_DATABASE_FILE, SqliteAuthStore};
use tempfile::TempDir;

/// A fresh `auth.db` in a temporary directory.
fn store() -> (TempDir, SqliteAuthStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteAuthStore::open(dir.path()).unwrap();
    (dir, store)
}

store_behaviour::auth_store_tests!(store);

#[test]
fn an_auth_db_of_schema_1_is_upgraded_with_its_users_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The tables of schema 1 that schema 2 changes, as they shipped.
        let conn = rusqlite::Connection::open(dir.path().join(AUTH_DATABASE_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, identity TEXT NOT NULL,
                 password_hash TEXT NOT NULL, must_change_password INTEGER NOT NULL, password_expires_at INTEGER,
                 disabled INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL);
             CREATE TABLE tokens (hash TEXT PRIMARY KEY, kind TEXT NOT NULL, grant_id TEXT NOT NULL, client_id TEXT,
                 user_id TEXT, scope TEXT NOT NULL, patient TEXT, encounter TEXT, issued_at INTEGER NOT NULL,
                 expires_at INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
             INSERT INTO users VALUES ('u1', 'doc', '{\"kind\":\"patient\",\"patient\":\"p-1\"}', '$argon2id$x', 0,
                 NULL, 0, 1700000000);
             INSERT INTO tokens VALUES ('t1', 'access_token', 'g1', NULL, 'u1', 'patient/*.rs', NULL, NULL,
                 1700000000, 2000000000, 0);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = SqliteAuthStore::open(dir.path()).unwrap();
    let doc = store.user_by_username("doc").unwrap().unwrap();
    assert_eq!((doc.failed_sign_ins, doc.locked_until), (0, None));
    assert_eq!(store.token("t1").unwrap().unwrap().last_used_at, None);
    assert_eq!(store.record_failed_sign_in("u1", 1_800_000_000, 5, 900).unwrap(), None);
    store.set_totp_secret("u1", Some(b"a secret of 20 bytes"), 1_800_000_000).unwrap();
    assert!(store.totp_secret("u1").unwrap().is_some());
}
