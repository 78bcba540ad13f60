//! Limits and back-pressure, each with a small limit so that it trips at once: 413 for bodies
//! and Bundles, 429 for a client over its rate, 503 when too many requests are in flight or a
//! search runs too long (both with `Retry-After`), and `_count` lowered with a warning.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use store::{HistoryQuery, Records};

struct Server {
    base: String,
    address: std::net::SocketAddr,
    client: Client,
    records: Records,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    async fn start(limits: server::Limits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
        Server::start_on(backend, dir, limits).await
    }

    async fn start_on(backend: Arc<dyn store::Backend>, dir: tempfile::TempDir, limits: server::Limits) -> Server {
        let records = Records::new(backend);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let base = format!("http://{address}/fhir");
        let state = server::AppState::new(records.clone(), base.clone(), limits);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::serve(listener, state, async {
            let _ = stopped.await;
        }));
        let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Server { base, address, client, records, _dir: dir, _stop: stop }
    }

    async fn get(&self, path: &str) -> Response {
        self.client.get(format!("{}/{path}", self.base)).send().await.unwrap()
    }

    async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}/{path}", self.base))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    fn snapshot(&self) -> (Vec<(String, u64)>, u64) {
        let backend = self.records.backend();
        (backend.count_by_type().unwrap(), backend.history_total(&HistoryQuery::default()).unwrap())
    }
}

/// Checks the answer is an `OperationOutcome` with `status`; returns its `Retry-After` seconds.
async fn refused(response: Response, status: StatusCode) -> Option<u64> {
    assert_eq!(response.status(), status);
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/fhir+json"), "{content_type}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert!(!body["issue"].as_array().unwrap().is_empty());
    retry_after
}

fn unlimited() -> server::Limits {
    server::Limits { rate_limit: None, ..server::Limits::default() }
}

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family}]})
}

