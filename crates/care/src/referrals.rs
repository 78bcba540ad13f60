//! Referrals between organizations, tracked until the consult report comes back.
//!
//! A referral is a `ServiceRequest` with the category referral (SNOMED CT 3457005 "Patient
//! referral"; `performer` the receiving Organization, `requester` the referring person or
//! organization) and a `Task` that carries it between the organizations (code `fulfill`,
//! `focus` the ServiceRequest, `requester` the referring Organization, `owner` the receiving
//! one). Its steps ([`State`]) are read from the record, whatever door wrote them:
//!
//! | step | recorded as |
//! |---|---|
//! | sent | the Task `requested` (business status `sent`) |
//! | received | business status `received` (or Task status `received`) |
//! | accepted / declined | Task `accepted` / `rejected` with its reason |
//! | scheduled | business status `scheduled`, or an `Appointment` with `basedOn` the ServiceRequest |
//! | seen | business status `seen`, or an `Encounter` with `basedOn` the ServiceRequest |
//! | closed | a released `DiagnosticReport` with `basedOn` the ServiceRequest, or a signed `DocumentReference` in force whose `context.related` names it (R4's DocumentReference has no `basedOn`; see [`is_returned`]), or the ServiceRequest `completed` |
//!
//! Business statuses are codes of [`STEP_SYSTEM`]. The steps the receiving side takes in the
//! app ([`step`]) move the Task through its lifecycle (`crate::tasks`): scheduled and seen
//! put it `in-progress`.
//!
//! **Closing the loop** ([`ReferralCloser`]): a follower right behind the commits reads the
//! DocumentReference and DiagnosticReport versions written since its checkpoint (the store's
//! history is its queue, the checkpoint in the job table, so from its first start on nothing
//! is missed across a restart or a crash) and, for every referral a report names, marks the ServiceRequest `completed` and
//! the Task `completed` (business status `report-returned`, walking the lifecycle's steps)
//! through the door as the job [`JOB`]; open follow-up Tasks of the referral are cancelled.
//! The dashboard computes the state from the record too, so a report shows the referral
//! closed even before the follower got to it.
//!
//! **Aging** ([`raise_overdue`], [`ReferralAging`]): a referral open longer than the overdue
//! age raises one Task for the referring organization (code [`FOLLOW_UP_CODE`], `focus` the
//! ServiceRequest), created conditionally on the identifier [`FOLLOW_UP_SYSTEM`]`|`the
//! ServiceRequest's id, so running the job again raises nothing more.

use crate::tasks::{self, Membership, Status, WorkItem};
use crate::{Error, Result};
use access::{Access, Door, Who};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use store::{HistoryQuery, JobStore, ResourceVersion, StoredJob, WriteKind};
use time::OffsetDateTime;

/// The job the follower and the aging job read and write as (audited under this name).
pub const JOB: &str = "referrals";
/// SNOMED CT.
pub const SNOMED: &str = "http://snomed.info/sct";
/// SNOMED CT "Patient referral": the category of a referral's ServiceRequest.
pub const REFERRAL_CATEGORY: &str = "3457005";
/// The system of the Task codes of R4 (`fulfill`).
pub const TASK_CODE_SYSTEM: &str = "http://hl7.org/fhir/CodeSystem/task-code";
/// The system of a referral Task's business status codes (`sent`, `received`, `accepted`,
/// `declined`, `scheduled`, `seen`, `report-returned`, `cancelled`).
pub const STEP_SYSTEM: &str = "urn:continuum:referral-step";
/// The identifier system of the follow-up Task an overdue referral raises (its value: the
/// ServiceRequest's id).
pub const FOLLOW_UP_SYSTEM: &str = "urn:continuum:referral-follow-up";
/// The system of Continuum's own Task codes.
pub const CARE_TASK_SYSTEM: &str = "urn:continuum:task-code";
/// The code of the follow-up Task of an overdue referral.
pub const FOLLOW_UP_CODE: &str = "follow-up-overdue-referral";
/// Referrals open longer than this many days are overdue, unless configured otherwise.
pub const DEFAULT_OVERDUE_DAYS: u32 = 14;

/// Where a referral stands, in the order its steps are taken (a later step wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// Sent, not yet acknowledged.
    Sent,
    /// The receiving organization has it.
    Received,
    /// The receiving organization will see the patient.
    Accepted,
    /// An appointment is made.
    Scheduled,
    /// The patient was seen.
    Seen,
    /// The receiving organization declined it.
    Declined,
    /// The referring side withdrew it.
    Cancelled,
    /// The report came back: the loop is closed.
    Closed,
}

impl State {
    /// Every state, in order.
    pub const ALL: [State; 8] = [
        State::Sent,
        State::Received,
        State::Accepted,
        State::Scheduled,
        State::Seen,
        State::Declined,
        State::Cancelled,
        State::Closed,
    ];

