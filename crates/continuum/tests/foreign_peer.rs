//! A pull from a FHIR server that is not Continuum, to keep the peer client standard: a small
//! HTTP fixture (`tests/external/foreign_fhir_server.py`, standard library only) answers as a
//! HAPI-style R4 server would — SMART backend-services tokens for an ES384 client assertion,
//! `Patient/$match`, `$everything` paged through `?_getpages=` links on its base, numeric ids.
//! Continuum registers it as a peer (`continuum peer add`), and `$pull` copies the whole
//! record: the counts per type the fixture serves, every copy naming its source, a second pull
//! adding nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use test_support::process::{binary, continuum, start_secured};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/external/foreign_fhir_server.py");
const BARRY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/synthea/smart-2019/Barry_Wolf_f0c0c377-be9c-4ca2-97c0-7cef574bdb45.json"
);

struct Fixture(std::process::Child);

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parameter<'a>(parameters: &'a Value, name: &str) -> Vec<&'a Value> {
    parameters["parameter"].as_array().unwrap().iter().filter(|p| p["name"] == name).collect()
}

#[test]
fn a_record_is_pulled_from_a_fhir_server_that_is_not_continuum() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = dir.path().join("keys");
    let keygen = Command::new(binary()).args(["peer", "keygen"]).arg(&keys).output().unwrap();
    assert!(keygen.status.success(), "{}", String::from_utf8_lossy(&keygen.stderr));

    let mut child = Command::new("python3")
        .args([FIXTURE, "--bundle", BARRY, "--client-id", "continuum-node"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the fixture");
    let line = BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    let _fixture = Fixture(child);
    let (address, counts) = line.strip_prefix("listening ").unwrap().split_once(" counts ").unwrap();
    let served: BTreeMap<String, u64> = serde_json::from_str(counts).unwrap();

    // The local record of Barry: his name, birth date, sex and SSN.
    let bundle: Value = serde_json::from_str(&std::fs::read_to_string(BARRY).unwrap()).unwrap();
    let barry =
        bundle["entry"].as_array().unwrap().iter().find(|e| e["resource"]["resourceType"] == "Patient").unwrap();
    let barry = &barry["resource"];
    let local = json!({"resourceType": "Patient", "id": "local-1", "name": barry["name"], "gender": barry["gender"],
        "managingOrganization": {"reference": "Organization/org-1"},
        "birthDate": barry["birthDate"], "identifier": barry["identifier"].as_array().unwrap().iter()
            .filter(|i| i["system"] == "http://hl7.org/fhir/sid/us-ssn").cloned().collect::<Vec<_>>()});
    let file = dir.path().join("local.json");
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Organization", "id": "org-1", "name": "Clinic"}, "request": {"method": "PUT", "url": "Organization/org-1"}},
        {"resource": local, "request": {"method": "PUT", "url": "Patient/local-1"}}
    ]});
    std::fs::write(&file, serde_json::to_vec(&transaction).unwrap()).unwrap();
    continuum(&data, &["import", file.to_str().unwrap()], None);
    continuum(
        &data,
        &["user", "add", "doc", "--role", "physician", "--org", "org-1", "--password-stdin"],
        Some("a long enough password\n"),
    );
    let key = keys.join("key.pem");
    continuum(
        &data,
        &["peer", "add", "hapi", "--url", address, "--client-id", "continuum-node", "--key", key.to_str().unwrap()],
        None,
    );
    let minted = continuum(&data, &["token", "--user", "doc", "--scope", "user/*.cruds"], None);
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_string();
    let server = start_secured(&data, &["--rate-limit", "0", "--no-patient-index"]);
    let http = reqwest::blocking::Client::new();
    let pull = || -> Value {
        let answer =
            http.post(format!("{}/Patient/local-1/$pull?peer=hapi", server.base)).bearer_auth(&token).send().unwrap();
        let status = answer.status();
        let body: Value = answer.json().unwrap();
        assert_eq!(status, 200, "{body}");
        body
    };

    let first = pull();
    let received: BTreeMap<String, u64> = parameter(&first, "received")
        .into_iter()
        .map(|p| {
            (p["part"][0]["valueCode"].as_str().unwrap().to_string(), p["part"][1]["valueInteger"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(received, served, "every page of the foreign server's $everything: {first}");
    let total: u64 = served.values().sum();
    assert_eq!(parameter(&first, "created")[0]["valueInteger"].as_u64(), Some(total));

    // Each copy names its source on the foreign server; a second pull adds nothing.
    let out = dir.path().join("export");
    continuum(&data, &["export", "--type", "Observation", out.to_str().unwrap()], None);
    let mut copies: Vec<Value> = Vec::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ndjson") {
            let text = std::fs::read_to_string(&path).unwrap();
            copies.extend(
                text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str::<Value>(l).unwrap()),
            );
        }
    }
    assert_eq!(copies.len() as u64, served["Observation"]);
    for copy in &copies {
        let source = copy["meta"]["source"].as_str().unwrap();
        assert!(source.starts_with(&format!("{address}/Observation/")) && source.ends_with("/_history/1"), "{source}");
    }
    let second = pull();
    assert_eq!(parameter(&second, "created")[0]["valueInteger"].as_u64(), Some(0), "{second}");
    assert_eq!(parameter(&second, "unchanged")[0]["valueInteger"].as_u64(), Some(total));
}
