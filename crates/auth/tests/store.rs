//! The behaviour every [`AuthStore`] must have, run on SQLite (a temporary directory) and on
//! PostgreSQL (a scratch database per test on the server named by `CONTINUUM_TEST_POSTGRES`;
//! the PostgreSQL tests fail when it is unreachable). Then what only the shared database
//! gives: several authorities on one database share users, tokens and the signing key.

use auth::model::{CodeRecord, LaunchContext, TokenKind, TokenRecord};
use auth::{AuthConfig, AuthStore, Authority, Client, ClientKind, Error, Identity, Role, User};
use std::sync::Barrier;

use test_support::scratch;

/// Threads racing in the concurrency checks (the PostgreSQL pool opens up to 8 connections).
const RACERS: usize = 8;
/// Rounds of each race, each on a fresh code or jti.
const ROUNDS: usize = 10;

fn user(id: &str, username: &str, identity: Identity) -> User {
    User {
        id: id.into(),
        username: username.into(),
        identity,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        must_change_password: true,
        password_expires_at: Some(1_900_000_000),
        disabled: false,
        created_at: 1_700_000_000,
        failed_sign_ins: 0,
        locked_until: None,
    }
}

fn staff() -> Identity {
    Identity::Staff {
        roles: vec![Role::Physician, Role::Administrator],
        organizations: vec!["org-1".into(), "org-2".into()],
        practitioner: Some("prac-1".into()),
        practitioner_roles: vec!["role-1".into()],
    }
}

fn client(id: &str) -> Client {
    Client {
        id: id.into(),
        name: format!("App {id}"),
        kind: ClientKind::Confidential,
        secret_hash: Some("abc123".into()),
        redirect_uris: vec!["https://app.example/cb".into(), "http://127.0.0.1/cb".into()],
        allowed_scopes: "openid patient/*.rs".into(),
        jwks: Some(serde_json::json!({"keys": [{"kty": "EC", "crv": "P-384", "x": "a", "y": "b"}]})),
        jwks_uri: None,
        disabled: false,
        created_at: 1_700_000_001,
    }
}

fn code(hash: &str, expires_at: i64) -> CodeRecord {
    CodeRecord {
        hash: hash.into(),
        grant_id: format!("grant-{hash}"),
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        user_id: "u1".into(),
        scope: "openid patient/*.rs".into(),
        patient: Some("pat-1".into()),
        encounter: None,
        nonce: Some("n-0S6_WzA2Mj".into()),
        expires_at,
        used: false,
    }
}

fn token(hash: &str, kind: TokenKind, grant_id: &str, expires_at: i64) -> TokenRecord {
    TokenRecord {
        hash: hash.into(),
        kind,
        grant_id: grant_id.into(),
        client_id: Some("app".into()),
        user_id: Some("u1".into()),
        scope: "patient/*.rs".into(),
        patient: Some("pat-1".into()),
        encounter: Some("enc-1".into()),
        issued_at: 1_700_000_000,
        expires_at,
        revoked: false,
        last_used_at: None,
    }
}

