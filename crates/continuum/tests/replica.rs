//! Read replicas on PostgreSQL's own streaming replication: a primary and a standby are made
//! with `initdb` and `pg_basebackup` from the machine's PostgreSQL packages on loopback ports,
//! Synthea data is imported through the primary, every search is answered by the standby (the
//! same answers as the primary's, and still answered with the primary stopped), and a write is
//! visible to its writer at once.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use store::Records;
use store_postgres::PostgresBackend;

use test_support::cluster;
use test_support::process::{continuum, start};

fn synthea_files(n: usize) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/synthea/smart-2019");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.truncate(n);
    files
}

/// Searches of every kind: string, token, reference, date, quantity, chains, includes,
/// `_has`, full text, sorting, counts.
const SEARCHES: &[&str] = &[
    "Patient?gender=female",
    "Patient?family:contains=a&_sort=family",
    "Patient?birthdate=lt1980",
    "Observation?code=http://loinc.org|8302-2",
    "Observation?value-quantity=gt100",
    "Observation?subject.gender=male&_count=5",
    "Condition?clinical-status=active",
    "Encounter?date=ge2010&_sort=-date&_count=10",
    "Encounter?_include=Encounter:subject&_count=3",
    "Patient?_revinclude=Condition:subject&_count=2",
    "Patient?_has:Condition:subject:clinical-status=active",
    "MedicationRequest?status=active&_total=accurate",
    "Immunization?_summary=count",
    "Patient?_content=Massachusetts",
];

/// Match ids and total of `TYPE?QUERY` on `records`.
fn answer(records: &Records, search: &str) -> (Vec<String>, Vec<String>, Option<u64>) {
    let (resource_type, query) = search.split_once('?').unwrap();
    let pairs = search::query::parse_pairs(query).unwrap();
    let parsed = search::SearchQuery::parse(Some(resource_type), &pairs, true).unwrap();
    let page = records.search(&parsed, parsed.count.unwrap_or(50)).unwrap();
    let key = |v: &store::ResourceVersion| format!("{}/{}", v.resource_type, v.id);
    let mut included: Vec<String> = page.included.iter().map(key).collect();
    included.sort();
    (page.matches.iter().map(key).collect(), included, page.total)
}

#[test]
fn standbys_answer_reads_and_writers_read_their_writes() {
    // The whole suite runs once with the patient-owned tables partitioned (see .ci/run).
    let partitions = std::env::var("CONTINUUM_TEST_POSTGRES_PARTITIONS").ok().and_then(|n| n.parse().ok());
    let cluster = cluster::Cluster::start(partitions).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut import = vec!["import".to_string(), "--database".into(), cluster.primary()];
    import.extend(synthea_files(4).iter().map(|p| p.to_string_lossy().into_owned()));
    let import: Vec<&str> = import.iter().map(String::as_str).collect();
    continuum(data.path(), &import, None);
    cluster.wait_for_replay().unwrap();

    // Every search is answered by the standby, with the primary's answers.
    let on_primary = Records::new(Arc::new(PostgresBackend::connect(&cluster.primary()).unwrap()));
    let routed = Arc::new(PostgresBackend::connect_with_replicas(&cluster.primary(), &[cluster.standby()]).unwrap());
    if let Some(n) = partitions {
        assert_eq!(routed.shard_partitions().unwrap(), n, "the cluster's tables are partitioned");
    }
    let with_standby = Records::new(routed.clone());
    for search in SEARCHES {
        let expected = answer(&on_primary, search);
        assert!(!expected.0.is_empty() || expected.2.unwrap_or(0) > 0, "{search} finds something");
        assert_eq!(answer(&with_standby, search), expected, "{search}");
    }
    let routing = routed.read_routing();
    assert_eq!(routing.primary, 0, "no search went to the primary: {routing:?}");
    assert!(routing.standby >= SEARCHES.len() as u64, "{routing:?}");

    // A writer sees each of its writes at once, by id and by search, however far the
    // standby is behind.
    for i in 0..30 {
        let family = format!("Replayed{i}");
        let created = with_standby
            .create(json!({"resourceType": "Patient", "name": [{"family": family}]}), None)
            .unwrap()
            .version
            .unwrap();
        assert_eq!(with_standby.read("Patient", &created.id).unwrap().version, 1);
        let (matches, _, _) = answer(&with_standby, &format!("Patient?family:exact={family}"));
        assert_eq!(matches, vec![format!("Patient/{}", created.id)], "write {i} is visible to its writer");
    }
    eprintln!("reads after writes: {:?}", routed.read_routing());

    // The server: reads and searches keep being answered with the primary stopped, so by the
    // standby; writes, once it is back, are visible to their writer at once.
    let server = start(
        data.path(),
        &["--rate-limit", "0", "--database", &cluster.primary(), "--database-replica", &cluster.standby()],
    );
    let http = reqwest::blocking::Client::new();
    let get = |path: &str| -> Value {
        let response = http.get(format!("{}/{path}", server.base)).send().unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        response.json().unwrap()
    };
    let before: Vec<Value> = SEARCHES.iter().map(|s| get(s)["total"].clone()).collect();
    cluster.wait_for_replay().unwrap();
    cluster.stop_node("primary").unwrap();
    for (search, total) in SEARCHES.iter().zip(&before) {
        assert_eq!(&get(search)["total"], total, "{search} answered with the primary stopped");
    }
    cluster.start_node("primary").unwrap();
    for i in 0..10 {
        let created: Value = http
            .post(format!("{}/Patient", server.base))
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Patient", "name": [{"family": format!("Served{i}")}]}).to_string())
            .send()
            .unwrap()
            .json()
            .unwrap();
        let id = created["id"].as_str().unwrap();
        assert_eq!(get(&format!("Patient/{id}"))["id"], id);
        assert_eq!(get(&format!("Patient?family:exact=Served{i}"))["total"], 1);
    }
}
