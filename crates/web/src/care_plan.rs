//! The care plan pages: a patient's shared care plans, one plan with its goals (target, latest
//! value, achievement, due date), activities, status and change history (who, from which
//! organization, when), and the editor's forms. Every form carries the version of the plan (or
//! goal) it was shown at, so an edit made meanwhile by another member of the team is never
//! overwritten: the later one is told the record changed. The plans, their rules and the
//! achievement are the care service's ([`care::plans`], [`care::goals`]); these pages read the
//! forms and render.

use crate::WebApp;
use crate::clinical::{Reader, as_user};
use crate::display;
use crate::error::WebError;
use crate::forms::{FormProblems, plain_text};
use crate::layout::{self, Banner, Tab};
use crate::pages::open_chart;
use crate::session::Session;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use care::goals::{Comparator, GoalView, LIFECYCLE, MEASURES, NewGoal, TargetDetail};
use care::plans::{ACTIVITY_STATUSES, NewActivity, NewPlan, PLAN_STATUSES, Plan, PlanSummary};
use maud::{Markup, html};
use serde_json::Value;
use std::collections::HashMap;

/// The page of a care service error: a refusal of what was submitted is shown on the form.
pub(crate) fn care_error(error: care::Error) -> WebError {
    match error {
        care::Error::Access(e) => e.into(),
        care::Error::Store(e) => e.into(),
        care::Error::NotFound => WebError::NotFound,
        other => WebError::BadRequest(other.to_string()),
    }
}

fn field(form: &HashMap<String, String>, name: &str) -> String {
    form.get(name).cloned().unwrap_or_default()
}

/// The list page's data.
struct ListPage {
    banner: Banner,
    plans: Vec<PlanSummary>,
    /// The patient's care teams: (id, name).
    teams: Vec<(String, String)>,
    /// The patient's active problems a plan may address: (id, name).
    problems: Vec<(String, String)>,
}

fn list_page(session: &Session, page: &ListPage, form: &HashMap<String, String>, problems: &FormProblems) -> Markup {
    let base = format!("/app/patients/{}/care-plans", page.banner.id);
    let content = html! {
        h2 { "Care plans" }
        (problems.render())
        @if page.plans.is_empty() { p class="muted" { "No care plan yet." } }
        @else {
            table {
                thead { tr { th scope="col" { "Plan" } th scope="col" { "Status" } th scope="col" { "Goals" } th scope="col" { "Activities" } } }
                tbody { @for p in &page.plans {
                    tr { td { a href={ (base) "/" (p.id) } { (p.title) } } td { (p.status) } td { (p.goals) } td { (p.activities) } }
                } }
            }
        }
        section class="card" aria-labelledby="h-new-plan" {
            h3 id="h-new-plan" { "Start a shared care plan" }
            form method="post" action=(base) novalidate {
                input type="hidden" name="csrf" value=(session.csrf);
                div class="field" { label for="title" { "Title" } br; input id="title" name="title" size="50" value=(field(form, "title")); }
                div class="field" { label for="description" { "Description (optional)" } br; textarea id="description" name="description" { (field(form, "description")) } }
                div class="field" { label for="care_team" { "Care team" } br;
                    select id="care_team" name="care_team" {
                        option value="" { "None" }
                        @for (id, name) in &page.teams { option value=(id) selected[field(form, "care_team") == *id] { (name) } }
                    }
                }
                @if !page.problems.is_empty() {
                    fieldset { legend { "Conditions it addresses" }
                        @for (id, name) in &page.problems {
                            @let key = format!("address-{id}");
                            label for=(key) { input type="checkbox" id=(key) name=(key) value="1" checked[form.contains_key(&key)]; " " (name) } br;
                        }
                    }
                }
                button type="submit" { "Start plan" }
            }
        }
    };
    layout::chart_page(session, &page.banner, Tab::CarePlans, "Care plans", content)
}

async fn load_list(app: &WebApp, session: &Session, patient: &str) -> Result<Result<ListPage, Markup>, WebError> {
    let id = patient.to_string();
    open_chart(app, session, patient, "care-plans", move |reader, banner| {
        let plans = care::plans::plans(&reader.access, &id).map_err(care_error)?;
        let teams = reader
            .search_if_allowed("CareTeam", &[("patient", id.clone())], 20)?
            .unwrap_or_default()
            .iter()
            .map(|t| {
                let team_id = t.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                let name = t
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("Care team {team_id}"));
                (team_id, name)
            })
            .collect();
        let problems = reader
            .search_if_allowed("Condition", &[("patient", id.clone()), ("clinical-status", "active".into())], 50)?
            .unwrap_or_default()
            .iter()
            .map(|c| {
                let condition = c.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                (condition, display::concept(c.get("code")))
            })
            .collect();
        Ok(ListPage { banner, plans, teams, problems })
    })
    .await
}

