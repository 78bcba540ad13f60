//! The PHQ-9 and GAD-7 form: the questions of the instrument's Questionnaire, each answered
//! 0–3, sent as one QuestionnaireResponse scored in the same transaction by the care service
//! ([`care::screening::submit`]); after the submission the score and its severity band are
//! shown, read back from the Observation written.

use crate::WebApp;
use crate::care_plan::care_error;
use crate::clinical::{Reader, as_user};
use crate::display;
use crate::error::WebError;
use crate::forms::FormProblems;
use crate::layout::{self, Banner, Tab};
use crate::pages::open_chart;
use crate::session::Session;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use care::screening::{ANSWERS, Instrument};
use maud::{Markup, html};
use serde_json::Value;
use std::collections::HashMap;

/// A score read back for the page.
struct Shown {
    instrument: String,
    total: i64,
    band: String,
    item_9: Option<i64>,
}

fn score_of(observation: &Value) -> Option<Shown> {
    Some(Shown {
        instrument: observation.pointer("/code/text").and_then(Value::as_str).unwrap_or("Score").to_string(),
        total: observation.get("valueInteger").and_then(Value::as_i64)?,
        band: observation.pointer("/interpretation/0/text").and_then(Value::as_str).unwrap_or("").to_string(),
        item_9: observation.pointer("/component/0/valueInteger").and_then(Value::as_i64),
    })
}

/// The patient's recent encounters a response may belong to: (`Encounter/id`, label).
type Encounters = Vec<(String, String)>;

fn encounters(reader: &Reader, patient: &str) -> Result<Encounters, WebError> {
    let found = reader
        .search_if_allowed("Encounter", &[("patient", patient.to_string()), ("_sort", "-date".into())], 10)?
        .unwrap_or_default();
    Ok(found
        .iter()
        .map(|e| {
            let id = e.get("id").and_then(Value::as_str).unwrap_or_default();
            let when = display::when(e).map(display::day).unwrap_or_default();
            (format!("Encounter/{id}"), format!("{when} {}", display::concept(e.pointer("/type/0"))))
        })
        .collect())
}

#[allow(clippy::too_many_arguments)]
fn form_page(
    session: &Session,
    banner: &Banner,
    encounters: &Encounters,
    instrument: Instrument,
    form: &HashMap<String, String>,
    problems: &FormProblems,
    shown: Option<&Shown>,
) -> Markup {
    let base = format!("/app/patients/{}/screening", banner.id);
    let content = html! {
        h2 { "Behavioral-health screening" }
        nav aria-label="Instruments" class="tabs" { ul { @for i in Instrument::ALL {
            li { @if i == instrument { a href={ (base) "?instrument=" (i.key()) } aria-current="page" { (i.label()) } }
                 @else { a href={ (base) "?instrument=" (i.key()) } { (i.label()) } } }
        } } }
        @if let Some(s) = shown {
            div class="ok" role="status" id="score" {
                p { (s.instrument) ": " strong { (s.total) } " — " (s.band) }
                @if let Some(item_9) = s.item_9.filter(|n| *n > 0) {
                    p class="error" { "Item 9 (thoughts of self-harm) answered " (item_9) ": assess safety now." }
                }
            }
        }
        (problems.render())
        form method="post" action=(base) novalidate {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="instrument" value=(instrument.key());
            div class="field" { label for="encounter" { "Visit" } br;
                select id="encounter" name="encounter" {
                    option value="" { "None" }
                    @for (reference, label) in encounters { option value=(reference) selected[field_is(form, "encounter", reference)] { (label) } }
                }
            }
            p { "Over the last 2 weeks, how often has the patient been bothered by the following problems?" }
            @for (n, question) in instrument.questions().iter().enumerate() {
                @let name = format!("item{}", n + 1);
                fieldset id=(name) {
                    legend { (n + 1) ". " (question.text) }
                    @for (value, (_, label)) in ANSWERS.iter().enumerate() {
                        @let id = format!("{name}-{value}");
                        label for=(id) {
                            input type="radio" id=(id) name=(name) value=(value) checked[form.get(&name).map(String::as_str) == Some(value.to_string().as_str())];
                            " " (label) " (" (value) ")"
                        } " "
                    }
                }
            }
            button type="submit" { "Record " (instrument.label()) }
        }
    };
    layout::chart_page(session, banner, Tab::Screening, instrument.label(), content)
}

