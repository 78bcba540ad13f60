//! `Patient/$merge` and `Patient/$unmerge` over real HTTP: the server in-process over a
//! SQLite store (with the merged-patient write hook, as the binary installs it). A preview,
//! the merge, the refusals, the unmerge, the CapabilityStatement; and, with the policy, a
//! caller who may not update Patients refused (403) with nothing written.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use auth::{AuthConfig, Identity, NewUser, Role};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use store::Records;

struct Server {
    base: String,
    client: Client,
    records: Records,
    _dir: tempfile::TempDir,
}

async fn start(secured: bool) -> (Server, Option<Arc<auth::Authority>>) {
    let dir = tempfile::tempdir().unwrap();
    let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
    let records = Records::new(Arc::new(backend)).with_hook(Arc::new(exchange::identity::MergedPatients));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let mut state = server::AppState::new(records.clone(), base.clone(), server::Limits::default());
    let mut authority = None;
    if secured {
        std::fs::create_dir_all(dir.path().join("auth")).unwrap();
        let (opened, _) = store_sqlite::auth::open_authority(&dir.path().join("auth"), AuthConfig::new(&base)).unwrap();
        let opened = Arc::new(opened);
        state = state.with_policy(Arc::new(policy::Policy::new(opened.clone(), records.clone())));
        authority = Some(opened);
    }
    tokio::spawn(server::serve(listener, state, std::future::pending()));
    (Server { base, client: Client::new(), records, _dir: dir }, authority)
}

impl Server {
    async fn post(&self, token: Option<&str>, path: &str, body: &Value) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("{}/{path}", self.base))
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        self.client.get(format!("{}/{path}", self.base)).send().await.unwrap().json().await.unwrap()
    }

    fn put(&self, resource: Value) {
        let t = resource["resourceType"].as_str().unwrap().to_string();
        let id = resource["id"].as_str().unwrap().to_string();
        self.records.update(&t, &id, resource, None).unwrap();
    }

    fn sequence(&self) -> i64 {
        self.records.backend().latest_sequence().unwrap()
    }
}

fn parameters(source: &str, target: &str, preview: bool) -> Value {
    json!({"resourceType": "Parameters", "parameter": [
        {"name": "source-patient", "valueReference": {"reference": format!("Patient/{source}")}},
        {"name": "target-patient", "valueReference": {"reference": format!("Patient/{target}")}},
        {"name": "preview", "valueBoolean": preview}
    ]})
}

fn output<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["parameter"].as_array().unwrap().iter().find(|p| p["name"] == name).map(|p| &p["resource"]).unwrap()
}

fn seed(server: &Server) {
    for (id, mrn) in [("src", "111"), ("tgt", "222")] {
        server.put(json!({"resourceType": "Patient", "id": id, "active": true,
                          "identifier": [{"system": "urn:mrn", "value": mrn}], "name": [{"family": id}]}));
    }
    for i in 0..3 {
        server.put(json!({"resourceType": "Observation", "id": format!("obs-{i}"), "status": "final",
                          "code": {"text": "x"}, "subject": {"reference": "Patient/src"}}));
    }
}

