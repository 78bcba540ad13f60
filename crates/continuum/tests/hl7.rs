//! The HL7 v2 door of the real binary: `serve --mllp`, ACK implies durable (SIGKILL right after
//! each ACK, restart, the effect is there and nothing is doubled), and `hl7 list` / `hl7 replay`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use test_support::process::{binary, continuum, start, start_secured};

fn exchange(stream: &mut TcpStream, message: &str) -> String {
    stream.write_all(&hl7v2::mllp::frame(message.as_bytes()).unwrap()).unwrap();
    let mut decoder = hl7v2::mllp::Decoder::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "connection closed without an ACK");
        if let Some(frame) = decoder.decode(&buffer[..n]).into_iter().next() {
            return String::from_utf8(frame.unwrap()).unwrap();
        }
    }
}

fn a01(n: usize) -> String {
    format!(
        "MSH|^~\\&|ADT1|GHH|CONT|CONT|20240301120000+0100||ADT^A01^ADT_A01|CRASH-{n}|P|2.5.1\r\
         EVN|A01\rPID|1||M{n}^^^GHH&1.2.3.4&ISO^MR||Crash^Test{n}||19800101|F\r\
         PV1|1|I|W1^1^A||||||||||||||||V{n}^^^GHH&1.2.3.4&ISO^VN\r"
    )
}

fn hl7(data: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary()).arg("hl7").args(args).arg("--data").arg(data).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn an_ack_survives_sigkill_and_failed_messages_replay() {
    let dir = tempfile::tempdir().unwrap();
    // This machine is the partner, allowed to merge.
    let (ok, out) = hl7(dir.path(), &["inbound", "add", "local", "--from", "127.0.0.1", "--allow-events", "A40"]);
    assert!(ok, "{out}");
    for round in 0..3 {
        let mut server = start(dir.path(), &["--mllp", "127.0.0.1:0"]);
        let mut stream = TcpStream::connect(server.mllp()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let ack = exchange(&mut stream, &a01(round));
        assert!(ack.contains("MSA|AA|CRASH-"), "{ack}");
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    }
    // After the kills every acknowledged admission is there, once; resending one is a duplicate.
    let mut server = start(dir.path(), &["--mllp", "127.0.0.1:0"]);
    let mut stream = TcpStream::connect(server.mllp()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert!(exchange(&mut stream, &a01(1)).contains("MSA|AA|CRASH-1"));
    // A merge naming an unknown prior patient fails into the dead-letter queue.
    let a40 = "MSH|^~\\&|ADT1|GHH|CONT|CONT|20240301120000+0100||ADT^A40^ADT_A39|MERGE-1|P|2.5.1\r\
               EVN|A40\rPID|1||M0^^^GHH&1.2.3.4&ISO^MR||Crash^Test0\rMRG|M9^^^GHH&1.2.3.4&ISO^MR\r";
    assert!(exchange(&mut stream, a40).contains("MSA|AE|MERGE-1"));
    assert!(exchange(&mut stream, &a01(9)).contains("MSA|AA|CRASH-9"));
    drop(stream);
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let (ok, list) = hl7(dir.path(), &["list"]);
    assert!(ok);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 6, "{list}");
    assert_eq!(lines.iter().filter(|l| l.contains("processed")).count(), 4, "{list}");
    assert_eq!(lines.iter().filter(|l| l.contains("duplicate")).count(), 1, "{list}");
    let (_, failed) = hl7(dir.path(), &["list", "--failed"]);
    let failed: Vec<&str> = failed.lines().collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].contains("ADT^A40") && failed[0].contains("MERGE-1"), "{failed:?}");
    let id = failed[0].split_whitespace().next().unwrap().to_string();
    let (_, by_type) = hl7(dir.path(), &["list", "--type", "ADT^A01", "--status", "processed"]);
    assert_eq!(by_type.lines().count(), 4);
    // After the fix (the prior patient now exists: M9 was admitted), the replay applies it.
    let (ok, out) = hl7(dir.path(), &["replay", &id]);
    assert!(ok, "{out}");
    assert!(out.contains("processed"), "{out}");
    let (_, failed) = hl7(dir.path(), &["list", "--failed"]);
    assert!(failed.trim().is_empty(), "{failed}");

    let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
    backend.check_integrity().unwrap();
    let records = store::Records::new(std::sync::Arc::new(backend));
    for n in [0, 1, 2, 9] {
        let ids = records.backend().find_by_identifier("Encounter", Some("urn:oid:1.2.3.4"), &format!("V{n}")).unwrap();
        assert_eq!(ids.len(), 1, "visit {n}");
    }
    let prior = records.backend().find_by_identifier("Patient", Some("urn:oid:1.2.3.4"), "M9").unwrap();
    let prior = records.read("Patient", &prior[0]).unwrap();
    assert!(prior.body.as_deref().unwrap().contains("replaced-by"));
}

