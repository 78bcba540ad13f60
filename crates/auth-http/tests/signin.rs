//! Sign-in safety over HTTP: the lock-out after repeated failures (kept across restarts and
//! shared by servers on one PostgreSQL database), the per-address throttle, the staff's TOTP
//! second factor (codes computed here from the enrolled secret, independently of the server's
//! TOTP code), idle sessions ending, the forms expiring, and the CSRF cookie's attributes.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

mod common;

use auth::NewUser;
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use std::time::Duration;

use test_support::scratch;

const WRONG: &str = "not the password at all";
const SCOPE: &str = "launch/patient patient/*.rs";

/// Settings without the per-address throttle, which the tests of the per-user counts would hit.
fn unthrottled(config: &mut auth::AuthConfig) {
    config.sign_in_attempts_per_minute = 0;
}

async fn browser(server: &Server, scope: &str) -> Browser {
    let (_, challenge) = pkce();
    open_authorize(server, &authorize_params(server, "app", scope, &challenge)).await.ok().unwrap()
}

/// Whether a response is the sign-in form again with the one message every refusal gets.
async fn refused(response: reqwest::Response) -> bool {
    let status = response.status();
    let html = response.text().await.unwrap();
    status == 401 && html.contains("The username or password is not right.") && html.contains("name=\"password\"")
}

fn user(server: &Server, username: &str) -> auth::User {
    server.authority.store().user_by_username(username).unwrap().unwrap()
}