#[tokio::test]
async fn bodies_and_bundles_over_their_limits_get_413() {
    let server = Server::start(server::Limits { max_body_bytes: 4096, max_bundle_entries: 3, ..unlimited() }).await;
    let before = server.snapshot();
    let big = patient(&"A".repeat(5000));
    refused(server.post("Patient", &big).await, StatusCode::PAYLOAD_TOO_LARGE).await;

    let entries: Vec<Value> = (0..4)
        .map(|i| json!({"resource": patient(&format!("P{i}")), "request": {"method": "POST", "url": "Patient"}}))
        .collect();
    for kind in ["transaction", "batch"] {
        let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": entries});
        refused(server.post("", &bundle).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    }
    assert_eq!(server.snapshot(), before);
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries[..3]});
    assert_eq!(server.post("", &bundle).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let rate = server::RateLimit { per_second: 1, burst: 2 };
    let server = Server::start(server::Limits { rate_limit: Some(rate), ..unlimited() }).await;
    assert_eq!(server.get("metadata").await.status(), StatusCode::OK);
    assert_eq!(server.get("metadata").await.status(), StatusCode::OK);
    let wait = refused(server.get("metadata").await, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(wait.is_some_and(|s| (1..=2).contains(&s)), "Retry-After {wait:?}");
    // Writes are counted too, and a refused one changes nothing.
    let before = server.snapshot();
    refused(server.post("Patient", &patient("Late")).await, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(server.snapshot(), before);
}

#[tokio::test]
async fn requests_over_the_in_flight_cap_get_503_with_retry_after() {
    let server = Server::start(server::Limits { max_in_flight: 1, ..unlimited() }).await;
    // A create whose body never finishes arriving holds the only place.
    let mut slow = std::net::TcpStream::connect(server.address).unwrap();
    write!(
        slow,
        "POST /fhir/Patient HTTP/1.1\r\nhost: x\r\ncontent-type: application/fhir+json\r\ncontent-length: 1000\r\n\r\n{{"
    )
    .unwrap();
    slow.flush().unwrap();
    let mut answer = None;
    for _ in 0..100 {
        let response = server.get("metadata").await;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            answer = Some(response);
            break;
        }
        // The slow request may not have reached the server yet.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let wait =
        refused(answer.expect("a 503 while the slow request is in flight"), StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(wait, Some(1));
    drop(slow);
    let mut recovered = false;
    for _ in 0..100 {
        if server.get("metadata").await.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(recovered, "the place is given back when the slow request ends");
}

/// The SQLite backend with every search made to take [`SLOW_SEARCH`], so that a search timeout
/// trips deterministically, however fast the machine.
struct SlowSearch(store_sqlite::SqliteBackend);

const SLOW_SEARCH: Duration = Duration::from_millis(400);

impl store::Backend for SlowSearch {
    fn current(&self, t: &str, id: &str) -> store::Result<Option<store::ResourceVersion>> {
        self.0.current(t, id)
    }
    fn version(&self, t: &str, id: &str, v: u64) -> store::Result<Option<store::ResourceVersion>> {
        self.0.version(t, id, v)
    }
    fn history(&self, q: &HistoryQuery) -> store::Result<Vec<store::ResourceVersion>> {
        self.0.history(q)
    }
    fn history_total(&self, q: &HistoryQuery) -> store::Result<u64> {
        self.0.history_total(q)
    }
    fn versions_after(&self, after: i64, count: usize) -> store::Result<Vec<store::ResourceVersion>> {
        self.0.versions_after(after, count)
    }
    fn find_by_identifier(&self, t: &str, system: Option<&str>, value: &str) -> store::Result<Vec<String>> {
        self.0.find_by_identifier(t, system, value)
    }
    fn count_by_type(&self) -> store::Result<Vec<(String, u64)>> {
        self.0.count_by_type()
    }
    fn latest_sequence(&self) -> store::Result<i64> {
        self.0.latest_sequence()
    }
    fn snapshot(
        &self,
        t: &str,
        as_of: i64,
        after: &str,
        count: usize,
    ) -> store::Result<(Vec<store::ResourceVersion>, Option<String>)> {
        self.0.snapshot(t, as_of, after, count)
    }
    fn search(&self, q: &search::query::SearchQuery, limit: usize) -> store::Result<Vec<i64>> {
        std::thread::sleep(SLOW_SEARCH);
        self.0.search(q, limit)
    }
    fn search_count(&self, q: &search::query::SearchQuery) -> store::Result<u64> {
        std::thread::sleep(SLOW_SEARCH);
        self.0.search_count(q)
    }
    fn include(&self, keys: &[i64], i: &search::query::Include) -> store::Result<Vec<i64>> {
        self.0.include(keys, i)
    }
    fn revinclude(&self, keys: &[i64], i: &search::query::Include) -> store::Result<Vec<i64>> {
        self.0.revinclude(keys, i)
    }
    fn fetch(&self, keys: &[i64]) -> store::Result<Vec<(i64, store::ResourceVersion)>> {
        self.0.fetch(keys)
    }
    fn execute(&self, work: store::Work) -> store::Result<()> {
        self.0.execute(work)
    }
}

#[tokio::test]
async fn a_search_past_the_timeout_gets_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let slow = Arc::new(SlowSearch(store_sqlite::SqliteBackend::open(dir.path()).unwrap()));
    let limits = server::Limits { search_timeout: Duration::from_millis(50), ..unlimited() };
    let server = Server::start_on(slow, dir, limits).await;
    assert_eq!(server.post("Patient", &patient("Chalmers")).await.status(), StatusCode::CREATED);
    let wait = refused(server.get("Patient?name=Chalmers").await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(wait, Some(1));
    // Reads are not searches.
    assert_eq!(server.get("Patient/_history").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn count_over_the_maximum_is_lowered_and_said_so() {
    let server = Server::start(server::Limits { max_count: 2, ..unlimited() }).await;
    for family in ["A", "B", "C"] {
        assert_eq!(server.post("Patient", &patient(family)).await.status(), StatusCode::CREATED);
    }
    let bundle: Value = server.get("Patient?_count=50").await.json().await.unwrap();
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(entries.iter().filter(|e| e["search"]["mode"] == "match").count(), 2);
    let outcome = entries.iter().find(|e| e["search"]["mode"] == "outcome").expect("an outcome entry");
    let issue = &outcome["resource"]["issue"][0];
    assert_eq!(issue["severity"], "warning");
    assert!(issue["diagnostics"].as_str().unwrap().contains("_count"), "{issue}");
    let next = bundle["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap();
    assert!(next["url"].as_str().unwrap().contains("_count=2"));
    let history: Value = server.get("Patient/_history?_count=50").await.json().await.unwrap();
    assert_eq!(history["entry"].as_array().unwrap().len(), 2);
}
