//! Patient isolation, proved on every read channel of the API (issue 16).
//!
//! The matrix is generated from the R4 definitions, not hand-picked: for every resource type in
//! the Patient compartment (and every type outside it whose `patient` parameter names its
//! patient: Task, Device, Contract, GuidanceResponse), a resource of the victim (a patient of another organization) is
//! stored, linked to the victim through the type's first compartment parameter whose path can
//! be laid out, and to the victim's practitioner through a reference parameter that may point
//! at a Practitioner; each carries a contained Practitioner and a narrative with a secret word.
//! Then every caller kind — the attacker patient, their proxy, a physician, a front desk and a
//! billing clerk of the attacker's organization, and a backend service with narrow `system/`
//! scopes — tries every read channel on every type: read, vread, search by each compartment
//! parameter, `_id`, `_text`, `_content`, `_summary=count`, `_total=accurate`, `_contained=true|both`,
//! `_include`/`_revinclude` (with `*` and `:iterate`), chains into Patient, `_has` from Patient
//! and from Practitioner, instance/type/system history, compartment search, `$everything`,
//! batch GET entries, and conditional create/update/delete/patch and their Bundle forms. An
//! answer leaks when it holds a resource of the victim, a count above zero for criteria only
//! the victim's data meets, an association of the victim's practitioner, or tells a deleted
//! victim resource apart from one that never existed. After the probes an unrestricted reader
//! checks that the victim's record is unchanged. Then a randomized test draws searches from
//! the search-parameter registry and checks every resource returned against an oracle.
//!
//! The server runs in-process with the policy over a SQLite store, spoken to over real HTTP
//! with real bearer tokens.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use auth::{AuthConfig, Authority, ClientKind, Identity, NewClient, NewUser, Role};
use base64::Engine;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use store::{Change, Records, ResourceVersion};

const VICTIM: &str = "victim";
const ATTACKER: &str = "attacker";
/// A patient of the victim's organization whose Consent shares their record with the
/// attacker's organization (staff there may see it; the attacker patient may not).
const SHARED: &str = "shared";
const SECRET: &str = "zanzibarsecret";
const CONTAINED_NAME: &str = "Quixotecontained";

struct Rig {
    base: String,
    client: Client,
    authority: Arc<Authority>,
    records: Records,
    _dir: tempfile::TempDir,
}

/// A type of the Patient compartment with the parameters used to probe it.
#[derive(Debug, Clone)]
struct Probed {
    resource_type: String,
    /// Its compartment parameters (reference kind, known to the registry).
    compartment: Vec<String>,
    /// The compartment parameter laid out in the stored resources.
    linked_by: String,
    /// A reference parameter that may point at a Practitioner, laid out too.
    practitioner_param: Option<String>,
}

/// The JSON path segments of one member of a FHIRPath expression (`Type.a.b.where(…)`).
fn path_of(resource_type: &str, expression: &str) -> Option<Vec<String>> {
    for member in expression.split('|') {
        let member = member.trim().trim_start_matches('(').trim_end_matches(')');
        let Some(rest) = member.strip_prefix(&format!("{resource_type}.")) else { continue };
        let rest = rest.split(".where(").next().unwrap_or(rest);
        if rest.contains('(') || rest.contains(' ') {
            continue;
        }
        let segments: Vec<String> = rest.split('.').map(str::to_string).collect();
        // Every segment an element of the type, the last a Reference.
        let defs = fhir::definitions();
        let mut path = resource_type.to_string();
        let mut ok = true;
        for s in &segments {
            path = format!("{path}.{s}");
            if defs.element(&path).is_none() {
                ok = false;
                break;
            }
        }
        let last_is_reference = defs.element(&path).is_some_and(|e| e.types.iter().any(|t| t.code == "Reference"));
        if ok && last_is_reference {
            return Some(segments);
        }
    }
    None
}

