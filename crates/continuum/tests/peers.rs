//! Two Continuum nodes sharing a record, each a SMART backend-services client of the other
//! (`continuum peer keygen`, `client add --jwks`, `peer add`): from node B, `$locate` finds
//! the patient node A holds; `$pull` copies A's record of the patient (counts per type equal
//! A's `$everything`), every copy with `meta.source` and a Provenance naming A; a second pull
//! adds nothing; a change at A arrives with the next pull as a new version; a category the
//! patient's Consent at A withholds from B's organization (the one B's client acts for:
//! `client add --organization`) never
//! leaves A; `$push` files a referral packet (the patient's problems, a ServiceRequest and a
//! Task for A's organization) under A's patient. And what must be
//! refused: a peer URL that is not http(s), a peer answering garbage, redirecting or never
//! answering, a patient the peer holds no certain match for.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use test_support::process::{binary, continuum, start_secured};

const PASSWORD: &str = "correct horse battery staple 42";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// Runs `continuum ARGS` (no `--data` added).
fn run(args: &[&str]) -> Output {
    let output = Command::new(binary()).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// Runs `continuum ARGS --data DATA` and answers whether it succeeded, and its stderr.
fn attempt(data: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(binary()).args(args).arg("--data").arg(data).stdin(Stdio::null()).output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).to_string())
}

fn token(data: &Path, user: &str) -> String {
    let minted = continuum(data, &["token", "--user", user, "--scope", "user/*.cruds"], None);
    String::from_utf8(minted.stdout).unwrap().trim().to_string()
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec(value).unwrap()).unwrap();
}

/// Every resource of a `continuum export` of `data`, by type.
fn exported(data: &Path, out: &Path) -> BTreeMap<String, Vec<Value>> {
    let _ = std::fs::remove_dir_all(out);
    continuum(data, &["export", out.to_str().unwrap()], None);
    let mut all: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ndjson") {
            for line in std::fs::read_to_string(&path).unwrap().lines().filter(|l| !l.trim().is_empty()) {
                let resource: Value = serde_json::from_str(line).unwrap();
                all.entry(resource["resourceType"].as_str().unwrap().to_string()).or_default().push(resource);
            }
        }
    }
    all
}

fn parameter<'a>(parameters: &'a Value, name: &str) -> Vec<&'a Value> {
    parameters["parameter"].as_array().unwrap().iter().filter(|p| p["name"] == name).collect()
}

fn received(report: &Value) -> BTreeMap<String, u64> {
    parameter(report, "received")
        .into_iter()
        .map(|p| {
            (p["part"][0]["valueCode"].as_str().unwrap().to_string(), p["part"][1]["valueInteger"].as_u64().unwrap())
        })
        .collect()
}

fn count(report: &Value, name: &str) -> u64 {
    parameter(report, name)[0]["valueInteger"].as_u64().unwrap()
}

