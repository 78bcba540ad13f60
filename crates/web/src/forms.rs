//! Form checks shared by every form, vitals entry, and the problem, allergy and medication
//! lists (add, resolve, inactivate, discontinue with a reason). Bad input is answered on the
//! form with what to fix, and nothing is stored.

use crate::WebApp;
use crate::clinical::{Reader, as_user};
use crate::display;
use crate::error::WebError;
use crate::layout::{self, Banner, Tab};
use crate::pages::open_chart;
use crate::session::Session;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chart::lists::{Criticality, NewAllergy};
use chart::vitals::{BloodPressure, Vital, VitalSigns};
use maud::{Markup, html};
use std::collections::HashMap;

/// What is wrong with a submitted form, field by field.
#[derive(Default)]
pub(crate) struct FormProblems {
    problems: Vec<(String, String)>,
}

impl FormProblems {
    pub(crate) fn add(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push((field.to_string(), message.into()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// The summary at the top of the form, each problem linking to its field.
    pub(crate) fn render(&self) -> Markup {
        html! {
            @if !self.problems.is_empty() {
                div class="error" role="alert" id="form-problems" {
                    p { "Nothing was saved. Please fix:" }
                    ul { @for (field, message) in &self.problems { li { a href={ "#" (field) } { (message) } } } }
                }
            }
        }
    }
}

/// Whether text holds markup (`<tag`, `</tag`, `<!`): the forms take plain text only.
fn has_markup(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .windows(2)
        .any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || w[1] == b'/' || w[1] == b'!' || w[1] == b'?'))
}

/// A plain-text field: trimmed, within `max` characters, without markup or control
/// characters, present when `required`.
pub(crate) fn plain_text(
    problems: &mut FormProblems,
    field: &str,
    label: &str,
    value: &str,
    required: bool,
    max: usize,
) -> String {
    let value = value.trim();
    if required && value.is_empty() {
        problems.add(field, format!("{label} is required."));
    } else if value.chars().count() > max {
        problems.add(field, format!("{label} is longer than {max} characters."));
    } else if has_markup(value) {
        problems.add(field, format!("{label} must be plain text: remove the markup (such as <script>)."));
    } else if value.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
        problems.add(field, format!("{label} contains characters that cannot be stored."));
    }
    value.replace("\r\n", "\n")
}

/// A date field (`YYYY-MM-DD`), a real date, not in the future unless allowed.
fn date_field(problems: &mut FormProblems, field: &str, label: &str, value: &str, required: bool) -> Option<String> {
    let value = value.trim();
    if value.is_empty() {
        if required {
            problems.add(field, format!("{label} is required."));
        }
        return None;
    }
    match time::Date::parse(value, time::macros::format_description!("[year]-[month]-[day]")) {
        Ok(date) if date > display::today() => {
            problems.add(field, format!("{label} cannot be in the future."));
            None
        }
        Ok(date) if date.year() < 1900 => {
            problems.add(field, format!("{label} is before 1900."));
            None
        }
        Ok(_) => Some(value.to_string()),
        Err(_) => {
            problems.add(field, format!("{label} must be a real date (YYYY-MM-DD)."));
            None
        }
    }
}

/// A number within `range`, optional unless `required`.
fn number_field(
    problems: &mut FormProblems,
    field: &str,
    label: &str,
    value: &str,
    range: (f64, f64),
    required: bool,
) -> Option<f64> {
    let value = value.trim();
    if value.is_empty() {
        if required {
            problems.add(field, format!("{label} is required."));
        }
        return None;
    }
    match value.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= range.0 && n <= range.1 => Some(n),
        Ok(_) => {
            problems.add(field, format!("{label} must be between {} and {}.", range.0, range.1));
            None
        }
        Err(_) => {
            problems.add(field, format!("{label} must be a number."));
            None
        }
    }
}

fn field(form: &HashMap<String, String>, name: &str) -> String {
    form.get(name).cloned().unwrap_or_default()
}

