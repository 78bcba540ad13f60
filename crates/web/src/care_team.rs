//! Care coordination pages of the app that read and write through `care`: the care team panel
//! of a chart (members across organizations, add a member, end a membership), the alert inbox
//! (unread count, mark read) and the list of patients discharged without follow-up. The pages
//! parse forms, call `care` as the user and render; the rules are the service's.

use crate::WebApp;
use crate::clinical::{Reader, as_user};
use crate::error::WebError;
use crate::layout::{self, Banner, Tab};
use crate::pages::open_chart;
use crate::session::Session;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use care::alerts::inbox::{self, Inbox};
use care::teams::{self, NewMember, Team};
use care::transitions::{self, Discharge};
use maud::{Markup, html};
use std::collections::HashMap;

impl From<care::Error> for WebError {
    fn from(error: care::Error) -> Self {
        use fhir::ErrorClass;
        match error {
            care::Error::Access(e) => e.into(),
            care::Error::Store(e) => e.into(),
            care::Error::Chart(chart::Error::Access(e)) => e.into(),
            other => match other.class() {
                ErrorClass::NotFound | ErrorClass::Gone => WebError::NotFound,
                ErrorClass::Forbidden | ErrorClass::Unauthenticated => WebError::Forbidden(other.to_string()),
                ErrorClass::Conflict | ErrorClass::PreconditionFailed => WebError::Changed,
                _ => WebError::BadRequest(other.to_string()),
            },
        }
    }
}

fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn team_page(session: &Session, banner: &Banner, teams: &[Team], problem: Option<&str>, done: Option<&str>) -> Markup {
    let base = format!("/app/patients/{}/care-team", banner.id);
    let content = html! {
        h2 { "Care team" }
        @if let Some(problem) = problem { div class="error" role="alert" id="care-team-problem" { p { "Nothing was saved: " (problem) } } }
        @if let Some(done) = done { p class="ok" role="status" { (done) } }
        @if teams.is_empty() { p class="muted" { "No care team yet. Add the first member below." } }
        @for team in teams {
            section class="card" aria-labelledby={ "team-" (team.id) } {
                h3 id={ "team-" (team.id) } { (team.name) " (" (team.status) ")" }
                table {
                    caption { "Members of " (team.name) }
                    thead { tr { th scope="col" { "Member" } th scope="col" { "Role" } th scope="col" { "Organization" } th scope="col" { "From" } th scope="col" { "Until" } th scope="col" { "Action" } } }
                    tbody { @for member in &team.members {
                        tr class=(if member.current { "" } else { "muted" }) {
                            td { (member.name) @if member.lead { " " strong { "(lead)" } } @if !member.current { " (not current)" } }
                            td { (member.role) }
                            td { (member.organization_name.as_deref().unwrap_or("—")) }
                            td { (member.start.as_deref().unwrap_or("—")) }
                            td { (member.end.as_deref().unwrap_or("open")) }
                            td { @if member.current && member.end.is_none() {
                                form method="post" action={ (base) "/end" } {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="team" value=(team.id);
                                    input type="hidden" name="version" value=(team.version);
                                    input type="hidden" name="index" value=(member.index);
                                    button type="submit" class="secondary" aria-label={ "End membership of " (member.name) } { "End membership today" }
                                }
                            } }
                        }
                    } }
                }
            }
        }
        section class="card" aria-labelledby="add-member" {
            h3 id="add-member" { "Add a member" }
            p { "A member added here can open this patient's record (a care relationship) until the end of their membership." }
            form method="post" action=(base) {
                input type="hidden" name="csrf" value=(session.csrf);
                label for="member" { "Member (Practitioner/…, PractitionerRole/… or Organization/…)" }
                input id="member" name="member" required;
                label for="role" { "Role on the team" }
                input id="role" name="role" required placeholder="Behavioral health clinician";
                label for="organization" { "Acts for (Organization/…, optional)" }
                input id="organization" name="organization";
                label for="start" { "From (optional, YYYY-MM-DD)" }
                input id="start" name="start" type="date";
                label for="end" { "Until (optional, YYYY-MM-DD)" }
                input id="end" name="end" type="date";
                label { input type="checkbox" name="lead" value="yes"; " Team lead" }
                button type="submit" { "Add member" }
            }
        }
    };
    layout::chart_page(session, banner, Tab::CareTeam, "Care team", content)
}

