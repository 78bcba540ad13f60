//! Trends: one measure of a patient over any period, as an SVG chart with its reference range
//! and, for accessibility, the same values as a table.

use crate::WebApp;
use crate::display;
use crate::error::WebError;
use crate::layout::{self, Tab};
use crate::pages::open_chart;
use crate::plots::{self, Point};
use crate::session::Session;
use ::chart::trends::MEASURES;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{PreEscaped, html};
use std::collections::HashMap;

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
        Ok((banner, ::chart::trends::trend(&reader.access, &id, measure, f.as_deref(), t.as_deref())?))
    })
    .await?;
    let (banner, ::chart::trends::Trend { shown, series, range }) = match loaded {
        Ok(l) => l,
        Err(closed) => return Ok((axum::http::StatusCode::FORBIDDEN, closed).into_response()),
    };
    let title = format!("{} ({})", measure.label, measure.unit);
    let svg = plots::draw(&plots::Chart {
        title: &title,
        unit: measure.unit,
        series: &series,
        range: range.as_ref(),
        width: 880,
        height: 380,
    });
    let svg = match svg {
        Ok(svg) => Some(svg),
        Err(plots::ChartError::Empty) => None,
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
                    @let out = range.as_ref().is_some_and(|r| r.excludes(point.value));
                    tr { td { (display::day_time(point.at)) } td { (name) } td class=[out.then_some("abnormal")] { (point.label) @if out { " (outside range)" } } }
                } }
            }
        }
    };
    Ok(layout::chart_page(&session, &banner, Tab::Trends, "Trends", content).into_response())
}
