//! The SubscriptionTopics this server offers to topic-based (backport) subscriptions.
//!
//! R4 has no `SubscriptionTopic` resource. The backport IG lets an R4 server either represent
//! topics as `Basic` resources carrying R5 cross-version extensions, or simply know them by
//! canonical URL; Continuum does the latter: the topics are data of this crate, named by the
//! canonical URLs below, listed in the CapabilityStatement (the backport's
//! `capabilitystatement-subscriptiontopic-canonical` extension), and a Subscription naming any
//! other canonical is refused. Each topic's trigger is decided from the previous and the new
//! version of a written resource (no FHIRPath needed), inside the write's transaction.

use serde_json::Value;
use store::{NewVersion, ResourceVersion, Transaction};

/// The canonical URL prefix of the topics.
pub const TOPIC_BASE: &str = "urn:continuum:subscription-topic:";

/// A topic: which writes are its events.
#[derive(Debug, PartialEq, Eq)]
pub struct Topic {
    /// Its code (the canonical URL is [`TOPIC_BASE`] + code).
    pub code: &'static str,
    /// What it announces.
    pub title: &'static str,
    /// The resource types whose writes it looks at.
    pub types: &'static [&'static str],
}

impl Topic {
    /// Its canonical URL.
    pub fn canonical(&self) -> String {
        format!("{TOPIC_BASE}{}", self.code)
    }
}

/// Every topic offered.
pub const TOPICS: &[Topic] = &[
    Topic { code: "encounter-start", title: "An encounter started (status in-progress)", types: &["Encounter"] },
    Topic { code: "encounter-end", title: "An encounter ended (status finished)", types: &["Encounter"] },
    Topic {
        code: "new-result",
        title: "A result became final (Observation or DiagnosticReport final, amended or corrected)",
        types: &["Observation", "DiagnosticReport"],
    },
    Topic {
        code: "medication-change",
        title: "A medication order was made or changed (MedicationRequest)",
        types: &["MedicationRequest"],
    },
    Topic {
        code: "referral-state",
        title: "A referral changed state (ServiceRequest of category referral, or a Task based on one)",
        types: &["ServiceRequest", "Task"],
    },
];

/// The topic of `canonical`.
pub fn by_canonical(canonical: &str) -> Option<&'static Topic> {
    let code = canonical.strip_prefix(TOPIC_BASE)?;
    TOPICS.iter().find(|t| t.code == code)
}

fn status(resource: Option<&Value>) -> Option<&str> {
    resource?.get("status")?.as_str()
}

/// SNOMED CT 3457005 "Patient referral", the usual category of a referral.
fn is_referral(service_request: &Value) -> bool {
    service_request.get("category").and_then(Value::as_array).is_some_and(|categories| {
        categories.iter().any(|c| {
            c.get("coding").and_then(Value::as_array).is_some_and(|codings| {
                codings.iter().any(|coding| {
                    coding.get("code").and_then(Value::as_str) == Some("3457005")
                        || coding.get("code").and_then(Value::as_str) == Some("referral")
                })
            }) || c.get("text").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("referral"))
        })
    })
}

/// Whether the write of `new` (over `previous`) is an event of `topic`.
pub fn triggers(
    topic: &Topic,
    tx: &mut dyn Transaction,
    previous: Option<&Value>,
    new: &Value,
    version: &NewVersion<'_>,
) -> store::Result<bool> {
    if !topic.types.contains(&version.resource_type) {
        return Ok(false);
    }
    let (before, after) = (status(previous), status(Some(new)));
    let became =
        |states: &[&str]| after.is_some_and(|a| states.contains(&a)) && !before.is_some_and(|b| states.contains(&b));
    Ok(match topic.code {
        "encounter-start" => became(&["in-progress"]),
        "encounter-end" => became(&["finished"]),
        "new-result" => became(&["final"]) || (matches!(after, Some("amended" | "corrected")) && before != after),
        "medication-change" => previous.is_none() || before != after,
        "referral-state" => match version.resource_type {
            "ServiceRequest" => is_referral(new) && (previous.is_none() || before != after),
            _ => {
                (previous.is_none() || before != after || business(previous) != business(Some(new)))
                    && based_on_referral(tx, new)?
            }
        },
        _ => false,
    })
}

fn business(task: Option<&Value>) -> Option<&str> {
    task?.get("businessStatus")?.get("text")?.as_str()
}

fn based_on_referral(tx: &mut dyn Transaction, task: &Value) -> store::Result<bool> {
    let Some(based_on) = task.get("basedOn").and_then(Value::as_array) else { return Ok(false) };
    for reference in based_on {
        let Some(id) =
            reference.get("reference").and_then(Value::as_str).and_then(|r| r.strip_prefix("ServiceRequest/"))
        else {
            continue;
        };
        if let Some(ResourceVersion { body: Some(body), .. }) = tx.current("ServiceRequest", id)?
            && let Ok(request) = serde_json::from_str::<Value>(&body)
            && is_referral(&request)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicals_round_trip() {
        for topic in TOPICS {
            assert_eq!(by_canonical(&topic.canonical()), Some(topic));
        }
        assert_eq!(by_canonical("urn:continuum:subscription-topic:nothing"), None);
        assert_eq!(by_canonical("http://example.org/SubscriptionTopic/encounter-start"), None);
    }

    #[test]
    fn referral_category() {
        let referral =
            serde_json::json!({"category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}]});
        assert!(is_referral(&referral));
        assert!(!is_referral(&serde_json::json!({"category": [{"text": "lab"}]})));
    }
}
