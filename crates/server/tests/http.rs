//! Whole-flow tests: the server runs in-process on an ephemeral port over a SQLite store in a
//! temporary directory, and is spoken to over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use store::{HistoryQuery, Records};

struct TestServer {
    base: String,
    client: Client,
    records: Records,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
        let records = Records::new(Arc::new(backend));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/fhir", listener.local_addr().unwrap());
        let state = server::AppState::new(records.clone(), base.clone(), server::Limits::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::serve(listener, state, async {
            let _ = stopped.await;
        }));
        TestServer { base, client: Client::new(), records, stop: Some(stop), _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> Response {
        self.client
            .request(method, self.url(path))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, body: &Value) -> Response {
        self.send(reqwest::Method::POST, path, body).await
    }

    async fn put(&self, path: &str, body: &Value) -> Response {
        self.send(reqwest::Method::PUT, path, body).await
    }

    async fn create(&self, resource: Value) -> Value {
        let t = resource["resourceType"].as_str().unwrap().to_string();
        let response = self.post(&t, &resource).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// Live resources per type and the number of versions ever written.
    fn snapshot(&self) -> (Vec<(String, u64)>, u64) {
        let backend = self.records.backend();
        (backend.count_by_type().unwrap(), backend.history_total(&HistoryQuery::default()).unwrap())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn outcome(response: Response) -> Value {
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/fhir+json"), "content type {content_type}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert!(!body["issue"].as_array().unwrap().is_empty());
    body
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "http://example.org/mrn", "value": "MRN-1"}],
        "name": [{"family": "Chalmers", "given": ["Peter"]}],
        "gender": "male",
        "birthDate": "1974-12-25"
    })
}