/// A partner's MLLP listener: answers every message `AA` and hands it to the test.
fn fake_partner() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (sent, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let (Ok(mut stream), sent) = (stream, sent.clone()) else { continue };
            std::thread::spawn(move || {
                let mut decoder = hl7v2::mllp::Decoder::new();
                let mut buffer = [0u8; 8192];
                while let Ok(n @ 1..) = stream.read(&mut buffer) {
                    for frame in decoder.decode(&buffer[..n]) {
                        let text = String::from_utf8(frame.unwrap()).unwrap();
                        let message = hl7v2::Message::parse(&text).unwrap();
                        let header = hl7v2::AckHeader { control_id: "PARTNER-1", timestamp: "20240301120000" };
                        let ack = hl7v2::ack(&message, hl7v2::AckCode::AA, None, &header).encode();
                        stream.write_all(&hl7v2::mllp::frame(ack.as_bytes()).unwrap()).unwrap();
                        let _ = sent.send(text);
                    }
                }
            });
        }
    });
    (address, received)
}

#[test]
fn admissions_from_hl7_and_fhir_are_sent_to_partners() {
    let dir = tempfile::tempdir().unwrap();
    let (address, received) = fake_partner();
    let (ok, out) = hl7(dir.path(), &["partner", "add", "adt-feed", "--address", &address, "--events", "A01,A04"]);
    assert!(ok, "{out}");
    let (ok, _) = hl7(dir.path(), &["partner", "add", "bad", "--address", "nowhere"]);
    assert!(!ok, "an address without a port is refused");
    let (_, partners) = hl7(dir.path(), &["partner", "list"]);
    assert!(partners.contains("adt-feed") && partners.contains("A01,A04"), "{partners}");
    let server = start(dir.path(), &["--mllp", "127.0.0.1:0"]);

    // The HL7 door: an inpatient admission.
    let mut stream = TcpStream::connect(server.mllp()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert!(exchange(&mut stream, &a01(7)).contains("MSA|AA|CRASH-7"));
    let first = received.recv_timeout(Duration::from_secs(30)).expect("the admission reaches the partner");
    let first = hl7v2::Message::parse(&first).unwrap();
    assert_eq!(first.get("MSH-9.2").as_deref(), Some("A01"));
    assert_eq!(first.get("PID-3.1").as_deref(), Some("M7"));
    assert_eq!(first.get("PV1-2").as_deref(), Some("I"));

    // The FHIR door: an emergency visit registered through the REST API.
    let encounter = serde_json::json!({"resourceType": "Encounter", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}});
    let created = reqwest::blocking::Client::new()
        .post(format!("{}/Encounter", server.base))
        .header("content-type", "application/fhir+json")
        .body(encounter.to_string())
        .send()
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let id = created.json::<serde_json::Value>().unwrap()["id"].as_str().unwrap().to_string();
    let second = received.recv_timeout(Duration::from_secs(30)).expect("the ED visit reaches the partner");
    let second = hl7v2::Message::parse(&second).unwrap();
    assert_eq!(second.get("MSH-9.2").as_deref(), Some("A04"));
    assert_eq!(second.get("PV1-19").as_deref(), Some(id.as_str()));

    // Both show as delivered in the outbound queue (delivery is recorded just after the ACK).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, outbox) = hl7(dir.path(), &["outbox"]);
        if outbox.lines().filter(|l| l.contains("delivered")).count() == 2 {
            assert!(outbox.contains("ADT^A01") && outbox.contains("ADT^A04"), "{outbox}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{outbox}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, dead) = hl7(dir.path(), &["outbox", "--failed"]);
    assert!(dead.trim().is_empty(), "{dead}");
    assert!(received.try_recv().is_err(), "nothing else was sent");

    // A lab result received over HL7 comes back out as an ORU^R01 of its DiagnosticReport.
    let samples = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hl7-interface/tests/data");
    let oru =
        std::fs::read_to_string(samples.join("ORU-R01-RMGEAD.hl7")).unwrap().replace("\r\n", "\r").replace('\n', "\r");
    let mut stream = TcpStream::connect(server.mllp()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert!(exchange(&mut stream, oru.trim_end()).contains("MSA|AA|CNTRL-3456"));
    let reports: serde_json::Value =
        reqwest::blocking::get(format!("{}/DiagnosticReport", server.base)).unwrap().json().unwrap();
    let report = reports["entry"][0]["resource"]["id"].as_str().expect("a DiagnosticReport").to_string();
    let (ok, out) = hl7(dir.path(), &["oru", &report]);
    assert!(ok, "{out}");
    let message = hl7v2::Message::parse(&out.replace('\n', "\r")).unwrap();
    assert_eq!(message.get("MSH-9").as_deref(), Some("ORU"));
    assert_eq!(message.get("MSH-9.2").as_deref(), Some("R01"));
    assert_eq!(message.get("OBX-3.1").as_deref(), Some("1554-5"));
    let (ok, _) = hl7(dir.path(), &["oru", "no-such-report"]);
    assert!(!ok, "an unknown report is an error");
}

#[test]
fn inbound_partners_are_checked_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (ok, _) = hl7(data, &["inbound", "add", "lab", "--from", "10.1.2.3,10.9.0.0/16", "--allow-events", "a40,S15"]);
    assert!(ok);
    for bad in [
        &["inbound", "add", "lab", "--from", "10.1.2.300"][..],
        &["inbound", "add", "lab", "--from", "10.1.2.3", "--allow-events", "A01"],
        &["inbound", "add", "(loopback)", "--from", "127.0.0.1"],
        &["inbound", "add", "lab"],
    ] {
        assert!(!hl7(data, bad).0, "{bad:?} is refused");
    }
    let (_, list) = hl7(data, &["inbound", "list"]);
    assert!(list.contains("lab") && list.contains("10.1.2.3,10.9.0.0/16") && list.contains("A40,S15"), "{list}");
    // With a partner registered, loopback peers are refused: the connection closes unanswered.
    let server = start(data, &["--mllp", "127.0.0.1:0"]);
    let mut stream = TcpStream::connect(server.mllp()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = stream.write_all(&hl7v2::mllp::frame(a01(1).as_bytes()).unwrap());
    let mut buffer = [0u8; 64];
    assert!(matches!(stream.read(&mut buffer), Ok(0) | Err(_)), "no ACK for a peer off the allow-list");
    drop(server);
    let (_, messages) = hl7(data, &["list"]);
    assert!(messages.trim().is_empty(), "nothing stored: {messages}");
    assert!(hl7(data, &["inbound", "remove", "lab"]).0);
    assert!(!hl7(data, &["inbound", "remove", "lab"]).0);
}

#[test]
fn the_message_log_is_served_to_administrators_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let password = "a long enough password\n";
    continuum(
        data,
        &["user", "add", "ops", "--role", "administrator", "--org", "o1", "--password-stdin"],
        Some(password),
    );
    continuum(data, &["user", "add", "doc", "--role", "physician", "--org", "o1", "--password-stdin"], Some(password));
    let token = |user: &str, scope: &str| {
        let minted = continuum(data, &["token", "--user", user, "--scope", scope], None);
        String::from_utf8(minted.stdout).unwrap().trim().to_string()
    };
    let scoped = "user/*.rs user/hl7-messages.read";
    let (ops, doc) = (token("ops", scoped), token("doc", scoped));
    let unscoped = token("ops", "user/*.rs");

    let server = start_secured(data, &["--mllp", "127.0.0.1:0"]);
    let mut stream = TcpStream::connect(server.mllp()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert!(exchange(&mut stream, &a01(1)).contains("MSA|AA|CRASH-1"));
    assert!(exchange(&mut stream, &a01(2)).contains("MSA|AA|CRASH-2"));
    let a40 = "MSH|^~\\&|ADT1|GHH|CONT|CONT|20240301120000+0100||ADT^A40^ADT_A39|MERGE-1|P|2.5.1\r\
               EVN|A40\rPID|1||M1^^^GHH&1.2.3.4&ISO^MR||Crash^Test1\rMRG|M9^^^GHH&1.2.3.4&ISO^MR\r";
    // From a peer not allowed to merge (loopback, while no partner is registered): refused.
    assert!(exchange(&mut stream, a40).contains("MSA|AR|MERGE-1"));

    let origin = server.base.trim_end_matches("/fhir").to_string();
    let client = reqwest::blocking::Client::new();
    let get = |path: &str, bearer: Option<&str>| {
        let mut request = client.get(format!("{origin}{path}"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().unwrap())
    };
    let (status, body) = get("/admin/hl7/messages", None);
    assert_eq!((status, body["resourceType"].as_str()), (401, Some("OperationOutcome")));
    let (status, body) = get("/admin/hl7/messages", Some("not-a-token"));
    assert_eq!((status, body["resourceType"].as_str()), (401, Some("OperationOutcome")));
    let (status, body) = get("/admin/hl7/messages", Some(&doc));
    assert_eq!(
        (status, body["resourceType"].as_str()),
        (403, Some("OperationOutcome")),
        "a physician is not an administrator"
    );
    let (status, body) = get("/admin/hl7/messages", Some(&unscoped));
    assert_eq!(
        (status, body["resourceType"].as_str()),
        (403, Some("OperationOutcome")),
        "an administrator's token needs the scope user/hl7-messages.read"
    );
    assert_eq!(get("/admin/hl7/messages/1", Some(&unscoped)).0, 403);

    let (status, all) = get("/admin/hl7/messages", Some(&ops));
    assert_eq!(status, 200, "{all}");
    let all = all["messages"].as_array().unwrap().clone();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["controlId"], "MERGE-1", "newest first");
    assert!(all[0].get("raw").is_none(), "lists carry no message content");
    let count =
        |query: &str| get(&format!("/admin/hl7/messages?{query}"), Some(&ops)).1["messages"].as_array().unwrap().len();
    assert_eq!(count("status=dead-letter"), 1);
    assert_eq!(count("status=processed"), 2);
    assert_eq!(count("type=ADT%5EA01"), 2);
    assert_eq!(count("type=ADT"), 3);
    assert_eq!(count("since=2000-01-01"), 3);
    assert_eq!(count("since=2100-01-01"), 0);
    let patient = all.iter().find(|m| m["controlId"] == "CRASH-2").unwrap()["patient"].as_str().unwrap().to_string();
    assert_eq!(count(&format!("patient={patient}&status=processed")), 1);
    // Paging by id.
    let (_, page) = get("/admin/hl7/messages?type=ADT&_count=2", Some(&ops));
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    let (_, rest) = get(page["next"].as_str().expect("a next link"), Some(&ops));
    assert_eq!(rest["messages"].as_array().unwrap().len(), 1);
    assert_eq!(rest["messages"][0]["controlId"], "CRASH-1");
    // One message with its content.
    let id = all[0]["id"].as_i64().unwrap();
    let (status, one) = get(&format!("/admin/hl7/messages/{id}"), Some(&ops));
    assert_eq!(status, 200);
    assert!(one["raw"].as_str().unwrap().starts_with("MSH|^~\\&|ADT1|GHH"), "{one}");
    assert_eq!(get("/admin/hl7/messages/999999", Some(&ops)).0, 404);
    assert_eq!(get(&format!("/admin/hl7/messages/{id}"), Some(&doc)).0, 403);
    // Bad queries are refused, not guessed.
    assert_eq!(get("/admin/hl7/messages?status=lost", Some(&ops)).0, 400);
    assert_eq!(get("/admin/hl7/messages?since=yesterday", Some(&ops)).0, 400);
    assert_eq!(get("/admin/hl7/messages?colour=red", Some(&ops)).0, 400);
    assert_eq!(all[0]["partner"], "(loopback)");

    // Every access is in the audit trail: the reads, and the refusals.
    let status = Command::new("kill").arg("-TERM").arg(server.child.id().to_string()).status().unwrap();
    assert!(status.success());
    let mut server = server;
    assert!(server.child.wait().unwrap().success(), "a graceful stop appends what is queued");
    let backend = store_sqlite::SqliteBackend::open(data).unwrap();
    let log: &dyn store::AuditLog = &backend;
    let entries = log.search(&store::audit::AuditQuery { count: 1000, ..Default::default() }).unwrap();
    let events: Vec<serde_json::Value> =
        entries.iter().map(|e| serde_json::from_str(&e.entry.event).unwrap()).collect();
    let reads: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["subtype"][0]["code"] == "hl7-message-log").collect();
    let by = |name: &str, outcome: &str| {
        reads.iter().filter(|e| e["agent"][0]["name"] == name && e["outcome"] == outcome).count()
    };
    assert!(by("ops", "0") >= 10, "each allowed read is audited: {reads:#?}");
    assert_eq!(by("ops", "4"), 2 + 4, "refusals of the unscoped token, 404 and the bad queries: {reads:#?}");
    assert_eq!(by("doc", "4"), 2, "{reads:#?}");
    assert!(reads.iter().all(|e| e["action"] == "R"));
    use base64::Engine;
    let asked = base64::engine::general_purpose::STANDARD.encode(format!("id={id}"));
    let shown = reads
        .iter()
        .find(|e| e["outcome"] == "0" && e["entity"].to_string().contains(&asked))
        .expect("the read of one message names it");
    assert_eq!(shown["agent"][0]["network"]["address"], "127.0.0.1", "{shown}");

    // The interface goes through the door as a job: what it wrote, and the lookups that
    // matched what it received to the record, are audited under its name.
    let by_interface: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["agent"][0]["name"] == hl7_interface::JOB).collect();
    assert!(by_interface.iter().any(|e| e["action"] == "C"), "its writes: {by_interface:#?}");
    assert!(
        by_interface.iter().any(|e| e["action"] == "E" && e["subtype"][0]["code"] == "search-type"),
        "its lookups: {by_interface:#?}"
    );
}

/// An admission of patient `P{tag}` for visit `V{tag}`, control id `K-{tag}`.
fn admission(tag: &str) -> String {
    format!(
        "MSH|^~\\&|ADT1|GHH|CONT|CONT|20240301120000+0100||ADT^A01^ADT_A01|K-{tag}|P|2.5.1\r\
         EVN|A01\rPID|1||P{tag}^^^GHH&1.2.3.4&ISO^MR||Kill^Test||19800101|F\r\
         PV1|1|I|W1^1^A||||||||||||||||V{tag}^^^GHH&1.2.3.4&ISO^VN\r"
    )
}

/// Sends admissions one after another on one connection until it breaks; returns the tags sent
/// (the last one possibly received but not acknowledged) and how many were acknowledged.
fn admit_until_killed(mllp: String, connection: usize, round: usize) -> (Vec<String>, usize) {
    let (mut sent, mut acked) = (Vec::new(), 0);
    let Ok(mut stream) = TcpStream::connect(&mllp) else { return (sent, acked) };
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for i in 0.. {
        let tag = format!("{round}-{connection}-{i}");
        let frame = hl7v2::mllp::frame(admission(&tag).as_bytes()).unwrap();
        sent.push(tag.clone());
        if stream.write_all(&frame).is_err() {
            break;
        }
        let mut decoder = hl7v2::mllp::Decoder::new();
        let mut buffer = [0u8; 4096];
        let ack = loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break None,
                Ok(n) => {
                    if let Some(frame) = decoder.decode(&buffer[..n]).into_iter().next() {
                        break frame.ok();
                    }
                }
            }
        };
        match ack {
            Some(ack) if String::from_utf8_lossy(&ack).contains(&format!("MSA|AA|K-{tag}")) => acked += 1,
            _ => break,
        }
    }
    (sent, acked)
}

