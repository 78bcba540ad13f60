//! Shared care plans: a patient's `CarePlan`s (status, intent `plan`, the `careTeam` that works
//! them, the conditions they `address`, their `goal`s and `activity`s), read and edited through
//! the caller's door.
//!
//! - **Who may edit**: whoever the policy lets write the plan — members of any of the care
//!   team's organizations reach the patient through the care relationship
//!   (`policy::reach`); this service adds no rule of its own.
//! - **Concurrent edits**: every edit names the version of the plan (or goal) the editor read and
//!   is written with `If-Match` on it, so an edit made meanwhile is never overwritten: the later
//!   one gets 412 (or 409) and rereads.
//! - **Activities**: a linked request (`activity.reference` to a ServiceRequest,
//!   MedicationRequest, Appointment or Task of the same patient; its status is the request's
//!   own) or a described activity (`activity.detail` with its own status).
//! - **The change history** is the plan's versions and its goals' versions
//!   ([`access::Access::history`], so it shows exactly what the caller may see), what changed
//!   computed from each version and the one before it, and **who** from the `Provenance`
//!   every edit of this service writes in the same transaction (targets: the versions it
//!   wrote and the patient): its agent is the user's Practitioner (and name), `onBehalfOf` the
//!   user's organization — of the staff identity's organizations, the first that takes part
//!   in the plan's care team, else the first. Provenance rather than the audit trail: it is
//!   part of the record the care team reads under the same policy as the plan, it names the
//!   organization, and the audit trail is the administrators' (and stays the complete record of
//!   every access). A version written through another door without a Provenance shows what
//!   changed, and that who is not recorded.

use crate::goals::{self, GoalView, NewGoal, search};
use crate::{Error, Result};
use access::Access;
use serde_json::{Value, json};
use std::collections::HashMap;
use store::HistoryQuery;
use time::Date;

/// The types an activity may link to.
pub const ACTIVITY_TYPES: &[&str] = &["ServiceRequest", "MedicationRequest", "Appointment", "Task"];
/// The codes of `CarePlan.status`.
pub const PLAN_STATUSES: &[&str] =
    &["draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"];
/// The codes of `CarePlan.activity.detail.status`.
pub const ACTIVITY_STATUSES: &[&str] = &[
    "not-started",
    "scheduled",
    "in-progress",
    "on-hold",
    "completed",
    "cancelled",
    "stopped",
    "unknown",
    "entered-in-error",
];

/// A plan in a patient's list of plans.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSummary {
    /// The CarePlan's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its status.
    pub status: String,
    /// How many goals.
    pub goals: usize,
    /// How many activities.
    pub activities: usize,
}

/// A reference with what to show for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    /// `Type/id`.
    pub reference: String,
    /// As shown (its display, the resource's name, else the reference).
    pub display: String,
}

/// One activity of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    /// Its position in `CarePlan.activity` (how edits name it).
    pub index: usize,
    /// The request it links to (`Type/id`), for a linked activity.
    pub reference: Option<String>,
    /// What it is.
    pub description: String,
    /// Its status: the linked request's own, or the detail's.
    pub status: String,
}

impl Activity {
    /// Whether its status is the plan's own (a described activity), so it can be changed here.
    pub fn has_own_status(&self) -> bool {
        self.reference.is_none()
    }
}

/// One change in the plan's history (one transaction, or one version written elsewhere).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// When (`meta.lastUpdated` of the versions).
    pub at: String,
    /// What changed, one line per change.
    pub what: Vec<String>,
    /// Who (the Provenance agent's name or reference), when recorded.
    pub who: Option<String>,
    /// On behalf of which organization, when recorded.
    pub organization: Option<String>,
}