#[tokio::test]
async fn metadata_describes_what_is_implemented() {
    let server = TestServer::start().await;
    let response = server.get("metadata").await;
    assert_eq!(response.status(), StatusCode::OK);
    let capability: Value = response.json().await.unwrap();
    assert_eq!(capability["resourceType"], "CapabilityStatement");
    assert_eq!(capability["fhirVersion"], "4.0.1");
    let resources = capability["rest"][0]["resource"].as_array().unwrap();
    assert!(resources.len() >= 140, "{} resource types", resources.len());
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let interactions: Vec<&str> =
        patient["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert!(interactions.contains(&"vread") && interactions.contains(&"patch"));
    assert!(interactions.contains(&"search-type"));
    let params: Vec<&str> =
        patient["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for name in ["name", "birthdate", "identifier", "general-practitioner", "_lastUpdated"] {
        assert!(params.contains(&name), "Patient search parameter {name} is listed");
    }
    let operations: Vec<&str> =
        patient["operation"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert!(operations.contains(&"everything"));
}

#[tokio::test]
async fn create_read_vread_update_delete_and_history() {
    let server = TestServer::start().await;
    let response = server.post("Patient", &patient()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(response.headers()["etag"], "W/\"1\"");
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(location, server.url(&format!("Patient/{id}/_history/1")));
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(created["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));

    let read = server.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert!(read.headers().contains_key("last-modified"));
    let read: Value = read.json().await.unwrap();
    assert_eq!(read, created);

    let mut changed = created.clone();
    changed["gender"] = json!("other");
    let response = server.put(&format!("Patient/{id}"), &changed).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "W/\"2\"");

    let v1: Value = server.get(&format!("Patient/{id}/_history/1")).await.json().await.unwrap();
    assert_eq!(v1["gender"], "male");
    let v2: Value = server.get(&format!("Patient/{id}/_history/2")).await.json().await.unwrap();
    assert_eq!(v2["gender"], "other");
    assert_eq!(server.get(&format!("Patient/{id}/_history/9")).await.status(), StatusCode::NOT_FOUND);

    let response = server.client.delete(server.url(&format!("Patient/{id}"))).send().await.unwrap();
    assert!(response.status().is_success());
    let gone = server.get(&format!("Patient/{id}")).await;
    assert_eq!(gone.status(), StatusCode::GONE);
    outcome(gone).await;
    // The deleted resource's versions stay readable.
    assert_eq!(server.get(&format!("Patient/{id}/_history/2")).await.status(), StatusCode::OK);

    let history: Value = server.get(&format!("Patient/{id}/_history")).await.json().await.unwrap();
    assert_eq!(history["type"], "history");
    assert_eq!(history["total"], 3);
    let methods: Vec<&str> =
        history["entry"].as_array().unwrap().iter().map(|e| e["request"]["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["DELETE", "PUT", "POST"]);

    // Update of a deleted resource brings it back as the next version.
    let response = server.put(&format!("Patient/{id}"), &changed).await;
    assert_eq!(response.headers()["etag"], "W/\"4\"");
}

#[tokio::test]
async fn update_as_create_and_optimistic_locking() {
    let server = TestServer::start().await;
    let mut body = patient();
    body["id"] = json!("pat-1");
    let response = server.put("Patient/pat-1", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);

    let stale = server
        .client
        .put(server.url("Patient/pat-1"))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"7\"")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    outcome(stale).await;

    let fresh = server
        .client
        .put(server.url("Patient/pat-1"))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);
    assert_eq!(fresh.headers()["etag"], "W/\"2\"");
}

#[tokio::test]
async fn conditional_reads_answer_not_modified() {
    let server = TestServer::start().await;
    let created = server.create(patient()).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let response = server.client.get(server.url(&path)).header("if-none-match", "W/\"1\"").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let response = server.client.get(server.url(&path)).header("if-none-match", "W/\"0\"").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + std::time::Duration::from_secs(60));
    let response = server.client.get(server.url(&path)).header("if-modified-since", later).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let earlier = "Mon, 01 Jan 2001 00:00:00 GMT";
    let response = server.client.get(server.url(&path)).header("if-modified-since", earlier).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn prefer_header_chooses_the_answer() {
    let server = TestServer::start().await;
    let minimal = server
        .client
        .post(server.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(patient().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(minimal.status(), StatusCode::CREATED);
    assert!(minimal.headers().contains_key("location"));
    assert!(minimal.bytes().await.unwrap().is_empty());
    let oo = server
        .client
        .post(server.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=OperationOutcome")
        .body(patient().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(oo.status(), StatusCode::CREATED);
    outcome(oo).await;
}

#[tokio::test]
async fn conditional_create_update_and_delete() {
    let server = TestServer::start().await;
    let conditional = |body: Value| {
        server
            .client
            .post(server.url("Patient"))
            .header("content-type", "application/fhir+json")
            .header("if-none-exist", "identifier=http://example.org/mrn|MRN-1")
            .body(body.to_string())
            .send()
    };
    let first = conditional(patient()).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let second = conditional(patient()).await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);

    let mut changed = patient();
    changed["gender"] = json!("female");
    let response = server.put("Patient?identifier=http://example.org/mrn|MRN-1", &changed).await;
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["id"], first["id"]);
    assert_eq!(updated["meta"]["versionId"], "2");

    let response =
        server.client.delete(server.url("Patient?identifier=http://example.org/mrn|MRN-1")).send().await.unwrap();
    assert!(response.status().is_success());
    let path = format!("Patient/{}", first["id"].as_str().unwrap());
    assert_eq!(server.get(&path).await.status(), StatusCode::GONE);

    // Any search parameter is a condition: no Chalmers is live, so this creates one; the
    // second time it updates that one.
    let created = server.put("Patient?family=Chalmers", &patient()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let updated = server.put("Patient?family=chalmers&gender=male", &patient()).await;
    assert_eq!(updated.status(), StatusCode::OK);
    let unknown = server.put("Patient?nonsense=1", &patient()).await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    outcome(unknown).await;
}

#[tokio::test]
async fn json_patch_applies_and_is_validated() {
    let server = TestServer::start().await;
    let created = server.create(patient()).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let patch = |ops: Value| {
        server
            .client
            .patch(server.url(&path))
            .header("content-type", "application/json-patch+json")
            .body(ops.to_string())
            .send()
    };
    let response = patch(json!([{"op": "replace", "path": "/gender", "value": "female"}])).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let patched: Value = response.json().await.unwrap();
    assert_eq!(patched["gender"], "female");
    assert_eq!(patched["meta"]["versionId"], "2");

    let response = patch(json!([{"op": "replace", "path": "/birthDate", "value": "not-a-date"}])).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    outcome(response).await;
    let current: Value = server.get(&path).await.json().await.unwrap();
    assert_eq!(current["meta"]["versionId"], "2");
}

#[tokio::test]
async fn validate_operation_answers_without_storing() {
    let server = TestServer::start().await;
    let before = server.snapshot();
    let mut bad = patient();
    bad["birthDate"] = json!("1974-13-45");
    let response = server.post("Patient/$validate", &bad).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = outcome(response).await;
    let issue = &body["issue"][0];
    assert_eq!(issue["severity"], "error");
    assert_eq!(issue["expression"][0], "Patient.birthDate");
    let response = server.post("Patient/$validate", &patient()).await;
    let body = outcome(response).await;
    assert!(body["issue"].as_array().unwrap().iter().all(|i| i["severity"] != "error"));
    assert_eq!(server.snapshot(), before);
}

#[tokio::test]
async fn transaction_rewrites_references_and_is_all_or_nothing() {
    let server = TestServer::start().await;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"}
            },
            {
                "fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "heart rate"},
                    "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}
                },
                "request": {"method": "POST", "url": "Observation"}
            }
        ]
    });
    let response = server.post("", &bundle).await;
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["type"], "transaction-response");
    let entries = result["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let patient_location = entries[0]["response"]["location"].as_str().unwrap();
    assert!(entries[0]["response"]["status"].as_str().unwrap().starts_with("201"));
    let observation_location = entries[1]["response"]["location"].as_str().unwrap();
    let observation_path = observation_location.split("/_history").next().unwrap();
    let observation: Value = server.get(observation_path).await.json().await.unwrap();
    let patient_path = patient_location.split("/_history").next().unwrap();
    assert!(patient_path.ends_with(observation["subject"]["reference"].as_str().unwrap()));

    let before = server.snapshot();
    let mut broken = bundle.clone();
    broken["entry"][1]["resource"]["effectiveDateTime"] = json!("yesterday");
    let response = server.post("", &broken).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = outcome(response).await;
    assert!(body.to_string().contains("Bundle.entry[1]"), "{body}");
    assert_eq!(server.snapshot(), before);

    let mut dangling = bundle.clone();
    dangling["entry"][1]["resource"]["subject"]["reference"] = json!("Patient/does-not-exist");
    let response = server.post("", &dangling).await;
    assert!(response.status().is_client_error());
    outcome(response).await;
    assert_eq!(server.snapshot(), before);
}

#[tokio::test]
async fn batch_entries_succeed_or_fail_alone() {
    let server = TestServer::start().await;
    let mut bad = patient();
    bad["gender"] = json!("robot");
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {"resource": bad, "request": {"method": "POST", "url": "Patient"}}
        ]
    });
    let response = server.post("", &bundle).await;
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["type"], "batch-response");
    assert!(result["entry"][0]["response"]["status"].as_str().unwrap().starts_with("201"));
    assert!(result["entry"][1]["response"]["status"].as_str().unwrap().starts_with('4'));
    assert_eq!(result["entry"][1]["response"]["outcome"]["resourceType"], "OperationOutcome");
    assert_eq!(server.snapshot().0, vec![("Patient".to_string(), 1)]);
}

