//! The audit trail end to end: a secured `continuum serve` audits reads, searches, writes and
//! refusals (who, which patient, what, the outcome); `continuum audit verify` finds the chain
//! intact, then finds an entry edited, removed or slipped in directly in the database, and a
//! chain rewritten consistently without the key; with the trail unwritable, reads and writes
//! are refused (503) rather than served unaudited, and recover once it is writable again;
//! `continuum token` mints are audited and capped — on the embedded store and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use store::AuditLog;
use store::audit::AuditEntry;

use test_support::process::{Server, binary, continuum, start_secured};
use test_support::scratch;

/// `continuum audit verify` on the store: (succeeded, what it printed).
fn verify(data: &Path, database: Option<&str>) -> (bool, String) {
    let mut command = Command::new(binary());
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

fn stop(mut server: Server) {
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

/// `(sequence, previous_hash, hash)` of every entry from `from` on, recomputed with plain
/// hashes after the entry before it: what someone who can write the table, but has no key,
/// produces when they rewrite the trail consistently.
fn rewritten_plain(entries: &[AuditEntry], from: i64) -> Vec<(i64, String, String)> {
    let mut previous =
        entries.iter().find(|e| e.sequence == from - 1).map_or(store::audit::GENESIS.to_string(), |e| e.hash.clone());
    let mut rows = Vec::new();
    for e in entries.iter().filter(|e| e.sequence >= from) {
        let hash = store::audit::entry_hash(&previous, e.sequence, &e.entry);
        rows.push((e.sequence, previous.clone(), hash.clone()));
        previous = hash;
    }
    rows
}

/// Every entry, oldest first.
fn all_entries(log: &dyn AuditLog) -> Vec<AuditEntry> {
    log.entries_after(0, 1_000_000).unwrap()
}

#[test]
fn a_trail_rewritten_without_the_key_is_found_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    exercise(&data, None);
    let key_file = data.join("audit.key");
    let mode = std::fs::metadata(&key_file).unwrap();
    assert_eq!(mode.len(), 32, "32 random bytes");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600, "the key is its owner's only");
    }
    let entries = all_entries(&store_sqlite::SqliteBackend::open(&data).unwrap());
    assert!(entries.iter().all(|e| e.hash.starts_with(store::audit::KEYED)), "a new trail is keyed throughout");
    let (ok, said) = verify(&data, None);
    assert!(ok && said.contains("every entry keyed"), "{said}");

    let db = rusqlite::Connection::open(data.join(store_sqlite::DATABASE_FILE)).unwrap();
    db.execute_batch(
        "CREATE TABLE kept AS SELECT * FROM audit_event; CREATE TABLE kept_head AS SELECT * FROM audit_chain",
    )
    .unwrap();
    let rewrite = |from: i64, edit: &str| {
        db.execute_batch(&format!(
            "DELETE FROM audit_event; INSERT INTO audit_event SELECT * FROM kept;
             DELETE FROM audit_chain; INSERT INTO audit_chain SELECT * FROM kept_head; {edit}"
        ))
        .unwrap();
        let entries = all_entries(&store_sqlite::SqliteBackend::open(&data).unwrap());
        let rows = rewritten_plain(&entries, from);
        for (sequence, previous, hash) in &rows {
            db.execute(
                "UPDATE audit_event SET previous_hash = ?2, hash = ?3 WHERE sequence = ?1",
                rusqlite::params![sequence, previous, hash],
            )
            .unwrap();
        }
        let (last, _, hash) = rows.last().unwrap();
        db.execute("UPDATE audit_chain SET sequence = ?1, hash = ?2", rusqlite::params![last, hash]).unwrap();
    };
    // The whole chain, an agent edited and every hash recomputed: it would pass a plain check.
    rewrite(1, "UPDATE audit_event SET agent = 'user:nobody' WHERE sequence = 3");
    let (ok, said) = verify(&data, None);
    assert!(!ok && said.contains("no entry is keyed"), "{said}");
    // From entry 4 on only: named at entry 4.
    rewrite(4, "UPDATE audit_event SET outcome = '0' WHERE sequence = 5");
    let (ok, said) = verify(&data, None);
    assert!(!ok && said.contains("BROKEN at entry 4") && said.contains("rewritten without the key"), "{said}");
    // Without the key file, keyed entries cannot be checked: that is no pass either.
    db.execute_batch(
        "DELETE FROM audit_event; INSERT INTO audit_event SELECT * FROM kept;
         DELETE FROM audit_chain; INSERT INTO audit_chain SELECT * FROM kept_head",
    )
    .unwrap();
    assert!(verify(&data, None).0, "restored");
    std::fs::rename(&key_file, dir.path().join("elsewhere.key")).unwrap();
    let (ok, said) = verify(&data, None);
    assert!(!ok && said.contains("no key was given"), "{said}");
    // With the key named on the command line (as PostgreSQL deployments do).
    let output = Command::new(binary())
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .arg("--audit-key")
        .arg(dir.path().join("elsewhere.key"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    // A server refuses to start with another key than the trail's.
    let other = dir.path().join("other.key");
    std::fs::write(&other, [7u8; 32]).unwrap();
    let output = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("CONTINUUM_AUDIT_KEY_FILE", &other)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not written with this audit key"));
}

#[test]
fn a_trail_rewritten_without_the_key_is_found_on_postgres() {
    let database = scratch::Database::create();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The key lives outside the database: here a file named by the environment.
    let key_file = dir.path().join("keys").join("audit.key");
    continuum(
        &data,
        &[
            "user",
            "add",
            "doc",
            "--role",
            "physician",
            "--org",
            "org-1",
            "--password-stdin",
            "--database",
            &database.url,
        ],
        Some("a long enough password\n"),
    );
    for _ in 0..3 {
        let output = Command::new(binary())
            .args(["token", "--user", "doc", "--scope", "user/*.rs", "--database", &database.url, "--data"])
            .arg(&data)
            .env("CONTINUUM_AUDIT_KEY_FILE", &key_file)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    assert!(!data.join("audit.key").exists() && key_file.exists());
    let verify_with = |key: &Path| {
        let output = Command::new(binary())
            .args(["audit", "verify", "--database", &database.url, "--data"])
            .arg(&data)
            .arg("--audit-key")
            .arg(key)
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (ok, said) = verify_with(&key_file);
    assert!(ok && said.contains("intact: 4 entries"), "{said}");

    // An agent edited, then every entry's hash recomputed (plain: there is no key to use).
    let backend = store_postgres::PostgresBackend::connect(&database.url).unwrap();
    let mut db = postgres::Client::connect(&database.url, postgres::NoTls).unwrap();
    db.batch_execute("UPDATE audit_event SET agent = 'user:os:nobody' WHERE sequence = 2").unwrap();
    let rows = rewritten_plain(&all_entries(&backend), 1);
    for (sequence, previous, hash) in &rows {
        db.execute(
            "UPDATE audit_event SET previous_hash = $2, hash = $3 WHERE sequence = $1",
            &[sequence, previous, hash],
        )
        .unwrap();
    }
    let (last, _, hash) = rows.last().unwrap();
    db.execute("UPDATE audit_chain SET sequence = $1, hash = $2", &[last, hash]).unwrap();
    let (ok, said) = verify_with(&key_file);
    assert!(!ok && said.contains("no entry is keyed"), "{said}");
}

#[test]
fn a_trail_from_before_keys_still_verifies_and_is_keyed_from_a_marked_entry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    continuum(
        &data,
        &["user", "add", "doc", "--role", "physician", "--org", "org-1", "--password-stdin"],
        Some("a long enough password\n"),
    );
    {
        // Entries appended as a server did before keys: plain hashes.
        let backend = store_sqlite::SqliteBackend::open(&data).unwrap();
        let actor = store::Agent::system("old-server");
        let entries: Vec<_> = (0..3)
            .map(|n| {
                let what = [format!("Patient/p{n}")];
                let happening = store::audit::Happening {
                    action: store::audit::Action::Read,
                    subtype: store::audit::Subtype::Read,
                    outcome: store::audit::Outcome::Success,
                    entities: &what,
                    query: None,
                    patient: Some("p1"),
                    reason: None,
                };
                store::audit::event(&actor, &happening, time::OffsetDateTime::now_utc())
            })
            .collect();
        backend.append(&entries, None).unwrap();
    }
    let (ok, said) = verify(&data, None);
    assert!(ok && said.contains("intact: 3 entries") && said.contains("no key"), "{said}");
    // The first command that appends with a key marks where keying begins.
    continuum(&data, &["token", "--user", "doc", "--scope", "user/*.rs"], None);
    let (ok, said) = verify(&data, None);
    assert!(ok && said.contains("intact: 5 entries") && said.contains("2 keyed"), "{said}");
    let entries = all_entries(&store_sqlite::SqliteBackend::open(&data).unwrap());
    let marker: Value = serde_json::from_str(&entries[3].entry.event).unwrap();
    assert_eq!(marker["subtype"][0]["code"], "audit-keyed", "{marker}");
    // The plain beginning is still checked: an edit there is found.
    let db = rusqlite::Connection::open(data.join(store_sqlite::DATABASE_FILE)).unwrap();
    db.execute_batch("UPDATE audit_event SET patient = 'p2' WHERE sequence = 2").unwrap();
    let (ok, said) = verify(&data, None);
    assert!(!ok && said.contains("entry 2: its content was edited"), "{said}");
}

#[test]
fn token_mints_are_audited_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    continuum(
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
    let mint = |args: &[&str]| {
        let output = Command::new(binary())
            .args(["token", "--data"])
            .arg(&data)
            .args(["--user", "doc"])
            .args(args)
            .env("USER", "operator-ann")
            .env_remove("CONTINUUM_TOKEN_MAX_MINUTES")
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).trim().to_string(), output.stderr)
    };
    let (ok, token, _) = mint(&["--scope", "user/*.rs", "--lifetime-minutes", "90"]);
    assert!(ok && !token.is_empty());
    let backend = store_sqlite::SqliteBackend::open(&data).unwrap();
    let entries = all_entries(&backend);
    assert_eq!(entries.len(), 2, "the entry where keying begins, then one per mint");
    let marker: Value = serde_json::from_str(&entries[0].entry.event).unwrap();
    assert_eq!(marker["subtype"][0]["code"], "audit-keyed");
    let event: Value = serde_json::from_str(&entries[1].entry.event).unwrap();
    assert_eq!(event["subtype"][0]["code"], "token-mint", "{event}");
    assert_eq!(event["agent"][0]["name"], "os:operator-ann", "who minted");
    let minted_for = &event["entity"][0];
    assert_eq!(minted_for["what"]["identifier"]["value"], "doc", "{event}");
    assert_eq!(minted_for["what"]["reference"], "Practitioner/prac-1");
    assert_eq!(minted_for["detail"][0]["valueString"], "user/*.rs");
    assert_eq!(minted_for["detail"][1]["valueString"], "5400");
    assert!(!entries[1].entry.event.contains(&token), "the token itself is never in the trail");

    // Above the cap, system scopes without --allow-system, unknown scopes: refused, nothing minted.
    let (ok, out, stderr) = mint(&["--scope", "user/*.rs", "--lifetime-minutes", "600"]);
    assert!(!ok && out.is_empty() && String::from_utf8_lossy(&stderr).contains("above the cap"));
    let (ok, _, stderr) = mint(&["--scope", "system/*.rs"]);
    assert!(!ok && String::from_utf8_lossy(&stderr).contains("--allow-system"));
    let (ok, _, _) = mint(&["--scope", "user/*.rs made-up"]);
    assert!(!ok);
    assert_eq!(all_entries(&backend).len(), 2, "refused mints mint nothing");
    // A raised cap, and system scopes when allowed.
    let (ok, _, _) = mint(&["--scope", "user/*.rs", "--lifetime-minutes", "600", "--max-lifetime-minutes", "720"]);
    assert!(ok);
    let (ok, _, _) = mint(&["--scope", "system/Patient.rs", "--allow-system"]);
    assert!(ok);
    assert_eq!(all_entries(&backend).len(), 4);
    let (ok, said) = verify(&data, None);
    assert!(ok && said.contains("intact: 4 entries"), "{said}");
}

