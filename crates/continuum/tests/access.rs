//! `continuum user`, `client`, `token` and the authorization server mounted by `serve`: a token
//! minted on the command line is accepted by introspection on the running server, and stops
//! being accepted once its user is disabled. With `--database postgres://…` all of it lives in
//! that database: commands and servers in different data directories share users and tokens.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use test_support::process::{binary, continuum};
use test_support::scratch;

fn introspect(origin: &str, bearer: &str, token: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .post(format!("{origin}/auth/introspect"))
        .bearer_auth(bearer)
        .form(&[("token", token)])
        .send()
        .unwrap()
}

#[test]
fn minted_tokens_are_accepted_by_the_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let added = continuum(
        &data,
        &[
            "user",
            "add",
            "doc",
            "--role",
            "physician",
            "--org",
            "org-1",
            "--practitioner",
            "prac-1",
            "--password-stdin",
        ],
        Some("a long enough password\n"),
    );
    let stderr = String::from_utf8(added.stderr).unwrap();
    assert!(stderr.contains("Administrator 'admin' created with the one-time password: "), "{stderr}");
    assert!(String::from_utf8(added.stdout).unwrap().contains("user doc created"));

    let client = continuum(
        &data,
        &[
            "client",
            "add",
            "--id",
            "app",
            "--name",
            "App",
            "--public",
            "--redirect-uri",
            "http://app.example/cb",
            "--scope",
            "openid patient/*.rs",
        ],
        None,
    );
    assert!(String::from_utf8(client.stdout).unwrap().contains("client_id: app"));

    let listed = String::from_utf8(continuum(&data, &["user", "list"], None).stdout).unwrap();
    assert!(listed.contains("admin") && listed.contains("[one-time password]"), "{listed}");
    assert!(listed.contains("doc") && listed.contains("roles=physician orgs=org-1"), "{listed}");

    let minted = continuum(&data, &["token", "--user", "doc", "--scope", "user/*.rs"], None);
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_string();
    assert_eq!(token.len(), 43, "only the token is printed");

    let mut server = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    let origin = base.trim_end_matches("/fhir").to_string();

    let config: serde_json::Value =
        reqwest::blocking::get(format!("{base}/.well-known/smart-configuration")).unwrap().json().unwrap();
    assert_eq!(config["token_endpoint"], format!("{origin}/auth/token"));
    assert_eq!(reqwest::blocking::get(format!("{base}/metadata")).unwrap().status(), 200, "FHIR routes still served");

    let anonymous = reqwest::blocking::get(format!("{base}/Patient")).unwrap();
    assert_eq!(anonymous.status(), 401, "serve puts the FHIR API behind access control");
    let search = || reqwest::blocking::Client::new().get(format!("{base}/Patient")).bearer_auth(&token).send().unwrap();
    assert_eq!(search().status(), 200, "the minted token opens the API");

    let seen: serde_json::Value = introspect(&origin, &token, &token).json().unwrap();
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["username"], "doc");
    assert_eq!(seen["scope"], "user/*.rs");
    assert_eq!(seen["fhirUser"], format!("{base}/Practitioner/prac-1"));

    continuum(&data, &["user", "disable", "doc"], None);
    assert_eq!(introspect(&origin, &token, &token).status(), 401, "a disabled user's token is no longer accepted");
    assert_eq!(search().status(), 401, "nor by the FHIR API");

    let status = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status().unwrap();
    assert!(status.success());
    assert!(server.wait().unwrap().success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(!rest.contains("one-time password"), "the administrator was created before; no new password: {rest}");
}

#[test]
fn first_serve_prints_the_administrators_one_time_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("Continuum is serving FHIR R4 at"), "{first}");
    let mut second = String::new();
    stdout.read_line(&mut second).unwrap();
    assert!(second.starts_with("Administrator 'admin' created with the one-time password: "), "{second}");
    // Once it answers, its signal handler is in place.
    let base = first.trim().rsplit(' ').next().unwrap();
    assert_eq!(reqwest::blocking::get(format!("{base}/metadata")).unwrap().status(), 200);
    let status = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status().unwrap();
    assert!(status.success());
    assert!(server.wait().unwrap().success());
}

/// A `continuum serve` child, killed if the test fails before stopping it.
struct Running {
    child: Child,
    /// Its standard output after the first line.
    stdout: BufReader<std::process::ChildStdout>,
    /// The FHIR base URL.
    base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `continuum serve --listen 127.0.0.1:0 --data DATA EXTRA…`.
fn serve(data: &Path, extra: &[&str]) -> Running {
    let mut child = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("Continuum is serving FHIR R4 at"), "{line}");
    Running { child, stdout, base: line.trim().rsplit(' ').next().unwrap().to_string() }
}

impl Running {
    /// Stops the server with SIGTERM, checks it exits cleanly, and returns what it printed.
    fn stop(mut self) -> String {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
        assert!(self.child.wait().unwrap().success(), "the server stops cleanly");
        self.rest()
    }

