//! Tasks and work lists: a `Task` for a person, a role, a team or an organization, its
//! lifecycle, and the work lists that gather what waits for someone.
//!
//! - **Owner**: `Task.owner` is a `Practitioner`, `PractitionerRole`, `CareTeam` or
//!   `Organization`; `Task.for` is the patient (so a Task is that patient's data: the policy
//!   narrows and checks it through `Task.for`, see `store::compartment`).
//! - **Due date**: `Task.executionPeriod.end` (searchable as `period`); a date alone is due by
//!   the end of that day. `restriction.period` is not used.
//! - **Priority**: `Task.priority` (`routine`, `urgent`, `asap`, `stat`; none reads as
//!   routine).
//! - **Lifecycle**: requested → accepted | rejected; accepted → in-progress; in-progress →
//!   completed | failed; requested, accepted and in-progress → cancelled (see [`allowed`] for
//!   the rest of R4's statuses). Rejected, cancelled and failed need a `statusReason`. Final
//!   states (rejected, cancelled, failed, completed, entered-in-error) do not change status
//!   again; entered-in-error may correct any state. A new Task may be created in any state
//!   (work handed over from elsewhere), with the reason its state needs. The rule is a
//!   [`store::WriteHook`] ([`TaskLifecycle`]), so it holds for every door: any other
//!   change of status is refused (422, business rule) and rolls its transaction back.
//! - **Operations** ([`create`], [`act`]) go through the caller's door, each write with
//!   `If-Match` on the version the caller read.
//! - **Work lists** ([`work_list`]): the open Tasks owned by the user (their Practitioner or
//!   PractitionerRoles), by one of their roles, by a care team they take part in, or by one
//!   of their organizations; each with an overdue flag (due date passed, not in a final
//!   state), sorted overdue first, then by priority, then by due date.

use crate::{Error, Result};
use access::Access;
use serde_json::{Value, json};
use store::{NewVersion, ResourceVersion, Transaction, WriteHook};
use time::OffsetDateTime;

mod work_lists;

pub use work_lists::{
    Choice, Membership, WORK_LIST_SIZE, WorkItem, WorkList, item, owner_choices, past_due, sort, work_list, work_lists,
};
pub(crate) use work_lists::{label_of, patient_name, search, text_of};

/// The statuses of the lifecycle (R4's `task-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `draft`.
    Draft,
    /// `requested`: waiting for its owner.
    Requested,
    /// `received`: its owner has it, not yet decided.
    Received,
    /// `accepted`: its owner will do it.
    Accepted,
    /// `rejected`: its owner will not (with a reason).
    Rejected,
    /// `ready`.
    Ready,
    /// `in-progress`.
    InProgress,
    /// `on-hold`.
    OnHold,
    /// `completed`.
    Completed,
    /// `cancelled` (with a reason).
    Cancelled,
    /// `failed` (with a reason).
    Failed,
    /// `entered-in-error`.
    EnteredInError,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 12] = [
        Status::Draft,
        Status::Requested,
        Status::Received,
        Status::Accepted,
        Status::Rejected,
        Status::Ready,
        Status::InProgress,
        Status::OnHold,
        Status::Completed,
        Status::Cancelled,
        Status::Failed,
        Status::EnteredInError,
    ];

    /// Its FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Requested => "requested",
            Status::Received => "received",
            Status::Accepted => "accepted",
            Status::Rejected => "rejected",
            Status::Ready => "ready",
            Status::InProgress => "in-progress",
            Status::OnHold => "on-hold",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
            Status::EnteredInError => "entered-in-error",
        }
    }

    /// The status of a FHIR code.
    pub fn parse(code: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The status of a Task (`None`: none or not a known code).
    pub fn of(task: &Value) -> Option<Status> {
        task.get("status").and_then(Value::as_str).and_then(Status::parse)
    }

    /// Whether nothing more happens to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Rejected | Status::Completed | Status::Cancelled | Status::Failed | Status::EnteredInError
        )
    }

    /// Whether entering it needs a `statusReason`.
    pub fn needs_reason(self) -> bool {
        matches!(self, Status::Rejected | Status::Cancelled | Status::Failed)
    }

    /// The codes of the open (not final) statuses, comma-separated for a search.
    pub fn open_codes() -> String {
        Status::ALL.iter().filter(|s| !s.is_final()).map(|s| s.code()).collect::<Vec<_>>().join(",")
    }
}

