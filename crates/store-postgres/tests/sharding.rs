//! The sharded layout (schema version 4, `docs/scale-out.md`), checked on the live schema:
//! the shard-key rule of every table, where rows go and how they move, which partitions a
//! search reads, and the upgrade of a version-3 database. Each check holds in both modes the
//! suite runs in: plain tables, and (with `CONTINUUM_TEST_POSTGRES_PARTITIONS=N`) patient-owned
//! tables hash-partitioned by shard key.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use store::{HistoryQuery, Records};
use store_behaviour::records::body;
use store_postgres::PostgresBackend;
use test_support::scratch;

/// Tables that are not patient-owned, and must not carry a shard key: Citus reference tables
/// (`shared_*`, `interface_partner`) and node-local ones. Any other table must be
/// patient-owned: a new table fails [`every_table_follows_the_shard_key_rule`] until it is
/// given a shard key or put here on purpose.
const NOT_PATIENT_OWNED: &[&str] = &[
    "continuum_migration",
    "continuum_layout",
    "interface_message",
    "interface_partner",
    "interface_inbound_partner",
    // Bulk Data job states: the server's work, not a patient's data.
    "job",
    // The notification outbox: a channel's order (a Subscription's event numbers) spans
    // patients, so it cannot be split by patient; its rows name resources, not their content.
    "notification",
    "shared_resource_current",
    "shared_resource_version",
    "shared_identifier_index",
    "shared_search_string",
    "shared_search_token",
    "shared_search_reference",
    "shared_search_date",
    "shared_search_number",
    "shared_search_quantity",
    "shared_search_uri",
    "shared_search_text",
    // The audit chain's one-row head (a reference table under Citus).
    "audit_chain",
];

fn client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

fn store(database: &scratch::Database) -> (Arc<PostgresBackend>, Records) {
    let backend = Arc::new(PostgresBackend::connect(&database.url).unwrap());
    (backend.clone(), Records::new(backend))
}

fn put(records: &Records, resource: Value) {
    let (ty, id) =
        (resource["resourceType"].as_str().unwrap().to_string(), resource["id"].as_str().unwrap().to_string());
    records.update(&ty, &id, resource, None).unwrap();
}

fn observation(id: &str, subject: &str, code: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": subject}
    })
}

fn ids(records: &Records, query: &str) -> Vec<String> {
    let (path, qs) = query.split_once('?').unwrap_or((query, ""));
    let pairs = search::query::parse_pairs(qs).unwrap();
    let parsed = search::SearchQuery::parse(Some(path).filter(|p| !p.is_empty()), &pairs, false).unwrap();
    let page = records.search(&parsed, 100).unwrap();
    page.matches.iter().map(|v| format!("{}/{}", v.resource_type, v.id)).collect()
}

/// `shard_key` of `table`'s rows for `type/id`.
fn keys(db: &mut postgres::Client, table: &str, ty: &str, id: &str) -> Vec<String> {
    let sql = format!("SELECT shard_key FROM {table} WHERE resource_type = $1 AND id = $2 ORDER BY 1");
    db.query(&sql, &[&ty, &id]).unwrap().iter().map(|r| r.get(0)).collect()
}