    fn rest(&mut self) -> String {
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        rest
    }
}

/// No authorization file was written in `dir`.
fn no_auth_files(dir: &Path) {
    for file in [store_sqlite::auth::AUTH_DATABASE_FILE, auth::SIGNING_KEY_FILE] {
        assert!(!dir.join(file).exists(), "{} in {}", file, dir.display());
    }
}

fn admin_log(base: &str, bearer: Option<&str>) -> u16 {
    let origin = base.trim_end_matches("/fhir");
    let request = reqwest::blocking::Client::new().get(format!("{origin}/admin/hl7/messages"));
    let request = match bearer {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    request.send().unwrap().status().as_u16()
}

#[test]
fn users_and_tokens_live_in_the_postgres_database_not_the_data_directory() {
    let database = scratch::Database::create();
    let url = database.url.as_str();
    let dir = tempfile::tempdir().unwrap();
    // Every command runs in a data directory of its own: only the database links them.
    let data = |name: &str| dir.path().join(name);

    let added = continuum(
        &data("a"),
        &[
            "user",
            "add",
            "doc",
            "--role",
            "physician",
            "--practitioner",
            "prac-1",
            "--password-stdin",
            "--database",
            url,
        ],
        Some("a long enough password\n"),
    );
    let stderr = String::from_utf8(added.stderr).unwrap();
    assert!(stderr.contains("Administrator 'admin' created with the one-time password: "), "{stderr}");
    assert!(String::from_utf8(added.stdout).unwrap().contains("user doc created"));
    let boss = continuum(
        &data("b"),
        &["user", "add", "boss", "--role", "administrator", "--password-stdin", "--database", url],
        Some("another long password\n"),
    );
    assert!(
        !String::from_utf8(boss.stderr).unwrap().contains("one-time"),
        "the database already has its administrator"
    );

    let listed = String::from_utf8(continuum(&data("c"), &["user", "list", "--database", url], None).stdout).unwrap();
    assert!(listed.contains("admin") && listed.contains("[one-time password]"), "{listed}");
    assert!(listed.contains("doc") && listed.contains("roles=physician"), "{listed}");
    assert!(listed.contains("boss") && listed.contains("roles=administrator"), "{listed}");

    let registered = continuum(
        &data("c"),
        &[
            "client",
            "add",
            "--id",
            "app",
            "--name",
            "App",
            "--public",
            "--scope",
            "openid",
            "--redirect-uri",
            "http://app.example/cb",
        ],
        None,
    );
    assert!(String::from_utf8(registered.stdout).unwrap().contains("client_id: app"));
    // That one went to data directory c: without --database nothing changes.
    assert!(data("c").join(store_sqlite::auth::AUTH_DATABASE_FILE).exists());
    continuum(
        &data("d"),
        &[
            "client",
            "add",
            "--id",
            "shared-app",
            "--name",
            "Shared",
            "--public",
            "--scope",
            "launch",
            "--database",
            url,
        ],
        None,
    );
    let clients =
        String::from_utf8(continuum(&data("e"), &["client", "list", "--database", url], None).stdout).unwrap();
    let ids: Vec<&str> = clients.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(ids, ["shared-app"], "{clients}");
    let launch = continuum(&data("e"), &["launch", "--patient", "pat-1", "--database", url], None);
    assert_eq!(String::from_utf8(launch.stdout).unwrap().trim().len(), 43);

    // The audit trail's key is not in the database: nodes sharing it share the key file.
    let audit_key = dir.path().join("shared-audit.key");
    let audit_key = audit_key.to_str().unwrap();
    let mint = |user: &str| {
        // The message-log API also needs its own scope.
        let scope = "user/*.rs user/hl7-messages.read";
        let minted = continuum(
            &data("f"),
            &["token", "--database", url, "--audit-key", audit_key, "--user", user, "--scope", scope],
            None,
        );
        let token = String::from_utf8(minted.stdout).unwrap().trim().to_string();
        assert_eq!(token.len(), 43, "only the token is printed");
        token
    };
    let (doc_token, boss_token) = (mint("doc"), mint("boss"));
    for name in ["a", "b", "d", "e", "f"] {
        no_auth_files(&data(name));
    }

    let served = data("served");
    let server = serve(&served, &["--database", url, "--audit-key", audit_key]);
    let base = server.base.clone();
    let origin = base.trim_end_matches("/fhir").to_string();
    let seen: serde_json::Value = introspect(&origin, &doc_token, &doc_token).json().unwrap();
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["username"], "doc");
    assert_eq!(seen["fhirUser"], format!("{base}/Practitioner/prac-1"));
    assert_eq!(admin_log(&base, None), 401);
    assert_eq!(admin_log(&base, Some(&doc_token)), 403, "a physician is not an administrator");
    assert_eq!(admin_log(&base, Some(&boss_token)), 200, "the administrator minted elsewhere is let in");

    continuum(&data("g"), &["user", "disable", "doc", "--database", url], None);
    assert_eq!(introspect(&origin, &doc_token, &doc_token).status(), 401, "disabled in the database, refused at once");
    // A graceful stop with the record store's connections idle in its pool (the message-log
    // requests above used them): they close off the async threads, so the stop is clean.
    let rest = server.stop();
    assert!(!rest.contains("one-time password"), "the database had its administrator: {rest}");
    no_auth_files(&served);
    no_auth_files(&data("g"));
}