#[test]
fn two_nodes_locate_and_pull_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (keys_a, keys_b) = (dir.path().join("keys-a"), dir.path().join("keys-b"));
    run(&["peer", "keygen", keys_a.to_str().unwrap()]);
    run(&["peer", "keygen", keys_b.to_str().unwrap()]);
    // Each node registers the other as a backend service, with the other's public key (A's
    // registration of node B once A holds B's Organization, below).
    let jwks_a = keys_a.join("jwks.json");
    continuum(
        &b,
        &[
            "client",
            "add",
            "--id",
            "node-a",
            "--name",
            "Node A",
            "--scope",
            "system/*.crs",
            "--jwks",
            jwks_a.to_str().unwrap(),
        ],
        None,
    );

    // Node A: a Synthea patient, managed by organization org-a.
    let text = std::fs::read_to_string(
        "../../testdata/synthea/smart-2019/Stanley_Balistreri_08ce8462-f56a-4fd6-b986-ea75c5c6edb2.json",
    )
    .unwrap();
    let mut bundle: Value = serde_json::from_str(&text).unwrap();
    let organization_url = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Organization")
        .map(|e| e["fullUrl"].as_str().unwrap().to_string())
        .unwrap();
    let text = serde_json::to_string(&bundle).unwrap().replace(&organization_url, "Organization/org-a");
    bundle = serde_json::from_str(&text).unwrap();
    let mut demographics = Value::Null;
    let mut patient_url = String::new();
    let mut labelled = false;
    for entry in bundle["entry"].as_array_mut().unwrap() {
        match entry["resource"]["resourceType"].as_str().unwrap() {
            // One result is behavioral health: the patient withholds that from node B.
            "Observation" if !labelled => {
                entry["resource"]["meta"] = json!({"security": [{"system": ACT_CODE, "code": "PSY"}]});
                labelled = true;
            }
            "Organization" => {
                entry["resource"]["id"] = json!("org-a");
                entry["request"] = json!({"method": "PUT", "url": "Organization/org-a"});
                entry.as_object_mut().unwrap().remove("fullUrl");
            }
            "Patient" => {
                entry["resource"]["managingOrganization"] = json!({"reference": "Organization/org-a"});
                demographics = entry["resource"].clone();
                patient_url = entry["fullUrl"].as_str().unwrap().to_string();
            }
            _ => {}
        }
    }
    // Node B's organization, as node A knows it: its client `node-b` acts for it; and the
    // patient's Consent withholding behavioral health from it.
    let entries = bundle["entry"].as_array_mut().unwrap();
    entries.push(json!({
        "resource": {"resourceType": "Organization", "id": "org-b", "name": "Node B clinic"},
        "request": {"method": "PUT", "url": "Organization/org-b"}
    }));
    entries.push(json!({
        "fullUrl": "urn:uuid:5d2b1a8e-0c1e-4d4e-9a57-6f0a0c1b2d3e",
        "resource": {
            "resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": patient_url},
            "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
            "provision": {"type": "deny", "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                "reference": {"reference": "Organization/org-b"}
            }], "securityLabel": [{"system": ACT_CODE, "code": "PSY"}]}
        },
        "request": {"method": "POST", "url": "Consent"}
    }));
    let file_a = dir.path().join("a.json");
    write_json(&file_a, &bundle);
    continuum(&a, &["import", file_a.to_str().unwrap()], None);
    let jwks_b = keys_b.join("jwks.json");
    let added = continuum(
        &a,
        &[
            "client",
            "add",
            "--id",
            "node-b",
            "--name",
            "Node B",
            "--scope",
            "system/*.crs",
            "--jwks",
            jwks_b.to_str().unwrap(),
            "--organization",
            "org-b",
        ],
        None,
    );
    assert!(String::from_utf8(added.stdout).unwrap().contains("acts for: Organization/org-b"));
    continuum(
        &a,
        &[
            "user",
            "add",
            "doc-a",
            "--role",
            "physician",
            "--role",
            "behavioral-health-clinician",
            "--org",
            "org-a",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );

    // Node B: its own record of the same person (name, birth date, SSN, address), org-b's.
    let ssn: Vec<Value> = demographics["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["system"] == "http://hl7.org/fhir/sid/us-ssn")
        .cloned()
        .collect();
    assert_eq!(ssn.len(), 1, "the Synthea patient has an SSN");
    let local = json!({
        "resourceType": "Patient",
        "id": "local-1",
        "identifier": ssn,
        "name": demographics["name"],
        "gender": demographics["gender"],
        "birthDate": demographics["birthDate"],
        "address": demographics["address"],
        "managingOrganization": {"reference": "Organization/org-b"}
    });
    let file_b = dir.path().join("b.json");
    write_json(
        &file_b,
        &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Organization", "id": "org-b", "name": "Node B clinic"},
             "request": {"method": "PUT", "url": "Organization/org-b"}},
            {"resource": local, "request": {"method": "PUT", "url": "Patient/local-1"}},
            {"resource": {"resourceType": "Condition", "id": "cond-b1",
                          "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                          "code": {"text": "Hypertension"}, "subject": {"reference": "Patient/local-1"}},
             "request": {"method": "PUT", "url": "Condition/cond-b1"}}
        ]}),
    );
    continuum(&b, &["import", file_b.to_str().unwrap()], None);
    continuum(
        &b,
        &["user", "add", "doc-b", "--role", "physician", "--org", "org-b", "--password-stdin"],
        Some(PASSWORD),
    );

    let node_a = start_secured(&a, &["--rate-limit", "0", "--no-patient-index"]);
    let node_b = start_secured(&b, &["--rate-limit", "0", "--no-patient-index"]);
    let key_a = keys_a.join("key.pem");
    let key_b = keys_b.join("key.pem");
    continuum(
        &a,
        &["peer", "add", "node-b", "--url", &node_b.base, "--client-id", "node-a", "--key", key_a.to_str().unwrap()],
        None,
    );
    continuum(
        &b,
        &[
            "peer",
            "add",
            "node-a",
            "--url",
            &node_a.base,
            "--client-id",
            "node-b",
            "--key",
            key_b.to_str().unwrap(),
            "--organization",
            "Organization/org-a",
            "--scope",
            "system/*.crs",
        ],
        None,
    );
    let listed = String::from_utf8(continuum(&b, &["peer", "list"], None).stdout).unwrap();
    assert!(listed.contains("node-a") && listed.contains(&node_a.base), "{listed}");
    assert!(!listed.contains("PRIVATE"), "the key is never listed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(b.join("peers").join("node-a.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the kept key is its owner's only");
    }

    let http = reqwest::blocking::Client::new();
    let (token_a, token_b) = (token(&a, "doc-a"), token(&b, "doc-b"));

    // A's record of the patient, as A's own physician sees it.
    let mut everything_a: Vec<Value> = Vec::new();
    let found: Value = http
        .get(format!(
            "{}/Patient?identifier=http://hl7.org/fhir/sid/us-ssn|{}",
            node_a.base,
            ssn[0]["value"].as_str().unwrap()
        ))
        .bearer_auth(&token_a)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id_a = found["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    let mut url = format!("{}/Patient/{id_a}/$everything", node_a.base);
    loop {
        let page: Value = http.get(&url).bearer_auth(&token_a).send().unwrap().json().unwrap();
        everything_a.extend(page["entry"].as_array().into_iter().flatten().map(|e| e["resource"].clone()));
        match page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") {
            Some(next) => url = next["url"].as_str().unwrap().to_string(),
            None => break,
        }
    }
    let mut counts_a: BTreeMap<String, u64> = BTreeMap::new();
    for resource in &everything_a {
        *counts_a.entry(resource["resourceType"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert!(counts_a["Observation"] > 10, "{counts_a:?}");
    // What node B may receive: all but the withheld behavioral-health result.
    let withheld: Vec<&Value> = everything_a.iter().filter(|r| r["meta"]["security"][0]["code"] == "PSY").collect();
    assert_eq!(withheld.len(), 1, "A's own clinician sees the labelled result: {counts_a:?}");
    *counts_a.get_mut("Observation").unwrap() -= 1;

    let metadata: Value = http.get(format!("{}/metadata", node_b.base)).send().unwrap().json().unwrap();
    let patient_ops = metadata["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()["operation"]
        .to_string();
    assert!(patient_ops.contains("\"pull\"") && patient_ops.contains("\"locate\""), "{patient_ops}");

    // $locate at B: node A holds the patient, a certain match.
    let located = http.get(format!("{}/Patient/local-1/$locate", node_b.base)).bearer_auth(&token_b).send().unwrap();
    assert_eq!(located.status(), 200);
    let located: Value = located.json().unwrap();
    let peers = parameter(&located, "peer");
    assert_eq!(peers.len(), 1, "{located}");
    let parts = peers[0]["part"].as_array().unwrap();
    assert_eq!(parts[0]["valueString"], "node-a");
    let best = parts.iter().find(|p| p["name"] == "match").unwrap_or_else(|| panic!("a match: {located}"));
    assert_eq!(best["part"][0]["valueReference"]["reference"], format!("{}/Patient/{id_a}", node_a.base));
    assert_eq!(best["part"][2]["valueCode"], "certain");

    // A physician of another organization at B reaches nothing of local-1 through the peer
    // operations: not found, and nothing written (the first pull below still creates all).
    continuum(
        &b,
        &["user", "add", "outsider-b", "--role", "physician", "--org", "org-elsewhere", "--password-stdin"],
        Some(PASSWORD),
    );
    let outsider = token(&b, "outsider-b");
    for (method, path) in [
        (reqwest::Method::GET, "Patient/local-1/$locate"),
        (reqwest::Method::POST, "Patient/local-1/$pull?peer=node-a"),
        (reqwest::Method::POST, "Patient/local-1/$push?peer=node-a"),
    ] {
        let answer = http.request(method, format!("{}/{path}", node_b.base)).bearer_auth(&outsider).send().unwrap();
        assert_eq!(answer.status(), 404, "{path} for a caller outside the patient's reach");
    }

    // $pull at B: A's record copied, counts per type equal A's.
    let pull = || -> Value {
        let answer = http
            .post(format!("{}/Patient/local-1/$pull?peer=node-a", node_b.base))
            .bearer_auth(&token_b)
            .send()
            .unwrap();
        let status = answer.status();
        let body: Value = answer.json().unwrap();
        assert_eq!(status, 200, "{body}");
        body
    };
    let first = pull();
    assert_eq!(received(&first), counts_a, "{first}");
    let total: u64 = counts_a.values().sum();
    assert_eq!(count(&first, "created"), total);
    assert_eq!(count(&first, "unchanged"), 0);
    let copy_id = parameter(&first, "patient")[0]["valueReference"]["reference"]
        .as_str()
        .unwrap()
        .strip_prefix("Patient/")
        .unwrap()
        .to_string();

    let out = dir.path().join("export-b");
    let held = exported(&b, &out);
    let from_a = |resource: &Value| resource["meta"]["source"].as_str().is_some_and(|s| s.starts_with(&node_a.base));
    let mut copies: BTreeMap<String, u64> = BTreeMap::new();
    for (resource_type, resources) in &held {
        let n = resources.iter().filter(|r| from_a(r)).count() as u64;
        if n > 0 {
            copies.insert(resource_type.clone(), n);
        }
    }
    assert_eq!(copies, counts_a, "every resource of A's record is held once at B, its source named");
    // Every copy has a Provenance naming A: the source version, the peer as agent.
    let provenances = &held["Provenance"];
    for (resource_type, resources) in &held {
        for copy in resources.iter().filter(|r| from_a(r)) {
            let target = format!("{resource_type}/{}", copy["id"].as_str().unwrap());
            let provenance = provenances
                .iter()
                .find(|p| p["target"][0]["reference"] == target.as_str())
                .unwrap_or_else(|| panic!("a Provenance of {target}"));
            assert_eq!(provenance["entity"][0]["what"]["reference"], copy["meta"]["source"]);
            assert_eq!(provenance["agent"][0]["who"]["reference"], format!("{}/Organization/org-a", node_a.base));
            assert_eq!(provenance["agent"][0]["who"]["display"], "node-a");
        }
    }
    // The pulled record references the pulled patient; the two patients are linked.
    let copied_patient = held["Patient"].iter().find(|p| p["id"] == copy_id.as_str()).unwrap();
    assert_eq!(copied_patient["link"][0]["other"]["reference"], "Patient/local-1");
    let local_patient = held["Patient"].iter().find(|p| p["id"] == "local-1").unwrap();
    assert_eq!(local_patient["link"][0]["other"]["reference"], format!("Patient/{copy_id}"));
    assert_eq!(local_patient["link"][0]["type"], "seealso");
    for observation in held["Observation"].iter().filter(|r| from_a(r)) {
        assert_eq!(observation["subject"]["reference"], format!("Patient/{copy_id}"));
    }

    // A second pull adds nothing.
    let second = pull();
    assert_eq!(count(&second, "created"), 0, "{second}");
    assert_eq!(count(&second, "updated"), 0, "{second}");
    assert_eq!(count(&second, "unchanged"), total);

    // A change at A arrives with the next pull, as the copy's next version.
    assert!(
        !held["Observation"].iter().any(|o| o["meta"]["security"][0]["code"] == "PSY"),
        "the withheld category never reached node B"
    );
    let mut observation = everything_a
        .iter()
        .find(|r| {
            r["resourceType"] == "Observation"
                && r["valueQuantity"]["value"].is_number()
                && r["meta"]["security"].is_null()
        })
        .unwrap()
        .clone();
    observation["valueQuantity"]["value"] = json!(123.5);
    observation.as_object_mut().unwrap().remove("meta");
    let observation_id = observation["id"].as_str().unwrap().to_string();
    let updated = http
        .put(format!("{}/Observation/{observation_id}", node_a.base))
        .bearer_auth(&token_a)
        .header("Content-Type", "application/fhir+json")
        .body(observation.to_string())
        .send()
        .unwrap();
    assert_eq!(updated.status(), 200, "{}", updated.text().unwrap());
    let third = pull();
    assert_eq!(count(&third, "created"), 0, "{third}");
    assert_eq!(count(&third, "updated"), 1, "{third}");
    let held = exported(&b, &out);
    let source = format!("{}/Observation/{observation_id}/_history/2", node_a.base);
    let copy = held["Observation"].iter().find(|o| o["meta"]["source"] == source.as_str()).unwrap();
    assert_eq!(copy["valueQuantity"]["value"], json!(123.5));
    assert_eq!(copy["meta"]["versionId"], "2", "the copy's next version");
    assert_eq!(held["Observation"].iter().filter(|r| from_a(r)).count() as u64, counts_a["Observation"]);

    // The command line pulls the same way (nothing new to take).
    let cli = continuum(&b, &["peer", "pull", "node-a", "--patient", "local-1"], None);
    let cli: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(count(&cli, "created"), 0, "{cli}");
    assert_eq!(count(&cli, "unchanged"), total);

    // $push from B: a referral packet filed at A under A's patient (matched by its SSN), with
    // a Task for A's organization.
    let pushed = http
        .post(format!("{}/Patient/local-1/$push?peer=node-a", node_b.base))
        .bearer_auth(&token_b)
        .json(&json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "Cardiology consult"}]}))
        .send()
        .unwrap();
    let status = pushed.status();
    let pushed: Value = pushed.json().unwrap();
    assert_eq!(status, 200, "{pushed}");
    let sent: BTreeMap<String, u64> = parameter(&pushed, "sent")
        .into_iter()
        .map(|p| {
            (p["part"][0]["valueCode"].as_str().unwrap().to_string(), p["part"][1]["valueInteger"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(sent["Patient"], 1, "{pushed}");
    assert_eq!(sent["Condition"], 1, "{pushed}");
    assert_eq!(sent["ServiceRequest"], 1, "{pushed}");
    assert_eq!(sent["Task"], 1, "{pushed}");
    assert_eq!(sent["DocumentReference"], 1, "the referral note: {pushed}");
    assert_eq!(parameter(&pushed, "patient")[0]["valueReference"]["reference"], format!("Patient/{id_a}"));
    let task_ref = parameter(&pushed, "task")[0]["valueReference"]["reference"].as_str().unwrap().to_string();
    let task: Value =
        http.get(format!("{}/{task_ref}", node_a.base)).bearer_auth(&token_a).send().unwrap().json().unwrap();
    assert_eq!(task["status"], "requested", "{task}");
    assert_eq!(task["owner"]["reference"], "Organization/org-a");
    assert_eq!(task["for"]["reference"], format!("Patient/{id_a}"));
    let referral: Value = http
        .get(format!("{}/{}", node_a.base, task["focus"]["reference"].as_str().unwrap()))
        .bearer_auth(&token_a)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(referral["resourceType"], "ServiceRequest");
    assert_eq!(referral["subject"]["reference"], format!("Patient/{id_a}"));
    let conditions: Value = http
        .get(format!("{}/Condition?patient={id_a}", node_a.base))
        .bearer_auth(&token_a)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let filed = conditions["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["meta"]["source"] == format!("{}/Condition/cond-b1", node_b.base))
        .unwrap_or_else(|| panic!("B's problem filed at A: {conditions}"));
    assert_eq!(filed["resource"]["code"]["text"], "Hypertension");
    let notes: Value = http
        .get(format!("{}/DocumentReference?patient={id_a}&type=http://loinc.org|57133-1", node_a.base))
        .bearer_auth(&token_a)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let note = &notes["entry"][0]["resource"];
    assert_eq!(note["meta"]["source"], node_b.base.as_str(), "{notes}");
    let xml = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(note["content"][0]["attachment"]["data"].as_str().unwrap())
            .unwrap()
    };
    assert!(String::from_utf8(xml).unwrap().contains("ClinicalDocument"));
    let patients_a: Value = http
        .get(format!(
            "{}/Patient?identifier=http://hl7.org/fhir/sid/us-ssn|{}",
            node_a.base,
            ssn[0]["value"].as_str().unwrap()
        ))
        .bearer_auth(&token_a)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(patients_a["entry"].as_array().unwrap().len(), 1, "no second patient at A");

    // A patient node A holds no certain match for: 409 with the candidates, nothing copied.
    let stranger = http
        .put(format!("{}/Patient/local-2", node_b.base))
        .bearer_auth(&token_b)
        .header("Content-Type", "application/fhir+json")
        .body(
            json!({"resourceType": "Patient", "id": "local-2", "name": [{"family": "Nobody", "given": ["Known"]}],
                   "birthDate": "1901-02-03", "managingOrganization": {"reference": "Organization/org-b"}})
            .to_string(),
        )
        .send()
        .unwrap();
    assert!(stranger.status().is_success(), "{}", stranger.text().unwrap());
    let refused =
        http.post(format!("{}/Patient/local-2/$pull?peer=node-a", node_b.base)).bearer_auth(&token_b).send().unwrap();
    assert_eq!(refused.status(), 409);
    let outcome: Value = refused.json().unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let after: Value =
        http.get(format!("{}/Patient/local-2", node_b.base)).bearer_auth(&token_b).send().unwrap().json().unwrap();
    assert!(after.get("link").is_none(), "nothing written: {after}");

    // Both sides audited the exchange: A what node B's token read, B the operations asked
    // (their query texts) and the pull's writes (under its job's name).
    let trail = |data: &Path, base: &str| -> (String, Vec<String>) {
        let minted = continuum(data, &["token", "--user", "admin", "--scope", "user/AuditEvent.rs"], None);
        let admin = String::from_utf8(minted.stdout).unwrap().trim().to_string();
        let text =
            http.get(format!("{base}/AuditEvent?_count=1000")).bearer_auth(&admin).send().unwrap().text().unwrap();
        let bundle: Value = serde_json::from_str(&text).unwrap();
        let queries = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["resource"]["entity"].as_array().cloned().unwrap_or_default())
            .filter_map(|entity| entity["query"].as_str().map(str::to_string))
            .filter_map(|q| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(q)
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).to_string())
            })
            .collect();
        (text, queries)
    };
    let (trail_a, _) = trail(&a, &node_a.base);
    assert!(trail_a.contains("node-b"), "A's trail names node B's client");
    let (trail_b, queries_b) = trail(&b, &node_b.base);
    assert!(trail_b.contains("peer-pull"), "B's trail has the pull's writes");
    assert!(queries_b.iter().any(|q| q.contains("$pull peer=node-a")), "{queries_b:?}");
    assert!(queries_b.iter().any(|q| q.contains("$locate")), "{queries_b:?}");

    // A pull from a peer not registered, and a patient unknown here: refused, nothing written.
    let unknown =
        http.post(format!("{}/Patient/local-1/$pull?peer=nobody", node_b.base)).bearer_auth(&token_b).send().unwrap();
    assert_eq!(unknown.status(), 404);
    continuum(&b, &["peer", "remove", "node-a"], None);
    assert!(!b.join("peers").join("node-a.pem").exists(), "the key goes with the peer");
}

