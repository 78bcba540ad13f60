//! The behaviour of a backend's notification outbox ([`store::Notifications`]) that every
//! backend must show: rows queued inside the write's own transaction (none when it fails),
//! numbered within their channel, handed out in order per channel, retried, recovered.

use crate::records::{create, patient};
use serde_json::json;
use std::sync::Arc;
use store::notify::NewNotification;
use store::outbox::{OutboundStatus, WriteHook};
use store::{NewVersion, Notifications, Records, ResourceVersion, Transaction};
use time::{Duration, OffsetDateTime};

/// Queues a notification on two channels for every Patient written.
struct NotifyPatients;

impl WriteHook for NotifyPatients {
    fn wants(&self, resource_type: &str) -> bool {
        resource_type == "Patient"
    }

    fn written(
        &self,
        tx: &mut dyn Transaction,
        _previous: Option<&ResourceVersion>,
        new: &NewVersion<'_>,
        _sequence: i64,
    ) -> store::Result<()> {
        let resource = format!("Patient/{}", new.id);
        for channel in ["sub:a", "sub:b"] {
            tx.enqueue_notification(&NewNotification {
                channel,
                event: "patient-written",
                resource: &resource,
                patient: Some(new.id),
                payload: "{}",
            })?;
        }
        Ok(())
    }
}

/// Notifications are queued with the write (none for a refused one), numbered 1, 2, … per
/// channel, due in order per channel (a retry holds the channel's later ones back, not other
/// channels'), listed by number for recovery, and made due again on demand.
pub fn notifications_queue_with_the_write_and_deliver_in_order(records: &Records, outbox: &dyn Notifications) {
    let records = Records::new(Arc::clone(records.backend())).with_hook(Arc::new(NotifyPatients));
    let first = create(&records, patient("One"));
    let second = create(&records, patient("Two"));
    assert!(records.create(json!({"resourceType": "Patient", "gender": "not-a-gender"}), None).is_err());
    assert_eq!(outbox.latest_number("sub:a").unwrap(), 2, "one per write, none for the refused one");
    assert_eq!(outbox.latest_number("sub:none").unwrap(), 0);
    let now = OffsetDateTime::now_utc() + Duration::seconds(1);
    let due = outbox.due(now, "sub:", 100).unwrap();
    let order: Vec<(String, i64, String)> =
        due.iter().map(|n| (n.channel.clone(), n.number, n.resource.clone())).collect();
    let (one, two) = (format!("Patient/{first}"), format!("Patient/{second}"));
    assert_eq!(
        order,
        [
            ("sub:a".into(), 1, one.clone()),
            ("sub:b".into(), 1, one.clone()),
            ("sub:a".into(), 2, two.clone()),
            ("sub:b".into(), 2, two.clone())
        ]
    );
    assert!(outbox.due(now, "alert", 100).unwrap().is_empty(), "the prefix selects channels");
    assert_eq!(due[0].patient.as_deref(), Some(first.as_str()));
    assert_eq!(due[0].payload, "{}");

    // A retry of a:1 holds a:2 back; b goes on.
    outbox.attempt_failed(due[0].id, "connection refused", Some(now + Duration::minutes(5))).unwrap();
    outbox.delivered(due[1].id).unwrap();
    let due_now = outbox.due(now, "sub:", 100).unwrap();
    let order: Vec<(String, i64)> = due_now.iter().map(|n| (n.channel.clone(), n.number)).collect();
    assert_eq!(order, [("sub:b".to_string(), 2)]);
    let later = outbox.due(now + Duration::minutes(6), "sub:", 100).unwrap();
    assert_eq!(later.first().map(|n| (n.channel.as_str(), n.number, n.attempts)), Some(("sub:a", 1, 1)));
    assert_eq!(later[0].last_error.as_deref(), Some("connection refused"));
    assert_eq!(outbox.retry_now("sub:a").unwrap(), 2);
    let order: Vec<(String, i64)> =
        outbox.due(now, "sub:", 100).unwrap().iter().map(|n| (n.channel.clone(), n.number)).collect();
    assert_eq!(order, [("sub:a".to_string(), 1), ("sub:a".into(), 2), ("sub:b".into(), 2)]);

    // Recovery lists a channel's notifications by number, whatever their status.
    let events = outbox.events("sub:b", 1, 2, 10).unwrap();
    assert_eq!(
        events.iter().map(|n| (n.number, n.status)).collect::<Vec<_>>(),
        [(1, OutboundStatus::Delivered), (2, OutboundStatus::Pending)]
    );
    assert_eq!(outbox.events("sub:b", 2, 9, 10).unwrap().len(), 1);
    outbox.attempt_failed(events[1].id, "gone", None).unwrap();
    let counts = outbox.count_by_status("sub:").unwrap();
    let count = |s: OutboundStatus| counts.iter().find(|(c, _)| *c == s).map(|(_, n)| *n);
    assert_eq!(
        (count(OutboundStatus::Pending), count(OutboundStatus::Delivered), count(OutboundStatus::Dead)),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(outbox.drop_pending("sub:a").unwrap(), 2);
    assert!(outbox.due(now + Duration::hours(1), "sub:", 100).unwrap().is_empty());
    // Numbers go on after what was dropped, and across both ways of queueing.
    create(&records, patient("Three"));
    assert_eq!(outbox.latest_number("sub:a").unwrap(), 3);
    let queued = NewNotification { channel: "sub:a", event: "e", resource: "Patient/x", patient: None, payload: "{}" };
    assert_eq!(outbox.enqueue(&queued).unwrap(), 4);
    create(&records, patient("Four"));
    assert_eq!(outbox.latest_number("sub:a").unwrap(), 5);
}
