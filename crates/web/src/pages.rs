//! Patient search, the chart summary, and break-the-glass.

use crate::WebApp;
use crate::clinical::{Reader, as_user, settle};
use crate::display;
use crate::error::{WebError, blocking};
use crate::layout::{self, Banner, Tab};
use crate::session::Session;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::Value;
use std::collections::HashMap;

/// `GET /app`: the patient search, or the sign-in for visitors.
pub(crate) async fn home(session: Result<Session, Response>) -> Response {
    match session {
        Ok(_) => Redirect::to("/app/patients").into_response(),
        Err(_) => Redirect::to("/app/sign-in").into_response(),
    }
}

/// A patient in a list.
struct PatientRow {
    id: String,
    name: String,
    birth_date: String,
    sex: String,
    mrn: String,
}

fn row(patient: &Value) -> PatientRow {
    PatientRow {
        id: patient.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
        name: display::person_name(patient),
        birth_date: patient.get("birthDate").and_then(Value::as_str).unwrap_or("").to_string(),
        sex: patient.get("gender").and_then(Value::as_str).unwrap_or("").to_string(),
        mrn: display::mrn(patient).unwrap_or_default(),
    }
}

fn patient_table(rows: &[PatientRow]) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Born" } th scope="col" { "Sex" } th scope="col" { "MRN" } } }
            tbody { @for r in rows {
                tr { td { a href={ "/app/patients/" (r.id) } { (r.name) } } td { (r.birth_date) } td { (r.sex) } td { (r.mrn) } }
            } }
        }
    }
}

/// `GET /app/patients?name=&birthdate=&identifier=`: search, and the recently opened.
pub(crate) async fn patient_search(
    State(app): State<WebApp>,
    session: Session,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Markup, WebError> {
    let name = query.get("name").map(|s| s.trim().to_string()).unwrap_or_default();
    let birthdate = query.get("birthdate").map(|s| s.trim().to_string()).unwrap_or_default();
    let identifier = query.get("identifier").map(|s| s.trim().to_string()).unwrap_or_default();
    let mut problems = Vec::new();
    if !birthdate.is_empty()
        && time::Date::parse(&birthdate, time::macros::format_description!("[year]-[month]-[day]")).is_err()
    {
        problems.push("Date of birth must be a real date (YYYY-MM-DD).".to_string());
    }
    if name.len() > 200 || identifier.len() > 200 {
        problems.push("Search terms are limited to 200 characters.".to_string());
    }
    let searched = !(name.is_empty() && birthdate.is_empty() && identifier.is_empty());
    let reader = Reader::new(&app, &session);
    let recent_ids = app.recent(&session.user_id());
    let (n, b, i) = (name.clone(), birthdate.clone(), identifier.clone());
    let run = searched && problems.is_empty();
    let (found, recent) = as_user(reader, move |reader| {
        let mut found = Vec::new();
        if run {
            let mut pairs = Vec::new();
            if !n.is_empty() {
                pairs.push(("name", n));
            }
            if !b.is_empty() {
                pairs.push(("birthdate", b));
            }
            if !i.is_empty() {
                pairs.push(("identifier", i));
            }
            pairs.push(("_sort", "family".to_string()));
            found = reader.search("Patient", &pairs, 50)?.iter().map(row).collect();
        }
        let mut recent = Vec::new();
        for id in recent_ids {
            if let Ok(patient) = reader.read("Patient", &id) {
                recent.push(row(&patient));
            }
        }
        Ok((found, recent))
    })
    .await?;
    Ok(layout::page(
        &session,
        "Patients",
        html! {
            h1 { "Find a patient" }
            form class="filters" method="get" action="/app/patients" role="search" {
                div class="field" { label for="name" { "Name" } br; input id="name" name="name" value=(name); }
                div class="field" { label for="birthdate" { "Date of birth" } br; input id="birthdate" name="birthdate" type="date" value=(birthdate); }
                div class="field" { label for="identifier" { "MRN or identifier" } br; input id="identifier" name="identifier" value=(identifier); }
                button type="submit" { "Search" }
            }
            @for problem in &problems { p class="error" role="alert" { (problem) } }
            @if searched && problems.is_empty() {
                h2 { "Results" }
                @if found.is_empty() { p { "No patient you may see matches." } } @else { (patient_table(&found)) }
            }
            h2 { "Recent patients" }
            @if recent.is_empty() { p class="muted" { "None yet." } } @else { (patient_table(&recent)) }
        },
    ))
}

/// What a section says when it has nothing to show.
fn empty_section<T>(found: &Option<Vec<T>>, none: &str) -> Markup {
    html! {
        @match found {
            None => { p class="muted" { "Not shown to your role." } }
            Some(list) if list.is_empty() => { p class="muted" { (none) } }
            Some(_) => {}
        }
    }
}

/// The page for a patient the user may not open: why, and break-the-glass for clinicians.
fn closed_chart(session: &Session, patient: &str) -> Markup {
    layout::page(
        session,
        "Not in your care",
        html! {
            h1 { "This patient is not in your care" }
            p { "You have no care relationship with this patient in your organizations, or a consent withholds the record." }
            form method="post" action={ "/app/patients/" (patient) "/break-glass" } {
                input type="hidden" name="csrf" value=(session.csrf);
                fieldset {
                    legend { "Emergency access (break-the-glass)" }
                    p { "Access lasts one hour, is flagged on every page, and every view is audited with your reason." }
                    div class="field" { label for="reason" { "Reason" } br; textarea id="reason" name="reason" required {} }
                    button type="submit" { "Open the record in an emergency" }
                }
            }
        },
    )
}

/// Opens a chart: the decision, the banner and the audit entry of the view. `Err` carries
/// the page to show instead.
pub(crate) async fn open_chart<T: Send + 'static>(
    app: &WebApp,
    session: &Session,
    patient: &str,
    page: &'static str,
    load: impl FnOnce(&Reader, Banner) -> Result<T, WebError> + Send + 'static,
) -> Result<Result<T, Markup>, WebError> {
    let reader = Reader::new(app, session);
    let access = reader.access.clone();
    let id = patient.to_string();
    let answer = blocking(move || {
        if !fhir::reference::is_id(&id) {
            return Err(WebError::NotFound);
        }
        // Does the patient exist at all? (Outside the reach the page says so, unlike the API:
        // staff need to know to break the glass.)
        if !reader.may_open(&id)? {
            reader.access.exists("Patient", &id)?;
            reader.viewed(&id, page, store::audit::Outcome::MinorFailure);
            return Ok(Err(()));
        }
        let banner = Banner::load(&reader, &id)?;
        let loaded = load(&reader, banner)?;
        reader.viewed(&id, page, store::audit::Outcome::Success);
        Ok(Ok(loaded))
    });
    // What the page read is audited before anything of it is shown, even when it failed.
    let answer = answer.await;
    settle(&access).await?;
    let loaded = answer?;
    Ok(match loaded {
        Ok(loaded) => {
            app.remember_recent(&session.user_id(), patient);
            Ok(loaded)
        }
        Err(()) => Err(closed_chart(session, patient)),
    })
}