/// A care plan as shown and edited.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The CarePlan's id.
    pub id: String,
    /// The version read: edits are written only if it is still the current one.
    pub version: u64,
    /// Its title.
    pub title: String,
    /// Its description.
    pub description: String,
    /// `CarePlan.status`.
    pub status: String,
    /// `CarePlan.intent`.
    pub intent: String,
    /// The care teams that work it.
    pub care_teams: Vec<Named>,
    /// The conditions it addresses.
    pub addresses: Vec<Named>,
    /// Its goals, with their results and achievement.
    pub goals: Vec<GoalView>,
    /// Its activities.
    pub activities: Vec<Activity>,
    /// Its change history, newest first.
    pub history: Vec<Change>,
}

fn text(value: &Value, pointer: &str) -> String {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn refs(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("reference").and_then(Value::as_str).map(str::to_string))
        .collect()
}

fn id_of(reference: &str, resource_type: &str) -> Option<String> {
    reference.strip_prefix(resource_type)?.strip_prefix('/').filter(|id| fhir::reference::is_id(id)).map(str::to_string)
}

fn body(version: &store::ResourceVersion) -> Option<Value> {
    version.body.as_deref().and_then(|b| serde_json::from_str(b).ok())
}

fn today() -> Date {
    time::OffsetDateTime::now_utc().date()
}

fn now() -> String {
    store::format_instant(time::OffsetDateTime::now_utc())
}

/// `patient`'s care plans (up to 100), as the caller may see them.
pub fn plans(access: &Access, patient: &str) -> Result<Vec<PlanSummary>> {
    let found =
        search(access, "CarePlan", &[("patient", patient.to_string()), ("_sort", "-_lastUpdated".into())], 100)?;
    Ok(found
        .iter()
        .map(|p| PlanSummary {
            id: text(p, "/id"),
            title: title_of(p),
            status: text(p, "/status"),
            goals: refs(p, "goal").len(),
            activities: p.get("activity").and_then(Value::as_array).map_or(0, Vec::len),
        })
        .collect())
}

fn title_of(plan: &Value) -> String {
    plan.get("title").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| "Care plan".into())
}

/// Reads plan `id` of `patient` through the door (not the patient's: [`Error::NotFound`]).
fn read_plan(access: &Access, patient: &str, id: &str) -> Result<Value> {
    if !fhir::reference::is_id(id) || !fhir::reference::is_id(patient) {
        return Err(Error::NotFound);
    }
    let plan = body(&access.read("CarePlan", id)?).ok_or(Error::NotFound)?;
    if plan.pointer("/subject/reference").and_then(Value::as_str) != Some(format!("Patient/{patient}").as_str()) {
        return Err(Error::NotFound);
    }
    Ok(plan)
}

/// What to show for a reference: its display, else the name of what it points to (read
/// through the door), else the reference itself.
fn named(access: &Access, reference: &Value) -> Named {
    let target = reference.get("reference").and_then(Value::as_str).unwrap_or_default().to_string();
    let display = reference.get("display").and_then(Value::as_str).map(str::to_string).or_else(|| {
        let (t, id) = target.split_once('/')?;
        let resource = body(&access.read(t, id).ok()?)?;
        resource
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| resource.pointer("/code/text").and_then(Value::as_str).map(str::to_string))
            .or_else(|| resource.pointer("/code/coding/0/display").and_then(Value::as_str).map(str::to_string))
    });
    Named { display: display.unwrap_or_else(|| target.clone()), reference: target }
}

