//! Health, readiness and metrics over real HTTP: `/healthz` and `/readyz` answer, and
//! `/metrics` counts requests by interaction and status, times them, and reports the sizes of
//! the HL7 message log and outbound queue — with no ids or values in any label; it can ask for
//! a bearer token.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use reqwest::Client;
use serde_json::{Value, json};
use std::sync::Arc;
use store::Records;

async fn start() -> (String, Client, tempfile::TempDir, tokio::sync::oneshot::Sender<()>) {
    start_with(|state| state).await
}

async fn start_with(
    configure: impl FnOnce(server::AppState) -> server::AppState,
) -> (String, Client, tempfile::TempDir, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
    let message_log: Arc<dyn store::MessageLog> = Arc::new(backend.message_log().unwrap());
    let outbox: Arc<dyn store::Outbox> = Arc::new(backend.outbox().unwrap());
    // One HL7 message received and not yet processed, for the queue gauges.
    let raw = b"MSH|^~\\&|LAB|NORTH|||20240101||ADT^A01|C1|P|2.5\r";
    let message = store::messages::NewMessage {
        partner: "lab",
        sender: "LAB|NORTH",
        control_id: "C1",
        message_type: "ADT^A01",
        raw,
    };
    message_log.receive(&message).unwrap();
    let records = Records::new(backend);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let state = server::AppState::new(records, format!("{origin}/fhir"), server::Limits::default())
        .with_queues(message_log, outbox);
    let state = configure(state);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    (origin, Client::new(), dir, stop)
}

/// The value of the sample line that starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (origin, client, _dir, _stop) = start().await;
    let health = client.get(format!("{origin}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = client.get(format!("{origin}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let patient = json!({"resourceType": "Patient", "name": [{"family": "Metricfamily"}]});
    let created = client
        .post(format!("{origin}/fhir/Patient"))
        .header("content-type", "application/fhir+json")
        .body(patient.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        assert_eq!(client.get(format!("{origin}/fhir/Patient/{id}")).send().await.unwrap().status(), 200);
    }
    assert_eq!(client.get(format!("{origin}/fhir/Patient/nobody")).send().await.unwrap().status(), 404);
    let search = client.get(format!("{origin}/fhir/Patient?family=Metricfamily")).send().await.unwrap();
    assert_eq!(search.status(), 200);

    let metrics = client.get(format!("{origin}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let content_type = metrics.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = metrics.text().await.unwrap();
    let get = |prefix: &str| sample(&text, prefix).unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
    assert_eq!(get(r#"continuum_http_requests_total{interaction="create",status="201"}"#), 1.0);
    assert_eq!(get(r#"continuum_hl7_messages{status="received"}"#), 1.0);
    assert_eq!(get(r#"continuum_hl7_messages{status="processed"}"#), 0.0);
    assert_eq!(get(r#"continuum_outbox_messages{status="pending"}"#), 0.0, "no partner, no backlog");
    assert_eq!(get(r#"continuum_http_requests_total{interaction="read",status="200"}"#), 3.0);
    assert_eq!(get(r#"continuum_http_requests_total{interaction="read",status="404"}"#), 1.0);
    assert_eq!(get(r#"continuum_http_requests_total{interaction="search-type",status="200"}"#), 1.0);
    assert_eq!(get(r#"continuum_http_request_duration_seconds_count{interaction="read"}"#), 4.0);
    assert!(get(r#"continuum_http_request_duration_seconds_sum{interaction="read"}"#) > 0.0);
    assert!(!text.contains("continuum_store_resources"), "a scrape counts nothing in the store");
    // The scrape itself is in flight while it is answered.
    assert_eq!(get("continuum_http_requests_in_flight"), 1.0);
    assert!(!text.contains(&id) && !text.contains("Metricfamily"), "no ids or values in labels");
}

#[tokio::test]
async fn metrics_behind_a_token_answer_only_with_it() {
    let (origin, client, _dir, _stop) = start_with(|state| state.with_metrics_token("sixteen-or-more-chars")).await;
    let url = format!("{origin}/metrics");
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    for wrong in ["sixteen-or-more-chart", "sixteen", "sixteen-or-more-chars-and-more", ""] {
        assert_eq!(client.get(&url).bearer_auth(wrong).send().await.unwrap().status(), 401, "{wrong}");
    }
    let basic = client.get(&url).basic_auth("sixteen-or-more-chars", None::<&str>).send().await.unwrap();
    assert_eq!(basic.status(), 401, "only a bearer token");
    let scraped = client.get(&url).bearer_auth("sixteen-or-more-chars").send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("continuum_hl7_messages"));
    assert_eq!(client.get(format!("{origin}/healthz")).send().await.unwrap().status(), 200, "health stays open");
}