/// The form's field name and label of a vital sign.
fn vital_field(vital: Vital) -> (&'static str, &'static str) {
    match vital {
        Vital::Weight => ("weight", "Weight (kg)"),
        Vital::Height => ("height", "Height (cm)"),
        Vital::HeartRate => ("heart_rate", "Heart rate (/min)"),
        Vital::RespiratoryRate => ("resp_rate", "Respiratory rate (/min)"),
        Vital::Temperature => ("temperature", "Temperature (°C)"),
        Vital::OxygenSaturation => ("spo2", "Oxygen saturation (%)"),
    }
}

fn vitals_page(
    session: &Session,
    banner: &Banner,
    form: &HashMap<String, String>,
    problems: &FormProblems,
    saved: bool,
) -> Markup {
    let content = html! {
        h2 { "Record vitals" }
        @if saved { p class="ok" role="status" { "Vitals saved." } }
        (problems.render())
        form method="post" novalidate {
            input type="hidden" name="csrf" value=(session.csrf);
            fieldset {
                legend { "Blood pressure (mm[Hg])" }
                div class="field" { label for="systolic" { "Systolic" } br; input id="systolic" name="systolic" inputmode="decimal" value=(field(form, "systolic")); }
                div class="field" { label for="diastolic" { "Diastolic" } br; input id="diastolic" name="diastolic" inputmode="decimal" value=(field(form, "diastolic")); }
            }
            @for (name, label) in Vital::ALL.map(vital_field) {
                div class="field" { label for=(name) { (label) } br; input id=(name) name=(name) inputmode="decimal" value=(field(form, name)); }
            }
            button type="submit" { "Save vitals" }
        }
    };
    layout::chart_page(session, banner, Tab::Vitals, "Vitals", content)
}

/// The banner of a chart whose vitals the user may record (else the closed chart, or 403).
async fn vitals_chart(app: &WebApp, session: &Session, patient: &str) -> Result<Result<Banner, Markup>, WebError> {
    open_chart(app, session, patient, "vitals-form", |reader, banner| {
        reader.may_create("Observation")?;
        Ok(banner)
    })
    .await
}

/// `GET /app/patients/{id}/vitals`.
pub(crate) async fn vitals_form(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let banner = match vitals_chart(&app, &session, &patient).await? {
        Ok(b) => b,
        Err(closed) => return Ok((StatusCode::FORBIDDEN, closed).into_response()),
    };
    Ok(vitals_page(&session, &banner, &HashMap::new(), &FormProblems::default(), query.contains_key("saved"))
        .into_response())
}

/// `POST /app/patients/{id}/vitals`: the values entered, as vital-sign Observations written
/// in one transaction (a BMI is added when weight and height are both given).
pub(crate) async fn record_vitals(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let banner = match vitals_chart(&app, &session, &patient).await? {
        Ok(b) => b,
        Err(closed) => return Ok((StatusCode::FORBIDDEN, closed).into_response()),
    };
    let mut problems = FormProblems::default();
    let systolic = number_field(
        &mut problems,
        "systolic",
        "Systolic",
        &field(&form, "systolic"),
        BloodPressure::SYSTOLIC_RANGE,
        false,
    );
    let diastolic = number_field(
        &mut problems,
        "diastolic",
        "Diastolic",
        &field(&form, "diastolic"),
        BloodPressure::DIASTOLIC_RANGE,
        false,
    );
    if systolic.is_some() != diastolic.is_some() {
        problems.add("systolic", "Blood pressure needs both systolic and diastolic.");
    }
    if let (Some(s), Some(d)) = (systolic, diastolic)
        && d >= s
    {
        problems.add("diastolic", "Diastolic must be lower than systolic.");
    }
    let measured: Vec<(Vital, f64)> = Vital::ALL
        .into_iter()
        .filter_map(|v| {
            let (name, label) = vital_field(v);
            number_field(&mut problems, name, label, &field(&form, name), v.plausible_range(), false).map(|n| (v, n))
        })
        .collect();
    let blood_pressure = match (systolic, diastolic) {
        (Some(systolic), Some(diastolic)) => Some(BloodPressure { systolic, diastolic }),
        _ => None,
    };
    let signs = VitalSigns { blood_pressure, measured };
    if problems.is_empty() && signs.is_empty() {
        problems.add("systolic", "Enter at least one vital sign.");
    }
    if !problems.is_empty() {
        return Ok(
            (StatusCode::UNPROCESSABLE_ENTITY, vitals_page(&session, &banner, &form, &problems, false)).into_response()
        );
    }
    let reader = Reader::new(&app, &session);
    let p = patient.clone();
    as_user(reader, move |reader| Ok(chart::vitals::record(&reader.access, &p, &signs)?)).await?;
    Ok(Redirect::to(&format!("/app/patients/{patient}/vitals?saved=1")).into_response())
}