fn users_are_kept_and_usernames_unique(store: &dyn AuthStore) {
    assert_eq!(store.count_users().unwrap(), 0);
    assert_eq!(store.user_by_username("doc").unwrap(), None);
    let doc = user("u1", "doc", staff());
    store.insert_user(&doc).unwrap();
    assert_eq!(store.user_by_username("doc").unwrap().as_ref(), Some(&doc));
    assert_eq!(store.user_by_id("u1").unwrap().as_ref(), Some(&doc));
    assert_eq!(store.user_by_id("u2").unwrap(), None);

    match store.insert_user(&user("u2", "doc", Identity::Patient { patient: "p".into() })) {
        Err(Error::Conflict(message)) => assert!(!message.contains("doc"), "no value in the message: {message}"),
        other => panic!("a taken username is a conflict, got {other:?}"),
    }

    let mut patient = user("u3", "alice", Identity::Patient { patient: "pat-1".into() });
    patient.password_expires_at = None;
    patient.must_change_password = false;
    // A copied user (`continuum migrate`) keeps its lock-out state.
    let proxy = User {
        failed_sign_ins: 3,
        locked_until: Some(1_800_000_000),
        ..user("u4", "Zed", Identity::Proxy { related_person: "rp-1".into(), patient: "pat-1".into() })
    };
    store.insert_user(&patient).unwrap();
    store.insert_user(&proxy).unwrap();
    assert_eq!(store.count_users().unwrap(), 3);
    // By code point, as SQLite compares: capitals first.
    let names: Vec<String> = store.users().unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["Zed", "alice", "doc"]);
    assert_eq!(store.user_by_username("alice").unwrap().as_ref(), Some(&patient));
    assert_eq!(store.user_by_username("Zed").unwrap().as_ref(), Some(&proxy));
    assert_eq!(store.user_by_username("zed").unwrap(), None, "usernames are case-sensitive");

    assert!(store.set_user_disabled("doc", true).unwrap());
    assert!(store.user_by_id("u1").unwrap().unwrap().disabled);
    assert!(store.set_user_disabled("doc", false).unwrap());
    assert!(!store.user_by_id("u1").unwrap().unwrap().disabled);
    assert!(!store.set_user_disabled("nobody", true).unwrap());

    store.set_password("u1", "$argon2id$new", false, None).unwrap();
    let changed = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!(
        (changed.password_hash.as_str(), changed.must_change_password, changed.password_expires_at),
        ("$argon2id$new", false, None)
    );
    store.set_password("u3", "$argon2id$otp", true, Some(42)).unwrap();
    let reset = store.user_by_id("u3").unwrap().unwrap();
    assert_eq!((reset.must_change_password, reset.password_expires_at), (true, Some(42)));
    assert_eq!(store.user_by_id("u1").unwrap().unwrap().password_hash, "$argon2id$new", "only that user changed");
}

fn clients_are_kept_and_ids_unique(store: &dyn AuthStore) {
    assert_eq!(store.client("app").unwrap(), None);
    let app = client("app");
    store.insert_client(&app).unwrap();
    assert_eq!(store.client("app").unwrap().as_ref(), Some(&app));
    match store.insert_client(&client("app")) {
        Err(Error::Conflict(_)) => {}
        other => panic!("a taken client id is a conflict, got {other:?}"),
    }
    let public = Client {
        kind: ClientKind::Public,
        secret_hash: None,
        jwks: None,
        jwks_uri: Some("https://backend.example/jwks".into()),
        redirect_uris: Vec::new(),
        disabled: true,
        ..client("Backend")
    };
    store.insert_client(&public).unwrap();
    assert_eq!(store.client("Backend").unwrap().as_ref(), Some(&public));
    let ids: Vec<String> = store.clients().unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["Backend", "app"]);
}

fn codes_are_redeemed_once(store: &dyn AuthStore) {
    let issued = code("c1", 2_000_000_000);
    store.insert_code(&issued).unwrap();
    assert_eq!(store.redeem_code("c1").unwrap().as_ref(), Some(&issued), "the first redemption sees it unused");
    let replayed = store.redeem_code("c1").unwrap().unwrap();
    assert!(replayed.used, "a second redemption is told it was used");
    assert_eq!(CodeRecord { used: false, ..replayed }, issued, "and still gets the rest, to revoke its grant");
    assert_eq!(store.redeem_code("unknown").unwrap(), None);
    let duplicate = store.insert_code(&code("c1", 2_000_000_000));
    match duplicate {
        Err(Error::Storage(message)) => assert!(!message.contains("c1"), "no value in the message: {message}"),
        other => panic!("a code is stored once, got {other:?}"),
    }
}

