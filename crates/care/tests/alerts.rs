//! Care alerts from the write to the recipients: queued by the hook inside the triggering
//! write (none for a refused write or for history), delivered as one Communication per
//! recipient chosen by the rules (behavioral-health events to the behavioral-health
//! clinician), once even when delivered twice; a discharge's follow-up Tasks and packet to
//! the practice; e-mail through a real SMTP conversation and a webhook through a real HTTP
//! POST, neither carrying PHI.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use access::{Door, Who};
use care::alerts::channels::{self, EmailSender, SmtpSecurity, WebhookSender};
use care::alerts::{AlertConfig, AlertDelivery, AlertHook};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use store::Records;
use store::notify::Notifications;
use time::OffsetDateTime;

struct World {
    _dir: tempfile::TempDir,
    records: Records,
    notifications: Arc<dyn Notifications>,
    patient: String,
    pcp: String,
    bh: String,
    manager: String,
    clinic: String,
    bh_org: String,
}

fn create(records: &Records, resource: Value) -> String {
    records.create(resource, None).unwrap().version.unwrap().id
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
    let notifications: Arc<dyn Notifications> = Arc::new(backend.notifications().unwrap());
    let records = Records::new(backend).with_hook(Arc::new(AlertHook));
    let clinic = create(&records, json!({"resourceType": "Organization", "name": "Riverside Primary Care"}));
    let bh_org = create(&records, json!({"resourceType": "Organization", "name": "Harbor Behavioral Health"}));
    let pcp = create(
        &records,
        json!({"resourceType": "Practitioner", "name": [{"family": "Osler", "given": ["Anna"]}],
            "telecom": [{"system": "email", "value": "anna.osler@riverside.example"}]}),
    );
    let bh =
        create(&records, json!({"resourceType": "Practitioner", "name": [{"family": "Rogers", "given": ["Carl"]}]}));
    let manager = create(
        &records,
        json!({"resourceType": "Practitioner", "name": [{"family": "Nightingale", "given": ["Flo"]}]}),
    );
    let former =
        create(&records, json!({"resourceType": "Practitioner", "name": [{"family": "Former", "given": ["Nurse"]}]}));
    let patient = create(
        &records,
        json!({"resourceType": "Patient", "name": [{"family": "Doe", "given": ["Jane"]}], "birthDate": "1970-04-02",
            "managingOrganization": {"reference": format!("Organization/{clinic}")}}),
    );
    create(
        &records,
        json!({"resourceType": "CareTeam", "status": "active", "subject": {"reference": format!("Patient/{patient}")},
        "participant": [
            {"role": [{"text": "Primary care physician"}], "member": {"reference": format!("Practitioner/{pcp}")},
             "onBehalfOf": {"reference": format!("Organization/{clinic}")}},
            {"role": [{"text": "Care manager"}], "member": {"reference": format!("Practitioner/{manager}")},
             "onBehalfOf": {"reference": format!("Organization/{clinic}")}},
            {"role": [{"text": "Behavioral health clinician"}], "member": {"reference": format!("Practitioner/{bh}")},
             "onBehalfOf": {"reference": format!("Organization/{bh_org}")}},
            {"role": [{"text": "Former nurse"}], "member": {"reference": format!("Practitioner/{former}")},
             "period": {"start": "2020-01-01", "end": "2020-06-30"}}
        ]}),
    );
    World { _dir: dir, records, notifications, patient, pcp, bh, manager, clinic, bh_org }
}

fn delivery(world: &World, config: AlertConfig) -> AlertDelivery {
    AlertDelivery::new(Door::open(world.records.clone()), Arc::clone(&world.notifications), config)
}

