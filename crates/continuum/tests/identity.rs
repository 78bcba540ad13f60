//! Patient identity as a user meets it over HTTP: `Patient/$match` ranking a hospital's "Jon
//! Smith" against a clinic's "Jonathan Smith" with the day and month swapped; the master
//! patient index linking a certain duplicate on its own (one person id, `Patient.link`
//! searchable with `Patient?link=`); a probable one put on the review work list and decided
//! "not a match" (never proposed again), another merged from the work list; bad `$match`
//! requests answered 400 with an OperationOutcome.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use test_support::process::start;

fn jon(given: &str, birth: &str, ssn: Option<&str>, street: &str) -> Value {
    let mut patient = json!({
        "resourceType": "Patient",
        "name": [{"family": "Smith", "given": [given]}],
        "gender": "male",
        "birthDate": birth,
        "address": [{"line": [street], "city": "Boston", "state": "MA", "postalCode": "02134"}],
        "telecom": [{"system": "phone", "value": "555-201-3344"}]
    });
    if let Some(ssn) = ssn {
        patient["identifier"] = json!([{"system": "http://hl7.org/fhir/sid/us-ssn", "value": ssn}]);
    }
    patient
}

fn parameters(resource: Value) -> Value {
    json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": resource}]})
}

/// Polls `check` for up to 10 s (the index works right behind the write).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("not within 10 s: {what}");
}

