//! The duplicate review work list (administrators and registration staff): pairs of records
//! the patient index found probably one person's, side by side with how each field agreed and
//! the score, and the decisions — link, not a match (remembered), merge into one of the two.
//! The index decides nothing here: [`exchange::identity::PatientIndex`] keeps the list and
//! carries the decisions out; the page shows and passes them on.

use crate::WebApp;
use crate::clinical::{Reader, as_user};
use crate::error::WebError;
use crate::layout;
use crate::session::Session;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use exchange::identity::{Decision, ReviewItem, Status};
use maud::{Markup, html};
use serde_json::Value;
use std::collections::HashMap;

/// One record of a pair as the reviewer may see it (`None`: outside their reach).
struct Side {
    id: String,
    shown: Option<Value>,
}

struct Row {
    item: ReviewItem,
    sides: [Side; 2],
}

fn text(value: &Value, pointer: &str) -> String {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_string()
}

fn name(patient: &Value) -> String {
    let Some(name) = patient.pointer("/name/0") else { return "(no name)".into() };
    let given: Vec<&str> =
        name.get("given").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    format!("{}, {}", text(name, "/family"), given.join(" "))
}

fn address(patient: &Value) -> String {
    let Some(address) = patient.pointer("/address/0") else { return String::new() };
    let lines: Vec<&str> =
        address.get("line").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    format!(
        "{}, {} {} {}",
        lines.join(" "),
        text(address, "/city"),
        text(address, "/state"),
        text(address, "/postalCode")
    )
}

fn telecoms(patient: &Value) -> Vec<String> {
    patient
        .get("telecom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("value").and_then(Value::as_str).map(str::to_string))
        .collect()
}

fn identifiers(patient: &Value) -> Vec<String> {
    patient
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|i| {
            let kind =
                i.pointer("/type/coding/0/code").or_else(|| i.get("system")).and_then(Value::as_str).unwrap_or("");
            format!("{kind}: {}", text(i, "/value"))
        })
        .collect()
}

fn side(side: &Side) -> Markup {
    html! {
        @match &side.shown {
            Some(patient) => {
                dl class="record" {
                    dt { "Name" } dd { a href={ "/app/patients/" (side.id) } { (name(patient)) } }
                    dt { "Born" } dd { (text(patient, "/birthDate")) }
                    dt { "Sex" } dd { (text(patient, "/gender")) }
                    dt { "Address" } dd { (address(patient)) }
                    dt { "Phone, e-mail" } dd { (telecoms(patient).join(", ")) }
                    dt { "Identifiers" } dd { ul { @for i in identifiers(patient) { li { (i) } } } }
                    dt { "Organization" } dd { (text(patient, "/managingOrganization/display")) (text(patient, "/managingOrganization/reference")) }
                }
            }
            None => p class="muted" { "Patient/" (side.id) ": outside your reach (the fields below still say how it compares)." }
        }
    }
}

fn notice(done: &str) -> Option<&'static str> {
    match done {
        "linked" => Some("Linked: the two records now share one person id and show as one person."),
        "not-a-match" => Some("Marked not a match: this pair will not be proposed again."),
        "merged" => Some("Merged: the other record's data moved to the record kept; the other is inactive."),
        _ => None,
    }
}

fn render(session: &Session, rows: &[Row], done: Option<&str>) -> Markup {
    let content = html! {
        h2 { "Possible duplicate records" }
        @if let Some(text) = done.and_then(notice) { p class="ok" role="status" { (text) } }
        p { "Pairs of records that are probably the same person, best score first. Compare them, then link them (kept apart, shown as one person), mark them not a match, or merge one into the other." }
        @if rows.is_empty() { p class="muted" { "No pair is waiting for review." } }
        @for (n, row) in rows.iter().enumerate() {
            @let heading = format!("pair-{n}");
            section class="card duplicate" aria-labelledby=(heading) {
                h3 id=(heading) { "Score " (format!("{:.2}", row.item.score)) " (" (row.item.grade) ")" }
                div class="grid" {
                    div { h4 { "Record A" } (side(&row.sides[0])) }
                    div { h4 { "Record B" } (side(&row.sides[1])) }
                }
                table {
                    caption { "How the fields agree" }
                    thead { tr { th scope="col" { "Field" } th scope="col" { "Agreement" } th scope="col" { "Weight" } } }
                    tbody { @for field in row.item.fields.iter().filter(|f| f.level != "missing") {
                        tr { th scope="row" { (field.field) } td { (field.level) } td { (format!("{:+.1}", field.weight)) } }
                    } }
                }
                div class="decisions" {
                    @for (decision, label, survivor) in [("link", "Link as one person", None), ("not-a-match", "Not a match", None), ("merge", "Merge B into A", Some(&row.item.a)), ("merge", "Merge A into B", Some(&row.item.b))] {
                        form method="post" action="/app/duplicates" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            input type="hidden" name="pair" value=(row.item.id);
                            input type="hidden" name="decision" value=(decision);
                            @if let Some(survivor) = survivor { input type="hidden" name="survivor" value=(survivor); }
                            button type="submit" class=(if decision == "link" { "" } else { "secondary" }) aria-label={ (label) ", pair " (n + 1) } { (label) }
                        }
                    }
                }
            }
        }
    };
    layout::page(session, "Possible duplicates", content)
}

/// `GET /app/duplicates[?done=linked|not-a-match|merged]`: the open pairs.
pub(crate) async fn page(
    State(app): State<WebApp>,
    session: Session,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let index = app.patient_index().ok_or(WebError::NotFound)?;
    let reader = Reader::new(&app, &session);
    let rows = as_user(reader, move |reader| {
        let items = index.work_list(&reader.access, Some(Status::Open))?;
        let mut rows = Vec::new();
        for item in items.into_iter().take(50) {
            let see = |id: &str| Side { id: id.to_string(), shown: reader.read("Patient", id).ok() };
            let sides = [see(&item.a), see(&item.b)];
            rows.push(Row { item, sides });
        }
        Ok(rows)
    })
    .await?;
    Ok(render(&session, &rows, query.get("done").map(String::as_str)).into_response())
}

/// `POST /app/duplicates` with `pair`, `decision` (`link`, `not-a-match`, `merge` with
/// `survivor`): the decision, then back to the list.
pub(crate) async fn decide(
    State(app): State<WebApp>,
    session: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let index = app.patient_index().ok_or(WebError::NotFound)?;
    let pair = form.get("pair").cloned().ok_or_else(|| WebError::BadRequest("which pair?".into()))?;
    let code = form.get("decision").map(String::as_str).unwrap_or("");
    let decision = Decision::parse(code, form.get("survivor").map(String::as_str))
        .ok_or_else(|| WebError::BadRequest("choose link, not a match or merge".into()))?;
    let done = match decision {
        Decision::Link => "linked",
        Decision::NotAMatch => "not-a-match",
        Decision::MergeInto(_) => "merged",
    };
    let reader = Reader::new(&app, &session);
    as_user(reader, move |reader| Ok(index.decide(&reader.access, &pair, decision)?)).await?;
    Ok(Redirect::to(&format!("/app/duplicates?done={done}")).into_response())
}