    /// Its code (a filter's value, and the business status written for it).
    pub fn code(self) -> &'static str {
        match self {
            State::Sent => "sent",
            State::Received => "received",
            State::Accepted => "accepted",
            State::Scheduled => "scheduled",
            State::Seen => "seen",
            State::Declined => "declined",
            State::Cancelled => "cancelled",
            State::Closed => "report-returned",
        }
    }

    /// What a page calls it.
    pub fn label(self) -> &'static str {
        match self {
            State::Sent => "Sent",
            State::Received => "Received",
            State::Accepted => "Accepted",
            State::Scheduled => "Scheduled",
            State::Seen => "Seen",
            State::Declined => "Declined",
            State::Cancelled => "Cancelled",
            State::Closed => "Report returned (closed)",
        }
    }

    /// The state of a code (see [`State::code`]; `closed` too).
    pub fn parse(code: &str) -> Option<State> {
        if code == "closed" {
            return Some(State::Closed);
        }
        State::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Whether the referral still waits for something.
    pub fn is_open(self) -> bool {
        !matches!(self, State::Declined | State::Cancelled | State::Closed)
    }
}

/// Whether a ServiceRequest is a referral (category SNOMED CT 3457005).
pub fn is_referral(service_request: &Value) -> bool {
    service_request.get("category").and_then(Value::as_array).into_iter().flatten().any(|c| {
        c.get("coding").and_then(Value::as_array).into_iter().flatten().any(|coding| {
            coding.get("system").and_then(Value::as_str) == Some(SNOMED)
                && coding.get("code").and_then(Value::as_str) == Some(REFERRAL_CATEGORY)
        })
    })
}

fn business_code(task: &Value) -> Option<&str> {
    let codings = task.pointer("/businessStatus/coding").and_then(Value::as_array)?;
    codings
        .iter()
        .find(|c| c.get("system").and_then(Value::as_str) == Some(STEP_SYSTEM))
        .and_then(|c| c.get("code"))
        .and_then(Value::as_str)
}

/// The step one version of a referral's Task records.
pub fn task_state(task: &Value) -> State {
    let business = business_code(task).and_then(State::parse);
    match Status::of(task) {
        Some(Status::Completed) => State::Closed,
        Some(Status::Rejected) => State::Declined,
        Some(Status::Cancelled | Status::Failed | Status::EnteredInError) => State::Cancelled,
        status => {
            let by_status = match status {
                Some(Status::Accepted | Status::Ready | Status::InProgress | Status::OnHold) => State::Accepted,
                Some(Status::Received) => State::Received,
                _ => State::Sent,
            };
            // The business status names the steps the status does not: received before the
            // decision, scheduled and seen once accepted (never one the status denies).
            match business {
                Some(State::Received) => by_status.max(State::Received),
                Some(b @ (State::Scheduled | State::Seen)) if by_status >= State::Accepted => by_status.max(b),
                _ => by_status,
            }
        }
    }
}

/// What else the record holds about a referral, found by its ServiceRequest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// When its appointment is (an Appointment `basedOn` it, not cancelled).
    pub appointment: Option<String>,
    /// When the patient was seen (an Encounter `basedOn` it).
    pub encounter: Option<String>,
    /// The reports that came back (`Type/id`, when).
    pub reports: Vec<(String, Option<String>)>,
}

/// The referral's state from its ServiceRequest, its Task and the rest of the record.
pub fn state_of(service_request: &Value, task: Option<&Value>, evidence: &Evidence) -> State {
    let sr_status = service_request.get("status").and_then(Value::as_str).unwrap_or("");
    if sr_status == "completed" || !evidence.reports.is_empty() {
        return State::Closed;
    }
    let mut state = task.map_or(State::Sent, task_state);
    if sr_status == "revoked" || sr_status == "entered-in-error" {
        state = state.max(State::Cancelled);
    }
    if state.is_open() {
        if evidence.encounter.is_some() {
            state = state.max(State::Seen);
        } else if evidence.appointment.is_some() {
            state = state.max(State::Scheduled);
        }
    }
    state
}

/// A referral to send.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReferral {
    /// The patient's id.
    pub patient: String,
    /// The specialty or service asked for, as the clinician wrote it (`ServiceRequest.code`).
    pub service: String,
    /// Its SNOMED CT code, when given.
    pub snomed: Option<String>,
    /// Why (`ServiceRequest.reasonCode` text), when given.
    pub reason: Option<String>,
    /// The referring Organization's id; `None`: the caller's first organization.
    pub from: Option<String>,
    /// The receiving Organization's id.
    pub to: String,
}

/// The ids a sent referral was stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The ServiceRequest (the referral itself).
    pub service_request: String,
    /// The Task carrying it.
    pub task: String,
}

fn id_at(answer: &Value, entry: usize) -> Option<String> {
    let location = answer.pointer(&format!("/entry/{entry}/response/location")).and_then(Value::as_str)?;
    location.split('/').nth(1).map(str::to_string)
}

fn step_coding(state: State) -> Value {
    json!({"coding": [{"system": STEP_SYSTEM, "code": state.code(), "display": state.label()}], "text": state.label()})
}

