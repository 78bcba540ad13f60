//! Search on PostgreSQL gives what the SQLite backend (the reference) gives: the same data is
//! loaded into both, and every query — each parameter kind, modifier and prefix, chains,
//! `_has`, `_include`/`_revinclude`, `_contained`, sorting, paging totals, full text — must
//! answer the same matches in the same order, the same totals and the same included
//! resources. Data: hand-made resources (the server's modifier tests) and Synthea bundles.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use test_support::scratch;

use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use store::Records;

/// What one search answers, by `Type/id`.
#[derive(Debug, PartialEq)]
struct Answer {
    matches: Vec<String>,
    included: Vec<String>,
    total: Option<u64>,
}

fn answer(records: &Records, query: &str) -> Result<Answer, String> {
    let (path, qs) = query.split_once('?').unwrap_or((query, ""));
    let resource_type = (!path.is_empty()).then_some(path);
    let pairs = search::query::parse_pairs(qs).map_err(|e| format!("{e:?}"))?;
    let parsed = search::SearchQuery::parse(resource_type, &pairs, false).map_err(|e| format!("{e:?}"))?;
    let count = parsed.count.unwrap_or(100);
    let page = records.search(&parsed, count).map_err(|e| format!("{e}"))?;
    let key = |v: &store::ResourceVersion| format!("{}/{}", v.resource_type, v.id);
    let mut included: Vec<String> = page.included.iter().map(key).collect();
    included.sort();
    Ok(Answer { matches: page.matches.iter().map(key).collect(), included, total: page.total })
}

/// Runs every query on both stores; panics listing every difference.
fn compare(sqlite: &Records, postgres: &Records, queries: &[String]) {
    let mut differences = Vec::new();
    let mut nonempty = 0;
    for query in queries {
        let (want, got) = (answer(sqlite, query), answer(postgres, query));
        if matches!(&want, Ok(a) if !a.matches.is_empty()) {
            nonempty += 1;
        }
        if want != got {
            differences.push(format!("{query}\n  sqlite:   {want:?}\n  postgres: {got:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} queries differ:\n{}",
        differences.len(),
        queries.len(),
        differences.join("\n")
    );
    assert!(nonempty * 2 > queries.len(), "most queries should match something ({nonempty} of {})", queries.len());
}

/// The two stores, each loaded with `resources` (with their ids, in the same order).
fn stores(resources: Vec<Value>) -> (tempfile::TempDir, Records, scratch::Database, Records) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Records::new(Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap()));
    sqlite.load(resources.clone()).unwrap();
    let database = scratch::Database::create();
    let postgres = Records::new(Arc::new(store_postgres::PostgresBackend::connect(&database.url).unwrap()));
    postgres.load(resources).unwrap();
    (dir, sqlite, database, postgres)
}

#[test]
fn modifiers_and_special_parameters_answer_as_on_sqlite() {
    let (_dir, sqlite, _database, postgres) = stores(hand_made());
    let queries: Vec<String> = HAND_MADE_QUERIES.iter().map(|q| q.to_string()).collect();
    compare(&sqlite, &postgres, &queries);
}

#[test]
fn synthea_searches_answer_as_on_sqlite() {
    let resources = synthea();
    let patient = resources.iter().find(|r| r["resourceType"] == "Patient" && r["identifier"].is_array()).unwrap();
    let practitioner = resources.iter().find(|r| r["resourceType"] == "Practitioner").unwrap();
    let identifier = &patient["identifier"][1];
    let words = [
        ("{p}", patient["id"].as_str().unwrap().to_string()),
        ("{pname}", patient["name"][0]["given"][0].as_str().unwrap().to_string()),
        ("{pfamily}", patient["name"][0]["family"].as_str().unwrap().to_string()),
        ("{pidsys}", identifier["system"].as_str().unwrap_or("").to_string()),
        ("{pidval}", identifier["value"].as_str().unwrap_or("").to_string()),
        ("{prname}", practitioner["name"][0]["family"].as_str().unwrap().to_string()),
    ];
    let queries: Vec<String> = SYNTHEA_QUERIES
        .iter()
        .map(|q| words.iter().fold(q.to_string(), |q, (from, to)| q.replace(from, &percent(to))))
        .collect();
    let (_dir, sqlite, _database, postgres) = stores(resources);
    compare(&sqlite, &postgres, &queries);
}

/// `text` percent-encoded for a query string.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~|".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const BUNDLES: &[&str] = &[
    "synthea-v3/practitionerInformation.json",
    "synthea-v3/hospitalInformation.json",
    "synthea-v3/Alvin56_Jerde200_53917de0-aa0c-0700-105a-4f7f893c62f6.json",
    "smart-2019/Gayla_Ferry_259bc6c6-9c1d-43e9-bd25-7539cf07f8ac.json",
    "smart-2019/Stanley_Balistreri_08ce8462-f56a-4fd6-b986-ea75c5c6edb2.json",
];