fn tokens_are_kept_and_revoked(store: &dyn AuthStore) {
    let access = token("t1", TokenKind::Access, "g1", 2_000_000_000);
    let refresh = TokenRecord {
        client_id: None,
        patient: None,
        encounter: None,
        ..token("t2", TokenKind::Refresh, "g1", 2_100_000_000)
    };
    let other = TokenRecord { user_id: None, ..token("t3", TokenKind::Access, "g2", 2_000_000_000) };
    for t in [&access, &refresh, &other] {
        store.insert_token(t).unwrap();
    }
    assert_eq!(store.token("t1").unwrap().as_ref(), Some(&access));
    assert_eq!(store.token("t2").unwrap().as_ref(), Some(&refresh));
    assert_eq!(store.token("t3").unwrap().as_ref(), Some(&other));
    assert_eq!(store.token("t4").unwrap(), None);

    assert!(store.revoke_token("t3").unwrap());
    assert!(!store.revoke_token("t4").unwrap());
    assert!(store.token("t3").unwrap().unwrap().revoked);
    assert!(!store.token("t1").unwrap().unwrap().revoked);

    store.revoke_grant("g1").unwrap();
    assert!(store.token("t1").unwrap().unwrap().revoked);
    assert!(store.token("t2").unwrap().unwrap().revoked);
    store.revoke_grant("no-such-grant").unwrap();
}

fn launches_and_assertion_ids(store: &dyn AuthStore) {
    let launch = LaunchContext {
        id: "l1".into(),
        patient: Some("pat-1".into()),
        encounter: Some("enc-1".into()),
        expires_at: 2_000_000_000,
    };
    store.insert_launch(&launch).unwrap();
    let bare = LaunchContext { id: "l2".into(), patient: None, encounter: None, expires_at: 2_000_000_000 };
    store.insert_launch(&bare).unwrap();
    assert_eq!(store.launch("l1").unwrap().as_ref(), Some(&launch));
    assert_eq!(store.launch("l2").unwrap().as_ref(), Some(&bare));
    assert_eq!(store.launch("l3").unwrap(), None);

    assert!(store.record_assertion_id("backend", "jti-1", 2_000_000_000).unwrap());
    assert!(!store.record_assertion_id("backend", "jti-1", 2_000_000_000).unwrap(), "a replay");
    assert!(store.record_assertion_id("other", "jti-1", 2_000_000_000).unwrap(), "jti are per client");
}

fn expired_records_are_purged(store: &dyn AuthStore) {
    let now = 1_800_000_000;
    store.insert_user(&user("u1", "doc", staff())).unwrap();
    store.insert_client(&client("app")).unwrap();
    store.insert_code(&code("old", now - 1)).unwrap();
    store.insert_code(&code("new", now)).unwrap();
    store.insert_token(&token("old", TokenKind::Access, "g", now - 1)).unwrap();
    store.insert_token(&token("new", TokenKind::Refresh, "g", now + 1)).unwrap();
    store
        .insert_launch(&LaunchContext { id: "old".into(), patient: None, encounter: None, expires_at: now - 10 })
        .unwrap();
    store.insert_launch(&LaunchContext { id: "new".into(), patient: None, encounter: None, expires_at: now }).unwrap();
    assert!(store.record_assertion_id("app", "old", now - 1).unwrap());
    assert!(store.record_assertion_id("app", "new", now).unwrap());

    store.purge_expired(now).unwrap();

    assert_eq!(store.redeem_code("old").unwrap(), None);
    assert!(store.redeem_code("new").unwrap().is_some());
    assert_eq!(store.token("old").unwrap(), None);
    assert!(store.token("new").unwrap().is_some());
    assert_eq!(store.launch("old").unwrap(), None);
    assert!(store.launch("new").unwrap().is_some());
    assert!(store.record_assertion_id("app", "old", now + 100).unwrap(), "a purged jti is forgotten");
    assert!(!store.record_assertion_id("app", "new", now + 100).unwrap(), "an unexpired one is remembered");
    assert_eq!(store.count_users().unwrap(), 1, "users stay");
    assert!(store.client("app").unwrap().is_some(), "clients stay");
}