/// Makes the audit table refuse inserts, or lets it accept them again.
trait Blocker {
    fn block(&mut self);
    fn unblock(&mut self);
}

struct SqliteBlocker(rusqlite::Connection);

impl Blocker for SqliteBlocker {
    fn block(&mut self) {
        self.0
            .execute_batch(
                "CREATE TRIGGER audit_blocked BEFORE INSERT ON audit_event BEGIN SELECT RAISE(ABORT, 'blocked'); END",
            )
            .unwrap();
    }
    fn unblock(&mut self) {
        self.0.execute_batch("DROP TRIGGER audit_blocked").unwrap();
    }
}

struct PostgresBlocker(postgres::Client);

impl Blocker for PostgresBlocker {
    fn block(&mut self) {
        self.0
            .batch_execute(
                "CREATE OR REPLACE FUNCTION audit_blocked() RETURNS trigger LANGUAGE plpgsql AS
                     $$ BEGIN RAISE EXCEPTION 'blocked'; END $$;
                 CREATE TRIGGER audit_blocked BEFORE INSERT ON audit_event
                     FOR EACH ROW EXECUTE FUNCTION audit_blocked();",
            )
            .unwrap();
    }
    fn unblock(&mut self) {
        self.0.batch_execute("DROP TRIGGER audit_blocked ON audit_event").unwrap();
    }
}

