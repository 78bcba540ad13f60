//! The backport's notification shapes: a `Bundle` of type `history` whose first entry is the
//! `Parameters` SubscriptionStatus (profile `backport-subscription-status-r4`: `subscription`,
//! `topic`, `status`, `type`, `events-since-subscription-start` and one
//! `notification-event` per event, with `event-number`, `timestamp` and, unless the content
//! is `empty`, `focus`), then, unless `empty`, one entry per focus (`full-resource`: with the
//! resource). In R4 the 64-bit counters are strings.

use crate::spec::{Content, Spec};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The notification types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The activation check.
    Handshake,
    /// Nothing happened for a heartbeat period.
    Heartbeat,
    /// Events.
    EventNotification,
    /// `$status`.
    QueryStatus,
    /// `$events`.
    QueryEvent,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Handshake => "handshake",
            Kind::Heartbeat => "heartbeat",
            Kind::EventNotification => "event-notification",
            Kind::QueryStatus => "query-status",
            Kind::QueryEvent => "query-event",
        }
    }
}

/// One event in a notification.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its number in the subscription.
    pub number: i64,
    /// When it was queued.
    pub timestamp: OffsetDateTime,
    /// `Type/id/_history/N` of the focus.
    pub focus: String,
    /// The focus as stored, when the content is `full-resource` and it may be shown.
    pub resource: Option<Value>,
    /// Created (POST) or updated (PUT).
    pub created: bool,
}

fn instant(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// The SubscriptionStatus `Parameters`.
pub fn status(
    spec: &Spec,
    base: &str,
    kind: Kind,
    events_since_start: i64,
    events: &[Event],
    status: &str,
    error: Option<&str>,
) -> Value {
    let mut parameter = vec![
        json!({"name": "subscription", "valueReference": {"reference": format!("{base}/Subscription/{}", spec.id)}}),
    ];
    if let Some(topic) = spec.topic_canonical() {
        parameter.push(json!({"name": "topic", "valueCanonical": topic}));
    }
    parameter.push(json!({"name": "status", "valueCode": status}));
    parameter.push(json!({"name": "type", "valueCode": kind.code()}));
    parameter.push(json!({"name": "events-since-subscription-start", "valueString": events_since_start.to_string()}));
    for event in events {
        let mut part = vec![
            json!({"name": "event-number", "valueString": event.number.to_string()}),
            json!({"name": "timestamp", "valueInstant": instant(event.timestamp)}),
        ];
        if spec.content != Content::Empty {
            part.push(json!({"name": "focus", "valueReference": {"reference": format!("{base}/{}", unversioned(&event.focus))}}));
        }
        parameter.push(json!({"name": "notification-event", "part": part}));
    }
    if let Some(error) = error {
        parameter.push(json!({"name": "error", "valueCodeableConcept": {"text": error}}));
    }
    json!({"resourceType": "Parameters", "meta": {"profile": ["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"]}, "parameter": parameter})
}

fn unversioned(reference: &str) -> &str {
    reference.split_once("/_history/").map_or(reference, |(r, _)| r)
}

/// The notification Bundle (`history`) of `kind` with `events`.
pub fn notification(
    spec: &Spec,
    base: &str,
    kind: Kind,
    events_since_start: i64,
    events: &[Event],
    status_code: &str,
    error: Option<&str>,
) -> Value {
    let status_resource = status(spec, base, kind, events_since_start, events, status_code, error);
    let mut entry = vec![json!({
        "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        "resource": status_resource,
        "request": {"method": "GET", "url": format!("Subscription/{}/$status", spec.id)},
        "response": {"status": "200"}
    })];
    if spec.content != Content::Empty {
        for event in events {
            let reference = unversioned(&event.focus);
            let resource_type = reference.split('/').next().unwrap_or_default();
            let (method, url, code) =
                if event.created { ("POST", resource_type, "201") } else { ("PUT", reference, "200") };
            let mut item = json!({
                "fullUrl": format!("{base}/{reference}"),
                "request": {"method": method, "url": url},
                "response": {"status": code}
            });
            if spec.content == Content::FullResource
                && let Some(resource) = &event.resource
            {
                item["resource"] = resource.clone();
            }
            entry.push(item);
        }
    }
    json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "history",
        "timestamp": instant(OffsetDateTime::now_utc()),
        "entry": entry
    })
}