/// Whether a Task may go from `from` to `to` (staying put is always allowed).
pub fn allowed(from: Status, to: Status) -> bool {
    use Status::*;
    if from == to || (to == EnteredInError && from != EnteredInError) {
        return true;
    }
    match from {
        Draft => matches!(to, Requested | Cancelled),
        Requested => matches!(to, Received | Accepted | Rejected | Cancelled),
        Received => matches!(to, Accepted | Rejected | Cancelled),
        Accepted | Ready => matches!(to, InProgress | Cancelled),
        InProgress => matches!(to, Completed | Failed | Cancelled | OnHold),
        OnHold => matches!(to, InProgress | Failed | Cancelled),
        Rejected | Completed | Cancelled | Failed | EnteredInError => false,
    }
}

/// Whether a Task carries a reason for its status (a `statusReason` with a text or a code).
pub fn has_reason(task: &Value) -> bool {
    let Some(reason) = task.get("statusReason") else { return false };
    let text = reason.get("text").and_then(Value::as_str).is_some_and(|t| !t.trim().is_empty());
    let coded = reason.get("coding").and_then(Value::as_array).is_some_and(|c| !c.is_empty());
    text || coded
}

/// Checks one write of a Task: `before` is the status it had (`None`: a new Task), `after`
/// the Task as written. The text says what is wrong (naming statuses only).
pub fn check_write(before: Option<Status>, after: &Value) -> std::result::Result<(), String> {
    let code = after.get("status").and_then(Value::as_str).unwrap_or("");
    let Some(to) = Status::parse(code) else {
        return Err("a Task's status must be one of R4's task statuses".into());
    };
    if let Some(from) = before
        && !allowed(from, to)
    {
        return Err(format!("a Task cannot go from `{}` to `{}`", from.code(), to.code()));
    }
    if to.needs_reason() && before != Some(to) && !has_reason(after) {
        return Err(format!("a Task becomes `{}` only with a reason (statusReason)", to.code()));
    }
    Ok(())
}

/// The lifecycle as a write hook: install it on the records every door writes through
/// ([`store::Records::with_hook`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct TaskLifecycle;

fn refused(diagnostics: String) -> store::Error {
    store::Error::Unprocessable(vec![fhir::Issue::error(fhir::IssueCode::BusinessRule, diagnostics)])
}

impl WriteHook for TaskLifecycle {
    fn wants(&self, resource_type: &str) -> bool {
        resource_type == "Task"
    }

    fn written(
        &self,
        _tx: &mut dyn Transaction,
        previous: Option<&ResourceVersion>,
        new: &NewVersion<'_>,
        _sequence: i64,
    ) -> store::Result<()> {
        // A deletion is an administrative act outside the lifecycle.
        let Some(body) = new.body else { return Ok(()) };
        let after: Value =
            serde_json::from_str(body).map_err(|_| store::Error::Storage("a Task is not JSON".into()))?;
        let before = match previous.and_then(|p| p.body.as_deref()) {
            Some(previous) => {
                let before: Value = serde_json::from_str(previous)
                    .map_err(|_| store::Error::Storage("a stored Task is not JSON".into()))?;
                // A stored Task without a known status (written before the rule) may be set right.
                Status::of(&before)
            }
            None => None,
        };
        check_write(before, &after).map_err(|why| refused(format!("Task/{}: {why}", new.id)))
    }
}

/// How soon a Task is to be done (`Task.priority`), least urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// `routine` (also a Task without a priority).
    Routine,
    /// `urgent`.
    Urgent,
    /// `asap`.
    Asap,
    /// `stat`.
    Stat,
}

