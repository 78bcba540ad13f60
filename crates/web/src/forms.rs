//! Form checks shared by every form, vitals entry, and the problem, allergy and medication
//! lists (add, resolve, inactivate, discontinue with a reason). Bad input is answered on the
//! form with what to fix, and nothing is stored.

use crate::WebApp;
use crate::clinical::{Reader, as_user};
use crate::display;
use crate::error::WebError;
use crate::layout::{self, Banner, Tab};
use crate::pages::{medication_name, open_chart};
use crate::session::Session;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::{Value, json};
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

fn now_text() -> String {
    store::format_instant(time::OffsetDateTime::now_utc())
}

/// One vital sign the form records.
struct Vital {
    field: &'static str,
    label: &'static str,
    loinc: &'static str,
    display: &'static str,
    unit: &'static str,
    ucum: &'static str,
    range: (f64, f64),
}

const VITALS: &[Vital] = &[
    Vital {
        field: "weight",
        label: "Weight (kg)",
        loinc: "29463-7",
        display: "Body weight",
        unit: "kg",
        ucum: "kg",
        range: (0.2, 500.0),
    },
    Vital {
        field: "height",
        label: "Height (cm)",
        loinc: "8302-2",
        display: "Body height",
        unit: "cm",
        ucum: "cm",
        range: (20.0, 272.0),
    },
    Vital {
        field: "heart_rate",
        label: "Heart rate (/min)",
        loinc: "8867-4",
        display: "Heart rate",
        unit: "/min",
        ucum: "/min",
        range: (10.0, 300.0),
    },
    Vital {
        field: "resp_rate",
        label: "Respiratory rate (/min)",
        loinc: "9279-1",
        display: "Respiratory rate",
        unit: "/min",
        ucum: "/min",
        range: (2.0, 80.0),
    },
    Vital {
        field: "temperature",
        label: "Temperature (°C)",
        loinc: "8310-5",
        display: "Body temperature",
        unit: "Cel",
        ucum: "Cel",
        range: (25.0, 45.0),
    },
    Vital {
        field: "spo2",
        label: "Oxygen saturation (%)",
        loinc: "2708-6",
        display: "Oxygen saturation in Arterial blood",
        unit: "%",
        ucum: "%",
        range: (40.0, 100.0),
    },
];

fn vital_signs_category() -> Value {
    json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}])
}

