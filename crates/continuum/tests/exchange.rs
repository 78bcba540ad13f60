//! The exchange edges as a user meets them: `continuum import` of C-CDA documents and
//! `continuum export`, `POST /fhir/$ccda-import`, `GET /fhir/Patient/[id]/$ccda-export`
//! (validated with `xmllint` against the CDA schema with SDTC; Debian `libxml2-utils`, which
//! `.ci/run` installs: the test fails without it), `DocumentReference/$docref`, and bad input
//! answered 4xx with an OperationOutcome and nothing stored: a truncated document, XML that is
//! not CDA, an XML bomb, external entities, a 100 MB body, a media type not offered, an NDJSON
//! line of another type, an unknown `_type`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use test_support::ccda::example;
use test_support::process::{continuum, start};

fn testdata(parts: &[&str]) -> PathBuf {
    let mut path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "..", "testdata"].iter().collect();
    path.extend(parts);
    path
}

fn total(base: &str, path: &str) -> u64 {
    let sep = if path.contains('?') { '&' } else { '?' };
    let answer: Value = reqwest::blocking::get(format!("{base}/{path}{sep}_summary=count")).unwrap().json().unwrap();
    answer["total"].as_u64().unwrap()
}

fn stored(base: &str) -> [u64; 4] {
    ["Patient", "DocumentReference", "Binary", "Condition"].map(|t| total(base, t))
}

/// Validates XML files against the shipped CDA schema with SDTC.
fn xmllint(files: &[&Path]) {
    let schema = testdata(&["ccda", "cda-schema-sdtc", "infrastructure", "cda", "CDA_SDTC.xsd"]);
    let output = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(&schema)
        .args(files)
        .output()
        .expect("xmllint runs (install the Debian package libxml2-utils)");
    assert!(output.status.success(), "schema validation failed:\n{}", String::from_utf8_lossy(&output.stderr));
}

