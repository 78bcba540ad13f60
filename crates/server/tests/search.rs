//! Search over real HTTP against Synthea data: each test computes what should come back from
//! the source bundles themselves (with the server-assigned ids the transaction reported) and
//! checks that exactly that comes back.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use store::Records;
use tokio::sync::OnceCell;

/// A resource as the source bundle had it, with its server id and references resolved.
struct Loaded {
    resource_type: String,
    id: String,
    body: Value,
}

struct Fixture {
    base: String,
    resources: Vec<Loaded>,
    _dir: tempfile::TempDir,
}

const BUNDLES: &[&str] = &[
    "synthea-v3/practitionerInformation.json",
    "synthea-v3/hospitalInformation.json",
    "synthea-v3/Alvin56_Jerde200_53917de0-aa0c-0700-105a-4f7f893c62f6.json",
    "smart-2019/Gayla_Ferry_259bc6c6-9c1d-43e9-bd25-7539cf07f8ac.json",
    "smart-2019/Stanley_Balistreri_08ce8462-f56a-4fd6-b986-ea75c5c6edb2.json",
];

/// Replaces every `urn:uuid:` and conditional reference string with the stored `Type/id`.
fn resolve_refs(value: &mut Value, map: &HashMap<String, String>) {
    match value {
        Value::String(s) => {
            if let Some(to) = map.get(s.as_str()) {
                *s = to.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| resolve_refs(v, map)),
        Value::Object(fields) => fields.values_mut().for_each(|v| resolve_refs(v, map)),
        _ => {}
    }
}

async fn fixture() -> &'static Fixture {
    static FIXTURE: OnceCell<Fixture> = OnceCell::const_new();
    FIXTURE
        .get_or_init(|| async {
            let dir = tempfile::tempdir().unwrap();
            let records = Records::new(Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap()));
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/synthea");
            let mut map = HashMap::new();
            let mut raw = Vec::new();
            for name in BUNDLES {
                let bundle: Value = serde_json::from_slice(&std::fs::read(root.join(name)).unwrap()).unwrap();
                let response = records.process_bundle(bundle.clone()).unwrap();
                for (entry, answer) in
                    bundle["entry"].as_array().unwrap().iter().zip(response["entry"].as_array().unwrap())
                {
                    let location = answer["response"]["location"].as_str().unwrap();
                    let mut parts = location.split('/');
                    let (t, id) = (parts.next().unwrap().to_string(), parts.next().unwrap().to_string());
                    map.insert(entry["fullUrl"].as_str().unwrap().to_string(), format!("{t}/{id}"));
                    // Conditional references of the v3 bundles (`Practitioner?identifier=…`).
                    if let Some(ids) = entry["resource"]["identifier"].as_array() {
                        for ident in ids {
                            if let (Some(s), Some(v)) = (ident["system"].as_str(), ident["value"].as_str()) {
                                map.insert(format!("{t}?identifier={s}|{v}"), format!("{t}/{id}"));
                            }
                        }
                    }
                    raw.push((t, id, entry["resource"].clone()));
                }
            }
            let resources = raw
                .into_iter()
                .map(|(resource_type, id, mut body)| {
                    resolve_refs(&mut body, &map);
                    Loaded { resource_type, id, body }
                })
                .collect();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}/fhir", listener.local_addr().unwrap());
            let state = server::AppState::new(records, base.clone(), server::Limits::default());
            // The server runs on its own runtime so that it outlives each test's runtime.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
                rt.block_on(async {
                    let std_listener = listener.into_std().unwrap();
                    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                    server::serve(listener, state, std::future::pending()).await.unwrap();
                });
            });
            Fixture { base, resources, _dir: dir }
        })
        .await
}

impl Fixture {
    /// A client for the calling test's runtime (connections do not outlive it).
    fn client(&self) -> Client {
        Client::new()
    }