#[tokio::test]
async fn merge_and_unmerge_over_http() {
    let (server, _) = start(false).await;
    seed(&server);

    // The CapabilityStatement offers both.
    let capability = server.get("metadata").await;
    let patient =
        capability["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == "Patient").unwrap();
    let operations: Vec<&str> =
        patient["operation"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert!(operations.contains(&"merge") && operations.contains(&"unmerge"), "{operations:?}");

    // A preview writes nothing.
    let before = server.sequence();
    let (status, answer) = server.post(None, "Patient/$merge", &parameters("src", "tgt", true)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(output(&answer, "input")["resourceType"], "Parameters");
    assert_eq!(output(&answer, "outcome")["resourceType"], "OperationOutcome");
    assert_eq!(output(&answer, "result")["link"][0]["type"], "replaces");
    assert_eq!(server.sequence(), before);

    // The merge, the target named by its identifier.
    let by_identifier = json!({"resourceType": "Parameters", "parameter": [
        {"name": "source-patient", "valueReference": {"reference": "Patient/src"}},
        {"name": "target-patient-identifier", "valueIdentifier": {"system": "urn:mrn", "value": "222"}}
    ]});
    let (status, answer) = server.post(None, "Patient/$merge", &by_identifier).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(output(&answer, "result")["id"], "tgt");
    let obs: Value = server.get("Observation/obs-0").await;
    assert_eq!(obs["subject"]["reference"], "Patient/tgt");

    // Refusals: again (409), into itself (422), unknown (404), a write for the merged patient (422).
    let (status, answer) = server.post(None, "Patient/$merge", &parameters("src", "tgt", false)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["resourceType"], "OperationOutcome");
    let (status, _) = server.post(None, "Patient/$merge", &parameters("tgt", "tgt", false)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = server.post(None, "Patient/$merge", &parameters("nobody", "tgt", false)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.post(None, "Patient/$merge", &json!({"resourceType": "Parameters"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let late = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "Patient/src"}});
    let (status, answer) = server.post(None, "Observation", &late).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");

    // The unmerge.
    let (status, answer) = server.post(None, "Patient/$unmerge", &parameters("src", "tgt", false)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(output(&answer, "result")["active"], true);
    let obs: Value = server.get("Observation/obs-2").await;
    assert_eq!(obs["subject"]["reference"], "Patient/src");
}

#[tokio::test]
async fn a_caller_who_may_not_update_patients_may_not_merge() {
    let (server, authority) = start(true).await;
    seed(&server);
    let authority = authority.unwrap();
    let identity = Identity::Staff {
        roles: vec![Role::Physician],
        organizations: vec![],
        practitioner: None,
        practitioner_roles: vec![],
    };
    authority
        .add_user(NewUser {
            username: "reader".into(),
            identity,
            password: Some("correct horse battery staple".into()),
        })
        .unwrap();
    let token = authority.mint_token("reader", "user/*.rs", None, 3600).unwrap().access_token;
    let before = server.sequence();
    for operation in ["$merge", "$unmerge"] {
        let (status, answer) =
            server.post(Some(&token), &format!("Patient/{operation}"), &parameters("src", "tgt", false)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{operation}: {answer}");
    }
    assert_eq!(server.sequence(), before, "nothing written");
}

#[tokio::test]
async fn a_merge_moves_all_or_nothing_of_what_the_caller_sees() {
    let (server, authority) = start(true).await;
    let authority = authority.unwrap();
    server.put(json!({"resourceType": "Organization", "id": "org-a", "name": "A"}));
    for id in ["a1", "a2", "b1", "b2"] {
        server.put(json!({"resourceType": "Patient", "id": id, "active": true,
                          "managingOrganization": {"reference": "Organization/org-a"}}));
    }
    let observation = |id: &str, patient: &str| {
        json!({"resourceType": "Observation", "id": id, "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
               "subject": {"reference": format!("Patient/{patient}")}})
    };
    server.put(observation("obs-a", "a1"));
    server.put(observation("obs-b", "b1"));
    // A behavioral-health record the physician may not see.
    let mut hidden = observation("obs-b-psy", "b1");
    hidden["meta"] =
        json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]});
    server.put(hidden);
    let identity = Identity::Staff {
        roles: vec![Role::Physician],
        organizations: vec!["org-a".into()],
        practitioner: None,
        practitioner_roles: vec![],
    };
    authority
        .add_user(NewUser {
            username: "doctor".into(),
            identity,
            password: Some("correct horse battery staple".into()),
        })
        .unwrap();
    let token = authority.mint_token("doctor", "user/*.cruds", None, 3600).unwrap().access_token;

    // Everything of a1 is in sight: merged.
    let (status, answer) = server.post(Some(&token), "Patient/$merge", &parameters("a1", "a2", false)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let moved = server.records.read("Observation", "obs-a").unwrap();
    assert!(moved.body.unwrap().contains("Patient/a2"));

    // b1 has a record hidden from the physician: refused, nothing written.
    let before = server.sequence();
    let (status, answer) = server.post(Some(&token), "Patient/$merge", &parameters("b1", "b2", false)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(server.sequence(), before, "nothing written");
}
