//! The task inbox and the team work lists: the user's own Tasks, and those of a role, care
//! team or organization of theirs, overdue first (marked in words, not colour alone), each
//! with the actions its state allows (accept, reject, start, complete, cancel, fail; a reason
//! where one is needed). The lists and the lifecycle are [`care::tasks`]'s; the page shows
//! them and passes the actions on, with `If-Match` on the version shown.

use crate::WebApp;
use crate::clinical::{Reader, as_user};
use crate::error::WebError;
use crate::forms::{FormProblems, plain_text};
use crate::layout;
use crate::session::Session;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use care::tasks::{Action, Choice, Status, WorkItem, WorkList};
use maud::{Markup, html};
use std::collections::HashMap;

/// The page of a care service's refusal: the door's own errors as the app answers them, the
/// rules of care coordination as "cannot do that" with their text (which names no data).
pub(crate) fn care_error(error: care::Error) -> WebError {
    match error {
        care::Error::Access(e) => e.into(),
        care::Error::Store(e) => e.into(),
        care::Error::NotFound => WebError::NotFound,
        other => match other.class() {
            fhir::ErrorClass::Forbidden => WebError::Forbidden(other.to_string()),
            fhir::ErrorClass::Conflict | fhir::ErrorClass::PreconditionFailed => WebError::Changed,
            _ => WebError::BadRequest(other.to_string()),
        },
    }
}

/// What the page shows.
struct InboxPage {
    choices: Vec<Choice>,
    list: WorkList,
    items: Vec<WorkItem>,
}

/// The actions a Task in `status` offers: (code, label, wants a reason, wants an output).
fn actions(status: Status) -> Vec<(&'static str, &'static str, bool, bool)> {
    let mut offered = Vec::new();
    for (code, label, reason, output) in [
        ("accept", "Accept", false, false),
        ("reject", "Reject", true, false),
        ("start", "Start", false, false),
        ("complete", "Complete", false, true),
        ("fail", "Mark failed", true, false),
        ("cancel", "Cancel", true, false),
    ] {
        if let Some(action) = Action::parse(code, Some("x"))
            && care::tasks::allowed(status, action.target())
            && status != action.target()
        {
            offered.push((code, label, reason, output));
        }
    }
    offered
}

fn notice(done: &str) -> Option<&'static str> {
    match done {
        "accept" => Some("Accepted: the task is yours to do."),
        "reject" => Some("Rejected, with your reason."),
        "start" => Some("Started."),
        "complete" => Some("Completed: the task left the list."),
        "fail" => Some("Marked failed, with your reason."),
        "cancel" => Some("Cancelled, with your reason."),
        "created" => Some("Added: the task is on its owner's list."),
        _ => None,
    }
}

/// The actions of one Task, each a small form.
pub(crate) fn action_forms(session: &Session, item: &WorkItem, back: &str) -> Markup {
    html! {
        div class="decisions" {
            @for (code, label, reason, output) in actions(item.status) {
                @let field = format!("text-{}-{code}", item.id);
                form method="post" action={ "/app/tasks/" (item.id) } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="version" value=(item.version);
                    input type="hidden" name="action" value=(code);
                    input type="hidden" name="back" value=(back);
                    @if reason {
                        label for=(field) { "Reason" } " "
                        input id=(field) name="text" required maxlength="500";
                        " "
                    }
                    @if output {
                        label for=(field) { "Outcome (optional)" } " "
                        input id=(field) name="text" maxlength="500";
                        " "
                    }
                    button type="submit" class=(if reason { "secondary" } else { "" }) aria-label={ (label) ": " (item.description) } { (label) }
                }
            }
        }
    }
}

/// The overdue marker: a word, not a colour.
pub(crate) fn overdue_marker(overdue: bool) -> Markup {
    html! { @if overdue { " " strong class="abnormal overdue" { "OVERDUE" } } }
}

/// A work list's table.
pub(crate) fn task_table(session: &Session, items: &[WorkItem], back: &str) -> Markup {
    html! {
        table {
            thead { tr {
                th scope="col" { "Patient" } th scope="col" { "Task" } th scope="col" { "Priority" }
                th scope="col" { "Due" } th scope="col" { "Status" } th scope="col" { "Actions" }
            } }
            tbody { @for item in items {
                tr class=(if item.overdue { "overdue" } else { "" }) {
                    td { a href={ "/app/patients/" (item.patient) } { (item.patient_name.as_deref().unwrap_or("(patient)")) } }
                    th scope="row" { (item.description)
                        @if let Some(step) = &item.business_status { br; span class="muted" { (step) } } }
                    td { (item.priority.code()) }
                    td { (item.due.as_deref().map(crate::display::day).unwrap_or_else(|| "—".into())) (overdue_marker(item.overdue)) }
                    td { (item.status.code()) }
                    td { (action_forms(session, item, back)) }
                }
            } }
        }
    }
}