/// What a linked request is, and its status.
fn describe_request(request: &Value) -> (String, String) {
    let status = text(request, "/status");
    let concept = |key: &str| {
        request
            .get(key)
            .and_then(|c| c.get("text").or_else(|| c.pointer("/coding/0/display")))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let what = request
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| concept("code"))
        .or_else(|| concept("medicationCodeableConcept"))
        .or_else(|| request.pointer("/serviceType/0/text").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    (what, status)
}

/// Plan `id` of `patient`: its goals with their latest results and achievement, its
/// activities with their status, and its change history.
pub fn plan(access: &Access, patient: &str, id: &str) -> Result<Plan> {
    let plan = read_plan(access, patient, id)?;
    let today = today();
    let mut goals = Vec::new();
    for reference in refs(&plan, "goal") {
        let Some(goal_id) = id_of(&reference, "Goal") else { continue };
        // A goal the caller may not see is left out, as a search would.
        let Ok(version) = access.read("Goal", &goal_id) else { continue };
        if let Some(goal) = body(&version) {
            goals.push(goals::goal_view(access, patient, &goal, today)?);
        }
    }
    let mut activities = Vec::new();
    for (index, activity) in plan.get("activity").and_then(Value::as_array).into_iter().flatten().enumerate() {
        if let Some(reference) = activity.pointer("/reference/reference").and_then(Value::as_str) {
            let read = reference.split_once('/').and_then(|(t, i)| access.read(t, i).ok()).and_then(|v| body(&v));
            let (description, status) = match read {
                Some(request) => describe_request(&request),
                None => ("(not shown to you)".to_string(), String::new()),
            };
            let description = activity
                .pointer("/reference/display")
                .and_then(Value::as_str)
                .map(str::to_string)
                .filter(|_| description.is_empty())
                .unwrap_or(description);
            activities.push(Activity { index, reference: Some(reference.to_string()), description, status });
        } else {
            activities.push(Activity {
                index,
                reference: None,
                description: text(activity, "/detail/description"),
                status: text(activity, "/detail/status"),
            });
        }
    }
    let list = |key: &str| -> Vec<Named> {
        plan.get(key).and_then(Value::as_array).into_iter().flatten().map(|r| named(access, r)).collect()
    };
    let history = history(access, id, &plan)?;
    Ok(Plan {
        id: id.to_string(),
        version: plan.pointer("/meta/versionId").and_then(Value::as_str).and_then(|v| v.parse().ok()).unwrap_or(1),
        title: title_of(&plan),
        description: text(&plan, "/description"),
        status: text(&plan, "/status"),
        intent: text(&plan, "/intent"),
        care_teams: list("careTeam"),
        addresses: list("addresses"),
        goals,
        activities,
        history,
    })
}

/// Every version of `resource_type/id` the caller may see, oldest first.
fn versions(access: &Access, resource_type: &str, id: &str) -> Result<Vec<store::ResourceVersion>> {
    let (mut versions, _) = access.history(&HistoryQuery {
        resource_type: Some(resource_type.into()),
        id: Some(id.into()),
        count: 1000,
        ..HistoryQuery::default()
    })?;
    versions.reverse();
    Ok(versions)
}

/// What changed from `before` to `after` of a plan.
fn plan_changes(before: Option<&Value>, after: Option<&Value>) -> Vec<String> {
    let (Some(after), Some(before)) = (after, before) else {
        return match after {
            Some(after) => vec![format!("Plan “{}” created ({})", title_of(after), text(after, "/status"))],
            None => vec!["Plan deleted".into()],
        };
    };
    let mut what = Vec::new();
    let (was, now) = (text(before, "/status"), text(after, "/status"));
    if was != now {
        what.push(format!("Plan status {was} → {now}"));
    }
    if title_of(before) != title_of(after) {
        what.push(format!("Title changed to “{}”", title_of(after)));
    }
    let (goals_before, goals_after) = (refs(before, "goal"), refs(after, "goal"));
    let added = goals_after.iter().filter(|g| !goals_before.contains(g)).count();
    let removed = goals_before.iter().filter(|g| !goals_after.contains(g)).count();
    if added > 0 {
        what.push(format!("{added} goal(s) added"));
    }
    if removed > 0 {
        what.push(format!("{removed} goal(s) removed"));
    }
    let activities = |p: &Value| p.get("activity").and_then(Value::as_array).cloned().unwrap_or_default();
    let (a, b) = (activities(before), activities(after));
    let describe = |activity: &Value| {
        activity
            .pointer("/reference/display")
            .or_else(|| activity.pointer("/reference/reference"))
            .or_else(|| activity.pointer("/detail/description"))
            .and_then(Value::as_str)
            .unwrap_or("activity")
            .to_string()
    };
    for gone in a.iter().filter(|x| !b.iter().any(|y| same_activity(x, y))) {
        what.push(format!("Activity removed: {}", describe(gone)));
    }
    for new in b.iter().filter(|y| !a.iter().any(|x| same_activity(x, y))) {
        what.push(format!("Activity added: {}", describe(new)));
    }
    for new in &b {
        if let Some(old) = a.iter().find(|x| same_activity(x, new)) {
            let (s0, s1) = (text(old, "/detail/status"), text(new, "/detail/status"));
            if s0 != s1 {
                what.push(format!("Activity “{}” {s0} → {s1}", describe(new)));
            }
        }
    }
    if refs(before, "careTeam") != refs(after, "careTeam") {
        what.push("Care team changed".into());
    }
    if refs(before, "addresses") != refs(after, "addresses") {
        what.push("Conditions addressed changed".into());
    }
    if what.is_empty() {
        what.push("Plan details changed".into());
    }
    what
}

/// The same activity in two versions: the same linked request, or the same description.
fn same_activity(a: &Value, b: &Value) -> bool {
    match (a.pointer("/reference/reference"), b.pointer("/reference/reference")) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a.pointer("/detail/description") == b.pointer("/detail/description"),
        _ => false,
    }
}

