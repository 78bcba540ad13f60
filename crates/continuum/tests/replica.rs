//! Read replicas on PostgreSQL's own streaming replication: a primary and a standby are made
//! with `initdb` and `pg_basebackup` from the machine's PostgreSQL packages on loopback ports,
//! Synthea data is imported through the primary, every search is answered by the standby (the
//! same answers as the primary's, and still answered with the primary stopped), and a write is
//! visible to its writer at once.

use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Records;
use store_postgres::PostgresBackend;

mod common;

/// The directory of PostgreSQL's server programs (`initdb`, `pg_ctl`, `pg_basebackup`).
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server packages are installed (/usr/lib/postgresql)")
        .map(|e| e.unwrap().path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| p.parent().unwrap().file_name().unwrap().to_string_lossy().parse::<u32>().unwrap_or(0));
    versions.pop().expect("initdb is installed")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

/// A primary and one standby, stopped and removed when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    primary_port: u16,
    standby_port: u16,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        if running_as_root() {
            // PostgreSQL refuses to run as root: its files belong to the postgres user.
            let status = Command::new("chown").arg("postgres:postgres").arg(dir.path()).status().unwrap();
            assert!(status.success());
        }
        let cluster = Cluster { dir, bin: postgres_bin(), primary_port: free_port(), standby_port: free_port() };
        let primary = cluster.path("primary");
        cluster.run("initdb", &["-D", &primary, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "-N"]);
        cluster.configure("primary", cluster.primary_port);
        cluster.pg_ctl("primary", "start");
        let port = cluster.primary_port.to_string();
        let standby = cluster.path("standby");
        cluster.run(
            "pg_basebackup",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-D", &standby, "-R", "-X", "stream", "-c", "fast"],
        );
        cluster.configure("standby", cluster.standby_port);
        cluster.pg_ctl("standby", "start");
        let mut admin = postgres::Client::connect(&cluster.url(cluster.primary_port, "postgres"), postgres::NoTls)
            .expect("connect to the new primary");
        admin.batch_execute("CREATE DATABASE continuum").unwrap();
        cluster
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    fn url(&self, port: u16, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{db}")
    }

    fn primary(&self) -> String {
        self.url(self.primary_port, "continuum")
    }

    fn standby(&self) -> String {
        self.url(self.standby_port, "continuum")
    }

    /// Runs a PostgreSQL program (as the postgres user when the tests run as root).
    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let output = if running_as_root() {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&program).args(args).output()
        } else {
            Command::new(&program).args(args).output()
        }
        .unwrap();
        assert!(
            output.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Loopback only, its own port and socket folder; no fsync (a test cluster).
    fn configure(&self, node: &str, port: u16) {
        let conf = Path::new(&self.path(node)).join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n",
            self.dir.path().display()
        ));
        std::fs::write(&conf, text).unwrap();
    }

    fn pg_ctl(&self, node: &str, action: &str) {
        let (data, log) = (self.path(node), self.path(&format!("{node}.log")));
        match action {
            "start" => self.run("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "start"]),
            _ => self.run("pg_ctl", &["-D", &data, "-w", "-m", action, "stop"]),
        }
    }

    /// Waits until the standby has replayed everything the primary has written so far.
    fn wait_for_replay(&self) {
        let mut primary = postgres::Client::connect(&self.primary(), postgres::NoTls).unwrap();
        let mut standby = postgres::Client::connect(&self.standby(), postgres::NoTls).unwrap();
        let target: i64 = primary.query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8", &[]).unwrap().get(0);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let replayed: i64 =
                standby.query_one("SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8", &[]).unwrap().get(0);
            if replayed >= target {
                return;
            }
            assert!(Instant::now() < deadline, "the standby did not catch up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in ["standby", "primary"] {
            let data = self.path(node);
            let program = self.bin.join("pg_ctl");
            let mut command = if running_as_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            };
            let _ = command.args(["-D", &data, "-m", "immediate", "stop"]).output();
        }
    }
}

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
    let cluster = Cluster::start();
    let data = tempfile::tempdir().unwrap();
    let mut import = vec!["import".to_string(), "--database".into(), cluster.primary()];
    import.extend(synthea_files(4).iter().map(|p| p.to_string_lossy().into_owned()));
    let import: Vec<&str> = import.iter().map(String::as_str).collect();
    common::continuum(data.path(), &import, None);
    cluster.wait_for_replay();

    // Every search is answered by the standby, with the primary's answers.
    let on_primary = Records::new(Arc::new(PostgresBackend::connect(&cluster.primary()).unwrap()));
    let routed = Arc::new(PostgresBackend::connect_with_replicas(&cluster.primary(), &[cluster.standby()]).unwrap());
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
    let server = common::start(
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
    cluster.wait_for_replay();
    cluster.pg_ctl("primary", "fast");
    for (search, total) in SEARCHES.iter().zip(&before) {
        assert_eq!(&get(search)["total"], total, "{search} answered with the primary stopped");
    }
    cluster.pg_ctl("primary", "start");
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
