//! The whole flow over a real socket: the MLLP listener on 127.0.0.1:0 in front of a SQLite
//! store; messages sent framed, ACKs read back, and the resulting resources checked through
//! `Records`, field by field.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use hl7_interface::{Interface, ListenerConfig};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use store::messages::{MessageLog, MessageStatus};
use store::{MessageQuery, Records};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Harness {
    _dir: tempfile::TempDir,
    records: Records,
    log: Arc<dyn MessageLog>,
    interface: Arc<Interface>,
    address: std::net::SocketAddr,
}

async fn start(max_frame_len: usize) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
    let log: Arc<dyn MessageLog> = Arc::new(backend.message_log().unwrap());
    let records = Records::new(backend);
    // This machine is the one partner, allowed every destructive event.
    let local = store::InboundPartner {
        name: "local".into(),
        addresses: vec!["127.0.0.1".into()],
        allowed_events: hl7_interface::partners::DESTRUCTIVE_EVENTS.iter().map(|e| e.to_string()).collect(),
    };
    log.put_inbound_partner(&local).unwrap();
    let interface = Arc::new(Interface::new(access::Door::open(records.clone()), Arc::clone(&log)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = ListenerConfig { max_frame_len, ..ListenerConfig::default() };
    tokio::spawn(hl7_interface::serve(listener, Arc::clone(&interface), config, std::future::pending()));
    Harness { _dir: dir, records, log, interface, address }
}

/// Sends one framed message and reads the framed ACK.
async fn exchange(stream: &mut TcpStream, message: &[u8]) -> String {
    let framed = hl7v2::mllp::frame(message).unwrap();
    stream.write_all(&framed).await.unwrap();
    read_ack(stream).await.expect("an ACK")
}

async fn read_ack(stream: &mut TcpStream) -> Option<String> {
    let mut decoder = hl7v2::mllp::Decoder::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(frame) = decoder.decode(&buffer[..n]).into_iter().next() {
            return Some(String::from_utf8(frame.unwrap()).unwrap());
        }
    }
}

fn msa(ack: &str) -> (String, String) {
    let message = hl7v2::Message::parse(ack).unwrap();
    (message.get("MSA-1").unwrap_or_default(), message.get("MSA-2").unwrap_or_default())
}

/// A segment with the given fields set (1-based), the others empty.
fn seg(id: &str, fields: &[(usize, &str)]) -> String {
    let last = fields.iter().map(|f| f.0).max().unwrap_or(0);
    let mut parts = vec![String::new(); last + 1];
    parts[0] = id.to_string();
    for (n, value) in fields {
        parts[*n] = (*value).to_string();
    }
    parts.join("|")
}

fn msh(kind: &str, control: &str) -> String {
    format!("MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|CONTINUUM|CONT|20240301120000+0100||{kind}|{control}|P|2.5.1")
}

fn message(segments: &[String]) -> Vec<u8> {
    let mut text = segments.join("\r");
    text.push('\r');
    text.into_bytes()
}

const MRN: &str = "MRN123^^^GHH&1.2.3.4&ISO^MR";
const VISIT: &str = "V100^^^GHH&1.2.3.4&ISO^VN";

fn pid(mrn: &str) -> String {
    // Each patient its own social security number: a shared identifier means the same person.
    let ssn = if mrn == MRN { "999-11-2222" } else { "999-11-3333" };
    seg(
        "PID",
        &[
            (1, "1"),
            (3, &format!("{mrn}~{ssn}^^^USSSA^SS")),
            (5, "Doe^Jane^Q^^Ms.^^L"),
            (7, "19800215"),
            (8, "F"),
            (11, "12 Main St^Apt 4^Springfield^IL^62701^USA^H"),
            (13, "^PRN^PH^^1^217^5550101"),
            (16, "M"),
        ],
    )
}

fn pv1(extra: &[(usize, &str)]) -> String {
    let mut fields = vec![
        (1, "1"),
        (2, "I"),
        (3, "WARD1^101^A^GHH"),
        (7, "1234^Smith^John^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO"),
        (10, "MED"),
        (19, VISIT),
        (44, "20240301113000+0100"),
    ];
    fields.extend_from_slice(extra);
    seg("PV1", &fields)
}