#[test]
fn first_serve_on_an_empty_database_creates_the_administrator_once_for_every_node() {
    let database = scratch::Database::create();
    let dir = tempfile::tempdir().unwrap();
    // Nodes share the audit trail's key file (the database does not hold it).
    let audit_key = dir.path().join("audit.key");
    let audit_key = audit_key.to_str().unwrap();
    let mut first = serve(&dir.path().join("one"), &["--database", &database.url, "--audit-key", audit_key]);
    let mut line = String::new();
    first.stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("Administrator 'admin' created with the one-time password: "), "{line}");

    let second = serve(&dir.path().join("two"), &["--database", &database.url, "--audit-key", audit_key]);
    // A node with a key of its own would break the chain: it refuses to start.
    let refused = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &database.url, "--data"])
        .arg(dir.path().join("three"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("same key file"));
    let jwks = |base: &str| -> serde_json::Value {
        let origin = base.trim_end_matches("/fhir");
        reqwest::blocking::get(format!("{origin}/auth/jwks")).unwrap().json().unwrap()
    };
    assert_eq!(jwks(&first.base), jwks(&second.base), "both nodes sign id_tokens with the key kept in the database");
    assert!(jwks(&first.base)["keys"][0]["kid"].is_string());

    // Both stop cleanly although their authorization connections are idle in the pool when
    // the server's runtime drops them.
    let rest = second.stop();
    assert!(!rest.contains("one-time password"), "the second node creates no administrator: {rest}");
    first.stop();
    no_auth_files(&dir.path().join("one"));
    no_auth_files(&dir.path().join("two"));
}

#[test]
fn user_totp_enrols_staff_once_and_unlock_lifts_a_lock_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    continuum(
        &data,
        &["user", "add", "doc", "--role", "physician", "--password-stdin"],
        Some("a long enough password\n"),
    );
    continuum(&data, &["user", "add", "pat", "--patient", "p-1", "--password-stdin"], Some("a long enough password\n"));

    let enrol = || {
        let printed = String::from_utf8(continuum(&data, &["user", "totp", "doc"], None).stdout).unwrap();
        let uri = printed.lines().next().unwrap().to_string();
        let secret = printed.lines().find_map(|l| l.strip_prefix("secret: ")).unwrap().to_string();
        assert!(uri.starts_with("otpauth://totp/Continuum:doc?secret="), "{printed}");
        assert!(uri.contains(&format!("secret={secret}&")) && uri.ends_with("&digits=6&period=30"), "{printed}");
        assert_eq!(secret.len(), 32, "160 bits in base32: {secret}");
        assert!(secret.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)), "{secret}");
        secret
    };
    let first = enrol();
    let listed = String::from_utf8(continuum(&data, &["user", "list"], None).stdout).unwrap();
    let line = |name: &str| listed.lines().find(|l| l.starts_with(name)).unwrap().to_string();
    assert!(line("doc").ends_with("[totp]"), "{listed}");
    assert!(!line("pat").contains("[totp]"), "{listed}");
    assert_ne!(enrol(), first, "enrolling again replaces the secret");

    let refused = Command::new(binary()).args(["user", "totp", "pat", "--data"]).arg(&data).output().unwrap();
    assert!(!refused.status.success(), "patients are not enrolled");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("staff users only"));

    continuum(&data, &["user", "totp", "doc", "--remove"], None);
    let listed = String::from_utf8(continuum(&data, &["user", "list"], None).stdout).unwrap();
    assert!(!listed.contains("[totp]"), "{listed}");

    // Five failed sign-ins (as the sign-in form counts them) lock doc; unlock lifts it.
    {
        let store = store_sqlite::auth::SqliteAuthStore::open(&data).unwrap();
        let doc = auth::AuthStore::user_by_username(&store, "doc").unwrap().unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for _ in 0..5 {
            auth::AuthStore::record_failed_sign_in(&store, &doc.id, now, 5, 900).unwrap();
        }
    }
    let listed = String::from_utf8(continuum(&data, &["user", "list"], None).stdout).unwrap();
    assert!(listed.lines().any(|l| l.starts_with("doc") && l.ends_with("[locked]")), "{listed}");
    assert!(String::from_utf8(continuum(&data, &["user", "unlock", "doc"], None).stdout).unwrap().contains("unlocked"));
    let listed = String::from_utf8(continuum(&data, &["user", "list"], None).stdout).unwrap();
    assert!(!listed.contains("[locked]"), "{listed}");
}