    /// Every page of a search: (match keys, include keys), following `next` links.
    async fn search(&self, query: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut url = format!("{}/{query}", self.base);
        let mut matches = BTreeSet::new();
        let mut included = BTreeSet::new();
        for _ in 0..100 {
            let response = self.client().get(&url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{query}");
            let bundle: Value = response.json().await.unwrap();
            assert_eq!(bundle["type"], "searchset");
            for entry in bundle["entry"].as_array().into_iter().flatten() {
                let key = format!(
                    "{}/{}",
                    entry["resource"]["resourceType"].as_str().unwrap(),
                    entry["resource"]["id"].as_str().unwrap_or("")
                );
                match entry["search"]["mode"].as_str() {
                    Some("match") => assert!(matches.insert(key), "{query}: a match repeats across pages"),
                    Some("include") => {
                        included.insert(key);
                    }
                    _ => {}
                }
            }
            match bundle["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") {
                Some(next) => url = next["url"].as_str().unwrap().to_string(),
                None => return (matches, included),
            }
        }
        panic!("{query}: more than 100 pages");
    }

    /// Keys of the loaded resources of `resource_type` for which `pick` holds.
    fn expect(&self, resource_type: &str, pick: impl Fn(&Value) -> bool) -> BTreeSet<String> {
        self.resources
            .iter()
            .filter(|r| r.resource_type == resource_type && pick(&r.body))
            .map(|r| format!("{}/{}", r.resource_type, r.id))
            .collect()
    }

    /// Keys of the loaded resources of any type for which `pick` holds.
    fn expect_any(&self, pick: impl Fn(&Value) -> bool) -> BTreeSet<String> {
        self.resources.iter().filter(|r| pick(&r.body)).map(|r| format!("{}/{}", r.resource_type, r.id)).collect()
    }

    fn patients(&self) -> Vec<&Loaded> {
        self.resources.iter().filter(|r| r.resource_type == "Patient").collect()
    }
}

fn refers(value: &Value, field: &str, target: &str) -> bool {
    value[field]["reference"].as_str() == Some(target)
}

fn has_code(concepts: &Value, code: &str) -> bool {
    let list: Vec<&Value> = match concepts {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    };
    list.iter().any(|c| c["coding"].as_array().into_iter().flatten().any(|coding| coding["code"] == code))
}

#[tokio::test]
async fn patients_by_id_identifier_name_birthdate_and_gender() {
    let f = fixture().await;
    assert_eq!(f.patients().len(), 3);
    for p in f.patients() {
        let key = format!("Patient/{}", p.id);
        assert_eq!(f.search(&format!("Patient?_id={}", p.id)).await.0, BTreeSet::from([key.clone()]));
        let ident = &p.body["identifier"][1];
        let (system, value) = (ident["system"].as_str().unwrap(), ident["value"].as_str().unwrap());
        let q = format!("Patient?identifier={}|{}", urlencode(system), urlencode(value));
        assert_eq!(f.search(&q).await.0, BTreeSet::from([key.clone()]), "{q}");
        let family = p.body["name"][0]["family"].as_str().unwrap();
        let birth = p.body["birthDate"].as_str().unwrap();
        let gender = p.body["gender"].as_str().unwrap();
        let family_matches = |b: &Value| {
            b["name"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["family"].as_str().unwrap().to_lowercase().starts_with(&family.to_lowercase()))
        };
        let by_family = f.expect("Patient", family_matches);
        assert!(by_family.contains(&key));
        // Case- and accent-insensitive, starts-with.
        assert_eq!(f.search(&format!("Patient?name={}", urlencode(&family.to_uppercase()))).await.0, by_family);
        assert_eq!(
            f.search(&format!("Patient?family={}&birthdate={birth}", urlencode(family))).await.0,
            BTreeSet::from([key.clone()])
        );
        assert_eq!(
            f.search(&format!("Patient?name={}&gender={gender}", urlencode(family))).await.0,
            f.expect("Patient", |b| b["gender"] == gender && family_matches(b))
        );
        let other = if gender == "male" { "female" } else { "male" };
        assert!(!f.search(&format!("Patient?_id={}&gender={other}", p.id)).await.0.contains(&key));
    }
}

fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test]
async fn observations_by_patient_category_code_and_date() {
    let f = fixture().await;
    for p in f.patients() {
        let pref = format!("Patient/{}", p.id);
        let mine = |b: &Value| refers(b, "subject", &pref);
        let labs = f.expect("Observation", |b| mine(b) && has_code(&b["category"], "laboratory"));
        assert!(!labs.is_empty());
        assert_eq!(f.search(&format!("Observation?patient={}&category=laboratory", p.id)).await.0, labs);
        assert_eq!(
            f.search(&format!(
                "Observation?patient={pref}&category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
            ))
            .await
            .0,
            labs
        );
        let code = "8302-2"; // body height
        assert_eq!(
            f.search(&format!("Observation?patient={}&code=http://loinc.org|{code}", p.id)).await.0,
            f.expect("Observation", |b| mine(b) && has_code(&b["code"], code))
        );
        // Dates: compare at day precision against the effective dateTime's date.
        let day = "2015-06-01";
        let effective = |b: &Value| b["effectiveDateTime"].as_str().map(|d| d[..10].to_string());
        for (prefix, keep) in [
            ("ge", Box::new(|d: &str| d >= day) as Box<dyn Fn(&str) -> bool>),
            ("gt", Box::new(|d: &str| d > day)),
            ("lt", Box::new(|d: &str| d < day)),
            ("le", Box::new(|d: &str| d <= day)),
        ] {
            let expected = f.expect("Observation", |b| {
                mine(b) && has_code(&b["category"], "vital-signs") && effective(b).is_some_and(|d| keep(&d))
            });
            let q = format!("Observation?patient={}&category=vital-signs&date={prefix}{day}", p.id);
            assert_eq!(f.search(&q).await.0, expected, "{q}");
        }
    }
}

