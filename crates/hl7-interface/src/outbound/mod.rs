//! Outbound HL7 v2: record changes announced to partners, and results produced as ORU.
//!
//! - [`AdtNotifier`] — a [`store::WriteHook`] on Encounter: an admission (`A01`), an ED or
//!   other visit registration (`A04`), a discharge (`A03`) or another change of a live
//!   encounter (`A08`) is encoded as an ADT message and queued in the outbox *inside the
//!   write's transaction*, for every partner taking that event. Whichever door wrote the
//!   Encounter (FHIR REST, a Bundle, an inbound HL7 message), the change and its announcement
//!   commit together.
//! - [`sender::deliver`] — drains the outbox over MLLP: at least once, in queue order per
//!   partner, retrying with backoff until the partner answers `AA`, dead after the last try.
//! - [`oru_r01`] — the ORU^R01 of a DiagnosticReport with its Observations and Patient.

mod encode;
pub mod sender;

pub use encode::{OutboundError, adt_message, oru_r01};
pub use sender::{SenderConfig, deliver};

use serde_json::Value;
use store::outbox::{NewOutbound, WriteHook};
use store::{Error, NewVersion, ResourceVersion, Transaction};

/// The ADT trigger events the notifier produces.
pub const ADT_EVENTS: [&str; 4] = ["A01", "A03", "A04", "A08"];

/// Queues ADT notifications for Encounter writes (see the module documentation).
#[derive(Debug, Default)]
pub struct AdtNotifier;

impl WriteHook for AdtNotifier {
    fn wants(&self, resource_type: &str) -> bool {
        resource_type == "Encounter"
    }

    fn written(
        &self,
        tx: &mut dyn Transaction,
        previous: Option<&ResourceVersion>,
        new: &NewVersion<'_>,
        sequence: i64,
    ) -> store::Result<()> {
        let Some(body) = new.body else { return Ok(()) };
        let before = previous.and_then(|p| p.body.as_deref()).and_then(|b| serde_json::from_str::<Value>(b).ok());
        let Ok(after) = serde_json::from_str::<Value>(body) else { return Ok(()) };
        let Some(event) = encounter_event(before.as_ref(), &after) else { return Ok(()) };
        let partners = tx.outbound_partners(event)?;
        if partners.is_empty() {
            return Ok(());
        }
        let patient_id = after
            .pointer("/subject/reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Patient/"))
            .map(str::to_string);
        let patient = match &patient_id {
            Some(id) => tx
                .current("Patient", id)?
                .and_then(|v| v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok())),
            None => None,
        };
        let control_id = format!("CONT{sequence}");
        let message = adt_message(event, &after, patient.as_ref(), &control_id)
            .map_err(|_| Error::Storage("an outbound ADT message could not be encoded".into()))?;
        let resource = format!("Encounter/{}", new.id);
        tx.enqueue_outbound(&NewOutbound {
            partners: &partners,
            event,
            message_type: &format!("ADT^{event}"),
            control_id: &control_id,
            resource: &resource,
            patient: patient_id.as_deref(),
            payload: &message,
        })
    }
}

/// Classes of an inpatient stay: becoming active is an admission (A01).
const INPATIENT: &[&str] = &["IMP", "ACUTE", "NONAC", "OBSENC", "PRENC", "SS"];

/// Which ADT event a change of an Encounter is, if any: becoming `in-progress` is an
/// admission (A01, inpatient classes, also when an ED visit turns inpatient) or a visit
/// registration (A04: ED and others); becoming `finished` is a discharge (A03, only of an
/// encounter that was known before: one created already finished is history, not news);
/// any other change of a live encounter is an update (A08).
pub fn encounter_event(before: Option<&Value>, after: &Value) -> Option<&'static str> {
    let status = |e: &Value| e.get("status").and_then(Value::as_str).unwrap_or_default().to_string();
    let class = |e: &Value| e.pointer("/class/code").and_then(Value::as_str).unwrap_or_default().to_string();
    let (now, class_now) = (status(after), class(after));
    let was = before.map(status);
    let inpatient = INPATIENT.contains(&class_now.as_str());
    match now.as_str() {
        "in-progress" | "arrived" if was.as_deref() != Some(now.as_str()) && was.as_deref() != Some("in-progress") => {
            Some(if inpatient { "A01" } else { "A04" })
        }
        "in-progress" if inpatient && before.is_some_and(|b| !INPATIENT.contains(&class(b).as_str())) => Some("A01"),
        "finished" if was.is_some() && was.as_deref() != Some("finished") => Some("A03"),
        "cancelled" | "entered-in-error" => None,
        _ if before.is_some_and(|b| !same_content(b, after)) => Some("A08"),
        _ => None,
    }
}

/// Whether two versions say the same, `meta` aside.
fn same_content(a: &Value, b: &Value) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let strip = |o: &serde_json::Map<String, Value>| {
                o.iter().filter(|(k, _)| k.as_str() != "meta").map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>()
            };
            let (mut a, mut b) = (strip(a), strip(b));
            a.sort_by(|x, y| x.0.cmp(&y.0));
            b.sort_by(|x, y| x.0.cmp(&y.0));
            a == b
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::encounter_event;
    use serde_json::json;

    #[test]
    fn events_of_encounter_changes() {
        let enc = |status: &str, class: &str| json!({"resourceType": "Encounter", "status": status, "class": {"code": class}});
        assert_eq!(encounter_event(None, &enc("in-progress", "IMP")), Some("A01"));
        assert_eq!(encounter_event(None, &enc("in-progress", "EMER")), Some("A04"));
        assert_eq!(encounter_event(Some(&enc("planned", "IMP")), &enc("in-progress", "IMP")), Some("A01"));
        assert_eq!(encounter_event(Some(&enc("in-progress", "EMER")), &enc("in-progress", "IMP")), Some("A01"));
        assert_eq!(encounter_event(Some(&enc("in-progress", "IMP")), &enc("finished", "IMP")), Some("A03"));
        assert_eq!(encounter_event(None, &enc("finished", "IMP")), None, "history, not news");
        assert_eq!(encounter_event(None, &enc("planned", "IMP")), None);
        let mut moved = enc("in-progress", "IMP");
        moved["location"] = json!([{"location": {"display": "W2"}}]);
        assert_eq!(encounter_event(Some(&enc("in-progress", "IMP")), &moved), Some("A08"));
        assert_eq!(encounter_event(Some(&enc("finished", "IMP")), &enc("finished", "IMP")), None);
    }
}
