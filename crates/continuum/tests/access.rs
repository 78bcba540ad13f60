//! `continuum user`, `client`, `token` and the authorization server mounted by `serve`: a token
//! minted on the command line is accepted by introspection on the running server, and stops
//! being accepted once its user is disabled.

use std::io::{BufRead, BufReader, Read};

use std::process::{Command, Stdio};

mod common;

use common::{BINARY, continuum};

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

    let mut server = Command::new(BINARY)
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

    let seen: serde_json::Value = introspect(&origin, &token, &token).json().unwrap();
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["username"], "doc");
    assert_eq!(seen["scope"], "user/*.rs");
    assert_eq!(seen["fhirUser"], format!("{base}/Practitioner/prac-1"));

    continuum(&data, &["user", "disable", "doc"], None);
    assert_eq!(introspect(&origin, &token, &token).status(), 401, "a disabled user's token is no longer accepted");

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
    let mut server = Command::new(BINARY)
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