/// A tiny HTTP server on loopback answering every request with `answer` (status line,
/// headers and body as given), until the test ends.
fn fixture(answer: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 65536];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    format!("http://{address}/fhir")
}

#[test]
fn bad_peers_are_refused_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = dir.path().join("keys");
    run(&["peer", "keygen", keys.to_str().unwrap()]);
    let key = keys.join("key.pem");
    let key = key.to_str().unwrap();

    // Not http(s), and a key that is not one: refused at `add`, nothing kept.
    for url in ["ftp://peer.example/fhir", "file:///etc/passwd", "http://user:secret@peer.example/fhir"] {
        let (ok, stderr) = attempt(&data, &["peer", "add", "bad", "--url", url, "--client-id", "x", "--key", key]);
        assert!(!ok, "{url} is refused");
        assert!(!stderr.contains("secret"), "no credentials in the error: {stderr}");
    }
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let (ok, _) = attempt(
        &data,
        &[
            "peer",
            "add",
            "bad",
            "--url",
            "http://peer.example/fhir",
            "--client-id",
            "x",
            "--key",
            not_a_key.to_str().unwrap(),
        ],
    );
    assert!(!ok, "a key that is not a P-384 private key is refused");
    let listed = String::from_utf8(continuum(&data, &["peer", "list"], None).stdout).unwrap();
    assert!(listed.trim().is_empty(), "{listed}");
    assert!(!data.join("peers").join("bad.pem").exists());

    // Peers answering garbage, redirecting, or not FHIR: listed with an error by $locate,
    // refused with 502 by $pull.
    let garbage = fixture(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{not json",
    );
    let redirect = fixture(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let html =
        fixture("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 6\r\nConnection: close\r\n\r\n<html>");
    for (name, url) in [("garbage", &garbage), ("redirect", &redirect), ("html", &html)] {
        continuum(&data, &["peer", "add", name, "--url", url, "--client-id", "x", "--key", key], None);
    }
    let patient = dir.path().join("patient.json");
    write_json(
        &patient,
        &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Organization", "id": "org-1", "name": "Clinic"},
             "request": {"method": "PUT", "url": "Organization/org-1"}},
            {"resource": {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe", "given": ["Jane"]}],
                          "birthDate": "1970-01-01", "managingOrganization": {"reference": "Organization/org-1"}},
             "request": {"method": "PUT", "url": "Patient/p1"}}
        ]}),
    );
    continuum(&data, &["import", patient.to_str().unwrap()], None);
    continuum(
        &data,
        &["user", "add", "doc", "--role", "physician", "--org", "org-1", "--password-stdin"],
        Some(PASSWORD),
    );
    let node = start_secured(&data, &["--rate-limit", "0", "--no-patient-index"]);
    let token = token(&data, "doc");
    let http = reqwest::blocking::Client::new();
    let located: Value =
        http.get(format!("{}/Patient/p1/$locate", node.base)).bearer_auth(&token).send().unwrap().json().unwrap();
    let peers = parameter(&located, "peer");
    assert_eq!(peers.len(), 3, "{located}");
    for peer in peers {
        let outcome = peer["part"].as_array().unwrap().iter().find(|p| p["name"] == "outcome");
        let outcome = outcome.unwrap_or_else(|| panic!("an error outcome: {peer}"));
        assert_eq!(outcome["resource"]["resourceType"], "OperationOutcome");
        let text = outcome["resource"]["issue"][0]["diagnostics"].as_str().unwrap();
        match peer["part"][0]["valueString"].as_str().unwrap() {
            "garbage" => assert!(text.contains("not valid JSON"), "{text}"),
            "redirect" => assert!(text.contains("redirect"), "{text}"),
            "html" => assert!(text.contains("without JSON"), "{text}"),
            other => panic!("{other}"),
        }
    }
    for name in ["garbage", "redirect", "html"] {
        let answer =
            http.post(format!("{}/Patient/p1/$pull?peer={name}", node.base)).bearer_auth(&token).send().unwrap();
        assert_eq!(answer.status(), 502, "{name}");
        let outcome: Value = answer.json().unwrap();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
    }
    // A peer that never answers: the pull gives up after the request timeout, 504.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/fhir", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });
    continuum(&data, &["peer", "add", "silent", "--url", &silent_url, "--client-id", "x", "--key", key], None);
    let started = std::time::Instant::now();
    let answer = http
        .post(format!("{}/Patient/p1/$pull?peer=silent", node.base))
        .bearer_auth(&token)
        .timeout(std::time::Duration::from_secs(90))
        .send()
        .unwrap();
    assert_eq!(answer.status(), 504);
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());

    // Nothing was written: the patient is as it was, and no Provenance exists.
    let patient: Value =
        http.get(format!("{}/Patient/p1", node.base)).bearer_auth(&token).send().unwrap().json().unwrap();
    assert_eq!(patient["meta"]["versionId"], "1");
    assert!(patient.get("link").is_none());
    let provenances: Value =
        http.get(format!("{}/Provenance", node.base)).bearer_auth(&token).send().unwrap().json().unwrap();
    assert_eq!(provenances["total"].as_u64().unwrap_or(0), 0, "{provenances}");
}
