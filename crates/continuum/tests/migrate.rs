//! Moving a clinic's embedded store onto PostgreSQL with `continuum migrate --from sqlite:DIR
//! --to postgres://…`: every version of every resource (updates and deletions included)
//! arrives with its version number, `lastUpdated` and exact stored text, searches answer the
//! same on the copy, and a second copy into the same database is refused unless resumed.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use store::{Backend, HistoryQuery, Records};

use test_support::process::{binary, continuum};
use test_support::scratch;

fn synthea_bundle(n: usize) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/synthea/smart-2019");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    serde_json::from_str(&std::fs::read_to_string(&files[n]).unwrap()).unwrap()
}

/// Every version of `backend`, oldest first.
fn all_versions(backend: &dyn Backend) -> Vec<store::ResourceVersion> {
    let (mut all, mut after) = (Vec::new(), 0);
    loop {
        let page = backend.versions_after(after, 500).unwrap();
        let Some(last) = page.last() else { return all };
        after = last.sequence;
        all.extend(page);
    }
}

/// `Bundle.total` of `TYPE?QUERY` on `records`.
fn total(records: &Records, resource_type: &str, query: &str) -> u64 {
    let pairs = search::query::parse_pairs(&format!("{query}&_summary=count")).unwrap();
    let parsed = search::SearchQuery::parse(Some(resource_type), &pairs, true).unwrap();
    records.search(&parsed, 0).unwrap().total.expect("a count")
}

fn migrate(args: &[&str]) -> std::process::Output {
    Command::new(binary()).arg("migrate").args(args).output().unwrap()
}

#[test]
fn an_embedded_store_moves_to_postgres_with_its_whole_history() {
    let data = tempfile::tempdir().unwrap();
    {
        let records = Records::new(Arc::new(store_sqlite::SqliteBackend::open(data.path()).unwrap()));
        for n in 0..2 {
            let response = records.process_bundle(synthea_bundle(n)).unwrap();
            assert_eq!(response["type"], "transaction-response");
        }
        // Updates and a deletion, so that history is more than one version per resource.
        let created = records
            .create(json!({"resourceType": "Patient", "name": [{"family": "Moved", "given": ["Ada"]}]}), None)
            .unwrap();
        let id = created.version.unwrap().id;
        for given in ["Ada", "Ida"] {
            let body = json!({"resourceType": "Patient", "id": id, "name": [{"family": "Moved", "given": [given]}],
                "gender": "female"});
            records.update("Patient", &id, body, None).unwrap();
        }
        let gone = records.create(json!({"resourceType": "Patient", "name": [{"family": "Gone"}]}), None).unwrap();
        records.delete("Patient", &gone.version.unwrap().id, None).unwrap();
    }
    // A user of the clinic (its administrator is created with the authorization data).
    continuum(
        data.path(),
        &["user", "add", "doc", "--role", "physician", "--org", "org-1", "--password-stdin"],
        Some("a long enough password\n"),
    );
    continuum(data.path(), &["user", "totp", "doc"], None);
    let source = store_sqlite::SqliteBackend::open(data.path()).unwrap();
    let expected = all_versions(&source);
    assert!(expected.len() > 500, "the copy spans several batches' worth ({} versions)", expected.len());

    let database = scratch::Database::create();
    let from = format!("sqlite:{}", data.path().display());
    let output = migrate(&["--from", &from, "--to", &database.url]);
    assert!(output.status.success(), "migrate: {}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains(&format!("Copied {} versions", expected.len())), "{printed}");

    assert!(printed.contains("Copied 2 users and 0 clients"), "{printed}");
    assert!(printed.contains("1 TOTP enrolments are sealed with the source's secrets key"), "{printed}");
    let elsewhere = tempfile::tempdir().unwrap();
    // The TOTP secrets were copied sealed: they open with the source's key file only.
    let without_key = std::process::Command::new(binary())
        .args(["user", "list", "--database", &database.url, "--data"])
        .arg(elsewhere.path())
        .output()
        .unwrap();
    assert!(!without_key.status.success(), "another key than the secrets' own is refused");
    assert!(String::from_utf8_lossy(&without_key.stderr).contains("secrets key"));
    let key = data.path().join("secrets.key");
    let listed = continuum(
        elsewhere.path(),
        &["user", "list", "--database", &database.url, "--secrets-key", key.to_str().unwrap()],
        None,
    );
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("doc") && listed.contains("roles=physician orgs=org-1 [totp]"), "{listed}");

    // The copy leaves the planner's statistics fresh (searches of a freshly loaded store are
    // planned from empty statistics otherwise).
    let mut client = postgres::Client::connect(&database.url, postgres::NoTls).unwrap();
    let analyzed: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'patient_resource_current' AND last_analyze IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(analyzed, 1, "migrate analyzes the target");

    let target = Arc::new(store_postgres::PostgresBackend::connect(&database.url).unwrap());
    let copied = all_versions(&*target);
    assert_eq!(copied.len(), expected.len());
    for (a, b) in expected.iter().zip(&copied) {
        assert_eq!((&a.resource_type, &a.id, a.version), (&b.resource_type, &b.id, b.version), "order kept");
        assert_eq!(a.last_updated, b.last_updated, "{}/{}: lastUpdated kept", a.resource_type, a.id);
        assert_eq!(a.change, b.change);
        assert_eq!(a.body, b.body, "{}/{} v{}: the stored text is the same", a.resource_type, a.id, a.version);
    }
    assert_eq!(source.count_by_type().unwrap(), target.count_by_type().unwrap());
    let records = Records::new(target.clone());
    assert_eq!(total(&records, "Patient", "family=Moved&given:exact=Ida"), 1, "the copy's indexes answer");
    assert_eq!(total(&records, "Patient", "family=Gone"), 0, "the deletion was copied");
    let heights = "code=http://loinc.org|8302-2";
    let in_sqlite = total(&Records::new(Arc::new(source)), "Observation", heights);
    assert!(in_sqlite > 0);
    assert_eq!(total(&records, "Observation", heights), in_sqlite);
    let history = target.history_total(&HistoryQuery::default()).unwrap();
    assert_eq!(history as usize, expected.len());

    // The target is no longer empty: a second copy is refused, a resumed one writes nothing.
    let again = migrate(&["--from", &from, "--to", &database.url]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    let resumed = migrate(&["--from", &from, "--to", &database.url, "--resume"]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let resumed = String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.contains("Copied 0 versions"), "{resumed}");
    assert!(resumed.contains("Copied 0 users") && resumed.contains("user doc"), "{resumed}");
}

#[test]
fn migrate_brings_a_postgres_schema_up_to_date() {
    let database = scratch::Database::create();
    let output = migrate(&["--database", &database.url]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let version = store_postgres::PostgresBackend::latest_schema_version();
    assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("schema at version {version}")));
    let refused = migrate(&["--database", "mysql://nowhere/db"]);
    assert!(!refused.status.success());
}