/// The Synthea sample as stored by the SQLite backend (transactions resolved, ids given):
/// loaded through Bundles into a scratch store, then read back.
fn synthea() -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::new(Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/synthea");
    for name in BUNDLES {
        let bundle: Value = serde_json::from_slice(&std::fs::read(root.join(name)).unwrap()).unwrap();
        records.process_bundle(bundle).unwrap();
    }
    let all = search::SearchQuery::parse(None, &[], false).unwrap();
    let keys = records.backend().search(&all, 1_000_000).unwrap();
    let stored = records.backend().fetch(&keys).unwrap();
    stored.into_iter().map(|(_, v)| serde_json::from_str(v.body.as_deref().unwrap()).unwrap()).collect()
}

const HAND_MADE_QUERIES: &[&str] = &[
    "Patient?name=muller",
    "Patient?name:exact=Müller",
    "Patient?name:exact=muller",
    "Patient?name:contains=LLERS",
    "Patient?given=zoe,ann",
    "Patient?given=zoe&given=max",
    "Observation?code=http://loinc.org|2093-3",
    "Observation?code=http://other|2093-3",
    "Observation?code=http://loinc.org|",
    "Observation?code:text=total",
    "Observation?code:text=cholest",
    "Observation?status:not=final",
    "Patient?gender:not=female",
    "Patient?active=true",
    "Patient?active:missing=true",
    "Patient?active:missing=false",
    "Condition?clinical-status:below=http://terminology.hl7.org/CodeSystem/condition-clinical|active",
    "Condition?clinical-status:below=http://terminology.hl7.org/CodeSystem/condition-clinical|inactive",
    "Condition?clinical-status:above=http://terminology.hl7.org/CodeSystem/condition-clinical|relapse",
    "Observation?status:below=http://hl7.org/fhir/observation-status|amended",
    "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|M1",
    "Patient?identifier:text=medical",
    "Patient?organization:identifier=http://org-ids|O-7",
    "Patient?general-practitioner=Practitioner/doc",
    "Patient?general-practitioner:Practitioner=doc",
    "Patient?general-practitioner.name=wilson",
    "Practitioner?_has:Patient:general-practitioner:gender=female",
    "Patient?_has:Observation:subject:status=amended",
    "Observation?encounter.service-provider.name=general",
    "Patient?birthdate=1980",
    "Patient?birthdate=1980-05",
    "Patient?birthdate=ge1980-05-12",
    "Patient?birthdate=gt1980-05-12",
    "Patient?birthdate=le1980-05-12",
    "Patient?birthdate=lt1980",
    "Patient?birthdate=ne1980-05-12",
    "Patient?birthdate=sa1990",
    "Patient?birthdate=eb1976",
    "Patient?birthdate=1975-06-01",
    "Observation?date=2019",
    "Observation?date=2019-06",
    "Observation?date=ap2021-07-14",
    "RiskAssessment?probability=0.8",
    "RiskAssessment?probability=gt0.5",
    "RiskAssessment?probability=le0.25",
    "RiskAssessment?probability=ne0.8",
    "Observation?value-quantity=gt200|http://unitsofmeasure.org|mg/dL",
    "Observation?value-quantity=lt2|http://unitsofmeasure.org|g/L",
    "Observation?value-quantity=ap245|http://unitsofmeasure.org|mg/dL",
    "Observation?value-quantity=170||cm",
    "Observation?value-quantity=1.7|http://unitsofmeasure.org|m",
    "Observation?code=2093-3&value-quantity=gt190",
    "Observation?code=2093-3&value-quantity=gt1.9|http://unitsofmeasure.org|g/L",
    "ValueSet?url=http://example.org/fhir/ValueSet/a/b",
    "ValueSet?url:below=http://example.org/fhir/ValueSet",
    "ValueSet?url:below=http://example.org/other",
    "ValueSet?url:above=http://example.org/fhir/ValueSet/a/b/c/d",
    "Patient?_id=zoe,ann&_sort=_id",
    "Patient?_sort=_id&_count=2",
    "Patient?_sort=-birthdate,_id",
    "Patient?_sort=family",
    "Patient?_list=l1",
    "Patient?_text=climber",
    "Patient?_text=zoe",
    "Patient?_content=mullerson",
    "Patient?_content=zoë",
    "Patient?_tag=http://t|vip",
    "?_tag=vip",
    "Patient?_profile=http://example.org/StructureDefinition/p",
    "Patient?_security=R",
    "Patient?_source=http://source/a",
    "?_type=Practitioner,Organization&_sort=_id",
    "Patient?_lastUpdated=gt2020-01-01",
    "Observation?_id=o1&_include=Observation:encounter&_include:iterate=Encounter:service-provider",
    "Patient?_id=zoe&_revinclude=Observation:subject&_revinclude=RiskAssessment:subject",
    "Medication?code=123",
    "Medication?code=123&_contained=true",
    "Medication?_contained=true",
    "Medication?code=999&_contained=true",
    "Medication?code=123,999&_contained=both",
    "MedicationRequest?patient=zoe&_include=MedicationRequest:medication",
    "Patient?_total=accurate&_count=1",
    "Patient?name:missing=true",
    "Observation?subject:missing=false&_sort=-date",
];

