//! The behaviour of a backend's HL7 v2 interface tables (those the `hl7-interface` crate runs
//! on) that every backend must show: the message log ([`store::MessageLog`]) and the outbox
//! ([`store::Outbox`]) with its rows queued inside the write's own transaction.

use crate::records::{create, patient};
use serde_json::json;
use std::sync::Arc;
use store::messages::{InboundPartner, MessageOutcome, MessageQuery, MessageStatus, NewMessage};
use store::outbox::{NewOutbound, OutboundQuery, OutboundStatus, Partner, WriteHook};
use store::{MessageLog, NewVersion, Outbox, Records, ResourceVersion, Transaction};
use time::{Duration, OffsetDateTime};

fn new_message<'a>(control_id: &'a str, message_type: &'a str, raw: &'a [u8]) -> NewMessage<'a> {
    NewMessage { partner: "lab", sender: "LAB|NORTH", control_id, message_type, raw }
}

/// Received messages are kept verbatim with their state; outcomes, duplicates, filters and
/// paging work.
pub fn message_log_keeps_messages_and_their_outcomes(log: &dyn MessageLog) {
    let raw = b"MSH|^~\\&|LAB|NORTH\r\xffPID|1\r".to_vec();
    let first = log.receive(&new_message("C1", "ADT^A01", &raw)).unwrap();
    let second = log.receive(&new_message("C1", "ADT^A01", &raw)).unwrap();
    let third = log.receive(&new_message("C2", "ORU^R01", b"x")).unwrap();
    assert!(first < second && second < third, "ids increase: {first} {second} {third}");
    assert_eq!(log.find_processed("lab", "LAB|NORTH", "C1", second).unwrap(), None, "nothing processed yet");
    let done = MessageOutcome {
        ack_code: "AA".into(),
        patient: Some("p1".into()),
        resources: vec!["Patient/p1".into(), "Encounter/e1".into()],
        ..MessageOutcome::default()
    };
    log.finish(first, MessageStatus::Processed, &done).unwrap();
    assert_eq!(log.find_processed("lab", "LAB|NORTH", "C1", second).unwrap(), Some(first));
    assert_eq!(log.find_processed("lab", "LAB|NORTH", "C1", first).unwrap(), None, "except excludes itself");
    assert_eq!(log.find_processed("lab", "OTHER", "C1", second).unwrap(), None);
    assert_eq!(
        log.find_processed("another-partner", "LAB|NORTH", "C1", second).unwrap(),
        None,
        "another partner's messages never make a duplicate"
    );
    let duplicate = MessageOutcome { ack_code: "AA".into(), duplicate_of: Some(first), ..MessageOutcome::default() };
    log.finish(second, MessageStatus::Duplicate, &duplicate).unwrap();
    let failed = MessageOutcome { ack_code: "AE".into(), error: Some("bad OBX".into()), ..MessageOutcome::default() };
    log.finish(third, MessageStatus::Failed, &failed).unwrap();
    assert!(log.finish(third + 1000, MessageStatus::Failed, &failed).is_err(), "an unknown id is an error");

    let mut counts = log.count_by_status().unwrap();
    counts.sort_by_key(|(status, _)| status.as_str());
    assert_eq!(
        counts,
        [(MessageStatus::Duplicate, 1), (MessageStatus::Failed, 1), (MessageStatus::Processed, 1)],
        "counts by status (no other message was received)"
    );

    let stored = log.get(first).unwrap().expect("the first message");
    assert_eq!(stored.raw, raw, "kept byte for byte");
    assert_eq!(stored.partner, "lab");
    assert_eq!((stored.status, stored.attempts), (MessageStatus::Processed, 1));
    assert_eq!(stored.outcome.patient.as_deref(), Some("p1"));
    assert_eq!(stored.outcome.resources, ["Patient/p1", "Encounter/e1"]);
    assert_eq!(log.get(second).unwrap().unwrap().outcome.duplicate_of, Some(first));
    assert!(log.get(third + 1000).unwrap().is_none());

    let ids = |query: MessageQuery| -> Vec<i64> { log.list(&query).unwrap().iter().map(|m| m.id).collect() };
    assert_eq!(ids(MessageQuery::default()), [third, second, first], "newest first");
    assert_eq!(ids(MessageQuery { statuses: vec![MessageStatus::Failed], ..MessageQuery::default() }), [third]);
    assert_eq!(ids(MessageQuery { patient: Some("p1".into()), ..MessageQuery::default() }), [first]);
    assert_eq!(ids(MessageQuery { message_type: Some("ADT".into()), ..MessageQuery::default() }), [second, first]);
    assert_eq!(ids(MessageQuery { message_type: Some("ORU^R01".into()), ..MessageQuery::default() }), [third]);
    assert!(ids(MessageQuery { message_type: Some("AD".into()), ..MessageQuery::default() }).is_empty());
    assert_eq!(ids(MessageQuery { before_id: Some(third), limit: 1, ..MessageQuery::default() }), [second]);
    let later = OffsetDateTime::now_utc() + Duration::hours(1);
    assert!(ids(MessageQuery { since: Some(later), ..MessageQuery::default() }).is_empty());
    let listed = log.list(&MessageQuery { with_raw: true, ..MessageQuery::default() }).unwrap();
    assert_eq!(listed[2].raw, raw);
    assert!(log.list(&MessageQuery::default()).unwrap()[2].raw.is_empty(), "raw only when asked");
}