fn render(session: &Session, page: &InboxPage, done: Option<&str>, problems: &FormProblems) -> Markup {
    let key = page.list.key();
    let back = format!("/app/tasks?list={key}");
    let title = page.choices.iter().find(|c| c.list == page.list).map_or("Tasks", |c| c.label.as_str());
    let overdue = page.items.iter().filter(|i| i.overdue).count();
    let content = html! {
        h1 { "Tasks" }
        (problems.render())
        @if let Some(text) = done.and_then(notice) { p class="ok" role="status" { (text) } }
        nav class="tabs" aria-label="Work lists" {
            ul { @for choice in &page.choices {
                @let href = format!("/app/tasks?list={}", choice.list.key());
                li { @if choice.list == page.list { a href=(href) aria-current="page" { (choice.label) } } @else { a href=(href) { (choice.label) } } }
            } }
        }
        h2 { (title) " (" (page.items.len()) " open" @if overdue > 0 { ", " (overdue) " overdue" } ")" }
        @if page.items.is_empty() { p class="muted" { "Nothing is waiting on this list." } }
        @else { (task_table(session, &page.items, &back)) }
    };
    layout::page(session, "Tasks", content)
}

async fn load(app: &WebApp, session: &Session, list: WorkList) -> Result<InboxPage, WebError> {
    let reader = Reader::new(app, session);
    as_user(reader, move |reader| {
        let now = time::OffsetDateTime::now_utc();
        let choices = care::tasks::work_lists(&reader.access).map_err(care_error)?;
        let items = care::tasks::work_list(&reader.access, &list, now).map_err(care_error)?;
        Ok(InboxPage { choices, list, items })
    })
    .await
}

fn chosen(query: &HashMap<String, String>) -> Result<WorkList, WebError> {
    match query.get("list") {
        None => Ok(WorkList::Mine),
        Some(text) => WorkList::parse(text).ok_or(WebError::NotFound),
    }
}

/// `GET /app/tasks[?list=mine|role:ID|team:ID|organization:ID][&done=ACTION]`.
pub(crate) async fn inbox(
    State(app): State<WebApp>,
    session: Session,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let list = chosen(&query)?;
    let page = load(&app, &session, list).await?;
    Ok(render(&session, &page, query.get("done").map(String::as_str), &FormProblems::default()).into_response())
}

/// `POST /app/tasks/{id}` with `version`, `action` and (for reject, fail, cancel) the reason
/// or (for complete) the outcome in `text`: the step, then back to the list it came from.
pub(crate) async fn act(
    State(app): State<WebApp>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    if !fhir::reference::is_id(&id) {
        return Err(WebError::NotFound);
    }
    let back = form.get("back").map(String::as_str).unwrap_or("/app/tasks");
    let list = back.strip_prefix("/app/tasks?list=").and_then(WorkList::parse).unwrap_or(WorkList::Mine);
    let version: u64 = form
        .get("version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| WebError::BadRequest("the form lacks the version it was shown at; reload the page".into()))?;
    let code = form.get("action").map(String::as_str).unwrap_or("");
    let mut problems = FormProblems::default();
    let text = plain_text(&mut problems, "text", "The reason", form.get("text").map_or("", String::as_str), false, 500);
    let action = Action::parse(code, Some(&text)).ok_or_else(|| WebError::BadRequest("choose an action".into()))?;
    if matches!(action, Action::Reject(_) | Action::Fail(_) | Action::Cancel(_)) && text.is_empty() {
        problems.add("text", "Say why (the reason is required to reject, cancel or mark a task failed).");
    }
    if problems.is_empty() {
        let reader = Reader::new(&app, &session);
        let done = as_user(reader, move |reader| {
            match care::tasks::act(&reader.access, &id, version, &action) {
                Ok(_) => Ok(None),
                // A rule of the lifecycle: said at the top of the list, nothing written.
                Err(e @ (care::Error::Transition(_) | care::Error::Invalid(_))) => Ok(Some(e.to_string())),
                Err(e) => Err(care_error(e)),
            }
        })
        .await?;
        match done {
            None => {
                let target = format!("/app/tasks?list={}&done={code}", list.key());
                return Ok(Redirect::to(&target).into_response());
            }
            Some(why) => problems.add("tasks", why),
        }
    }
    let page = load(&app, &session, list).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&session, &page, None, &problems)).into_response())
}

