//! What `continuum serve` does for safety at rest and on the wire, over a real server: the data
//! directory is its owner's only (0700, files 0600, mended at start); TOTP secrets are not in
//! `auth.db` in clear; pages and FHIR answers carry the security headers; `/metrics` can ask
//! for a token and move to a listener of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use test_support::process::{binary, continuum, start, start_secured};

use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every file of `dir` with its mode.
#[cfg(unix)]
fn files(dir: &Path) -> Vec<(String, u32)> {
    let mut files: Vec<(String, u32)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), mode(&p)))
        .collect();
    files.sort();
    files
}

#[cfg(unix)]
#[test]
fn the_data_directory_and_its_files_are_the_owners_only_and_totp_secrets_are_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_secured(&data, &[]);
    let written = files(&data);
    for name in
        ["continuum.db", "continuum.db-wal", "continuum.db-shm", "auth.db", "auth-signing-key.p8", "secrets.key"]
    {
        assert!(written.iter().any(|(n, _)| n == name), "{name} in {written:?}");
    }
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert!(written.iter().all(|(_, m)| *m == 0o600), "every file is 0600: {written:?}");
    drop(server);

    // A directory an earlier version (or a hand) left open is closed again at start.
    set_mode(&data, 0o755);
    set_mode(&data.join("auth.db"), 0o644);
    set_mode(&data.join("continuum.db"), 0o644);
    continuum(
        &data,
        &["user", "add", "doc", "--role", "physician", "--org", "org-1", "--password-stdin"],
        Some("a long enough password\n"),
    );
    let enrolled = String::from_utf8(continuum(&data, &["user", "totp", "doc"], None).stdout).unwrap();
    let server = start_secured(&data, &[]);
    assert_eq!(mode(&data), 0o700);
    let written = files(&data);
    assert!(written.iter().all(|(_, m)| *m == 0o600), "mended at start: {written:?}");
    drop(server);

    // The enrolled secret, as the authenticator app gets it, is nowhere in the files.
    let base32 = enrolled
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| w.len() == 32 && w.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)))
        .unwrap_or_else(|| panic!("no base32 secret in {enrolled}"));
    let secret = base32_decode(base32);
    assert_eq!(secret.len(), 20);
    for (name, _) in files(&data) {
        let content = std::fs::read(data.join(&name)).unwrap();
        assert!(!content.windows(secret.len()).any(|w| w == secret.as_slice()), "the TOTP secret is in {name}");
    }
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

fn header<'a>(response: &'a reqwest::blocking::Response, name: &str) -> &'a str {
    response.headers().get(name).map_or("", |v| v.to_str().unwrap())
}