/// `GET /app/patients/{id}/care-plans`.
pub(crate) async fn list(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
) -> Result<Response, WebError> {
    Ok(match load_list(&app, &session, &patient).await? {
        Ok(page) => list_page(&session, &page, &HashMap::new(), &FormProblems::default()).into_response(),
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}

/// `POST /app/patients/{id}/care-plans`: starts a plan, then shows it.
pub(crate) async fn create(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let mut problems = FormProblems::default();
    let title = plain_text(&mut problems, "title", "The title", &field(&form, "title"), true, 200);
    let description =
        plain_text(&mut problems, "description", "The description", &field(&form, "description"), false, 2000);
    let team = field(&form, "care_team");
    let new = NewPlan {
        title,
        description: (!description.is_empty()).then_some(description),
        care_team: (!team.is_empty()).then_some(team),
        addresses: form
            .keys()
            .filter_map(|k| k.strip_prefix("address-"))
            .filter(|id| fhir::reference::is_id(id))
            .map(str::to_string)
            .collect(),
    };
    if problems.is_empty() {
        let reader = Reader::new(&app, &session);
        let p = patient.clone();
        let made = as_user(reader, move |reader| match care::plans::create_plan(&reader.access, &p, &new) {
            Err(care::Error::Invalid(why)) => Ok(Err(why)),
            other => other.map(Ok).map_err(care_error),
        })
        .await?;
        match made {
            Ok(id) => return Ok(Redirect::to(&format!("/app/patients/{patient}/care-plans/{id}")).into_response()),
            Err(why) => problems.add("title", why),
        }
    }
    Ok(match load_list(&app, &session, &patient).await? {
        Ok(page) => (StatusCode::UNPROCESSABLE_ENTITY, list_page(&session, &page, &form, &problems)).into_response(),
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}

/// The plan page's data.
struct PlanPage {
    banner: Banner,
    plan: Plan,
    /// The patient's open requests an activity may link to: (`Type/id`, label).
    requests: Vec<(String, String)>,
}

fn achievement_text(goal: &GoalView) -> String {
    match goal.achievement {
        Some(a) => a.display().to_string(),
        None => "No result yet".into(),
    }
}

fn status_select(id: &str, name: &str, codes: &[&str], current: &str) -> Markup {
    html! {
        select id=(id) name=(name) { @for code in codes { option value=(code) selected[*code == current] { (code) } } }
    }
}

fn plan_page(
    session: &Session,
    page: &PlanPage,
    form: &HashMap<String, String>,
    problems: &FormProblems,
    saved: bool,
) -> Markup {
    let plan = &page.plan;
    let base = format!("/app/patients/{}/care-plans/{}", page.banner.id, plan.id);
    let version = plan.version.to_string();
    let hidden = html! {
        input type="hidden" name="csrf" value=(session.csrf);
        input type="hidden" name="version" value=(version);
    };
    let content = html! {
        p { a href={ "/app/patients/" (page.banner.id) "/care-plans" } { "All care plans" } }
        h2 id="plan-title" { (plan.title) }
        @if saved { p class="ok" role="status" { "Saved." } }
        (problems.render())
        @if !plan.description.is_empty() { p { (plan.description) } }
        dl class="facts" {
            div { dt { "Status" } dd id="plan-status" { (plan.status) } }
            div { dt { "Intent" } dd { (plan.intent) } }
            div { dt { "Care team" } dd { (plan.care_teams.iter().map(|t| t.display.as_str()).collect::<Vec<_>>().join("; ")) } }
            @if !plan.addresses.is_empty() {
                div { dt { "Addresses" } dd { (plan.addresses.iter().map(|c| c.display.as_str()).collect::<Vec<_>>().join("; ")) } }
            }
        }
        form method="post" action={ (base) "/status" } class="filters" {
            (hidden)
            div class="field" { label for="plan-status-select" { "Plan status" } br; (status_select("plan-status-select", "status", PLAN_STATUSES, &plan.status)) }
            button type="submit" class="secondary" { "Change status" }
        }
        section class="card" aria-labelledby="h-goals" {
            h3 id="h-goals" { "Goals" }
            @if plan.goals.is_empty() { p class="muted" { "No goal yet." } }
            @else {
                table id="goals" {
                    thead { tr { th scope="col" { "Goal" } th scope="col" { "Target" } th scope="col" { "Due" } th scope="col" { "Latest" } th scope="col" { "Achievement" } th scope="col" { "Status" } } }
                    tbody { @for goal in &plan.goals {
                        @let target = goal.targets.first();
                        tr {
                            td { (goal.description) }
                            td { @if let Some(t) = target { (t.target.measure_name) " " (t.target.detail.as_ref().map(|d| d.text()).unwrap_or_default()) } }
                            td { (target.and_then(|t| t.target.due.as_deref()).unwrap_or("—")) }
                            td { @if let Some(latest) = target.and_then(|t| t.latest.as_ref()) { (latest.text) span class="muted" { " " (display::day(&latest.at)) } } @else { span class="muted" { "—" } } }
                            td class="achievement" { (achievement_text(goal)) }
                            td {
                                form method="post" action={ (base) "/goals/" (goal.id) "/status" } {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="goal_version" value=(goal.version);
                                    label for={ "goal-status-" (goal.id) } class="muted" { "Status " }
                                    (status_select(&format!("goal-status-{}", goal.id), "status", LIFECYCLE, &goal.lifecycle))
                                    " " button type="submit" class="secondary" { "Set" }
                                }
                            }
                        }
                    } }
                }
            }
            h4 { "Add a goal" }
            form method="post" action={ (base) "/goals" } novalidate {
                (hidden)
                div class="field" { label for="goal_description" { "Goal" } br; input id="goal_description" name="goal_description" size="50" value=(field(form, "goal_description")); }
                div class="field" { label for="measure" { "Measure" } br;
                    select id="measure" name="measure" { @for (code, name, _) in MEASURES { option value=(code) selected[field(form, "measure") == *code] { (name) " (LOINC " (code) ")" } } } }
                div class="field" { label for="comparator" { "Target" } br;
                    select id="comparator" name="comparator" { @for c in ["<", "<=", ">=", ">"] { option value=(c) selected[field(form, "comparator") == c] { (c) } } }
                    " " label for="target" class="muted" { "value " } input id="target" name="target" inputmode="decimal" size="8" value=(field(form, "target")); }
                div class="field" { label for="due" { "Due date" } br; input id="due" name="due" type="date" value=(field(form, "due")); }
                button type="submit" { "Add goal" }
            }
        }
        section class="card" aria-labelledby="h-activities" {
            h3 id="h-activities" { "Activities" }
            @if plan.activities.is_empty() { p class="muted" { "No activity yet." } }
            @else {
                table id="activities" {
                    thead { tr { th scope="col" { "Activity" } th scope="col" { "Status" } th scope="col" { "" } } }
                    tbody { @for a in &plan.activities {
                        tr {
                            td { (a.description) @if let Some(r) = &a.reference { span class="muted" { " (" (r.split('/').next().unwrap_or("")) ")" } } }
                            td {
                                @if a.has_own_status() {
                                    form method="post" action={ (base) "/activities/" (a.index) "/status" } {
                                        (hidden)
                                        label for={ "activity-status-" (a.index) } class="muted" { "Status " }
                                        (status_select(&format!("activity-status-{}", a.index), "status", ACTIVITY_STATUSES, &a.status))
                                        " " button type="submit" class="secondary" { "Set" }
                                    }
                                } @else { (a.status) }
                            }
                            td { form method="post" action={ (base) "/activities/" (a.index) "/remove" } { (hidden) button type="submit" class="secondary" { "Remove" } } }
                        }
                    } }
                }
            }
            h4 { "Add an activity" }
            form method="post" action={ (base) "/activities" } novalidate {
                (hidden)
                div class="field" { label for="activity_description" { "Describe what is to be done" } br; input id="activity_description" name="activity_description" size="50" value=(field(form, "activity_description")); }
                div class="field" { label for="activity_status" { "Status" } br; (status_select("activity_status", "activity_status", ACTIVITY_STATUSES, "not-started")) }
                @if !page.requests.is_empty() {
                    div class="field" { label for="request" { "Or link one of the patient's requests" } br;
                        select id="request" name="request" { option value="" { "None" } @for (r, label) in &page.requests { option value=(r) { (label) } } } }
                }
                button type="submit" { "Add activity" }
            }
        }
        section class="card" aria-labelledby="h-history" {
            h3 id="h-history" { "Change history" }
            table id="history" {
                thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Organization" } th scope="col" { "What changed" } } }
                tbody { @for change in &plan.history {
                    tr {
                        td class="muted" { (display::day(&change.at)) " " (change.at.get(11..16).unwrap_or("")) }
                        td { (change.who.as_deref().unwrap_or("not recorded")) }
                        td { (change.organization.as_deref().unwrap_or("—")) }
                        td { ul class="codes" { @for line in &change.what { li { (line) } } } }
                    }
                } }
            }
        }
    };
    layout::chart_page(session, &page.banner, Tab::CarePlans, &plan.title, content)
}

async fn load_plan(
    app: &WebApp,
    session: &Session,
    patient: &str,
    plan: &str,
) -> Result<Result<PlanPage, Markup>, WebError> {
    let (id, plan_id) = (patient.to_string(), plan.to_string());
    open_chart(app, session, patient, "care-plan", move |reader, banner| {
        let plan = care::plans::plan(&reader.access, &id, &plan_id).map_err(care_error)?;
        let mut requests = Vec::new();
        for resource_type in care::plans::ACTIVITY_TYPES {
            let found = reader
                .search_if_allowed(resource_type, &[("patient", id.clone()), ("_sort", "-_lastUpdated".into())], 20)?
                .unwrap_or_default();
            for r in found {
                let rid = r.get("id").and_then(Value::as_str).unwrap_or_default();
                let what = ["description", "code", "medicationCodeableConcept"]
                    .iter()
                    .find_map(|k| {
                        r.get(*k)
                            .and_then(|v| v.as_str().map(str::to_string).or_else(|| Some(display::concept(Some(v)))))
                    })
                    .filter(|w| !w.is_empty())
                    .unwrap_or_else(|| rid.to_string());
                let status = r.get("status").and_then(Value::as_str).unwrap_or("");
                requests.push((format!("{resource_type}/{rid}"), format!("{resource_type}: {what} ({status})")));
            }
        }
        Ok(PlanPage { banner, plan, requests })
    })
    .await
}

/// `GET /app/patients/{id}/care-plans/{plan}[?saved=1]`.
pub(crate) async fn show(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, plan)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    Ok(match load_plan(&app, &session, &patient, &plan).await? {
        Ok(page) => plan_page(&session, &page, &HashMap::new(), &FormProblems::default(), query.contains_key("saved"))
            .into_response(),
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}

/// The version a form was shown at.
fn version(form: &HashMap<String, String>, name: &str) -> Result<u64, WebError> {
    form.get(name)
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| WebError::BadRequest("the form does not say which version it edits; reload the page".into()))
}

/// Runs an edit as the user: back to the plan when done; the plan again with the problem
/// (422) when the service refused what was submitted; the changed-meanwhile page on 409/412.
async fn edit(
    app: &WebApp,
    session: &Session,
    (patient, plan): (String, String),
    form: &HashMap<String, String>,
    mut problems: FormProblems,
    field_name: &str,
    work: impl FnOnce(&access::Access, &str, &str) -> care::Result<()> + Send + 'static,
) -> Result<Response, WebError> {
    if problems.is_empty() {
        let reader = Reader::new(app, session);
        let (p, id) = (patient.clone(), plan.clone());
        let done = as_user(reader, move |reader| match work(&reader.access, &p, &id) {
            Err(care::Error::Invalid(why)) => Ok(Err(why)),
            other => other.map(Ok).map_err(care_error),
        })
        .await?;
        match done {
            Ok(()) => {
                return Ok(Redirect::to(&format!("/app/patients/{patient}/care-plans/{plan}?saved=1")).into_response());
            }
            Err(why) => problems.add(field_name, why),
        }
    }
    Ok(match load_plan(app, session, &patient, &plan).await? {
        Ok(page) => {
            (StatusCode::UNPROCESSABLE_ENTITY, plan_page(session, &page, form, &problems, false)).into_response()
        }
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}

/// `POST /app/patients/{id}/care-plans/{plan}/status`.
pub(crate) async fn set_status(
    State(app): State<WebApp>,
    session: Session,
    Path(ids): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let read_at = version(&form, "version")?;
    let status = field(&form, "status");
    edit(&app, &session, ids, &form, FormProblems::default(), "plan-status-select", move |access, p, id| {
        care::plans::set_status(access, p, id, read_at, &status)
    })
    .await
}

/// `POST /app/patients/{id}/care-plans/{plan}/goals`: adds a goal with its target.
pub(crate) async fn add_goal(
    State(app): State<WebApp>,
    session: Session,
    Path(ids): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let read_at = version(&form, "version")?;
    let mut problems = FormProblems::default();
    let description =
        plain_text(&mut problems, "goal_description", "The goal", &field(&form, "goal_description"), true, 200);
    let measure = MEASURES.iter().find(|(c, _, _)| *c == field(&form, "measure"));
    if measure.is_none() {
        problems.add("measure", "Choose a measure.");
    }
    let comparator = Comparator::from_code(Some(field(&form, "comparator").as_str()));
    if comparator.is_none() {
        problems.add("comparator", "Choose how results compare with the target.");
    }
    let value = field(&form, "target").trim().parse::<f64>().ok().filter(|v| v.is_finite());
    if value.is_none() {
        problems.add("target", "The target must be a number.");
    }
    let due = field(&form, "due").trim().to_string();
    if !due.is_empty() && time::Date::parse(&due, time::macros::format_description!("[year]-[month]-[day]")).is_err() {
        problems.add("due", "The due date must be a real date (YYYY-MM-DD).");
    }
    let new = match (measure, comparator, value) {
        (Some((code, _, unit)), Some(comparator), Some(value)) => Some(NewGoal {
            description,
            measure: code.to_string(),
            detail: TargetDetail::Quantity { comparator, value, unit: Some(unit.to_string()) },
            due: (!due.is_empty()).then_some(due),
        }),
        _ => None,
    };
    edit(&app, &session, ids, &form, problems, "goal_description", move |access, p, id| match new {
        Some(new) => care::plans::add_goal(access, p, id, read_at, &new).map(drop),
        None => Ok(()),
    })
    .await
}

/// `POST /app/patients/{id}/care-plans/{plan}/goals/{goal}/status`.
pub(crate) async fn set_goal_status(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, plan, goal)): Path<(String, String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let read_at = version(&form, "goal_version")?;
    let status = field(&form, "status");
    edit(&app, &session, (patient, plan), &form, FormProblems::default(), "h-goals", move |access, p, id| {
        care::plans::set_goal_status(access, p, id, &goal, read_at, &status)
    })
    .await
}

/// `POST /app/patients/{id}/care-plans/{plan}/activities`: a described activity, or a link to
/// one of the patient's requests.
pub(crate) async fn add_activity(
    State(app): State<WebApp>,
    session: Session,
    Path(ids): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let read_at = version(&form, "version")?;
    let mut problems = FormProblems::default();
    let request = field(&form, "request");
    let description = plain_text(
        &mut problems,
        "activity_description",
        "The activity",
        &field(&form, "activity_description"),
        request.is_empty(),
        500,
    );
    let new = if request.is_empty() {
        NewActivity::Described { description, status: field(&form, "activity_status") }
    } else {
        NewActivity::Linked(request)
    };
    edit(&app, &session, ids, &form, problems, "activity_description", move |access, p, id| {
        care::plans::add_activity(access, p, id, read_at, &new)
    })
    .await
}

fn index(text: &str) -> Result<usize, WebError> {
    text.parse().map_err(|_| WebError::NotFound)
}

/// `POST /app/patients/{id}/care-plans/{plan}/activities/{index}/status`.
pub(crate) async fn set_activity_status(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, plan, at)): Path<(String, String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let (read_at, at) = (version(&form, "version")?, index(&at)?);
    let status = field(&form, "status");
    edit(&app, &session, (patient, plan), &form, FormProblems::default(), "h-activities", move |access, p, id| {
        care::plans::set_activity_status(access, p, id, read_at, at, &status)
    })
    .await
}

/// `POST /app/patients/{id}/care-plans/{plan}/activities/{index}/remove`.
pub(crate) async fn remove_activity(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, plan, at)): Path<(String, String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let (read_at, at) = (version(&form, "version")?, index(&at)?);
    edit(&app, &session, (patient, plan), &form, FormProblems::default(), "h-activities", move |access, p, id| {
        care::plans::remove_activity(access, p, id, read_at, at)
    })
    .await
}