impl Priority {
    /// Every priority, least urgent first.
    pub const ALL: [Priority; 4] = [Priority::Routine, Priority::Urgent, Priority::Asap, Priority::Stat];

    /// Its FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            Priority::Routine => "routine",
            Priority::Urgent => "urgent",
            Priority::Asap => "asap",
            Priority::Stat => "stat",
        }
    }

    /// The priority of a FHIR code.
    pub fn parse(code: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.code() == code)
    }

    /// The priority of a Task (routine when it has none).
    pub fn of(task: &Value) -> Priority {
        task.get("priority").and_then(Value::as_str).and_then(Priority::parse).unwrap_or(Priority::Routine)
    }
}

/// The resource types a Task may be owned by here.
pub const OWNER_TYPES: [&str; 4] = ["Practitioner", "PractitionerRole", "CareTeam", "Organization"];

/// Whether `reference` (`Type/id`) names a possible owner.
pub fn is_owner_reference(reference: &str) -> bool {
    reference.split_once('/').is_some_and(|(t, id)| OWNER_TYPES.contains(&t) && fhir::reference::is_id(id))
}

/// A Task to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// The patient's id (`Task.for`).
    pub patient: String,
    /// What is to be done.
    pub description: String,
    /// Who is to do it (`Practitioner/…`, `PractitionerRole/…`, `CareTeam/…`,
    /// `Organization/…`); `None`: nobody yet.
    pub owner: Option<String>,
    /// By when (`YYYY-MM-DD` or a dateTime: `executionPeriod.end`).
    pub due: Option<String>,
    /// How urgent.
    pub priority: Priority,
    /// What the Task is about (`Type/id`, `Task.focus`), when anything.
    pub focus: Option<String>,
    /// A coded kind of Task (a CodeableConcept), when wanted.
    pub code: Option<Value>,
    /// The requester (`Task.requester`); `None`: the caller's own resource, when they have one.
    pub requester: Option<String>,
    /// A business identifier (`system`, `value`) to create it only once (a conditional
    /// create on it); `None`: always created.
    pub identifier: Option<(String, String)>,
}

impl NewTask {
    /// A routine Task for `patient` with `description`, owned by nobody yet.
    pub fn new(patient: &str, description: &str) -> NewTask {
        NewTask {
            patient: patient.to_string(),
            description: description.to_string(),
            owner: None,
            due: None,
            priority: Priority::Routine,
            focus: None,
            code: None,
            requester: None,
            identifier: None,
        }
    }
}

pub(crate) fn now_text() -> String {
    store::format_instant(OffsetDateTime::now_utc())
}

/// The caller's own resource (`Practitioner/…`), when they have one.
pub(crate) fn caller_reference(access: &Access) -> Option<String> {
    access.caller().and_then(|c| c.principal.fhir_user())
}

/// The Task resource a [`NewTask`] describes (status `requested`, intent `order`).
pub fn task_resource(access: &Access, task: &NewTask) -> Result<Value> {
    if !fhir::reference::is_id(&task.patient) {
        return Err(Error::Invalid("the patient is not a valid id".into()));
    }
    if task.description.trim().is_empty() {
        return Err(Error::Invalid("say what is to be done".into()));
    }
    let mut resource = json!({
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": task.priority.code(),
        "description": task.description.trim(),
        "for": {"reference": format!("Patient/{}", task.patient)},
        "authoredOn": now_text(),
    });
    if let Some(owner) = &task.owner {
        if !is_owner_reference(owner) {
            return Err(Error::Invalid(
                "a Task's owner is a Practitioner, PractitionerRole, CareTeam or Organization".into(),
            ));
        }
        resource["owner"] = json!({"reference": owner});
    }
    if let Some(due) = &task.due {
        if search::values::DateRange::parse(due).is_none() {
            return Err(Error::Invalid("the due date must be a date (YYYY-MM-DD)".into()));
        }
        resource["executionPeriod"] = json!({"end": due});
    }
    if let Some(focus) = &task.focus {
        resource["focus"] = json!({"reference": focus});
    }
    if let Some(code) = &task.code {
        resource["code"] = code.clone();
    }
    if let Some(requester) = task.requester.clone().or_else(|| caller_reference(access)) {
        resource["requester"] = json!({"reference": requester});
    }
    if let Some((system, value)) = &task.identifier {
        resource["identifier"] = json!([{"system": system, "value": value}]);
    }
    Ok(resource)
}