/// Sends a referral as the caller of `access`: the ServiceRequest and its Task in one
/// transaction. The referring organization must be one of the caller's (a job may name any).
pub fn send(access: &Access, referral: &NewReferral) -> Result<Sent> {
    let membership = Membership::of(access);
    let from = match &referral.from {
        Some(from) => from.clone(),
        None => membership
            .organizations
            .first()
            .cloned()
            .ok_or_else(|| Error::Invalid("name the referring organization (you belong to none)".into()))?,
    };
    for (what, id) in
        [("patient", &referral.patient), ("referring organization", &from), ("receiving organization", &referral.to)]
    {
        if !fhir::reference::is_id(id) {
            return Err(Error::Invalid(format!("the {what} is not a valid id")));
        }
    }
    if access.caller().is_some() && !membership.organizations.contains(&from) {
        return Err(access::Error::Forbidden("you may refer only on behalf of your own organizations".into()).into());
    }
    if from == referral.to {
        return Err(Error::Invalid("a referral goes to another organization".into()));
    }
    if referral.service.trim().is_empty() {
        return Err(Error::Invalid("say which specialty or service the patient is referred to".into()));
    }
    let now = tasks::now_text();
    let mut code = json!({"text": referral.service.trim()});
    if let Some(snomed) = &referral.snomed {
        code["coding"] = json!([{"system": SNOMED, "code": snomed, "display": referral.service.trim()}]);
    }
    let patient = format!("Patient/{}", referral.patient);
    let requester = tasks::caller_reference(access).unwrap_or_else(|| format!("Organization/{from}"));
    let mut service_request = json!({
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": SNOMED, "code": REFERRAL_CATEGORY, "display": "Patient referral"}]}],
        "code": code,
        "subject": {"reference": patient},
        "authoredOn": now,
        "requester": {"reference": requester},
        "performer": [{"reference": format!("Organization/{}", referral.to)}],
    });
    if let Some(reason) = referral.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        service_request["reasonCode"] = json!([{"text": reason}]);
    }
    let sr_urn = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let task = json!({
        "resourceType": "Task",
        "status": "requested",
        "businessStatus": step_coding(State::Sent),
        "intent": "order",
        "priority": "routine",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "fulfill", "display": "Fulfill the focal request"}]},
        "description": format!("Referral: {}", referral.service.trim()),
        "focus": {"reference": sr_urn},
        "for": {"reference": patient},
        "authoredOn": now,
        "requester": {"reference": format!("Organization/{from}")},
        "owner": {"reference": format!("Organization/{}", referral.to)},
    });
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": sr_urn, "resource": service_request, "request": {"method": "POST", "url": "ServiceRequest"}},
        {"resource": task, "request": {"method": "POST", "url": "Task"}},
    ]});
    let answer = access.transaction_for(bundle, Some(&referral.patient))?;
    Ok(Sent {
        service_request: id_at(&answer, 0).ok_or(Error::NotFound)?,
        task: id_at(&answer, 1).ok_or(Error::NotFound)?,
    })
}

/// Who may be named on a new referral, each organization as `(id, name)`, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parties {
    /// The caller's organizations: the referring side.
    pub from: Vec<(String, String)>,
    /// The other organizations of the directory (up to 500): the receiving side.
    pub to: Vec<(String, String)>,
}

/// Who the caller may name on a new referral.
pub fn parties(access: &Access) -> Result<Parties> {
    let membership = Membership::of(access);
    let mut from: Vec<(String, String)> =
        membership.organizations.iter().map(|o| (o.clone(), tasks::label_of(access, "Organization", o))).collect();
    from.sort_by(|a, b| a.1.cmp(&b.1));
    let directory = tasks::search(access, "Organization", &[("_sort", "name".into())], 500)?;
    let to = directory
        .iter()
        .filter_map(|o| {
            let id = o.get("id").and_then(Value::as_str)?;
            let name = o.get("name").and_then(Value::as_str).unwrap_or(id);
            (!membership.organizations.iter().any(|m| m == id)).then(|| (id.to_string(), name.to_string()))
        })
        .collect();
    Ok(Parties { from, to })
}

/// A step the receiving organization (or, to cancel, the referring one) records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The referral arrived.
    Receive,
    /// It will be seen.
    Accept,
    /// It will not, with the reason.
    Decline(String),
    /// An appointment is made.
    Schedule,
    /// The patient was seen.
    Seen,
    /// Withdrawn by the referring side, with the reason.
    Cancel(String),
}

impl Step {
    /// The step of a form's code (`receive`, `accept`, `decline`, `schedule`, `seen`,
    /// `cancel`), with the reason given.
    pub fn parse(code: &str, reason: Option<&str>) -> Option<Step> {
        let reason = || reason.map(str::trim).unwrap_or("").to_string();
        Some(match code {
            "receive" => Step::Receive,
            "accept" => Step::Accept,
            "decline" => Step::Decline(reason()),
            "schedule" => Step::Schedule,
            "seen" => Step::Seen,
            "cancel" => Step::Cancel(reason()),
            _ => return None,
        })
    }

    fn state(&self) -> State {
        match self {
            Step::Receive => State::Received,
            Step::Accept => State::Accepted,
            Step::Decline(_) => State::Declined,
            Step::Schedule => State::Scheduled,
            Step::Seen => State::Seen,
            Step::Cancel(_) => State::Cancelled,
        }
    }
}

fn reference_id<'a>(value: Option<&'a Value>, resource_type: &str) -> Option<&'a str> {
    value?.get("reference")?.as_str()?.strip_prefix(resource_type)?.strip_prefix('/')
}