fn adt(trigger: &str, control: &str, pv1_extra: &[(usize, &str)]) -> Vec<u8> {
    message(&[
        msh(&format!("ADT^{trigger}^ADT_A01"), control),
        seg("EVN", &[(1, trigger), (2, "20240301120000+0100")]),
        pid(MRN),
        pv1(pv1_extra),
    ])
}

fn find(records: &Records, resource_type: &str, system: &str, value: &str) -> Value {
    let ids = records.backend().find_by_identifier(resource_type, Some(system), value).unwrap();
    assert_eq!(ids.len(), 1, "{resource_type} {system}|{value}: {ids:?}");
    let version = records.read(resource_type, &ids[0]).unwrap();
    serde_json::from_str(version.body.as_deref().unwrap()).unwrap()
}

fn count(records: &Records, resource_type: &str) -> u64 {
    records.backend().count_by_type().unwrap().into_iter().find(|(t, _)| t == resource_type).map_or(0, |(_, n)| n)
}

const GHH: &str = "urn:oid:1.2.3.4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adt_flow_duplicates_errors_and_merge() {
    let h = start(1024 * 1024).await;
    let mut c = TcpStream::connect(h.address).await.unwrap();

    // A01: admission.
    let ack = exchange(&mut c, &adt("A01", "A01-1", &[])).await;
    assert_eq!(msa(&ack), ("AA".into(), "A01-1".into()), "{ack}");
    let patient = find(&h.records, "Patient", GHH, "MRN123");
    assert_eq!(patient["name"][0]["family"], "Doe");
    assert_eq!(patient["name"][0]["given"], serde_json::json!(["Jane", "Q"]));
    assert_eq!(patient["name"][0]["use"], "official");
    assert_eq!(patient["birthDate"], "1980-02-15");
    assert_eq!(patient["gender"], "female");
    assert_eq!(patient["address"][0]["city"], "Springfield");
    assert_eq!(patient["address"][0]["line"], serde_json::json!(["12 Main St", "Apt 4"]));
    assert_eq!(patient["telecom"][0]["value"], "1 217 5550101");
    assert_eq!(patient["telecom"][0]["use"], "home");
    assert_eq!(patient["maritalStatus"]["coding"][0]["code"], "M");
    assert_eq!(patient["identifier"][0]["type"]["coding"][0]["code"], "MR");
    assert_eq!(patient["identifier"][1]["system"], "urn:continuum:hl7v2:authority:USSSA");
    let patient_id = patient["id"].as_str().unwrap().to_string();
    let encounter = find(&h.records, "Encounter", GHH, "V100");
    assert_eq!(encounter["status"], "in-progress");
    assert_eq!(encounter["class"]["code"], "IMP");
    assert_eq!(encounter["subject"]["reference"], format!("Patient/{patient_id}"));
    assert_eq!(encounter["period"]["start"], "2024-03-01T11:30:00+01:00");
    assert_eq!(encounter["serviceType"]["coding"][0]["code"], "MED");
    let attending = encounter["participant"][0]["individual"]["reference"].as_str().unwrap();
    let practitioner = find(&h.records, "Practitioner", "urn:oid:2.16.840.1.113883.4.6", "1234");
    assert_eq!(attending, format!("Practitioner/{}", practitioner["id"].as_str().unwrap()));
    assert_eq!(practitioner["name"][0]["family"], "Smith");
    let location_ref = encounter["location"][0]["location"]["reference"].as_str().unwrap();
    let location = h.records.read("Location", location_ref.split('/').nth(1).unwrap()).unwrap();
    assert!(location.body.as_deref().unwrap().contains("WARD1 101 A GHH"));
    // The Provenance points at the logged message and at what it wrote.
    let logged = h.log.list(&MessageQuery::default()).unwrap();
    let first = &logged[0];
    assert_eq!(first.status, MessageStatus::Processed);
    assert_eq!(first.outcome.patient.as_deref(), Some(patient_id.as_str()));
    let provenance = h.records.read("Provenance", &hl7_interface::provenance_id(first.id)).unwrap();
    let provenance: Value = serde_json::from_str(provenance.body.as_deref().unwrap()).unwrap();
    assert_eq!(provenance["entity"][0]["what"]["identifier"]["value"], first.id.to_string());
    let targets = provenance["target"].to_string();
    assert!(targets.contains(&format!("Patient/{patient_id}")) && targets.contains("Encounter/"), "{targets}");

    // The same message again: acknowledged, not applied twice.
    let versions = h.records.read("Patient", &patient_id).unwrap().version;
    let ack = exchange(&mut c, &adt("A01", "A01-1", &[])).await;
    assert_eq!(msa(&ack).0, "AA");
    assert_eq!(h.records.read("Patient", &patient_id).unwrap().version, versions);
    assert_eq!(count(&h.records, "Encounter"), 1);
    assert_eq!(count(&h.records, "Provenance"), 1);
    let latest = &h.log.list(&MessageQuery::default()).unwrap()[0];
    assert_eq!((latest.status, latest.outcome.duplicate_of), (MessageStatus::Duplicate, Some(first.id)));

    // A03 discharge: finished, with its end and disposition.
    let ack = exchange(&mut c, &adt("A03", "A03-1", &[(36, "01"), (45, "20240305100000+0100")])).await;
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    let encounter = find(&h.records, "Encounter", GHH, "V100");
    assert_eq!(encounter["status"], "finished");
    assert_eq!(encounter["period"]["end"], "2024-03-05T10:00:00+01:00");
    assert_eq!(encounter["hospitalization"]["dischargeDisposition"]["coding"][0]["code"], "01");
    // A13 cancels the discharge.
    let ack = exchange(&mut c, &adt("A13", "A13-1", &[(36, "01"), (45, "20240305100000+0100")])).await;
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    let encounter = find(&h.records, "Encounter", GHH, "V100");
    assert_eq!(encounter["status"], "in-progress");
    assert!(
        encounter["period"].get("end").is_none() && encounter["hospitalization"].get("dischargeDisposition").is_none()
    );
    // A11 cancels the admission.
    let ack = exchange(&mut c, &adt("A11", "A11-1", &[])).await;
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    assert_eq!(find(&h.records, "Encounter", GHH, "V100")["status"], "cancelled");
    assert_eq!(count(&h.records, "Encounter"), 1);
    assert_eq!(count(&h.records, "Patient"), 1);

    // Missing PID: AE with an ERR that names the segment, and nothing changes.
    let before = h.records.backend().count_by_type().unwrap();
    let no_pid = message(&[msh("ADT^A01^ADT_A01", "BAD-1"), seg("EVN", &[(1, "A01")]), pv1(&[])]);
    let ack = exchange(&mut c, &no_pid).await;
    assert_eq!(msa(&ack).0, "AE", "{ack}");
    assert!(ack.contains("\rERR|") && ack.contains("PID"), "{ack}");
    assert!(!ack.contains("Doe"), "no PHI in the ACK");
    // Unknown trigger and wrong version: AR.
    let ack = exchange(&mut c, &message(&[msh("ADT^A99^ADT_A01", "BAD-2"), pid(MRN)])).await;
    assert_eq!(msa(&ack).0, "AR", "{ack}");
    let old = message(&[msh("ADT^A01^ADT_A01", "BAD-3").replace("|2.5.1", "|2.1"), pid(MRN), pv1(&[])]);
    let ack = exchange(&mut c, &old).await;
    assert_eq!(msa(&ack).0, "AR", "{ack}");
    // Bad data type (birth date): AE, nothing applied.
    let bad_date = message(&[msh("ADT^A08^ADT_A01", "BAD-4"), pid(MRN).replace("19800215", "1980-02-15"), pv1(&[])]);
    let ack = exchange(&mut c, &bad_date).await;
    assert_eq!(msa(&ack).0, "AE", "{ack}");
    assert_eq!(h.records.backend().count_by_type().unwrap(), before);
    let failed = h.log.list(&MessageQuery { statuses: vec![MessageStatus::Failed], ..Default::default() }).unwrap();
    assert_eq!(failed.len(), 2);

    // A40 for an unknown prior patient fails (dead letter); once that patient exists, a
    // replay applies the merge.
    let prior = "MRN456^^^GHH&1.2.3.4&ISO^MR";
    let a40 =
        message(&[msh("ADT^A40^ADT_A39", "A40-1"), seg("EVN", &[(1, "A40")]), pid(MRN), seg("MRG", &[(1, prior)])]);
    let ack = exchange(&mut c, &a40).await;
    assert_eq!(msa(&ack).0, "AE", "{ack}");
    let dead = h.log.list(&MessageQuery { statuses: vec![MessageStatus::Failed], ..Default::default() }).unwrap();
    let a40_id = dead[0].id;
    assert_eq!(dead[0].message_type, "ADT^A40");
    let other = message(&[
        msh("ADT^A01^ADT_A01", "A01-2"),
        seg("EVN", &[(1, "A01")]),
        pid(prior),
        seg("PV1", &[(1, "1"), (2, "E"), (19, "V200^^^GHH&1.2.3.4&ISO^VN"), (44, "20240201")]),
    ]);
    assert_eq!(msa(&exchange(&mut c, &other).await).0, "AA");
    let replayed = h.interface.replay(a40_id).unwrap();
    assert_eq!(replayed.status, Some(MessageStatus::Processed), "{:?}", replayed.ack);
    let old_patient = find(&h.records, "Patient", GHH, "MRN456");
    assert_eq!(old_patient["active"], false);
    assert_eq!(old_patient["link"][0]["type"], "replaced-by");
    assert_eq!(old_patient["link"][0]["other"]["reference"], format!("Patient/{patient_id}"));
    let survivor = h.records.read("Patient", &patient_id).unwrap();
    assert!(survivor.body.as_deref().unwrap().contains("\"replaces\""));
    let moved = find(&h.records, "Encounter", GHH, "V200");
    assert_eq!(moved["subject"]["reference"], format!("Patient/{patient_id}"));
    assert!(matches!(h.interface.replay(a40_id), Err(hl7_interface::ReplayError::AlreadyApplied)));
    // The merge was the identity service's: its Provenance names both patients' new versions.
    let query = search::query::SearchQuery::parse(
        Some("Provenance"),
        &[("target".to_string(), format!("Patient/{}", old_patient["id"].as_str().unwrap()))],
        false,
    )
    .unwrap();
    let merges: Vec<Value> = h
        .records
        .search(&query, 10)
        .unwrap()
        .matches
        .iter()
        .map(|v| serde_json::from_str::<Value>(v.body.as_deref().unwrap()).unwrap())
        .filter(|p| p["activity"]["coding"][0]["code"] == "merge")
        .collect();
    assert_eq!(merges.len(), 1);
    // The same merge sent again (another control id) changes nothing and is acknowledged.
    let again =
        message(&[msh("ADT^A40^ADT_A39", "A40-2"), seg("EVN", &[(1, "A40")]), pid(MRN), seg("MRG", &[(1, prior)])]);
    let ack = exchange(&mut c, &again).await;
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    assert_eq!(find(&h.records, "Patient", GHH, "MRN456")["active"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_immunizations_and_appointments() {
    let h = start(1024 * 1024).await;
    let mut c = TcpStream::connect(h.address).await.unwrap();
    assert_eq!(msa(&exchange(&mut c, &adt("A04", "A04-1", &[])).await).0, "AA");
    let patient_id = find(&h.records, "Patient", GHH, "MRN123")["id"].as_str().unwrap().to_string();
    let subject = format!("Patient/{patient_id}");

    let oru = message(&[
        msh("ORU^R01^ORU_R01", "ORU-1"),
        seg("PID", &[(1, "1"), (3, MRN), (5, "Doe^Jane")]),
        seg(
            "OBR",
            &[
                (1, "1"),
                (2, "PL1^LAB"),
                (3, "FL1^LAB"),
                (4, "24323-8^Comprehensive metabolic panel^LN"),
                (7, "20240302080000+0100"),
                (22, "20240302100000+0100"),
                (25, "F"),
            ],
        ),
        seg(
            "OBX",
            &[
                (1, "1"),
                (2, "NM"),
                (3, "2345-7^Glucose^LN"),
                (5, "182"),
                (6, "mg/dL^mg/dL^UCUM"),
                (7, "70-105"),
                (8, "H"),
                (11, "F"),
            ],
        ),
        seg("OBX", &[(1, "2"), (2, "SN"), (3, "2160-0^Creatinine^LN"), (5, "<^0.5"), (6, "mg/dL"), (11, "C")]),
        seg("OBX", &[(1, "3"), (2, "ST"), (3, "8251-1^Comment^LN"), (5, "hemolyzed"), (11, "P")]),
        seg("SPM", &[(1, "1"), (2, "SP1"), (4, "119297000^Blood specimen^SCT"), (17, "20240302075000+0100")]),
    ]);
    let ack = exchange(&mut c, &oru).await;
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    let report = find(&h.records, "DiagnosticReport", "urn:continuum:hl7v2:authority:LAB", "FL1");
    assert_eq!(report["status"], "final");
    assert_eq!(report["code"]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(report["code"]["coding"][0]["code"], "24323-8");
    assert_eq!(report["subject"]["reference"], subject);
    assert_eq!(report["issued"], "2024-03-02T10:00:00+01:00");
    assert_eq!(report["result"].as_array().unwrap().len(), 3);
    let glucose = find(&h.records, "Observation", "urn:continuum:hl7v2:authority:LAB", "FL1-obx-1");
    assert_eq!(glucose["code"]["coding"][0]["code"], "2345-7");
    assert_eq!(glucose["valueQuantity"]["value"].to_string(), "182");
    assert_eq!(glucose["valueQuantity"]["system"], "http://unitsofmeasure.org");
    assert_eq!(glucose["valueQuantity"]["code"], "mg/dL");
    assert_eq!(glucose["referenceRange"][0]["low"]["value"].to_string(), "70");
    assert_eq!(glucose["referenceRange"][0]["high"]["value"].to_string(), "105");
    assert_eq!(glucose["interpretation"][0]["coding"][0]["code"], "H");
    assert_eq!(glucose["status"], "final");
    assert_eq!(glucose["effectiveDateTime"], "2024-03-02T08:00:00+01:00");
    assert!(glucose["specimen"]["reference"].as_str().unwrap().starts_with("Specimen/"));
    let creatinine = find(&h.records, "Observation", "urn:continuum:hl7v2:authority:LAB", "FL1-obx-2");
    assert_eq!(creatinine["valueQuantity"]["comparator"], "<");
    assert_eq!(creatinine["valueQuantity"]["value"].to_string(), "0.5");
    assert_eq!(creatinine["status"], "corrected");
    let comment = find(&h.records, "Observation", "urn:continuum:hl7v2:authority:LAB", "FL1-obx-3");
    assert_eq!((comment["valueString"].as_str(), comment["status"].as_str()), (Some("hemolyzed"), Some("preliminary")));
    let specimen =
        find(&h.records, "Specimen", "urn:continuum:hl7v2:authority:GOOD%20HEALTH%20HOSPITAL:specimen", "SP1");
    assert_eq!(specimen["type"]["coding"][0]["system"], "http://snomed.info/sct");
    assert_eq!(specimen["collection"]["collectedDateTime"], "2024-03-02T07:50:00+01:00");
    // A corrected result replaces the value instead of adding an observation.
    let corrected = String::from_utf8(oru.clone()).unwrap().replace("ORU-1", "ORU-2").replace("|182|", "|168|");
    assert_eq!(msa(&exchange(&mut c, corrected.as_bytes()).await).0, "AA");
    let glucose = find(&h.records, "Observation", "urn:continuum:hl7v2:authority:LAB", "FL1-obx-1");
    assert_eq!(glucose["valueQuantity"]["value"].to_string(), "168");
    assert_eq!(count(&h.records, "Observation"), 3);
    assert_eq!(count(&h.records, "Patient"), 1, "results do not create a second patient");

    let vxu = message(&[
        msh("VXU^V04^VXU_V04", "VXU-1"),
        seg("PID", &[(1, "1"), (3, MRN), (5, "Doe^Jane")]),
        seg("ORC", &[(1, "RE"), (3, "IZ-55^GHH")]),
        seg(
            "RXA",
            &[
                (1, "0"),
                (2, "1"),
                (3, "20240110"),
                (5, "08^Hep B, adolescent or pediatric^CVX"),
                (6, "0.5"),
                (7, "mL^mL^UCUM"),
                (9, "00^New immunization record^NIP001"),
                (15, "LOT-789"),
                (16, "20250101"),
                (17, "MSD^Merck^MVX"),
                (20, "CP"),
                (21, "A"),
            ],
        ),
        seg("RXR", &[(1, "C28161^Intramuscular^NCIT"), (2, "LA^Left Arm^HL70163")]),
    ]);
    let ack = exchange(&mut c, &vxu).await;
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    let shot = find(&h.records, "Immunization", "urn:continuum:hl7v2:authority:GHH", "IZ-55");
    assert_eq!(shot["vaccineCode"]["coding"][0]["system"], "http://hl7.org/fhir/sid/cvx");
    assert_eq!(shot["vaccineCode"]["coding"][0]["code"], "08");
    assert_eq!(shot["occurrenceDateTime"], "2024-01-10");
    assert_eq!(shot["lotNumber"], "LOT-789");
    assert_eq!(shot["expirationDate"], "2025-01-01");
    assert_eq!(shot["status"], "completed");
    assert_eq!(shot["primarySource"], true);
    assert_eq!(shot["manufacturer"]["identifier"]["value"], "MSD");
    assert_eq!(shot["doseQuantity"]["value"].to_string(), "0.5");
    assert_eq!(shot["site"]["coding"][0]["system"], "http://terminology.hl7.org/CodeSystem/v2-0163");
    assert_eq!(shot["patient"]["reference"], subject);

    let siu = |trigger: &str, control: &str| {
        message(&[
            msh(&format!("SIU^{trigger}^SIU_S12"), control),
            seg(
                "SCH",
                &[(1, "APT-1^SCHED"), (2, "APT-F1^SCHED"), (8, "ROUTINE^Routine^HL70276"), (9, "30"), (10, "min")],
            ),
            seg("TQ1", &[(7, "20240320090000+0100"), (8, "20240320093000+0100")]),
            seg("PID", &[(1, "1"), (3, MRN), (5, "Doe^Jane")]),
            seg("RGS", &[(1, "1")]),
            seg("AIP", &[(1, "1"), (3, "1234^Smith^John^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO"), (4, "D^Doctor")]),
        ])
    };
    let ack = exchange(&mut c, &siu("S12", "SIU-1")).await;
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    let appointment = find(&h.records, "Appointment", "urn:continuum:hl7v2:authority:SCHED", "APT-F1");
    assert_eq!(appointment["status"], "booked");
    assert_eq!(appointment["start"], "2024-03-20T09:00:00+01:00");
    assert_eq!(appointment["end"], "2024-03-20T09:30:00+01:00");
    assert_eq!(appointment["minutesDuration"], 30);
    assert_eq!(appointment["participant"][0]["actor"]["reference"], subject);
    assert!(appointment["participant"][1]["actor"]["reference"].as_str().unwrap().starts_with("Practitioner/"));
    let ack = exchange(&mut c, &siu("S15", "SIU-2")).await;
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    let appointment = find(&h.records, "Appointment", "urn:continuum:hl7v2:authority:SCHED", "APT-F1");
    assert_eq!(appointment["status"], "cancelled");
    assert_eq!(count(&h.records, "Appointment"), 1);

    // The message log answers by patient and type.
    let about = h
        .log
        .list(&MessageQuery {
            patient: Some(patient_id.clone()),
            message_type: Some("SIU".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(about.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_messages_are_acknowledged() {
    let h = start(1024 * 1024).await;
    let mut c = TcpStream::connect(h.address).await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for name in ["ADT-A01-01.hl7", "ADT-A03-01.hl7", "ORU-R01-RMGEAD.hl7", "VXU-V04-01.hl7", "SIU-S12-01.hl7"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let ack = exchange(&mut c, &bytes).await;
        // The corpus reuses control ids across files (MSG00001); ADT-A03-01 repeats A01-01's.
        assert_eq!(msa(&ack).0, "AA", "{name}: {ack}");
    }
    let glucose = find(&h.records, "Observation", "urn:continuum:hl7v2:authority:GHH%20LAB", "1045813-obx-1");
    assert_eq!(glucose["valueQuantity"]["value"].to_string(), "182");
    assert_eq!(glucose["interpretation"][0]["coding"][0]["code"], "H");
    assert!(count(&h.records, "Immunization") == 1 && count(&h.records, "Appointment") == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_do_not_disturb_other_connections() {
    let h = start(64 * 1024).await;
    let good = tokio::spawn({
        let address = h.address;
        async move {
            let mut c = TcpStream::connect(address).await.unwrap();
            for i in 0..30 {
                let ack = exchange(&mut c, &adt("A08", &format!("GOOD-{i}"), &[])).await;
                assert_eq!(msa(&ack).0, "AA", "{ack}");
            }
        }
    });
    // Garbage outside frames, then a framed non-message: AR for the latter.
    let mut garbage = TcpStream::connect(h.address).await.unwrap();
    garbage.write_all(b"hello there\r\n\x00\xff").await.unwrap();
    let ack = exchange(&mut garbage, b"not an HL7 message at all").await;
    assert_eq!(msa(&ack).0, "AR", "{ack}");
    // An oversized frame: the connection is closed without an ACK.
    let mut big = TcpStream::connect(h.address).await.unwrap();
    let mut frame = vec![0x0B];
    frame.extend(std::iter::repeat_n(b'A', 200 * 1024));
    let _ = big.write_all(&frame).await;
    assert_eq!(read_ack(&mut big).await, None);
    // A truncated frame: the peer goes away mid-frame.
    let mut cut = TcpStream::connect(h.address).await.unwrap();
    cut.write_all(b"\x0bMSH|^~\\&|X|Y|Z|W|2024||ADT^A01|T1|P|2.5.1\rPID|1").await.unwrap();
    drop(cut);
    good.await.unwrap();
    // The good connection's messages were all applied, and nothing else was.
    let processed =
        h.log.list(&MessageQuery { statuses: vec![MessageStatus::Processed], ..Default::default() }).unwrap();
    assert_eq!(processed.len(), 30);
    assert_eq!(count(&h.records, "Patient"), 1);
    let rejected = h.log.list(&MessageQuery { statuses: vec![MessageStatus::Rejected], ..Default::default() }).unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].raw.len(), 0, "listed without raw bytes");
    assert_eq!(h.log.get(rejected[0].id).unwrap().unwrap().raw, b"not an HL7 message at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_frame_is_refused_with_the_default_limit() {
    let h = start(ListenerConfig::default().max_frame_len).await;
    let good = tokio::spawn({
        let address = h.address;
        async move {
            let mut c = TcpStream::connect(address).await.unwrap();
            for i in 0..20 {
                let ack = exchange(&mut c, &adt("A08", &format!("BESIDE-BIG-{i}"), &[])).await;
                assert_eq!(msa(&ack).0, "AA", "{ack}");
            }
        }
    });
    // A well-formed message made 20 MB by one huge OBX, fully framed.
    let mut big_message = adt("A08", "BIG-1", &[]);
    big_message.extend_from_slice(b"OBX|1|TX|X^Y||");
    big_message.extend(std::iter::repeat_n(b'A', 20 * 1024 * 1024));
    big_message.push(b'\r');
    let framed = hl7v2::mllp::frame(&big_message).unwrap();
    let mut big = TcpStream::connect(h.address).await.unwrap();
    let _ = big.write_all(&framed).await;
    assert_eq!(read_ack(&mut big).await, None, "closed without an ACK");
    good.await.unwrap();
    // The listener still serves new connections, and the big message left no trace.
    let mut after = TcpStream::connect(h.address).await.unwrap();
    assert_eq!(msa(&exchange(&mut after, &adt("A08", "AFTER-BIG", &[])).await).0, "AA");
    let all = h.log.list(&MessageQuery { limit: 1000, ..Default::default() }).unwrap();
    assert_eq!(all.len(), 21);
    assert!(all.iter().all(|m| m.control_id != "BIG-1"));
}
