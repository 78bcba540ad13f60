//! Real external SMART on FHIR clients against `continuum serve`: requests-oauthlib, requests
//! and PyJWT (installed from PyPI by this test into Cargo's scratch folder, so the test needs
//! `python3` with `pip` and the package index; it fails, never skips, without them) run
//! `tests/external/smart_client.py`:
//!
//! - a public app's **standalone launch** with PKCE S256 as a patient user whose password is
//!   one-time: discovery, the authorization request, the server's sign-in, password-change and
//!   consent forms driven as a browser would, the code caught at the app's redirect URI, the
//!   code exchange, the `id_token` verified against `/auth/jwks`, the patient's record read with
//!   the bearer token, one refresh, revocation;
//! - a **backend service** registered with its public JWK Set: `client_credentials` with
//!   `private_key_jwt` assertions signed RS384 and ES384, reads with each token, and a replayed
//!   assertion refused.
//!
//! Both run on the embedded store and on PostgreSQL (`--database`, users, clients and tokens in
//! that database too).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use test_support::process::{continuum, start_secured};
use test_support::scratch;

/// The releases the clients are written against, with every dependency pinned.
const PACKAGES: &[&str] = test_support::python::SMART_CLIENT_PINS;

/// The app's redirect URI: on the loopback address, never served (the client catches the
/// redirect to it).
const REDIRECT_URI: &str = "http://127.0.0.1:9/smart/callback";
const PATIENT: &str = "smart-pat-1";
const NEW_PASSWORD: &str = "the patient's own long password";

/// The pinned packages in a folder of their own under Cargo's scratch space, installed once
/// (again when the pins change).
fn python_packages() -> &'static Path {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        test_support::python::packages(Path::new(env!("CARGO_TARGET_TMPDIR")), "python-smart-clients", PACKAGES)
    })
}

/// Runs `smart_client.py ARGS` and returns its output lines, split into words; fails the test
/// with the client's own words if it fails.
fn client(args: &[&str]) -> Vec<Vec<String>> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/external/smart_client.py");
    let output = Command::new("python3")
        .arg("-s") // no user site-packages: only what this test installed, and the standard library
        .arg(&script)
        .args(args)
        .env("PYTHONPATH", python_packages())
        .env_remove("OAUTHLIB_INSECURE_TRANSPORT")
        .env_remove("OAUTHLIB_RELAX_TOKEN_SCOPE")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "smart_client.py {} failed:\n{stdout}\n{}",
        args[0],
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Vec<String>> = stdout.lines().map(|l| l.split(' ').map(str::to_string).collect()).collect();
    // The libraries that ran are the ones pinned here, not others found on the machine.
    let libraries = line(&lines, &["libraries"]);
    for package in ["requests-oauthlib", "oauthlib", "requests", "PyJWT", "cryptography"] {
        let pinned = PACKAGES.iter().find(|p| p.starts_with(&format!("{package}=="))).unwrap();
        assert_eq!(format!("{package}={}", field(&libraries, package)), pinned.replace("==", "="));
    }
    lines
}

/// The first line that starts with `words`.
fn line<'a>(lines: &'a [Vec<String>], words: &[&str]) -> BTreeMap<&'a str, &'a str> {
    let found = lines
        .iter()
        .find(|l| l.len() >= words.len() && l.iter().zip(words).all(|(a, b)| a == b))
        .unwrap_or_else(|| panic!("no line {words:?} in {lines:?}"));
    found[words.len()..].iter().filter_map(|w| w.split_once('=')).collect()
}

fn field<'a>(line: &BTreeMap<&str, &'a str>, key: &str) -> &'a str {
    line.get(key).unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// The record the apps read: the patient with two observations, and another patient whose