fn failed_sign_ins_lock_the_account_and_success_clears_them(store: &dyn AuthStore) {
    let now = 1_800_000_000;
    store.insert_user(&user("u1", "doc", staff())).unwrap();
    store.insert_user(&user("u2", "nurse", staff())).unwrap();
    for n in 1..5 {
        assert_eq!(store.record_failed_sign_in("u1", now, 5, 900).unwrap(), None, "failure {n} does not lock");
    }
    let counted = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!((counted.failed_sign_ins, counted.locked_until), (4, None));
    assert_eq!(store.record_failed_sign_in("u1", now, 5, 900).unwrap(), Some(now + 900), "the fifth locks");
    let locked = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!((locked.failed_sign_ins, locked.locked_until), (0, Some(now + 900)), "the count starts again");
    assert_eq!(store.user_by_id("u2").unwrap().unwrap().failed_sign_ins, 0, "counted per user");
    store.record_failed_sign_in("u2", now, 5, 900).unwrap();
    store.clear_failed_sign_ins("u1").unwrap();
    let cleared = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!((cleared.failed_sign_ins, cleared.locked_until), (0, None));
    assert_eq!(store.user_by_id("u2").unwrap().unwrap().failed_sign_ins, 1, "only that user is cleared");
    assert_eq!(store.record_failed_sign_in("nobody", now, 5, 900).unwrap(), None);
}

fn totp_secrets_are_kept_and_each_step_used_once(store: &dyn AuthStore) {
    store.insert_user(&user("u1", "doc", staff())).unwrap();
    assert_eq!(store.totp_secret("u1").unwrap(), None);
    store.set_totp_secret("u1", Some(b"first secret bytes!!"), 1_700_000_000).unwrap();
    assert_eq!(store.totp_secret("u1").unwrap().as_deref(), Some(&b"first secret bytes!!"[..]));
    assert!(store.use_totp_step("u1", 100).unwrap());
    assert!(!store.use_totp_step("u1", 100).unwrap(), "a replay of the same step");
    assert!(!store.use_totp_step("u1", 99).unwrap(), "an earlier step after a later one");
    assert!(store.use_totp_step("u1", 101).unwrap());
    store.set_totp_secret("u1", Some(b"second secret bytes!"), 1_700_000_100).unwrap();
    assert_eq!(store.totp_secret("u1").unwrap().as_deref(), Some(&b"second secret bytes!"[..]), "re-enrolled");
    assert!(store.use_totp_step("u1", 50).unwrap(), "a new secret starts without used steps");
    assert!(!store.use_totp_step("u2", 500).unwrap(), "not enrolled");
    store.set_totp_secret("u1", None, 1_700_000_200).unwrap();
    assert_eq!(store.totp_secret("u1").unwrap(), None, "removed");
    assert!(!store.use_totp_step("u1", 600).unwrap());
}

fn totp_secrets_are_resealed_in_one_go_and_tokens_retired_once(store: &dyn AuthStore) {
    store.insert_user(&user("u1", "doc", staff())).unwrap();
    store.insert_user(&user("u2", "nurse", staff())).unwrap();
    store.set_totp_secret("u1", Some(b"clear secret one!!!!"), 1_700_000_000).unwrap();
    store.set_totp_secret("u2", Some(b"sealed already"), 1_700_000_000).unwrap();
    assert!(store.use_totp_step("u1", 100).unwrap());
    let changed = store
        .reseal_totp_secrets(&|user_id, stored| {
            Ok((stored.starts_with(b"clear")).then(|| [user_id.as_bytes(), b":", stored].concat()))
        })
        .unwrap();
    assert_eq!(changed, 1);
    assert_eq!(store.totp_secret("u1").unwrap().as_deref(), Some(&b"u1:clear secret one!!!!"[..]));
    assert_eq!(store.totp_secret("u2").unwrap().as_deref(), Some(&b"sealed already"[..]));
    assert!(!store.use_totp_step("u1", 100).unwrap(), "the used steps are kept");
    let failed = store.reseal_totp_secrets(&|_, _| Err(Error::Key("no".into())));
    assert!(failed.is_err());
    assert_eq!(store.totp_secret("u2").unwrap().as_deref(), Some(&b"sealed already"[..]), "rolled back");

    store.insert_token(&token("t1", TokenKind::Refresh, "g", 2_000_000_000)).unwrap();
    let retired = race(|| store.retire_token("t1").unwrap());
    assert_eq!(retired.iter().filter(|r| **r).count(), 1, "one caller retires it");
    assert!(store.token("t1").unwrap().unwrap().revoked);
    assert!(!store.retire_token("unknown").unwrap());
}

