//! Trends: one measure of a patient over any period, as an SVG chart with its reference range
//! and, for accessibility, the same values as a table.

use crate::WebApp;
use crate::chart::{self, Point, ReferenceRange, Series};
use crate::display;
use crate::error::WebError;
use crate::layout::{self, Tab};
use crate::pages::open_chart;
use crate::session::Session;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{PreEscaped, html};
use serde_json::Value;
use std::collections::HashMap;

/// A measure that can be charted: LOINC codes of the Observation (or of its components).
pub(crate) struct Measure {
    pub key: &'static str,
    pub label: &'static str,
    /// The Observation's code.
    pub code: &'static str,
    /// Components to draw as series (blood pressure), else the Observation's own value.
    pub components: &'static [(&'static str, &'static str)],
    pub unit: &'static str,
}

pub(crate) const MEASURES: &[Measure] = &[
    Measure {
        key: "bp",
        label: "Blood pressure",
        code: "85354-9",
        components: &[("8480-6", "Systolic"), ("8462-4", "Diastolic")],
        unit: "mm[Hg]",
    },
    Measure { key: "weight", label: "Body weight", code: "29463-7", components: &[], unit: "kg" },
    Measure { key: "bmi", label: "Body mass index", code: "39156-5", components: &[], unit: "kg/m2" },
    Measure { key: "hba1c", label: "Hemoglobin A1c", code: "4548-4", components: &[], unit: "%" },
    Measure { key: "ldl", label: "LDL cholesterol", code: "18262-6", components: &[], unit: "mg/dL" },
    Measure { key: "egfr", label: "eGFR", code: "33914-3", components: &[], unit: "mL/min/1.73m2" },
    Measure { key: "glucose", label: "Glucose", code: "2339-0", components: &[], unit: "mg/dL" },
    Measure { key: "phq9", label: "PHQ-9 total score", code: "44261-6", components: &[], unit: "{score}" },
    Measure { key: "gad7", label: "GAD-7 total score", code: "70274-6", components: &[], unit: "{score}" },
];

/// The usual adult reference ranges used when the results carry none (guideline cut-offs:
/// ADA for HbA1c and fasting glucose, NCEP for LDL, KDIGO for eGFR, ACC/AHA for blood
/// pressure, WHO for BMI, the instruments' own "minimal" bands for PHQ-9 and GAD-7).
pub(crate) fn typical_range(code: &str) -> Option<ReferenceRange> {
    let range =
        |low: Option<f64>, high: Option<f64>, text: &str| Some(ReferenceRange { low, high, text: text.to_string() });
    match code {
        "4548-4" => range(None, Some(5.7), "below 5.7 %"),
        "18262-6" => range(None, Some(100.0), "below 100 mg/dL"),
        "33914-3" => range(Some(60.0), None, "60 mL/min/1.73m2 or more"),
        "2339-0" => range(Some(70.0), Some(99.0), "70–99 mg/dL (fasting)"),
        "85354-9" | "8480-6" => range(None, Some(120.0), "systolic below 120 mm[Hg] (diastolic below 80)"),
        "8462-4" => range(None, Some(80.0), "below 80 mm[Hg]"),
        "39156-5" => range(Some(18.5), Some(25.0), "18.5–25 kg/m2"),
        "44261-6" => range(None, Some(5.0), "0–4 (minimal)"),
        "70274-6" => range(None, Some(5.0), "0–4 (minimal)"),
        _ => None,
    }
}

fn number(value: &Value) -> Option<(f64, String)> {
    let quantity = value.get("valueQuantity")?;
    Some((display::quantity_number(quantity)?, display::quantity(quantity)?))
}

/// The series of a measure from its Observations (oldest first).
fn series_of(measure: &Measure, observations: &[Value]) -> Vec<Series> {
    let make = |name: &str| Series { name: name.to_string(), points: Vec::new() };
    let mut series: Vec<Series> = if measure.components.is_empty() {
        vec![make(measure.label)]
    } else {
        measure.components.iter().map(|(_, name)| make(name)).collect()
    };
    for observation in observations {
        let Some(at) = display::when(observation).and_then(display::instant) else { continue };
        if measure.components.is_empty() {
            if let Some((value, label)) = number(observation) {
                series[0].points.push(Point { at, value, label });
            }
            continue;
        }
        for component in observation.get("component").and_then(Value::as_array).into_iter().flatten() {
            let Some(i) = measure
                .components
                .iter()
                .position(|(code, _)| display::has_code(component.get("code"), "http://loinc.org", code))
            else {
                continue;
            };
            if let Some((value, label)) = number(component) {
                series[i].points.push(Point { at, value, label });
            }
        }
    }
    for s in &mut series {
        s.points.sort_by_key(|p| p.at);
    }
    series
}

