//! Transitions of care: when a patient leaves the hospital or the emergency department (ADT
//! `A03`, an inpatient or ED Encounter finished — the alert hook tells which), the patient's
//! primary-care practice is sent the discharge summary (when there is one) and the medication
//! list, and two follow-up Tasks are created for it:
//!
//! - a **call** within 2 business days of the discharge;
//! - a **visit** within 7 days for a patient at higher risk, 14 days otherwise.
//!
//! Higher risk is a small, stated rule taken from the LACE index's parts (van Walraven et al.,
//! CMAJ 2010): a stay of 4 days or more (L), an emergency admission (A: the stay began in the ED
//! or is an ED visit), or one or more other ED visits or inpatient stays in the 6 months before
//! (E), or an age of 65 or more. Comorbidity (C) needs the Charlson index, which the population
//! health work computes; until then it is left out.
//!
//! The practice is the patient's `generalPractitioner` Organization, else the
//! `managingOrganization`, else the organization of a general practitioner who is a
//! Practitioner (the Task is then owned by that Practitioner). Everything is written through
//! the door as the alerts job, with conditional creates keyed on the Encounter
//! (`urn:continuum:transition|ENCOUNTER:call`), so a discharge delivered twice makes one set.
//!
//! [`without_follow_up`] lists the discharges the caller may see whose follow-up visit is not
//! done: neither the visit Task completed nor a later office visit on file.

use crate::{Error, Result};
use access::Access;
use chart::elements::instant;
use chart::read;
use serde_json::{Value, json};
use time::{Date, Duration, OffsetDateTime, Weekday};

/// The identifier system of what a transition writes.
pub const TRANSITION_IDENTIFIER: &str = "urn:continuum:transition";
/// The code system of the follow-up Tasks' codes.
pub const FOLLOW_UP_SYSTEM: &str = "urn:continuum:follow-up";
/// Inpatient classes (v3 ActCode).
const INPATIENT: &[&str] = &["IMP", "ACUTE", "NONAC", "OBSENC", "PRENC", "SS"];
/// LOINC discharge summary.
const DISCHARGE_SUMMARY: &str = "18842-5";

/// The settings of transitions of care.
#[derive(Debug, Clone)]
pub struct TransitionConfig {
    /// Business days within which the follow-up call is due.
    pub call_business_days: u32,
    /// Days within which the follow-up visit of a patient at higher risk is due.
    pub visit_days_higher_risk: i64,
    /// Days within which the follow-up visit of other patients is due.
    pub visit_days: i64,
}

impl Default for TransitionConfig {
    fn default() -> Self {
        TransitionConfig { call_business_days: 2, visit_days_higher_risk: 7, visit_days: 14 }
    }
}

/// Starts the transition of care of `patient` discharged from `encounter` (see the module's
/// documentation); run by the alerts job.
pub fn discharged(access: &Access, patient: &str, encounter: &str, config: &TransitionConfig) -> Result<()> {
    let stay = read::read(access, "Encounter", encounter)?;
    let record = read::read(access, "Patient", patient)?;
    let ended =
        stay.pointer("/period/end").and_then(Value::as_str).and_then(instant).unwrap_or_else(OffsetDateTime::now_utc);
    let (owner, organization) = practice(&record);
    let Some(owner) = owner else {
        tracing::info!("a discharge has no primary-care practice to follow it up");
        return Ok(());
    };
    let higher = higher_risk(access, patient, encounter, &stay, &record, ended)?;
    let call_due = add_business_days(ended.date(), config.call_business_days);
    let visit_due =
        ended.date() + Duration::days(if higher { config.visit_days_higher_risk } else { config.visit_days });
    let tasks = [
        ("call", "Follow-up call after discharge", call_due, "urgent"),
        ("visit", "Follow-up visit after discharge", visit_due, if higher { "urgent" } else { "routine" }),
    ];
    for (code, text, due, priority) in tasks {
        let key = format!("{encounter}:{code}");
        let task = json!({
            "resourceType": "Task",
            "identifier": [{"system": TRANSITION_IDENTIFIER, "value": key}],
            "status": "requested",
            "intent": "order",
            "priority": priority,
            "code": {"coding": [{"system": FOLLOW_UP_SYSTEM, "code": code, "display": text}], "text": text},
            "description": if higher { format!("{text} (higher risk: visit within {} days)", config.visit_days_higher_risk) } else { text.to_string() },
            "focus": {"reference": format!("Encounter/{encounter}")},
            "for": {"reference": format!("Patient/{patient}")},
            "authoredOn": store::format_instant(OffsetDateTime::now_utc()),
            "executionPeriod": {"end": due.to_string()},
            "owner": {"reference": owner},
        });
        access.create(task, Some(&format!("identifier={TRANSITION_IDENTIFIER}|{key}")))?;
    }
    // The discharge summary (when there is one) and the medication list, to the practice.
    let mut contents: Vec<Value> = Vec::new();
    let summaries = read::search(
        access,
        "DocumentReference",
        &[("encounter", format!("Encounter/{encounter}")), ("type", format!("http://loinc.org|{DISCHARGE_SUMMARY}"))],
        5,
    )?;
    for summary in &summaries {
        let id = summary.get("id").and_then(Value::as_str).unwrap_or_default();
        contents.push(json!({"contentReference": {"reference": format!("DocumentReference/{id}"), "display": "Discharge summary"}}));
    }
    let medications = read::search(
        access,
        "MedicationRequest",
        &[("patient", format!("Patient/{patient}")), ("status", "active".into())],
        200,
    )?;
    for medication in &medications {
        let id = medication.get("id").and_then(Value::as_str).unwrap_or_default();
        contents.push(json!({"contentReference": {
            "reference": format!("MedicationRequest/{id}"),
            "display": chart::lists::medication_name(medication)}}));
    }
    let note = if summaries.is_empty() {
        format!("Discharged; no discharge summary on file yet. {} active medications.", medications.len())
    } else {
        format!("Discharged; discharge summary and {} active medications attached.", medications.len())
    };
    contents.insert(0, json!({"contentString": note}));
    let recipient = organization.map(|o| format!("Organization/{o}")).unwrap_or_else(|| owner.clone());
    let key = format!("{encounter}:packet");
    let packet = json!({
        "resourceType": "Communication",
        "identifier": [{"system": TRANSITION_IDENTIFIER, "value": key}],
        "status": "completed",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "notification"}],
            "text": "Transition of care"}],
        "subject": {"reference": format!("Patient/{patient}")},
        "encounter": {"reference": format!("Encounter/{encounter}")},
        "about": [{"reference": format!("Encounter/{encounter}")}],
        "sent": store::format_instant(OffsetDateTime::now_utc()),
        "recipient": [{"reference": recipient}],
        "payload": contents,
    });
    access.create(packet, Some(&format!("identifier={TRANSITION_IDENTIFIER}|{key}")))?;
    Ok(())
}