fn token_uses_are_noted_for_idle_sessions(store: &dyn AuthStore) {
    store
        .insert_token(&TokenRecord { issued_at: 1_700_000_000, ..token("t1", TokenKind::Access, "g1", 2_000_000_000) })
        .unwrap();
    store
        .insert_token(&TokenRecord { issued_at: 1_700_000_100, ..token("t2", TokenKind::Refresh, "g1", 2_000_000_000) })
        .unwrap();
    store
        .insert_token(&TokenRecord { issued_at: 1_700_000_900, ..token("t3", TokenKind::Access, "g2", 2_000_000_000) })
        .unwrap();
    assert_eq!(store.grant_last_used("g1").unwrap(), Some(1_700_000_100), "the latest issue");
    store.touch_token("t1", 1_700_000_500).unwrap();
    assert_eq!(store.token("t1").unwrap().unwrap().last_used_at, Some(1_700_000_500));
    assert_eq!(store.grant_last_used("g1").unwrap(), Some(1_700_000_500), "the latest use");
    store.touch_token("t1", 1_700_000_400).unwrap();
    assert_eq!(store.token("t1").unwrap().unwrap().last_used_at, Some(1_700_000_500), "never back in time");
    assert_eq!(store.token("t2").unwrap().unwrap().last_used_at, None, "only that token");
    assert_eq!(store.grant_last_used("g2").unwrap(), Some(1_700_000_900), "grants apart");
    assert_eq!(store.grant_last_used("no-such-grant").unwrap(), None);
}

/// `RACERS` threads released at once each run `attempt`; the results.
fn race<T: Send>(attempt: impl Fn() -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(RACERS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..RACERS)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    attempt()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn concurrent_redemptions_and_replays_have_one_winner(store: &dyn AuthStore) {
    for round in 0..ROUNDS {
        let hash = format!("code-{round}");
        store.insert_code(&code(&hash, 2_000_000_000)).unwrap();
        let redeemed = race(|| store.redeem_code(&hash).unwrap().unwrap());
        let unused = redeemed.iter().filter(|c| !c.used).count();
        assert_eq!(unused, 1, "round {round}: exactly one redeemer gets the unused code");
        assert!(redeemed.iter().all(|c| c.hash == hash && c.grant_id == format!("grant-{hash}")));

        let jti = format!("jti-{round}");
        let recorded = race(|| store.record_assertion_id("backend", &jti, 2_000_000_000).unwrap());
        assert_eq!(recorded.iter().filter(|r| **r).count(), 1, "round {round}: exactly one sees the jti first");
    }
}

fn concurrent_failures_and_code_uses_are_counted_once_each(store: &dyn AuthStore) {
    store.insert_user(&user("u1", "doc", staff())).unwrap();
    store.set_totp_secret("u1", Some(b"a secret of 20 bytes"), 1_700_000_000).unwrap();
    let limit = u32::try_from(RACERS).unwrap();
    for round in 0..ROUNDS {
        // As many failures at once as the limit: every one counts, so exactly one locks.
        let locks = race(|| store.record_failed_sign_in("u1", 1_800_000_000, limit, 900).unwrap());
        assert_eq!(locks.iter().filter(|l| l.is_some()).count(), 1, "round {round}: exactly one failure locks");
        assert_eq!(store.user_by_id("u1").unwrap().unwrap().failed_sign_ins, 0, "round {round}");

        let step = i64::try_from(1000 + round).unwrap();
        let used = race(|| store.use_totp_step("u1", step).unwrap());
        assert_eq!(used.iter().filter(|u| **u).count(), 1, "round {round}: exactly one use of a code is accepted");
    }
}

/// Runs each behaviour on a fresh SQLite store and on a fresh PostgreSQL store.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = auth::SqliteAuthStore::open(dir.path()).unwrap();
                    super::$name(&store);
                }
            )*
        }
        mod on_postgres {
            $(
                #[test]
                fn $name() {
                    let database = test_support::scratch::Database::create();
                    let store = auth::PostgresAuthStore::connect(&database.url).unwrap();
                    super::$name(&store);
                }
            )*
        }
    };
}