#[tokio::test]
async fn clinical_resources_by_patient_with_provenance() {
    let f = fixture().await;
    let types = [
        ("Condition", "subject"),
        ("Encounter", "subject"),
        ("Procedure", "subject"),
        ("Immunization", "patient"),
        ("MedicationRequest", "subject"),
        ("DiagnosticReport", "subject"),
        ("DocumentReference", "subject"),
        ("CarePlan", "subject"),
        ("CareTeam", "subject"),
        ("Goal", "subject"),
        ("AllergyIntolerance", "patient"),
        ("Device", "patient"),
    ];
    let mut found_provenance = false;
    for p in f.patients() {
        let pref = format!("Patient/{}", p.id);
        for (t, field) in types {
            let expected = f.expect(t, |b| refers(b, field, &pref));
            let (matches, included) = f.search(&format!("{t}?patient={}&_revinclude=Provenance:target", p.id)).await;
            assert_eq!(matches, expected, "{t} of {pref}");
            let provenance = f.expect("Provenance", |b| {
                b["target"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| expected.contains(r["reference"].as_str().unwrap_or("")))
            });
            found_provenance |= !provenance.is_empty();
            assert_eq!(included, provenance, "Provenance of {t} of {pref}");
        }
        // Compartment search gives the same as the patient parameter.
        let conditions = f.expect("Condition", |b| refers(b, "subject", &pref));
        assert_eq!(f.search(&format!("Patient/{}/Condition", p.id)).await.0, conditions);
        let active = f.expect("Condition", |b| refers(b, "subject", &pref) && has_code(&b["clinicalStatus"], "active"));
        assert_eq!(f.search(&format!("Condition?patient={}&clinical-status=active", p.id)).await.0, active);
    }
    assert!(found_provenance, "the v3 bundle carries Provenance");
}

#[tokio::test]
async fn includes_chains_and_reverse_chains() {
    let f = fixture().await;
    let alvin = f.patients().into_iter().find(|p| p.body["name"][0]["given"][0] == "Alvin56").unwrap();
    let pref = format!("Patient/{}", alvin.id);
    // _include of the encounter's service provider.
    let encounters = f.expect("Encounter", |b| refers(b, "subject", &pref));
    let providers: BTreeSet<String> = f
        .resources
        .iter()
        .filter(|r| encounters.contains(&format!("Encounter/{}", r.id)))
        .filter_map(|r| r.body["serviceProvider"]["reference"].as_str().map(str::to_string))
        .collect();
    let (matches, included) =
        f.search(&format!("Encounter?patient={}&_include=Encounter:service-provider", alvin.id)).await;
    assert_eq!(matches, encounters);
    assert_eq!(included, providers);
    // Chain: observations whose subject's name starts with Alvin.
    let obs = f.expect("Observation", |b| refers(b, "subject", &pref));
    assert_eq!(f.search("Observation?subject:Patient.name=alvin&_count=200").await.0, obs);
    // Reverse chain: patients with a body-height observation.
    let with_height: BTreeSet<String> = f
        .resources
        .iter()
        .filter(|r| r.resource_type == "Observation" && has_code(&r.body["code"], "8302-2"))
        .filter_map(|r| r.body["subject"]["reference"].as_str().map(str::to_string))
        .collect();
    assert_eq!(f.search("Patient?_has:Observation:patient:code=8302-2").await.0, with_height);
    // MedicationRequest with _include of a Medication resource where there is one.
    let meds = f.expect("MedicationRequest", |b| refers(b, "subject", &pref));
    let med_refs: BTreeSet<String> = f
        .resources
        .iter()
        .filter(|r| meds.contains(&format!("MedicationRequest/{}", r.id)))
        .filter_map(|r| r.body["medicationReference"]["reference"].as_str().map(str::to_string))
        .collect();
    let (m, inc) =
        f.search(&format!("MedicationRequest?patient={}&_include=MedicationRequest:medication", alvin.id)).await;
    assert_eq!(m, meds);
    assert_eq!(inc, med_refs);
}