async fn show_team(
    app: &WebApp,
    session: &Session,
    patient: &str,
    problem: Option<String>,
    done: Option<&str>,
) -> Result<Response, WebError> {
    let id = patient.to_string();
    let loaded = open_chart(app, session, patient, "care team", move |reader, banner| {
        Ok((banner, teams::teams(&reader.access, &id)?))
    })
    .await?;
    Ok(match loaded {
        Ok((banner, teams)) => {
            let status = if problem.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
            (status, team_page(session, &banner, &teams, problem.as_deref(), done)).into_response()
        }
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}

/// `GET /app/patients/{id}/care-team[?done=added|ended]`.
pub(crate) async fn page(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let done = match query.get("done").map(String::as_str) {
        Some("added") => Some("Member added."),
        Some("ended") => Some("Membership ended."),
        _ => None,
    };
    show_team(&app, &session, &patient, None, done).await
}

/// `POST /app/patients/{id}/care-team`: adds a member.
pub(crate) async fn add(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let member = NewMember {
        reference: field(&form, "member").unwrap_or_default().to_string(),
        role: field(&form, "role").unwrap_or_default().to_string(),
        organization: field(&form, "organization").map(str::to_string),
        start: field(&form, "start").map(str::to_string),
        end: field(&form, "end").map(str::to_string),
        lead: field(&form, "lead").is_some(),
    };
    let reader = Reader::new(&app, &session);
    let id = patient.clone();
    let result = as_user(reader, move |reader| Ok(teams::add_member(&reader.access, &id, &member)?)).await;
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/app/patients/{patient}/care-team?done=added")).into_response()),
        Err(WebError::BadRequest(problem)) => show_team(&app, &session, &patient, Some(problem), None).await,
        Err(other) => Err(other),
    }
}

/// `POST /app/patients/{id}/care-team/end`: ends a membership today.
pub(crate) async fn end(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let team = field(&form, "team").ok_or_else(|| WebError::BadRequest("which team?".into()))?.to_string();
    let version = field(&form, "version").unwrap_or("1").to_string();
    let index: usize = field(&form, "index")
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| WebError::BadRequest("which member?".into()))?;
    let reader = Reader::new(&app, &session);
    as_user(reader, move |reader| Ok(teams::end_membership(&reader.access, &team, &version, index, None)?)).await?;
    Ok(Redirect::to(&format!("/app/patients/{patient}/care-team?done=ended")).into_response())
}

fn inbox_page(session: &Session, inbox: &Inbox, unread_only: bool) -> Markup {
    let content = html! {
        h2 { "Alerts" }
        p role="status" id="unread" { strong { (inbox.unread) } " unread" }
        p { @if unread_only { a href="/app/alerts" { "Show all alerts" } } @else { a href="/app/alerts?unread=1" { "Show unread only" } } }
        @if inbox.alerts.is_empty() { p class="muted" { "No alerts." } }
        @else {
            table {
                caption { "Alerts to you and your organizations, newest first" }
                thead { tr { th scope="col" { "Sent" } th scope="col" { "Priority" } th scope="col" { "Alert" } th scope="col" { "Patient" } th scope="col" { "Status" } } }
                tbody { @for alert in &inbox.alerts {
                    tr class=(if alert.read { "" } else { "unread" }) {
                        td { (alert.sent) }
                        td { @if alert.urgent { strong class="warn" { "URGENT" } } @else { "routine" } }
                        td { (alert.text) }
                        td { a href={ "/app/patients/" (alert.patient) } { "Open chart" } }
                        td { @if alert.read { "Read" } @else {
                            form method="post" action={ "/app/alerts/" (alert.id) "/read" } {
                                input type="hidden" name="csrf" value=(session.csrf);
                                input type="hidden" name="version" value=(alert.version);
                                button type="submit" class="secondary" { "Mark read" }
                            }
                        } }
                    }
                } }
            }
        }
    };
    layout::page(session, "Alerts", content)
}

/// `GET /app/alerts[?unread=1]`: the user's alert inbox.
pub(crate) async fn alerts(
    State(app): State<WebApp>,
    session: Session,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let unread_only = query.get("unread").is_some_and(|v| v == "1");
    let reader = Reader::new(&app, &session);
    let found = as_user(reader, move |reader| Ok(inbox::inbox(&reader.access, unread_only)?)).await?;
    Ok(inbox_page(&session, &found, unread_only).into_response())
}

/// `POST /app/alerts/{id}/read`.
pub(crate) async fn mark_read(
    State(app): State<WebApp>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let version = field(&form, "version").unwrap_or("1").to_string();
    let reader = Reader::new(&app, &session);
    as_user(reader, move |reader| Ok(inbox::mark_read(&reader.access, &id, &version)?)).await?;
    Ok(Redirect::to("/app/alerts").into_response())
}

fn discharges_page(session: &Session, rows: &[Discharge], days: i64) -> Markup {
    let content = html! {
        h2 { "Discharged without follow-up" }
        p { "Patients you may see who left the hospital or the emergency department in the last " (days) " days and whose follow-up visit is not done." }
        @if rows.is_empty() { p class="muted" { "None." } }
        @else {
            table {
                caption { "Discharges without a completed follow-up visit, oldest first" }
                thead { tr { th scope="col" { "Patient" } th scope="col" { "Setting" } th scope="col" { "Discharged" } th scope="col" { "Call" } th scope="col" { "Visit" } th scope="col" { "Visit due" } } }
                tbody { @for row in rows {
                    tr {
                        td { a href={ "/app/patients/" (row.patient) } { (row.patient_name) } }
                        td { (row.setting) }
                        td { (row.discharged) }
                        td { (row.call) }
                        td { (row.visit) }
                        td { (row.visit_due.as_deref().unwrap_or("—")) @if row.overdue { " " strong class="warn" { "OVERDUE" } } }
                    }
                } }
            }
        }
    };
    layout::page(session, "Discharged without follow-up", content)
}

/// `GET /app/discharges[?days=N]`.
pub(crate) async fn discharges(
    State(app): State<WebApp>,
    session: Session,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let days: i64 = match query.get("days") {
        Some(d) => d.parse().map_err(|_| WebError::BadRequest("days is a whole number".into()))?,
        None => 30,
    };
    let reader = Reader::new(&app, &session);
    let rows = as_user(reader, move |reader| Ok(transitions::without_follow_up(&reader.access, days)?)).await?;
    Ok(discharges_page(&session, &rows, days).into_response())
}