/// What changed from `before` to `after` of a goal.
fn goal_changes(before: Option<&Value>, after: Option<&Value>) -> Vec<String> {
    let name = |g: &Value| text(g, "/description/text");
    match (before, after) {
        (_, None) => vec!["Goal deleted".into()],
        (None, Some(after)) => {
            let targets: Vec<String> = goals::targets_of(after)
                .iter()
                .map(|t| match &t.detail {
                    Some(d) => format!("{} {}", t.measure_name, d.text()),
                    None => t.measure_name.clone(),
                })
                .collect();
            let due = goals::targets_of(after).iter().find_map(|t| t.due.clone());
            let mut line = format!("Goal added: “{}”", name(after));
            if !targets.is_empty() {
                line.push_str(&format!(" (target {}", targets.join(", ")));
                if let Some(due) = due {
                    line.push_str(&format!(" by {due}"));
                }
                line.push(')');
            }
            vec![line]
        }
        (Some(before), Some(after)) => {
            let (was, now) = (text(before, "/lifecycleStatus"), text(after, "/lifecycleStatus"));
            if was != now {
                vec![format!("Goal “{}” {was} → {now}", name(after))]
            } else {
                vec![format!("Goal “{}” changed", name(after))]
            }
        }
    }
}

/// Who wrote which version, from the Provenance naming it: `Type/id/_history/n` → (who,
/// organization).
/// Who wrote a version: (the Provenance it came with, as a number shared by the versions of one
/// edit; who; on behalf of which organization).
type Author = (usize, Option<String>, Option<String>);

fn authors(access: &Access, targets: &[String]) -> Result<HashMap<String, Author>> {
    let mut found = HashMap::new();
    for (n, chunk) in targets.chunks(40).enumerate() {
        let provenances = search(access, "Provenance", &[("target", chunk.join(","))], 1000)?;
        for (m, provenance) in provenances.iter().enumerate() {
            let agent = provenance.pointer("/agent/0");
            let who = agent.and_then(|a| {
                a.pointer("/who/display").or_else(|| a.pointer("/who/reference")).and_then(Value::as_str)
            });
            let organization = agent.and_then(|a| {
                a.pointer("/onBehalfOf/display").or_else(|| a.pointer("/onBehalfOf/reference")).and_then(Value::as_str)
            });
            for target in refs(provenance, "target").into_iter().filter(|t| t.contains("/_history/")) {
                found.insert(target, (n * 1000 + m, who.map(str::to_string), organization.map(str::to_string)));
            }
        }
    }
    Ok(found)
}

