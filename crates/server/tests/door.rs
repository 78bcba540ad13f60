//! One door for every edge: the same physician, patients and Consent give the same answers
//! through the REST API (over HTTP, with a bearer token) and through the door's service calls
//! as the clinician web app makes them (`access::Access` entered as the same caller) — a table
//! of reads, searches and writes with 0 differences.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use auth::{AuthConfig, Identity, NewUser, Role};
use reqwest::Client;
use serde_json::{Value, json};
use std::sync::Arc;
use store::Records;
use store::audit::Subtype;

fn put(records: &Records, resource: Value) {
    let t = resource["resourceType"].as_str().unwrap().to_string();
    let id = resource["id"].as_str().unwrap().to_string();
    records.update(&t, &id, resource, None).unwrap();
}

fn patient(id: &str, org: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": format!("Fam{id}")}],
           "identifier": [{"system": "urn:test:mrn", "value": format!("mrn-{id}")}],
           "managingOrganization": {"reference": format!("Organization/{org}")}})
}

fn observation(id: Option<&str>, patient: &str) -> Value {
    let mut o = json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}});
    if let Some(id) = id {
        o["id"] = json!(id);
    }
    o
}

/// What an answer says, comparable between the two edges: the status and the ids handed out.
#[derive(Debug, PartialEq, Eq)]
struct Said {
    status: u16,
    ids: Vec<String>,
}

/// One row of the table.
enum Op {
    Read(&'static str, &'static str),
    Search(&'static str, Vec<(&'static str, &'static str)>),
    Create(Value),
    Update(&'static str, &'static str, Value),
}

fn ids_of_bundle(bundle: &Value) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| {
            format!("{}/{}", e["resource"]["resourceType"].as_str().unwrap(), e["resource"]["id"].as_str().unwrap())
        })
        .collect();
    ids.sort();
    ids
}

async fn through_rest(client: &Client, base: &str, token: &str, op: &Op) -> Said {
    let request = match op {
        Op::Read(t, id) => client.get(format!("{base}/{t}/{id}")),
        Op::Search(t, pairs) => client.get(format!("{base}/{t}")).query(pairs),
        Op::Create(resource) => client
            .post(format!("{base}/{}", resource["resourceType"].as_str().unwrap()))
            .header("content-type", "application/fhir+json")
            .body(resource.to_string()),
        Op::Update(t, id, resource) => client
            .put(format!("{base}/{t}/{id}"))
            .header("content-type", "application/fhir+json")
            .body(resource.to_string()),
    };
    let response = request.bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let ids = match op {
        _ if status >= 300 => Vec::new(),
        Op::Search(..) => ids_of_bundle(&body),
        Op::Read(..) | Op::Update(..) => {
            vec![format!("{}/{}", body["resourceType"].as_str().unwrap(), body["id"].as_str().unwrap())]
        }
        // A created resource's id is new on each edge: its type tells enough.
        Op::Create(_) => vec![body["resourceType"].as_str().unwrap().to_string()],
    };
    Said { status, ids }
}