#[test]
fn match_link_and_review_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &["--rate-limit", "0"]);
    let base = server.base.as_str();
    let client = reqwest::blocking::Client::new();
    let post = |path: &str, body: &Value| client.post(format!("{base}/{path}")).json(body).send().unwrap();
    let get = |path: &str| -> Value { client.get(format!("{base}/{path}")).send().unwrap().json().unwrap() };

    let created = post("Patient", &jon("Jon", "1961-03-04", Some("999-12-3456"), "12 Elm Street"));
    assert_eq!(created.status(), 201);
    let hospital: Value = created.json().unwrap();
    let hospital_id = hospital["id"].as_str().unwrap().to_string();
    // Someone else entirely.
    post(
        "Patient",
        &json!({"resourceType": "Patient", "name": [{"family": "Brown", "given": ["Mary"]}], "gender": "female", "birthDate": "1990-11-21"}),
    );

    // `phonetic` finds names that sound alike (Double Metaphone), and only those.
    let sounding = get("Patient?phonetic=Smyth");
    assert_eq!(sounding["entry"].as_array().map_or(0, Vec::len), 1, "{sounding}");
    assert_eq!(sounding["entry"][0]["resource"]["id"], hospital_id.as_str());

    // $match: the clinic's record, spelled out and with day and month swapped.
    let answer = post("Patient/$match", &parameters(jon("Jonathan", "1961-04-03", None, "12 Elm St.")));
    assert_eq!(answer.status(), 200);
    let bundle: Value = answer.json().unwrap();
    assert_eq!(bundle["type"], "searchset");
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "only Jon Smith matches: {bundle}");
    assert_eq!(entries[0]["resource"]["id"], hospital_id.as_str());
    assert_eq!(entries[0]["search"]["mode"], "match");
    let score = entries[0]["search"]["score"].as_f64().unwrap();
    assert!(score > 0.5 && score <= 1.0, "{score}");
    let grade = &entries[0]["search"]["extension"][0];
    assert_eq!(grade["url"], "http://hl7.org/fhir/StructureDefinition/match-grade");
    assert!(grade["valueCode"] == "probable" || grade["valueCode"] == "certain", "{grade}");
    // onlyCertainMatches leaves a probable match out; count caps the answer.
    let mut only_certain = parameters(jon("Jonathan", "1961-04-03", None, "12 Elm St."));
    only_certain["parameter"].as_array_mut().unwrap().push(json!({"name": "onlyCertainMatches", "valueBoolean": true}));
    let certain: Value = post("Patient/$match", &only_certain).json().unwrap();
    let certain_count = certain["entry"].as_array().map_or(0, Vec::len);
    assert!(certain_count <= 1);
    if grade["valueCode"] == "probable" {
        assert_eq!(certain_count, 0, "{certain}");
    }

    // A certain duplicate (same SSN and birth date) is linked by the index on its own.
    let duplicate: Value = post("Patient", &jon("Jon", "1961-03-04", Some("999123456"), "12 Elm St")).json().unwrap();
    let duplicate_id = duplicate["id"].as_str().unwrap().to_string();
    eventually("the duplicate is linked to the hospital's record", || {
        let linked = get(&format!("Patient?link=Patient/{hospital_id}"));
        linked["entry"].as_array().is_some_and(|e| e.iter().any(|e| e["resource"]["id"] == duplicate_id.as_str()))
    });
    let person = |id: &str| -> String {
        let patient = get(&format!("Patient/{id}"));
        patient["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["system"].as_str().unwrap().ends_with("/person-id"))
            .map(|i| i["value"].as_str().unwrap().to_string())
            .expect("a person id")
    };
    assert_eq!(person(&hospital_id), person(&duplicate_id), "linked records share one person id");
    // $everything of either record shows the whole person: a result filed under the other.
    let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "HbA1c"},
        "subject": {"reference": format!("Patient/{duplicate_id}")}, "valueQuantity": {"value": 6.1, "unit": "%"}});
    let observation: Value = post("Observation", &observation).json().unwrap();
    let everything = get(&format!("Patient/{hospital_id}/$everything"));
    let urls: Vec<&str> =
        everything["entry"].as_array().unwrap().iter().filter_map(|e| e["fullUrl"].as_str()).collect();
    assert!(
        urls.iter().any(|u| u.ends_with(&format!("Observation/{}", observation["id"].as_str().unwrap()))),
        "{urls:?}"
    );
    assert!(urls.iter().any(|u| u.ends_with(&format!("Patient/{duplicate_id}"))), "{urls:?}");

    // A probable duplicate (a typo in the given name, no SSN, another street and phone) goes to
    // review.
    let moved = |given: &str, street: &str| {
        let mut patient = jon(given, "1961-03-04", None, street);
        patient["telecom"][0]["value"] = json!("555-777-0101");
        patient
    };
    let probable: Value = post("Patient", &moved("Jonn", "40 Oak Avenue")).json().unwrap();
    let probable_id = probable["id"].as_str().unwrap().to_string();
    let mut pair_id = String::new();
    eventually("the probable pair is on the work list", || {
        let list = get("Patient/$match-review?status=open");
        let found = list["parameter"].as_array().into_iter().flatten().find(|p| {
            p["part"]
                .as_array()
                .unwrap()
                .iter()
                .any(|part| part["valueReference"]["reference"] == format!("Patient/{probable_id}").as_str())
        });
        if let Some(pair) = found {
            pair_id = pair["part"][0]["valueString"].as_str().unwrap().to_string();
        }
        !pair_id.is_empty()
    });
    let decided = post(
        "Patient/$match-review",
        &json!({"resourceType": "Parameters", "parameter": [{"name": "pair", "valueString": pair_id}, {"name": "decision", "valueCode": "not-a-match"}]}),
    );
    assert_eq!(decided.status(), 200);
    let open = get("Patient/$match-review?status=open");
    assert!(!open.to_string().contains(&pair_id), "a decided pair leaves the open list");
    let remembered = get("Patient/$match-review?status=not-a-match");
    assert!(remembered.to_string().contains(&pair_id));

    // Another probable duplicate, merged from the work list into the record it pairs with.
    let extra: Value = post("Patient", &moved("Jonh", "7 Pine Road")).json().unwrap();
    let extra_id = extra["id"].as_str().unwrap().to_string();
    let mut merge_pair: Option<(String, String)> = None;
    eventually("the second probable pair is on the work list", || {
        let list = get("Patient/$match-review?status=open");
        for pair in list["parameter"].as_array().into_iter().flatten() {
            let parts = pair["part"].as_array().unwrap();
            let ids: Vec<String> = parts
                .iter()
                .filter_map(|p| p["valueReference"]["reference"].as_str())
                .map(|r| r.trim_start_matches("Patient/").to_string())
                .collect();
            if ids.contains(&extra_id) {
                let survivor = ids.iter().find(|i| **i != extra_id).unwrap().clone();
                merge_pair = Some((parts[0]["valueString"].as_str().unwrap().to_string(), survivor));
                return true;
            }
        }
        false
    });
    let (pair, survivor) = merge_pair.unwrap();
    let merged = post(
        "Patient/$match-review",
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "pair", "valueString": pair},
            {"name": "decision", "valueCode": "merge"},
            {"name": "target-patient", "valueReference": {"reference": format!("Patient/{survivor}")}}
        ]}),
    );
    assert_eq!(merged.status(), 200);
    let gone = get(&format!("Patient/{extra_id}"));
    assert_eq!(gone["active"], false, "{gone}");
    assert!(
        gone["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["type"] == "replaced-by" && l["other"]["reference"] == format!("Patient/{survivor}").as_str())
    );

    // Bad $match requests: 400 with an OperationOutcome.
    for body in [
        json!({"resourceType": "Parameters", "parameter": []}),
        parameters(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}})),
        json!({"resourceType": "Patient"}),
        json!([1, 2]),
    ] {
        let answer = post("Patient/$match", &body);
        assert_eq!(answer.status(), 400, "{body}");
        let outcome: Value = answer.json().unwrap();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
    }
    let garbage = client
        .post(format!("{base}/Patient/$match"))
        .header("content-type", "application/fhir+json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(garbage.status(), 400);
    let bad_decision = post(
        "Patient/$match-review",
        &json!({"resourceType": "Parameters", "parameter": [{"name": "pair", "valueString": "x~y"}, {"name": "decision", "valueCode": "link"}]}),
    );
    assert_eq!(bad_decision.status(), 404);
}