/// The lists page's data.
struct ListsPage {
    banner: Banner,
    lists: chart::lists::Lists,
}

fn lists_page(
    session: &Session,
    lists: &ListsPage,
    form: &HashMap<String, String>,
    problems: &FormProblems,
    which: &str,
) -> Markup {
    let base = format!("/app/patients/{}", lists.banner.id);
    let problems_for = |w: &str| {
        if which == w {
            problems.render()
        } else {
            html! {}
        }
    };
    let content = html! {
        div class="grid" {
            section class="card" aria-labelledby="h-problem-list" {
                h2 id="h-problem-list" { "Problem list" }
                table { tbody { @for c in &lists.lists.problems {
                    tr { td { (c.name) } td class="muted" { (c.status) }
                        td { @if c.is_active() {
                            form method="post" action={ (base) "/problems/" (c.id) "/resolve" } {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button type="submit" class="secondary" { "Resolve" }
                            }
                        } }
                    }
                } } }
                h3 { "Add a problem" }
                (problems_for("problem"))
                form method="post" action={ (base) "/problems" } novalidate {
                    input type="hidden" name="csrf" value=(session.csrf);
                    div class="field" { label for="problem" { "Problem" } br; input id="problem" name="problem" value=(field(form, "problem")); }
                    div class="field" { label for="snomed" { "SNOMED CT code (optional)" } br; input id="snomed" name="snomed" inputmode="numeric" value=(field(form, "snomed")); }
                    div class="field" { label for="onset" { "Onset date" } br; input id="onset" name="onset" type="date" value=(field(form, "onset")); }
                    button type="submit" { "Add problem" }
                }
            }
            section class="card" aria-labelledby="h-allergy-list" {
                h2 id="h-allergy-list" { "Allergies and intolerances" }
                table { tbody { @for a in &lists.lists.allergies {
                    tr { td { (a.substance) } td class="muted" { (a.status) " " (a.criticality) }
                        td { @if a.is_active() {
                            form method="post" action={ (base) "/allergies/" (a.id) "/inactivate" } {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button type="submit" class="secondary" { "Mark inactive" }
                            }
                        } }
                    }
                } } }
                h3 { "Add an allergy" }
                (problems_for("allergy"))
                form method="post" action={ (base) "/allergies" } novalidate {
                    input type="hidden" name="csrf" value=(session.csrf);
                    div class="field" { label for="substance" { "Substance" } br; input id="substance" name="substance" value=(field(form, "substance")); }
                    div class="field" { label for="reaction" { "Reaction (optional)" } br; input id="reaction" name="reaction" value=(field(form, "reaction")); }
                    div class="field" { label for="criticality" { "Criticality" } br;
                        select id="criticality" name="criticality" { option value="low" { "Low" } option value="high" { "High" } option value="unable-to-assess" { "Unable to assess" } } }
                    button type="submit" { "Add allergy" }
                }
                form method="post" action={ (base) "/allergies" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="no_known" value="1";
                    button type="submit" class="secondary" { "Record “No known allergies”" }
                }
            }
            section class="card" aria-labelledby="h-med-list" {
                h2 id="h-med-list" { "Medications" }
                (problems_for("discontinue"))
                table { tbody { @for m in &lists.lists.medications {
                    tr { td { (m.name) br; span class="muted" { (m.instructions.as_deref().unwrap_or("")) } }
                        td class="muted" { (m.status) " " (m.status_reason) }
                        td { @if m.is_active() {
                            form method="post" action={ (base) "/medications/" (m.id) "/discontinue" } novalidate {
                                input type="hidden" name="csrf" value=(session.csrf);
                                label for={ "reason-" (m.id) } { "Reason" } " "
                                input id={ "reason-" (m.id) } name="reason" size="14";
                                button type="submit" class="secondary" { "Discontinue" }
                            }
                        } }
                    }
                } } }
                h3 { "Add a medication" }
                (problems_for("medication"))
                form method="post" action={ (base) "/medications" } novalidate {
                    input type="hidden" name="csrf" value=(session.csrf);
                    div class="field" { label for="medication" { "Medication" } br; input id="medication" name="medication" value=(field(form, "medication")); }
                    div class="field" { label for="rxnorm" { "RxNorm code (optional)" } br; input id="rxnorm" name="rxnorm" inputmode="numeric" value=(field(form, "rxnorm")); }
                    div class="field" { label for="dosage" { "Instructions" } br; input id="dosage" name="dosage" size="40" value=(field(form, "dosage")); }
                    button type="submit" { "Add medication" }
                }
            }
        }
    };
    layout::chart_page(session, &lists.banner, Tab::Lists, "Lists", content)
}