fn through_door(access: &access::Access, op: &Op) -> Said {
    let status_of = |e: &access::Error| e.class().status();
    match op {
        Op::Read(t, id) => match access.read(t, id) {
            Ok(v) => Said { status: 200, ids: vec![format!("{}/{}", v.resource_type, v.id)] },
            Err(e) => Said { status: status_of(&e), ids: vec![] },
        },
        Op::Search(t, pairs) => {
            let params: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let query = search::query::SearchQuery::parse(Some(t), &params, false).unwrap();
            match access.search(query, &params, 20, Subtype::SearchType) {
                Ok(page) => {
                    let mut ids: Vec<String> =
                        page.matches.iter().map(|v| format!("{}/{}", v.resource_type, v.id)).collect();
                    ids.sort();
                    Said { status: 200, ids }
                }
                Err(e) => Said { status: status_of(&e), ids: vec![] },
            }
        }
        Op::Create(resource) => match access.create(resource.clone(), None) {
            Ok(o) => Said { status: 201, ids: vec![o.version.unwrap().resource_type] },
            Err(e) => Said { status: status_of(&e), ids: vec![] },
        },
        Op::Update(t, id, resource) => match access.update(t, id, resource.clone(), None) {
            Ok(o) => {
                let v = o.version.unwrap();
                Said { status: 200, ids: vec![format!("{}/{}", v.resource_type, v.id)] }
            }
            Err(e) => Said { status: status_of(&e), ids: vec![] },
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_web_apps_service_calls_give_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
    let records = Records::new(backend.clone());
    for org in ["org-a", "org-b"] {
        put(&records, json!({"resourceType": "Organization", "id": org, "name": org}));
    }
    put(&records, json!({"resourceType": "Practitioner", "id": "a-doc", "name": [{"family": "Doc"}]}));
    put(&records, patient("mine", "org-a"));
    put(&records, patient("other", "org-b"));
    put(&records, patient("shared", "org-b"));
    // The shared patient's Consent opens their record to org-a; the other patient's is closed.
    put(
        &records,
        json!({
            "resourceType": "Consent", "id": "shared-consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/shared"},
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
            "provision": {"type": "permit", "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                "reference": {"reference": "Organization/org-a"}
            }]}
        }),
    );
    for p in ["mine", "other", "shared"] {
        put(&records, observation(Some(&format!("o-{p}")), p));
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    std::fs::create_dir_all(dir.path().join("auth")).unwrap();
    let (authority, _) = store_sqlite::auth::open_authority(&dir.path().join("auth"), AuthConfig::new(&base)).unwrap();
    let authority = Arc::new(authority);
    let identity = Identity::Staff {
        roles: vec![Role::Physician],
        organizations: vec!["org-a".into()],
        practitioner: Some("a-doc".into()),
        practitioner_roles: vec![],
    };
    let user = NewUser { username: "doc".into(), identity, password: Some("correct horse battery staple".into()) };
    authority.add_user(user).unwrap();
    let token = authority.mint_token("doc", "user/*.cruds", None, 3600).unwrap().access_token;
    let policy = Arc::new(policy::Policy::new(authority.clone(), records.clone()));
    let (auditor, _task) = access::Auditor::start(records.clone(), backend.clone());
    let limits = server::Limits { rate_limit: None, ..server::Limits::default() };
    let state = server::AppState::new(records.clone(), base.clone(), limits).with_policy(policy).with_auditor(auditor);
    let door = state.door().clone();
    tokio::spawn(server::serve(listener, state, std::future::pending()));

    let table = vec![
        Op::Read("Patient", "mine"),
        Op::Read("Patient", "shared"),
        Op::Read("Patient", "other"),
        Op::Read("Patient", "nobody"),
        Op::Read("Observation", "o-mine"),
        Op::Read("Observation", "o-shared"),
        Op::Read("Observation", "o-other"),
        Op::Read("Consent", "shared-consent"),
        Op::Search("Observation", vec![]),
        Op::Search("Observation", vec![("patient", "mine")]),
        Op::Search("Observation", vec![("patient", "shared")]),
        Op::Search("Observation", vec![("patient", "other")]),
        Op::Search("Observation", vec![("code", "http://loinc.org|8867-4")]),
        Op::Search("Observation", vec![("subject:Patient.name", "Famother")]),
        Op::Search("Patient", vec![]),
        Op::Search("Patient", vec![("_has:Observation:patient:code", "8867-4")]),
        Op::Search("Patient", vec![("name", "Famother")]),
        Op::Search("Consent", vec![]),
        Op::Search("Observation", vec![("not-a-parameter", "x")]),
        Op::Create(observation(None, "mine")),
        Op::Create(observation(None, "shared")),
        Op::Create(observation(None, "other")),
        Op::Create(json!({"resourceType": "Observation", "status": "not-a-status"})),
        Op::Update("Observation", "o-mine", observation(Some("o-mine"), "mine")),
        Op::Update("Observation", "o-other", observation(Some("o-other"), "other")),
        Op::Update("Observation", "o-mine", observation(Some("o-mine"), "other")),
    ];
    let client = Client::new();
    let mut differences = Vec::new();
    for (n, op) in table.iter().enumerate() {
        let rest = through_rest(&client, &base, &token, op).await;
        let bearer = format!("Bearer {token}");
        // The web app's way: the session's token authenticated, the door entered as the user,
        // the service called on a blocking thread, what it read settled with the audit.
        let (said, handle) = tokio::task::block_in_place(|| {
            let who = door.authenticate(Some(&bearer), None).unwrap();
            let access = door.enter(who);
            (through_door(&access, op), access)
        });
        handle.settle().await.unwrap();
        if rest != said {
            differences.push(format!("row {n}: REST {rest:?} vs door {said:?}"));
        }
    }
    assert!(differences.is_empty(), "{} differences:\n{}", differences.len(), differences.join("\n"));
    // The table covers what it must: some reads and searches allowed, some refused or hidden.
    let statuses: Vec<u16> = {
        let mut all = Vec::new();
        for op in &table {
            all.push(through_rest(&client, &base, &token, op).await.status);
        }
        all
    };
    for expected in [200, 201, 403, 404] {
        assert!(statuses.contains(&expected), "the table has a {expected}: {statuses:?}");
    }

    // Matching by identifier (how an interface finds what it received in the record) is
    // checked like any read: a caller gets back only the patients in their reach.
    let bearer = format!("Bearer {token}");
    let (matched, handle) = tokio::task::block_in_place(|| {
        let access = door.enter(door.authenticate(Some(&bearer), None).unwrap());
        let ids = |p: &str| -> Vec<String> {
            let found = access.by_identifier("Patient", Some("urn:test:mrn"), &format!("mrn-{p}")).unwrap();
            found.into_iter().map(|v| v.id).collect()
        };
        ((ids("mine"), ids("shared"), ids("other")), access)
    });
    handle.settle().await.unwrap();
    assert_eq!(matched, (vec!["mine".to_string()], vec!["shared".to_string()], Vec::<String>::new()));
}