#[tokio::test]
async fn quantities_composites_and_text() {
    let f = fixture().await;
    let value = |b: &Value| b["valueQuantity"]["value"].as_f64();
    let chol = |b: &Value| has_code(&b["code"], "2093-3");
    let expected = f.expect("Observation", |b| chol(b) && value(b).is_some_and(|v| v > 190.0));
    assert!(!expected.is_empty());
    assert_eq!(f.search("Observation?code=2093-3&value-quantity=gt190").await.0, expected);
    assert_eq!(
        f.search("Observation?code=2093-3&value-quantity=gt190|http://unitsofmeasure.org|mg/dL").await.0,
        expected
    );
    // UCUM: 1.9 g/L is 190 mg/dL.
    assert_eq!(
        f.search("Observation?code=2093-3&value-quantity=gt1.9|http://unitsofmeasure.org|g/L").await.0,
        expected
    );
    let composite = urlencode("http://loinc.org|2093-3$gt190");
    assert_eq!(f.search(&format!("Observation?code-value-quantity={composite}")).await.0, expected);
    // Systolic blood pressure components above 130.
    let systolic = f.expect("Observation", |b| {
        b["component"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| has_code(&c["code"], "8480-6") && value(c).is_some_and(|v| v > 130.0))
    });
    assert_eq!(
        f.search(&format!("Observation?component-code-value-quantity={}", urlencode("8480-6$gt130"))).await.0,
        systolic
    );
    // _content over every string of the resource.
    let alvin = f.expect("Patient", |b| b["name"][0]["given"][0] == "Alvin56");
    assert_eq!(f.search("Patient?_content=alvin56").await.0, alvin);
}