/// Inbound partners (the listener's allow-list) are kept by name with their addresses and
/// allowed destructive events; adding one again replaces it.
pub fn inbound_partners_are_kept_by_name(log: &dyn MessageLog) {
    assert!(log.inbound_partners().unwrap().is_empty());
    let lab = InboundPartner {
        name: "lab".into(),
        addresses: vec!["10.1.2.3".into(), "10.9.0.0/16".into()],
        allowed_events: Vec::new(),
    };
    let adt = InboundPartner {
        name: "adt".into(),
        addresses: vec!["fd00::/8".into()],
        allowed_events: vec!["A40".into(), "A11".into()],
    };
    log.put_inbound_partner(&lab).unwrap();
    log.put_inbound_partner(&adt).unwrap();
    assert_eq!(log.inbound_partners().unwrap(), [adt.clone(), lab.clone()], "by name");
    let moved = InboundPartner { addresses: vec!["10.1.2.4".into()], allowed_events: vec!["A40".into()], ..lab };
    log.put_inbound_partner(&moved).unwrap();
    assert_eq!(log.inbound_partners().unwrap(), [adt.clone(), moved]);
    assert!(log.remove_inbound_partner("lab").unwrap());
    assert!(!log.remove_inbound_partner("lab").unwrap());
    assert_eq!(log.inbound_partners().unwrap(), [adt]);
}

/// Queues a message announcing every Patient written to the partners that take `A08`, the
/// way the ADT notifier does for Encounters.
struct AnnouncePatients;

impl WriteHook for AnnouncePatients {
    fn wants(&self, resource_type: &str) -> bool {
        resource_type == "Patient"
    }

    fn written(
        &self,
        tx: &mut dyn Transaction,
        _previous: Option<&ResourceVersion>,
        new: &NewVersion<'_>,
        sequence: i64,
    ) -> store::Result<()> {
        let partners = tx.outbound_partners("A08")?;
        if partners.is_empty() {
            return Ok(());
        }
        let resource = format!("Patient/{}", new.id);
        let control_id = format!("N{sequence}");
        let payload = format!("MSH|^~\\&|CONTINUUM||||||ADT^A08|{control_id}|P|2.5\r");
        tx.enqueue_outbound(&NewOutbound {
            partners: &partners,
            event: "A08",
            message_type: "ADT^A08",
            control_id: &control_id,
            resource: &resource,
            patient: Some(new.id),
            payload: &payload,
        })
    }
}

/// The records of `records`' backend with the announcing hook.
pub fn announcing(records: &Records) -> Records {
    Records::new(Arc::clone(records.backend())).with_hook(Arc::new(AnnouncePatients))
}