async fn load_lists(app: &WebApp, session: &Session, patient: &str) -> Result<Result<ListsPage, Markup>, WebError> {
    let id = patient.to_string();
    open_chart(app, session, patient, "lists", move |reader, banner| {
        Ok(ListsPage { lists: chart::lists::lists(&reader.access, &id)?, banner })
    })
    .await
}

/// `GET /app/patients/{id}/lists`.
pub(crate) async fn lists(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
) -> Result<Response, WebError> {
    Ok(match load_lists(&app, &session, &patient).await? {
        Ok(lists) => lists_page(&session, &lists, &HashMap::new(), &FormProblems::default(), "").into_response(),
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}

/// The lists again with the form's problems (422), nothing written.
async fn show_problems(
    app: &WebApp,
    session: &Session,
    patient: &str,
    form: &HashMap<String, String>,
    problems: &FormProblems,
    which: &str,
) -> Result<Response, WebError> {
    Ok(match load_lists(app, session, patient).await? {
        Ok(lists) => {
            (StatusCode::UNPROCESSABLE_ENTITY, lists_page(session, &lists, form, problems, which)).into_response()
        }
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}

/// Runs a list edit as the user, then shows the lists.
async fn edit_list(
    app: &WebApp,
    session: &Session,
    patient: &str,
    edit: impl FnOnce(&access::Access, &str) -> chart::Result<()> + Send + 'static,
) -> Result<Response, WebError> {
    let reader = Reader::new(app, session);
    let p = patient.to_string();
    as_user(reader, move |reader| Ok(edit(&reader.access, &p)?)).await?;
    Ok(Redirect::to(&format!("/app/patients/{patient}/lists")).into_response())
}

fn optional_code(problems: &mut FormProblems, field_name: &str, label: &str, value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()) {
        problems.add(field_name, format!("{label} is digits only."));
        return None;
    }
    Some(value.to_string())
}

/// Some text, unless empty.
fn unless_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// `POST /app/patients/{id}/problems`: adds an active problem-list item.
pub(crate) async fn add_problem(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let mut problems = FormProblems::default();
    let text = plain_text(&mut problems, "problem", "The problem", &field(&form, "problem"), true, 200);
    let snomed = optional_code(&mut problems, "snomed", "The SNOMED CT code", &field(&form, "snomed"));
    let onset = date_field(&mut problems, "onset", "The onset date", &field(&form, "onset"), false);
    if !problems.is_empty() {
        return show_problems(&app, &session, &patient, &form, &problems, "problem").await;
    }
    let problem = chart::lists::NewProblem { text, snomed, onset };
    edit_list(&app, &session, &patient, move |access, p| chart::lists::add_problem(access, p, &problem)).await
}

/// `POST /app/patients/{id}/problems/{item}/resolve`.
pub(crate) async fn resolve_problem(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, item)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    edit_list(&app, &session, &patient, move |access, p| chart::lists::resolve_problem(access, p, &item)).await
}

/// `POST /app/patients/{id}/allergies`: adds an allergy, or records "no known allergies".
pub(crate) async fn add_allergy(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let mut problems = FormProblems::default();
    let entry = if form.contains_key("no_known") {
        plain_text(&mut problems, "reaction", "The reaction", &field(&form, "reaction"), false, 200);
        NewAllergy::NoneKnown
    } else {
        let substance = plain_text(&mut problems, "substance", "The substance", &field(&form, "substance"), true, 200);
        let reaction = plain_text(&mut problems, "reaction", "The reaction", &field(&form, "reaction"), false, 200);
        let criticality = Criticality::from_code(&field(&form, "criticality"));
        if criticality.is_none() {
            problems.add("criticality", "Choose a criticality.");
        }
        NewAllergy::Substance {
            substance,
            reaction: unless_empty(reaction),
            criticality: criticality.unwrap_or(Criticality::UnableToAssess),
        }
    };
    if problems.is_empty() {
        let reader = Reader::new(&app, &session);
        let p = patient.clone();
        let added = as_user(reader, move |reader| match chart::lists::add_allergy(&reader.access, &p, &entry) {
            Err(chart::Error::AllergiesActive) => Ok(false),
            other => other.map(|()| true).map_err(WebError::from),
        })
        .await?;
        if added {
            return Ok(Redirect::to(&format!("/app/patients/{patient}/lists")).into_response());
        }
        problems.add(
            "substance",
            "Allergies are recorded as active: inactivate them before recording “No known allergies”.",
        );
    }
    show_problems(&app, &session, &patient, &form, &problems, "allergy").await
}

/// `POST /app/patients/{id}/allergies/{item}/inactivate`.
pub(crate) async fn inactivate_allergy(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, item)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    edit_list(&app, &session, &patient, move |access, p| chart::lists::inactivate_allergy(access, p, &item)).await
}

/// `POST /app/patients/{id}/medications`: adds an active medication (a MedicationRequest
/// recorded as the patient's current list, intent `order`).
pub(crate) async fn add_medication(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let mut problems = FormProblems::default();
    let name = plain_text(&mut problems, "medication", "The medication", &field(&form, "medication"), true, 200);
    let rxnorm = optional_code(&mut problems, "rxnorm", "The RxNorm code", &field(&form, "rxnorm"));
    let dosage = plain_text(&mut problems, "dosage", "The instructions", &field(&form, "dosage"), false, 500);
    if !problems.is_empty() {
        return show_problems(&app, &session, &patient, &form, &problems, "medication").await;
    }
    let medication = chart::lists::NewMedication {
        name,
        rxnorm,
        instructions: unless_empty(dosage),
        requester: session.caller.principal.fhir_user(),
    };
    edit_list(&app, &session, &patient, move |access, p| chart::lists::add_medication(access, p, &medication)).await
}

/// `POST /app/patients/{id}/medications/{item}/discontinue`: stopped, with the reason.
pub(crate) async fn discontinue_medication(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, item)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let mut problems = FormProblems::default();
    let reason =
        plain_text(&mut problems, "reason", "The reason for discontinuing", &field(&form, "reason"), true, 200);
    if !problems.is_empty() {
        return show_problems(&app, &session, &patient, &form, &problems, "discontinue").await;
    }
    edit_list(&app, &session, &patient, move |access, p| {
        chart::lists::discontinue_medication(access, p, &item, &reason)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_refuses_markup_and_empty_required_fields() {
        let mut problems = FormProblems::default();
        plain_text(&mut problems, "a", "A", "  ", true, 10);
        plain_text(&mut problems, "b", "B", "<script>alert(1)</script>", false, 100);
        plain_text(&mut problems, "c", "C", "dose < 5 mg", false, 100);
        plain_text(&mut problems, "d", "D", "x".repeat(11).as_str(), false, 10);
        let fields: Vec<&str> = problems.problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["a", "b", "d"]);
    }

    #[test]
    fn dates_and_numbers_are_checked() {
        let mut problems = FormProblems::default();
        assert_eq!(date_field(&mut problems, "x", "X", "2021-02-30", false), None);
        assert_eq!(date_field(&mut problems, "y", "Y", "2999-01-01", false), None);
        assert_eq!(date_field(&mut problems, "z", "Z", "2020-02-29", false).as_deref(), Some("2020-02-29"));
        assert_eq!(number_field(&mut problems, "n", "N", "abc", (0.0, 1.0), false), None);
        assert_eq!(number_field(&mut problems, "m", "M", "NaN", (0.0, 1.0), false), None);
        assert_eq!(number_field(&mut problems, "o", "O", "0.5", (0.0, 1.0), false), Some(0.5));
        assert_eq!(problems.problems.len(), 4);
    }
}
