//! Search semantics on small hand-made resources: every modifier, prefix and special
//! parameter of the issue, each checked for exactly the resources that should match.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use store::Records;

struct Server {
    base: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    async fn start(resources: Vec<Value>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap()));
        // Loaded as a whole (no reference checks), so resources may point at each other.
        records.load(resources).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/fhir", listener.local_addr().unwrap());
        let state = server::AppState::new(records, base.clone(), server::Limits::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Server { base, _dir: dir, _stop: stop }
    }

    async fn bundle(&self, query: &str) -> Value {
        let response = Client::new().get(format!("{}/{query}", self.base)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{query}");
        response.json().await.unwrap()
    }

    /// Ids of the matches.
    async fn ids(&self, query: &str) -> BTreeSet<String> {
        let bundle = self.bundle(query).await;
        bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["search"]["mode"] == "match")
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
            .collect()
    }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn patients() -> Vec<Value> {
    vec![
        json!({"resourceType": "Patient", "id": "zoe", "meta": {"tag": [{"system": "http://t", "code": "vip"}],
            "profile": ["http://example.org/StructureDefinition/p"], "security": [{"system": "http://s", "code": "R"}],
            "source": "http://source/a"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Zoë the <b>climber</b></div>"},
            "identifier": [{"system": "http://mrn", "value": "M1",
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}], "text": "Medical record"}}],
            "name": [{"family": "Müller", "given": ["Zoë"]}], "gender": "female", "birthDate": "1980-05-12",
            "active": true, "generalPractitioner": [{"reference": "Practitioner/doc"}],
            "managingOrganization": {"identifier": {"system": "http://org-ids", "value": "O-7"}}}),
        json!({"resourceType": "Patient", "id": "max", "name": [{"family": "Mullerson", "given": ["Max"]}],
            "gender": "male", "birthDate": "1975", "generalPractitioner": [{"reference": "Practitioner/other"}]}),
        json!({"resourceType": "Patient", "id": "ann", "name": [{"family": "Annan", "given": ["Ann"]}],
            "gender": "female", "birthDate": "2001-01-01"}),
        json!({"resourceType": "Practitioner", "id": "doc", "name": [{"family": "House"}]}),
        json!({"resourceType": "Practitioner", "id": "other", "name": [{"family": "Wilson"}]}),
        json!({"resourceType": "Organization", "id": "org", "name": "General Hospital"}),
        json!({"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/zoe"}, "serviceProvider": {"reference": "Organization/org"}}),
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3", "display": "Cholesterol"}], "text": "Total cholesterol"},
            "subject": {"reference": "Patient/zoe"}, "encounter": {"reference": "Encounter/e1"},
            "effectiveDateTime": "2020-03-01", "valueQuantity": {"value": 250, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}),
        json!({"resourceType": "Observation", "id": "o2", "status": "amended",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3"}]},
            "subject": {"reference": "Patient/max"}, "effectiveDateTime": "2021-07-15T08:30:00Z",
            "valueQuantity": {"value": 1.5, "unit": "g/L", "system": "http://unitsofmeasure.org", "code": "g/L"}}),
        json!({"resourceType": "Observation", "id": "o3", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
            "subject": {"reference": "Patient/ann"}, "effectivePeriod": {"start": "2019-01-01", "end": "2019-12-31"},
            "valueQuantity": {"value": 170, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}}),
        json!({"resourceType": "RiskAssessment", "id": "r1", "status": "final", "subject": {"reference": "Patient/zoe"},
            "prediction": [{"probabilityDecimal": 0.8}]}),
        json!({"resourceType": "RiskAssessment", "id": "r2", "status": "final", "subject": {"reference": "Patient/max"},
            "prediction": [{"probabilityDecimal": 0.25}]}),
        json!({"resourceType": "List", "id": "l1", "status": "current", "mode": "working",
            "entry": [{"item": {"reference": "Patient/zoe"}}, {"item": {"reference": "Patient/ann"}}]}),
        json!({"resourceType": "Condition", "id": "c-relapse", "subject": {"reference": "Patient/zoe"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "relapse"}]}}),
        json!({"resourceType": "Condition", "id": "c-resolved", "subject": {"reference": "Patient/zoe"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]}}),
        json!({"resourceType": "Condition", "id": "c-active", "subject": {"reference": "Patient/max"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}}),
        json!({"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/zoe"}, "medicationReference": {"reference": "#med"},
            "contained": [{"resourceType": "Medication", "id": "med",
                "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "123"}]}}]}),
        json!({"resourceType": "Medication", "id": "m1",
            "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "999"}]}}),
        json!({"resourceType": "ValueSet", "id": "vs1", "status": "active", "url": "http://example.org/fhir/ValueSet/a/b"}),
    ]
}

#[tokio::test]
async fn string_modifiers() {
    let s = Server::start(patients()).await;
    assert_eq!(s.ids("Patient?name=muller").await, set(&["zoe", "max"]));
    assert_eq!(s.ids("Patient?name:exact=Müller").await, set(&["zoe"]));
    assert_eq!(s.ids("Patient?name:exact=muller").await, set(&[]));
    assert_eq!(s.ids("Patient?name:contains=LLERS").await, set(&["max"]));
    assert_eq!(s.ids("Patient?given=zoe,ann").await, set(&["zoe", "ann"]));
    assert_eq!(s.ids("Patient?given=zoe&given=max").await, set(&[]));
}

#[tokio::test]
async fn token_modifiers() {
    let s = Server::start(patients()).await;
    assert_eq!(s.ids("Observation?code=http://loinc.org|2093-3").await, set(&["o1", "o2"]));
    assert_eq!(s.ids("Observation?code=http://other|2093-3").await, set(&[]));
    assert_eq!(s.ids("Observation?code=http://loinc.org|").await, set(&["o1", "o2", "o3"]));
    assert_eq!(s.ids("Observation?code:text=total").await, set(&["o1"]));
    assert_eq!(s.ids("Observation?code:text=cholest").await, set(&["o1"]));
    assert_eq!(s.ids("Observation?status:not=final").await, set(&["o2"]));
    assert_eq!(s.ids("Patient?gender:not=female").await, set(&["max"]));
    assert_eq!(s.ids("Patient?active=true").await, set(&["zoe"]));
    assert_eq!(s.ids("Patient?active:missing=true").await, set(&["max", "ann"]));
    assert_eq!(s.ids("Patient?active:missing=false").await, set(&["zoe"]));
    // Subsumption from the embedded CodeSystem hierarchy: relapse and recurrence are below active.
    let cs = "http://terminology.hl7.org/CodeSystem/condition-clinical";
    assert_eq!(s.ids(&format!("Condition?clinical-status:below={cs}|active")).await, set(&["c-relapse", "c-active"]));
    assert_eq!(s.ids(&format!("Condition?clinical-status:below={cs}|inactive")).await, set(&["c-resolved"]));
    assert_eq!(s.ids(&format!("Condition?clinical-status:above={cs}|relapse")).await, set(&["c-relapse", "c-active"]));
    assert_eq!(s.ids("Observation?status:below=http://hl7.org/fhir/observation-status|amended").await, set(&["o2"]));
    // A code system without an embedded hierarchy: reported, not guessed.
    let bundle = s.bundle("Observation?code:below=http://loinc.org|2093-3").await;
    assert!(bundle["entry"].as_array().unwrap().iter().any(|e| e["search"]["mode"] == "outcome"));
    let of_type = "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|M1";
    assert_eq!(s.ids(of_type).await, set(&["zoe"]));
    assert_eq!(s.ids("Patient?identifier:text=medical").await, set(&["zoe"]));
}

#[tokio::test]
async fn references_and_chains() {
    let s = Server::start(patients()).await;
    assert_eq!(s.ids("Patient?general-practitioner=Practitioner/doc").await, set(&["zoe"]));
    assert_eq!(s.ids("Patient?general-practitioner:Practitioner=doc").await, set(&["zoe"]));
    assert_eq!(s.ids("Patient?general-practitioner.name=wilson").await, set(&["max"]));
    assert_eq!(s.ids("Patient?organization:identifier=http://org-ids|O-7").await, set(&["zoe"]));
    // Two levels: observations whose encounter's service provider is called General…
    assert_eq!(s.ids("Observation?encounter.service-provider.name=general").await, set(&["o1"]));
    // Reverse chain, and reverse chain into a chain.
    assert_eq!(s.ids("Patient?_has:Observation:patient:code=8302-2").await, set(&["ann"]));
    assert_eq!(s.ids("Patient?_has:Observation:subject:status=amended").await, set(&["max"]));
    assert_eq!(s.ids("Practitioner?_has:Patient:general-practitioner:gender=female").await, set(&["doc"]));
    // _include / _revinclude / :iterate.
    let bundle =
        s.bundle("Observation?_id=o1&_include=Observation:encounter&_include:iterate=Encounter:service-provider").await;
    let included: BTreeSet<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| {
            format!("{}/{}", e["resource"]["resourceType"].as_str().unwrap(), e["resource"]["id"].as_str().unwrap())
        })
        .collect();
    assert_eq!(included, set(&["Encounter/e1", "Organization/org"]));
    let bundle = s.bundle("Patient?_id=zoe&_revinclude=Observation:subject&_revinclude=RiskAssessment:subject").await;
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn dates_numbers_and_quantities() {
    let s = Server::start(patients()).await;
    assert_eq!(s.ids("Patient?birthdate=1980").await, set(&["zoe"]));
    assert_eq!(s.ids("Patient?birthdate=1980-05").await, set(&["zoe"]));
    // 1975 (a whole year) is not within one day of 1975-06-01.
    assert_eq!(s.ids("Patient?birthdate=1975-06-01").await, set(&[]));
    assert_eq!(s.ids("Patient?birthdate=ne1980-05-12").await, set(&["max", "ann"]));
    assert_eq!(s.ids("Patient?birthdate=lt1980").await, set(&["max"]));
    assert_eq!(s.ids("Patient?birthdate=gt1980-05-12").await, set(&["ann"]));
    assert_eq!(s.ids("Patient?birthdate=ge1980-05-12").await, set(&["zoe", "ann"]));
    assert_eq!(s.ids("Patient?birthdate=le1980-05-12").await, set(&["zoe", "max"]));
    assert_eq!(s.ids("Patient?birthdate=sa1990").await, set(&["ann"]));
    assert_eq!(s.ids("Patient?birthdate=eb1976").await, set(&["max"]));
    // A period: within 2019 entirely.
    assert_eq!(s.ids("Observation?date=2019").await, set(&["o3"]));
    assert_eq!(s.ids("Observation?date=2019-06").await, set(&[]));
    assert_eq!(s.ids("Observation?date=ap2021-07-14").await, set(&["o2"]));
    // Numbers: 0.8 and 0.25.
    assert_eq!(s.ids("RiskAssessment?probability=gt0.5").await, set(&["r1"]));
    assert_eq!(s.ids("RiskAssessment?probability=0.8").await, set(&["r1"]));
    assert_eq!(s.ids("RiskAssessment?probability=le0.25").await, set(&["r2"]));
    assert_eq!(s.ids("RiskAssessment?probability=ne0.8").await, set(&["r2"]));
    // Quantities: 250 mg/dL = 2.5 g/L; 1.5 g/L = 150 mg/dL.
    assert_eq!(s.ids("Observation?value-quantity=gt200|http://unitsofmeasure.org|mg/dL").await, set(&["o1"]));
    assert_eq!(s.ids("Observation?value-quantity=lt2|http://unitsofmeasure.org|g/L").await, set(&["o2"]));
    assert_eq!(s.ids("Observation?value-quantity=170||cm").await, set(&["o3"]));
    assert_eq!(s.ids("Observation?value-quantity=1.7|http://unitsofmeasure.org|m").await, set(&["o3"]));
    assert_eq!(s.ids("Observation?value-quantity=ap245|http://unitsofmeasure.org|mg/dL").await, set(&["o1"]));
}

#[tokio::test]
async fn special_parameters_and_uris() {
    let s = Server::start(patients()).await;
    assert_eq!(s.ids("Patient?_tag=http://t|vip").await, set(&["zoe"]));
    assert_eq!(s.ids("Patient?_profile=http://example.org/StructureDefinition/p").await, set(&["zoe"]));
    assert_eq!(s.ids("Patient?_security=R").await, set(&["zoe"]));
    assert_eq!(s.ids("Patient?_source=http://source/a").await, set(&["zoe"]));
    assert_eq!(s.ids("Patient?_list=l1").await, set(&["zoe", "ann"]));
    assert_eq!(s.ids("Patient?_text=climber").await, set(&["zoe"]));
    assert_eq!(s.ids("Patient?_content=mullerson").await, set(&["max"]));
    assert_eq!(s.ids("Patient?_id=zoe,ann&_sort=_id").await, set(&["zoe", "ann"]));
    assert_eq!(s.ids("ValueSet?url=http://example.org/fhir/ValueSet/a/b").await, set(&["vs1"]));
    assert_eq!(s.ids("ValueSet?url:below=http://example.org/fhir/ValueSet").await, set(&["vs1"]));
    assert_eq!(s.ids("ValueSet?url:above=http://example.org/fhir/ValueSet/a/b/c/d").await, set(&["vs1"]));
    assert_eq!(s.ids("ValueSet?url:below=http://example.org/other").await, set(&[]));
    // _lastUpdated: everything was written just now.
    assert_eq!(s.ids("Patient?_lastUpdated=gt2020-01-01").await, set(&["zoe", "max", "ann"]));
    assert_eq!(s.ids("Patient?_lastUpdated=lt2020-01-01").await, set(&[]));
    // _contained: contained resources are searched on request, and their containers return.
    assert_eq!(s.ids("Medication?code=123").await, set(&[]));
    assert_eq!(s.ids("Medication?code=123&_contained=true").await, set(&["mr1"]));
    assert_eq!(s.ids("Medication?code=123,999&_contained=both").await, set(&["mr1", "m1"]));
    assert_eq!(s.ids("Medication?_contained=true").await, set(&["mr1"]));
    assert_eq!(s.ids("Medication?code=999&_contained=true").await, set(&[]));
    // System-level search across types.
    assert_eq!(s.ids("?_tag=vip").await, set(&["zoe"]));
    assert_eq!(s.ids("?_type=Practitioner,Organization&_sort=_id").await, set(&["doc", "other", "org"]));
}

#[tokio::test]
async fn sorting_paging_and_summaries() {
    let s = Server::start(patients()).await;
    let bundle = s.bundle("Patient?_sort=-birthdate,_id").await;
    let order: Vec<&str> =
        bundle["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert_eq!(order, ["ann", "zoe", "max"]);
    let bundle = s.bundle("Patient?_sort=family").await;
    let order: Vec<&str> =
        bundle["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert_eq!(order, ["ann", "zoe", "max"]);
    // Paging with _count=1 walks all three in order via next links, and back via previous.
    let mut url = format!("{}/Patient?_sort=_id&_count=1", s.base);
    let mut seen = Vec::new();
    let mut last = Value::Null;
    while !url.is_empty() {
        let page: Value = Client::new().get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(page["total"], 3);
        seen.push(page["entry"][0]["resource"]["id"].as_str().unwrap().to_string());
        url = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map_or(String::new(), |l| l["url"].as_str().unwrap().to_string());
        last = page;
    }
    assert_eq!(seen, ["ann", "max", "zoe"]);
    let previous = last["link"].as_array().unwrap().iter().find(|l| l["relation"] == "previous").unwrap();
    let page: Value = Client::new().get(previous["url"].as_str().unwrap()).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["entry"][0]["resource"]["id"], "max");
    // _summary=true keeps summary elements and marks the resource SUBSETTED.
    let bundle = s.bundle("Patient?_id=zoe&_summary=true").await;
    let zoe = &bundle["entry"][0]["resource"];
    assert!(zoe.get("text").is_none());
    assert_eq!(zoe["birthDate"], "1980-05-12");
    assert!(zoe["meta"]["tag"].as_array().unwrap().iter().any(|t| t["code"] == "SUBSETTED"));
    let bundle = s.bundle("Patient?_id=zoe&_elements=gender").await;
    let zoe = &bundle["entry"][0]["resource"];
    assert_eq!(zoe["gender"], "female");
    assert!(zoe.get("name").is_none() && zoe.get("birthDate").is_none());
    let bundle = s.bundle("Patient?_total=none").await;
    assert!(bundle.get("total").is_none());
}

#[tokio::test]
async fn paging_stays_stable_while_others_write() {
    let s = Server::start(patients()).await;
    let first: Value = s.bundle("Patient?_sort=_id&_count=2").await;
    let ids: Vec<String> =
        first["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["ann", "max"]);
    // A new patient that sorts first arrives between pages.
    let created = Client::new()
        .put(format!("{}/Patient/aaa", s.base))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "id": "aaa"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let next = first["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap();
    let second: Value = Client::new().get(next["url"].as_str().unwrap()).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> =
        second["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["zoe"], "no duplicate and no skip");
}
