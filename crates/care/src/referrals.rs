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

use crate::tasks::{self, Membership, Status};
use crate::{Error, Result};
use access::Access;
use serde_json::{Value, json};

mod aging;
mod closer;
mod dashboard;

pub use aging::{Aging, ReferralAging, raise_overdue};
pub use closer::{Pass, ReferralCloser, close, is_returned, referrals_named};
pub use dashboard::{DASHBOARD_SIZE, Detail, Referral, StepTaken, dashboard, detail};

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