const SYNTHEA_QUERIES: &[&str] = &[
    "Patient?gender=female",
    "Patient?gender=male&_sort=birthdate",
    "Patient?birthdate=ge1990",
    "Patient?name={pname}",
    "Patient?family={pfamily}",
    "Patient?_id={p}",
    "Patient?identifier={pidsys}|{pidval}",
    "Observation?patient={p}&category=laboratory",
    "Observation?patient={p}&category=vital-signs&_sort=-date&_count=20",
    "Observation?patient={p}&code=http://loinc.org|8302-2",
    "Observation?code=http://loinc.org|8302-2&value-quantity=gt150",
    "Observation?code-value-quantity=http://loinc.org|8302-2$gt150",
    "Observation?component-code-value-quantity=http://loinc.org|8480-6$gt120",
    "Observation?_count=37&_sort=-date",
    "Observation?subject:Patient.name={pname}&_count=200",
    "Condition?patient={p}&clinical-status=active",
    "Encounter?patient={p}&_include=Encounter:service-provider",
    "Encounter?patient={p}&_include=Encounter:*&_count=500",
    "Encounter?date=ge2015-01-01&_sort=date",
    "MedicationRequest?patient={p}&_include=MedicationRequest:medication",
    "Patient?_has:Observation:patient:code=8302-2",
    "Patient?_revinclude=Observation:subject&_id={p}",
    "Practitioner?name={prname}",
    "Organization?name=hospital",
    "Patient?_content=diabetes",
    "Condition?_text=diabetes",
    "Observation?date=le2010&_sort=date,_id&_count=50",
    "Immunization?patient={p}&date=ge2015",
    "Observation?value-quantity=lt10&_sort=-value-quantity",
    "Procedure?patient={p}&_sort=-date",
    "Claim?patient={p}",
    "Observation?status=final&_total=accurate&_count=5",
    "AllergyIntolerance?patient={p}",
    "CarePlan?patient={p}&_include=CarePlan:*",
    "DiagnosticReport?patient={p}&_include=DiagnosticReport:result",
    "Encounter?participant:missing=true",
    "Patient?address-city:contains=a&_sort=address-city",
];

fn hand_made() -> Vec<Value> {
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
