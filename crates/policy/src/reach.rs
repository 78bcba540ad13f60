//! Whose records a member of staff may open: the patients of their organizations, the
//! patients they have a care relationship with, as the patients' Consents allow.
//!
//! - **Organization**: `Patient.managingOrganization` or `generalPractitioner` is one of the
//!   user's Organizations, or an Encounter of the patient was provided by one of them
//!   (`Encounter.serviceProvider`).
//! - **Care relationship**: the user's Practitioner (or one of its PractitionerRoles, or the
//!   user's Organization) is a current member of the patient's CareTeam (the team neither
//!   inactive, suspended nor entered in error, the member's `period` and the team's covering
//!   today: membership ends with its period), takes part in an Encounter or Appointment of the
//!   patient, is the performer of a referral (ServiceRequest), is their general
//!   practitioner, or was sent an alert or notification about the
//!   patient (a `Communication` of category `alert` or `notification` to them, sent within the
//!   last [`COMMUNICATION_DAYS`] days: a practice's rules may tell a partner organization of
//!   an event so that it can take the patient on, as a referral does). Owning a Task is not:
//!   assigning work never opens a record by itself.
//! - **Consent**: an active Consent permitting one of the user's Organizations adds the
//!   patient; one denying it removes the patient (whatever the relationship), and one limited
//!   to a sensitive category withholds those records only. Substance-use records (42 CFR
//!   Part 2) are shared only where a Consent permits the category to the user's organization.
//!
//! The answer is computed with ordinary searches and kept for a short while per user
//! ([`crate::Policy`] forgets it sooner when a relationship changes through the API).

use crate::consent::{self, RuleKind, Sensitivity};
use search::query::SearchQuery;
use std::collections::{HashMap, HashSet};
use store::Records;

/// How long an alert or notification to someone counts as a care relationship.
pub const COMMUNICATION_DAYS: i64 = 30;

/// Most patients one search of the reach collects.
const MOST: usize = 100_000;

/// The patients one member of staff may open, with the categories withheld per patient.
#[derive(Debug, Default, Clone)]
pub struct StaffReach {
    /// Patient ids.
    pub patients: HashSet<String>,
    /// Categories withheld from this user, per patient (a Consent denying them).
    pub withheld: HashMap<String, Vec<Sensitivity>>,
    /// Patients whose substance-use records a Consent shares with this user's organizations.
    pub substance_use_shared: HashSet<String>,
}

impl StaffReach {
    /// The categories of `patient`'s records hidden from this user (`sees_bh`: the user's
    /// roles admit behavioral-health records).
    pub fn hidden(&self, patient: &str, sees_bh: bool) -> Vec<Sensitivity> {
        let mut hidden = self.withheld.get(patient).cloned().unwrap_or_default();
        if !sees_bh && !hidden.contains(&Sensitivity::BehavioralHealth) {
            hidden.push(Sensitivity::BehavioralHealth);
        }
        if !self.substance_use_shared.contains(patient) && !hidden.contains(&Sensitivity::SubstanceUse) {
            hidden.push(Sensitivity::SubstanceUse);
        }
        hidden
    }
}

pub(crate) fn ids_of(
    records: &Records,
    resource_type: &str,
    pairs: &[(&str, String)],
) -> store::Result<Vec<(String, String)>> {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(n, v)| (n.to_string(), v.clone())).collect();
    let query = SearchQuery::parse(Some(resource_type), &pairs, true).map_err(|e| store::Error::Invalid(e.0))?;
    let keys = records.backend().search(&query, MOST)?;
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(1000) {
        for (_, version) in records.backend().fetch(chunk)? {
            let body = version.body.clone().unwrap_or_default();
            out.push((version.id, body.to_string()));
        }
    }
    Ok(out)
}

/// The patient of care team `team` when one of `actors` (`Type/id`) is a current member on
/// `today` (`YYYY-MM-DD`): the team neither inactive, suspended nor entered in error, and both
/// the team's `period` and the member's cover the day (an open end is open).
pub fn current_member_of(team: &serde_json::Value, actors: &[&str], today: &str) -> Option<String> {
    use serde_json::Value;
    let status = team.get("status").and_then(Value::as_str).unwrap_or("active");
    if matches!(status, "inactive" | "suspended" | "entered-in-error") || !covers(team.get("period"), today) {
        return None;
    }
    let patient = team.pointer("/subject/reference").and_then(Value::as_str)?.strip_prefix("Patient/")?.to_string();
    let member = team.get("participant").and_then(Value::as_array)?.iter().any(|p| {
        let named = p.pointer("/member/reference").and_then(Value::as_str).is_some_and(|r| actors.contains(&r));
        named && covers(p.get("period"), today)
    });
    member.then_some(patient)
}

/// Whether `period` (FHIR Period, dates or date-times) covers `today`; no period covers all.
fn covers(period: Option<&serde_json::Value>, today: &str) -> bool {
    let Some(period) = period else { return true };
    let day =
        |at: &str| period.get(at).and_then(serde_json::Value::as_str).map(|v| v.get(..10).unwrap_or(v).to_string());
    let started = day("start").is_none_or(|start| start.as_str() <= today);
    let not_ended = day("end").is_none_or(|end| end.as_str() >= today);
    started && not_ended
}

