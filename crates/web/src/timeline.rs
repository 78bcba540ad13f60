//! The longitudinal timeline page: the `chart` service's timeline ([`chart::timeline`]),
//! filterable by kind, date range and organization, a page at a time.

use crate::WebApp;
use crate::display;
use crate::error::WebError;
use crate::layout::{self, Tab};
use crate::pages::open_chart;
use crate::session::Session;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chart::elements::rfc3339;
use chart::timeline::{Filters, KINDS, TimelinePage};
use maud::html;

/// `GET /app/patients/{id}/timeline?type=&from=&to=&org=&before=`.
pub(crate) async fn page(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, WebError> {
    let raw = uri.query().unwrap_or("");
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let (filters, problem) = match Filters::from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(f) => (f, None),
        Err(e) => (Filters::default(), Some(e.to_string())),
    };
    let f = filters.clone();
    let id = patient.clone();
    let loaded = open_chart(&app, &session, &patient, "timeline", move |reader, banner| {
        Ok((banner, chart::timeline::page(&reader.access, &id, &f)?))
    })
    .await?;
    let (banner, TimelinePage { entries, next, organizations, hidden }) = match loaded {
        Ok(l) => l,
        Err(closed) => return Ok((axum::http::StatusCode::FORBIDDEN, closed).into_response()),
    };
    let next = next.map(|cursor| {
        let mut link = form_urlencoded::Serializer::new(String::new());
        for kind in &filters.kinds {
            link.append_pair("type", kind);
        }
        if let Some(from) = filters.from {
            link.append_pair("from", &from.to_string());
        }
        if let Some(to) = filters.to {
            link.append_pair("to", &to.to_string());
        }
        if let Some(org) = &filters.organization {
            link.append_pair("org", org);
        }
        link.append_pair("before", &cursor.to_text());
        format!("/app/patients/{patient}/timeline?{}", link.finish())
    });
    let content = html! {
        h2 { "Timeline" }
        form class="filters" method="get" {
            fieldset {
                legend { "Show" }
                @for kind in KINDS {
                    label { input type="checkbox" name="type" value=(kind.key) checked[filters.kinds.contains(&kind.key)]; " " (kind.label) } " "
                }
            }
            div class="field" { label for="from" { "From" } br; input id="from" name="from" type="date" value=[filters.from.map(|d| d.to_string())]; }
            div class="field" { label for="to" { "To" } br; input id="to" name="to" type="date" value=[filters.to.map(|d| d.to_string())]; }
            div class="field" { label for="org" { "Organization" } br;
                select id="org" name="org" {
                    option value="" { "All organizations" }
                    @for (r, name) in &organizations { option value=(r) selected[filters.organization.as_deref() == Some(r.as_str())] { (name) } }
                }
            }
            button type="submit" { "Filter" }
        }
        @if let Some(problem) = &problem { p class="error" role="alert" { (problem) } }
        @if !hidden.is_empty() { p class="muted" { "Not shown to your role: " (hidden.join(", ").to_lowercase()) "." } }
        @if entries.is_empty() { p { "Nothing in this period." } }
        ol class="timeline" id="timeline" {
            @for e in &entries {
                li {
                    time datetime=(rfc3339(e.at)) { (display::day_time(e.at)) } " "
                    span class="kind" { (e.kind.label) ": " }
                    @if e.kind.resource_type == "DocumentReference" {
                        a href={ "/app/patients/" (patient) "/notes/" (e.id) } { (e.title) }
                    } @else { (e.title) }
                    @if !e.detail.is_empty() { " — " (e.detail) }
                    br;
                    span class="src" { "Source: " (e.organization.as_deref().unwrap_or("not recorded")) }
                }
            }
        }
        @if let Some(next) = &next { p { a href=(next) rel="next" { "Older entries" } } }
    };
    Ok(layout::chart_page(&session, &banner, Tab::Timeline, "Timeline", content).into_response())
}
