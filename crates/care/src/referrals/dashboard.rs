//! The referral dashboard and a referral's page: each referral's state computed from its
//! ServiceRequest, its Task and the rest of the record (appointments, visits, reports), with
//! its age, in a few searches however many referrals are shown.

use super::{
    Evidence, FOLLOW_UP_SYSTEM, State, TASK_CODE_SYSTEM, is_referral, is_returned, reference_id, state_of, task_state,
    version_of,
};
use crate::tasks::{self, Membership, WorkItem};
use crate::{Error, Result};
use access::Access;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use store::HistoryQuery;
use time::OffsetDateTime;

/// One referral as the dashboard shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Referral {
    /// The ServiceRequest's id (the referral's id in the app).
    pub id: String,
    /// Its Task's id, when it has one the caller may see.
    pub task: Option<String>,
    /// The Task's version read (to take a step with `If-Match`).
    pub task_version: u64,
    /// The patient's id.
    pub patient: String,
    /// The patient's name, when the caller may read it.
    pub patient_name: Option<String>,
    /// The specialty or service asked for.
    pub service: String,
    /// Why, when recorded.
    pub reason: Option<String>,
    /// The referring organization (`Organization/id`) and its name.
    pub from: Option<(String, String)>,
    /// The receiving organization (`Organization/id`) and its name.
    pub to: Option<(String, String)>,
    /// When it was sent, as written.
    pub sent: Option<String>,
    /// Whole days since it was sent.
    pub age_days: i64,
    /// Where it stands.
    pub state: State,
    /// Open longer than the overdue age.
    pub overdue: bool,
    /// Why it was declined or cancelled, when recorded.
    pub status_reason: Option<String>,
}

/// What the record holds of referrals, gathered in a few searches.
pub(super) struct Found {
    pub(super) service_requests: HashMap<String, Value>,
    pub(super) tasks: HashMap<String, Value>,
    pub(super) evidence: HashMap<String, Evidence>,
}

