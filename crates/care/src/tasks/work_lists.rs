//! Work lists: the open Tasks of the user, of one of their roles, of a care team they take
//! part in, or of one of their organizations, as the caller may see them, each with its
//! overdue flag, sorted overdue first, then by priority, then by due date.

use super::{Priority, Status};
use crate::{Error, Result};
use access::Access;
use serde_json::Value;
use time::OffsetDateTime;

/// One Task of a work list.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkItem {
    /// The Task's id.
    pub id: String,
    /// The version read (to act on it with `If-Match`).
    pub version: u64,
    /// The patient's id.
    pub patient: String,
    /// The patient's name, when the caller may read it.
    pub patient_name: Option<String>,
    /// What is to be done.
    pub description: String,
    /// Its status.
    pub status: Status,
    /// Its business status's text (a referral's step), when any.
    pub business_status: Option<String>,
    /// How urgent.
    pub priority: Priority,
    /// Its due date as written, when any.
    pub due: Option<String>,
    /// Due date passed and not in a final state.
    pub overdue: bool,
    /// Who owns it (`Type/id`), when anyone.
    pub owner: Option<String>,
    /// Why its status is what it is, when recorded.
    pub status_reason: Option<String>,
}

/// Whether a Task due `due` (a FHIR date or dateTime) is past due at `now`: the whole
/// precision of the value has passed (a date: the day ended).
pub fn past_due(due: &str, now: OffsetDateTime) -> bool {
    search::values::DateRange::parse(due).is_some_and(|range| range.high < search::values::micros(now))
}

pub(crate) fn text_of(concept: Option<&Value>) -> Option<String> {
    let concept = concept?;
    concept
        .get("text")
        .or_else(|| concept.pointer("/coding/0/display"))
        .or_else(|| concept.pointer("/coding/0/code"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

impl WorkItem {
    /// The work-list view of a Task at `now` (`None`: it names no patient).
    pub fn of(task: &Value, now: OffsetDateTime) -> Option<WorkItem> {
        let patient = task.pointer("/for/reference").and_then(Value::as_str)?.strip_prefix("Patient/")?.to_string();
        let status = Status::of(task)?;
        let due = task.pointer("/executionPeriod/end").and_then(Value::as_str).map(str::to_string);
        let overdue = !status.is_final() && due.as_deref().is_some_and(|d| past_due(d, now));
        let description = task
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| text_of(task.get("code")))
            .unwrap_or_else(|| "(no description)".into());
        Some(WorkItem {
            id: task.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
            version: task.pointer("/meta/versionId").and_then(Value::as_str).and_then(|v| v.parse().ok()).unwrap_or(1),
            patient_name: task.pointer("/for/display").and_then(Value::as_str).map(str::to_string),
            patient,
            description,
            status,
            business_status: text_of(task.get("businessStatus")),
            priority: Priority::of(task),
            due,
            overdue,
            owner: task.pointer("/owner/reference").and_then(Value::as_str).map(str::to_string),
            status_reason: text_of(task.get("statusReason")),
        })
    }
}

/// Sorts a work list: overdue first, then most urgent, then earliest due (none last), then
/// by id (a stable order).
pub fn sort(items: &mut [WorkItem]) {
    items.sort_by(|a, b| {
        b.overdue
            .cmp(&a.overdue)
            .then(b.priority.cmp(&a.priority))
            .then_with(|| due_key(a).cmp(&due_key(b)))
            .then_with(|| a.id.cmp(&b.id))
    });
}

fn due_key(item: &WorkItem) -> i64 {
    item.due.as_deref().and_then(search::values::DateRange::parse).map_or(i64::MAX, |r| r.high)
}

/// Whose work a list gathers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WorkList {
    /// The user's own: owned by their Practitioner or one of their PractitionerRoles.
    Mine,
    /// One PractitionerRole's (its id).
    Role(String),
    /// One CareTeam's (its id).
    Team(String),
    /// One Organization's (its id).
    Organization(String),
}

impl WorkList {
    /// The list named in a form or link: `mine`, `role:ID`, `team:ID`, `organization:ID`.
    pub fn parse(text: &str) -> Option<WorkList> {
        let list = match text.split_once(':') {
            None if text == "mine" => WorkList::Mine,
            Some(("role", id)) => WorkList::Role(id.to_string()),
            Some(("team", id)) => WorkList::Team(id.to_string()),
            Some(("organization", id)) => WorkList::Organization(id.to_string()),
            _ => return None,
        };
        let valid = match &list {
            WorkList::Role(id) | WorkList::Team(id) | WorkList::Organization(id) => fhir::reference::is_id(id),
            WorkList::Mine => true,
        };
        valid.then_some(list)
    }

    /// Its name in a form or link (see [`WorkList::parse`]).
    pub fn key(&self) -> String {
        match self {
            WorkList::Mine => "mine".into(),
            WorkList::Role(id) => format!("role:{id}"),
            WorkList::Team(id) => format!("team:{id}"),
            WorkList::Organization(id) => format!("organization:{id}"),
        }
    }
}

/// A work list the caller may open, with its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The list.
    pub list: WorkList,
    /// What it is called (a role's, team's or organization's name).
    pub label: String,
}