#[tokio::test]
async fn history_pages_with_since_and_count() {
    let server = TestServer::start().await;
    for _ in 0..5 {
        server.create(patient()).await;
    }
    let page: Value = server.get("Patient/_history?_count=2").await.json().await.unwrap();
    assert_eq!(page["total"], 5);
    assert_eq!(page["entry"].as_array().unwrap().len(), 2);
    let next = page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap();
    let mut seen: Vec<String> = Vec::new();
    let mut url = next["url"].as_str().unwrap().to_string();
    seen.extend(page["entry"].as_array().unwrap().iter().map(|e| e["fullUrl"].as_str().unwrap().to_string()));
    // Writes between pages must not shift what the next page holds.
    server.create(patient()).await;
    loop {
        let page: Value = server.client.get(&url).send().await.unwrap().json().await.unwrap();
        seen.extend(page["entry"].as_array().unwrap().iter().map(|e| e["fullUrl"].as_str().unwrap().to_string()));
        match page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") {
            Some(next) => url = next["url"].as_str().unwrap().to_string(),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);

    let future: Value = server.get("_history?_since=2999-01-01T00:00:00Z").await.json().await.unwrap();
    assert_eq!(future["total"], 0);
    let all: Value = server.get("_history?_since=2000-01-01T00:00:00Z").await.json().await.unwrap();
    assert_eq!(all["total"], 6);
    assert_eq!(server.get("_history?_since=yesterday").await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_input_gets_an_operation_outcome_and_changes_nothing() {
    let server = TestServer::start().await;
    let existing = server.create(patient()).await;
    let id = existing["id"].as_str().unwrap().to_string();
    let before = server.snapshot();

    let raw = |method: reqwest::Method, path: &str, body: Vec<u8>| {
        server
            .client
            .request(method, server.url(path))
            .header("content-type", "application/fhir+json")
            .body(body)
            .send()
    };
    let invalid_json =
        raw(reqwest::Method::POST, "Patient", b"{\"resourceType\": \"Patient\",".to_vec()).await.unwrap();
    assert_eq!(invalid_json.status(), StatusCode::BAD_REQUEST);
    outcome(invalid_json).await;

    let not_utf8 = raw(reqwest::Method::POST, "Patient", b"{\"resourceType\": \"Pat\xff\"}".to_vec()).await.unwrap();
    assert_eq!(not_utf8.status(), StatusCode::BAD_REQUEST);
    outcome(not_utf8).await;

    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep = raw(reqwest::Method::POST, "Patient", deep.into_bytes()).await.unwrap();
    assert_eq!(deep.status(), StatusCode::BAD_REQUEST);
    outcome(deep).await;

    let wrong_type = server.post("Patient", &json!({"resourceType": "Observation", "status": "final"})).await;
    assert_eq!(wrong_type.status(), StatusCode::BAD_REQUEST);
    outcome(wrong_type).await;

    let mut mismatch = patient();
    mismatch["id"] = json!("someone-else");
    let mismatch = server.put(&format!("Patient/{id}"), &mismatch).await;
    assert_eq!(mismatch.status(), StatusCode::BAD_REQUEST);
    outcome(mismatch).await;

    let mut bad_date = patient();
    bad_date["birthDate"] = json!("25/12/1974");
    let bad_date = server.post("Patient", &bad_date).await;
    assert_eq!(bad_date.status(), StatusCode::BAD_REQUEST);
    let body = outcome(bad_date).await;
    assert_eq!(body["issue"][0]["expression"][0], "Patient.birthDate");
    assert!(!body.to_string().contains("25/12/1974"), "no submitted values echoed");

    let mut unknown = patient();
    unknown["favouriteColour"] = json!("blue");
    let unknown = server.post("Patient", &unknown).await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let body = outcome(unknown).await;
    assert_eq!(body["issue"][0]["expression"][0], "Patient.favouriteColour");

    let huge = vec![b' '; 100 * 1024 * 1024];
    let huge = raw(reqwest::Method::POST, "Patient", huge).await.unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    outcome(huge).await;

    let unknown_type = server.post("Spaceship", &json!({"resourceType": "Spaceship"})).await;
    assert_eq!(unknown_type.status(), StatusCode::NOT_FOUND);
    outcome(unknown_type).await;

    let bad_id = server.get("Patient/..%2F..%2Fetc%2Fpasswd").await;
    assert_eq!(bad_id.status(), StatusCode::BAD_REQUEST);
    outcome(bad_id).await;

    let xml = server
        .client
        .post(server.url("Patient"))
        .header("content-type", "application/fhir+xml")
        .body("<Patient xmlns=\"http://hl7.org/fhir\"/>")
        .send()
        .await
        .unwrap();
    assert_eq!(xml.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    outcome(xml).await;

    let wants_xml = server.client.get(server.url(&format!("Patient/{id}?_format=xml"))).send().await.unwrap();
    assert_eq!(wants_xml.status(), StatusCode::NOT_ACCEPTABLE);
    outcome(wants_xml).await;

    let bad_bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "birthDate": "soon"}, "request": {"method": "POST", "url": "Patient"}}
        ]
    });
    let bad_bundle = server.post("", &bad_bundle).await;
    assert_eq!(bad_bundle.status(), StatusCode::BAD_REQUEST);
    outcome(bad_bundle).await;

    assert_eq!(server.snapshot(), before, "bad input changed the store");
    let still: Value = server.get(&format!("Patient/{id}")).await.json().await.unwrap();
    assert_eq!(still, existing);
}

#[tokio::test]
async fn absolute_references_to_this_server_are_checked_as_local() {
    let server = TestServer::start().await;
    let created = server.create(patient()).await;
    let absolute = server.url(&format!("Patient/{}", created["id"].as_str().unwrap()));
    let observation = |reference: String| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
               "subject": {"reference": reference}})
    };
    let ok = server.post("Observation", &observation(absolute)).await;
    assert_eq!(ok.status(), StatusCode::CREATED);
    let dangling = server.post("Observation", &observation(server.url("Patient/nobody"))).await;
    assert_eq!(dangling.status(), StatusCode::UNPROCESSABLE_ENTITY);
    outcome(dangling).await;
    let elsewhere = server.post("Observation", &observation("https://elsewhere.example/fhir/Patient/1".into())).await;
    assert_eq!(elsewhere.status(), StatusCode::CREATED);
}