/// Who follows a discharge up: the Task's owner reference and the practice's Organization id.
fn practice(record: &Value) -> (Option<String>, Option<String>) {
    let gps: Vec<&str> = record
        .get("generalPractitioner")
        .and_then(Value::as_array)
        .map(|all| all.iter().filter_map(|g| chart::elements::reference(Some(g))).collect())
        .unwrap_or_default();
    let managing = chart::elements::reference(record.get("managingOrganization")).map(str::to_string);
    let organization = gps
        .iter()
        .find(|g| g.starts_with("Organization/"))
        .map(|g| g.to_string())
        .or(managing)
        .and_then(|o| o.strip_prefix("Organization/").map(str::to_string));
    match (&organization, gps.iter().find(|g| g.starts_with("Practitioner/"))) {
        (Some(org), _) => (Some(format!("Organization/{org}")), organization.clone()),
        (None, Some(practitioner)) => (Some(practitioner.to_string()), None),
        (None, None) => (None, None),
    }
}

/// The stated higher-risk rule (see the module's documentation).
fn higher_risk(
    access: &Access,
    patient: &str,
    encounter: &str,
    stay: &Value,
    record: &Value,
    ended: OffsetDateTime,
) -> Result<bool> {
    let class = stay.pointer("/class/code").and_then(Value::as_str).unwrap_or_default();
    let began = stay.pointer("/period/start").and_then(Value::as_str).and_then(instant);
    if began.is_some_and(|b| ended - b >= Duration::days(4)) || class == "EMER" {
        return Ok(true);
    }
    if stay.pointer("/hospitalization/admitSource/coding/0/code").and_then(Value::as_str) == Some("emd") {
        return Ok(true);
    }
    if let Some(born) = record.get("birthDate").and_then(Value::as_str).and_then(instant)
        && (ended - born).whole_days() >= 65 * 365 + 16
    {
        return Ok(true);
    }
    let since = (ended - Duration::days(183)).date().to_string();
    let earlier = read::search(
        access,
        "Encounter",
        &[
            ("patient", format!("Patient/{patient}")),
            ("date", format!("ge{since}")),
            ("class", "EMER,IMP,ACUTE,NONAC,OBSENC".into()),
        ],
        50,
    )?;
    Ok(earlier.iter().any(|e| e.get("id").and_then(Value::as_str) != Some(encounter)))
}

/// `days` business days (Monday to Friday) after `from`.
pub fn add_business_days(from: Date, days: u32) -> Date {
    let mut at = from;
    let mut left = days;
    while left > 0 {
        at = at.next_day().unwrap_or(at);
        if !matches!(at.weekday(), Weekday::Saturday | Weekday::Sunday) {
            left -= 1;
        }
    }
    at
}

/// A recent discharge and where its follow-up stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discharge {
    /// The patient's id.
    pub patient: String,
    /// The patient's name as shown.
    pub patient_name: String,
    /// The Encounter's id.
    pub encounter: String,
    /// Inpatient stay or ED visit.
    pub setting: &'static str,
    /// When it ended (`YYYY-MM-DD`).
    pub discharged: String,
    /// The follow-up call Task's status (`none` when there is none).
    pub call: String,
    /// The follow-up visit Task's status (`none` when there is none).
    pub visit: String,
    /// When the visit is due, when known.
    pub visit_due: Option<String>,
    /// Whether the visit is overdue.
    pub overdue: bool,
}