/// A search that answers nothing (rather than 403) when the caller may not read the type.
pub(super) fn search_or_none(
    access: &Access,
    resource_type: &str,
    pairs: &[(&str, String)],
    count: usize,
) -> Result<Vec<Value>> {
    match tasks::search(access, resource_type, pairs, count) {
        Ok(found) => Ok(found),
        Err(e) if matches!(e.class(), fhir::ErrorClass::Forbidden) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The ServiceRequests, their Tasks and the rest of the record of referrals `ids`.
pub(super) fn gather(access: &Access, ids: &[String], tasks_found: Vec<Value>) -> Result<Found> {
    let mut found = Found { service_requests: HashMap::new(), tasks: HashMap::new(), evidence: HashMap::new() };
    for chunk in ids.chunks(100) {
        let refs = chunk.iter().map(|id| format!("ServiceRequest/{id}")).collect::<Vec<_>>().join(",");
        for sr in tasks::search(access, "ServiceRequest", &[("_id", chunk.join(","))], chunk.len())? {
            if is_referral(&sr)
                && let Some(id) = sr.get("id").and_then(Value::as_str)
            {
                found.service_requests.insert(id.to_string(), sr.clone());
            }
        }
        for appointment in search_or_none(access, "Appointment", &[("based-on", refs.clone())], 1000)? {
            if matches!(
                appointment.get("status").and_then(Value::as_str),
                Some("cancelled" | "entered-in-error" | "noshow")
            ) {
                continue;
            }
            for sr in based_on(&appointment, "basedOn") {
                let at = appointment.get("start").and_then(Value::as_str).map(str::to_string);
                found.evidence.entry(sr).or_default().appointment.get_or_insert(at.unwrap_or_default());
            }
        }
        for encounter in search_or_none(access, "Encounter", &[("based-on", refs.clone())], 1000)? {
            if matches!(encounter.get("status").and_then(Value::as_str), Some("cancelled" | "entered-in-error")) {
                continue;
            }
            for sr in based_on(&encounter, "basedOn") {
                let at = encounter.pointer("/period/start").and_then(Value::as_str).map(str::to_string);
                found.evidence.entry(sr).or_default().encounter.get_or_insert(at.unwrap_or_default());
            }
        }
        for report in search_or_none(access, "DiagnosticReport", &[("based-on", refs.clone())], 1000)? {
            if !is_returned("DiagnosticReport", &report) {
                continue;
            }
            let reference = format!("DiagnosticReport/{}", report.get("id").and_then(Value::as_str).unwrap_or(""));
            let at = report.get("issued").or_else(|| report.get("effectiveDateTime")).and_then(Value::as_str);
            for sr in based_on(&report, "basedOn") {
                found.evidence.entry(sr).or_default().reports.push((reference.clone(), at.map(str::to_string)));
            }
        }
        for document in search_or_none(access, "DocumentReference", &[("related", refs.clone())], 1000)? {
            if !is_returned("DocumentReference", &document) {
                continue;
            }
            let reference = format!("DocumentReference/{}", document.get("id").and_then(Value::as_str).unwrap_or(""));
            let at = document.get("date").and_then(Value::as_str);
            for sr in related(&document) {
                found.evidence.entry(sr).or_default().reports.push((reference.clone(), at.map(str::to_string)));
            }
        }
    }
    for task in tasks_found {
        if let Some(sr) = reference_id(task.get("focus"), "ServiceRequest") {
            found.tasks.entry(sr.to_string()).or_insert(task);
        }
    }
    Ok(found)
}

/// The ServiceRequest ids a resource's `field` (a list of references) names.
pub(super) fn based_on(resource: &Value, field: &str) -> Vec<String> {
    resource
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| reference_id(Some(r), "ServiceRequest"))
        .map(str::to_string)
        .collect()
}

/// The ServiceRequest ids a DocumentReference's `context.related` names.
pub(super) fn related(document: &Value) -> Vec<String> {
    document
        .pointer("/context/related")
        .map_or_else(Vec::new, |_| based_on(document.get("context").unwrap_or(&Value::Null), "related"))
}

/// The view of one referral.
pub(super) fn view(
    access: &Access,
    id: &str,
    found: &Found,
    names: &mut HashMap<String, String>,
    overdue_days: u32,
    now: OffsetDateTime,
) -> Option<Referral> {
    let sr = found.service_requests.get(id)?;
    let task = found.tasks.get(id);
    let empty = Evidence::default();
    let evidence = found.evidence.get(id).unwrap_or(&empty);
    let state = state_of(sr, task, evidence);
    let patient = reference_id(sr.get("subject"), "Patient")?.to_string();
    let sent = task
        .and_then(|t| t.get("authoredOn"))
        .or_else(|| sr.get("authoredOn"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let age_days = sent
        .as_deref()
        .and_then(search::values::DateRange::parse)
        .and_then(|r| search::values::from_micros(r.low).ok())
        .map_or(0, |at| (now - at).whole_days().max(0));
    let mut organization = |reference: Option<&str>| -> Option<(String, String)> {
        let id = reference?.strip_prefix("Organization/")?.to_string();
        let name = names.entry(id.clone()).or_insert_with(|| tasks::label_of(access, "Organization", &id)).clone();
        Some((format!("Organization/{id}"), name))
    };
    let from = organization(task.and_then(|t| t.pointer("/requester/reference")).and_then(Value::as_str));
    let to = organization(
        task.and_then(|t| t.pointer("/owner/reference"))
            .or_else(|| sr.pointer("/performer/0/reference"))
            .and_then(Value::as_str),
    );
    Some(Referral {
        id: id.to_string(),
        task: task.and_then(|t| t.get("id")).and_then(Value::as_str).map(str::to_string),
        task_version: task.map_or(1, version_of),
        patient_name: None,
        patient,
        service: tasks::text_of(sr.get("code")).unwrap_or_else(|| "(unspecified)".into()),
        reason: tasks::text_of(sr.pointer("/reasonCode/0")),
        from,
        to,
        sent,
        age_days,
        state,
        overdue: state.is_open() && age_days > i64::from(overdue_days),
        status_reason: task.and_then(|t| tasks::text_of(t.get("statusReason"))),
    })
}

/// Most referrals the dashboard shows.
pub const DASHBOARD_SIZE: usize = 500;

pub(super) fn fulfil_code() -> String {
    format!("{TASK_CODE_SYSTEM}|fulfill")
}

/// Every referral the caller may see that their organizations sent or received (a job or an
/// open door: every referral), newest first, with its age and state at `now`; only those in
/// `only` when given. `overdue_days`: the age past which an open referral is overdue.
pub fn dashboard(
    access: &Access,
    only: Option<State>,
    overdue_days: u32,
    now: OffsetDateTime,
) -> Result<Vec<Referral>> {
    let membership = Membership::of(access);
    let code = ("code", fulfil_code());
    let sort = ("_sort", "-authored-on".to_string());
    let mut tasks_found = Vec::new();
    if access.caller().is_none() {
        tasks_found = tasks::search(access, "Task", &[code, sort], DASHBOARD_SIZE)?;
    } else if !membership.organizations.is_empty() {
        let orgs = membership.organizations.iter().map(|o| format!("Organization/{o}")).collect::<Vec<_>>().join(",");
        for side in ["requester", "owner"] {
            let found =
                tasks::search(access, "Task", &[code.clone(), (side, orgs.clone()), sort.clone()], DASHBOARD_SIZE)?;
            tasks_found.extend(found);
        }
    }
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    for task in &tasks_found {
        if let Some(sr) = reference_id(task.get("focus"), "ServiceRequest")
            && seen.insert(sr.to_string())
        {
            ids.push(sr.to_string());
        }
    }
    let found = gather(access, &ids, tasks_found)?;
    let mut names = HashMap::new();
    let mut referrals: Vec<Referral> = ids
        .iter()
        .filter_map(|id| view(access, id, &found, &mut names, overdue_days, now))
        .filter(|r| only.is_none_or(|s| r.state == s))
        .collect();
    let mut patients: HashMap<String, Option<String>> = HashMap::new();
    for referral in &mut referrals {
        referral.patient_name = patients
            .entry(referral.patient.clone())
            .or_insert_with(|| tasks::patient_name(access, &referral.patient))
            .clone();
    }
    referrals.sort_by(|a, b| b.sent.cmp(&a.sent).then_with(|| a.id.cmp(&b.id)));
    Ok(referrals)
}

/// A step of a referral as its detail page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTaken {
    /// The step.
    pub state: State,
    /// When it was reached, when known.
    pub at: Option<String>,
    /// What recorded it (`Appointment/…`, a report), when not the Task itself.
    pub by: Option<String>,
}

/// A referral with the steps it went through, its reports and follow-up Tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    /// The referral.
    pub referral: Referral,
    /// The steps reached, in order.
    pub steps: Vec<StepTaken>,
    /// The reports that came back (`Type/id`, when).
    pub reports: Vec<(String, Option<String>)>,
    /// The follow-up Tasks its aging raised.
    pub follow_ups: Vec<WorkItem>,
}

/// One referral (by its ServiceRequest's id) as the caller may see it, with its steps.
pub fn detail(access: &Access, id: &str, overdue_days: u32, now: OffsetDateTime) -> Result<Detail> {
    if !fhir::reference::is_id(id) {
        return Err(Error::NotFound);
    }
    let task = tasks::search(access, "Task", &[("focus", format!("ServiceRequest/{id}")), ("code", fulfil_code())], 1)?;
    let task_id = task.first().and_then(|t| t.get("id")).and_then(Value::as_str).map(str::to_string);
    let found = gather(access, &[id.to_string()], task)?;
    let mut names = HashMap::new();
    let mut referral = view(access, id, &found, &mut names, overdue_days, now).ok_or(Error::NotFound)?;
    referral.patient_name = tasks::patient_name(access, &referral.patient);
    let evidence = found.evidence.get(id).cloned().unwrap_or_default();
    let mut reached: Vec<StepTaken> = Vec::new();
    let mut reach = |state: State, at: Option<String>, by: Option<String>| {
        if !reached.iter().any(|s| s.state == state) {
            reached.push(StepTaken { state, at, by });
        }
    };
    if let Some(task_id) = &task_id {
        let query = HistoryQuery {
            resource_type: Some("Task".into()),
            id: Some(task_id.clone()),
            count: 100,
            ..HistoryQuery::default()
        };
        let (mut versions, _) = access.history(&query)?;
        versions.reverse();
        for version in versions {
            let Some(body) = version.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else {
                continue;
            };
            reach(task_state(&body), Some(store::format_instant(version.last_updated)), None);
        }
    }
    if let Some(at) = &evidence.appointment {
        reach(State::Scheduled, Some(at.clone()), Some("an appointment".into()));
    }
    if let Some(at) = &evidence.encounter {
        reach(State::Seen, Some(at.clone()), Some("a visit".into()));
    }
    if let Some((report, at)) = evidence.reports.first() {
        reach(State::Closed, at.clone(), Some(report.clone()));
    }
    if referral.state == State::Closed {
        reach(State::Closed, None, None);
    }
    reached.sort_by_key(|s| s.state);
    let follow_ups = tasks::search(access, "Task", &[("identifier", format!("{FOLLOW_UP_SYSTEM}|{id}"))], 10)?
        .iter()
        .filter_map(|t| WorkItem::of(t, now))
        .collect();
    Ok(Detail { referral, steps: reached, reports: evidence.reports, follow_ups })
}