fn user(data: &std::path::Path, name: &str, role: &str, org: &str) -> String {
    use test_support::process::continuum;
    continuum(
        data,
        &["user", "add", name, "--role", role, "--org", org, "--password-stdin"],
        Some("a long enough password\n"),
    );
    let minted = continuum(data, &["token", "--user", name, "--scope", "user/*.rs"], None);
    String::from_utf8(minted.stdout).unwrap().trim().to_string()
}

#[test]
fn match_answers_within_the_callers_reach() {
    use test_support::process::{continuum, start_secured};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Jon Smith registered at two organizations (the index links them; reach stays by
    // organization), and someone else at the first.
    let mut at_one = jon("Jon", "1961-03-04", Some("999-12-3456"), "12 Elm Street");
    at_one["managingOrganization"] = json!({"reference": "Organization/org-1"});
    let mut at_two = jon("Jonathan", "1961-03-04", Some("999-12-3456"), "12 Elm Street");
    at_two["managingOrganization"] = json!({"reference": "Organization/org-2"});
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Organization", "id": "org-1", "name": "Clinic"}, "request": {"method": "PUT", "url": "Organization/org-1"}},
        {"resource": {"resourceType": "Organization", "id": "org-2", "name": "Hospital"}, "request": {"method": "PUT", "url": "Organization/org-2"}},
        {"resource": at_one, "request": {"method": "POST", "url": "Patient"}},
        {"resource": at_two, "request": {"method": "POST", "url": "Patient"}}
    ]});
    let file = dir.path().join("patients.json");
    std::fs::write(&file, bundle.to_string()).unwrap();
    continuum(&data, &["import", file.to_str().unwrap()], None);
    let doc = user(&data, "doc", "physician", "org-1");
    let desk = user(&data, "desk", "front-desk", "org-1");
    let server = start_secured(&data, &["--rate-limit", "0", "--match-reveals-outside-reach"]);
    let base = server.base.as_str();
    let ask = |token: &str| -> Value {
        let answer = reqwest::blocking::Client::new()
            .post(format!("{base}/Patient/$match"))
            .bearer_auth(token)
            .json(&parameters(jon("Jon", "1961-03-04", None, "12 Elm St")))
            .send()
            .unwrap();
        assert_eq!(answer.status(), 200);
        answer.json().unwrap()
    };
    let organization =
        |entry: &Value| entry["resource"]["managingOrganization"]["reference"].as_str().map(str::to_string);

    // The physician of org-1 finds the record of org-1 only, and learns nothing of the other.
    let seen = ask(&doc);
    let entries = seen["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{seen}");
    assert_eq!(organization(&entries[0]).as_deref(), Some("Organization/org-1"));
    assert!(!seen.to_string().contains("org-2") && !seen.to_string().contains("outside your reach"));

    // Registration staff of org-1 see the same record, and the bare fact of one more.
    let seen = ask(&desk);
    let entries = seen["entry"].as_array().unwrap();
    let matches: Vec<&Value> = entries.iter().filter(|e| e["search"]["mode"] == "match").collect();
    assert_eq!(matches.len(), 1, "{seen}");
    assert_eq!(organization(matches[0]).as_deref(), Some("Organization/org-1"));
    let outcome = entries.iter().find(|e| e["search"]["mode"] == "outcome").expect("an outcome entry");
    assert!(outcome["resource"]["issue"][0]["diagnostics"].as_str().unwrap().starts_with("1 more record"), "{outcome}");
    assert!(
        !seen.to_string().contains("org-2") && !seen.to_string().contains("Jonathan"),
        "nothing of the other record"
    );

    // Nobody without a token.
    let anonymous = reqwest::blocking::Client::new()
        .post(format!("{base}/Patient/$match"))
        .json(&parameters(jon("Jon", "1961-03-04", None, "12 Elm St")))
        .send()
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // The work list is for registration staff and administrators only.
    let list = |token: &str| {
        reqwest::blocking::Client::new()
            .get(format!("{base}/Patient/$match-review"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(list(&doc), 403);
    assert_eq!(list(&desk), 200);
}
