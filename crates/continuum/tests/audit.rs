//! The audit trail end to end: a secured `continuum serve` audits reads, searches, writes and
//! refusals (who, which patient, what, the outcome); `continuum audit verify` finds the chain
//! intact, then finds an entry edited, removed or slipped in directly in the database — on
//! the embedded store and on PostgreSQL.

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use store::AuditLog;

mod common;
#[path = "../../store-postgres/tests/scratch/mod.rs"]
mod scratch;

use common::{BINARY, continuum, start_secured};

/// `continuum audit verify` on the store: (succeeded, what it printed).
fn verify(data: &Path, database: Option<&str>) -> (bool, String) {
    let mut command = Command::new(BINARY);
    command.args(["audit", "verify", "--data"]).arg(data);
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    let output = command.output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Works the API as a physician: writes, reads, searches, a refusal and an anonymous call.
fn exercise(data: &Path, database: Option<&str>) {
    let with_db: Vec<&str> = database.map(|url| vec!["--database", url]).unwrap_or_default();
    let mut add = vec![
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
    ];
    add.extend(&with_db);
    continuum(data, &add, Some("a long enough password\n"));
    let mut add = vec!["user", "add", "boss", "--role", "administrator", "--org", "org-1", "--password-stdin"];
    add.extend(&with_db);
    continuum(data, &add, Some("a long enough password\n"));
    let mint_for = |user: &str, scope: &str| {
        let mut mint = vec!["token", "--user", user, "--scope", scope];
        mint.extend(&with_db);
        String::from_utf8(continuum(data, &mint, None).stdout).unwrap().trim().to_string()
    };
    let token = mint_for("doc", "user/*.cruds");
    let boss = mint_for("boss", "user/*.rs");

    let organization = data.parent().unwrap().join("organization.ndjson");
    std::fs::write(&organization, json!({"resourceType": "Organization", "id": "org-1", "name": "Clinic"}).to_string())
        .unwrap();
    let mut import = vec!["import", organization.to_str().unwrap()];
    import.extend(&with_db);
    continuum(data, &import, None);

    let server = start_secured(data, &with_db);
    let base = server.base.clone();
    let client = reqwest::blocking::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}/{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    assert_eq!(post("Organization", json!({"resourceType": "Organization", "name": "Elsewhere"})).status(), 403);
    let created = post(
        "Patient",
        json!({"resourceType": "Patient", "managingOrganization": {"reference": "Organization/org-1"}}),
    );
    assert_eq!(created.status(), 201);
    let patient: Value = created.json().unwrap();
    let id = patient["id"].as_str().unwrap().to_string();
    let get = |path: &str| client.get(format!("{base}/{path}")).bearer_auth(&token).send().unwrap().status().as_u16();
    assert_eq!(get(&format!("Patient/{id}")), 200);
    assert_eq!(get(&format!("Observation?patient={id}")), 200);
    assert_eq!(get("Observation/_history"), 403, "a refusal is audited too");
    assert_eq!(client.get(format!("{base}/Patient")).send().unwrap().status(), 401);

    // Administrators search the trail; the physician may not; the patient sees who opened
    // their record.
    std::thread::sleep(std::time::Duration::from_millis(300)); // the auditor's batch
    let trail = |bearer: &str, query: &str| {
        client.get(format!("{base}/AuditEvent?{query}")).bearer_auth(bearer).send().unwrap()
    };
    let found = trail(&boss, &format!("patient={id}"));
    assert_eq!(found.status(), 200);
    let found: Value = found.json().unwrap();
    let entries = found["entry"].as_array().unwrap();
    assert!(entries.len() >= 3, "{found}");
    assert!(entries.iter().all(|e| e["resource"]["resourceType"] == "AuditEvent"));
    assert!(entries.iter().any(|e| e["resource"]["agent"][0]["name"] == "doc"), "{found}");
    assert_eq!(trail(&token, "").status(), 403, "a physician does not read the audit trail");
    let mut add = vec!["user", "add", "pat", "--patient", &id, "--password-stdin"];
    add.extend(&with_db);
    continuum(data, &add, Some("a long enough password\n"));
    let own = mint_for("pat", "patient/*.rs");
    let mine: Value = trail(&own, "").json().unwrap();
    let mine = mine["entry"].as_array().unwrap();
    assert!(
        !mine.is_empty() && mine.iter().all(|e| e["resource"]["entity"].to_string().contains(&format!("Patient/{id}")))
    );
    assert_eq!(trail(&own, "patient=someone-else").status(), 404);
    stop(server);
}

fn stop(mut server: common::Server) {
    let status = Command::new("kill").arg("-TERM").arg(server.child.id().to_string()).status().unwrap();
    assert!(status.success());
    assert!(server.child.wait().unwrap().success(), "a graceful stop appends what is queued");
}

/// What the trail must hold after [`exercise`].
fn check_entries(log: &dyn AuditLog) -> i64 {
    let entries = log.search(&store::audit::AuditQuery { count: 1000, ..Default::default() }).unwrap();
    let events: Vec<Value> = entries.iter().map(|e| serde_json::from_str(&e.entry.event).unwrap()).collect();
    let has = |action: &str, subtype: &str, outcome: &str| {
        events.iter().any(|e| e["action"] == action && e["subtype"][0]["code"] == subtype && e["outcome"] == outcome)
    };
    assert!(has("C", "create", "0"), "writes are audited: {events:#?}");
    assert!(has("R", "read", "0") && has("E", "search-type", "0"));
    assert!(has("R", "history-type", "4") && has("C", "create", "4"), "refusals are audited");
    assert!(events.iter().any(|e| e["agent"][0]["name"] == "unauthenticated" && e["outcome"] == "4"));
    let read = events.iter().find(|e| e["subtype"][0]["code"] == "read").unwrap();
    assert_eq!(read["agent"][0]["who"]["reference"], "Practitioner/prac-1");
    assert!(read["agent"][0]["network"]["address"].is_string(), "{read}");
    assert!(entries.iter().any(|e| e.entry.patient.is_some() && e.entry.action == "R"), "reads name the patient");
    entries.len() as i64
}

#[test]
fn tampering_with_the_embedded_trail_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    exercise(&data, None);
    let count = {
        let backend = store_sqlite::SqliteBackend::open(&data).unwrap();
        check_entries(&backend)
    };
    let (ok, said) = verify(&data, None);
    assert!(ok && said.contains(&format!("intact: {count} entries")), "{said}");

    let db = rusqlite::Connection::open(data.join(store_sqlite::DATABASE_FILE)).unwrap();
    let sql = |s: &str| db.execute_batch(s).unwrap();
    // Edited.
    let agent: String = db.query_row("SELECT agent FROM audit_event WHERE sequence = 2", [], |r| r.get(0)).unwrap();
    sql("UPDATE audit_event SET agent = 'user:nobody' WHERE sequence = 2");
    let (ok, said) = verify(&data, None);
    assert!(!ok && said.contains("entry 2: its content was edited"), "{said}");
    db.execute("UPDATE audit_event SET agent = ?1 WHERE sequence = 2", [&agent]).unwrap();
    assert!(verify(&data, None).0, "restored");
    // Removed from the middle, and from the end.
    sql("CREATE TABLE kept AS SELECT * FROM audit_event");
    sql("DELETE FROM audit_event WHERE sequence = 3");
    let (ok, said) = verify(&data, None);
    assert!(!ok && said.contains("entry 3") && said.contains("removed"), "{said}");
    sql(&format!(
        "DELETE FROM audit_event; INSERT INTO audit_event SELECT * FROM kept; DELETE FROM audit_event WHERE sequence = {count}"
    ));
    let (ok, said) = verify(&data, None);
    assert!(!ok && said.contains("removed"), "{said}");
    // Slipped in: a copy of an entry placed after the last one.
    sql("DELETE FROM audit_event; INSERT INTO audit_event SELECT * FROM kept");
    sql(&format!(
        "INSERT INTO audit_event (sequence, recorded, patient, agent, action, outcome, event, previous_hash, hash)
         SELECT {next}, recorded, patient, agent, action, outcome, event, previous_hash, hash FROM kept WHERE sequence = 1",
        next = count + 1
    ));
    let (ok, said) = verify(&data, None);
    assert!(!ok && said.contains(&format!("entry {}", count + 1)), "{said}");
}

#[test]
fn tampering_with_the_postgres_trail_is_found() {
    let database = scratch::Database::create();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    exercise(&data, Some(&database.url));
    let count = {
        let backend = store_postgres::PostgresBackend::connect(&database.url).unwrap();
        check_entries(&backend)
    };
    let (ok, said) = verify(&data, Some(&database.url));
    assert!(ok && said.contains(&format!("intact: {count} entries")), "{said}");
    let mut db = postgres::Client::connect(&database.url, postgres::NoTls).unwrap();
    db.batch_execute("UPDATE audit_event SET event = replace(event, 'Practitioner/prac-1', 'Practitioner/other') WHERE sequence = (SELECT min(sequence) FROM audit_event WHERE event LIKE '%Practitioner/prac-1%')").unwrap();
    let (ok, said) = verify(&data, Some(&database.url));
    assert!(!ok && said.contains("its content was edited"), "{said}");
    db.batch_execute("DELETE FROM audit_event WHERE sequence = 2").unwrap();
    let (ok, said) = verify(&data, Some(&database.url));
    assert!(!ok, "{said}");
}