/// The discharges of the last `days` days that the caller may see and whose follow-up visit is
/// not done (see the module's documentation), in the order they were last written.
pub fn without_follow_up(access: &Access, days: i64) -> Result<Vec<Discharge>> {
    if !(1..=365).contains(&days) {
        return Err(Error::Invalid("the period is 1 to 365 days".into()));
    }
    let today = OffsetDateTime::now_utc();
    let since = (today - Duration::days(days)).date().to_string();
    let stays = read::search(
        access,
        "Encounter",
        &[
            ("status", "finished".into()),
            ("_lastUpdated", format!("ge{since}")),
            ("class", "EMER,IMP,ACUTE,NONAC,OBSENC,PRENC,SS".into()),
            ("_sort", "_lastUpdated".into()),
        ],
        500,
    )?;
    let mut out = Vec::new();
    for stay in stays {
        let encounter = stay.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let Some(patient) = chart::elements::reference(stay.get("subject"))
            .and_then(|s| s.strip_prefix("Patient/"))
            .map(str::to_string)
        else {
            continue;
        };
        // When it ended: its period's end, else when it was last written (an ADT A03 without
        // PV1-45 finishes the visit without saying when).
        let ended_text = stay
            .pointer("/period/end")
            .or_else(|| stay.pointer("/meta/lastUpdated"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(ended) = instant(&ended_text) else { continue };
        if ended < today - Duration::days(days) {
            continue;
        }
        let tasks = read::search(access, "Task", &[("focus", format!("Encounter/{encounter}"))], 20)?;
        let status_of = |code: &str| {
            tasks.iter().find(|t| chart::elements::has_code(t.get("code"), FOLLOW_UP_SYSTEM, code)).map(|t| {
                let status = t.get("status").and_then(Value::as_str).unwrap_or_default().to_string();
                let due = t.pointer("/executionPeriod/end").and_then(Value::as_str).map(str::to_string);
                (status, due)
            })
        };
        let call = status_of("call");
        let visit = status_of("visit");
        if visit.as_ref().is_some_and(|(s, _)| s == "completed") {
            continue;
        }
        // An office, home or virtual visit that began after the discharge is a follow-up too.
        let visits = read::search(
            access,
            "Encounter",
            &[
                ("patient", format!("Patient/{patient}")),
                ("date", format!("ge{}", ended.date())),
                ("class", "AMB,HH,VR".into()),
            ],
            50,
        )?;
        let seen_after = visits.iter().any(|v| {
            v.pointer("/period/start").and_then(Value::as_str).and_then(instant).is_some_and(|start| start > ended)
        });
        if seen_after {
            continue;
        }
        let visit_due = visit.as_ref().and_then(|(_, due)| due.clone());
        let overdue = visit_due.as_deref().and_then(instant).is_some_and(|due| due + Duration::days(1) <= today);
        let patient_name = read::read(access, "Patient", &patient)
            .ok()
            .and_then(|p| crate::teams::person_name(&p))
            .unwrap_or_else(|| "(name withheld)".into());
        let class = stay.pointer("/class/code").and_then(Value::as_str).unwrap_or_default();
        out.push(Discharge {
            patient,
            patient_name,
            encounter,
            setting: if INPATIENT.contains(&class) { "Inpatient stay" } else { "Emergency department" },
            discharged: ended_text.get(..10).unwrap_or(&ended_text).to_string(),
            call: call.map(|(s, _)| s).unwrap_or_else(|| "none".into()),
            visit: visit.map(|(s, _)| s).unwrap_or_else(|| "none".into()),
            visit_due,
            overdue,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn business_days_skip_weekends() {
        assert_eq!(add_business_days(date!(2026 - 12 - 03), 2), date!(2026 - 12 - 07), "Thursday + 2 is Monday");
        assert_eq!(add_business_days(date!(2026 - 12 - 05), 2), date!(2026 - 12 - 08), "Saturday + 2 is Tuesday");
        assert_eq!(add_business_days(date!(2026 - 12 - 07), 2), date!(2026 - 12 - 09));
    }

    #[test]
    fn the_practice_is_the_gp_organization_then_the_managing_one_then_the_gp() {
        let record = json!({"generalPractitioner": [{"reference": "Practitioner/p"}, {"reference": "Organization/gp"}],
            "managingOrganization": {"reference": "Organization/m"}});
        assert_eq!(practice(&record), (Some("Organization/gp".into()), Some("gp".into())));
        let record = json!({"generalPractitioner": [{"reference": "Practitioner/p"}], "managingOrganization": {"reference": "Organization/m"}});
        assert_eq!(practice(&record), (Some("Organization/m".into()), Some("m".into())));
        let record = json!({"generalPractitioner": [{"reference": "Practitioner/p"}]});
        assert_eq!(practice(&record), (Some("Practitioner/p".into()), None));
        assert_eq!(practice(&json!({})), (None, None));
    }
}