fn quantity(value: f64, unit: &str, ucum: &str) -> Value {
    // Whole numbers are kept whole (128, not 128.0); others to two decimals.
    let rounded = (value * 100.0).round() / 100.0;
    let value = if rounded.fract() == 0.0 && rounded.abs() < 1e9 { json!(rounded as i64) } else { json!(rounded) };
    json!({"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": ucum})
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
            @for v in VITALS {
                div class="field" { label for=(v.field) { (v.label) } br; input id=(v.field) name=(v.field) inputmode="decimal" value=(field(form, v.field)); }
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
    let systolic = number_field(&mut problems, "systolic", "Systolic", &field(&form, "systolic"), (40.0, 300.0), false);
    let diastolic =
        number_field(&mut problems, "diastolic", "Diastolic", &field(&form, "diastolic"), (20.0, 200.0), false);
    if systolic.is_some() != diastolic.is_some() {
        problems.add("systolic", "Blood pressure needs both systolic and diastolic.");
    }
    if let (Some(s), Some(d)) = (systolic, diastolic)
        && d >= s
    {
        problems.add("diastolic", "Diastolic must be lower than systolic.");
    }
    let values: Vec<(&Vital, Option<f64>)> = VITALS
        .iter()
        .map(|v| (v, number_field(&mut problems, v.field, v.label, &field(&form, v.field), v.range, false)))
        .collect();
    if problems.is_empty() && systolic.is_none() && values.iter().all(|(_, n)| n.is_none()) {
        problems.add("systolic", "Enter at least one vital sign.");
    }
    if !problems.is_empty() {
        return Ok(
            (StatusCode::UNPROCESSABLE_ENTITY, vitals_page(&session, &banner, &form, &problems, false)).into_response()
        );
    }
    let now = now_text();
    let subject = json!({"reference": format!("Patient/{patient}")});
    let observation = |code: &str, display: &str| {
        json!({"resourceType": "Observation", "status": "final", "category": vital_signs_category(),
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display},
            "subject": subject, "effectiveDateTime": now, "issued": now})
    };
    let mut resources = Vec::new();
    if let (Some(s), Some(d)) = (systolic, diastolic) {
        let mut bp = observation("85354-9", "Blood pressure panel with all children optional");
        bp["component"] = json!([
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}]}, "valueQuantity": quantity(s, "mm[Hg]", "mm[Hg]")},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic blood pressure"}]}, "valueQuantity": quantity(d, "mm[Hg]", "mm[Hg]")},
        ]);
        resources.push(bp);
    }
    for (vital, value) in &values {
        if let Some(value) = value {
            let mut o = observation(vital.loinc, vital.display);
            o["valueQuantity"] = quantity(*value, vital.unit, vital.ucum);
            resources.push(o);
        }
    }
    let weight = values.iter().find(|(v, _)| v.field == "weight").and_then(|(_, n)| *n);
    let height = values.iter().find(|(v, _)| v.field == "height").and_then(|(_, n)| *n);
    if let (Some(w), Some(h)) = (weight, height) {
        let mut bmi = observation("39156-5", "Body mass index (BMI) [Ratio]");
        bmi["valueQuantity"] = quantity(w / (h / 100.0).powi(2), "kg/m2", "kg/m2");
        resources.push(bmi);
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": resources.into_iter()
        .map(|r| json!({"resource": r, "request": {"method": "POST", "url": "Observation"}})).collect::<Vec<_>>()});
    let reader = Reader::new(&app, &session);
    let p = patient.clone();
    as_user(reader, move |reader| reader.transaction(bundle, &p).map(|_| ())).await?;
    Ok(Redirect::to(&format!("/app/patients/{patient}/vitals?saved=1")).into_response())
}

/// The lists page's data.
struct Lists {
    banner: Banner,
    problems: Vec<Value>,
    allergies: Vec<Value>,
    medications: Vec<Value>,
}

fn id_of(resource: &Value) -> &str {
    resource.get("id").and_then(Value::as_str).unwrap_or_default()
}