#[tokio::test]
async fn five_failures_lock_the_account_without_checking_the_password_and_success_resets_the_count() {
    let place = Place::new_dir();
    let (server, _) = serve(place.clone(), |config| {
        unthrottled(config);
        config.lockout_seconds = 5;
    })
    .await;
    server.add_staff_user("doc");
    server.add_public_app("app", SCOPE);
    let page = browser(&server, SCOPE).await;

    for _ in 0..4 {
        assert!(refused(page.login(&server, "doc", WRONG).await).await);
    }
    assert_eq!(user(&server, "doc").failed_sign_ins, 4);
    assert_eq!(page.login(&server, "doc", PASSWORD).await.status(), 200, "four failures do not lock");
    assert_eq!(user(&server, "doc").failed_sign_ins, 0, "a successful sign-in resets the count");

    let page = browser(&server, SCOPE).await;
    for _ in 0..5 {
        assert!(refused(page.login(&server, "doc", WRONG).await).await);
    }
    let locked = user(&server, "doc");
    assert!(locked.locked_until.is_some(), "the fifth consecutive failure locks");
    assert!(refused(page.login(&server, "doc", PASSWORD).await).await, "locked: the right password is refused alike");
    assert!(refused(page.login(&server, "nobody", PASSWORD).await).await, "as an unknown username is");
    for _ in 0..3 {
        assert!(refused(page.login(&server, "doc", WRONG).await).await);
    }
    let still = user(&server, "doc");
    assert_eq!(
        (still.failed_sign_ins, still.locked_until),
        (0, locked.locked_until),
        "while locked the password is not checked: nothing is counted and the lock is not extended"
    );

    // The lock is stored: a restarted server sees it.
    let (restarted, admin) = serve(place, unthrottled).await;
    assert!(!admin);
    let page = browser(&restarted, SCOPE).await;
    assert!(refused(page.login(&restarted, "doc", PASSWORD).await).await, "still locked after a restart");

    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(page.login(&restarted, "doc", PASSWORD).await.status(), 200, "the lock expires");
    let after = user(&restarted, "doc");
    assert_eq!((after.failed_sign_ins, after.locked_until), (0, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_sharing_a_postgres_database_share_the_failure_count_and_the_lock() {
    let database = tokio::task::spawn_blocking(scratch::Database::create).await.unwrap();
    let place = Place::postgres(&database.url);
    let (one, _) = serve(place.clone(), unthrottled).await;
    let (two, _) = serve(place, unthrottled).await;
    tokio::task::block_in_place(|| {
        one.add_staff_user("doc");
        one.add_public_app("app", SCOPE);
    });
    let (on_one, on_two) = (browser(&one, SCOPE).await, browser(&two, SCOPE).await);
    for n in 0..5 {
        let (server, page) = if n % 2 == 0 { (&one, &on_one) } else { (&two, &on_two) };
        assert!(refused(page.login(server, "doc", WRONG).await).await);
    }
    assert!(refused(on_two.login(&two, "doc", PASSWORD).await).await, "failures on both servers locked it");
    assert!(refused(on_one.login(&one, "doc", PASSWORD).await).await);
    tokio::task::block_in_place(|| one.authority.unlock_user("doc").unwrap());
    assert_eq!(on_two.login(&two, "doc", PASSWORD).await.status(), 200, "an administrator's unlock lifts it");
    drop((one, two));
    tokio::task::spawn_blocking(move || drop(database)).await.unwrap();
}

#[tokio::test]
async fn sign_in_posts_are_throttled_per_client_address() {
    let (server, _) = serve(Place::new_dir(), |config| config.sign_in_attempts_per_minute = 3).await;
    server.add_staff_user("doc");
    server.add_public_app("app", SCOPE);
    let page = browser(&server, SCOPE).await;
    for _ in 0..3 {
        assert_eq!(page.login(&server, "doc", WRONG).await.status(), 401);
    }
    let throttled = page.login(&server, "doc", PASSWORD).await;
    assert_eq!(throttled.status(), 429, "the fourth post within a minute, even with the right password");
    let wait: u64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_eq!(page.code(&server, "123456").await.status(), 429, "the code form shares the count");
    assert_eq!(user(&server, "doc").failed_sign_ins, 3, "throttled posts are not even checked");
}

/// The RFC 6238 code (HMAC-SHA-1, 6 digits, 30 s) of `secret` for time step `step`.
fn totp(secret: &[u8], step: u64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let value = u32::from_be_bytes([digest[offset], digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    format!("{:06}", (value & 0x7fff_ffff) % 1_000_000)
}

/// RFC 4648 base32 without padding.
fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes() {
        value = (value << 5) | u32::try_from(ALPHABET.iter().position(|a| *a == c).unwrap()).unwrap();
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((value >> bits) & 0xff).unwrap());
        }
    }
    out
}

fn current_step() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 30
}

/// A six-digit code that is none of the codes the server would accept now.
fn wrong_code(secret: &[u8]) -> String {
    let step = current_step();
    let right = [totp(secret, step - 1), totp(secret, step), totp(secret, step + 1)];
    (0..).map(|n| format!("{:06}", 100_000 + n * 7919)).find(|c| !right.contains(c)).unwrap()
}

#[tokio::test]
async fn staff_with_totp_enter_a_fresh_code_after_the_password() {
    let (server, _) = serve(Place::new_dir(), unthrottled).await;
    server.add_staff_user("doc");
    server.add_public_app("app", SCOPE);
    let enrolment = server.authority.enrol_totp("doc").unwrap();
    assert!(enrolment.uri.starts_with("otpauth://totp/Continuum:doc?secret="), "{}", enrolment.uri);
    assert!(enrolment.uri.contains(&format!("secret={}&", enrolment.secret_base32)));
    assert!(enrolment.uri.ends_with("&algorithm=SHA1&digits=6&period=30"));
    let secret = base32_decode(&enrolment.secret_base32);
    assert_eq!(secret.len(), 20);

    let (verifier, challenge) = pkce();
    let page = open_authorize(&server, &authorize_params(&server, "app", SCOPE, &challenge)).await.ok().unwrap();
    let form = page.login(&server, "doc", PASSWORD).await;
    assert_eq!(form.status(), 200);
    let html = form.text().await.unwrap();
    assert!(html.contains("Enter your code") && html.contains("action=\"/auth/totp\""), "{html}");
    let skipped = server
        .post_form(
            "/auth/consent",
            &[("request", &*page.request), ("csrf", &*page.csrf), ("decision", "approve"), ("scope", "patient/*.rs")],
            Some(&page.cookie),
        )
        .await;
    assert_eq!(skipped.status(), 403, "no consent before the code");

    let wrong = page.code(&server, &wrong_code(&secret)).await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("The code is not right."));
    assert_eq!(user(&server, "doc").failed_sign_ins, 1, "a wrong code counts as a failed sign-in");

    let code = totp(&secret, current_step());
    let consent = page.code(&server, &code).await;
    assert_eq!(consent.status(), 200);
    assert!(consent.text().await.unwrap().contains("Allow access?"));
    assert_eq!(user(&server, "doc").failed_sign_ins, 0, "the whole sign-in succeeded");
    let location = page.approve(&server, &["launch/patient", "patient/*.rs"], Some("p-1")).await;
    let (status, tokens) = exchange(&server, "app", &query_param(&location, "code").unwrap(), &verifier).await;
    assert_eq!(status, 200, "{tokens}");

    // The same code again, within its window: a replay.
    let again = browser(&server, SCOPE).await;
    assert_eq!(again.login(&server, "doc", PASSWORD).await.status(), 200);
    assert_eq!(again.code(&server, &code).await.status(), 401, "a used code is refused");
    assert_eq!(user(&server, "doc").failed_sign_ins, 1, "and counted");

    // Wrong codes lock the account like wrong passwords; the password alone resets nothing.
    for _ in 0..3 {
        assert_eq!(again.code(&server, &wrong_code(&secret)).await.status(), 401);
    }
    assert_eq!(again.login(&server, "doc", PASSWORD).await.status(), 200);
    assert_eq!(user(&server, "doc").failed_sign_ins, 4, "a right password before a wrong code resets nothing");
    assert_eq!(again.code(&server, &wrong_code(&secret)).await.status(), 401);
    assert!(user(&server, "doc").locked_until.is_some(), "the fifth failure locked the account");
    assert!(refused(again.login(&server, "doc", PASSWORD).await).await);
}