/// The chart's documents and the items waiting for reconciliation: the CCD's download, the
/// referral note's form (and, after it, the note kept), the link to reconciliation.
fn documents_card(session: &Session, patient: &str, waiting: usize, may_file: bool, sent: Option<&str>) -> Markup {
    let base = format!("/app/patients/{patient}");
    html! {
        @if let Some(reference) = sent {
            div class="ok" role="status" id="referral-sent" {
                p { "A referral note was made of the record and kept on it as an outgoing document. "
                    a href={ (base) "/documents/" (reference) } { "Download the referral note" } }
                p { "Sending it to another organization arrives with the node-to-node exchange, which is not yet built: for now, download it and send it yourself." }
            }
        }
        @if waiting > 0 {
            p class="reconcile-link" {
                a href={ (base) "/reconcile" } {
                    (waiting) @if waiting == 1 { " incoming item" } @else { " incoming items" } " to reconcile"
                }
            }
        }
        section class="card documents" aria-labelledby="h-documents" {
            h2 id="h-documents" { "Documents" }
            p { a href={ (base) "/ccd" } download { "Download CCD" } span class="muted" { " (C-CDA R2.1 Continuity of Care Document, XML)" } }
            @if may_file {
                form method="post" action={ (base) "/referral-document" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button type="submit" class="secondary" { "Send referral document" }
                    span class="muted" { " Makes a referral note and keeps it on the record; sending it to another organization is not yet built." }
                }
            } @else {
                p class="muted" { "Your role may not file documents on the record, so referral documents are not offered." }
            }
        }
    }
}