/// The change history of plan `id` (read as `plan`): its versions and its goals', newest first,
/// those written together in one row.
fn history(access: &Access, id: &str, plan: &Value) -> Result<Vec<Change>> {
    // (time, resource reference with version, what)
    let mut rows: Vec<(time::OffsetDateTime, String, Vec<String>)> = Vec::new();
    let mut previous: Option<Value> = None;
    for version in versions(access, "CarePlan", id)? {
        let now = body(&version);
        rows.push((
            version.last_updated,
            format!("CarePlan/{id}/_history/{}", version.version),
            plan_changes(previous.as_ref(), now.as_ref()),
        ));
        previous = now;
    }
    let mut targets = vec![format!("CarePlan/{id}")];
    for goal in refs(plan, "goal").iter().filter_map(|r| id_of(r, "Goal")) {
        let mut previous: Option<Value> = None;
        let Ok(goal_versions) = versions(access, "Goal", &goal) else { continue };
        for version in goal_versions {
            let now = body(&version);
            rows.push((
                version.last_updated,
                format!("Goal/{goal}/_history/{}", version.version),
                goal_changes(previous.as_ref(), now.as_ref()),
            ));
            previous = now;
        }
        targets.push(format!("Goal/{goal}"));
    }
    let authors = authors(access, &targets)?;
    // One row per Provenance (one edit), else per version.
    let mut changes: Vec<(time::OffsetDateTime, Option<usize>, Change)> = Vec::new();
    for (at, reference, what) in rows {
        let author = authors.get(&reference);
        let key = author.map(|a| a.0);
        if let Some(key) = key
            && let Some((when, _, change)) = changes.iter_mut().find(|(_, k, _)| *k == Some(key))
        {
            change.what.extend(what);
            *when = (*when).max(at);
            continue;
        }
        changes.push((
            at,
            key,
            Change {
                at: store::format_instant(at),
                what,
                who: author.and_then(|a| a.1.clone()),
                organization: author.and_then(|a| a.2.clone()),
            },
        ));
    }
    changes.sort_by_key(|c| std::cmp::Reverse(c.0));
    Ok(changes.into_iter().map(|(_, _, c)| c).collect())
}

/// The agent of the Provenance of an edit: the caller's Practitioner and name, and the
/// organization they act for (of the staff identity's organizations, the first in the plan's
/// care team, else the first).
fn agent(access: &Access, plan: &Value) -> Value {
    let Some(caller) = access.caller() else {
        let name = match access.who() {
            access::Who::Job(name) => format!("job {name}"),
            _ => "unknown".into(),
        };
        return json!({"who": {"display": name}});
    };
    let principal = &caller.principal;
    let mut who = json!({"display": principal.subject.name()});
    if let Some(user) = principal.fhir_user() {
        who["reference"] = json!(user);
    }
    let mut agent = json!({
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
        "who": who,
    });
    let organizations = match &principal.subject {
        auth::Subject::User { identity: auth::Identity::Staff { organizations, .. }, .. } => organizations.clone(),
        _ => Vec::new(),
    };
    let mut team_orgs = Vec::new();
    for team in refs(plan, "careTeam").iter().filter_map(|r| id_of(r, "CareTeam")) {
        let Some(team) = access.read("CareTeam", &team).ok().and_then(|v| body(&v)) else { continue };
        team_orgs.extend(refs(&team, "managingOrganization"));
        for participant in team.get("participant").and_then(Value::as_array).into_iter().flatten() {
            for key in ["member", "onBehalfOf"] {
                if let Some(r) = participant.pointer(&format!("/{key}/reference")).and_then(Value::as_str) {
                    team_orgs.push(r.to_string());
                }
            }
        }
    }
    let chosen = organizations
        .iter()
        .find(|o| team_orgs.contains(&format!("Organization/{o}")))
        .or_else(|| organizations.first());
    if let Some(org) = chosen {
        let mut on_behalf = json!({"reference": format!("Organization/{org}")});
        if let Some(name) = access
            .read("Organization", org)
            .ok()
            .and_then(|v| body(&v))
            .and_then(|o| o.get("name").and_then(Value::as_str).map(str::to_string))
        {
            on_behalf["display"] = json!(name);
        }
        agent["onBehalfOf"] = on_behalf;
    }
    agent
}

