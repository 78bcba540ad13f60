//! Outbound notifications end to end, in process: Encounter writes through `Records` (as the
//! FHIR API makes them) queue ADT messages in the outbox in the same transaction; the sender
//! delivers them over MLLP to a fake partner, which first answers AE (retried) and then AA
//! (delivered). Also the ORU^R01 of a DiagnosticReport.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use hl7_interface::outbound::{AdtNotifier, SenderConfig};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Records;
use store::outbox::{OutboundQuery, OutboundStatus, Outbox, Partner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A partner's MLLP listener that records every message and answers with the next code of
/// `answers` (then AA).
async fn fake_partner(answers: Vec<&'static str>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let received = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(answers));
    let seen = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (seen, answers) = (Arc::clone(&seen), Arc::clone(&answers));
            tokio::spawn(async move {
                let mut decoder = hl7v2::mllp::Decoder::new();
                let mut buffer = [0u8; 8192];
                loop {
                    let Ok(n) = stream.read(&mut buffer).await else { return };
                    if n == 0 {
                        return;
                    }
                    for frame in decoder.decode(&buffer[..n]) {
                        let text = String::from_utf8(frame.unwrap()).unwrap();
                        let message = hl7v2::Message::parse(&text).unwrap();
                        let code = {
                            let mut answers = answers.lock().unwrap();
                            if answers.is_empty() { "AA" } else { answers.remove(0) }
                        };
                        seen.lock().unwrap().push(text);
                        let header = hl7v2::AckHeader { control_id: "P1", timestamp: "20240101000000" };
                        let ack = hl7v2::ack(
                            &message,
                            match code {
                                "AE" => hl7v2::AckCode::AE,
                                "AR" => hl7v2::AckCode::AR,
                                _ => hl7v2::AckCode::AA,
                            },
                            None,
                            &header,
                        )
                        .encode();
                        stream.write_all(&hl7v2::mllp::frame(ack.as_bytes()).unwrap()).await.unwrap();
                    }
                }
            });
        }
    });
    (address, received)
}

