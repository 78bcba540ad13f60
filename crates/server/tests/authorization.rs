//! The authorization matrix: every staff role (and a patient) × four patients — of the
//! user's own organization, of another organization, of another organization that consented
//! to share with the user's, and of another organization with a care relationship to the
//! user's but a Consent denying it — × read, search, write, history, `$everything` and an
//! `_revinclude` that would leak. The expected answer of each cell is written out here, not
//! derived from the policy's code; the test fails on any unexpected allow (and lists
//! unexpected denials too). Then the edges: sensitive categories, break-the-glass, bad
//! tokens, chains and `_has`, paging tokens handed to another caller, history.
//!
//! The server runs in-process with the policy over a SQLite store and an authorization
//! server in a temporary directory, and is spoken to over real HTTP with real bearer tokens.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use auth::{AuthConfig, Authority, Identity, NewUser, Role};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use store::Records;

struct Rig {
    base: String,
    client: Client,
    authority: Arc<Authority>,
    records: Records,
    _dir: tempfile::TempDir,
}

const ORG_A: &str = "org-a";

/// The four patients, named by their relation to a user of `org-a`.
const OWN: &str = "p-own";
const OTHER: &str = "p-other";
const CONSENTED: &str = "p-consented";
const DENIED: &str = "p-denied";
const PATIENTS: [&str; 4] = [OWN, OTHER, CONSENTED, DENIED];

fn observation(id: &str, patient: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "performer": [{"reference": "Practitioner/doc"}],
        "valueQuantity": {"value": 70, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

fn consent(id: &str, patient: &str, kind: &str) -> Value {
    json!({
        "resourceType": "Consent", "id": id, "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": kind, "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "reference": {"reference": "Organization/org-a"}
        }]}
    })
}

fn put(records: &Records, resource: Value) {
    let t = resource["resourceType"].as_str().unwrap().to_string();
    let id = resource["id"].as_str().unwrap().to_string();
    records.update(&t, &id, resource, None).unwrap_or_else(|e| panic!("{t}/{id}: {e}"));
}