on_both_stores!(
    users_are_kept_and_usernames_unique,
    clients_are_kept_and_ids_unique,
    codes_are_redeemed_once,
    tokens_are_kept_and_revoked,
    launches_and_assertion_ids,
    expired_records_are_purged,
    concurrent_redemptions_and_replays_have_one_winner,
    failed_sign_ins_lock_the_account_and_success_clears_them,
    totp_secrets_are_kept_and_each_step_used_once,
    totp_secrets_are_resealed_in_one_go_and_tokens_retired_once,
    token_uses_are_noted_for_idle_sessions,
    concurrent_failures_and_code_uses_are_counted_once_each,
);

#[test]
fn postgres_migrations_are_recorded_apart_and_reapplied_idempotently() {
    let database = scratch::Database::create();
    let first = auth::PostgresAuthStore::connect(&database.url).unwrap();
    let latest = auth::PostgresAuthStore::latest_schema_version();
    assert!(latest >= 1);
    assert_eq!(first.schema_version().unwrap(), latest);
    first.insert_user(&user("u1", "doc", staff())).unwrap();
    let again = auth::PostgresAuthStore::connect(&database.url).unwrap();
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
    let store = auth::PostgresAuthStore::connect(&database.url).unwrap();
    let secret = "hash-of-a-very-secret-token";
    store.insert_token(&token(secret, TokenKind::Access, "g", 2_000_000_000)).unwrap();
    let message = store.insert_token(&token(secret, TokenKind::Access, "g", 2_000_000_000)).unwrap_err().to_string();
    assert!(message.contains("23505"), "{message}");
    assert!(!message.contains(secret) && !message.contains("auth_token_pkey"), "{message}");

    let unreachable = auth::PostgresAuthStore::connect("postgres://nobody:hunter2-password@127.0.0.1:1/db");
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
    let opened = race(|| Authority::open_postgres(&database.url, &secrets_key, config()).unwrap());
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
    assert_eq!(principal.actor, auth::Actor::User { id: doc.id, username: "doc".into(), identity: staff() });
    one.disable_user("doc").unwrap();
    assert!(two.validate_bearer(&minted.access_token).is_err(), "disabling on one node takes effect on the other");
    drop(opened);

    let (reopened, first) = Authority::open_postgres(&database.url, &secrets_key, config()).unwrap();
    assert!(first.is_none(), "no second administrator");
    assert_eq!(reopened.jwks(), jwks, "the key outlives the processes");
}

#[test]
fn an_auth_db_of_schema_1_is_upgraded_with_its_users_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The tables of schema 1 that schema 2 changes, as they shipped.
        let conn = rusqlite::Connection::open(dir.path().join(auth::AUTH_DATABASE_FILE)).unwrap();
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
    let store = auth::SqliteAuthStore::open(dir.path()).unwrap();
    let doc = store.user_by_username("doc").unwrap().unwrap();
    assert_eq!((doc.failed_sign_ins, doc.locked_until), (0, None));
    assert_eq!(store.token("t1").unwrap().unwrap().last_used_at, None);
    assert_eq!(store.record_failed_sign_in("u1", 1_800_000_000, 5, 900).unwrap(), None);
    store.set_totp_secret("u1", Some(b"a secret of 20 bytes"), 1_800_000_000).unwrap();
    assert!(store.totp_secret("u1").unwrap().is_some());
}
