//! Whose records a member of staff may open: the patients of their organizations, the
//! patients they have a care relationship with, as the patients' Consents allow.
//!
//! - **Organization**: `Patient.managingOrganization` or `generalPractitioner` is one of the
//!   user's Organizations, or an Encounter of the patient was provided by one of them
//!   (`Encounter.serviceProvider`).
//! - **Care relationship**: the user's Practitioner (or Organization) takes part in the
//!   patient's CareTeam, Encounter, Appointment, or is the performer of a referral
//!   (ServiceRequest), or is their general practitioner.
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

/// Computes the reach of a user of `organizations` whose own resource is `practitioner`.
pub fn compute(records: &Records, organizations: &[String], practitioner: Option<&str>) -> store::Result<StaffReach> {
    let mut reach = StaffReach::default();
    let orgs: Vec<String> = organizations.iter().map(|o| format!("Organization/{o}")).collect();
    let mut actors = orgs.clone();
    if let Some(p) = practitioner {
        actors.push(format!("Practitioner/{p}"));
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
        searches.push(vec![("_has:CareTeam:patient:participant", actors.clone())]);
        searches.push(vec![("_has:ServiceRequest:patient:performer", actors.clone())]);
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