/// Sets `value` at `segments` in `resource`, making arrays where the element repeats.
fn lay_out(resource: &mut Value, resource_type: &str, segments: &[String], value: Value) {
    let defs = fhir::definitions();
    let mut node = resource;
    let mut path = resource_type.to_string();
    for (i, s) in segments.iter().enumerate() {
        path = format!("{path}.{s}");
        let repeating = defs.element(&path).is_some_and(|e| e.is_repeating());
        let last = i + 1 == segments.len();
        let fresh = if last { value.clone() } else { json!({}) };
        let map = node.as_object_mut().expect("an object");
        let slot = map.entry(s.clone()).or_insert_with(|| if repeating { json!([]) } else { Value::Null });
        if repeating {
            let items = slot.as_array_mut().expect("an array");
            if last || items.is_empty() {
                items.push(fresh);
            }
            node = items.last_mut().expect("an item");
        } else {
            if slot.is_null() || last {
                *slot = fresh;
            }
            node = slot;
        }
    }
}

fn probed_types() -> Vec<Probed> {
    let defs = fhir::definitions();
    let mut out = Vec::new();
    for resource_type in defs.resource_types() {
        // The R4 Patient compartment, and the types outside it that still name their patient.
        let params = store::compartment::linking_params(resource_type);
        if params.is_empty() || resource_type == "Patient" {
            continue;
        }
        let resource_type = &resource_type.to_string();
        let compartment: Vec<String> = params
            .iter()
            .filter(|p| {
                search::registry().param(resource_type, p).is_some_and(|c| c.kind == search::ParamKind::Reference)
            })
            .cloned()
            .collect();
        let linked_by = compartment.iter().find(|p| {
            defs.search_param(resource_type, p)
                .and_then(|d| d.expression.as_deref())
                .and_then(|e| path_of(resource_type, e))
                .is_some()
        });
        let Some(linked_by) = linked_by.cloned() else {
            panic!("{resource_type}: no compartment parameter could be laid out; the matrix must cover every type")
        };
        let practitioner_param = defs
            .search_params(resource_type)
            .into_iter()
            .filter(|d| d.kind == "reference" && d.targets.iter().any(|t| t == "Practitioner"))
            .filter(|d| !compartment.contains(&d.name) || d.name != linked_by)
            .find(|d| d.expression.as_deref().and_then(|e| path_of(resource_type, e)).is_some())
            .map(|d| d.name.clone());
        out.push(Probed { resource_type: resource_type.clone(), compartment, linked_by, practitioner_param });
    }
    out.sort_by(|a, b| a.resource_type.cmp(&b.resource_type));
    out
}

/// A resource of `probed`'s type belonging to `patient` (not validated: stored as a version,
/// so that every type can be laid out from its definitions alone).
fn resource_of(probed: &Probed, id: &str, patient: &str, practitioner: &str, secret: bool) -> Value {
    let t = &probed.resource_type;
    let defs = fhir::definitions();
    let mut resource = json!({"resourceType": t, "id": id});
    let link = defs.search_param(t, &probed.linked_by).and_then(|d| d.expression.clone()).unwrap_or_default();
    let segments = path_of(t, &link).expect("laid out before");
    lay_out(&mut resource, t, &segments, json!({"reference": format!("Patient/{patient}")}));
    if let Some(p) = &probed.practitioner_param {
        let expression = defs.search_param(t, p).and_then(|d| d.expression.clone()).unwrap_or_default();
        if let Some(segments) = path_of(t, &expression) {
            lay_out(&mut resource, t, &segments, json!({"reference": format!("Practitioner/{practitioner}")}));
        }
    }
    if secret {
        resource["text"] = json!({"status": "generated",
            "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{SECRET}</div>")});
        resource["contained"] = json!([{"resourceType": "Practitioner", "id": "c1",
            "name": [{"family": CONTAINED_NAME}]}]);
    }
    resource
}

fn put(records: &Records, resource: Value) {
    let t = resource["resourceType"].as_str().unwrap().to_string();
    let id = resource["id"].as_str().unwrap().to_string();
    records.update(&t, &id, resource, None).unwrap_or_else(|e| panic!("{t}/{id}: {e}"));
}

/// Stores resources as versions (indexed, not validated).
fn restore(records: &Records, resources: Vec<Value>) {
    let now = time::OffsetDateTime::now_utc();
    let versions = resources
        .into_iter()
        .map(|mut r| {
            r["meta"] = json!({"versionId": "1", "lastUpdated": store::format_instant(now)});
            ResourceVersion {
                resource_type: r["resourceType"].as_str().unwrap().to_string(),
                id: r["id"].as_str().unwrap().to_string(),
                version: 1,
                last_updated: now,
                change: Change::Created,
                body: Some(Arc::from(r.to_string())),
                sequence: 0,
            }
        })
        .collect();
    records.restore(versions).expect("restored");
}