/// `(recipient, event code, priority)` of every alert Communication, sorted.
fn alerts(world: &World) -> Vec<(String, String, String)> {
    let access = Door::open(world.records.clone()).enter(Who::Job("test"));
    let found = chart::read::search(&access, "Communication", &[("category", "alert".into())], 1000).unwrap();
    let mut out: Vec<(String, String, String)> = found
        .iter()
        .map(|c| {
            (
                c["recipient"][0]["reference"].as_str().unwrap().to_string(),
                c["reasonCode"][0]["coding"][0]["code"].as_str().unwrap().to_string(),
                c["priority"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn now() -> String {
    store::format_instant(OffsetDateTime::now_utc())
}

fn phq9(world: &World, total: i64, item9: i64, at: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "subject": {"reference": format!("Patient/{}", world.patient)},
        "effectiveDateTime": at, "valueInteger": total,
        "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "44260-8"}]}, "valueInteger": item9}]})
}

#[test]
fn an_ed_visit_reaches_the_team_and_the_practice_once() {
    let world = world();
    let sender = delivery(&world, AlertConfig::default());
    let visit = create(
        &world.records,
        json!({"resourceType": "Encounter", "status": "arrived",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
            "subject": {"reference": format!("Patient/{}", world.patient)}, "period": {"start": now()}}),
    );
    // Nothing is delivered before the sender runs: the alert waits in the outbox.
    assert!(alerts(&world).is_empty());
    assert_eq!(world.notifications.latest_number(&format!("alert:{}", world.patient)).unwrap(), 1);
    assert_eq!(sender.deliver_due().unwrap(), 1);
    let expected: Vec<(String, String, String)> = [
        format!("Organization/{}", world.clinic),
        format!("Practitioner/{}", world.bh),
        format!("Practitioner/{}", world.manager),
        format!("Practitioner/{}", world.pcp),
    ]
    .into_iter()
    .map(|r| (r, "ed-visit".to_string(), "routine".to_string()))
    .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(alerts(&world), expected, "current members and the practice; the former nurse is not told");
    // Delivered again (a crash before the mark): still one Communication per recipient.
    let queued = world.notifications.events(&format!("alert:{}", world.patient), 1, 1, 1).unwrap();
    sender.deliver(&queued[0]).unwrap();
    assert_eq!(alerts(&world).len(), 4);
    // Each alert names the visit it is about.
    let access = Door::open(world.records.clone()).enter(Who::Job("test"));
    let found = chart::read::search(&access, "Communication", &[("about", format!("Encounter/{visit}"))], 10).unwrap();
    assert_eq!(found.len(), 4);
    assert_eq!(found[0]["status"], "in-progress", "unread");
}

#[test]
fn rules_choose_roles_and_behavioral_health_events_go_to_the_bh_clinician() {
    let world = world();
    let config = AlertConfig::from_json(&format!(
        r#"{{"rules": [{{"organization": "{}", "events": ["ed-visit", "depression-screen-positive"], "roles": ["care manager"],
            "notify": ["Organization/{}"]}}]}}"#,
        world.clinic, world.bh_org
    ))
    .unwrap();
    let sender = delivery(&world, config);
    // A PHQ-9 of 14 with item 9 answered 1.
    create(&world.records, phq9(&world, 14, 1, &now()));
    sender.deliver_due().unwrap();
    let got = alerts(&world);
    let bh = format!("Practitioner/{}", world.bh);
    let manager = format!("Practitioner/{}", world.manager);
    assert!(got.contains(&(bh.clone(), "self-harm-risk".into(), "urgent".into())), "{got:?}");
    assert!(got.contains(&(manager.clone(), "depression-screen-positive".into(), "routine".into())), "{got:?}");
    assert!(
        !got.iter().any(|(r, e, _)| r == &format!("Practitioner/{}", world.pcp) && e == "depression-screen-positive"),
        "the clinic's rule admits care managers only: {got:?}"
    );
    assert!(
        !got.iter().any(|(r, e, _)| e == "self-harm-risk" && r != &bh),
        "self-harm risk goes to the behavioral-health clinician: {got:?}"
    );
    // The BH organization has no rule and no `*` rule exists: its member is told of everything.
    assert!(got.contains(&(bh.clone(), "depression-screen-positive".into(), "routine".into())), "{got:?}");
    // A later, higher score rises; a lower one does not.
    create(&world.records, phq9(&world, 8, 0, &now()));
    sender.deliver_due().unwrap();
    let before = alerts(&world).len();
    create(&world.records, phq9(&world, 12, 0, &now()));
    sender.deliver_due().unwrap();
    let got = alerts(&world);
    let rising: Vec<_> = got.iter().filter(|(_, e, _)| e == "depression-score-rising").collect();
    assert_eq!(rising.len(), 1, "{got:?}");
    assert_eq!(rising[0].0, bh);
    assert!(got.len() > before);
    // The practice's partner is told of positive screens (and only of what the rule names).
    let partner = format!("Organization/{}", world.bh_org);
    assert!(got.contains(&(partner.clone(), "depression-screen-positive".into(), "routine".into())), "{got:?}");
    assert!(!got.iter().any(|(r, e, _)| r == &partner && e != "depression-screen-positive"), "{got:?}");
}