/// The referral's Task as it becomes after `step`, or why the step cannot be taken now.
fn stepped(task: &Value, step: &Step) -> Result<Value> {
    let status = Status::of(task).ok_or_else(|| Error::Transition("the referral's Task has no known status".into()))?;
    let current = task_state(task);
    if !current.is_open() {
        return Err(Error::Transition(format!("the referral is {}: it takes no more steps", current.code())));
    }
    let action = match (step, status) {
        (Step::Receive, _) if current >= State::Received => {
            return Err(Error::Transition("the referral was received already".into()));
        }
        (Step::Receive, _) => None,
        (Step::Accept, _) => Some(tasks::Action::Accept),
        (Step::Decline(reason), _) => Some(tasks::Action::Reject(reason.clone())),
        (Step::Schedule | Step::Seen, Status::Accepted | Status::Ready | Status::OnHold) => Some(tasks::Action::Start),
        (Step::Schedule | Step::Seen, Status::InProgress) => None,
        (Step::Schedule | Step::Seen, _) => {
            return Err(Error::Transition("accept the referral before it is scheduled or seen".into()));
        }
        (Step::Cancel(reason), _) => Some(tasks::Action::Cancel(reason.clone())),
    };
    let mut next = match &action {
        Some(action) => tasks::apply(task, action)?,
        None => {
            let mut next = task.clone();
            next.as_object_mut().map(|o| o.remove("meta"));
            next["lastModified"] = json!(tasks::now_text());
            next
        }
    };
    next["businessStatus"] = step_coding(step.state());
    Ok(next)
}

/// Records `step` on the referral whose Task is `task` (as read at `version`: `If-Match`).
/// Receiving, accepting, declining, scheduling and seeing are the receiving organization's
/// (the Task's owner); cancelling the referring one's (its requester). Cancelling also
/// revokes the ServiceRequest, in the same transaction.
pub fn step(access: &Access, task_id: &str, version: u64, step: &Step) -> Result<u64> {
    if !fhir::reference::is_id(task_id) {
        return Err(Error::NotFound);
    }
    let stored = access.read("Task", task_id)?;
    tasks::if_match(&stored, version)?;
    let task: Value = stored.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).ok_or(Error::NotFound)?;
    let service_request = reference_id(task.get("focus"), "ServiceRequest").ok_or(Error::NotFound)?.to_string();
    let side = if matches!(step, Step::Cancel(_)) { "requester" } else { "owner" };
    if access.caller().is_some() {
        let organization = reference_id(task.get(side), "Organization");
        let membership = Membership::of(access);
        if !organization.is_some_and(|o| membership.organizations.iter().any(|m| m == o)) {
            let whose = if side == "owner" { "the receiving organization's" } else { "the referring organization's" };
            return Err(access::Error::Forbidden(format!("this step is {whose}")).into());
        }
    }
    let next = stepped(&task, step)?;
    if let Step::Cancel(_) = step {
        let sr = access.read("ServiceRequest", &service_request)?;
        let mut sr: Value = sr.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).ok_or(Error::NotFound)?;
        let sr_version = version_of(&sr);
        sr.as_object_mut().map(|o| o.remove("meta"));
        sr["status"] = json!("revoked");
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            put_entry("Task", task_id, next, version),
            put_entry("ServiceRequest", &service_request, sr, sr_version),
        ]});
        // Whose record the audit names: the one reading of the Patient compartment.
        let patient = policy::patients_of("Task", &task).into_iter().next();
        access.transaction_for(bundle, patient.as_deref())?;
        return Ok(version + 1);
    }
    let written = access.update("Task", task_id, next, Some(version))?;
    Ok(written.version.map(|v| v.version).unwrap_or(version + 1))
}

/// The steps the caller's side may take next on `referral`, as form codes (see
/// [`Step::parse`]) with whether each needs a reason: the receiving organization's while the
/// referral is open (receive, accept or decline, schedule, seen), the referring one's to
/// cancel it. A job or an open door is either side.
pub fn next_steps(access: &Access, referral: &Referral) -> Vec<(&'static str, bool)> {
    let state = referral.state;
    if !state.is_open() || referral.task.is_none() {
        return Vec::new();
    }
    let membership = Membership::of(access);
    let anyone = access.caller().is_none();
    let ours = |side: &Option<(String, String)>| {
        anyone
            || side
                .as_ref()
                .and_then(|(r, _)| r.strip_prefix("Organization/"))
                .is_some_and(|o| membership.organizations.iter().any(|m| m == o))
    };
    let mut steps = Vec::new();
    if ours(&referral.to) {
        if state < State::Received {
            steps.push(("receive", false));
        }
        if state < State::Accepted {
            steps.extend([("accept", false), ("decline", true)]);
        }
        if state >= State::Accepted && state < State::Scheduled {
            steps.push(("schedule", false));
        }
        if state >= State::Accepted && state < State::Seen {
            steps.push(("seen", false));
        }
    }
    if ours(&referral.from) {
        steps.push(("cancel", true));
    }
    steps
}