/// Computes the reach of a user of `organizations` whose own resource is `practitioner`.
pub fn compute(records: &Records, organizations: &[String], practitioner: Option<&str>) -> store::Result<StaffReach> {
    let mut reach = StaffReach::default();
    let orgs: Vec<String> = organizations.iter().map(|o| format!("Organization/{o}")).collect();
    let mut actors = orgs.clone();
    if let Some(p) = practitioner {
        actors.push(format!("Practitioner/{p}"));
        for (role, _) in ids_of(records, "PractitionerRole", &[("practitioner", format!("Practitioner/{p}"))])? {
            actors.push(format!("PractitionerRole/{role}"));
        }
    }
    let mut searches: Vec<Vec<(&str, String)>> = Vec::new();
    if !orgs.is_empty() {
        let orgs = orgs.join(",");
        searches.push(vec![("organization", orgs.clone())]);
        searches.push(vec![("_has:Encounter:patient:service-provider", orgs)]);
    }
    if !actors.is_empty() {
        let actors = actors.join(",");
        searches.push(vec![("general-practitioner", actors.clone())]);
        searches.push(vec![("_has:ServiceRequest:patient:performer", actors.clone())]);
        let since = (time::OffsetDateTime::now_utc() - time::Duration::days(COMMUNICATION_DAYS)).date();
        let told = ids_of(
            records,
            "Communication",
            &[("recipient", actors.clone()), ("category", "alert,notification".into()), ("sent", format!("ge{since}"))],
        )?;
        for (_, body) in told {
            let Ok(message) = serde_json::from_str::<serde_json::Value>(&body) else { continue };
            if let Some(patient) = message
                .pointer("/subject/reference")
                .and_then(serde_json::Value::as_str)
                .and_then(|r| r.strip_prefix("Patient/"))
            {
                reach.patients.insert(patient.to_string());
            }
        }
        let today = time::OffsetDateTime::now_utc().date().to_string();
        for (_, body) in ids_of(records, "CareTeam", &[("participant", actors.clone())])? {
            let Ok(team) = serde_json::from_str::<serde_json::Value>(&body) else { continue };
            if let Some(patient) = current_member_of(&team, &actors.split(',').collect::<Vec<_>>(), &today) {
                reach.patients.insert(patient);
            }
        }
    }
    if let Some(p) = practitioner {
        searches.push(vec![("_has:Encounter:patient:participant", format!("Practitioner/{p}"))]);
        searches.push(vec![("_has:Appointment:patient:actor", format!("Practitioner/{p}"))]);
    }
    for pairs in &searches {
        for (id, _) in ids_of(records, "Patient", pairs)? {
            reach.patients.insert(id);
        }
    }
    if orgs.is_empty() {
        return Ok(reach);
    }
    // Consents that name one of the user's organizations.
    let consents = ids_of(records, "Consent", &[("actor", orgs.join(",")), ("status", "active".into())])?;
    let mut denied = HashSet::new();
    for (_, body) in consents {
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else { continue };
        let Some((patient, rules)) = consent::rules(&json) else { continue };
        for rule in rules.iter().filter(|r| !r.organizations.is_empty() && r.names_any(organizations)) {
            match (rule.kind, rule.categories.is_empty()) {
                (RuleKind::Permit, true) => {
                    reach.patients.insert(patient.clone());
                }
                (RuleKind::Deny, true) => {
                    denied.insert(patient.clone());
                }
                (RuleKind::Permit, false) => {
                    if rule.categories.contains(&Sensitivity::SubstanceUse) {
                        reach.substance_use_shared.insert(patient.clone());
                    }
                }
                (RuleKind::Deny, false) => {
                    let withheld = reach.withheld.entry(patient.clone()).or_default();
                    for category in &rule.categories {
                        if !withheld.contains(category) {
                            withheld.push(*category);
                        }
                    }
                }
            }
        }
    }
    for patient in &denied {
        reach.patients.remove(patient);
    }
    Ok(reach)
}

#[cfg(test)]
mod tests {
    use super::current_member_of;
    use serde_json::json;

    #[test]
    fn membership_counts_while_the_team_and_the_period_are_current() {
        let team = |status: &str, period: serde_json::Value| {
            json!({"resourceType": "CareTeam", "status": status, "subject": {"reference": "Patient/p"},
            "participant": [
                {"member": {"reference": "Practitioner/now"}, "period": period},
                {"member": {"reference": "Practitioner/other"}}
            ]})
        };
        let today = "2026-12-08";
        let open = json!({"start": "2026-01-01"});
        assert_eq!(
            current_member_of(&team("active", open.clone()), &["Practitioner/now"], today).as_deref(),
            Some("p")
        );
        assert_eq!(current_member_of(&team("active", open.clone()), &["Practitioner/nobody"], today), None);
        let ended = json!({"start": "2026-01-01", "end": "2026-12-07"});
        assert_eq!(current_member_of(&team("active", ended), &["Practitioner/now"], today), None, "ended yesterday");
        let ends_today = json!({"start": "2026-01-01", "end": "2026-12-08T17:00:00Z"});
        assert!(
            current_member_of(&team("active", ends_today), &["Practitioner/now"], today).is_some(),
            "until the day's end"
        );
        let later = json!({"start": "2026-12-09"});
        assert_eq!(current_member_of(&team("active", later), &["Practitioner/now"], today), None, "not yet");
        for closed in ["inactive", "suspended", "entered-in-error"] {
            assert_eq!(current_member_of(&team(closed, open.clone()), &["Practitioner/now"], today), None, "{closed}");
        }
        let mut over = team("active", open);
        over["period"] = json!({"end": "2025-01-01"});
        assert_eq!(current_member_of(&over, &["Practitioner/now"], today), None, "the team's own period ended");
    }
}