/// Creates `task` as the caller of `access` (status `requested`); returns its id (with an
/// identifier, the id of the Task already carrying it, if any: created only once).
pub fn create(access: &Access, task: &NewTask) -> Result<String> {
    let resource = task_resource(access, task)?;
    let condition = task.identifier.as_ref().map(|(system, value)| format!("identifier={system}|{value}"));
    let outcome = access.create(resource, condition.as_deref())?;
    outcome.version.map(|v| v.id).ok_or(Error::NotFound)
}

/// A step of a Task's lifecycle, taken by its owner (or its requester, to cancel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// requested → accepted.
    Accept,
    /// requested → rejected, with the reason.
    Reject(String),
    /// accepted → in-progress.
    Start,
    /// in-progress → completed, with what came of it (`Task.output`), when anything.
    Complete(Option<String>),
    /// → cancelled, with the reason.
    Cancel(String),
    /// in-progress → failed, with the reason.
    Fail(String),
}

impl Action {
    /// The status the action leads to.
    pub fn target(&self) -> Status {
        match self {
            Action::Accept => Status::Accepted,
            Action::Reject(_) => Status::Rejected,
            Action::Start => Status::InProgress,
            Action::Complete(_) => Status::Completed,
            Action::Cancel(_) => Status::Cancelled,
            Action::Fail(_) => Status::Failed,
        }
    }

    /// The action of a form's code (`accept`, `reject`, `start`, `complete`, `cancel`,
    /// `fail`) with the reason or output text given (ignored where none is wanted).
    pub fn parse(code: &str, text: Option<&str>) -> Option<Action> {
        let text = text.map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
        let reason = || text.clone().unwrap_or_default();
        Some(match code {
            "accept" => Action::Accept,
            "reject" => Action::Reject(reason()),
            "start" => Action::Start,
            "complete" => Action::Complete(text.clone()),
            "cancel" => Action::Cancel(reason()),
            "fail" => Action::Fail(reason()),
            _ => return None,
        })
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Action::Reject(r) | Action::Cancel(r) | Action::Fail(r) => Some(r),
            _ => None,
        }
    }
}

/// `task` as it becomes after `action` (read from the store: its `meta` is dropped, the store
/// sets it again), or why the action is not allowed from its current status.
pub fn apply(task: &Value, action: &Action) -> Result<Value> {
    let from = Status::of(task).ok_or_else(|| Error::Transition("the Task has no known status".into()))?;
    let to = action.target();
    if from == to || !allowed(from, to) {
        return Err(Error::Transition(format!("a Task cannot go from `{}` to `{}`", from.code(), to.code())));
    }
    if let Some(reason) = action.reason()
        && reason.trim().is_empty()
    {
        return Err(Error::Invalid(format!("say why the Task is {}", to.code())));
    }
    let mut next = task.clone();
    if let Some(object) = next.as_object_mut() {
        object.remove("meta");
        object.remove("statusReason");
    }
    next["status"] = json!(to.code());
    next["lastModified"] = json!(now_text());
    if let Some(reason) = action.reason() {
        next["statusReason"] = json!({"text": reason.trim()});
    }
    if to == Status::InProgress && task.pointer("/executionPeriod/start").is_none() {
        next["executionPeriod"]["start"] = json!(now_text());
    }
    if let Action::Complete(Some(output)) = action {
        let mut outputs = next.get("output").and_then(Value::as_array).cloned().unwrap_or_default();
        outputs.push(json!({"type": {"text": "Result"}, "valueString": output}));
        next["output"] = json!(outputs);
    }
    Ok(next)
}