/// The form of a new Task, for one patient.
struct NewTaskPage {
    banner: crate::layout::Banner,
    owners: Vec<(String, String)>,
}

fn render_new(
    session: &Session,
    page: &NewTaskPage,
    form: &HashMap<String, String>,
    problems: &FormProblems,
) -> Markup {
    let value = |name: &str| form.get(name).cloned().unwrap_or_default();
    let content = html! {
        h2 { "Add a task" }
        (problems.render())
        form method="post" action={ "/app/patients/" (page.banner.id) "/tasks" } {
            input type="hidden" name="csrf" value=(session.csrf);
            div class="field" { label for="description" { "What is to be done" } br;
                input id="description" name="description" required maxlength="300" value=(value("description")); }
            div class="field" { label for="owner" { "For" } br;
                select id="owner" name="owner" required {
                    @for (reference, label) in &page.owners { option value=(reference) selected[value("owner") == *reference] { (label) } }
                } }
            div class="field" { label for="due" { "Due (optional)" } br;
                input id="due" name="due" type="date" value=(value("due")); }
            div class="field" { label for="priority" { "Priority" } br;
                select id="priority" name="priority" {
                    @for priority in care::tasks::Priority::ALL {
                        option value=(priority.code()) selected[value("priority") == priority.code()] { (priority.code()) }
                    }
                } }
            button type="submit" { "Add the task" }
        }
    };
    crate::layout::chart_page(session, &page.banner, crate::layout::Tab::Summary, "Add a task", content)
}

async fn load_new(app: &WebApp, session: &Session, patient: &str) -> Result<Result<NewTaskPage, Markup>, WebError> {
    let id = patient.to_string();
    crate::pages::open_chart(app, session, patient, "task-new", move |reader, banner| {
        let owners = care::tasks::owner_choices(&reader.access, &id).map_err(care_error)?;
        Ok(NewTaskPage { banner, owners })
    })
    .await
}

/// `GET /app/patients/{id}/tasks/new`: the form of a new Task for the patient.
pub(crate) async fn new_task(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
) -> Result<Response, WebError> {
    Ok(match load_new(&app, &session, &patient).await? {
        Ok(page) => render_new(&session, &page, &HashMap::new(), &FormProblems::default()).into_response(),
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}

/// `POST /app/patients/{id}/tasks` with `description`, `owner`, `due`, `priority`: the Task
/// created (requested), then the creator's inbox.
pub(crate) async fn create_task(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    if !fhir::reference::is_id(&patient) {
        return Err(WebError::NotFound);
    }
    let field = |name: &str| form.get(name).map_or("", String::as_str);
    let mut problems = FormProblems::default();
    let description = plain_text(&mut problems, "description", "What is to be done", field("description"), true, 300);
    let owner = field("owner").trim().to_string();
    if !care::tasks::is_owner_reference(&owner) {
        problems.add("owner", "Choose whom the task is for.");
    }
    let due = Some(field("due").trim().to_string()).filter(|d| !d.is_empty());
    if due
        .as_deref()
        .is_some_and(|d| time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).is_err())
    {
        problems.add("due", "The due date must be a real date (YYYY-MM-DD).");
    }
    let priority = care::tasks::Priority::parse(field("priority")).unwrap_or(care::tasks::Priority::Routine);
    if problems.is_empty() {
        let task = care::tasks::NewTask {
            owner: Some(owner),
            due,
            priority,
            ..care::tasks::NewTask::new(&patient, &description)
        };
        let reader = Reader::new(&app, &session);
        let created = as_user(reader, move |reader| match care::tasks::create(&reader.access, &task) {
            Ok(_) => Ok(None),
            Err(care::Error::Invalid(why)) => Ok(Some(why)),
            Err(e) => Err(care_error(e)),
        })
        .await?;
        match created {
            None => return Ok(Redirect::to("/app/tasks?done=created").into_response()),
            Some(why) => problems.add("description", why),
        }
    }
    Ok(match load_new(&app, &session, &patient).await? {
        Ok(page) => (StatusCode::UNPROCESSABLE_ENTITY, render_new(&session, &page, &form, &problems)).into_response(),
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}