impl Rig {
    async fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
        let records = Records::new(Arc::new(backend));
        for org in ["org-a", "org-b"] {
            put(&records, json!({"resourceType": "Organization", "id": org, "name": org}));
        }
        put(&records, json!({"resourceType": "Practitioner", "id": "doc"}));
        let org_of = |p: &str| if p == OWN { "org-a" } else { "org-b" };
        for p in PATIENTS {
            put(
                &records,
                json!({"resourceType": "Patient", "id": p,
                       "managingOrganization": {"reference": format!("Organization/{}", org_of(p))}}),
            );
            put(&records, observation(&format!("obs-{p}"), p));
        }
        put(&records, consent("consent-share", CONSENTED, "permit"));
        // The denied patient was seen at org-a, which would otherwise give org-a its record.
        put(
            &records,
            json!({"resourceType": "Encounter", "id": "enc-denied", "status": "finished",
                   "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                   "subject": {"reference": format!("Patient/{DENIED}")},
                   "serviceProvider": {"reference": "Organization/org-a"}}),
        );
        put(&records, consent("consent-deny", DENIED, "deny"));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/fhir", listener.local_addr().unwrap());
        let (authority, _) = store_sqlite::auth::open_authority(&dir.path().join("auth"), AuthConfig::new(&base))
            .or_else(|_| {
                std::fs::create_dir_all(dir.path().join("auth")).unwrap();
                store_sqlite::auth::open_authority(&dir.path().join("auth"), AuthConfig::new(&base))
            })
            .unwrap();
        let authority = Arc::new(authority);
        let policy = Arc::new(policy::Policy::new(authority.clone(), records.clone()));
        let state = server::AppState::new(records.clone(), base.clone(), server::Limits::default()).with_policy(policy);
        tokio::spawn(server::serve(listener, state, std::future::pending()));
        Rig { base, client: Client::new(), authority, records, _dir: dir }
    }

    fn staff(&self, name: &str, role: Role) -> String {
        self.user(
            name,
            Identity::Staff {
                roles: vec![role],
                organizations: vec![ORG_A.into()],
                practitioner: None,
                practitioner_roles: vec![],
            },
            "user/*.cruds",
        )
    }

    fn user(&self, name: &str, identity: Identity, scope: &str) -> String {
        let new = NewUser { username: name.into(), identity, password: Some("correct horse battery staple".into()) };
        self.authority.add_user(new).unwrap();
        self.authority.mint_token(name, scope, None, 3600).unwrap().access_token
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let response = self.client.get(format!("{}/{path}", self.base)).bearer_auth(token).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, token: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Whether a Bundle holds `Type/id`.
fn holds(bundle: &Value, reference: &str) -> bool {
    bundle["entry"].as_array().into_iter().flatten().any(|e| {
        let r = &e["resource"];
        format!("{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or("")) == reference
    })
}

fn is_outcome(body: &Value) -> bool {
    body["resourceType"] == "OperationOutcome"
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Read,
    Search,
    Write,
    History,
    Everything,
    IncludeLeak,
}

const ACTIONS: [Action; 6] =
    [Action::Read, Action::Search, Action::Write, Action::History, Action::Everything, Action::IncludeLeak];

/// Who reads Observations, and who writes them (written out from the role descriptions).
fn reads_observations(role: Option<Role>) -> bool {
    match role {
        None => true, // the patient
        Some(r) => matches!(
            r,
            Role::Physician | Role::Nurse | Role::BehavioralHealthClinician | Role::CareManager | Role::QualityAnalyst
        ),
    }
}

fn writes_observations(role: Option<Role>) -> bool {
    match role {
        None => true, // patient-reported data
        Some(r) => matches!(r, Role::Physician | Role::Nurse | Role::BehavioralHealthClinician),
    }
}

/// Whose records a caller may open: staff of org-a the own and the consented patient; the
/// patient (of the own patient's record) only their own.
fn opens(role: Option<Role>, patient: &str) -> bool {
    match role {
        None => patient == OWN,
        Some(_) => patient == OWN || patient == CONSENTED,
    }
}

fn expected(role: Option<Role>, patient: &str, action: Action) -> bool {
    let allowed = if action == Action::Write { writes_observations(role) } else { reads_observations(role) };
    allowed && opens(role, patient)
}

async fn attempt(rig: &Rig, token: &str, patient: &str, action: Action, round: usize) -> bool {
    let obs = format!("Observation/obs-{patient}");
    match action {
        Action::Read => {
            let (status, body) = rig.get(token, &obs).await;
            assert!(status == StatusCode::OK || is_outcome(&body), "a refusal is an OperationOutcome: {body}");
            status == StatusCode::OK
        }
        Action::Search => {
            let (status, body) = rig.get(token, &format!("Observation?patient={patient}")).await;
            status == StatusCode::OK && holds(&body, &obs)
        }
        Action::Write => {
            let mut new = observation(&format!("new-{patient}-{round}"), patient);
            new.as_object_mut().unwrap().remove("id");
            let (status, body) = rig.post(token, "Observation", &new).await;
            assert!(status == StatusCode::CREATED || is_outcome(&body), "{body}");
            status == StatusCode::CREATED
        }
        Action::History => {
            let (status, body) = rig.get(token, &format!("{obs}/_history")).await;
            status == StatusCode::OK && body["entry"].as_array().is_some_and(|e| !e.is_empty())
        }
        Action::Everything => {
            let (status, body) = rig.get(token, &format!("Patient/{patient}/$everything")).await;
            status == StatusCode::OK && holds(&body, &obs)
        }
        Action::IncludeLeak => {
            let (status, body) = rig.get(token, "Practitioner?_id=doc&_revinclude=Observation:performer").await;
            status == StatusCode::OK && holds(&body, &obs)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_matrix_has_no_unexpected_allow() {
    let rig = Rig::start().await;
    let mut callers: Vec<(Option<Role>, String)> =
        Role::ALL.iter().map(|r| (Some(*r), rig.staff(&format!("staff-{r}"), *r))).collect();
    callers.push((None, rig.user("patient-own", Identity::Patient { patient: OWN.into() }, "patient/*.cruds")));
    let mut unexpected_allows = Vec::new();
    let mut unexpected_denials = Vec::new();
    let mut cells = 0;
    for (round, (role, token)) in callers.iter().enumerate() {
        for patient in PATIENTS {
            for action in ACTIONS {
                cells += 1;
                let allowed = attempt(&rig, token, patient, action, round).await;
                let want = expected(*role, patient, action);
                let who = role.map_or("patient".to_string(), |r| r.to_string());
                match (allowed, want) {
                    (true, false) => unexpected_allows.push(format!("{who} {patient} {action:?}")),
                    (false, true) => unexpected_denials.push(format!("{who} {patient} {action:?}")),
                    _ => {}
                }
            }
        }
    }
    assert_eq!(cells, 9 * 4 * 6);
    assert!(unexpected_allows.is_empty(), "{} unexpected allows: {unexpected_allows:#?}", unexpected_allows.len());
    assert!(unexpected_denials.is_empty(), "unexpected denials: {unexpected_denials:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_and_paging_never_tell_of_hidden_records() {
    let rig = Rig::start().await;
    let doctor = rig.staff("doctor", Role::Physician);
    let patient = rig.user("patient-own", Identity::Patient { patient: OWN.into() }, "patient/*.rs");
    // _total and _summary=count count what the caller may see: two of the four.
    let (_, counted) = rig.get(&doctor, "Observation?_summary=count").await;
    assert_eq!(counted["total"], 2, "{counted}");
    let (_, counted) = rig.get(&patient, "Observation?_summary=count").await;
    assert_eq!(counted["total"], 1, "{counted}");
    // A page token made for the doctor serves the patient nothing of others.
    let (_, first) = rig.get(&doctor, "Observation?_count=1&_sort=_id").await;
    let next = first["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let path = next.strip_prefix(&format!("{}/", rig.base)).unwrap();
    let (status, page) = rig.get(&patient, path).await;
    assert_eq!(status, StatusCode::OK);
    for entry in page["entry"].as_array().into_iter().flatten() {
        assert_eq!(entry["resource"]["subject"]["reference"], format!("Patient/{OWN}"), "{page}");
    }
    // Type and system history, and searches of every type, are for unrestricted callers.
    let (status, body) = rig.get(&doctor, "Observation/_history").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = rig.get(&doctor, "_history").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = rig.get(&doctor, "?_lastUpdated=gt2000-01-01").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // _has over patient records looks only into the records the caller may see: the patient
    // finds themselves, never another patient with such a result.
    let (status, body) = rig.get(&patient, "Patient?_has:Observation:patient:code=8867-4").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(holds(&body, &format!("Patient/{OWN}")), "{body}");
    assert_eq!(body["entry"].as_array().map_or(0, Vec::len), 1, "{body}");
    // _has into a type the caller may not search at all is refused.
    let desk = rig.staff("desk-has", Role::FrontDesk);
    let (status, body) = rig.get(&desk, "Patient?_has:Observation:patient:code=8867-4").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(is_outcome(&body));
    let (status, body) = rig.get(&patient, &format!("Observation?subject:Patient._id={OTHER}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["entry"].as_array().is_none_or(|e| e.is_empty()), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_records_follow_roles_and_consent() {
    let rig = Rig::start().await;
    let mut bh = observation("obs-bh", OWN);
    bh["meta"] = json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]});
    put(&rig.records, bh);
    let mut sud = observation("obs-sud", OWN);
    sud["meta"] = json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "ETH"}]});
    put(&rig.records, sud);
    let doctor = rig.staff("doctor", Role::Physician);
    let therapist = rig.staff("therapist", Role::BehavioralHealthClinician);
    let patient = rig.user("patient-own", Identity::Patient { patient: OWN.into() }, "patient/*.rs");

    assert_eq!(rig.get(&doctor, "Observation/obs-bh").await.0, StatusCode::NOT_FOUND);
    assert_eq!(rig.get(&therapist, "Observation/obs-bh").await.0, StatusCode::OK);
    assert_eq!(rig.get(&patient, "Observation/obs-bh").await.0, StatusCode::OK);
    let (_, found) = rig.get(&doctor, &format!("Observation?patient={OWN}")).await;
    assert!(!holds(&found, "Observation/obs-bh") && holds(&found, &format!("Observation/obs-{OWN}")), "{found}");
    let (_, counted) = rig.get(&doctor, &format!("Observation?patient={OWN}&_summary=count")).await;
    assert_eq!(counted["total"], 1);
    let (_, everything) = rig.get(&doctor, &format!("Patient/{OWN}/$everything")).await;
    assert!(!holds(&everything, "Observation/obs-bh") && !holds(&everything, "Observation/obs-sud"));

    // Substance-use records need the patient's consent for the category.
    assert_eq!(rig.get(&therapist, "Observation/obs-sud").await.0, StatusCode::NOT_FOUND);
    let mut share = consent("consent-sud", OWN, "permit");
    share["provision"]["securityLabel"] =
        json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "ETH"}]);
    let (status, body) = rig.post(&doctor, "Consent", &share).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(rig.get(&therapist, "Observation/obs-sud").await.0, StatusCode::OK);

    // A Consent withholding behavioral health from org-a hides it even from its therapist.
    let mut withhold = consent("consent-bh", OWN, "deny");
    withhold["provision"]["securityLabel"] =
        json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]);
    let (status, body) = rig.post(&doctor, "Consent", &withhold).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(rig.get(&therapist, "Observation/obs-bh").await.0, StatusCode::NOT_FOUND);
    assert_eq!(rig.get(&therapist, &format!("Observation/obs-{OWN}")).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_the_glass_opens_a_record_for_a_stated_reason() {
    let rig = Rig::start().await;
    let doctor = rig.staff("doctor", Role::Physician);
    let desk = rig.staff("desk", Role::FrontDesk);
    let obs = format!("Observation/obs-{OTHER}");
    assert_eq!(rig.get(&doctor, &obs).await.0, StatusCode::NOT_FOUND);
    let glass =
        |reason: &str| json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": reason}]});
    let path = format!("Patient/{OTHER}/$break-the-glass");
    let (status, body) = rig.post(&doctor, &path, &glass("")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a reason is required: {body}");
    let (status, body) = rig.post(&desk, &path, &glass("unconscious patient in the ED")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only clinical staff: {body}");
    let (status, body) = rig.post(&doctor, &path, &glass("unconscious patient in the ED")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["parameter"][1]["valueInstant"].is_string(), "{body}");
    assert_eq!(rig.get(&doctor, &obs).await.0, StatusCode::OK);
    let (_, found) = rig.get(&doctor, &format!("Observation?patient={OTHER}")).await;
    assert!(holds(&found, &obs));
    // Only for the one who broke it, and only that patient.
    let other_doctor = rig.staff("doctor-2", Role::Physician);
    assert_eq!(rig.get(&other_doctor, &obs).await.0, StatusCode::NOT_FOUND);
    assert_eq!(rig.get(&doctor, &format!("Observation/obs-{DENIED}")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_or_403_and_never_data() {
    let rig = Rig::start().await;
    let obs = format!("Observation/obs-{OWN}");
    let check = |status: StatusCode, body: &Value, want: StatusCode| {
        assert_eq!(status, want, "{body}");
        assert!(is_outcome(body), "never data: {body}");
    };
    // No token at all.
    let response = rig.client.get(format!("{}/{obs}", rig.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("www-authenticate").unwrap().to_str().unwrap().starts_with("Bearer"));
    assert!(is_outcome(&response.json().await.unwrap()));
    // A token that was never issued, and one that looks like a JWT with a forged signature.
    let (status, body) = rig.get("not-a-token", &obs).await;
    check(status, &body, StatusCode::UNAUTHORIZED);
    let forged = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZG1pbiIsInNjb3BlIjoidXNlci8qLioifQ.c2lnbmF0dXJl";
    let (status, body) = rig.get(forged, &obs).await;
    check(status, &body, StatusCode::UNAUTHORIZED);
    // Expired.
    let identity = Identity::Staff {
        roles: vec![Role::Physician],
        organizations: vec![ORG_A.into()],
        practitioner: None,
        practitioner_roles: vec![],
    };
    rig.user("doctor", identity, "user/*.rs");
    let expired = rig.authority.mint_token("doctor", "user/*.rs", None, -5).unwrap().access_token;
    let (status, body) = rig.get(&expired, &obs).await;
    check(status, &body, StatusCode::UNAUTHORIZED);
    // Issued by another server (another audience): unknown here.
    let elsewhere = tempfile::tempdir().unwrap();
    let (other, _) =
        store_sqlite::auth::open_authority(elsewhere.path(), AuthConfig::new("http://elsewhere.example/fhir")).unwrap();
    other
        .add_user(NewUser {
            username: "doctor".into(),
            identity: Identity::Staff {
                roles: vec![Role::Physician],
                organizations: vec![ORG_A.into()],
                practitioner: None,
                practitioner_roles: vec![],
            },
            password: Some("correct horse battery staple".into()),
        })
        .unwrap();
    let foreign = other.mint_token("doctor", "user/*.rs", None, 3600).unwrap().access_token;
    let (status, body) = rig.get(&foreign, &obs).await;
    check(status, &body, StatusCode::UNAUTHORIZED);
    // Scope too narrow: Patients only, and read-only.
    let narrow = rig.authority.mint_token("doctor", "user/Patient.rs", None, 3600).unwrap().access_token;
    let (status, body) = rig.get(&narrow, &obs).await;
    check(status, &body, StatusCode::FORBIDDEN);
    let (status, body) = rig.get(&narrow, "Observation?code=8867-4").await;
    check(status, &body, StatusCode::FORBIDDEN);
    let (status, body) = rig.post(&narrow, "Patient", &json!({"resourceType": "Patient"})).await;
    check(status, &body, StatusCode::FORBIDDEN);
    assert_eq!(rig.get(&narrow, &format!("Patient/{OWN}")).await.0, StatusCode::OK);
    // A v2 constraint narrows to the matching resources only.
    let vitals =
        rig.authority.mint_token("doctor", "user/Observation.rs?code=http://loinc.org|1234-5", None, 3600).unwrap();
    let (status, body) = rig.get(&vitals.access_token, &obs).await;
    check(status, &body, StatusCode::NOT_FOUND);
    let (_, found) = rig.get(&vitals.access_token, "Observation?code=http://loinc.org|8867-4").await;
    assert!(!holds(&found, &obs), "{found}");
    // Revoked.
    let good = rig.authority.mint_token("doctor", "user/*.rs", None, 3600).unwrap().access_token;
    assert_eq!(rig.get(&good, &obs).await.0, StatusCode::OK);
    rig.authority.revoke(None, &good).unwrap();
    let (status, body) = rig.get(&good, &obs).await;
    check(status, &body, StatusCode::UNAUTHORIZED);
    // The capability statement stays public.
    let metadata = rig.client.get(format!("{}/metadata", rig.base)).send().await.unwrap();
    assert_eq!(metadata.status(), StatusCode::OK);
}