/// The Provenance of an edit that wrote `targets` (`Type/id/_history/n`) of `patient`.
fn provenance(agent: Value, patient: &str, targets: &[String], created: bool) -> Value {
    let mut target: Vec<Value> = targets.iter().map(|t| json!({"reference": t})).collect();
    target.push(json!({"reference": format!("Patient/{patient}")}));
    let code = if created { "CREATE" } else { "UPDATE" };
    json!({
        "resourceType": "Provenance",
        "target": target,
        "recorded": now(),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": code}]},
        "agent": [agent],
    })
}

fn put(resource: &Value, resource_type: &str, id: &str, if_match: Option<u64>) -> Value {
    let mut resource = resource.clone();
    resource["id"] = json!(id);
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            resource.as_object_mut().map(|r| r.remove("meta"));
        }
    }
    let mut request = json!({"method": "PUT", "url": format!("{resource_type}/{id}")});
    if let Some(version) = if_match {
        request["ifMatch"] = json!(format!("W/\"{version}\""));
    }
    json!({"resource": resource, "request": request})
}

fn post(resource: Value) -> Value {
    let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_string();
    json!({"resource": resource, "request": {"method": "POST", "url": resource_type}})
}

/// Writes `entries` (the versions of an edit) with the edit's Provenance, in one transaction.
/// A role that may edit plans but not write Provenance (care managers, as the roles stand)
/// edits without one: the history then shows the change with its author not recorded.
fn commit(access: &Access, patient: &str, mut entries: Vec<Value>, provenance: Value) -> Result<()> {
    if access.may(auth::Interaction::Create, "Provenance").is_ok() {
        entries.push(post(provenance));
    }
    access
        .transaction_for(json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}), Some(patient))?;
    Ok(())
}

/// A plan to start.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewPlan {
    /// Its title.
    pub title: String,
    /// What it is for, when given.
    pub description: Option<String>,
    /// The CareTeam id that works it, when given.
    pub care_team: Option<String>,
    /// The Condition ids it addresses.
    pub addresses: Vec<String>,
}

/// Starts an active shared care plan (intent `plan`) for `patient`; returns its id.
pub fn create_plan(access: &Access, patient: &str, new: &NewPlan) -> Result<String> {
    if !fhir::reference::is_id(patient) {
        return Err(Error::NotFound);
    }
    if new.title.trim().is_empty() {
        return Err(Error::Invalid("a care plan needs a title".into()));
    }
    let mut plan = json!({
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "title": new.title.trim(),
        "subject": {"reference": format!("Patient/{patient}")},
        "period": {"start": today().to_string()},
        "created": now(),
    });
    if let Some(description) = new.description.as_deref().filter(|d| !d.trim().is_empty()) {
        plan["description"] = json!(description.trim());
    }
    if let Some(team) = &new.care_team {
        if !fhir::reference::is_id(team) {
            return Err(Error::Invalid("the care team must be a CareTeam id".into()));
        }
        plan["careTeam"] = json!([{"reference": format!("CareTeam/{team}")}]);
    }
    if !new.addresses.is_empty() {
        if !new.addresses.iter().all(|c| fhir::reference::is_id(c)) {
            return Err(Error::Invalid("the conditions addressed must be Condition ids".into()));
        }
        plan["addresses"] =
            json!(new.addresses.iter().map(|c| json!({"reference": format!("Condition/{c}")})).collect::<Vec<_>>());
    }
    if let Some(author) = access.caller().and_then(|c| c.principal.fhir_user()) {
        plan["author"] = json!({"reference": author});
    }
    let id = uuid::Uuid::new_v4().to_string();
    let agent = agent(access, &plan);
    let provenance = provenance(agent, patient, &[format!("CarePlan/{id}/_history/1")], true);
    commit(access, patient, vec![put(&plan, "CarePlan", &id, None)], provenance)?;
    Ok(id)
}

