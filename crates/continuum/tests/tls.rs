//! `continuum serve --tls-cert --tls-key`: HTTPS with a self-signed certificate made here
//! (rcgen), trusted by the client; plain HTTP to the same port fails; the base URL it prints
//! and serves is https (so the sign-in cookie is `Secure`); SIGTERM still stops it cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use test_support::process::{binary, start, start_secured};

use std::process::Command;

/// A self-signed certificate for localhost and 127.0.0.1 written into `dir`: the `serve`
/// arguments that use it, and a client that trusts it.
fn self_signed(dir: &std::path::Path) -> (Vec<String>, reqwest::blocking::Client) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let args =
        vec!["--tls-cert".to_string(), cert.display().to_string(), "--tls-key".to_string(), key.display().to_string()];
    let trusting = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(generated.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    (args, trusting)
}

#[test]
fn serves_https_with_the_given_certificate_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let (args, trusting) = self_signed(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = start(&dir.path().join("data"), &args);
    let base = server.base.clone();
    assert!(base.starts_with("https://127.0.0.1:") && base.ends_with("/fhir"), "{base}");

    let metadata = trusting.get(format!("{base}/metadata")).send().unwrap();
    assert_eq!(metadata.status(), 200);
    let capability: serde_json::Value = metadata.json().unwrap();
    assert_eq!(capability["resourceType"], "CapabilityStatement");
    let smart: serde_json::Value =
        trusting.get(format!("{base}/.well-known/smart-configuration")).send().unwrap().json().unwrap();
    assert!(smart["token_endpoint"].as_str().unwrap().starts_with("https://127.0.0.1:"), "{smart}");

    let untrusting = reqwest::blocking::Client::new();
    assert!(untrusting.get(format!("{base}/metadata")).send().is_err(), "an unknown certificate is refused");
    let plain = base.replacen("https://", "http://", 1);
    assert!(untrusting.get(format!("{plain}/metadata")).send().is_err(), "plain HTTP to the TLS port fails");
    assert_eq!(trusting.get(format!("{base}/metadata")).send().unwrap().status(), 200, "still serving after that");

    let status = Command::new("kill").arg("-TERM").arg(server.child.id().to_string()).status().unwrap();
    assert!(status.success());
    assert!(server.child.wait().unwrap().success(), "a graceful stop");
}

#[test]
fn the_web_apps_cookies_are_secure_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (args, trusting) = self_signed(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = start_secured(&dir.path().join("data"), &args);
    let origin = server.base.trim_end_matches("/fhir");
    let form = trusting.get(format!("{origin}/app/sign-in")).send().unwrap();
    assert_eq!(form.status(), 200);
    let cookie = form.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("continuum_app_signin=") && cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
}

#[test]
fn a_key_that_is_not_pem_is_refused_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, "secret-looking-content-that-must-not-be-echoed").unwrap();
    let output = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot use the TLS certificate") && stderr.contains("private key"), "{stderr}");
    assert!(!stderr.contains("secret-looking"), "{stderr}");
}