#[test]
fn history_and_refused_writes_raise_nothing() {
    let world = world();
    let sender = delivery(&world, AlertConfig::default());
    // An imported result of 2019, flagged high; a finished stay written as history.
    create(
        &world.records,
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "Glucose"},
            "subject": {"reference": format!("Patient/{}", world.patient)},
            "effectiveDateTime": "2019-03-01T10:00:00Z", "interpretation": [{"coding": [{"code": "HH"}]}]}),
    );
    create(
        &world.records,
        json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "IMP"},
            "subject": {"reference": format!("Patient/{}", world.patient)}}),
    );
    // A write refused by validation leaves nothing queued.
    let refused = json!({"resourceType": "Encounter", "status": "not-a-status", "class": {"code": "EMER"},
        "subject": {"reference": format!("Patient/{}", world.patient)}});
    assert!(world.records.create(refused, None).is_err());
    assert_eq!(world.notifications.latest_number(&format!("alert:{}", world.patient)).unwrap(), 0);
    assert_eq!(sender.deliver_due().unwrap(), 0);
    // A new critical result is news.
    create(
        &world.records,
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "Potassium"},
            "subject": {"reference": format!("Patient/{}", world.patient)},
            "effectiveDateTime": now(), "interpretation": [{"coding": [{"code": "HH"}]}]}),
    );
    sender.deliver_due().unwrap();
    assert!(alerts(&world).iter().all(|(_, e, p)| e == "critical-result" && p == "urgent"));
    assert_eq!(alerts(&world).len(), 4);
}

#[test]
fn a_discharge_creates_the_follow_up_tasks_and_the_packet_once() {
    let world = world();
    let sender = delivery(&world, AlertConfig::default());
    let admitted = "2026-11-20T08:00:00Z";
    let stay = create(
        &world.records,
        json!({"resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"},
            "subject": {"reference": format!("Patient/{}", world.patient)}, "period": {"start": admitted}}),
    );
    create(
        &world.records,
        json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"text": "Metformin 500 mg"},
            "subject": {"reference": format!("Patient/{}", world.patient)}}),
    );
    let mut finished = world.records.read("Encounter", &stay).unwrap();
    let mut body: Value = serde_json::from_str(finished.body.as_deref().unwrap()).unwrap();
    body["status"] = json!("finished");
    body["period"]["end"] = json!("2026-11-26T16:00:00Z"); // a Thursday; six days' stay
    finished.body = None;
    world.records.update("Encounter", &stay, body, Some(1)).unwrap();
    sender.deliver_due().unwrap();
    sender.deliver_due().unwrap();
    let access = Door::open(world.records.clone()).enter(Who::Job("test"));
    let tasks = chart::read::search(&access, "Task", &[("focus", format!("Encounter/{stay}"))], 10).unwrap();
    let mut due: Vec<(String, String, String)> = tasks
        .iter()
        .map(|t| {
            (
                t["code"]["coding"][0]["code"].as_str().unwrap().to_string(),
                t["executionPeriod"]["end"].as_str().unwrap().to_string(),
                t["owner"]["reference"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    due.sort();
    let owner = format!("Organization/{}", world.clinic);
    assert_eq!(
        due,
        [
            ("call".to_string(), "2026-11-30".to_string(), owner.clone()),
            ("visit".to_string(), "2026-12-03".to_string(), owner.clone())
        ],
        "a call within 2 business days, a visit within 7 (a six-day stay is higher risk)"
    );
    // Delivered twice: still two Tasks and one packet.
    let queued = world.notifications.events(&format!("alert:{}", world.patient), 1, 10, 10).unwrap();
    for n in &queued {
        sender.deliver(n).unwrap();
    }
    assert_eq!(chart::read::search(&access, "Task", &[("focus", format!("Encounter/{stay}"))], 10).unwrap().len(), 2);
    let packets =
        chart::read::search(&access, "Communication", &[("encounter", format!("Encounter/{stay}"))], 10).unwrap();
    assert_eq!(packets.len(), 1);
    assert_eq!(packets[0]["recipient"][0]["reference"], owner.as_str());
    let references: Vec<&str> = packets[0]["payload"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["contentReference"]["reference"].as_str())
        .collect();
    assert!(references.iter().any(|r| r.starts_with("MedicationRequest/")), "{references:?}");
    // It shows on the list of discharges without follow-up until the visit Task is done.
    let open = care::transitions::without_follow_up(&access, 30).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].call.as_str(), open[0].visit.as_str()), ("requested", "requested"));
    let visit = tasks.iter().find(|t| t["code"]["coding"][0]["code"] == "visit").unwrap();
    let mut done = visit.clone();
    done["status"] = json!("completed");
    done.as_object_mut().unwrap().remove("meta");
    world.records.update("Task", done["id"].as_str().unwrap(), done.clone(), None).unwrap();
    assert!(care::transitions::without_follow_up(&access, 30).unwrap().is_empty());
}