fn assert_common_headers(response: &reqwest::blocking::Response, what: &str) {
    assert_eq!(header(response, "x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header(response, "referrer-policy"), "no-referrer", "{what}");
    assert_eq!(header(response, "x-frame-options"), "DENY", "{what}");
}

#[test]
fn pages_and_fhir_answers_carry_the_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // The web app and the authorization server's pages, on a secured server.
    let secured = start_secured(&dir.path().join("secured"), &[]);
    let origin = secured.base.trim_end_matches("/fhir").to_string();
    let page = http.get(format!("{origin}/app/sign-in")).send().unwrap();
    assert_eq!(page.status(), 200);
    assert_common_headers(&page, "an /app page");
    assert_eq!(header(&page, "cache-control"), "no-store");
    let policy = header(&page, "content-security-policy").to_string();
    for directive in [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self' data:",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    let html = page.text().unwrap();
    assert!(!html.contains("<script") && !html.contains("style=\""), "nothing the policy would block");
    let redirect = http.get(format!("{origin}/app/patients")).send().unwrap();
    assert_eq!(redirect.status(), 303);
    assert_eq!(header(&redirect, "cache-control"), "no-store");
    assert!(header(&redirect, "content-security-policy").contains("frame-ancestors 'none'"));

    let smart: serde_json::Value =
        http.get(format!("{}/.well-known/smart-configuration", secured.base)).send().unwrap().json().unwrap();
    let authorize = smart["authorization_endpoint"].as_str().unwrap();
    // An authorization request of an unknown client is answered with an error page.
    let auth_page = http.get(format!("{authorize}?response_type=code&client_id=nobody")).send().unwrap();
    assert_common_headers(&auth_page, "a sign-in page");
    assert_eq!(header(&auth_page, "cache-control"), "no-store");
    let auth_policy = header(&auth_page, "content-security-policy").to_string();
    assert!(
        auth_policy.contains("default-src 'none'")
            && auth_policy.contains("style-src 'sha256-")
            && !auth_policy.contains("unsafe-inline")
            && auth_policy.contains("frame-ancestors 'none'"),
        "{auth_policy}"
    );
    drop(secured);

    // FHIR answers holding patient data: a read and a search (on an open server, so that the
    // test needs no token; the headers are the same either way).
    let open = start(&dir.path().join("open"), &[]);
    let created = http
        .post(format!("{}/Patient", open.base))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "name": [{"family": "Headerfamily"}]}).to_string())
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(header(&created, "cache-control"), "no-store");
    let id = created.json::<serde_json::Value>().unwrap()["id"].as_str().unwrap().to_string();
    let read = http.get(format!("{}/Patient/{id}", open.base)).send().unwrap();
    assert_eq!(read.status(), 200);
    assert_common_headers(&read, "a FHIR read");
    assert_eq!(header(&read, "cache-control"), "no-store", "a FHIR read");
    let search = http.get(format!("{}/Patient?family=Headerfamily", open.base)).send().unwrap();
    assert_eq!(search.status(), 200);
    assert_common_headers(&search, "a FHIR search");
    assert_eq!(header(&search, "cache-control"), "no-store", "a FHIR search");
    let metadata = http.get(format!("{}/metadata", open.base)).send().unwrap();
    assert_common_headers(&metadata, "the CapabilityStatement");
    assert_ne!(header(&metadata, "cache-control"), "no-store", "metadata holds no patient data");
}

#[test]
fn metrics_ask_for_their_token_and_can_move_to_a_listener_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, "a-metrics-token-of-some-length\n").unwrap();
    let token_arg = token_file.to_str().unwrap();
    let http = reqwest::blocking::Client::new();

    // Beside the API, behind the token.
    let server = start(&dir.path().join("one"), &["--metrics-token-file", token_arg]);
    let metrics = format!("{}/metrics", server.base.trim_end_matches("/fhir"));
    let anonymous = http.get(&metrics).send().unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(header(&anonymous, "www-authenticate"), "Bearer");
    assert_eq!(http.get(&metrics).bearer_auth("a-metrics-token-of-some-lengtx").send().unwrap().status(), 401);
    assert_eq!(http.get(&metrics).bearer_auth("a-metrics-token").send().unwrap().status(), 401);
    let scraped = http.get(&metrics).bearer_auth("a-metrics-token-of-some-length").send().unwrap();
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().unwrap();
    assert!(text.contains("continuum_http_requests_total"), "{text}");
    assert!(!text.contains("continuum_store_resources"), "no count of the store per scrape");
    drop(server);

    // On a listener of its own: not on the main one.
    let mut child = Command::new(binary())
        .args(["serve", "--no-auth", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("two"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<String> = {
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        while lines.len() < 2 {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0, "the server stopped early: {lines:?}");
            if line.contains("FHIR R4 at") || line.contains("metrics at") {
                lines.push(line.trim().to_string());
            }
        }
        std::thread::spawn(move || reader.lines().for_each(drop));
        lines
    };
    let last_word = |needle: &str| {
        lines.iter().find(|l| l.contains(needle)).and_then(|l| l.rsplit(' ').next()).unwrap().to_string()
    };
    let base = last_word("FHIR R4 at");
    let separate = last_word("metrics at");
    let main_metrics = http.get(format!("{}/metrics", base.trim_end_matches("/fhir"))).send().unwrap();
    assert_eq!(main_metrics.status(), 404, "not served beside the API");
    let scraped = http.get(&separate).send().unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().unwrap().contains("continuum_http_requests_total"));
    let _ = child.kill();
    let _ = child.wait();
}