/// Changes plan `id` of `patient` as read at `read_version`: `change` edits its current body
/// (and may return more entries to write with it); the plan is written with `If-Match` on
/// `read_version`, with the edit's Provenance, in one transaction.
fn edit_plan(
    access: &Access,
    patient: &str,
    id: &str,
    read_version: u64,
    change: impl FnOnce(&mut Value) -> Result<Vec<(Value, String)>>,
) -> Result<()> {
    let mut plan = read_plan(access, patient, id)?;
    let current = plan.pointer("/meta/versionId").and_then(Value::as_str).and_then(|v| v.parse::<u64>().ok());
    if current != Some(read_version) {
        // Someone changed it since the editor read it: the same answer the write would get.
        return Err(access::Error::Store(store::Error::PreconditionFailed(
            "the care plan changed since it was read; reload it".into(),
        ))
        .into());
    }
    let extra = change(&mut plan)?;
    let mut targets = vec![format!("CarePlan/{id}/_history/{}", read_version + 1)];
    let mut entries = vec![put(&plan, "CarePlan", id, Some(read_version))];
    for (entry, target) in extra {
        entries.push(entry);
        targets.push(target);
    }
    let provenance = provenance(agent(access, &plan), patient, &targets, false);
    commit(access, patient, entries, provenance)
}

fn check_code(code: &str, allowed: &[&str], what: &str) -> Result<()> {
    if allowed.contains(&code) {
        Ok(())
    } else {
        Err(Error::Invalid(format!("{what} must be one of: {}", allowed.join(", "))))
    }
}

/// Sets the status of plan `id` (read at `read_version`).
pub fn set_status(access: &Access, patient: &str, id: &str, read_version: u64, status: &str) -> Result<()> {
    check_code(status, PLAN_STATUSES, "the plan's status")?;
    edit_plan(access, patient, id, read_version, |plan| {
        plan["status"] = json!(status);
        Ok(Vec::new())
    })
}

/// Adds a goal to plan `id` (read at `read_version`): the Goal created and the plan's `goal`
/// naming it, in one transaction; returns the Goal's id.
pub fn add_goal(access: &Access, patient: &str, id: &str, read_version: u64, new: &NewGoal) -> Result<String> {
    let goal = goals::goal_resource(patient, new, &today().to_string())?;
    let goal_id = uuid::Uuid::new_v4().to_string();
    edit_plan(access, patient, id, read_version, |plan| {
        let list = plan.as_object_mut().map(|p| p.entry("goal").or_insert_with(|| json!([])));
        if let Some(Value::Array(list)) = list {
            list.push(json!({"reference": format!("Goal/{goal_id}")}));
        }
        Ok(vec![(put(&goal, "Goal", &goal_id, None), format!("Goal/{goal_id}/_history/1"))])
    })?;
    Ok(goal_id)
}

/// Sets the lifecycle status of goal `goal` of plan `id` (the goal read at `goal_version`).
pub fn set_goal_status(
    access: &Access,
    patient: &str,
    id: &str,
    goal: &str,
    goal_version: u64,
    status: &str,
) -> Result<()> {
    check_code(status, goals::LIFECYCLE, "the goal's status")?;
    let plan = read_plan(access, patient, id)?;
    if !refs(&plan, "goal").iter().any(|r| r == &format!("Goal/{goal}")) {
        return Err(Error::NotFound);
    }
    let mut resource = body(&access.read("Goal", goal)?).ok_or(Error::NotFound)?;
    resource["lifecycleStatus"] = json!(status);
    let entry = put(&resource, "Goal", goal, Some(goal_version));
    let provenance =
        provenance(agent(access, &plan), patient, &[format!("Goal/{goal}/_history/{}", goal_version + 1)], false);
    commit(access, patient, vec![entry], provenance)
}