/// `POST` over a plain socket, writing what the server will take and reading its answer: the
/// status and the body.
fn raw_post(base: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://").split('/').next().unwrap().to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /fhir/{path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn documents_in_and_out_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &["--rate-limit", "0"]);
    let base = server.base.as_str();
    let client = reqwest::blocking::Client::new();
    let post = |path: &str, content_type: &str, body: Vec<u8>| {
        client.post(format!("{base}/{path}")).header("content-type", content_type).body(body).send().unwrap()
    };

    // Bad documents: refused with an OperationOutcome, nothing stored.
    let ccd = example("CCD_1");
    let bomb = br#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><ClinicalDocument xmlns="urn:hl7-org:v3"><title>&c;</title></ClinicalDocument>"#.to_vec();
    let external = br#"<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "http://127.0.0.1:9/secret">]><ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>"#.to_vec();
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("truncated", "application/xml", ccd[..ccd.len() / 2].to_vec(), 400),
        ("not CDA", "application/xml", b"<html><body>hi</body></html>".to_vec(), 400),
        ("billion laughs", "application/xml", bomb, 400),
        ("external entity", "application/xml", external, 400),
        ("JSON", "application/fhir+json", b"{}".to_vec(), 415),
    ];
    for (what, content_type, body, status) in cases {
        let answer = post("$ccda-import", content_type, body);
        assert_eq!(answer.status().as_u16(), status, "{what}");
        if status != 413 || answer.headers().get("content-type").is_some() {
            let outcome: Value = answer.json().unwrap();
            assert_eq!(outcome["resourceType"], "OperationOutcome", "{what}");
        }
        assert_eq!(stored(base), [0, 0, 0, 0], "{what}: nothing stored");
    }

    // A body past the server's limit: answered 413 with an OperationOutcome, perhaps before it
    // is all sent (the write may then fail; the answer is still read).
    let (status, answer) = raw_post(base, "$ccda-import", "application/xml", &vec![b'<'; 100 * 1024 * 1024]);
    assert_eq!(status, 413);
    assert!(answer.contains("\"resourceType\":\"OperationOutcome\""), "{answer}");
    assert_eq!(stored(base), [0, 0, 0, 0], "100 MB: nothing stored");

    // A good one: filed, then the same again adds nothing.
    let filed = post("$ccda-import", "application/cda+xml", ccd.clone());
    assert_eq!(filed.status().as_u16(), 201);
    let report: Value = filed.json().unwrap();
    let parameter =
        |name: &str| report["parameter"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap();
    let patient = parameter("patient")["valueReference"]["reference"]
        .as_str()
        .unwrap()
        .trim_start_matches("Patient/")
        .to_string();
    assert_eq!(parameter("patientCreated")["valueBoolean"], true);
    let warnings = parameter("outcome")["resource"]["issue"].as_array().unwrap().len();
    assert!(warnings >= 1, "CCD_1's payers and advance directives are listed, not dropped");
    let after_first = stored(base);
    let again = post("$ccda-import", "application/xml", ccd.clone());
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(stored(base), after_first, "the same document twice");
    // To a named patient.
    let progress = post(&format!("$ccda-import?patient={patient}"), "application/xml", example("Progress_Note"));
    assert_eq!(progress.status().as_u16(), 201);
    assert_eq!(total(base, "Patient"), 1);
    assert_eq!(post("$ccda-import?patient=nope", "application/xml", example("CCD_2")).status().as_u16(), 404);

    // Out: each document type validates against the schema.
    let mut files = Vec::new();
    for kind in ["ccd", "referral", "discharge"] {
        let answer = client.get(format!("{base}/Patient/{patient}/$ccda-export?type={kind}")).send().unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{kind}");
        assert!(answer.headers()["content-type"].to_str().unwrap().starts_with("application/xml"));
        let path = dir.path().join(format!("{kind}.xml"));
        std::fs::write(&path, answer.bytes().unwrap()).unwrap();
        files.push(path);
    }
    xmllint(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    let bad = client.get(format!("{base}/Patient/{patient}/$ccda-export?type=letter")).send().unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    // $docref: the two documents filed, and on demand a CCD to fetch.
    let bundle: Value =
        client.get(format!("{base}/DocumentReference/$docref?patient={patient}")).send().unwrap().json().unwrap();
    assert_eq!(bundle["total"], 2);
    let bundle: Value = client
        .get(format!("{base}/DocumentReference/$docref?patient={patient}&on-demand=true"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(bundle["total"], 3);
    let fresh = bundle["entry"].as_array().unwrap().iter().find(|e| e["resource"].get("id").is_none()).unwrap();
    let url = fresh["resource"]["content"][0]["attachment"]["url"].as_str().unwrap();
    let xml = client.get(url).send().unwrap().text().unwrap();
    assert!(
        roxmltree::Document::parse(&xml).unwrap().root_element().has_tag_name(("urn:hl7-org:v3", "ClinicalDocument"))
    );

    // Bulk Data refusals: nothing started, nothing stored.
    let async_get = |path: &str| client.get(format!("{base}/{path}")).header("prefer", "respond-async").send().unwrap();
    assert_eq!(async_get("$export?_type=NotAType").status().as_u16(), 400);
    assert_eq!(client.get(format!("{base}/$export")).send().unwrap().status().as_u16(), 400, "no respond-async");
    let patients_before = total(base, "Patient");
    let ndjson = "{\"resourceType\":\"Patient\",\"id\":\"n1\"}\n{\"resourceType\":\"Observation\",\"id\":\"n2\",\"status\":\"final\",\"code\":{\"text\":\"x\"}}\n";
    let answer = client
        .post(format!("{base}/$import?_type=Patient"))
        .header("prefer", "respond-async")
        .header("content-type", "application/fhir+ndjson")
        .body(ndjson)
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let outcome: Value = answer.json().unwrap();
    assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains("line 2"));
    assert_eq!(total(base, "Patient"), patients_before);
}

#[test]
fn the_command_line_imports_documents_and_exports_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let examples = testdata(&["ccda", "hl7-c-cda-examples"]);
    let imported = continuum(&data, &["import", examples.to_str().unwrap()], None);
    let said = String::from_utf8_lossy(&imported.stdout);
    assert!(said.contains("from 8 files"), "{said}");
    let out = dir.path().join("export");
    let exported =
        continuum(&data, &["export", "--type", "Patient,DocumentReference,Condition", out.to_str().unwrap()], None);
    let said = String::from_utf8_lossy(&exported.stdout);
    assert!(said.contains("Exported"), "{said}");
    let lines = |file: &str| std::fs::read_to_string(out.join(file)).unwrap().lines().count();
    assert_eq!(lines("DocumentReference-1.ndjson"), 8, "one per document");
    assert!(lines("Patient-1.ndjson") >= 1 && lines("Condition-1.ndjson") >= 1);
    // The job is done with: nothing left in the server's folder.
    assert_eq!(std::fs::read_dir(data.join("bulk")).unwrap().count(), 0);
}

/// On a secured server: a physician files a document to a patient of theirs (the people and
/// organizations it names go to the directory as the service's job), reads its bytes back;
/// one outside the patient's organizations neither files to nor reads them; nobody searches
/// Binaries.
#[test]
fn a_physician_files_and_reads_documents_of_their_patients_only() {
    let clinic = test_support::clinic::clinic();
    let base = clinic.server.base.as_str();
    let client = reqwest::blocking::Client::new();
    let outsider = test_support::clinic::token(&clinic.data, "outsider");
    let import = |token: &str| {
        client
            .post(format!("{base}/$ccda-import?patient={}", clinic.rosie))
            .bearer_auth(token)
            .header("content-type", "application/xml")
            .body(example("CCD_2"))
            .send()
            .unwrap()
    };
    let refused = import(&outsider);
    assert_eq!(refused.status().as_u16(), 404, "the patient is outside the outsider's reach");
    let filed = import(&clinic.doc);
    assert_eq!(filed.status().as_u16(), 201, "{}", filed.text().unwrap_or_default());
    let report: Value = filed.json().unwrap();
    let reference = report["parameter"].as_array().unwrap().iter().find(|p| p["name"] == "documentReference").unwrap()
        ["valueReference"]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    let document: Value =
        client.get(format!("{base}/{reference}")).bearer_auth(&clinic.doc).send().unwrap().json().unwrap();
    let binary = document["content"][0]["attachment"]["url"].as_str().unwrap().to_string();
    let mine = client.get(format!("{base}/{binary}")).bearer_auth(&clinic.doc).send().unwrap();
    assert_eq!(mine.status().as_u16(), 200);
    let theirs = client.get(format!("{base}/{binary}")).bearer_auth(&outsider).send().unwrap();
    assert_eq!(theirs.status().as_u16(), 404, "another patient's document bytes");
    // The patient's documents, made or listed, are not the outsider's: 404, as for any patient
    // outside their reach.
    for path in [
        format!("Patient/{}/$ccda-export?type=ccd", clinic.rosie),
        format!("DocumentReference/$docref?patient={}", clinic.rosie),
        format!("DocumentReference/$docref?patient={}&on-demand=true", clinic.rosie),
    ] {
        let answer = client.get(format!("{base}/{path}")).bearer_auth(&outsider).send().unwrap();
        assert_eq!(answer.status().as_u16(), 404, "{path}");
    }
    let made =
        client.get(format!("{base}/Patient/{}/$ccda-export", clinic.rosie)).bearer_auth(&clinic.doc).send().unwrap();
    assert_eq!(made.status().as_u16(), 200);
    let search = client.get(format!("{base}/Binary")).bearer_auth(&clinic.doc).send().unwrap();
    assert_eq!(search.status().as_u16(), 403, "Binaries are not searched by people");
    // The Provenance of what was filed is part of Rosie's record.
    let provenance: Value = client
        .get(format!("{base}/Provenance?patient={}&_summary=count", clinic.rosie))
        .bearer_auth(&clinic.doc)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(provenance["total"].as_u64().unwrap() >= 1);
}