/// The range to draw: the latest result's own, else the typical one.
fn range_of(measure: &Measure, observations: &[Value]) -> Option<ReferenceRange> {
    let own = observations.iter().rev().find_map(|o| o.pointer("/referenceRange/0")).and_then(|r| {
        let low = r.get("low").and_then(display::quantity_number);
        let high = r.get("high").and_then(display::quantity_number);
        (low.is_some() || high.is_some()).then(|| ReferenceRange {
            low,
            high,
            text: r.get("text").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| {
                format!(
                    "{}–{}",
                    low.map(|l| l.to_string()).unwrap_or_default(),
                    high.map(|h| h.to_string()).unwrap_or_default()
                )
            }),
        })
    });
    own.or_else(|| typical_range(measure.code))
}

/// `GET /app/patients/{id}/trends?measure=&from=&to=`.
pub(crate) async fn page(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let measure = query.get("measure").and_then(|m| MEASURES.iter().find(|x| x.key == m)).unwrap_or(&MEASURES[0]);
    let mut problems = Vec::new();
    let mut date = |name: &str| -> Option<String> {
        let v = query.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())?;
        match time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]")) {
            Ok(_) => Some(v.to_string()),
            Err(_) => {
                problems.push(format!("“{name}” must be a real date (YYYY-MM-DD)"));
                None
            }
        }
    };
    let (from, to) = (date("from"), date("to"));
    let id = patient.clone();
    let (f, t) = (from.clone(), to.clone());
    let loaded = open_chart(&app, &session, &patient, "trends", move |reader, banner| {
        let mut pairs = vec![
            ("patient", id.clone()),
            ("code", format!("http://loinc.org|{}", measure.code)),
            ("_sort", "date".to_string()),
        ];
        if let Some(f) = f {
            pairs.push(("date", format!("ge{f}")));
        }
        if let Some(t) = t {
            pairs.push(("date", format!("le{t}")));
        }
        // A role that does not read observations sees the page say so, not an error.
        let observations = reader.search_if_allowed("Observation", &pairs, 1000)?;
        Ok((banner, observations))
    })
    .await?;
    let (banner, observations) = match loaded {
        Ok(l) => l,
        Err(closed) => return Ok((axum::http::StatusCode::FORBIDDEN, closed).into_response()),
    };
    let shown = observations.is_some();
    let observations = observations.unwrap_or_default();
    let series = series_of(measure, &observations);
    let range = range_of(measure, &observations);
    let title = format!("{} ({})", measure.label, measure.unit);
    let svg = chart::draw(&chart::Chart {
        title: &title,
        unit: measure.unit,
        series: &series,
        range: range.as_ref(),
        width: 880,
        height: 380,
    });
    let svg = match svg {
        Ok(svg) => Some(svg),
        Err(chart::ChartError::Empty) => None,
        Err(e) => {
            tracing::error!(error = %e, "trend chart could not be drawn");
            None
        }
    };
    let rows: Vec<(&Point, &str)> = {
        let mut rows: Vec<(&Point, &str)> =
            series.iter().flat_map(|s| s.points.iter().map(move |p| (p, s.name.as_str()))).collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.0.at));
        rows
    };
    let base = format!("/app/patients/{patient}/trends");
    let content = html! {
        h2 { "Trends" }
        nav aria-label="Measures" class="tabs" { ul { @for m in MEASURES {
            li { @if m.key == measure.key { a href={ (base) "?measure=" (m.key) } aria-current="page" { (m.label) } }
                 @else { a href={ (base) "?measure=" (m.key) } { (m.label) } } }
        } } }
        form class="filters" method="get" {
            input type="hidden" name="measure" value=(measure.key);
            div class="field" { label for="from" { "From" } br; input id="from" name="from" type="date" value=[from.as_deref()]; }
            div class="field" { label for="to" { "To" } br; input id="to" name="to" type="date" value=[to.as_deref()]; }
            button type="submit" { "Show period" }
        }
        @for p in &problems { p class="error" role="alert" { (p) } }
        h3 id="trend-title" { (title) }
        @if let Some(range) = &range { p { "Reference range: " (range.text) } }
        @match &svg {
            Some(svg) => { figure class="chart" id="trend-chart" aria-labelledby="trend-title" { (PreEscaped(svg)) } }
            None if !shown => { p id="trend-chart" { "Results are not shown to your role." } }
            None => { p id="trend-chart" { "No results for this measure in this period." } }
        }
        @if !rows.is_empty() {
            table id="trend-table" {
                caption { (measure.label) ", newest first" }
                thead { tr { th scope="col" { "Date" } th scope="col" { "Series" } th scope="col" { "Value" } } }
                tbody { @for (point, name) in &rows {
                    @let out = range.as_ref().is_some_and(|r| r.high.is_some_and(|h| point.value > h) || r.low.is_some_and(|l| point.value < l));
                    tr { td { (display::day_time(point.at)) } td { (name) } td class=[out.then_some("abnormal")] { (point.label) @if out { " (outside range)" } } }
                } }
            }
        }
    };
    Ok(layout::chart_page(&session, &banner, Tab::Trends, "Trends", content).into_response())
}