fn field_is(form: &HashMap<String, String>, name: &str, value: &str) -> bool {
    form.get(name).map(String::as_str) == Some(value)
}

fn instrument_of(key: Option<&String>) -> Instrument {
    key.and_then(|k| Instrument::from_key(k)).unwrap_or(Instrument::Phq9)
}

/// `GET /app/patients/{id}/screening?instrument=phq-9|gad-7[&score=Observation id]`.
pub(crate) async fn page(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let instrument = instrument_of(query.get("instrument"));
    let score = query.get("score").filter(|s| fhir::reference::is_id(s)).cloned();
    let id = patient.clone();
    let loaded = open_chart(&app, &session, &patient, "screening", move |reader, banner| {
        reader.may_create("QuestionnaireResponse")?;
        let shown = match score {
            Some(id) => score_of(&reader.read("Observation", &id)?),
            None => None,
        };
        Ok((banner, encounters(reader, &id)?, shown))
    })
    .await?;
    Ok(match loaded {
        Ok((banner, encounters, shown)) => form_page(
            &session,
            &banner,
            &encounters,
            instrument,
            &HashMap::new(),
            &FormProblems::default(),
            shown.as_ref(),
        )
        .into_response(),
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}

/// `POST /app/patients/{id}/screening`: the answers, scored and recorded; then the form with
/// the score.
pub(crate) async fn submit(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let instrument = instrument_of(form.get("instrument"));
    let mut problems = FormProblems::default();
    // Parsing only: whether the answers make a score is the care service's rule.
    let answers: Vec<Option<i64>> = (1..=instrument.questions().len())
        .map(|n| {
            let value = form.get(&format!("item{n}")).map(|v| v.trim()).filter(|v| !v.is_empty())?;
            match value.parse::<i64>() {
                Ok(v) => Some(v),
                Err(_) => {
                    problems.add(&format!("item{n}"), format!("Item {n}: choose one of the answers."));
                    None
                }
            }
        })
        .collect();
    let encounter = form.get("encounter").map(|e| e.trim().to_string()).filter(|e| !e.is_empty());
    if problems.is_empty() {
        let reader = Reader::new(&app, &session);
        let p = patient.clone();
        let done = as_user(reader, move |reader| {
            match care::screening::submit(&reader.access, &p, instrument, &answers, encounter.as_deref()) {
                Err(care::Error::Invalid(why)) => Ok(Err(why)),
                other => other.map(Ok).map_err(care_error),
            }
        })
        .await?;
        match done {
            Ok(submitted) => {
                return Ok(Redirect::to(&format!(
                    "/app/patients/{patient}/screening?instrument={}&score={}",
                    instrument.key(),
                    submitted.observation
                ))
                .into_response());
            }
            Err(why) => {
                // The item named by the refusal, for the link to its field.
                let item = why.split_whitespace().skip_while(|w| *w != "item").nth(1).unwrap_or("1").to_string();
                problems.add(&format!("item{item}"), why);
            }
        }
    }
    let id = patient.clone();
    let loaded =
        open_chart(&app, &session, &patient, "screening", move |reader, banner| Ok((banner, encounters(reader, &id)?)))
            .await?;
    Ok(match loaded {
        Ok((banner, encounters)) => {
            let page = form_page(&session, &banner, &encounters, instrument, &form, &problems, None);
            (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
        }
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_score_reads_back_from_its_observation() {
        let o = serde_json::json!({"code": {"text": "PHQ-9 total score"}, "valueInteger": 12,
            "interpretation": [{"text": "Moderate depression"}], "component": [{"valueInteger": 1}]});
        let s = score_of(&o).unwrap();
        assert_eq!((s.total, s.band.as_str(), s.item_9), (12, "Moderate depression", Some(1)));
    }
}