/// With the trail unwritable mid-run, reads, searches and writes are answered 503 (and the
/// writes leave nothing); once it is writable again, everything works and the chain is intact.
fn unwritable_trail(data: &Path, database: Option<&str>, blocker: impl FnOnce() -> Box<dyn Blocker>) {
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
    let mut mint = vec!["token", "--user", "doc", "--scope", "user/*.cruds"];
    mint.extend(&with_db);
    let token = String::from_utf8(continuum(data, &mint, None).stdout).unwrap().trim().to_string();
    let organization = data.parent().unwrap().join("organization.ndjson");
    std::fs::write(&organization, json!({"resourceType": "Organization", "id": "org-1", "name": "Clinic"}).to_string())
        .unwrap();
    let mut import = vec!["import", organization.to_str().unwrap()];
    import.extend(&with_db);
    continuum(data, &import, None);

    let server = start_secured(data, &with_db);
    let base = server.base.clone();
    let client = reqwest::blocking::Client::new();
    let create = |family: &str| {
        client
            .post(format!("{base}/Patient"))
            .bearer_auth(&token)
            .header("content-type", "application/fhir+json")
            .body(
                json!({"resourceType": "Patient", "name": [{"family": family}],
                       "managingOrganization": {"reference": "Organization/org-1"}})
                .to_string(),
            )
            .send()
            .unwrap()
    };
    let get = |path: &str| client.get(format!("{base}/{path}")).bearer_auth(&token).send().unwrap();
    let created = create("Before");
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(get(&format!("Patient/{id}")).status(), 200);

    let mut blocker = blocker();
    blocker.block();
    let refused = get(&format!("Patient/{id}"));
    assert_eq!(refused.status(), 503, "a read is not served unaudited");
    let outcome: Value = refused.json().unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "transient", "{outcome}");
    assert!(outcome.to_string().contains("the audit trail is unavailable"), "{outcome}");
    assert!(!outcome.to_string().contains("Before"), "nothing of the record is shown");
    assert_eq!(get("Patient?family=Before").status(), 503, "nor a search");
    assert_eq!(create("During").status(), 503, "a write fails with its audit entry");
    assert_eq!(client.get(format!("{base}/Patient")).send().unwrap().status(), 503, "nor a refusal");

    blocker.unblock();
    assert_eq!(get(&format!("Patient/{id}")).status(), 200, "recovered");
    assert_eq!(create("After").status(), 201);
    let found: Value = get("Patient?family=During").json().unwrap();
    assert!(found["entry"].as_array().is_none_or(|e| e.is_empty()), "the refused write left nothing: {found}");
    stop(server);
    let (ok, said) = verify(data, database);
    assert!(ok, "{said}");
}

#[test]
fn an_unwritable_embedded_trail_refuses_requests() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = data.join(store_sqlite::DATABASE_FILE);
    unwritable_trail(&data, None, move || {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        Box::new(SqliteBlocker(db))
    });
}

#[test]
fn an_unwritable_postgres_trail_refuses_requests() {
    let database = scratch::Database::create();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = database.url.clone();
    unwritable_trail(&data, Some(&database.url), move || {
        Box::new(PostgresBlocker(postgres::Client::connect(&url, postgres::NoTls).unwrap()))
    });
}
