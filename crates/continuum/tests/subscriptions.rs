//! FHIR Subscriptions against real receivers: `continuum serve` as a child process, an HTTP
//! receiver (rest-hook) and a websocket client run by the test. A burst of matching writes is
//! interrupted by SIGKILL and the server restarted: every acknowledged write is notified at
//! least once, in order, to every subscription. A receiver that fails gets retries and the
//! `error` status, then the missed notifications once it recovers. An owner who loses access
//! to a patient gets nothing more about them. Bad Subscriptions are refused with an
//! OperationOutcome and leave nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_support::process::{Server, continuum, start, start_secured};

const LOINC: &str = "http://loinc.org";
const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

/// An HTTP receiver on 127.0.0.1 that records every POST and answers 200, or 500 while
/// `failing`.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    failing: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let receiver = Receiver { url, got: Arc::default(), failing: Arc::default() };
        let serving = receiver.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let serving = serving.clone();
                std::thread::spawn(move || serving.serve(stream));
            }
        });
        receiver
    }

    fn serve(&self, stream: TcpStream) {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
            let mut headers = HashMap::new();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
                }
            }
            let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let failing = self.failing.load(Ordering::SeqCst);
            self.got.lock().unwrap().push(Received {
                path,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let status = if failing { "500 Internal Server Error" } else { "200 OK" };
            if writer.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes()).is_err() {
                return;
            }
        }
    }

    fn at(&self, path: &str) -> Vec<Received> {
        self.got.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

fn send(request: reqwest::blocking::RequestBuilder, token: Option<&str>) -> reqwest::blocking::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

fn post(base: &str, token: Option<&str>, resource: &Value) -> (u16, Value) {
    let t = resource["resourceType"].as_str().unwrap();
    let response = send(client().post(format!("{base}/{t}")), token)
        .header("Content-Type", "application/fhir+json")
        .body(resource.to_string())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn put(base: &str, token: Option<&str>, resource: &Value) -> (u16, Value) {
    let t = resource["resourceType"].as_str().unwrap();
    let id = resource["id"].as_str().unwrap();
    let response = send(client().put(format!("{base}/{t}/{id}")), token)
        .header("Content-Type", "application/fhir+json")
        .body(resource.to_string())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn get(base: &str, token: Option<&str>, path: &str) -> (u16, Value) {
    let response = send(client().get(format!("{base}/{path}")), token).send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn observation(patient: &str, code: &str) -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 5.5, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    })
}

fn r4_subscription(criteria: &str, endpoint: &str) -> Value {
    json!({
        "resourceType": "Subscription", "status": "requested", "reason": "test",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
            "header": ["X-Subscription-Secret: s3cret"]}
    })
}

fn backport_subscription(topic: &str, filter: &str, endpoint: &str, content: &str) -> Value {
    json!({
        "resourceType": "Subscription", "status": "requested", "reason": "test",
        "meta": {"profile": [BACKPORT]},
        "criteria": format!("urn:continuum:subscription-topic:{topic}"),
        "_criteria": {"extension": [{
            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria",
            "valueString": filter
        }]},
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
            "_payload": {"extension": [{
                "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content",
                "valueCode": content
            }]}}
    })
}

fn status_of(base: &str, token: Option<&str>, id: &str) -> String {
    get(base, token, &format!("Subscription/{id}")).1["status"].as_str().unwrap_or_default().to_string()
}

/// The focus ids and event numbers of backport notification bundles, in the order received.
fn backport_events(received: &[Received]) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for r in received {
        let bundle: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(bundle["type"], "history");
        let status = &bundle["entry"][0]["resource"];
        assert_eq!(status["resourceType"], "Parameters");
        let parameters = status["parameter"].as_array().unwrap();
        let kind = parameters.iter().find(|p| p["name"] == "type").unwrap()["valueCode"].as_str().unwrap();
        if kind != "event-notification" {
            continue;
        }
        for event in parameters.iter().filter(|p| p["name"] == "notification-event") {
            let parts = event["part"].as_array().unwrap();
            let number: i64 = parts.iter().find(|p| p["name"] == "event-number").unwrap()["valueString"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let focus =
                parts.iter().find(|p| p["name"] == "focus").unwrap()["valueReference"]["reference"].as_str().unwrap();
            out.push((number, focus.rsplit('/').next().unwrap().to_string()));
        }
    }
    out
}