/// Whether any file of the data directory holds `bytes`.
fn on_disk(dir: &std::path::Path, bytes: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let content = std::fs::read(entry.unwrap().path()).unwrap();
        content.windows(bytes.len()).any(|w| w == bytes)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_secrets_are_sealed_at_rest_and_clear_ones_of_an_earlier_version_are_sealed_at_start() {
    let place = Place::new_dir();
    let Place::Dir(dir) = &place else { unreachable!() };
    let (server, _) = serve(place.clone(), unthrottled).await;
    server.add_staff_user("doc");
    server.add_staff_user("nurse");
    server.add_public_app("app", SCOPE);
    let doc_secret = base32_decode(&server.authority.enrol_totp("doc").unwrap().secret_base32);
    assert!(!on_disk(dir.path(), &doc_secret), "an enrolled secret is stored sealed");
    // What an earlier version stored: the secret as it is.
    let nurse_secret = b"an old clear secret!".to_vec();
    let nurse = user(&server, "nurse");
    server.authority.store().set_totp_secret(&nurse.id, Some(&nurse_secret), 1_700_000_000).unwrap();
    assert!(on_disk(dir.path(), &nurse_secret));

    let (restarted, _) = serve(place.clone(), unthrottled).await;
    assert!(!on_disk(dir.path(), &nurse_secret), "the upgrade sealed it and left no clear copy in auth.db or its WAL");
    for (username, secret) in [("doc", &doc_secret), ("nurse", &nurse_secret)] {
        let page = browser(&restarted, SCOPE).await;
        assert!(page.login(&restarted, username, PASSWORD).await.text().await.unwrap().contains("Enter your code"));
        let consent = page.code(&restarted, &totp(secret, current_step())).await;
        assert_eq!(consent.status(), 200, "{username} signs in with their code");
        assert!(consent.text().await.unwrap().contains("Allow access?"));
    }

    // Another key file than the one the secrets were sealed with: the server does not start.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = auth::AuthConfig::new("http://127.0.0.1/fhir");
    let wrong = tokio::task::block_in_place(|| {
        store_sqlite::auth::open_authority_with_secrets_key(dir.path(), &elsewhere.path().join("secrets.key"), config)
    });
    let message = wrong.err().expect("the wrong key is refused").to_string();
    assert!(message.contains("secrets key"), "{message}");
    drop((server, restarted));
}

#[tokio::test]
async fn required_totp_keeps_unenrolled_staff_out_but_not_patients() {
    let (server, _) = serve(Place::new_dir(), |config| {
        unthrottled(config);
        config.require_totp_for_staff = true;
    })
    .await;
    server.add_staff_user("doc");
    server.add_patient_user("pat", "p-1");
    server.add_public_app("app", SCOPE);
    let page = browser(&server, SCOPE).await;
    let response = page.login(&server, "doc", PASSWORD).await;
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("Ask an administrator to enrol it"));
    assert!(server.authority.enrol_totp("pat").is_err(), "TOTP is for staff");
    let patient = page.login(&server, "pat", PASSWORD).await;
    assert!(patient.text().await.unwrap().contains("Allow access?"), "patients sign in with their password");
    server.authority.enrol_totp("doc").unwrap();
    assert!(page.login(&server, "doc", PASSWORD).await.text().await.unwrap().contains("Enter your code"));
}

