//! The authorization server's store on PostgreSQL (`store_postgres::auth`), a scratch database
//! per test on the server named by `CONTINUUM_TEST_POSTGRES` (the tests fail when it is
//! unreachable): the checks of `store-behaviour` every `AuthStore` passes, then what only the
//! shared database gives: several authorities on one database share users, tokens and the
//! signing key.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use test_support::scratch;

use auth::model::TokenKind;
use auth::{AuthConfig, AuthStore};
use store_behaviour::auth::{race, staff, token, user};
use store_postgres::auth::{PostgresAuthStore, open_authority};

/// A fresh scratch database with the authorization tables.
fn store() -> (scratch::Database, PostgresAuthStore) {
    let database = scratch::Database::create();
    let store = PostgresAuthStore::connect(&database.url).unwrap();
    (database, store)
}

store_behaviour::auth_store_tests!(store);

#[test]
fn postgres_migrations_are_recorded_apart_and_reapplied_idempotently() {
    let database = scratch::Database::create();
    let first = PostgresAuthStore::connect(&database.url).unwrap();
    let latest = PostgresAuthStore::latest_schema_version();
    assert!(latest >= 1);
    assert_eq!(first.schema_version().unwrap(), latest);
    first.insert_user(&user("u1", "doc", staff())).unwrap();
    let again = PostgresAuthStore::connect(&database.url).unwrap();
    assert_eq!(again.schema_version().unwrap(), latest);
    assert_eq!(again.count_users().unwrap(), 1, "reconnecting keeps the data");

    let mut admin = postgres::Client::connect(&database.url, postgres::NoTls).unwrap();
    let tables: Vec<String> = admin
        .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.iter().all(|t| t.starts_with("auth_")), "own prefix, no continuum_migration: {tables:?}");
    assert!(tables.contains(&"auth_migration".to_string()));
}

#[test]
fn postgres_errors_name_the_sqlstate_not_the_values() {
    let database = scratch::Database::create();
    let store = PostgresAuthStore::connect(&database.url).unwrap();
    let secret = "hash-of-a-very-secret-token";
    store.insert_token(&token(secret, TokenKind::Access, "g", 2_000_000_000)).unwrap();
    let message = store.insert_token(&token(secret, TokenKind::Access, "g", 2_000_000_000)).unwrap_err().to_string();
    assert!(message.contains("23505"), "{message}");
    assert!(!message.contains(secret) && !message.contains("auth_token_pkey"), "{message}");

    let unreachable = PostgresAuthStore::connect("postgres://nobody:hunter2-password@127.0.0.1:1/db");
    let message = unreachable.err().expect("port 1 does not answer").to_string();
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn authorities_sharing_a_database_share_users_tokens_and_the_signing_key() {
    let database = scratch::Database::create();
    let config = || AuthConfig::new("http://127.0.0.1:8080/fhir");
    let keys = tempfile::tempdir().unwrap();
    let secrets_key = keys.path().join(auth::SECRETS_KEY_FILE);
    // Nodes starting at once on an empty database: one administrator, one key.
    let opened = race(|| open_authority(&database.url, &secrets_key, config()).unwrap());
    let passwords = opened.iter().filter(|(_, first)| first.is_some()).count();
    assert_eq!(passwords, 1, "exactly one node creates the administrator and prints its password");
    let jwks = opened[0].0.jwks();
    assert!(opened.iter().all(|(a, _)| a.jwks() == jwks), "every node signs with the same key");
    let (one, two) = (&opened[1].0, &opened[2].0);

    let (doc, _) = one
        .add_user(auth::NewUser {
            username: "doc".into(),
            identity: staff(),
            password: Some("a long enough password".into()),
        })
        .unwrap();
    let minted = two.mint_token("doc", "user/*.rs", None, 600).unwrap();
    let principal = one.validate_bearer(&minted.access_token).unwrap();
    assert_eq!(principal.subject, auth::Subject::User { id: doc.id, username: "doc".into(), identity: staff() });
    one.disable_user("doc").unwrap();
    assert!(two.validate_bearer(&minted.access_token).is_err(), "disabling on one node takes effect on the other");
    drop(opened);

    let (reopened, first) = open_authority(&database.url, &secrets_key, config()).unwrap();
    assert!(first.is_none(), "no second administrator");
    assert_eq!(reopened.jwks(), jwks, "the key outlives the processes");
}