/// The R4 rest-hook bodies (full resources), first delivery of each, in the order received.
fn first_deliveries(received: &[Received]) -> Vec<Value> {
    let mut seen = HashSet::new();
    received
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
        .filter(|resource| seen.insert(resource["id"].as_str().unwrap().to_string()))
        .collect()
}

/// A minimal websocket client of the R4 channel (tungstenite, blocking).
struct Socket(tokio_tungstenite::tungstenite::WebSocket<TcpStream>);

impl Socket {
    fn bind(base: &str, id: &str) -> Socket {
        let address = base.trim_start_matches("http://").split('/').next().unwrap().to_string();
        let stream = TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let url = format!("ws://{address}/fhir/$subscription-websocket");
        let (mut socket, _) = tokio_tungstenite::tungstenite::client(url.as_str(), stream).unwrap();
        socket.send(tokio_tungstenite::tungstenite::Message::Text(format!("bind {id}").into())).unwrap();
        let mut socket = Socket(socket);
        let answer = socket.next_line(Duration::from_secs(10)).expect("an answer to bind");
        assert_eq!(answer, format!("bound {id}"));
        socket
    }

    fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            match self.0.read() {
                Ok(tokio_tungstenite::tungstenite::Message::Text(text)) => return Some(text.to_string()),
                Ok(_) => continue,
                Err(tokio_tungstenite::tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    continue;
                }
                Err(_) => return None,
            }
        }
        None
    }
}

fn serve(data: &Path, receiver_allowed: bool) -> Server {
    let mut extra = vec!["--rate-limit", "0"];
    if receiver_allowed {
        extra.extend(["--subscription-endpoints", "127.0.0.1"]);
    }
    start(data, &extra)
}