fn patient() -> serde_json::Value {
    json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.3.4", "value": "MRN7"}],
           "name": [{"family": "Doe", "given": ["Jane"]}], "gender": "female", "birthDate": "1980-02-15"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admissions_and_discharges_reach_the_partner_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
    let outbox: Arc<dyn Outbox> = Arc::new(backend.outbox().unwrap());
    let records = Records::new(backend.clone()).with_hook(Arc::new(AdtNotifier));
    // First answer AE: the A01 is retried, then delivered.
    let (address, received) = fake_partner(vec!["AE"]).await;
    let events = vec!["A01".to_string(), "A03".to_string()];
    outbox.put_partner(&Partner { name: "adt-feed".into(), address, events }).unwrap();
    let config = SenderConfig {
        poll: Duration::from_millis(20),
        first_backoff: Duration::from_millis(50),
        ..SenderConfig::default()
    };
    tokio::spawn(hl7_interface::outbound::deliver(Arc::clone(&outbox), config, std::future::pending()));

    let (r, p) = (records.clone(), patient());
    let patient_id = tokio::task::spawn_blocking(move || r.create(p, None).unwrap().version.unwrap().id).await.unwrap();
    let encounter = json!({"resourceType": "Encounter", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "period": {"start": "2024-03-01T11:30:00+01:00"}});
    let r = records.clone();
    let written = tokio::task::spawn_blocking(move || r.create(encounter, None).unwrap()).await.unwrap();
    let encounter_id = written.version.as_ref().unwrap().id.clone();
    let mut body: serde_json::Value = serde_json::from_str(written.version.unwrap().body.as_deref().unwrap()).unwrap();
    // An update that is no event the partner takes (A08 is not subscribed): nothing queued.
    body["serviceType"] = json!({"coding": [{"code": "MED"}]});
    let r = records.clone();
    let (id, update) = (encounter_id.clone(), body.clone());
    tokio::task::spawn_blocking(move || r.update("Encounter", &id, update, None).unwrap()).await.unwrap();
    // Discharge.
    body["status"] = json!("finished");
    body["period"]["end"] = json!("2024-03-05T10:00:00+01:00");
    let r = records.clone();
    let id = encounter_id.clone();
    tokio::task::spawn_blocking(move || r.update("Encounter", &id, body, None).unwrap()).await.unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let delivered =
            outbox.list(&OutboundQuery { statuses: vec![OutboundStatus::Delivered], ..Default::default() }).unwrap();
        if delivered.len() == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not delivered: {:?}", outbox.list(&OutboundQuery::default()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = outbox.list(&OutboundQuery::default()).unwrap();
    assert_eq!(all.len(), 2, "A01 and A03 only");
    let a01 = all.iter().find(|m| m.event == "A01").unwrap();
    assert_eq!(a01.attempts, 2, "AE, then AA");
    assert_eq!(a01.resource, format!("Encounter/{encounter_id}"));
    assert_eq!(a01.patient.as_deref(), Some(patient_id.as_str()));
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 3, "the A01 twice (AE, retried), the A03 once");
    let first = hl7v2::Message::parse(&received[0]).unwrap();
    assert_eq!(first.get("MSH-9.2").as_deref(), Some("A01"));
    assert_eq!(first.get("PID-3.1").as_deref(), Some("MRN7"));
    assert_eq!(first.get("PID-3.4.2").as_deref(), Some("1.2.3.4"));
    assert_eq!(first.get("PID-5.1").as_deref(), Some("Doe"));
    assert_eq!(first.get("PID-7").as_deref(), Some("19800215"));
    assert_eq!(first.get("PV1-2").as_deref(), Some("I"));
    assert_eq!(first.get("PV1-19").as_deref(), Some(encounter_id.as_str()));
    assert_eq!(first.get("PV1-44").as_deref(), Some("20240301113000+0100"));
    assert_eq!(received[1], received[0], "the retry sends the same message");
    let discharge = hl7v2::Message::parse(&received[2]).unwrap();
    assert_eq!(discharge.get("MSH-9.2").as_deref(), Some("A03"));
    assert_eq!(discharge.get("PV1-45").as_deref(), Some("20240305100000+0100"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_that_always_refuses_ends_dead_and_writes_without_partners_queue_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
    let outbox: Arc<dyn Outbox> = Arc::new(backend.outbox().unwrap());
    let records = Records::new(backend.clone()).with_hook(Arc::new(AdtNotifier));
    let emergency = || {
        json!({"resourceType": "Encounter", "status": "in-progress",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}})
    };
    let r = records.clone();
    tokio::task::spawn_blocking(move || r.create(emergency(), None).unwrap()).await.unwrap();
    assert!(outbox.list(&OutboundQuery::default()).unwrap().is_empty(), "no partner, no rows");

    let (address, received) = fake_partner(vec!["AR"; 10]).await;
    outbox.put_partner(&Partner { name: "ed".into(), address, events: vec!["A04".into()] }).unwrap();
    let config = SenderConfig {
        poll: Duration::from_millis(20),
        first_backoff: Duration::from_millis(10),
        max_attempts: 3,
        ..SenderConfig::default()
    };
    tokio::spawn(hl7_interface::outbound::deliver(Arc::clone(&outbox), config, std::future::pending()));
    let r = records.clone();
    tokio::task::spawn_blocking(move || r.create(emergency(), None).unwrap()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let dead = outbox.list(&OutboundQuery { statuses: vec![OutboundStatus::Dead], ..Default::default() }).unwrap();
        if let Some(message) = dead.first() {
            assert_eq!((message.event.as_str(), message.attempts), ("A04", 3));
            assert_eq!(message.last_error.as_deref(), Some("the partner answered AR"));
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(received.lock().unwrap().len(), 3);
}

#[test]
fn an_oru_is_produced_for_a_diagnostic_report() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
    let records = Records::new(backend);
    let patient_id = records.create(patient(), None).unwrap().version.unwrap().id;
    let glucose = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": "2024-03-01T08:00:00Z",
        "valueQuantity": {"value": 182, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
        "referenceRange": [{"low": {"value": 70}, "high": {"value": 105}}],
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}]}]});
    let obs_id = records.create(glucose, None).unwrap().version.unwrap().id;
    let report = json!({"resourceType": "DiagnosticReport", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8", "display": "Metabolic panel"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": "2024-03-01T08:00:00Z", "issued": "2024-03-01T09:00:00Z",
        "result": [{"reference": format!("Observation/{obs_id}")}]});
    let report_id = records.create(report, None).unwrap().version.unwrap().id;
    let oru = hl7_interface::outbound::oru_r01(&records, &report_id).unwrap();
    let message = hl7v2::Message::parse(&oru).unwrap();
    assert_eq!(message.get("MSH-9").as_deref(), Some("ORU"));
    assert_eq!(message.get("MSH-9.2").as_deref(), Some("R01"));
    assert_eq!(message.get("PID-3.1").as_deref(), Some("MRN7"));
    assert_eq!(message.get("OBR-4.1").as_deref(), Some("24323-8"));
    assert_eq!(message.get("OBR-4.3").as_deref(), Some("LN"));
    assert_eq!(message.get("OBR-25").as_deref(), Some("F"));
    assert_eq!(message.get("OBX-2").as_deref(), Some("NM"));
    assert_eq!(message.get("OBX-3.1").as_deref(), Some("2345-7"));
    assert_eq!(message.get("OBX-5").as_deref(), Some("182"));
    assert_eq!(message.get("OBX-6.1").as_deref(), Some("mg/dL"));
    assert_eq!(message.get("OBX-6.3").as_deref(), Some("UCUM"));
    assert_eq!(message.get("OBX-7").as_deref(), Some("70-105"));
    assert_eq!(message.get("OBX-8").as_deref(), Some("H"));
    assert_eq!(message.get("OBX-14").as_deref(), Some("20240301080000+0000"));
    assert!(matches!(
        hl7_interface::outbound::oru_r01(&records, "nope"),
        Err(hl7_interface::outbound::OutboundError::NotFound(_))
    ));
}
