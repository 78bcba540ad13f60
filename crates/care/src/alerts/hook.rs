//! The hook that turns a write into alerts: inside the write's own transaction, so a committed
//! admission, result or prescription is never left unannounced (and a write that fails
//! announces nothing). It only queues: one notification per event in the patient's channel
//! `alert:PATIENT` (so one patient's alerts keep their order, and writes about different
//! patients never wait on each other); [`super::deliver`] fans them out after the commit.

use super::events::{self, AlertKind};
use search::query::SearchQuery;
use serde_json::{Value, json};
use store::notify::NewNotification;
use store::outbox::WriteHook;
use store::{NewVersion, ResourceVersion, Transaction};
use time::OffsetDateTime;

/// The prefix of every alert channel.
pub const CHANNEL_PREFIX: &str = "alert:";

/// Most earlier PHQ-9 totals of one patient looked at to tell a rising score.
const MOST_EARLIER_SCORES: usize = 500;

/// Queues the alert events of Encounter, Observation and MedicationRequest writes (see the
/// module's documentation).
#[derive(Debug, Default)]
pub struct AlertHook;

impl WriteHook for AlertHook {
    fn wants(&self, resource_type: &str) -> bool {
        matches!(resource_type, "Encounter" | "Observation" | "MedicationRequest")
    }

    fn written(
        &self,
        tx: &mut dyn Transaction,
        previous: Option<&ResourceVersion>,
        new: &NewVersion<'_>,
        _sequence: i64,
    ) -> store::Result<()> {
        let Some(body) = new.body else { return Ok(()) };
        let Some(patient) = store::compartment::patients_in_index(new.resource_type, new.index).into_iter().next()
        else {
            return Ok(());
        };
        let now = OffsetDateTime::now_utc();
        if !worth_reading(new.resource_type, previous.is_some(), new.index, now) {
            return Ok(());
        }
        let Ok(after) = serde_json::from_str::<Value>(body) else { return Ok(()) };
        let before = previous.and_then(|p| p.body.as_deref()).and_then(|b| serde_json::from_str::<Value>(b).ok());
        let mut kinds = match new.resource_type {
            "Encounter" => events::of_encounter(before.as_ref(), &after),
            "Observation" => events::of_observation(before.as_ref(), &after, now),
            "MedicationRequest" => events::of_medication_request(before.as_ref(), &after, now),
            _ => Vec::new(),
        };
        if new.resource_type == "Observation"
            && events::has_loinc(&after, events::PHQ9_TOTAL)
            && events::is_new_result(before.as_ref(), &after, now)
            && events::rising(previous_score(tx, &patient, new.id, &after)?, &after)
        {
            kinds.push(AlertKind::RisingDepressionScore);
        }
        let channel = format!("{CHANNEL_PREFIX}{patient}");
        let resource = format!("{}/{}", new.resource_type, new.id);
        for kind in kinds {
            let payload = json!({"kind": kind.code(), "resource": resource, "version": new.version}).to_string();
            tx.enqueue_notification(&NewNotification {
                channel: &channel,
                event: kind.code(),
                resource: &resource,
                patient: Some(&patient),
                payload: &payload,
            })?;
        }
        Ok(())
    }
}

/// Whether a version may raise an alert at all, told from its index rows without parsing it:
/// an import of history (results and new prescriptions dated more than
/// [`events::NEWS_DAYS`] ago, visits written already finished) is passed over cheaply.
fn worth_reading(resource_type: &str, replaces: bool, index: &[search::IndexEntry], now: OffsetDateTime) -> bool {
    let oldest_news = search::micros(now - time::Duration::days(events::NEWS_DAYS));
    let dated_before_news = |param: &str| {
        let key = search::param_key(resource_type, param);
        index
            .iter()
            .any(|e| e.param == key && matches!(&e.value, search::IndexValue::Date(range) if range.high < oldest_news))
    };
    match resource_type {
        "Observation" => !dated_before_news("date"),
        "MedicationRequest" => replaces || !dated_before_news("authoredon"),
        "Encounter" => {
            let key = search::param_key("Encounter", "status");
            let status = index.iter().find_map(|e| match &e.value {
                search::IndexValue::Token { code: Some(code), .. } if e.param == key => Some(code.as_str()),
                _ => None,
            });
            replaces || matches!(status, Some("arrived" | "triaged" | "in-progress"))
        }
        _ => false,
    }
}

/// The patient's PHQ-9 total before `score` (the latest by clinical time before it; any other
/// when `score` has no time), read inside the transaction.
fn previous_score(tx: &mut dyn Transaction, patient: &str, id: &str, score: &Value) -> store::Result<Option<i64>> {
    let pairs = [
        ("patient".to_string(), format!("Patient/{patient}")),
        ("code".to_string(), format!("http://loinc.org|{}", events::PHQ9_TOTAL)),
    ];
    let query = SearchQuery::parse(Some("Observation"), &pairs, true).map_err(|e| store::Error::Invalid(e.0))?;
    let at = events::clinical_time(score);
    let mut best: Option<(Option<OffsetDateTime>, i64)> = None;
    for other in tx.search_ids(&query, MOST_EARLIER_SCORES)? {
        if other == id {
            continue;
        }
        let Some(version) = tx.current("Observation", &other)? else { continue };
        let Some(earlier) = version.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else {
            continue;
        };
        if !matches!(earlier.get("status").and_then(Value::as_str), Some("final" | "amended" | "corrected")) {
            continue;
        }
        let (Some(value), when) = (events::integer_value(&earlier), events::clinical_time(&earlier)) else { continue };
        if let (Some(at), Some(when)) = (at, when)
            && when >= at
        {
            continue;
        }
        if best.as_ref().is_none_or(|(b, _)| when > *b) {
            best = Some((when, value));
        }
    }
    Ok(best.map(|(_, value)| value))
}