#[test]
fn every_acknowledged_write_is_notified_in_order_across_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let receiver = Receiver::start();
    let mut server = serve(&data, true);
    let base = server.base.clone();
    assert_eq!(put(&base, None, &json!({"resourceType": "Patient", "id": "p1"})).0, 201);

    let criteria = format!("Observation?code={LOINC}|1234-5&patient=Patient/p1");
    let (status, r4) = post(&base, None, &r4_subscription(&criteria, &format!("{}/r4", receiver.url)));
    assert_eq!(status, 201, "{r4}");
    let r4_id = r4["id"].as_str().unwrap().to_string();
    let backport = backport_subscription(
        "new-result",
        &format!("Observation?code={LOINC}|1234-5"),
        &format!("{}/backport", receiver.url),
        "id-only",
    );
    let (status, topic) = post(&base, None, &backport);
    assert_eq!(status, 201, "{topic}");
    let topic_id = topic["id"].as_str().unwrap().to_string();
    let websocket = json!({"resourceType": "Subscription", "status": "requested", "reason": "test",
        "criteria": criteria, "channel": {"type": "websocket"}});
    let (status, websocket) = post(&base, None, &websocket);
    assert_eq!(status, 201, "{websocket}");
    let ws_id = websocket["id"].as_str().unwrap().to_string();

    // The backport handshake activates the topic subscription; R4 ones are activated at once.
    wait_for("the handshake", Duration::from_secs(10), || status_of(&base, None, &topic_id) == "active");
    wait_for("activation", Duration::from_secs(10), || status_of(&base, None, &r4_id) == "active");
    let handshake: Value = serde_json::from_str(&receiver.at("/backport")[0].body).unwrap();
    let parameters = handshake["entry"][0]["resource"]["parameter"].as_array().unwrap();
    assert!(parameters.iter().any(|p| p["name"] == "type" && p["valueCode"] == "handshake"), "{handshake}");
    let capability = get(&base, None, "metadata").1;
    let extensions = capability["rest"][0]["extension"].as_array().unwrap();
    assert!(
        extensions.iter().any(|e| e["url"] == "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket"
            && e["valueUri"].as_str().unwrap().ends_with("/fhir/$subscription-websocket"))
    );

    let mut socket = Socket::bind(&base, &ws_id);
    // Writes that do not match are not notified.
    assert_eq!(post(&base, None, &observation("p1", "9999-9")).0, 201);
    let (_, first) = post(&base, None, &observation("p1", "1234-5"));
    let first_id = first["id"].as_str().unwrap().to_string();
    wait_for("the first rest-hook", Duration::from_secs(10), || !receiver.at("/r4").is_empty());
    let hook = &receiver.at("/r4")[0];
    assert_eq!(hook.headers.get("x-subscription-secret").map(String::as_str), Some("s3cret"), "channel.header sent");
    assert_eq!(hook.headers.get("content-type").map(String::as_str), Some("application/fhir+json"));
    let sent: Value = serde_json::from_str(&hook.body).unwrap();
    assert_eq!(sent["id"], first_id.as_str(), "the matching resource, not the other one");
    assert_eq!(socket.next_line(Duration::from_secs(10)), Some(format!("ping {ws_id}")));

    // A burst of matching writes, killed in the middle.
    let acknowledged = Arc::new(Mutex::new(vec![first_id]));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (base, acknowledged, stop) = (base.clone(), Arc::clone(&acknowledged), Arc::clone(&stop));
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            while !stop.load(Ordering::SeqCst) {
                let sent = client
                    .post(format!("{base}/Observation"))
                    .header("Content-Type", "application/fhir+json")
                    .body(observation("p1", "1234-5").to_string())
                    .send();
                match sent {
                    Ok(response) if response.status().as_u16() == 201 => {
                        let created: Value = response.json().unwrap();
                        acknowledged.lock().unwrap().push(created["id"].as_str().unwrap().to_string());
                    }
                    _ => break,
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    drop(server);
    let before = acknowledged.lock().unwrap().len();
    assert!(before > 5, "the burst wrote something before the kill ({before})");
    eprintln!(
        "{before} writes acknowledged before the kill, {} notified by then",
        first_deliveries(&receiver.at("/r4")).len()
    );

    let server = serve(&data, true);
    let base = server.base.clone();
    let mut socket_again = Socket::bind(&base, &ws_id);
    for _ in 0..5 {
        let (status, created) = post(&base, None, &observation("p1", "1234-5"));
        assert_eq!(status, 201);
        acknowledged.lock().unwrap().push(created["id"].as_str().unwrap().to_string());
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let wanted: HashSet<&String> = acknowledged.iter().collect();

    // R4 rest-hook: every acknowledged write, first deliveries in commit order.
    wait_for("every R4 notification", Duration::from_secs(60), || {
        let got: HashSet<String> =
            first_deliveries(&receiver.at("/r4")).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        wanted.iter().all(|id| got.contains(*id))
    });
    let firsts = first_deliveries(&receiver.at("/r4"));
    let order: Vec<time::OffsetDateTime> = firsts
        .iter()
        .map(|r| {
            let at = r["meta"]["lastUpdated"].as_str().unwrap();
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap()
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "R4 notifications in commit order");

    // Backport: event numbers 1..=n without a gap, in order, every acknowledged focus.
    wait_for("every topic notification", Duration::from_secs(60), || {
        let got: HashSet<String> = backport_events(&receiver.at("/backport")).into_iter().map(|(_, id)| id).collect();
        wanted.iter().all(|id| got.contains(*id))
    });
    let events = backport_events(&receiver.at("/backport"));
    let mut seen = HashSet::new();
    let numbers: Vec<i64> = events.iter().filter(|(n, _)| seen.insert(*n)).map(|(n, _)| *n).collect();
    assert_eq!(numbers, (1..=numbers.len() as i64).collect::<Vec<_>>(), "event numbers in order, none missing");
    let mut by_number: HashMap<i64, HashSet<&String>> = HashMap::new();
    for (number, id) in &events {
        by_number.entry(*number).or_default().insert(id);
    }
    assert!(by_number.values().all(|ids| ids.len() == 1), "one focus per event number, however often sent");

    // `$events` recovers them; `$status` counts them.
    let (status, recovered) =
        get(&base, None, &format!("Subscription/{topic_id}/$events?eventsSinceNumber=1&eventsUntilNumber=3"));
    assert_eq!(status, 200, "{recovered}");
    assert_eq!(
        backport_events(&[Received { path: String::new(), headers: HashMap::new(), body: recovered.to_string() }])
            .len(),
        0,
        "query-event is not an event-notification"
    );
    let recovered_numbers: Vec<&str> = recovered["entry"][0]["resource"]["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "notification-event")
        .map(|p| p["part"][0]["valueString"].as_str().unwrap())
        .collect();
    assert_eq!(recovered_numbers, ["1", "2", "3"]);
    let (status, state) = get(&base, None, &format!("Subscription/{topic_id}/$status"));
    assert_eq!(status, 200);
    let parameters = state["entry"][0]["resource"]["parameter"].as_array().unwrap();
    let since = parameters.iter().find(|p| p["name"] == "events-since-subscription-start").unwrap();
    assert!(since["valueString"].as_str().unwrap().parse::<usize>().unwrap() >= acknowledged.len());

    // The websocket client, bound again after the restart, is pinged for the later writes.
    assert_eq!(socket_again.next_line(Duration::from_secs(10)), Some(format!("ping {ws_id}")));
    drop(socket);
}

#[test]
fn a_failing_receiver_gets_retries_and_the_error_status_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let receiver = Receiver::start();
    receiver.failing.store(true, Ordering::SeqCst);
    let server = serve(&data, true);
    let base = server.base.clone();
    assert_eq!(put(&base, None, &json!({"resourceType": "Patient", "id": "p1"})).0, 201);
    let criteria = format!("Observation?code={LOINC}|1234-5");
    let (_, subscription) = post(&base, None, &r4_subscription(&criteria, &format!("{}/hook", receiver.url)));
    let id = subscription["id"].as_str().unwrap().to_string();
    let mut written = Vec::new();
    for _ in 0..3 {
        let (_, created) = post(&base, None, &observation("p1", "1234-5"));
        written.push(created["id"].as_str().unwrap().to_string());
    }
    wait_for("the error status", Duration::from_secs(30), || status_of(&base, None, &id) == "error");
    let errored = get(&base, None, &format!("Subscription/{id}")).1;
    assert!(errored["error"].as_str().unwrap().contains("HTTP 500"), "{errored}");
    let attempts = receiver.at("/hook").len();
    assert!(attempts >= 3, "retried ({attempts} attempts)");
    assert!(
        receiver.at("/hook").iter().all(|r| r.body.contains(&written[0])),
        "the first one, retried, waits for nothing later"
    );

    receiver.failing.store(false, Ordering::SeqCst);
    wait_for("the recovery", Duration::from_secs(60), || status_of(&base, None, &id) == "active");
    wait_for("the missed notifications", Duration::from_secs(30), || {
        first_deliveries(&receiver.at("/hook")).len() == 3
    });
    let delivered: Vec<String> =
        first_deliveries(&receiver.at("/hook")).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(delivered, written, "in order once resumed");
    assert!(get(&base, None, &format!("Subscription/{id}")).1.get("error").is_none(), "the error is cleared");
}

fn consent(id: &str, patient: &str, status: &str) -> Value {
    json!({
        "resourceType": "Consent", "id": id, "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": "permit", "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "reference": {"reference": "Organization/org-a"}
        }]}
    })
}