/// `GET /app/patients/{id}[?sent=DocumentReference id]`: the summary.
pub(crate) async fn summary(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let id = patient.clone();
    let loaded = open_chart(&app, &session, &patient, "summary", move |reader, banner| {
        let summary = chart::summary::summary(&reader.access, &id, display::today())?;
        let waiting = chart::reconcile::queue(&reader.access, &id)?.len();
        let may_file = crate::documents::may_file(reader).is_ok();
        Ok((banner, summary, waiting, may_file))
    })
    .await?;
    let (banner, s, waiting, may_file) = match loaded {
        Ok(s) => s,
        Err(closed) => return Ok((axum::http::StatusCode::FORBIDDEN, closed).into_response()),
    };
    let sent = query.get("sent").map(String::as_str).filter(|r| fhir::reference::is_id(r));
    let content = html! {
        (documents_card(&session, &patient, waiting, may_file, sent))
        div class="grid" {
            section class="card" aria-labelledby="h-problems" {
                h2 id="h-problems" { "Active problems" }
                (empty_section(&s.problems, "None recorded."))
                ul { @for c in s.problems.iter().flatten() { li { (c.name)
                    @if let Some(onset) = &c.onset { span class="muted" { " since " (display::day(onset)) } } } } }
            }
            section class="card" aria-labelledby="h-meds" {
                h2 id="h-meds" { "Active medications" }
                (empty_section(&s.medications, "None recorded."))
                ul { @for m in s.medications.iter().flatten() { li { (m.name)
                    @if let Some(dose) = &m.instructions { span class="muted" { " — " (dose) } } } } }
            }
            section class="card" aria-labelledby="h-vitals" {
                h2 id="h-vitals" { "Latest vitals" }
                (empty_section(&s.vitals, "None recorded."))
                table { tbody { @for v in s.vitals.iter().flatten() { tr {
                    th scope="row" { (v.name) }
                    td { (v.value) }
                    td class="muted" { (v.when.as_deref().map(display::day).unwrap_or_default()) }
                } } } }
            }
            section class="card" aria-labelledby="h-results" {
                h2 id="h-results" { "Recent results" }
                (empty_section(&s.results, "None recorded."))
                table { tbody { @for r in s.results.iter().flatten() {
                    tr {
                        th scope="row" { (r.name) }
                        td class=[r.flag.map(|_| "abnormal")] { (r.value) @if let Some(f) = r.flag { " " abbr title=(flag_meaning(f)) { "(" (f.code()) ")" } } }
                        td class="muted" { (r.when.as_deref().map(display::day).unwrap_or_default()) }
                    }
                } } }
            }
            section class="card" aria-labelledby="h-imm" {
                h2 id="h-imm" { "Immunizations" }
                (empty_section(&s.immunizations, "None recorded."))
                ul { @for i in s.immunizations.iter().flatten() { li { (i.vaccine)
                    span class="muted" { " " (i.when.as_deref().map(display::day).unwrap_or_default()) } } } }
            }
            section class="card" aria-labelledby="h-appt" {
                h2 id="h-appt" { "Upcoming appointments" }
                (empty_section(&s.appointments, "None booked."))
                ul { @for a in s.appointments.iter().flatten() { li {
                    (a.start.as_deref().map(display::day).unwrap_or_default()) " "
                    (a.description) } } }
            }
            section class="card" aria-labelledby="h-tasks" {
                h2 id="h-tasks" { "Open tasks and referrals" }
                @match (&s.tasks, &s.referrals) {
                    (None, None) => { p class="muted" { "Not shown to your role." } }
                    (t, r) if t.iter().chain(r.iter()).all(Vec::is_empty) => { p class="muted" { "None open." } }
                    _ => {}
                }
                ul {
                    @for t in s.tasks.iter().flatten() { li { "Task: " (t.description)
                        span class="muted" { " (" (t.status) ")" } } }
                    @for r in s.referrals.iter().flatten() { li { "Referral / order: " (r.description)
                        span class="muted" { " (" (r.status) ")" } } }
                }
                p { a href={ "/app/patients/" (banner.id) "/tasks/new" } { "Add a task" } " · "
                    a href={ "/app/patients/" (banner.id) "/referrals/new" } { "Send a referral" } }
            }
        }
    };
    Ok(layout::chart_page(&session, &banner, Tab::Summary, "Summary", content).into_response())
}

use chart::summary::AbnormalFlag;

/// What an abnormal flag means, spelled out for the flag's tooltip and screen readers.
fn flag_meaning(flag: AbnormalFlag) -> &'static str {
    match flag {
        AbnormalFlag::High => "high: above the reference range",
        AbnormalFlag::Low => "low: below the reference range",
        AbnormalFlag::Abnormal => "abnormal",
    }
}

/// `POST /app/patients/{id}/break-glass`: emergency access with a stated reason.
pub(crate) async fn break_glass(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let reason = form.get("reason").map(|r| r.trim().to_string()).unwrap_or_default();
    if reason.len() < 4 {
        return Ok((axum::http::StatusCode::BAD_REQUEST, closed_chart(&session, &patient)).into_response());
    }
    let reader = Reader::new(&app, &session);
    let access = reader.access.clone();
    let id = patient.clone();
    let opened = blocking(move || Ok(reader.access.break_glass(&id, &reason)?)).await;
    settle(&access).await?;
    opened?;
    Ok(Redirect::to(&format!("/app/patients/{patient}")).into_response())
}
