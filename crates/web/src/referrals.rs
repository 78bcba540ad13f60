//! The referral dashboard: every referral the user's organizations sent or received that
//! they may see, with its age in days and its state (overdue ones marked in words), filtered
//! by state; and a referral's page with the steps it went through, its reports and follow-up
//! tasks, and the steps the user's side may take next. The states and steps are
//! [`care::referrals`]'s; the pages show them and pass the steps on with `If-Match`.

use crate::WebApp;
use crate::clinical::{Reader, as_user};
use crate::error::WebError;
use crate::forms::{FormProblems, plain_text};
use crate::layout;
use crate::session::Session;
use crate::tasks::{care_error, overdue_marker, task_table};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use care::referrals::{Detail, Referral, State as ReferralState, Step as ReferralStep};
use maud::{Markup, html};
use std::collections::HashMap;

fn organization(side: &Option<(String, String)>) -> &str {
    side.as_ref().map_or("—", |(_, name)| name.as_str())
}

fn render_dashboard(
    session: &Session,
    referrals: &[Referral],
    only: Option<ReferralState>,
    overdue_days: u32,
) -> Markup {
    let overdue = referrals.iter().filter(|r| r.overdue).count();
    let content = html! {
        h1 { "Referrals" }
        p { "Referrals your organizations sent or received, newest first. A referral still open after "
            (overdue_days) " days is marked OVERDUE and raises a follow-up task for the referring organization." }
        form class="filters" method="get" action="/app/referrals" {
            div class="field" {
                label for="state" { "State" } br;
                select id="state" name="state" {
                    option value="" selected[only.is_none()] { "Any" }
                    @for state in ReferralState::ALL {
                        option value=(state.code()) selected[only == Some(state)] { (state.label()) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        h2 { (referrals.len()) " referrals" @if overdue > 0 { ", " (overdue) " overdue" } }
        @if referrals.is_empty() { p class="muted" { "No referral you may see is in this state." } } @else {
            table {
                thead { tr {
                    th scope="col" { "Patient" } th scope="col" { "Referred to" } th scope="col" { "From" }
                    th scope="col" { "To" } th scope="col" { "Sent" } th scope="col" { "Age (days)" } th scope="col" { "State" }
                } }
                tbody { @for r in referrals {
                    tr {
                        td { a href={ "/app/patients/" (r.patient) } { (r.patient_name.as_deref().unwrap_or("(patient)")) } }
                        th scope="row" { a href={ "/app/referrals/" (r.id) } { (r.service) } }
                        td { (organization(&r.from)) }
                        td { (organization(&r.to)) }
                        td { (r.sent.as_deref().map(crate::display::day).unwrap_or_default()) }
                        td { (r.age_days) (overdue_marker(r.overdue)) }
                        td { (r.state.label()) }
                    }
                } }
            }
        }
    };
    layout::page(session, "Referrals", content)
}

/// `GET /app/referrals[?state=CODE]`.
pub(crate) async fn dashboard(
    State(app): State<WebApp>,
    session: Session,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let only = match query.get("state").map(String::as_str) {
        None | Some("") => None,
        Some(code) => Some(ReferralState::parse(code).ok_or_else(|| WebError::BadRequest("no such state".into()))?),
    };
    let days = app.referral_overdue_days();
    let reader = Reader::new(&app, &session);
    let referrals = as_user(reader, move |reader| {
        care::referrals::dashboard(&reader.access, only, days, time::OffsetDateTime::now_utc()).map_err(care_error)
    })
    .await?;
    Ok(render_dashboard(&session, &referrals, only, days).into_response())
}

/// What a step's button says.
fn step_label(code: &str) -> &'static str {
    match code {
        "receive" => "Mark received",
        "accept" => "Accept",
        "decline" => "Decline",
        "schedule" => "Mark scheduled",
        "seen" => "Mark seen",
        "cancel" => "Cancel the referral",
        _ => "Record",
    }
}

/// What a step recorded, for the notice after it.
fn step_done(code: &str) -> Option<&'static str> {
    match code {
        "receive" => Some("Recorded: received."),
        "accept" => Some("Recorded: accepted."),
        "decline" => Some("Recorded: declined, with your reason."),
        "schedule" => Some("Recorded: scheduled."),
        "seen" => Some("Recorded: seen."),
        "cancel" => Some("Recorded: cancelled, with your reason."),
        "sent" => Some("Sent: the receiving organization has it on its work list."),
        _ => None,
    }
}

fn render_detail(
    session: &Session,
    detail: &Detail,
    steps: &[(&'static str, bool)],
    done: Option<&str>,
    problems: &FormProblems,
) -> Markup {
    let r = &detail.referral;
    let back = format!("/app/referrals/{}", r.id);
    let content = html! {
        p { a href="/app/referrals" { "All referrals" } }
        h1 { "Referral to " (r.service) }
        (problems.render())
        @if let Some(text) = done.and_then(step_done) { p class="ok" role="status" { (text) } }
        dl class="record" {
            dt { "Patient" } dd { a href={ "/app/patients/" (r.patient) } { (r.patient_name.as_deref().unwrap_or("(patient)")) } }
            dt { "From" } dd { (organization(&r.from)) }
            dt { "To" } dd { (organization(&r.to)) }
            @if let Some(reason) = &r.reason { dt { "Reason" } dd { (reason) } }
            dt { "Sent" } dd { (r.sent.as_deref().map(crate::display::day).unwrap_or_default()) }
            dt { "Age" } dd { (r.age_days) " days" (overdue_marker(r.overdue)) }
            dt { "State" } dd { strong { (r.state.label()) } @if let Some(why) = &r.status_reason { " — " (why) } }
        }
        h2 { "Steps" }
        ol class="steps" {
            @for step in &detail.steps {
                li { strong { (step.state.label()) }
                    @if let Some(at) = &step.at { " " time datetime=(at) { (crate::display::day(at)) } }
                    @if let Some(by) = &step.by { span class="muted" { " (" (by) ")" } } }
            }
        }
        @if !detail.reports.is_empty() {
            h2 { "Reports" }
            ul { @for (report, at) in &detail.reports { li { (report) @if let Some(at) = at { " — " (crate::display::day(at)) } } } }
        }
        @if let Some(task) = &r.task {
            @if !steps.is_empty() {
                h2 { "Next steps" }
                div class="decisions" {
                    @for (code, reason) in steps.iter().copied() {
                        @let field = format!("reason-{code}");
                        form method="post" action={ "/app/referrals/" (r.id) "/steps" } {
                            input type="hidden" name="csrf" value=(session.csrf);
                            input type="hidden" name="task" value=(task);
                            input type="hidden" name="version" value=(r.task_version);
                            input type="hidden" name="step" value=(code);
                            @if reason { label for=(field) { "Reason" } " " input id=(field) name="reason" required maxlength="500"; " " }
                            button type="submit" class=(if reason { "secondary" } else { "" }) { (step_label(code)) }
                        }
                    }
                }
            }
        }
        @if !detail.follow_ups.is_empty() {
            h2 { "Follow-up tasks" }
            (task_table(session, &detail.follow_ups, &back))
        }
    };
    layout::page(session, &format!("Referral to {}", r.service), content)
}

type Shown = (Detail, Vec<(&'static str, bool)>);

async fn load_detail(app: &WebApp, session: &Session, id: String) -> Result<Shown, WebError> {
    let days = app.referral_overdue_days();
    let reader = Reader::new(app, session);
    as_user(reader, move |reader| {
        let detail =
            care::referrals::detail(&reader.access, &id, days, time::OffsetDateTime::now_utc()).map_err(care_error)?;
        let steps = care::referrals::next_steps(&reader.access, &detail.referral);
        Ok((detail, steps))
    })
    .await
}

/// `GET /app/referrals/{id}[?done=STEP]`: one referral (by its ServiceRequest's id).
pub(crate) async fn detail(
    State(app): State<WebApp>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    if !fhir::reference::is_id(&id) {
        return Err(WebError::NotFound);
    }
    let (detail, steps) = load_detail(&app, &session, id).await?;
    let done = query.get("done").map(String::as_str);
    Ok(render_detail(&session, &detail, &steps, done, &FormProblems::default()).into_response())
}

/// `POST /app/referrals/{id}/steps` with `task`, `version`, `step` and (to decline or cancel)
/// `reason`: the step, then back to the referral.
pub(crate) async fn take_step(
    State(app): State<WebApp>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let task = form.get("task").cloned().unwrap_or_default();
    if !fhir::reference::is_id(&id) || !fhir::reference::is_id(&task) {
        return Err(WebError::NotFound);
    }
    let version: u64 = form
        .get("version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| WebError::BadRequest("the form lacks the version it was shown at; reload the page".into()))?;
    let code = form.get("step").cloned().unwrap_or_default();
    let mut problems = FormProblems::default();
    let reason =
        plain_text(&mut problems, "reason", "The reason", form.get("reason").map_or("", String::as_str), false, 500);
    let step = ReferralStep::parse(&code, Some(&reason)).ok_or_else(|| WebError::BadRequest("choose a step".into()))?;
    if matches!(step, ReferralStep::Decline(_) | ReferralStep::Cancel(_)) && reason.is_empty() {
        problems.add("reason", "Say why (a reason is required to decline or cancel a referral).");
    }
    if problems.is_empty() {
        let reader = Reader::new(&app, &session);
        let refused =
            as_user(reader, move |reader| match care::referrals::step(&reader.access, &task, version, &step) {
                Ok(_) => Ok(None),
                Err(e @ (care::Error::Transition(_) | care::Error::Invalid(_))) => Ok(Some(e.to_string())),
                Err(e) => Err(care_error(e)),
            })
            .await?;
        match refused {
            None => return Ok(Redirect::to(&format!("/app/referrals/{id}?done={code}")).into_response()),
            Some(why) => problems.add("steps", why),
        }
    }
    let (detail, steps) = load_detail(&app, &session, id).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, render_detail(&session, &detail, &steps, None, &problems)).into_response())
}

/// The form of a new referral, for one patient.
struct NewReferralPage {
    banner: crate::layout::Banner,
    from: Vec<(String, String)>,
    to: Vec<(String, String)>,
}

fn render_new(
    session: &Session,
    page: &NewReferralPage,
    form: &HashMap<String, String>,
    problems: &FormProblems,
) -> Markup {
    let value = |name: &str| form.get(name).cloned().unwrap_or_default();
    let content = html! {
        h2 { "Send a referral" }
        (problems.render())
        @if page.from.is_empty() {
            p class="error" role="alert" { "You belong to no organization, so you cannot refer on behalf of one." }
        } @else {
            form method="post" action={ "/app/patients/" (page.banner.id) "/referrals" } {
                input type="hidden" name="csrf" value=(session.csrf);
                div class="field" { label for="service" { "Referred to (specialty or service)" } br;
                    input id="service" name="service" required maxlength="200" value=(value("service")); }
                div class="field" { label for="snomed" { "SNOMED CT code (optional)" } br;
                    input id="snomed" name="snomed" inputmode="numeric" maxlength="18" value=(value("snomed")); }
                div class="field" { label for="reason" { "Reason (optional)" } br;
                    textarea id="reason" name="reason" maxlength="500" { (value("reason")) } }
                div class="field" { label for="from" { "Referring organization" } br;
                    select id="from" name="from" { @for (id, name) in &page.from { option value=(id) selected[value("from") == *id] { (name) } } } }
                div class="field" { label for="to" { "Receiving organization" } br;
                    select id="to" name="to" required {
                        option value="" { "Choose…" }
                        @for (id, name) in &page.to { option value=(id) selected[value("to") == *id] { (name) } }
                    } }
                button type="submit" { "Send the referral" }
            }
        }
    };
    crate::layout::chart_page(session, &page.banner, crate::layout::Tab::Summary, "Send a referral", content)
}

async fn load_new(app: &WebApp, session: &Session, patient: &str) -> Result<Result<NewReferralPage, Markup>, WebError> {
    crate::pages::open_chart(app, session, patient, "referral-new", move |reader, banner| {
        let parties = care::referrals::parties(&reader.access).map_err(care_error)?;
        Ok(NewReferralPage { banner, from: parties.from, to: parties.to })
    })
    .await
}

/// `GET /app/patients/{id}/referrals/new`: the form of a new referral.
pub(crate) async fn new_referral(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
) -> Result<Response, WebError> {
    Ok(match load_new(&app, &session, &patient).await? {
        Ok(page) => render_new(&session, &page, &HashMap::new(), &FormProblems::default()).into_response(),
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}

/// `POST /app/patients/{id}/referrals` with `service`, `snomed`, `reason`, `from`, `to`:
/// the referral sent (its ServiceRequest and Task), then its page.
pub(crate) async fn send_referral(
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
    let service = plain_text(&mut problems, "service", "The specialty or service", field("service"), true, 200);
    let reason = plain_text(&mut problems, "reason", "The reason", field("reason"), false, 500);
    let snomed = field("snomed").trim().to_string();
    if !snomed.is_empty() && (!(6..=18).contains(&snomed.len()) || !snomed.chars().all(|c| c.is_ascii_digit())) {
        problems.add("snomed", "A SNOMED CT code is 6 to 18 digits.");
    }
    let to = field("to").trim().to_string();
    if !fhir::reference::is_id(&to) {
        problems.add("to", "Choose the receiving organization.");
    }
    let from = Some(field("from").trim().to_string()).filter(|f| !f.is_empty());
    if problems.is_empty() {
        let referral = care::referrals::NewReferral {
            patient: patient.clone(),
            service,
            snomed: Some(snomed).filter(|s| !s.is_empty()),
            reason: Some(reason).filter(|r| !r.is_empty()),
            from,
            to,
        };
        let reader = Reader::new(&app, &session);
        let sent = as_user(reader, move |reader| match care::referrals::send(&reader.access, &referral) {
            Ok(sent) => Ok(Ok(sent)),
            Err(care::Error::Invalid(why)) => Ok(Err(why)),
            Err(e) => Err(care_error(e)),
        })
        .await?;
        match sent {
            Ok(sent) => {
                return Ok(Redirect::to(&format!("/app/referrals/{}?done=sent", sent.service_request)).into_response());
            }
            Err(why) => problems.add("service", why),
        }
    }
    Ok(match load_new(&app, &session, &patient).await? {
        Ok(page) => (StatusCode::UNPROCESSABLE_ENTITY, render_new(&session, &page, &form, &problems)).into_response(),
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}