/// An activity to add to a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum NewActivity {
    /// A request of the patient's (`Type/id`, one of [`ACTIVITY_TYPES`]).
    Linked(String),
    /// A described activity with its own status (one of [`ACTIVITY_STATUSES`]).
    Described {
        /// What is to be done.
        description: String,
        /// Its status.
        status: String,
    },
}

/// Adds an activity to plan `id` (read at `read_version`). A linked request must be one of
/// [`ACTIVITY_TYPES`] and the patient's, as the caller sees it.
pub fn add_activity(access: &Access, patient: &str, id: &str, read_version: u64, new: &NewActivity) -> Result<()> {
    let activity = match new {
        NewActivity::Linked(reference) => {
            let (resource_type, request_id) = reference
                .split_once('/')
                .filter(|(t, i)| ACTIVITY_TYPES.contains(t) && fhir::reference::is_id(i))
                .ok_or_else(|| Error::Invalid(format!("an activity links to a {}", ACTIVITY_TYPES.join(", "))))?;
            let request = body(&access.read(resource_type, request_id)?).ok_or(Error::NotFound)?;
            if !policy::patients_of(resource_type, &request).iter().any(|p| p == patient) {
                return Err(Error::NotFound);
            }
            let (description, _) = describe_request(&request);
            let mut link = json!({"reference": reference});
            if !description.is_empty() {
                link["display"] = json!(description);
            }
            json!({"reference": link})
        }
        NewActivity::Described { description, status } => {
            check_code(status, ACTIVITY_STATUSES, "the activity's status")?;
            if description.trim().is_empty() {
                return Err(Error::Invalid("an activity needs a description".into()));
            }
            json!({"detail": {"status": status, "description": description.trim()}})
        }
    };
    edit_plan(access, patient, id, read_version, |plan| {
        let list = plan.as_object_mut().map(|p| p.entry("activity").or_insert_with(|| json!([])));
        if let Some(Value::Array(list)) = list {
            list.push(activity);
        }
        Ok(Vec::new())
    })
}

fn activity_at(plan: &mut Value, index: usize) -> Result<&mut Value> {
    plan.get_mut("activity").and_then(Value::as_array_mut).and_then(|a| a.get_mut(index)).ok_or(Error::NotFound)
}

/// Sets the status of described activity `index` of plan `id` (read at `read_version`).
pub fn set_activity_status(
    access: &Access,
    patient: &str,
    id: &str,
    read_version: u64,
    index: usize,
    status: &str,
) -> Result<()> {
    check_code(status, ACTIVITY_STATUSES, "the activity's status")?;
    edit_plan(access, patient, id, read_version, |plan| {
        let activity = activity_at(plan, index)?;
        let Some(detail) = activity.get_mut("detail") else {
            return Err(Error::Invalid("a linked request's status is the request's own".into()));
        };
        detail["status"] = json!(status);
        Ok(Vec::new())
    })
}

/// Removes activity `index` of plan `id` (read at `read_version`).
pub fn remove_activity(access: &Access, patient: &str, id: &str, read_version: u64, index: usize) -> Result<()> {
    edit_plan(access, patient, id, read_version, |plan| {
        activity_at(plan, index)?;
        if let Some(list) = plan.get_mut("activity").and_then(Value::as_array_mut) {
            list.remove(index);
            if list.is_empty() {
                plan.as_object_mut().map(|p| p.remove("activity"));
            }
        }
        Ok(Vec::new())
    })
}