/// A one-message SMTP server: what it was sent.
fn smtp_sink() -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        writer.write_all(b"220 sink ESMTP\r\n").unwrap();
        let mut data = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                return data;
            }
            let command = line.to_ascii_uppercase();
            if command.starts_with("EHLO") || command.starts_with("HELO") {
                writer.write_all(b"250 sink\r\n").unwrap();
            } else if command.starts_with("DATA") {
                writer.write_all(b"354 go on\r\n").unwrap();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(&line);
                }
                writer.write_all(b"250 queued\r\n").unwrap();
            } else if command.starts_with("QUIT") {
                writer.write_all(b"221 bye\r\n").unwrap();
                return data;
            } else {
                writer.write_all(b"250 ok\r\n").unwrap();
            }
        }
    });
    (port, handle)
}

/// A one-request HTTP server: the body it was posted.
fn webhook_sink() -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").unwrap();
        String::from_utf8(body).unwrap()
    });
    (url, handle)
}

#[test]
fn e_mail_and_webhooks_carry_no_phi() {
    let world = world();
    let (url, posted) = webhook_sink();
    let config = AlertConfig::from_json(&format!(
        r#"{{"webhooks": [{{"name": "clinic", "organization": "{}", "url": "{url}"}}]}}"#,
        world.clinic
    ))
    .unwrap();
    let sender = delivery(&world, config).with_email(true);
    create(
        &world.records,
        json!({"resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"},
            "subject": {"reference": format!("Patient/{}", world.patient)}, "period": {"start": now()}}),
    );
    sender.deliver_due().unwrap();
    // Only the PCP has an e-mail address: one e-mail queued, one webhook.
    let (port, sent) = smtp_sink();
    let email = EmailSender::new("127.0.0.1", port, SmtpSecurity::Plain, "Continuum <alerts@clinic.example>").unwrap();
    assert_eq!(channels::send_due(&*world.notifications, &email).unwrap(), 1);
    let message = sent.join().unwrap();
    assert!(message.contains("Subject: You have a new alert in Continuum"), "{message}");
    assert!(message.contains("anna.osler@riverside.example"));
    for phi in ["Doe", "Jane", "1970", &world.patient] {
        assert!(!message.contains(phi), "the e-mail names {phi}: {message}");
    }
    let webhooks = WebhookSender::new().unwrap();
    assert_eq!(channels::send_due(&*world.notifications, &webhooks).unwrap(), 1);
    let body: Value = serde_json::from_str(&posted.join().unwrap()).unwrap();
    assert_eq!(body["event"], "admission");
    assert!(body["communications"].as_array().unwrap().len() >= 2, "{body}");
    let text = body.to_string();
    for phi in ["Doe", "Jane", "1970", &world.patient] {
        assert!(!text.contains(phi), "the webhook names {phi}: {text}");
    }
}

#[test]
fn a_failing_webhook_is_retried_and_later_notifications_wait_for_it() {
    let world = world();
    // Nobody listens at this address.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let config = AlertConfig::from_json(&format!(
        r#"{{"webhooks": [{{"name": "down", "organization": "*", "url": "{url}"}}]}}"#
    ))
    .unwrap();
    let sender = delivery(&world, config);
    for _ in 0..2 {
        create(
            &world.records,
            json!({"resourceType": "Encounter", "status": "arrived", "class": {"code": "EMER"},
                "subject": {"reference": format!("Patient/{}", world.patient)}, "period": {"start": now()}}),
        );
    }
    sender.deliver_due().unwrap();
    let webhooks = WebhookSender::new().unwrap();
    assert_eq!(channels::send_due(&*world.notifications, &webhooks).unwrap(), 0);
    let queued = world.notifications.events("webhook:down", 1, 10, 10).unwrap();
    assert_eq!(queued.len(), 2);
    assert_eq!(queued[0].attempts, 1, "the first was tried");
    assert_eq!(queued[1].attempts, 0, "the second waits behind it");
    assert_eq!(queued[0].last_error.as_deref(), Some("the webhook could not be reached"));
}