fn patient(id: &str, org: &str, family: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": family}],
           "managingOrganization": {"reference": format!("Organization/{org}")}})
}

impl Rig {
    async fn start(types: &[Probed]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
        let records = Records::new(Arc::new(backend));
        for org in ["org-a", "v-org"] {
            put(&records, json!({"resourceType": "Organization", "id": org, "name": org}));
        }
        for doc in ["a-doc", "v-doc"] {
            put(&records, json!({"resourceType": "Practitioner", "id": doc, "name": [{"family": doc}]}));
        }
        put(&records, patient(ATTACKER, "org-a", "Attackerfamily"));
        put(&records, patient(VICTIM, "v-org", "Victimfamily"));
        put(&records, patient(SHARED, "v-org", "Sharedfamily"));
        put(
            &records,
            json!({"resourceType": "RelatedPerson", "id": "a-proxy", "patient": {"reference": "Patient/attacker"}}),
        );
        put(
            &records,
            json!({
                "resourceType": "Consent", "id": "s-consent", "status": "active",
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
        let mut stored = Vec::new();
        for p in types {
            let t = p.resource_type.to_lowercase();
            stored.push(resource_of(p, &format!("v-{t}"), VICTIM, "v-doc", true));
            stored.push(resource_of(p, &format!("a-{t}"), ATTACKER, "a-doc", false));
            stored.push(resource_of(p, &format!("s-{t}"), SHARED, "v-doc", false));
        }
        restore(&records, stored);
        // A deleted resource of the victim: its read must not be told from a missing one.
        put(&records, observation("v-deleted", VICTIM));
        records.delete("Observation", "v-deleted", None).unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/fhir", listener.local_addr().unwrap());
        std::fs::create_dir_all(dir.path().join("auth")).unwrap();
        let (authority, _) =
            store_sqlite::auth::open_authority(&dir.path().join("auth"), AuthConfig::new(&base)).unwrap();
        let authority = Arc::new(authority);
        let policy = Arc::new(policy::Policy::new(authority.clone(), records.clone()));
        // No rate limit: the matrix sends thousands of requests from one address.
        let limits = server::Limits { rate_limit: None, ..server::Limits::default() };
        let state = server::AppState::new(records.clone(), base.clone(), limits).with_policy(policy);
        tokio::spawn(server::serve(listener, state, std::future::pending()));
        Rig { base, client: Client::new(), authority, records, _dir: dir }
    }

    fn user(&self, name: &str, identity: Identity, scope: &str) -> String {
        let new = NewUser { username: name.into(), identity, password: Some("correct horse battery staple".into()) };
        self.authority.add_user(new).unwrap();
        self.authority.mint_token(name, scope, None, 3600).unwrap().access_token
    }

    fn staff(&self, name: &str, role: Role) -> String {
        let identity = Identity::Staff {
            roles: vec![role],
            organizations: vec!["org-a".into()],
            practitioner: Some("a-doc".into()),
            practitioner_roles: vec![],
        };
        self.user(name, identity, "user/*.cruds")
    }

    fn service(&self, scope: &str) -> String {
        let new = NewClient {
            id: Some("narrow-service".into()),
            name: "narrow service".into(),
            kind: ClientKind::Confidential,
            redirect_uris: vec![],
            allowed_scopes: scope.into(),
            jwks: None,
            jwks_uri: None,
            with_secret: true,
        };
        let (client, _) = self.authority.add_client(new).unwrap();
        self.authority.client_credentials(&client, scope).unwrap().access_token
    }

    /// The callers: (name, token, patients whose records they may see).
    fn callers(&self) -> Vec<Caller> {
        let patient = Identity::Patient { patient: ATTACKER.into() };
        let proxy = Identity::Proxy { patient: ATTACKER.into(), related_person: "a-proxy".into() };
        let staff_sees = vec![ATTACKER.to_string(), SHARED.to_string()];
        vec![
            Caller::new("patient", self.user("pat", patient, "patient/*.cruds"), vec![ATTACKER.into()]),
            Caller::new("proxy", self.user("proxy", proxy, "patient/*.cruds"), vec![ATTACKER.into()]),
            Caller::new("physician", self.staff("doc", Role::Physician), staff_sees.clone()),
            Caller::new("front desk", self.staff("desk", Role::FrontDesk), staff_sees.clone()),
            Caller::new("billing", self.staff("bill", Role::Billing), staff_sees),
            Caller::new(
                "narrow service",
                self.service("system/Practitioner.rs system/Organization.rs system/Observation.rs?category=laboratory"),
                vec![],
            ),
        ]
    }

    async fn send(&self, token: &str, method: reqwest::Method, path: &str, body: Option<(&str, String)>) -> Answer {
        self.send_with(token, method, path, body, &[]).await
    }

    async fn send_with(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
        headers: &[(&str, String)],
    ) -> Answer {
        let mut request = self.client.request(method, format!("{}/{path}", self.base)).bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some((media, body)) = body {
            request = request.header("content-type", media).body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Answer { status, body }
    }
}

struct Caller {
    name: &'static str,
    token: String,
    /// Patients whose records this caller may see (the oracle's compartment membership and
    /// consent); empty for the service, which may see no patient record but lab results.
    sees: Vec<String>,
}

impl Caller {
    fn new(name: &'static str, token: String, sees: Vec<String>) -> Caller {
        Caller { name, token, sees }
    }
}

struct Answer {
    status: StatusCode,
    body: Value,
}

fn observation(id: &str, patient: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 70, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

/// Every resource in an answer (Bundles walked, nested ones too; contained ones apart).
fn resources(body: &Value, out: &mut Vec<Value>) {
    if body["resourceType"] == "Bundle" {
        for entry in body["entry"].as_array().into_iter().flatten() {
            if let Some(r) = entry.get("resource") {
                resources(r, out);
            }
        }
    } else if body.get("resourceType").is_some() && body["resourceType"] != "OperationOutcome" {
        out.push(body.clone());
    }
}

/// Totals in an answer (nested searchsets too).
fn totals(body: &Value, out: &mut Vec<u64>) {
    if body["resourceType"] == "Bundle" {
        if let Some(t) = body["total"].as_u64() {
            out.push(t);
        }
        for entry in body["entry"].as_array().into_iter().flatten() {
            if let Some(r) = entry.get("resource") {
                totals(r, out);
            }
        }
    }
}

/// Whether a returned resource is one the caller may not see (the oracle): a record of a
/// patient outside `sees`, or for the narrow service any patient record but a lab result.
fn forbidden(caller: &Caller, resource: &Value) -> bool {
    let t = resource["resourceType"].as_str().unwrap_or_default();
    if !policy::patient_owned(t) {
        return false;
    }
    if caller.sees.is_empty() {
        let lab = resource["category"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["coding"].as_array().into_iter().flatten())
            .any(|c| c["code"] == "laboratory");
        return !(t == "Observation" && lab);
    }
    let owners = policy::patients_of(t, resource);
    owners.is_empty() || !owners.iter().any(|o| caller.sees.contains(o))
}

/// What a probe's answer may not contain.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// No forbidden resource.
    Clean,
    /// Nothing at all: the criteria hold only for the victim's data (no match, no count, no
    /// shared resource found through the victim's records).
    Empty,
    /// A 404 (or a 403 that refuses the whole type): the resource does not exist for them.
    Missing,
}

struct Probe {
    method: reqwest::Method,
    path: String,
    body: Option<(&'static str, String)>,
    /// Extra request headers (`If-None-Exist`).
    headers: Vec<(&'static str, String)>,
    expect: Expect,
}

fn get(path: String, expect: Expect) -> Probe {
    Probe { method: reqwest::Method::GET, path, body: None, headers: Vec::new(), expect }
}

fn sent(method: reqwest::Method, path: String, body: Option<(&'static str, String)>, expect: Expect) -> Probe {
    Probe { method, path, body, headers: Vec::new(), expect }
}

fn batch(requests: &[(&str, String)], kind: &str) -> String {
    let entries: Vec<Value> = requests
        .iter()
        .map(|(method, url)| {
            let mut entry = json!({"request": {"method": method, "url": url}});
            if *method == "PATCH" {
                let patch = json!([{"op": "add", "path": "/language", "value": "fr"}]).to_string();
                entry["resource"] = json!({"resourceType": "Binary", "contentType": "application/json-patch+json",
                    "data": base64::engine::general_purpose::STANDARD.encode(patch.as_bytes())});
            }
            entry
        })
        .collect();
    json!({"resourceType": "Bundle", "type": kind, "entry": entries}).to_string()
}

/// Every probe of one type.
fn probes_of(p: &Probed) -> Vec<Probe> {
    let t = &p.resource_type;
    let v = format!("v-{}", t.to_lowercase());
    let mut probes = vec![
        get(format!("{t}/{v}"), Expect::Missing),
        get(format!("{t}/{v}/_history/1"), Expect::Missing),
        get(format!("{t}/{v}/_history"), Expect::Clean),
        get(format!("{t}/_history"), Expect::Clean),
        get(format!("{t}?_id={v}"), Expect::Empty),
        get(format!("{t}?_id={v}&_summary=count"), Expect::Empty),
        get(format!("{t}?_id={v}&_total=accurate"), Expect::Empty),
        get(format!("{t}?_text={SECRET}"), Expect::Empty),
        get(format!("{t}?_content={SECRET}"), Expect::Empty),
        get(format!("{t}?_content={SECRET}&_summary=count"), Expect::Empty),
        get(format!("{t}?_include=*&_revinclude=*&_count=100"), Expect::Clean),
        get(format!("{t}?_include:iterate=*&_revinclude:iterate=*&_count=100"), Expect::Clean),
        get(format!("Patient/{VICTIM}/{t}"), Expect::Empty),
        get(format!("Patient?_has:{t}:{}:_id={v}", p.linked_by), Expect::Empty),
        get(format!("?_type={t},Practitioner&_id={v}"), Expect::Empty),
        Probe {
            method: reqwest::Method::POST,
            path: String::new(),
            body: Some((
                "application/fhir+json",
                batch(
                    &[("GET", format!("{t}/{v}")), ("GET", format!("{t}?{}=Patient/{VICTIM}", p.linked_by))],
                    "batch",
                ),
            )),
            headers: Vec::new(),
            expect: Expect::Empty,
        },
        // Conditional writes whose criteria only the victim's resource meets: none may match
        // it (nor delete or change it; checked at the end).
        sent(reqwest::Method::DELETE, format!("{t}?_id={v}"), None, Expect::Clean),
        sent(
            reqwest::Method::POST,
            String::new(),
            Some((
                "application/fhir+json",
                batch(&[("DELETE", format!("{t}?_id={v}")), ("PATCH", format!("{t}?_id={v}"))], "batch"),
            )),
            Expect::Clean,
        ),
        sent(
            reqwest::Method::PATCH,
            format!("{t}/{v}"),
            Some((
                "application/json-patch+json",
                json!([{"op": "add", "path": "/language", "value": "fr"}]).to_string(),
            )),
            Expect::Missing,
        ),
    ];
    for param in &p.compartment {
        probes.push(get(format!("{t}?{param}=Patient/{VICTIM}"), Expect::Empty));
        probes.push(get(format!("{t}?{param}={VICTIM}&_summary=count"), Expect::Empty));
        probes.push(get(format!("{t}?{param}:Patient.name=Victimfamily"), Expect::Empty));
        probes.push(get(format!("{t}?{param}:Patient._id={VICTIM}&_total=accurate"), Expect::Empty));
    }
    if let Some(pp) = &p.practitioner_param {
        // The victim's practitioner, found through the victim's records: an association.
        probes.push(get(format!("Practitioner?_has:{t}:{pp}:{}={VICTIM}", p.linked_by), Expect::Empty));
        probes.push(get(format!("Practitioner?_id=v-doc&_revinclude={t}:{pp}"), Expect::Clean));
        probes.push(get("Practitioner?_id=v-doc&_revinclude=*&_revinclude:iterate=*".into(), Expect::Clean));
    }
    probes
}

/// Probes that do not depend on the type.
fn general_probes() -> Vec<Probe> {
    vec![
        get(format!("Practitioner?_contained=true&name={CONTAINED_NAME}"), Expect::Empty),
        get(format!("Practitioner?_contained=both&name={CONTAINED_NAME}"), Expect::Empty),
        get(format!("Practitioner?_contained=true&name={CONTAINED_NAME}&_summary=count"), Expect::Empty),
        get(format!("Patient/{VICTIM}"), Expect::Missing),
        get(format!("Patient?_id={VICTIM}&_total=accurate"), Expect::Empty),
        get("Patient?name=Victimfamily".into(), Expect::Empty),
        get(format!("Patient/{VICTIM}/$everything"), Expect::Missing),
        get(format!("Patient/{VICTIM}/_history"), Expect::Clean),
        get("_history".into(), Expect::Clean),
        get("Observation/v-deleted".into(), Expect::Missing),
        get("Observation/v-deleted/_history/1".into(), Expect::Missing),
        get("Organization?_id=v-org&_revinclude=Patient:organization&_revinclude:iterate=*".into(), Expect::Clean),
        get(format!("Organization?_has:Patient:organization:_id={VICTIM}"), Expect::Empty),
        get(format!("Practitioner?_has:Encounter:participant:patient={VICTIM}"), Expect::Empty),
        get(format!("Organization?_has:Encounter:service-provider:patient={VICTIM}"), Expect::Empty),
        get(format!("Medication?_has:MedicationRequest:medication:patient={VICTIM}"), Expect::Empty),
        get("Patient?_revinclude=*&_count=100".into(), Expect::Clean),
        // Conditional writes whose criteria only the victim's Observation meets, in REST and
        // Bundle forms: none may hand it out, change it or delete it (the caller may create or
        // update their own, or be refused).
        Probe {
            method: reqwest::Method::POST,
            path: "Observation".into(),
            body: Some(("application/fhir+json", own_observation())),
            headers: vec![("if-none-exist", format!("patient={VICTIM}"))],
            expect: Expect::Clean,
        },
        sent(
            reqwest::Method::PUT,
            format!("Observation?patient={VICTIM}"),
            Some(("application/fhir+json", own_observation())),
            Expect::Clean,
        ),
        sent(
            reqwest::Method::POST,
            String::new(),
            Some(("application/fhir+json", conditional_bundle("batch"))),
            Expect::Clean,
        ),
        sent(
            reqwest::Method::POST,
            String::new(),
            Some(("application/fhir+json", conditional_bundle("transaction"))),
            Expect::Clean,
        ),
    ]
}

/// A valid Observation of the attacker (without id), as the body of conditional writes.
fn own_observation() -> String {
    let mut body = observation("x", ATTACKER);
    body.as_object_mut().unwrap().remove("id");
    body.to_string()
}

/// A Bundle of a conditional create and a conditional update whose criteria only the
/// victim's Observation meets.
fn conditional_bundle(kind: &str) -> String {
    let body: Value = serde_json::from_str(&own_observation()).unwrap();
    json!({"resourceType": "Bundle", "type": kind, "entry": [
        {"fullUrl": "urn:uuid:2b1c5c53-9a0e-4d7e-8f3c-0a1b2c3d4e5f", "resource": body,
         "request": {"method": "POST", "url": "Observation", "ifNoneExist": format!("patient={VICTIM}")}},
        {"resource": body, "request": {"method": "PUT", "url": "Observation?_id=v-observation"}}
    ]})
    .to_string()
}

/// What is wrong with an answer, if anything.
fn leak(caller: &Caller, probe: &Probe, answer: &Answer) -> Option<String> {
    let mut found = Vec::new();
    resources(&answer.body, &mut found);
    if let Some(bad) = found.iter().find(|r| forbidden(caller, r)) {
        return Some(format!("{} {}/{}", answer.status, bad["resourceType"], bad["id"]));
    }
    match probe.expect {
        Expect::Clean => None,
        Expect::Empty => {
            let mut counts = Vec::new();
            totals(&answer.body, &mut counts);
            let victims_only: Vec<&Value> = found
                .iter()
                .filter(|r| r["id"].as_str().is_some_and(|id| id.starts_with("v-")) || r["id"] == VICTIM)
                .collect();
            if let Some(r) = victims_only.first() {
                Some(format!("{} returned {}/{}", answer.status, r["resourceType"], r["id"]))
            } else if counts.iter().any(|c| *c > 0) && found.is_empty() {
                Some(format!("{} counted {counts:?}", answer.status))
            } else {
                None
            }
        }
        Expect::Missing => match answer.status {
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => None,
            other => Some(format!("answered {other}")),
        },
    }
}

/// The victim's record as an unrestricted reader sees it: every resource with its version.
fn victim_record(records: &Records, types: &[Probed]) -> BTreeSet<(String, String, u64)> {
    let mut out = BTreeSet::new();
    for p in types {
        let pairs = vec![(p.linked_by.clone(), format!("Patient/{VICTIM}"))];
        let query = search::SearchQuery::parse(Some(&p.resource_type), &pairs, true).unwrap();
        let page = records.search(&query, 1000).unwrap();
        for v in page.matches {
            out.insert((v.resource_type, v.id, v.version));
        }
    }
    let patient = records.read("Patient", VICTIM).unwrap();
    out.insert(("Patient".into(), VICTIM.into(), patient.version));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_channel_shows_or_changes_another_patients_record() {
    let types = probed_types();
    assert!(types.len() >= 60, "the Patient compartment has {} types", types.len());
    let rig = Rig::start(&types).await;
    let before = victim_record(&rig.records, &types);
    let callers = rig.callers();

    // The rig works: each caller sees what it should of its own (else "no leak" proves nothing).
    let own = rig.send(&callers[0].token, reqwest::Method::GET, "Observation?_id=a-observation", None).await;
    assert_eq!(own.body["total"], 1, "the patient reads their own Observation");
    let doc = rig.send(&callers[2].token, reqwest::Method::GET, "Condition?_id=s-condition", None).await;
    assert_eq!(doc.body["total"], 1, "the physician reads the consented patient's Condition");
    let lab = rig.send(&callers[5].token, reqwest::Method::GET, "Practitioner?_id=v-doc", None).await;
    assert_eq!(lab.body["total"], 1, "the service reads practitioners");

    let mut probes: Vec<Probe> = types.iter().flat_map(probes_of).collect();
    probes.extend(general_probes());
    let mut run = 0usize;
    let mut leaks = Vec::new();
    for caller in &callers {
        for probe in &probes {
            let path = probe.path.clone();
            let body = probe.body.clone();
            let answer = rig.send_with(&caller.token, probe.method.clone(), &path, body, &probe.headers).await;
            run += 1;
            if answer.status.is_server_error() {
                leaks.push(format!("{}: {} {}: server error {}", caller.name, probe.method, probe.path, answer.status));
            }
            if let Some(why) = leak(caller, probe, &answer) {
                leaks.push(format!("{}: {} {}: {why}", caller.name, probe.method, probe.path));
            }
        }
    }
    let after = victim_record(&rig.records, &types);
    let changed: Vec<_> = before.symmetric_difference(&after).collect();
    println!("isolation matrix: {} types, {} callers, {run} probes, {} leaks", types.len(), callers.len(), leaks.len());
    assert!(changed.is_empty(), "the victim's record changed: {changed:?}");
    assert!(leaks.is_empty(), "{} leaks of {run} probes:\n{}", leaks.len(), leaks.join("\n"));
}

/// Writes that name another patient are refused, and reach never grows from one's own write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_naming_another_patient_are_refused() {
    let types = probed_types();
    let rig = Rig::start(&types).await;
    let callers = rig.callers();
    let (patient_caller, physician) = (&callers[0], &callers[2]);
    // The attacker patient records an Observation about the victim, naming themselves as
    // performer: refused, and nothing stands in the victim's chart.
    let mut forged = observation("ignored", VICTIM);
    forged.as_object_mut().unwrap().remove("id");
    forged["performer"] = json!([{"reference": format!("Patient/{ATTACKER}")}]);
    let answer = rig
        .send(
            &patient_caller.token,
            reqwest::Method::POST,
            "Observation",
            Some(("application/fhir+json", forged.to_string())),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    // The physician writes a CareTeam for the victim naming themselves: refused, and the
    // victim stays out of their reach.
    let team = json!({"resourceType": "CareTeam", "status": "active",
        "subject": {"reference": format!("Patient/{VICTIM}")},
        "participant": [{"member": {"reference": "Practitioner/a-doc"}}]});
    let answer = rig
        .send(&physician.token, reqwest::Method::POST, "CareTeam", Some(("application/fhir+json", team.to_string())))
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    // The same through a transaction Bundle with a urn:uuid reference (resolved inside the write).
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b7a3c5e-5f6a-4b7c-9d8e-1f2a3b4c5d6e",
         "resource": {"resourceType": "CareTeam", "status": "active",
            "subject": {"reference": format!("Patient/{VICTIM}")},
            "participant": [{"member": {"reference": "Practitioner/a-doc"}}]},
         "request": {"method": "POST", "url": "CareTeam"}}]});
    let answer = rig
        .send(&physician.token, reqwest::Method::POST, "", Some(("application/fhir+json", bundle.to_string())))
        .await;
    assert!(answer.status.is_client_error(), "{} {}", answer.status, answer.body);
    let read = rig.send(&physician.token, reqwest::Method::GET, &format!("Patient/{VICTIM}"), None).await;
    assert_eq!(read.status, StatusCode::NOT_FOUND);
    // Moving one's own resource to the victim (PUT and PATCH) is refused too.
    put(&rig.records, observation("a-valid", ATTACKER));
    let mut moved = rig.send(&physician.token, reqwest::Method::GET, "Observation/a-valid", None).await.body;
    moved["subject"] = json!({"reference": format!("Patient/{VICTIM}")});
    let answer = rig
        .send(
            &physician.token,
            reqwest::Method::PUT,
            "Observation/a-valid",
            Some(("application/fhir+json", moved.to_string())),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    let patch = json!([{"op": "replace", "path": "/subject/reference", "value": format!("Patient/{VICTIM}")}]);
    let answer = rig
        .send(
            &physician.token,
            reqwest::Method::PATCH,
            "Observation/a-valid",
            Some(("application/json-patch+json", patch.to_string())),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    // A front desk may not revive a deleted patient of another organization into its own.
    rig.records.delete("Patient", VICTIM, None).unwrap();
    let desk = &callers[3];
    let revived = patient(VICTIM, "org-a", "Revived");
    let answer = rig
        .send(&desk.token, reqwest::Method::PUT, "Patient/victim", Some(("application/fhir+json", revived.to_string())))
        .await;
    assert!(answer.status == StatusCode::NOT_FOUND || answer.status == StatusCode::FORBIDDEN, "{}", answer.status);
    assert!(rig.records.read("Patient", VICTIM).is_err(), "the deleted patient stays deleted");
}

/// Random searches drawn from the search-parameter registry, run as each restricted caller:
/// every resource returned is one the oracle says the caller may see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_searches_return_only_what_the_oracle_allows() {
    let types = probed_types();
    let rig = Rig::start(&types).await;
    let callers = rig.callers();
    let seed = std::env::var("ISOLATION_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x1501_2026_u64);
    let mut rng = fastrand::Rng::with_seed(seed);
    let values = [VICTIM, "Patient/victim", ATTACKER, SHARED, "v-doc", "Practitioner/v-doc", SECRET, "final", "ge2000"];
    let results =
        ["", "&_include=*", "&_revinclude=*", "&_revinclude:iterate=*", "&_summary=count", "&_total=accurate"];
    let mut checked = 0;
    for _ in 0..400 {
        let p = &types[rng.usize(..types.len())];
        let params = search::registry().params(&p.resource_type).unwrap_or_default();
        let param = &params[rng.usize(..params.len())];
        let value = values[rng.usize(..values.len())];
        let mut name = param.name.clone();
        if param.kind == search::ParamKind::Reference && rng.bool() {
            name = format!("{name}:missing");
        }
        let value = if name.ends_with(":missing") { if rng.bool() { "true" } else { "false" } } else { value };
        let path = format!("{}?{name}={value}{}", p.resource_type, results[rng.usize(..results.len())]);
        let caller = &callers[rng.usize(..callers.len())];
        let answer = rig.send(&caller.token, reqwest::Method::GET, &path, None).await;
        assert!(!answer.status.is_server_error(), "seed {seed}: {path} as {}: {}", caller.name, answer.status);
        let mut found = Vec::new();
        resources(&answer.body, &mut found);
        for r in &found {
            assert!(
                !forbidden(caller, r),
                "seed {seed}: {path} as {} returned {}/{}",
                caller.name,
                r["resourceType"],
                r["id"]
            );
        }
        if answer.status.is_success() {
            checked += 1;
        }
    }
    assert!(checked > 100, "too few searches were answered ({checked}) to tell anything");
}