#[test]
fn an_owner_who_loses_access_to_a_patient_receives_nothing_more_about_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Two patients of org-b; their Consents share them with org-a.
    let mut entries = vec![
        json!({"resourceType": "Organization", "id": "org-a", "name": "A"}),
        json!({"resourceType": "Organization", "id": "org-b", "name": "B"}),
    ];
    for p in ["p1", "p2"] {
        entries.push(
            json!({"resourceType": "Patient", "id": p, "managingOrganization": {"reference": "Organization/org-b"}}),
        );
        entries.push(consent(&format!("c-{p}"), p, "active"));
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries.iter().map(|r| json!({
        "resource": r,
        "request": {"method": "PUT", "url": format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap())}
    })).collect::<Vec<_>>()});
    let file = dir.path().join("seed.json");
    std::fs::write(&file, bundle.to_string()).unwrap();
    for (user, org) in [("subscriber", "org-a"), ("writer", "org-b")] {
        continuum(
            &data,
            &["user", "add", user, "--role", "physician", "--org", org, "--password-stdin"],
            Some("a long enough password\n"),
        );
    }
    continuum(&data, &["import", file.to_str().unwrap()], None);
    let token = |user: &str| {
        String::from_utf8(continuum(&data, &["token", "--user", user, "--scope", "user/*.cruds"], None).stdout)
            .unwrap()
            .trim()
            .to_string()
    };
    let (subscriber, writer) = (token("subscriber"), token("writer"));
    let receiver = Receiver::start();
    let server = start_secured(&data, &["--rate-limit", "0", "--subscription-endpoints", "127.0.0.1"]);
    let base = server.base.clone();

    let criteria = format!("Observation?code={LOINC}|1234-5");
    let (status, subscription) =
        post(&base, Some(&subscriber), &r4_subscription(&criteria, &format!("{}/hook", receiver.url)));
    assert_eq!(status, 201, "{subscription}");
    let write = |patient: &str| {
        let (status, created) = post(&base, Some(&writer), &observation(patient, "1234-5"));
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_string()
    };
    let (one, two) = (write("p1"), write("p2"));
    wait_for("both patients' notifications", Duration::from_secs(20), || {
        first_deliveries(&receiver.at("/hook")).len() == 2
    });
    let ids: Vec<String> =
        first_deliveries(&receiver.at("/hook")).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, [one, two]);

    // p1's Consent is withdrawn: the subscriber no longer reaches p1.
    let (status, withdrawn) = put(&base, Some(&writer), &consent("c-p1", "p1", "inactive"));
    assert_eq!(status, 200, "{withdrawn}");
    assert_eq!(get(&base, Some(&subscriber), &format!("Observation/{}", ids[0])).0, 404, "p1 is out of reach now");
    let hidden = write("p1");
    let shown = write("p2");
    // Delivered in order per subscription: once p2's later one arrived, p1's was settled.
    wait_for("the later notification", Duration::from_secs(20), || {
        first_deliveries(&receiver.at("/hook")).iter().any(|r| r["id"] == shown.as_str())
    });
    let everything: Vec<String> = receiver.at("/hook").iter().map(|r| r.body.clone()).collect();
    assert!(everything.iter().all(|body| !body.contains(&hidden)), "nothing about p1 after the withdrawal");
    let about_p1_after: Vec<&String> = everything.iter().filter(|b| b.contains("Patient/p1")).collect();
    assert_eq!(about_p1_after.len(), 1, "only p1's notification from before the withdrawal");
}