/// A grant of `scope` for the patient user `pat` through the forms; its tokens.
async fn grant(server: &Server, scope: &str) -> (String, String) {
    let (code, verifier) = standalone_code(server, "app", "pat", scope).await;
    let (status, tokens) = exchange(server, "app", &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    (tokens["access_token"].as_str().unwrap().into(), tokens["refresh_token"].as_str().unwrap().into())
}

async fn refresh(server: &Server, refresh_token: &str) -> Option<String> {
    let (status, tokens) =
        server.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", "app")]).await;
    match status {
        200 => Some(tokens["refresh_token"].as_str().unwrap().into()),
        _ => {
            assert_eq!(tokens["error"], "invalid_grant");
            None
        }
    }
}

#[tokio::test]
async fn idle_user_sessions_end_and_offline_access_is_exempt() {
    let (server, _) = serve(Place::new_dir(), |config| {
        unthrottled(config);
        config.session_idle_seconds = 3;
    })
    .await;
    server.add_patient_user("pat", "p-1");
    server.add_public_app("app", "online_access offline_access launch/patient patient/*.rs");
    let online = "online_access launch/patient patient/*.rs";
    // The unused session first, so that it is idle at least as long as the sleeps.
    let (_, unused_refresh) = grant(&server, online).await;
    let (used_access, used_refresh) = grant(&server, online).await;
    let (_, offline_refresh) = grant(&server, "offline_access launch/patient patient/*.rs").await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(server.authority.validate_bearer(&used_access).is_ok(), "a use within the limit");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refreshed = refresh(&server, &used_refresh).await.expect("the used session is alive after 4 s");
    assert_eq!(refresh(&server, &unused_refresh).await, None, "the unused one ended after 3 s idle");

    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(refresh(&server, &refreshed).await, None, "idle again: logged off");
    let (current_access, _) = grant(&server, online).await;
    let validated = server.authority.validate_bearer(&current_access);
    assert!(validated.is_ok(), "signing in again starts a new session: {:?}", validated.err());
    assert!(refresh(&server, &offline_refresh).await.is_some(), "offline_access has no idle limit by default");
}

#[tokio::test]
async fn idle_access_tokens_stop_working() {
    let (server, _) = serve(Place::new_dir(), |config| {
        unthrottled(config);
        config.session_idle_seconds = 1;
    })
    .await;
    server.add_patient_user("pat", "p-1");
    server.add_public_app("app", "online_access launch/patient patient/*.rs");
    let (access, _) = grant(&server, "online_access launch/patient patient/*.rs").await;
    assert!(server.authority.validate_bearer(&access).is_ok());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(matches!(server.authority.validate_bearer(&access), Err(auth::BearerError::Idle)));
    assert_eq!(server.introspect(&access, &access).await["caller"], "rejected");
    let minted = server.authority.mint_token("pat", "patient/*.rs", None, 600).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(server.authority.validate_bearer(&minted.access_token).is_ok(), "minted tokens keep their own lifetime");
}

#[tokio::test]
async fn sign_in_forms_expire() {
    let (server, _) = serve(Place::new_dir(), |config| {
        unthrottled(config);
        config.sign_in_form_seconds = 1;
    })
    .await;
    server.add_patient_user("pat", "p-1");
    server.add_public_app("app", SCOPE);
    let page = browser(&server, SCOPE).await;
    assert!(page.set_cookie.contains("Max-Age=1"), "{}", page.set_cookie);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = page.login(&server, "pat", PASSWORD).await;
    assert_eq!(expired.status(), 403);
    assert!(expired.text().await.unwrap().contains("This form has expired"));
}

#[tokio::test]
async fn the_csrf_cookie_is_secure_when_the_server_is_reached_over_https() {
    let (plain, _) = serve(Place::new_dir(), |_| {}).await;
    plain.add_public_app("app", SCOPE);
    let cookie = browser(&plain, SCOPE).await.set_cookie;
    assert!(cookie.contains("; HttpOnly") && cookie.contains("; SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "a browser would drop a Secure cookie over http: {cookie}");

    // Behind a TLS proxy or with `serve --tls-cert`: the base URL is https.
    let (secure, _) =
        serve(Place::new_dir(), |config| config.fhir_base_url = config.fhir_base_url.replace("http://", "https://"))
            .await;
    assert!(secure.fhir.starts_with("https://"));
    secure.add_public_app("app", SCOPE);
    let cookie = browser(&secure, SCOPE).await.set_cookie;
    assert!(
        cookie.contains("; HttpOnly") && cookie.contains("; SameSite=Strict") && cookie.contains("; Secure"),
        "{cookie}"
    );
    assert!(cookie.contains("Path=/auth"), "{cookie}");
}

#[tokio::test]
async fn a_new_user_with_a_one_time_password_and_totp_gives_the_code_before_choosing_a_password() {
    let (server, _) = serve(Place::new_dir(), unthrottled).await;
    let (_, one_time) = server
        .authority
        .add_user(NewUser {
            username: "nurse".into(),
            identity: auth::Identity::Staff {
                roles: vec![auth::Role::Nurse],
                organizations: vec!["org-1".into()],
                practitioner: None,
                practitioner_roles: vec![],
            },
            password: None,
        })
        .unwrap();
    server.add_public_app("app", SCOPE);
    let secret = base32_decode(&server.authority.enrol_totp("nurse").unwrap().secret_base32);
    let page = browser(&server, SCOPE).await;
    let html = page.login(&server, "nurse", &one_time.unwrap().password).await.text().await.unwrap();
    assert!(html.contains("Enter your code"), "{html}");
    let changed = server
        .post_form(
            "/auth/password",
            &[("request", &*page.request), ("csrf", &*page.csrf), ("new_password", PASSWORD), ("confirm", PASSWORD)],
            Some(&page.cookie),
        )
        .await;
    assert_eq!(changed.status(), 403, "no password change before the code");
    let next = page.code(&server, &totp(&secret, current_step())).await.text().await.unwrap();
    assert!(next.contains("Choose a password"), "{next}");
}