#[test]
fn a_kill_between_receive_and_ack_neither_loses_nor_doubles() {
    let dir = tempfile::tempdir().unwrap();
    let mut everything = Vec::new();
    let mut acknowledged = 0;
    for round in 0..3 {
        let server = start(dir.path(), &["--mllp", "127.0.0.1:0"]);
        let senders: Vec<_> = (0..4)
            .map(|c| {
                let mllp = server.mllp().to_string();
                std::thread::spawn(move || admit_until_killed(mllp, c, round))
            })
            .collect();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        std::thread::sleep(Duration::from_millis(200 + u64::from(nanos) % 400));
        drop(server); // SIGKILL, in the middle of messages being received and applied
        for sender in senders {
            let (sent, acked) = sender.join().unwrap();
            acknowledged += acked;
            everything.extend(sent);
        }
    }
    assert!(acknowledged > 0, "nothing was acknowledged before the kills");
    // After the last restart the unfinished messages are settled; the sender then resends
    // everything it sent (a real sender resends what it has no ACK for): each is applied once.
    let server = start(dir.path(), &["--mllp", "127.0.0.1:0"]);
    let mut stream = TcpStream::connect(server.mllp()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for tag in &everything {
        let ack = exchange(&mut stream, &admission(tag));
        assert!(ack.contains(&format!("MSA|AA|K-{tag}")), "{ack}");
    }
    drop(stream);
    drop(server);
    let (_, unfinished) = hl7(dir.path(), &["list", "--status", "received"]);
    assert!(unfinished.trim().is_empty(), "messages left unsettled: {unfinished}");
    let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
    backend.check_integrity().unwrap();
    let backend: &dyn store::Backend = &backend;
    for tag in &everything {
        let visits = backend.find_by_identifier("Encounter", Some("urn:oid:1.2.3.4"), &format!("V{tag}")).unwrap();
        assert_eq!(visits.len(), 1, "visit {tag}: applied once");
        let patients = backend.find_by_identifier("Patient", Some("urn:oid:1.2.3.4"), &format!("P{tag}")).unwrap();
        assert_eq!(patients.len(), 1, "patient {tag}: created once");
    }
    eprintln!("{} admissions sent across 3 kills, {acknowledged} acknowledged before a kill", everything.len());
}