fn version_of(resource: &Value) -> u64 {
    resource.pointer("/meta/versionId").and_then(Value::as_str).and_then(|v| v.parse().ok()).unwrap_or(1)
}

fn put_entry(resource_type: &str, id: &str, resource: Value, version: u64) -> Value {
    json!({"resource": resource, "request": {
        "method": "PUT", "url": format!("{resource_type}/{id}"), "ifMatch": format!("W/\"{version}\"")}})
}

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
struct Found {
    service_requests: HashMap<String, Value>,
    tasks: HashMap<String, Value>,
    evidence: HashMap<String, Evidence>,
}

/// A search that answers nothing (rather than 403) when the caller may not read the type.
fn search_or_none(access: &Access, resource_type: &str, pairs: &[(&str, String)], count: usize) -> Result<Vec<Value>> {
    match tasks::search(access, resource_type, pairs, count) {
        Ok(found) => Ok(found),
        Err(e) if matches!(e.class(), fhir::ErrorClass::Forbidden) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The ServiceRequests, their Tasks and the rest of the record of referrals `ids`.
fn gather(access: &Access, ids: &[String], tasks_found: Vec<Value>) -> Result<Found> {
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
fn based_on(resource: &Value, field: &str) -> Vec<String> {
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
fn related(document: &Value) -> Vec<String> {
    document
        .pointer("/context/related")
        .map_or_else(Vec::new, |_| based_on(document.get("context").unwrap_or(&Value::Null), "related"))
}

/// The view of one referral.
fn view(
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

fn fulfil_code() -> String {
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

// ----- closing the loop -----

/// Closes referral `service_request` because `report` (`Type/id`) came back, as the caller
/// of `access` (the follower's job): the Task walks its lifecycle to `completed` (business
/// status `report-returned`), the ServiceRequest becomes `completed`, and open follow-up
/// Tasks are cancelled — the last writes in one transaction, each with `If-Match`. Returns
/// whether anything was written (a referral already closed, or not a referral: nothing).
pub fn close(access: &Access, service_request: &str, report: &str) -> Result<bool> {
    let stored = match access.read("ServiceRequest", service_request) {
        Ok(stored) => stored,
        Err(e) if matches!(e.class(), fhir::ErrorClass::NotFound | fhir::ErrorClass::Gone) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let Some(mut sr) = stored.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else {
        return Ok(false);
    };
    if !is_referral(&sr) {
        return Ok(false);
    }
    let patient = policy::patients_of("ServiceRequest", &sr).into_iter().next();
    let mut entries = Vec::new();
    let sr_status = sr.get("status").and_then(Value::as_str).unwrap_or("");
    if matches!(sr_status, "draft" | "active" | "on-hold") {
        let version = version_of(&sr);
        sr.as_object_mut().map(|o| o.remove("meta"));
        sr["status"] = json!("completed");
        entries.push(put_entry("ServiceRequest", service_request, sr, version));
    }
    let focus = ("focus", format!("ServiceRequest/{service_request}"));
    if let Some(task) = tasks::search(access, "Task", &[focus.clone(), ("code", fulfil_code())], 1)?.into_iter().next()
    {
        let id = task.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut task = task;
        // Walk the lifecycle up to in-progress, a version per step (each with If-Match).
        let path = [tasks::Action::Accept, tasks::Action::Start];
        for action in &path {
            let status = Status::of(&task);
            let due = match action {
                tasks::Action::Accept => matches!(status, Some(Status::Requested | Status::Received)),
                _ => matches!(status, Some(Status::Accepted | Status::Ready | Status::OnHold)),
            };
            if due {
                let next = tasks::apply(&task, action)?;
                let written = access.update("Task", &id, next, Some(version_of(&task)))?;
                task = written
                    .version
                    .and_then(|v| v.body.as_deref().and_then(|b| serde_json::from_str(b).ok()))
                    .ok_or(Error::NotFound)?;
            }
        }
        if Status::of(&task) == Some(Status::InProgress) {
            let mut done = tasks::apply(&task, &tasks::Action::Complete(Some(format!("Report returned: {report}"))))?;
            done["businessStatus"] = step_coding(State::Closed);
            entries.push(put_entry("Task", &id, done, version_of(&task)));
        }
    }
    let follow_ups = tasks::search(
        access,
        "Task",
        &[("identifier", format!("{FOLLOW_UP_SYSTEM}|{service_request}")), ("status", Status::open_codes())],
        10,
    )?;
    for follow_up in follow_ups {
        let id = follow_up.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let cancel = tasks::Action::Cancel("the referral's report came back".into());
        if let Ok(next) = tasks::apply(&follow_up, &cancel) {
            entries.push(put_entry("Task", &id, next, version_of(&follow_up)));
        }
    }
    if entries.is_empty() {
        return Ok(false);
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    access.transaction_for(bundle, patient.as_deref())?;
    Ok(true)
}

/// Whether a report is one that closes a referral: a DiagnosticReport released (`final`,
/// `amended`, `corrected`, `appended`), a DocumentReference in force (`current`) that is not
/// a draft (`docStatus` `preliminary`).
pub fn is_returned(resource_type: &str, report: &Value) -> bool {
    let status = report.get("status").and_then(Value::as_str).unwrap_or("");
    match resource_type {
        "DiagnosticReport" => matches!(status, "final" | "amended" | "corrected" | "appended"),
        "DocumentReference" => {
            status == "current" && report.get("docStatus").and_then(Value::as_str) != Some("preliminary")
        }
        _ => false,
    }
}

/// The referrals a returned report names (see [`is_returned`]): a DiagnosticReport's
/// `basedOn`, a DocumentReference's `context.related` (ServiceRequests only).
pub fn referrals_named(resource_type: &str, report: &Value) -> Vec<String> {
    if !is_returned(resource_type, report) {
        return Vec::new();
    }
    match resource_type {
        "DiagnosticReport" => based_on(report, "basedOn"),
        _ => related(report),
    }
}

const CHECKPOINT_ID: &str = "referral-closer-checkpoint";
const CHECKPOINT_KIND: &str = "referral-closer";
/// The report types the closer follows.
const REPORT_TYPES: [&str; 2] = ["DocumentReference", "DiagnosticReport"];
/// Versions read per type and pass.
const STEP: usize = 500;
/// How often the closer looks for writes it was not told of (another server's).
const POLL: Duration = Duration::from_secs(5);

/// What one pass of the closer did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Report versions read.
    pub read: usize,
    /// Referrals closed.
    pub closed: usize,
    /// More is waiting: run again at once.
    pub more: bool,
}

/// The versions one type's checkpoint is behind by (one step of them).
struct Behind {
    versions: Vec<ResourceVersion>,
    end: i64,
    more: bool,
}

/// The follower that closes referrals when their report arrives, whatever the door.
#[derive(Clone)]
pub struct ReferralCloser {
    inner: Arc<CloserInner>,
}

struct CloserInner {
    door: Door,
    jobs: Arc<dyn JobStore>,
    stop: AtomicBool,
}

impl ReferralCloser {
    /// The closer of the records behind `door`, its checkpoint in `jobs`.
    pub fn new(door: Door, jobs: Arc<dyn JobStore>) -> ReferralCloser {
        ReferralCloser { inner: Arc::new(CloserInner { door, jobs, stop: AtomicBool::new(false) }) }
    }

    /// Runs on a thread of its own until [`ReferralCloser::stop`]: a pass at once, then one
    /// after every commit that wrote a report, and every few seconds.
    pub fn start(&self) -> std::io::Result<()> {
        let feed = self.inner.door.records().changes().subscribe(1024);
        let closer = self.clone();
        std::thread::Builder::new().name("referral-closer".into()).spawn(move || {
            while !closer.inner.stop.load(Ordering::Relaxed) {
                match closer.run_pass() {
                    Ok(pass) if pass.more => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(class = ?e.class(), "the referral closer could not run a pass"),
                }
                let deadline = std::time::Instant::now() + POLL;
                loop {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match feed.recv_timeout(left) {
                        Ok(changes) if changes.iter().any(|c| REPORT_TYPES.contains(&c.resource_type.as_str())) => {
                            break;
                        }
                        Ok(_) => continue,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                            std::thread::sleep(left);
                            break;
                        }
                    }
                }
            }
        })?;
        Ok(())
    }

    /// Stops the thread after its current pass.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
    }

    /// The checkpoint of each type (`None`: the closer never ran on this store).
    fn checkpoints(&self) -> Result<Option<HashMap<String, i64>>> {
        Ok(self
            .inner
            .jobs
            .job(CHECKPOINT_ID)?
            .map(|j| serde_json::from_str::<HashMap<String, i64>>(&j.state).unwrap_or_default()))
    }

    fn save_checkpoints(&self, checkpoints: &HashMap<String, i64>) -> Result<()> {
        self.inner.jobs.save_job(&StoredJob {
            id: CHECKPOINT_ID.into(),
            kind: CHECKPOINT_KIND.into(),
            state: json!(checkpoints).to_string(),
            updated_at: OffsetDateTime::now_utc(),
        })?;
        Ok(())
    }

    /// The versions of `resource_type` written after `after` (`latest`: the store's latest
    /// sequence, read before), oldest first, and the sequence the type's checkpoint moves to
    /// once they are processed. Close behind, the type's history is paged back to the
    /// checkpoint; far behind (reports written while no closer ran, a large import), the
    /// history of every type is scanned once in commit order instead, so that catching up
    /// reads each version once rather than paging back from the newest at every step.
    fn versions_after(&self, resource_type: &str, after: i64, latest: i64) -> Result<Behind> {
        let records = self.inner.door.records();
        let far = i64::try_from(STEP * 4).unwrap_or(i64::MAX);
        if latest.saturating_sub(after) > far {
            let scanned = records.backend().versions_after(after, STEP * 4)?;
            let more = scanned.len() == STEP * 4;
            let end = scanned.last().map_or(latest, |v| v.sequence);
            let versions = scanned.into_iter().filter(|v| v.resource_type == resource_type).collect();
            return Ok(Behind { versions, end, more });
        }
        let mut newest_first = Vec::new();
        let mut before = None;
        loop {
            let query = HistoryQuery {
                resource_type: Some(resource_type.into()),
                before_sequence: before,
                count: STEP,
                ..HistoryQuery::default()
            };
            let page = records.history(&query)?;
            let last_page = page.len() < STEP;
            let newer: Vec<ResourceVersion> = page.into_iter().take_while(|v| v.sequence > after).collect();
            let reached = newer.len() < STEP;
            before = newer.last().map(|v| v.sequence);
            newest_first.extend(newer);
            if reached || last_page || before.is_none() {
                break;
            }
        }
        newest_first.reverse();
        let more = newest_first.len() > STEP;
        newest_first.truncate(STEP);
        // Caught up: nothing of the type lies between the last one and the latest read first.
        let last = newest_first.last().map_or(after, |v| v.sequence);
        let end = if more { last } else { last.max(latest) };
        Ok(Behind { versions: newest_first, end, more })
    }

    /// Reads the reports written since the checkpoint (at most one step of each type),
    /// closes the referrals they name, and moves the checkpoint past them. A referral that
    /// could not be closed for a passing reason (a concurrent write, the store unavailable)
    /// stops the pass before its report, to be tried again. The first pass ever sets the
    /// checkpoint at the latest write: the reports of older referrals are not followed (the
    /// dashboard still computes them closed).
    pub fn run_pass(&self) -> Result<Pass> {
        let latest = self.inner.door.records().backend().latest_sequence()?;
        let Some(mut checkpoints) = self.checkpoints()? else {
            let start = REPORT_TYPES.iter().map(|t| (t.to_string(), latest)).collect();
            self.save_checkpoints(&start)?;
            return Ok(Pass::default());
        };
        let mut pass = Pass::default();
        let access = self.inner.door.enter(Who::Job(JOB));
        let mut outcome = Ok(());
        let mut moved = false;
        for resource_type in REPORT_TYPES {
            let after = checkpoints.get(resource_type).copied().unwrap_or(0);
            if latest <= after {
                continue;
            }
            let behind = self.versions_after(resource_type, after, latest)?;
            for version in &behind.versions {
                pass.read += 1;
                match self.process(&access, version) {
                    Ok(closed) => pass.closed += closed,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
                checkpoints.insert(resource_type.to_string(), version.sequence);
            }
            if outcome.is_err() {
                moved = true;
                break;
            }
            checkpoints.insert(resource_type.to_string(), behind.end.max(after));
            moved |= behind.end > after;
            pass.more |= behind.more;
        }
        access.settle_queued();
        if moved {
            self.save_checkpoints(&checkpoints)?;
        }
        outcome.map(|()| pass)
    }

    /// Runs passes until one reads nothing (tests, the command line).
    pub fn catch_up(&self) -> Result<Pass> {
        let mut total = Pass::default();
        loop {
            let pass = self.run_pass()?;
            total.read += pass.read;
            total.closed += pass.closed;
            if !pass.more {
                return Ok(total);
            }
        }
    }

    fn process(&self, access: &Access, version: &ResourceVersion) -> Result<usize> {
        let Some(report) = version.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else {
            return Ok(0);
        };
        let reference = format!("{}/{}", version.resource_type, version.id);
        let mut closed = 0;
        for service_request in referrals_named(&version.resource_type, &report) {
            let mut attempts = 0;
            loop {
                match close(access, &service_request, &reference) {
                    Ok(done) => {
                        closed += usize::from(done);
                        break;
                    }
                    Err(e) => {
                        use fhir::ErrorClass::{Conflict, Internal, PreconditionFailed, Unavailable};
                        // Written meanwhile: read again and retry, a few times.
                        let raced = matches!(e.class(), Conflict | PreconditionFailed);
                        if raced && attempts < 3 {
                            attempts += 1;
                            continue;
                        }
                        if raced || matches!(e.class(), Unavailable | Internal) {
                            return Err(e);
                        }
                        // A rule of the record refused it: nothing to retry.
                        tracing::warn!(class = ?e.class(), "a referral could not be closed after its report arrived");
                        break;
                    }
                }
            }
        }
        Ok(closed)
    }
}

// ----- aging -----

/// What [`raise_overdue`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Aging {
    /// Overdue open referrals found.
    pub overdue: usize,
    /// Follow-up Tasks created (the others had theirs already).
    pub raised: usize,
}

/// Raises a follow-up Task for every referral open longer than `overdue_days` at `now` that
/// has none yet, as the caller of `access` (the aging job): owned by the referring
/// organization (the referral Task's requester), `focus` the ServiceRequest, due in two
/// days. Created conditionally on its identifier, so a second run raises nothing more.
pub fn raise_overdue(access: &Access, overdue_days: u32, now: OffsetDateTime) -> Result<Aging> {
    let cut = now - time::Duration::days(i64::from(overdue_days));
    let open = [
        Status::Draft,
        Status::Requested,
        Status::Received,
        Status::Accepted,
        Status::Ready,
        Status::InProgress,
        Status::OnHold,
    ]
    .map(Status::code)
    .join(",");
    let found = tasks::search(
        access,
        "Task",
        &[("code", fulfil_code()), ("status", open), ("authored-on", format!("lt{}", store::format_instant(cut)))],
        DASHBOARD_SIZE * 10,
    )?;
    let mut ids = Vec::new();
    for task in &found {
        if let Some(sr) = reference_id(task.get("focus"), "ServiceRequest") {
            ids.push(sr.to_string());
        }
    }
    let data = gather(access, &ids, found)?;
    let mut names = HashMap::new();
    let mut aging = Aging::default();
    for id in &ids {
        let Some(referral) = view(access, id, &data, &mut names, overdue_days, now) else { continue };
        if !referral.overdue {
            continue;
        }
        aging.overdue += 1;
        let owner = data
            .tasks
            .get(id)
            .and_then(|t| t.pointer("/requester/reference"))
            .and_then(Value::as_str)
            .filter(|r| tasks::is_owner_reference(r))
            .map(str::to_string);
        let due = (now + time::Duration::days(2)).date();
        let task = tasks::NewTask {
            patient: referral.patient.clone(),
            description: format!("Follow up overdue referral: {} ({} days open)", referral.service, referral.age_days),
            owner,
            due: Some(due.to_string()),
            priority: tasks::Priority::Routine,
            focus: Some(format!("ServiceRequest/{id}")),
            code: Some(
                json!({"coding": [{"system": CARE_TASK_SYSTEM, "code": FOLLOW_UP_CODE, "display": "Follow up overdue referral"}], "text": "follow up overdue referral"}),
            ),
            requester: None,
            identifier: Some((FOLLOW_UP_SYSTEM.to_string(), id.clone())),
        };
        let resource = tasks::task_resource(access, &task)?;
        let outcome = access.create(resource, Some(&format!("identifier={FOLLOW_UP_SYSTEM}|{id}")))?;
        if outcome.kind == WriteKind::Created {
            aging.raised += 1;
        }
    }
    Ok(aging)
}

/// The aging job: [`raise_overdue`] through the door as the job [`JOB`], on a thread of its
/// own, every `every`.
#[derive(Clone)]
pub struct ReferralAging {
    inner: Arc<AgingInner>,
}

struct AgingInner {
    door: Door,
    overdue_days: u32,
    every: Duration,
    stop: AtomicBool,
}

impl ReferralAging {
    /// The job over the records behind `door`: referrals open longer than `overdue_days`
    /// raise their follow-up Task, looked for every `every`.
    pub fn new(door: Door, overdue_days: u32, every: Duration) -> ReferralAging {
        ReferralAging { inner: Arc::new(AgingInner { door, overdue_days, every, stop: AtomicBool::new(false) }) }
    }

    /// One run, now.
    pub fn run_once(&self) -> Result<Aging> {
        let access = self.inner.door.enter(Who::Job(JOB));
        let result = raise_overdue(&access, self.inner.overdue_days, OffsetDateTime::now_utc());
        access.settle_queued();
        result
    }

    /// Runs on a thread of its own until [`ReferralAging::stop`]: at once, then every
    /// `every`.
    pub fn start(&self) -> std::io::Result<()> {
        let job = self.clone();
        std::thread::Builder::new().name("referral-aging".into()).spawn(move || {
            while !job.inner.stop.load(Ordering::Relaxed) {
                match job.run_once() {
                    Ok(aging) if aging.raised > 0 => {
                        tracing::info!(raised = aging.raised, "overdue referrals raised follow-up tasks")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(class = ?e.class(), "the referral aging job could not run"),
                }
                let deadline = std::time::Instant::now() + job.inner.every;
                while !job.inner.stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(250).min(job.inner.every));
                }
            }
        })?;
        Ok(())
    }

    /// Stops the thread after its current run.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_step_wins_and_a_report_closes() {
        let sr = json!({"resourceType": "ServiceRequest", "status": "active",
            "category": [{"coding": [{"system": SNOMED, "code": REFERRAL_CATEGORY}]}]});
        assert!(is_referral(&sr));
        let task = |status: &str, business: Option<&str>| {
            let mut t = json!({"resourceType": "Task", "status": status});
            if let Some(b) = business {
                t["businessStatus"] = json!({"coding": [{"system": STEP_SYSTEM, "code": b}]});
            }
            t
        };
        let none = Evidence::default();
        assert_eq!(state_of(&sr, Some(&task("requested", Some("sent"))), &none), State::Sent);
        assert_eq!(state_of(&sr, Some(&task("requested", Some("received"))), &none), State::Received);
        assert_eq!(state_of(&sr, Some(&task("accepted", Some("accepted"))), &none), State::Accepted);
        assert_eq!(state_of(&sr, Some(&task("requested", Some("seen"))), &none), State::Sent, "the status denies it");
        assert_eq!(state_of(&sr, Some(&task("in-progress", Some("scheduled"))), &none), State::Scheduled);
        assert_eq!(state_of(&sr, Some(&task("rejected", None)), &none), State::Declined);
        let seen = Evidence { encounter: Some("2026-01-01".into()), ..Evidence::default() };
        assert_eq!(state_of(&sr, Some(&task("accepted", None)), &seen), State::Seen);
        let reported = Evidence { reports: vec![("DiagnosticReport/1".into(), None)], ..Evidence::default() };
        assert_eq!(state_of(&sr, Some(&task("requested", None)), &reported), State::Closed);
        assert_eq!(State::parse("closed"), Some(State::Closed));
    }
}