/// observation must not come back.
fn record(dir: &Path) -> PathBuf {
    let observation = |id: &str, patient: &str, code: &str, value: u32| {
        serde_json::json!({
            "resourceType": "Observation", "id": id, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "effectiveDateTime": "2024-03-01T10:00:00Z",
            "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
        })
    };
    let resources = [
        serde_json::json!({"resourceType": "Patient", "id": PATIENT, "name": [{"family": "Chalmers", "given": ["Peter"]}],
                           "gender": "male", "birthDate": "1974-12-25"}),
        serde_json::json!({"resourceType": "Patient", "id": "smart-pat-2", "name": [{"family": "Other"}]}),
        observation("smart-obs-1", PATIENT, "8867-4", 72),
        observation("smart-obs-2", PATIENT, "9279-1", 16),
        observation("smart-obs-3", "smart-pat-2", "8310-5", 37),
    ];
    let path = dir.join("record.ndjson");
    let text: Vec<String> = resources.iter().map(|r| r.to_string()).collect();
    std::fs::write(&path, text.join("\n")).unwrap();
    path
}

/// Sets up the record, the users and the clients (in `data`, or in the database named by
/// `database`), serves them, and runs both clients.
fn real_clients_complete_their_flows(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let on: Vec<&str> = database.map(|url| vec!["--database", url]).unwrap_or_default();
    let with = |args: &[&str]| -> Vec<String> { args.iter().chain(&on).map(|a| a.to_string()).collect() };
    let run = |args: &[&str]| {
        let args = with(args);
        continuum(&data, &args.iter().map(String::as_str).collect::<Vec<_>>(), None)
    };

    let record = record(dir.path());
    run(&["import", record.to_str().unwrap()]);
    // A patient user with a one-time password, as an administrator hands it out.
    let added = String::from_utf8(run(&["user", "add", "peter", "--patient", PATIENT]).stdout).unwrap();
    let one_time = added
        .lines()
        .find_map(|l| l.strip_prefix("one-time password: "))
        .unwrap_or_else(|| panic!("no one-time password in {added}"))
        .to_string();
    run(&[
        "client",
        "add",
        "--id",
        "python-app",
        "--name",
        "Python SMART app",
        "--public",
        "--redirect-uri",
        REDIRECT_URI,
        "--scope",
        "launch/patient openid fhirUser patient/*.read offline_access",
    ]);
    // The backend service makes its own keys and hands over only the public JWK Set.
    let keys = dir.path().join("backend-keys");
    let made = client(&["keygen", keys.to_str().unwrap()]);
    assert_eq!(made[1], ["keys", "backend-rs384", "backend-es384"]);
    run(&[
        "client",
        "add",
        "--id",
        "python-backend",
        "--name",
        "Python backend service",
        "--jwks",
        keys.join("jwks.json").to_str().unwrap(),
        "--scope",
        "system/Patient.rs system/Observation.rs",
    ]);

    let server = start_secured(&data, &on);
    let base = server.base.as_str();
    let origin = base.trim_end_matches("/fhir");

    let app = client(&["standalone", base, "python-app", REDIRECT_URI, "peter", &one_time, NEW_PASSWORD]);
    assert_eq!(field(&line(&app, &["discovery"]), "token"), format!("{origin}/auth/token"));
    let forms = &app.iter().find(|l| l[0] == "forms").expect("the forms seen are printed")[1..];
    assert_eq!(forms, ["signin", "password-change", "consent"], "a first sign-in changes the one-time password");
    assert_eq!(field(&line(&app, &["callback"]), "code"), "yes");
    let token = line(&app, &["token"]);
    assert_eq!(field(&token, "patient"), PATIENT, "the token response carries the patient");
    assert_eq!(field(&token, "scope"), "launch/patient+openid+fhirUser+patient/*.read+offline_access");
    assert_eq!(field(&token, "banner"), "True");
    assert_eq!(field(&token, "fhirUser"), format!("{base}/Patient/{PATIENT}"), "the verified id_token names the user");
    for read in ["read", "reread"] {
        let patient = line(&app, &[read, "Patient"]);
        assert_eq!((field(&patient, "id"), field(&patient, "family")), (PATIENT, "Chalmers"));
        let observations = line(&app, &[read, "Observation"]);
        assert_eq!(field(&observations, "count"), "2", "{read}: the patient's observations and no one else's");
        assert_eq!(field(&observations, "codes"), "8867-4,9279-1");
        assert_eq!(field(&observations, "subjects"), format!("Patient/{PATIENT}"));
    }
    assert_eq!(field(&line(&app, &["refresh"]), "patient"), PATIENT, "the refreshed token keeps the patient");
    let revoke = line(&app, &["revoke"]);
    assert_eq!(field(&revoke, "status"), "200");
    assert_eq!(field(&revoke, "refresh_after"), "400:invalid_grant", "a revoked refresh token is refused");
    assert_eq!(field(&revoke, "introspect_after"), "401", "its access token is no longer accepted");

    let service = client(&["backend", base, "python-backend", keys.to_str().unwrap(), PATIENT]);
    assert_eq!(field(&line(&service, &["discovery"]), "algs"), "RS384,ES384");
    for alg in ["RS384", "ES384"] {
        let token = line(&service, &["token", alg]);
        assert_eq!(field(&token, "scope"), "system/Patient.rs+system/Observation.rs");
        assert_eq!(field(&token, "expires_in"), "3600");
        let label = format!("read-{alg}");
        let patient = line(&service, &[&label, "Patient"]);
        assert_eq!(field(&patient, "family"), "Chalmers");
        assert_eq!(field(&line(&service, &[&label, "Observation"]), "count"), "2");
        let replay = line(&service, &["replay", alg]);
        assert_eq!((field(&replay, "status"), field(&replay, "error")), ("401", "invalid_client"), "a replayed jti");
    }

    // The one-time password is spent: the user signs in with the password they chose.
    let listed = String::from_utf8(run(&["user", "list"]).stdout).unwrap();
    let peter = listed.lines().find(|l| l.starts_with("peter ")).unwrap();
    assert!(!peter.contains("[one-time password]"), "{peter}");

    // The trail holds the sign-in and the app's reads of the patient's record.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let trail: std::sync::Arc<dyn store::AuditLog> = match database {
        Some(url) => std::sync::Arc::new(store_postgres::PostgresBackend::connect(url).unwrap()),
        None => std::sync::Arc::new(store_sqlite::SqliteBackend::open(&data).unwrap()),
    };
    let query = store::audit::AuditQuery { patient: Some(PATIENT.into()), count: 1000, ..Default::default() };
    let events: Vec<serde_json::Value> =
        trail.search(&query).unwrap().iter().map(|e| serde_json::from_str(&e.entry.event).unwrap()).collect();
    let login = events.iter().find(|e| e["subtype"][0]["code"] == "110122").expect("the sign-in is audited");
    assert_eq!((login["outcome"].as_str(), login["agent"][0]["name"].as_str()), (Some("0"), Some("peter")));
    let read = events
        .iter()
        .find(|e| e["subtype"][0]["code"] == "read" && e["agent"][0]["name"] == "peter")
        .expect("the app's reads are audited");
    assert_eq!(read["agent"][0]["who"]["reference"], format!("Patient/{PATIENT}"));
    assert_eq!(read["agent"][1]["who"]["identifier"]["value"], "python-app", "on behalf of the app");
    let service = events
        .iter()
        .find(|e| e["subtype"][0]["code"] == "read" && e["agent"][0]["name"] == "python-backend")
        .expect("the backend service's reads are audited");
    assert!(service["agent"][0]["who"].is_null(), "a service acts for no person: {service}");
    drop(server);
}

#[test]
fn real_smart_clients_on_the_embedded_store() {
    real_clients_complete_their_flows(None);
}

#[test]
fn real_smart_clients_on_postgres() {
    let database = scratch::Database::create();
    real_clients_complete_their_flows(Some(&database.url));
}