#[test]
fn bad_subscriptions_are_refused_with_an_operation_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, false);
    let base = server.base.clone();
    let backport_unknown =
        backport_subscription("no-such-topic", "Encounter?status=in-progress", "https://8.8.8.8/hook", "id-only");
    let cases = [
        ("invalid criteria", r4_subscription("Observation?date=not-a-date", "https://8.8.8.8/hook")),
        ("unknown search parameter", r4_subscription("Observation?no-such-parameter=1", "https://8.8.8.8/hook")),
        ("unknown type", r4_subscription("NoSuchType?code=1", "https://8.8.8.8/hook")),
        ("non-http endpoint", r4_subscription("Observation?code=1", "ftp://8.8.8.8/hook")),
        ("loopback", r4_subscription("Observation?code=1", "http://127.0.0.1:9/hook")),
        ("localhost", r4_subscription("Observation?code=1", "http://localhost:9/hook")),
        ("metadata service", r4_subscription("Observation?code=1", "http://169.254.169.254/latest")),
        ("private", r4_subscription("Observation?code=1", "http://10.0.0.7/hook")),
        ("unknown topic", backport_unknown),
    ];
    for (what, subscription) in &cases {
        let (status, outcome) = post(&base, None, subscription);
        assert!((400..500).contains(&status), "{what}: {status} {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{what}: {outcome}");
    }
    // Through a transaction Bundle too (another door, the same hook).
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "kept"}, "request": {"method": "PUT", "url": "Patient/kept"}},
        {"resource": cases[4].1, "request": {"method": "POST", "url": "Subscription"}}
    ]});
    let response =
        client().post(&base).header("Content-Type", "application/fhir+json").body(bundle.to_string()).send().unwrap();
    assert!(response.status().is_client_error());
    assert_eq!(response.json::<Value>().unwrap()["resourceType"], "OperationOutcome");
    // Nothing was stored.
    let stored = get(&base, None, "Subscription").1;
    assert!(stored["entry"].as_array().is_none_or(Vec::is_empty), "{stored}");
    assert_eq!(get(&base, None, "Patient/kept").0, 404, "the transaction was rolled back whole");
    // A valid one is accepted.
    let (status, _) = post(&base, None, &r4_subscription("Observation?code=1", "https://8.8.8.8/hook"));
    assert_eq!(status, 201);
}