/// Takes `action` on Task `id` as the caller of `access`, only if the Task is still at
/// `version` (the version the caller read: `If-Match`; a change made meanwhile answers 412).
/// Returns the new version.
pub fn act(access: &Access, id: &str, version: u64, action: &Action) -> Result<u64> {
    if !fhir::reference::is_id(id) {
        return Err(Error::NotFound);
    }
    let stored = access.read("Task", id)?;
    if_match(&stored, version)?;
    let task: Value = stored.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).ok_or(Error::NotFound)?;
    let next = apply(&task, action)?;
    let written = access.update("Task", id, next, Some(version))?;
    Ok(written.version.map(|v| v.version).unwrap_or(version + 1))
}

/// Refuses (412) unless `stored` is still the version the caller read: what they decided on
/// is what the step applies to (the write itself checks again, with `If-Match`).
pub(crate) fn if_match(stored: &ResourceVersion, version: u64) -> Result<()> {
    if stored.version == version {
        return Ok(());
    }
    let changed = store::Error::PreconditionFailed(format!(
        "{}/{} changed since it was read (version {version}, now {})",
        stored.resource_type, stored.id, stored.version
    ));
    Err(Error::Access(access::Error::Store(changed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_table() {
        use Status::*;
        for (from, to) in [
            (Requested, Accepted),
            (Requested, Rejected),
            (Accepted, InProgress),
            (InProgress, Completed),
            (InProgress, Failed),
            (Requested, Cancelled),
            (Accepted, Cancelled),
            (InProgress, Cancelled),
        ] {
            assert!(allowed(from, to), "{from:?} → {to:?}");
        }
        for (from, to) in [
            (Requested, InProgress),
            (Requested, Completed),
            (Accepted, Completed),
            (Completed, InProgress),
            (Rejected, Accepted),
            (Cancelled, Requested),
            (Failed, InProgress),
        ] {
            assert!(!allowed(from, to), "{from:?} → {to:?}");
        }
    }

    #[test]
    fn reasons_are_required_for_rejected_cancelled_and_failed() {
        let task = |status: &str, reason: Option<&str>| {
            let mut t = json!({"resourceType": "Task", "status": status, "intent": "order"});
            if let Some(r) = reason {
                t["statusReason"] = json!({"text": r});
            }
            t
        };
        assert!(check_write(Some(Status::Requested), &task("rejected", None)).is_err());
        assert!(check_write(Some(Status::Requested), &task("rejected", Some("  "))).is_err());
        assert!(check_write(Some(Status::Requested), &task("rejected", Some("not ours"))).is_ok());
        assert!(check_write(None, &task("cancelled", None)).is_err(), "created cancelled: a reason all the same");
        assert!(check_write(Some(Status::Cancelled), &task("cancelled", None)).is_ok(), "no change of status");
        assert!(check_write(None, &task("bogus", None)).is_err());
    }

    #[test]
    fn work_items_are_sorted_overdue_then_priority_then_due() {
        let now = OffsetDateTime::now_utc();
        let task = |id: &str, priority: &str, due: Option<&str>| {
            let mut t = json!({"resourceType": "Task", "id": id, "status": "requested", "intent": "order",
                "priority": priority, "for": {"reference": "Patient/p"}});
            if let Some(d) = due {
                t["executionPeriod"] = json!({"end": d});
            }
            WorkItem::of(&t, now).unwrap()
        };
        let mut items = vec![
            task("a", "routine", None),
            task("b", "stat", Some("2999-01-01")),
            task("c", "routine", Some("2000-01-01")),
            task("d", "routine", Some("2998-01-01")),
            task("e", "urgent", Some("2001-01-01")),
        ];
        sort(&mut items);
        let order: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(order, ["e", "c", "b", "d", "a"]);
        assert!(items[0].overdue && items[1].overdue && !items[2].overdue);
    }
}