#[test]
fn every_table_follows_the_shard_key_rule() {
    let database = scratch::Database::create();
    let (backend, _records) = store(&database);
    assert_eq!(backend.shard_partitions().unwrap(), scratch::partitions().unwrap_or(0));
    let mut db = client(&database.url);
    // Every table of the schema (partitions included), and whether its shard_key is NOT NULL.
    let tables: BTreeMap<String, Option<bool>> = db
        .query(
            "SELECT c.relname::text, (SELECT a.attnotnull FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = 'shard_key' AND NOT a.attisdropped)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Every primary key and unique constraint (and unique index), with its columns.
    let unique: Vec<(String, String, Vec<String>)> = db
        .query(
            "SELECT t.relname::text, i.relname::text,
                 array(SELECT a.attname::text FROM unnest(x.indkey) k JOIN pg_attribute a
                       ON a.attrelid = x.indrelid AND a.attnum = k)
             FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = current_schema() AND (x.indisunique OR x.indisprimary)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let parent_of: BTreeMap<String, String> = db
        .query(
            "SELECT c.relname::text, p.relname::text FROM pg_inherits h
             JOIN pg_class c ON c.oid = h.inhrelid JOIN pg_class p ON p.oid = h.inhparent",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut broken = Vec::new();
    let mut patient_owned = 0;
    for (table, shard_key) in &tables {
        let root = parent_of.get(table).unwrap_or(table);
        if NOT_PATIENT_OWNED.contains(&root.as_str()) {
            if shard_key.is_some() {
                broken.push(format!("{table}: shared or node-local, but has shard_key"));
            }
            continue;
        }
        patient_owned += 1;
        if *shard_key != Some(true) {
            broken.push(format!("{table}: patient-owned, but has no NOT NULL shard_key"));
        }
        for (_, index, columns) in unique.iter().filter(|(t, _, _)| t == table) {
            if !columns.iter().any(|c| c == "shard_key") {
                broken.push(format!("{table}: {index} ({}) lacks shard_key", columns.join(", ")));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    // The patient-owned tables exist (resources, history, identifiers, 8 index tables, outbox,
    // audit trail).
    let expected = 13 * (1 + scratch::partitions().unwrap_or(0) as usize);
    assert_eq!(patient_owned, expected, "{tables:?}");
    for name in [
        "patient_resource_current",
        "patient_resource_version",
        "patient_search_text",
        "interface_outbox",
        "audit_event",
    ] {
        assert!(unique.iter().any(|(t, _, c)| t == name && c.first().is_some_and(|c| c == "shard_key")), "{name}");
    }
    // Partitioned mode: the patient-owned tables are hash-partitioned by shard_key.
    let partitioned: BTreeSet<String> = db
        .query(
            "SELECT c.relname::text FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
             JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
             WHERE p.partstrat = 'h' AND a.attname = 'shard_key'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want = if scratch::partitions().unwrap_or(0) > 0 { 13 } else { 0 };
    assert_eq!(partitioned.len(), want, "{partitioned:?}");
}

#[test]
fn rows_carry_their_patients_key_and_move_with_it() {
    let database = scratch::Database::create();
    let (_backend, records) = store(&database);
    let mut db = client(&database.url);
    for id in ["p1", "p2"] {
        put(&records, json!({"resourceType": "Patient", "id": id, "identifier": [{"system": "s", "value": id}]}));
    }
    put(&records, json!({"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Who"}]}));
    put(&records, observation("o", "Patient/p1", "1-1"));
    let rid_before: i64 = db.query_one("SELECT rid FROM patient_resource_current WHERE id = 'o'", &[]).unwrap().get(0);
    assert_eq!(keys(&mut db, "patient_resource_current", "Patient", "p1"), ["p1"]);
    assert_eq!(keys(&mut db, "patient_identifier_index", "Patient", "p2"), ["p2"]);
    assert_eq!(keys(&mut db, "patient_resource_current", "Observation", "o"), ["p1"]);
    // Shared resources live without a key, in their own tables.
    let shared: i64 = db.query_one("SELECT count(*) FROM shared_resource_current WHERE id = 'dr'", &[]).unwrap().get(0);
    assert_eq!(shared, 1);
    assert_eq!(ids(&records, "Practitioner?name=who"), ["Practitioner/dr"]);
    // The patient changes: the current row and index rows move, history keeps its keys.
    put(&records, observation("o", "Patient/p2", "1-1"));
    assert_eq!(keys(&mut db, "patient_resource_current", "Observation", "o"), ["p2"]);
    assert_eq!(keys(&mut db, "patient_resource_version", "Observation", "o"), ["p1", "p2"]);
    let rid_after: i64 = db.query_one("SELECT rid FROM patient_resource_current WHERE id = 'o'", &[]).unwrap().get(0);
    assert_eq!(rid_after, rid_before);
    let index_keys: Vec<String> = db
        .query("SELECT DISTINCT shard_key FROM patient_search_token WHERE rid = $1", &[&rid_after])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(index_keys, ["p2"]);
    assert_eq!(ids(&records, "Observation?subject=Patient/p2"), ["Observation/o"]);
    assert!(ids(&records, "Observation?subject=Patient/p1").is_empty());
    assert_eq!(ids(&records, "Observation?code=http://loinc.org|1-1"), ["Observation/o"]);
    // A deletion keeps the key of the current row; a Patient's key is its id.
    records.delete("Observation", "o", None).unwrap();
    assert_eq!(keys(&mut db, "patient_resource_current", "Observation", "o"), ["p2"]);
    assert_eq!(keys(&mut db, "patient_resource_version", "Observation", "o"), ["p1", "p2", "p2"]);
    // Without a patient reference: the '' key. A performer is not the owner.
    put(&records, json!({"resourceType": "Observation", "id": "lone", "status": "final", "code": {"text": "x"}}));
    assert_eq!(keys(&mut db, "patient_resource_current", "Observation", "lone"), [""]);
    let mut with_performer = observation("both", "Patient/p1", "2-2");
    with_performer["performer"] = json!([{"reference": "Patient/p2"}]);
    put(&records, with_performer);
    assert_eq!(keys(&mut db, "patient_resource_current", "Observation", "both"), ["p1"]);
    // Unpinned searches still find what another patient's shard holds.
    assert_eq!(ids(&records, "Observation?performer=Patient/p2"), ["Observation/both"]);
    let compartment = search::SearchQuery::everything("p2", None, None).unwrap();
    let found: Vec<String> = records.search(&compartment, 100).unwrap().matches.iter().map(|v| v.id.clone()).collect();
    assert!(found.contains(&"both".to_string()) && found.contains(&"p2".to_string()), "{found:?}");
}

/// The partitions of each patient-owned table that a plan reads, by table.
fn partitions_read(plan: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut read: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in plan.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0] != "on" || !(pair[1].starts_with("patient_") || pair[1].starts_with("interface_outbox")) {
                continue;
            }
            let name = pair[1];
            let (table, partition) = match name.rsplit_once("_p") {
                Some((table, n)) if n.chars().all(|c| c.is_ascii_digit()) => (table, name),
                _ => (name, name),
            };
            read.entry(table.to_string()).or_default().insert(partition.to_string());
        }
    }
    read
}

#[test]
fn single_patient_searches_read_one_shard() {
    let database = scratch::Database::create();
    let (backend, records) = store(&database);
    for id in ["p1", "p2", "p3"] {
        put(&records, json!({"resourceType": "Patient", "id": id, "name": [{"family": "F"}]}));
        put(&records, observation(&format!("o-{id}"), &format!("Patient/{id}"), "1-1"));
    }
    let partitions = scratch::partitions().unwrap_or(0) as usize;
    let plan = |query: &str| {
        let (path, qs) = query.split_once('?').unwrap();
        let parsed = search::SearchQuery::parse(Some(path), &search::query::parse_pairs(qs).unwrap(), false).unwrap();
        backend.explain_search(&parsed, 100).unwrap()
    };
    let pinned = [
        "Observation?subject=Patient/p1",
        "Observation?patient=p1&code=http://loinc.org|1-1",
        "Observation?subject=Patient/p1&_sort=-date",
        "Patient?_id=p1",
        "Patient?_id=p1&name=F",
    ];
    for query in pinned {
        assert_eq!(ids(&records, query).len(), 1, "{query}");
        let plan = plan(query);
        assert!(plan.contains("shard_key"), "{query} is not pinned:\n{plan}");
        let read = partitions_read(&plan);
        assert!(read.contains_key("patient_resource_current"), "{query}:\n{plan}");
        if partitions > 0 {
            for (table, parts) in &read {
                assert_eq!(parts.len(), 1, "{query} reads {parts:?} of {table}:\n{plan}");
            }
        }
    }
    // Searches not scoped to one patient read every shard.
    for query in ["Observation?code=http://loinc.org|1-1", "Observation?performer=Patient/p1", "Patient?name=F"] {
        assert!(ids(&records, query).len() != 1 || query.contains("performer"), "{query}");
        let plan = plan(query);
        assert!(!plan.contains("shard_key"), "{query} is pinned:\n{plan}");
        if partitions > 0 {
            let read = partitions_read(&plan);
            let most = read.values().map(BTreeSet::len).max().unwrap_or(0);
            assert_eq!(most, partitions, "{query} reads {read:?}:\n{plan}");
        }
    }
}

/// A version-3 database written the way the version-3 backend wrote it (the index rows of
/// the kinds the checks below search).
fn put_v3(db: &mut postgres::Client, resource: &Value, version: i64, deleted: bool) {
    let (ty, id) = (resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
    let mut stored = resource.clone();
    stored["meta"] = json!({"versionId": version.to_string(), "lastUpdated": "2024-01-01T00:00:00Z"});
    let body = (!deleted).then(|| stored.to_string());
    let change = if deleted {
        "deleted"
    } else if version == 1 {
        "created"
    } else {
        "updated"
    };
    let now = 1_704_067_200_000_000i64 + version;
    let sequence: i64 = db
        .query_one(
            "INSERT INTO resource_version (resource_type, id, version, last_updated, change, body)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING sequence",
            &[&ty, &id, &version, &now, &change, &body],
        )
        .unwrap()
        .get(0);
    let rid: i64 = db
        .query_one(
            "INSERT INTO resource_current (resource_type, id, version, last_updated, change, deleted, sequence, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (resource_type, id) DO UPDATE SET version = $3, last_updated = $4, change = $5,
                 deleted = $6, sequence = $7, body = $8
             RETURNING rid",
            &[&ty, &id, &version, &now, &change, &deleted, &sequence, &body],
        )
        .unwrap()
        .get(0);
    for table in ["search_string", "search_token", "search_reference"] {
        db.execute(&format!("DELETE FROM {table} WHERE rid = $1"), &[&rid]).unwrap();
    }
    db.execute("DELETE FROM identifier_index WHERE resource_type = $1 AND id = $2", &[&ty, &id]).unwrap();
    if deleted {
        return;
    }
    for entry in search::extract(ty, &stored, &search::IndexContext::default()) {
        let (param, grp) = (entry.param, entry.group);
        match entry.value {
            search::IndexValue::String { normalized, exact } => db.execute(
                "INSERT INTO search_string (rid, param, grp, normalized, exact) VALUES ($1, $2, $3, $4, $5)",
                &[&rid, &param, &grp, &normalized, &exact],
            ),
            search::IndexValue::Token { system, code, text } => db.execute(
                "INSERT INTO search_token (rid, param, grp, system, code, text) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&rid, &param, &grp, &system, &code, &text],
            ),
            search::IndexValue::Reference { target_type, target_id, version, url, .. } => db.execute(
                "INSERT INTO search_reference (rid, param, grp, target_type, target_id, version, url)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&rid, &param, &grp, &target_type, &target_id, &version, &url],
            ),
            _ => Ok(0),
        }
        .unwrap();
    }
    for identifier in resource["identifier"].as_array().into_iter().flatten() {
        db.execute(
            "INSERT INTO identifier_index (resource_type, value, system, id) VALUES ($1, $2, $3, $4)",
            &[&ty, &identifier["value"].as_str().unwrap(), &identifier["system"].as_str().unwrap_or(""), &id],
        )
        .unwrap();
    }
}

#[test]
fn a_version_3_database_upgrades_without_losing_data() {
    let database = scratch::Database::create();
    PostgresBackend::migrate_to_version(&database.url, 3).unwrap();
    let mut db = client(&database.url);
    let patient = json!({"resourceType": "Patient", "id": "a", "name": [{"family": "Older"}],
        "identifier": [{"system": "mrn", "value": "7"}]});
    put_v3(&mut db, &patient, 1, false);
    put_v3(&mut db, &json!({"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Who"}]}), 1, false);
    put_v3(&mut db, &observation("o", "Patient/a", "1-1"), 1, false);
    put_v3(&mut db, &observation("o", "Patient/a", "2-2"), 2, false);
    put_v3(&mut db, &observation("gone", "Patient/a", "3-3"), 1, false);
    put_v3(&mut db, &observation("gone", "Patient/a", "3-3"), 2, true);
    db.execute(
        "INSERT INTO interface_outbox (partner, created_at, event, message_type, control_id, resource, patient,
             status, next_attempt_at, updated_at, payload)
         VALUES ('lab', 1, 'A01', 'ADT^A01', 'C1', 'Encounter/e', 'a', 'pending', 1, 1, 'MSH|')",
        &[],
    )
    .unwrap();

    let (backend, records) = store(&database);
    assert_eq!(backend.schema_version().unwrap(), PostgresBackend::latest_schema_version());
    // Reads, versions, history.
    assert_eq!(body(&records.read("Patient", "a").unwrap())["name"][0]["family"], json!("Older"));
    assert_eq!(records.read("Observation", "o").unwrap().version, 2);
    let v1 = body(&records.vread("Observation", "o", 1).unwrap());
    assert_eq!(v1["code"]["coding"][0]["code"], json!("1-1"));
    assert!(records.read("Observation", "gone").is_err());
    let query = |ty: &str, id: &str| HistoryQuery {
        resource_type: Some(ty.into()),
        id: Some(id.into()),
        count: 10,
        ..HistoryQuery::default()
    };
    assert_eq!(records.history(&query("Observation", "gone")).unwrap().len(), 2);
    assert_eq!(records.history_total(&HistoryQuery::default()).unwrap(), 6);
    assert_eq!(records.backend().find_by_identifier("Patient", Some("mrn"), "7").unwrap(), ["a"]);
    // Searches over the moved index rows.
    assert_eq!(ids(&records, "Observation?subject=Patient/a"), ["Observation/o"]);
    assert_eq!(ids(&records, "Observation?code=http://loinc.org|2-2"), ["Observation/o"]);
    assert!(ids(&records, "Observation?code=http://loinc.org|1-1").is_empty());
    assert_eq!(ids(&records, "Patient?name=older"), ["Patient/a"]);
    assert_eq!(ids(&records, "Practitioner?name=who"), ["Practitioner/dr"]);
    // Keys computed from the stored reference rows; shared rows without one.
    assert_eq!(keys(&mut db, "patient_resource_current", "Observation", "o"), ["a"]);
    assert_eq!(keys(&mut db, "patient_resource_version", "Observation", "o"), ["a", "a"]);
    assert_eq!(keys(&mut db, "patient_resource_current", "Patient", "a"), ["a"]);
    let outbox: String = db.query_one("SELECT shard_key FROM interface_outbox", &[]).unwrap().get(0);
    assert_eq!(outbox, "a");
    let shared: i64 = db.query_one("SELECT count(*) FROM shared_resource_version", &[]).unwrap().get(0);
    assert_eq!(shared, 1);
    // Writing goes on where the old sequences stopped.
    put(&records, observation("o", "Patient/a", "4-4"));
    put(&records, observation("new", "Patient/a", "5-5"));
    assert_eq!(records.read("Observation", "o").unwrap().version, 3);
    assert_eq!(ids(&records, "Observation?subject=Patient/a&_sort=_id"), ["Observation/new", "Observation/o"]);
    let rids: Vec<i64> =
        db.query("SELECT rid FROM resource_current ORDER BY rid", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(rids.len(), 5);
    assert_eq!(rids.iter().collect::<BTreeSet<_>>().len(), 5);
    assert_eq!(records.history_total(&HistoryQuery::default()).unwrap(), 8);
}

#[test]
fn reads_through_the_views_use_both_families_indexes() {
    let database = scratch::Database::create();
    let (_backend, records) = store(&database);
    put(&records, json!({"resourceType": "Patient", "id": "p1"}));
    put(&records, observation("o", "Patient/p1", "1-1"));
    let mut db = client(&database.url);
    // With sequential scans priced out, a plan still shows one only where no index path
    // exists: where a condition was not pushed into a branch of the `UNION ALL`.
    db.batch_execute("SET enable_seqscan = off").unwrap();
    let reads = [
        // Fetching search results by row key.
        "SELECT rid FROM resource_current WHERE rid = ANY('{1,2}') AND NOT deleted",
        // `_include`: the resources the matches reference.
        "SELECT DISTINCT c.rid FROM search_reference t JOIN resource_current c
             ON c.resource_type = t.target_type AND c.id = t.target_id
         WHERE t.rid = ANY('{1,2}') AND t.param = 1 AND NOT c.deleted",
        // System history, newest first.
        "SELECT sequence FROM resource_version ORDER BY sequence DESC LIMIT 10",
    ];
    for sql in reads {
        let plan: Vec<String> =
            db.query(&format!("EXPLAIN {sql}"), &[]).unwrap().iter().map(|r| r.get::<_, String>(0)).collect();
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan"), "{sql}:\n{plan}");
        for family in ["patient_", "shared_"] {
            assert!(plan.contains(&format!(" on {family}")), "{sql} does not read {family}*:\n{plan}");
        }
    }
}