fn lists_page(
    session: &Session,
    lists: &Lists,
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
                table { tbody { @for c in &lists.problems {
                    @let status = display::first_code(c.get("clinicalStatus")).unwrap_or("");
                    tr { td { (display::concept(c.get("code"))) } td class="muted" { (status) }
                        td { @if matches!(status, "active" | "recurrence" | "relapse") {
                            form method="post" action={ (base) "/problems/" (id_of(c)) "/resolve" } {
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
                table { tbody { @for a in &lists.allergies {
                    @let status = display::first_code(a.get("clinicalStatus")).unwrap_or("active");
                    tr { td { (display::concept(a.get("code"))) } td class="muted" { (status) " " (a.get("criticality").and_then(Value::as_str).unwrap_or("")) }
                        td { @if status == "active" {
                            form method="post" action={ (base) "/allergies/" (id_of(a)) "/inactivate" } {
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
                table { tbody { @for m in &lists.medications {
                    @let status = m.get("status").and_then(Value::as_str).unwrap_or("");
                    tr { td { (medication_name(m)) br; span class="muted" { (m.pointer("/dosageInstruction/0/text").and_then(Value::as_str).unwrap_or("")) } }
                        td class="muted" { (status) " " (display::concept(m.get("statusReason"))) }
                        td { @if status == "active" {
                            form method="post" action={ (base) "/medications/" (id_of(m)) "/discontinue" } novalidate {
                                input type="hidden" name="csrf" value=(session.csrf);
                                label for={ "reason-" (id_of(m)) } { "Reason" } " "
                                input id={ "reason-" (id_of(m)) } name="reason" size="14";
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

async fn load_lists(app: &WebApp, session: &Session, patient: &str) -> Result<Result<Lists, Markup>, WebError> {
    let id = patient.to_string();
    open_chart(app, session, patient, "lists", move |reader, banner| {
        let p = || ("patient", id.clone());
        Ok(Lists {
            problems: reader.search("Condition", &[p(), ("_sort", "-onset-date".into())], 200)?,
            allergies: reader.search("AllergyIntolerance", &[p()], 200)?,
            medications: reader.search("MedicationRequest", &[p(), ("_sort", "-authoredon".into())], 200)?,
            banner,
        })
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

/// Writes `resource` (or a transaction Bundle of the patient's resources) after the form's
/// checks passed, or shows the lists with the problems.
async fn write_or_show(
    app: &WebApp,
    session: &Session,
    patient: &str,
    form: &HashMap<String, String>,
    problems: FormProblems,
    which: &str,
    resource: impl FnOnce() -> Value,
) -> Result<Response, WebError> {
    if !problems.is_empty() {
        return Ok(match load_lists(app, session, patient).await? {
            Ok(lists) => {
                (StatusCode::UNPROCESSABLE_ENTITY, lists_page(session, &lists, form, &problems, which)).into_response()
            }
            Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
        });
    }
    let reader = Reader::new(app, session);
    let resource = resource();
    let p = patient.to_string();
    as_user(reader, move |reader| {
        if !reader.may_open(&p)? {
            return Err(WebError::Forbidden("you may not write to this patient's record".into()));
        }
        if resource.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            reader.transaction(resource, &p).map(|_| ())
        } else {
            reader.write(resource, &p).map(|_| ())
        }
    })
    .await?;
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
    let code = optional_code(&mut problems, "snomed", "The SNOMED CT code", &field(&form, "snomed"));
    let onset = date_field(&mut problems, "onset", "The onset date", &field(&form, "onset"), false);
    let p = patient.clone();
    write_or_show(&app, &session, &patient, &form, problems, "problem", move || {
        let mut concept = json!({"text": text});
        if let Some(code) = code {
            concept["coding"] = json!([{"system": "http://snomed.info/sct", "code": code, "display": text}]);
        }
        let mut condition = json!({
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item", "display": "Problem List Item"}]}],
            "code": concept,
            "subject": {"reference": format!("Patient/{p}")},
            "recordedDate": now_text(),
        });
        if let Some(onset) = onset {
            condition["onsetDateTime"] = json!(onset);
        }
        condition
    })
    .await
}

/// Changes one list item of the patient: read it (through the policy), change, write it back.
async fn change_item(
    app: &WebApp,
    session: &Session,
    patient: &str,
    resource_type: &'static str,
    item: &str,
    change: impl FnOnce(&mut Value) -> Result<(), WebError> + Send + 'static,
) -> Result<Response, WebError> {
    let reader = Reader::new(app, session);
    let (p, id) = (patient.to_string(), item.to_string());
    as_user(reader, move |reader| {
        if !reader.may_open(&p)? {
            return Err(WebError::Forbidden("you may not write to this patient's record".into()));
        }
        let mut resource = reader.read(resource_type, &id)?;
        let owners = policy::patients_of(resource_type, &resource);
        if !owners.contains(&p) {
            return Err(WebError::NotFound);
        }
        change(&mut resource)?;
        // Written back with If-Match on the version read: a change made meanwhile is not lost.
        reader.write(resource, &p).map(|_| ())
    })
    .await?;
    Ok(Redirect::to(&format!("/app/patients/{patient}/lists")).into_response())
}

/// `POST /app/patients/{id}/problems/{item}/resolve`.
pub(crate) async fn resolve_problem(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, item)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    change_item(&app, &session, &patient, "Condition", &item, |condition| {
        condition["clinicalStatus"] =
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]});
        condition["abatementDateTime"] = json!(now_text());
        Ok(())
    })
    .await
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
    let no_known = form.contains_key("no_known");
    let substance = if no_known {
        String::new()
    } else {
        plain_text(&mut problems, "substance", "The substance", &field(&form, "substance"), true, 200)
    };
    let reaction = plain_text(&mut problems, "reaction", "The reaction", &field(&form, "reaction"), false, 200);
    let criticality = field(&form, "criticality");
    if !no_known && !matches!(criticality.as_str(), "low" | "high" | "unable-to-assess") {
        problems.add("criticality", "Choose a criticality.");
    }
    // "No known allergies" and an active allergy contradict each other: the first is refused
    // while allergies are active, and recording an allergy retires it (in one transaction).
    let mut retire = Vec::new();
    if problems.is_empty() {
        let reader = Reader::new(&app, &session);
        let p = patient.clone();
        let active = as_user(reader, move |reader| {
            reader.search("AllergyIntolerance", &[("patient", p), ("clinical-status", "active".into())], 100)
        })
        .await?;
        let (none_known, allergies): (Vec<Value>, Vec<Value>) =
            active.into_iter().partition(crate::layout::is_no_known_allergy);
        if no_known && !allergies.is_empty() {
            problems.add(
                "substance",
                "Allergies are recorded as active: inactivate them before recording “No known allergies”.",
            );
        } else if !no_known {
            retire = none_known;
        }
    }
    let p = patient.clone();
    let allergy = move || {
        let code = if no_known {
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "716186003", "display": "No known allergy"}], "text": "No known allergies"})
        } else {
            json!({"text": substance})
        };
        let mut allergy = json!({
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]},
            "code": code,
            "patient": {"reference": format!("Patient/{p}")},
            "recordedDate": now_text(),
        });
        if !no_known {
            allergy["criticality"] = json!(criticality);
            if !reaction.is_empty() {
                allergy["reaction"] = json!([{"manifestation": [{"text": reaction}]}]);
            }
        }
        allergy
    };
    let write = move || {
        if retire.is_empty() {
            return allergy();
        }
        let mut entries =
            vec![json!({"resource": allergy(), "request": {"method": "POST", "url": "AllergyIntolerance"}})];
        for mut old in retire {
            old["clinicalStatus"] = inactive_allergy_status();
            entries.push(crate::clinical::update_entry(old));
        }
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    };
    write_or_show(&app, &session, &patient, &form, problems, "allergy", write).await
}

/// An AllergyIntolerance's `clinicalStatus` once it no longer applies.
fn inactive_allergy_status() -> Value {
    json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "inactive"}]})
}

/// `POST /app/patients/{id}/allergies/{item}/inactivate`.
pub(crate) async fn inactivate_allergy(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, item)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    change_item(&app, &session, &patient, "AllergyIntolerance", &item, |allergy| {
        allergy["clinicalStatus"] = inactive_allergy_status();
        Ok(())
    })
    .await
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
    let code = optional_code(&mut problems, "rxnorm", "The RxNorm code", &field(&form, "rxnorm"));
    let dosage = plain_text(&mut problems, "dosage", "The instructions", &field(&form, "dosage"), false, 500);
    let p = patient.clone();
    let requester = session.caller.principal.fhir_user();
    write_or_show(&app, &session, &patient, &form, problems, "medication", move || {
        let mut concept = json!({"text": name});
        if let Some(code) = code {
            concept["coding"] =
                json!([{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code, "display": name}]);
        }
        let mut request = json!({
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": concept,
            "subject": {"reference": format!("Patient/{p}")},
            "authoredOn": now_text(),
        });
        if !dosage.is_empty() {
            request["dosageInstruction"] = json!([{"text": dosage}]);
        }
        if let Some(requester) = requester {
            request["requester"] = json!({"reference": requester});
        }
        request
    })
    .await
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
        return write_or_show(&app, &session, &patient, &form, problems, "discontinue", || Value::Null).await;
    }
    change_item(&app, &session, &patient, "MedicationRequest", &item, move |request| {
        if request.get("status").and_then(Value::as_str) != Some("active") {
            return Err(WebError::BadRequest("only an active medication can be discontinued".into()));
        }
        request["status"] = json!("stopped");
        request["statusReason"] = json!({"text": reason});
        Ok(())
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