/// Who the caller is in the record: their Practitioner, PractitionerRoles and Organizations
/// (ids), from their sign-in identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// The user's Practitioner id.
    pub practitioner: Option<String>,
    /// Their PractitionerRole ids.
    pub roles: Vec<String>,
    /// Their Organization ids.
    pub organizations: Vec<String>,
}

impl Membership {
    /// The caller's, or none for a job or an open door.
    pub fn of(access: &Access) -> Membership {
        let Some(caller) = access.caller() else { return Membership::default() };
        match &caller.principal.subject {
            auth::Subject::User {
                identity: auth::Identity::Staff { practitioner, practitioner_roles, organizations, .. },
                ..
            } => Membership {
                practitioner: practitioner.clone(),
                roles: practitioner_roles.clone(),
                organizations: organizations
                    .iter()
                    .map(|o| o.strip_prefix("Organization/").unwrap_or(o).to_string())
                    .collect(),
            },
            _ => Membership::default(),
        }
    }

    /// The references that stand for the person themselves (`Practitioner/…`,
    /// `PractitionerRole/…`).
    pub fn own_references(&self) -> Vec<String> {
        self.practitioner
            .iter()
            .map(|p| format!("Practitioner/{p}"))
            .chain(self.roles.iter().map(|r| format!("PractitionerRole/{r}")))
            .collect()
    }
}

/// Runs a search of `resource_type` through the door (up to `count` matches).
pub(crate) fn search(
    access: &Access,
    resource_type: &str,
    pairs: &[(&str, String)],
    count: usize,
) -> Result<Vec<Value>> {
    let params: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let query = search::query::SearchQuery::parse(Some(resource_type), &params, false).map_err(access::Error::from)?;
    let page = access.search(query, &params, count, store::audit::Subtype::SearchType)?;
    Ok(page.matches.iter().filter_map(|v| v.body.as_deref()).filter_map(|b| serde_json::from_str(b).ok()).collect())
}

/// A shared resource's name (an Organization's `name`, a CareTeam's `name`, a
/// PractitionerRole's first `code`), else its reference.
pub(crate) fn label_of(access: &Access, resource_type: &str, id: &str) -> String {
    let fallback = format!("{resource_type}/{id}");
    let Ok(version) = access.read(resource_type, id) else { return fallback };
    let Some(body) = version.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else {
        return fallback;
    };
    body.get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| text_of(body.pointer("/code/0")))
        .unwrap_or(fallback)
}

/// The care teams the caller takes part in (as their Practitioner or a PractitionerRole), as
/// far as they may see them.
fn teams_of(access: &Access, membership: &Membership) -> Result<Vec<(String, String)>> {
    let members = membership.own_references();
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let found = search(access, "CareTeam", &[("participant", members.join(",")), ("status", "active".into())], 100)?;
    Ok(found
        .iter()
        .filter_map(|t| {
            let id = t.get("id").and_then(Value::as_str)?.to_string();
            let name = t.get("name").and_then(Value::as_str).map_or_else(|| format!("Care team {id}"), str::to_string);
            Some((id, name))
        })
        .collect())
}

/// The work lists the caller may open: their own, each of their roles, each care team they
/// take part in, each of their organizations.
pub fn work_lists(access: &Access) -> Result<Vec<Choice>> {
    let membership = Membership::of(access);
    let mut choices = vec![Choice { list: WorkList::Mine, label: "My tasks".into() }];
    for role in &membership.roles {
        choices.push(Choice { list: WorkList::Role(role.clone()), label: label_of(access, "PractitionerRole", role) });
    }
    for (id, name) in teams_of(access, &membership)? {
        choices.push(Choice { list: WorkList::Team(id), label: name });
    }
    for org in &membership.organizations {
        choices
            .push(Choice { list: WorkList::Organization(org.clone()), label: label_of(access, "Organization", org) });
    }
    Ok(choices)
}