#[tokio::test]
async fn paging_sorting_totals_and_errors() {
    let f = fixture().await;
    let all_obs = f.expect("Observation", |_| true);
    let (pages, _) = f.search("Observation?_count=37&_sort=-date").await;
    assert_eq!(pages, all_obs, "paging returns each match once");
    // _sort=-date gives non-increasing effective dates.
    let body: Value = f
        .client()
        .get(format!("{}/Observation?_sort=-date&_count=50", f.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dates: Vec<&str> =
        body["entry"].as_array().unwrap().iter().filter_map(|e| e["resource"]["effectiveDateTime"].as_str()).collect();
    assert!(dates.windows(2).all(|w| w[0][..10] >= w[1][..10]), "{dates:?}");
    assert_eq!(body["total"].as_u64(), Some(all_obs.len() as u64));
    let count: Value =
        f.client().get(format!("{}/Observation?_summary=count", f.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(count["total"].as_u64(), Some(all_obs.len() as u64));
    assert!(count.get("entry").is_none());
    // Unknown parameter: ignored and reported, or refused under handling=strict.
    let lenient: Value =
        f.client().get(format!("{}/Patient?nonsense=1", f.base)).send().await.unwrap().json().await.unwrap();
    let outcome = lenient["entry"].as_array().unwrap().iter().find(|e| e["search"]["mode"] == "outcome").unwrap();
    assert_eq!(outcome["resource"]["resourceType"], "OperationOutcome");
    let strict = f
        .client()
        .get(format!("{}/Patient?nonsense=1", f.base))
        .header("prefer", "handling=strict")
        .send()
        .await
        .unwrap();
    assert_eq!(strict.status(), StatusCode::BAD_REQUEST);
    for bad in [
        "Patient?birthdate=yesterday",
        "Patient?_count=-3",
        "Observation?subject.nope=x",
        "Patient?_sort=nope",
        "Nope?x=1",
    ] {
        let response = f.client().get(format!("{}/{bad}", f.base)).send().await.unwrap();
        assert!(response.status().is_client_error(), "{bad}: {}", response.status());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["resourceType"], "OperationOutcome", "{bad}");
    }
    // POST _search with a form body answers like GET.
    let posted: Value = f
        .client()
        .post(format!("{}/Patient/_search", f.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("gender=female")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(posted["total"].as_u64(), Some(f.expect("Patient", |b| b["gender"] == "female").len() as u64));
}

#[tokio::test]
async fn patient_everything() {
    let f = fixture().await;
    let alvin = f.patients().into_iter().find(|p| p.body["name"][0]["given"][0] == "Alvin56").unwrap();
    let pref = format!("Patient/{}", alvin.id);
    let mentions = |b: &Value| b.to_string().contains(&format!("\"{pref}\""));
    // Device is not in R4's Patient compartment (it has no linking parameter there).
    let direct =
        f.expect_any(|b| b["resourceType"] != "Device" && (refers(b, "subject", &pref) || refers(b, "patient", &pref)));
    let (matches, included) = f.search(&format!("Patient/{}/$everything?_count=500", alvin.id)).await;
    assert!(matches.contains(&pref));
    let missing: Vec<_> = direct.difference(&matches).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} direct resources, {} returned, missing e.g. {missing:?}",
        direct.len(),
        matches.len()
    );
    let mentioning = f.expect_any(mentions);
    assert!(matches.iter().all(|m| m == &pref || mentioning.contains(m)));
    assert!(matches.len() > 500, "{}", matches.len());
    // Practitioners and organizations the record points at come along as includes.
    assert!(included.iter().any(|k| k.starts_with("Practitioner/")));
    assert!(included.iter().any(|k| k.starts_with("Organization/")));
    // _type narrows.
    let (only, _) = f.search(&format!("Patient/{}/$everything?_type=Condition", alvin.id)).await;
    assert_eq!(only, f.expect("Condition", |b| refers(b, "subject", &pref)));
    // _since in the future: nothing.
    let (none, _) = f.search(&format!("Patient/{}/$everything?_since=2999-01-01T00:00:00Z", alvin.id)).await;
    assert!(none.is_empty());
    let missing = f.client().get(format!("{}/Patient/nobody/$everything", f.base)).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn organizations_and_practitioners() {
    let f = fixture().await;
    let orgs = f.expect("Organization", |_| true);
    assert!(orgs.len() > 5);
    for org in f.resources.iter().filter(|r| r.resource_type == "Organization").take(5) {
        let key = format!("Organization/{}", org.id);
        let name = org.body["name"].as_str().unwrap();
        let word = name.split_whitespace().next().unwrap();
        let expected = f.expect("Organization", |b| {
            b["name"].as_str().is_some_and(|n| starts_with_word(n, word))
                || b["alias"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a.as_str().is_some_and(|a| starts_with_word(a, word)))
        });
        assert!(expected.contains(&key));
        assert_eq!(f.search(&format!("Organization?name={}", urlencode(word))).await.0, expected, "{word}");
        if let Some(ident) = org.body["identifier"][0].as_object() {
            let q = format!(
                "Organization?identifier={}|{}",
                urlencode(ident["system"].as_str().unwrap()),
                urlencode(ident["value"].as_str().unwrap())
            );
            assert!(f.search(&q).await.0.contains(&key), "{q}");
        }
    }
    for doc in f.resources.iter().filter(|r| r.resource_type == "Practitioner").take(5) {
        let key = format!("Practitioner/{}", doc.id);
        let family = doc.body["name"][0]["family"].as_str().unwrap();
        let expected = f.expect("Practitioner", |b| {
            b["name"].as_array().into_iter().flatten().any(|n| {
                n["family"].as_str().is_some_and(|x| x.to_lowercase().starts_with(&family.to_lowercase()))
                    || n["given"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|g| g.as_str().is_some_and(|x| x.to_lowercase().starts_with(&family.to_lowercase())))
                    || n["prefix"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|g| g.as_str().is_some_and(|x| x.to_lowercase().starts_with(&family.to_lowercase())))
            })
        });
        assert!(expected.contains(&key));
        assert_eq!(f.search(&format!("Practitioner?name={}", urlencode(family))).await.0, expected);
        let ident = &doc.body["identifier"][0];
        let q = format!(
            "Practitioner?identifier={}|{}",
            urlencode(ident["system"].as_str().unwrap()),
            urlencode(ident["value"].as_str().unwrap())
        );
        assert_eq!(f.search(&q).await.0, BTreeSet::from([key.clone()]), "{q}");
        // Everything a practitioner's encounters point at, via `_include=*`.
        let (encounters, included) =
            f.search(&format!("Encounter?participant=Practitioner/{}&_include=Encounter:*&_count=500", doc.id)).await;
        if !encounters.is_empty() {
            assert!(included.contains(&key), "the participant itself is included");
        }
    }
}

/// Whether `text` starts with `word`, ignoring case (string search matches the start of the
/// value; `name` of Organization also covers `alias`).
fn starts_with_word(text: &str, word: &str) -> bool {
    text.to_lowercase().starts_with(&word.to_lowercase())
}