/// Partners are kept by name; a write queues one row per subscribed partner in its own
/// transaction (none when it fails); delivery is in order per partner, a retry holds back the
/// partner's later messages, and a dead message stops being due.
pub fn outbox_queues_with_the_write_and_delivers_in_order(records: &Records, outbox: &dyn Outbox) {
    let records = announcing(records);
    let partner = |name: &str, events: &[&str]| Partner {
        name: name.into(),
        address: "127.0.0.1:2575".into(),
        events: events.iter().map(|e| e.to_string()).collect(),
    };
    create(&records, patient("Before"));
    assert!(outbox.list(&OutboundQuery::default()).unwrap().is_empty(), "no partner, nothing queued");
    outbox.put_partner(&partner("hie", &["A01", "A08"])).unwrap();
    outbox.put_partner(&partner("lab", &["A03"])).unwrap();
    outbox.put_partner(&partner("registry", &["A08"])).unwrap();
    outbox.put_partner(&partner("lab", &["A03", "A08"])).unwrap();
    let names: Vec<String> = outbox.partners().unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["hie", "lab", "registry"]);
    assert_eq!(outbox.partners().unwrap()[1].events, ["A03", "A08"], "put replaces");

    let first = create(&records, patient("One"));
    let second = create(&records, patient("Two"));
    let refused = json!({"resourceType": "Patient", "gender": "not-a-gender"});
    assert!(records.create(refused, None).is_err());
    let queued = outbox.list(&OutboundQuery::default()).unwrap();
    assert_eq!(queued.len(), 6, "one row per partner per write, none for the refused write");
    assert!(queued.iter().all(|m| m.status == OutboundStatus::Pending && m.payload.is_empty()));
    let announced: Vec<&str> = queued.iter().rev().map(|m| m.resource.as_str()).collect();
    let (one, two) = (format!("Patient/{first}"), format!("Patient/{second}"));
    assert_eq!(announced, [&one, &one, &one, &two, &two, &two]);

    let now = OffsetDateTime::now_utc();
    let due = outbox.due(now, 100).unwrap();
    assert_eq!(due.len(), 6);
    assert!(due.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert!(due.iter().all(|m| m.payload.starts_with("MSH|")), "due messages carry their payload");
    let hie: Vec<_> = due.iter().filter(|m| m.partner == "hie").collect();
    outbox.delivered(hie[0].id).unwrap();
    outbox.attempt_failed(hie[1].id, "timeout", Some(now + Duration::minutes(5))).unwrap();
    let lab: Vec<_> = due.iter().filter(|m| m.partner == "lab").collect();
    outbox.attempt_failed(lab[0].id, "refused", Some(now + Duration::minutes(5))).unwrap();
    let due_now: Vec<String> = outbox.due(now, 100).unwrap().into_iter().map(|m| m.partner).collect();
    assert_eq!(due_now, ["registry", "registry"], "a partner waiting for a retry gets nothing newer");
    let later = outbox.due(now + Duration::minutes(6), 100).unwrap();
    assert_eq!(later.iter().filter(|m| m.partner == "hie").count(), 1);
    assert_eq!(later.iter().filter(|m| m.partner == "lab").map(|m| m.id).next(), Some(lab[0].id), "in order");
    outbox.attempt_failed(lab[0].id, "refused", None).unwrap();

    let with = |statuses: Vec<OutboundStatus>, partner: Option<&str>| {
        outbox.list(&OutboundQuery { statuses, partner: partner.map(str::to_string), limit: 0 }).unwrap()
    };
    let dead = with(vec![OutboundStatus::Dead], None);
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].attempts, dead[0].last_error.as_deref()), (2, Some("refused")));
    assert_eq!(with(vec![OutboundStatus::Delivered], Some("hie")).len(), 1);
    assert_eq!(with(vec![OutboundStatus::Pending, OutboundStatus::Dead], Some("lab")).len(), 2);
    assert_eq!(outbox.list(&OutboundQuery { limit: 2, ..OutboundQuery::default() }).unwrap().len(), 2);
    let mut counts = outbox.count_by_status().unwrap();
    counts.sort_by_key(|(status, _)| status.as_str());
    let pending = with(vec![OutboundStatus::Pending], None).len() as u64;
    assert_eq!(
        counts,
        [(OutboundStatus::Dead, 1), (OutboundStatus::Delivered, 1), (OutboundStatus::Pending, pending)],
        "counts by status"
    );

    assert!(outbox.remove_partner("registry").unwrap());
    assert!(!outbox.remove_partner("registry").unwrap());
    assert!(with(vec![OutboundStatus::Pending], Some("registry")).is_empty(), "its pending messages go");
    assert_eq!(outbox.partners().unwrap().len(), 2);
}