/// The owners whose Tasks `list` gathers, refusing a list that is not the caller's (a job or
/// an open door may open any).
fn owners(access: &Access, list: &WorkList) -> Result<Vec<String>> {
    let membership = Membership::of(access);
    let acts_for_anyone = access.caller().is_none();
    let not_yours = || Error::Access(access::Error::Forbidden("this work list is not one of yours".into()));
    Ok(match list {
        WorkList::Mine => membership.own_references(),
        WorkList::Role(id) => {
            if !acts_for_anyone && !membership.roles.contains(id) {
                return Err(not_yours());
            }
            vec![format!("PractitionerRole/{id}")]
        }
        WorkList::Team(id) => {
            if !acts_for_anyone && !teams_of(access, &membership)?.iter().any(|(team, _)| team == id) {
                return Err(not_yours());
            }
            vec![format!("CareTeam/{id}")]
        }
        WorkList::Organization(id) => {
            if !acts_for_anyone && !membership.organizations.contains(id) {
                return Err(not_yours());
            }
            vec![format!("Organization/{id}")]
        }
    })
}

/// Most open Tasks a work list gathers (all of them are sorted, so an old overdue Task is
/// never cut off by newer ones below this number).
pub const WORK_LIST_SIZE: usize = 1000;

/// The open Tasks of `list` the caller may see, at `now`, sorted (see [`sort`]), each with its
/// patient's name when the caller may read it.
pub fn work_list(access: &Access, list: &WorkList, now: OffsetDateTime) -> Result<Vec<WorkItem>> {
    let owners = owners(access, list)?;
    if owners.is_empty() {
        return Ok(Vec::new());
    }
    let tasks = search(
        access,
        "Task",
        &[("owner", owners.join(",")), ("status", Status::open_codes()), ("_sort", "-_lastUpdated".into())],
        WORK_LIST_SIZE,
    )?;
    let mut items: Vec<WorkItem> = tasks.iter().filter_map(|t| WorkItem::of(t, now)).collect();
    name_patients(access, &mut items);
    sort(&mut items);
    Ok(items)
}

/// Fills in the patients' names the caller may read (each patient read once).
pub(crate) fn name_patients(access: &Access, items: &mut [WorkItem]) {
    let mut names: std::collections::HashMap<String, Option<String>> = std::collections::HashMap::new();
    for item in items.iter_mut().filter(|i| i.patient_name.is_none()) {
        let name = names.entry(item.patient.clone()).or_insert_with(|| patient_name(access, &item.patient));
        item.patient_name = name.clone();
    }
}

/// A patient's name as the caller may read it (`None`: hidden or unnamed).
pub(crate) fn patient_name(access: &Access, patient: &str) -> Option<String> {
    let version = access.read("Patient", patient).ok()?;
    let body: Value = serde_json::from_str(version.body.as_deref()?).ok()?;
    let name = body.pointer("/name/0")?;
    if let Some(text) = name.get("text").and_then(Value::as_str) {
        return Some(text.to_string());
    }
    let given: Vec<&str> =
        name.get("given").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let family = name.get("family").and_then(Value::as_str).unwrap_or("");
    let full = format!("{} {family}", given.join(" ")).trim().to_string();
    (!full.is_empty()).then_some(full)
}

/// One Task as the caller may see it, as a work item at `now`.
pub fn item(access: &Access, id: &str, now: OffsetDateTime) -> Result<WorkItem> {
    if !fhir::reference::is_id(id) {
        return Err(Error::NotFound);
    }
    let version = access.read("Task", id)?;
    let task: Value = version.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).ok_or(Error::NotFound)?;
    let mut items = vec![WorkItem::of(&task, now).ok_or(Error::NotFound)?];
    name_patients(access, &mut items);
    items.pop().ok_or(Error::NotFound)
}

/// Whom the caller may hand a new Task for `patient` to, as `(reference, label)`: themselves
/// (their Practitioner), their roles, the patient's active care teams, their organizations.
pub fn owner_choices(access: &Access, patient: &str) -> Result<Vec<(String, String)>> {
    let membership = Membership::of(access);
    let mut choices = Vec::new();
    if let Some(practitioner) = &membership.practitioner {
        choices.push((format!("Practitioner/{practitioner}"), "Me".to_string()));
    }
    for role in &membership.roles {
        choices.push((format!("PractitionerRole/{role}"), label_of(access, "PractitionerRole", role)));
    }
    if fhir::reference::is_id(patient) {
        let teams = search(access, "CareTeam", &[("patient", patient.to_string()), ("status", "active".into())], 20)?;
        for team in &teams {
            let Some(id) = team.get("id").and_then(Value::as_str) else { continue };
            let name =
                team.get("name").and_then(Value::as_str).map_or_else(|| format!("Care team {id}"), str::to_string);
            choices.push((format!("CareTeam/{id}"), name));
        }
    }
    for org in &membership.organizations {
        choices.push((format!("Organization/{org}"), label_of(access, "Organization", org)));
    }
    Ok(choices)
}
