//! Reconciliation: the problems, allergies and medications that came from outside (an
//! imported document) and wait for a clinician, beside the chart's current lists. Each is
//! accepted, rejected or merged into an item of the chart by [`chart::reconcile::decide`];
//! the app only shows the queue and passes the decision on.

use crate::WebApp;
use crate::clinical::{Reader, as_user};
use crate::error::WebError;
use crate::layout::{self, Banner, Tab};
use crate::pages::open_chart;
use crate::session::Session;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chart::reconcile::{Decision, Incoming};
use maud::{Markup, html};
use std::collections::HashMap;

/// The families the page groups items in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Problems,
    Allergies,
    Medications,
}

impl Family {
    const ALL: [Family; 3] = [Family::Problems, Family::Allergies, Family::Medications];

    fn of(resource_type: &str) -> Family {
        match resource_type {
            "Condition" => Family::Problems,
            "AllergyIntolerance" => Family::Allergies,
            _ => Family::Medications,
        }
    }

    fn heading(self) -> &'static str {
        match self {
            Family::Problems => "Problems",
            Family::Allergies => "Allergies and intolerances",
            Family::Medications => "Medications",
        }
    }

    fn anchor(self) -> &'static str {
        match self {
            Family::Problems => "problems",
            Family::Allergies => "allergies",
            Family::Medications => "medications",
        }
    }
}

/// An item of the chart's list: its type, id and what the page says of it.
struct ChartItem {
    resource_type: &'static str,
    id: String,
    label: String,
}

/// The chart's items of a family.
fn chart_items(lists: &chart::lists::Lists, family: Family) -> Vec<ChartItem> {
    match family {
        Family::Problems => lists
            .problems
            .iter()
            .map(|p| ChartItem {
                resource_type: "Condition",
                id: p.id.clone(),
                label: if p.status.is_empty() { p.name.clone() } else { format!("{} ({})", p.name, p.status) },
            })
            .collect(),
        Family::Allergies => lists
            .allergies
            .iter()
            .map(|a| ChartItem {
                resource_type: "AllergyIntolerance",
                id: a.id.clone(),
                label: format!("{} ({})", a.substance, a.status),
            })
            .collect(),
        Family::Medications => lists
            .medications
            .iter()
            .map(|m| ChartItem {
                resource_type: "MedicationRequest",
                id: m.id.clone(),
                label: if m.status.is_empty() { m.name.clone() } else { format!("{} ({})", m.name, m.status) },
            })
            .collect(),
    }
}

/// What the reconciliation page shows.
struct ReconcilePage {
    banner: Banner,
    queue: Vec<Incoming>,
    lists: chart::lists::Lists,
}

/// What a decision did, for the notice after it.
fn notice(done: &str) -> Option<&'static str> {
    match done {
        "accepted" => Some("Accepted: the item is now on the chart's list."),
        "rejected" => Some("Rejected: the item stays off the chart (kept, marked entered in error)."),
        "merged" => Some("Merged: its codes were added to the chart's item, and the incoming item retired."),
        _ => None,
    }
}

fn render(session: &Session, page: &ReconcilePage, done: Option<&str>) -> Markup {
    let base = format!("/app/patients/{}/reconcile", page.banner.id);
    let content = html! {
        h2 { "Reconcile incoming items" }
        @if let Some(text) = done.and_then(notice) { p class="ok" role="status" { (text) } }
        p { "Problems, allergies and medications from imported documents wait here, off the chart, until you accept, reject or merge each one into an item of the chart." }
        @if page.queue.is_empty() { p class="muted" { "Nothing is waiting." } }
        @for family in Family::ALL {
            @let incoming: Vec<&Incoming> = page.queue.iter().filter(|i| Family::of(&i.resource_type) == family).collect();
            @let on_chart = chart_items(&page.lists, family);
            section class="card reconcile" aria-labelledby={ "h-" (family.anchor()) } {
                h3 id={ "h-" (family.anchor()) } { (family.heading()) }
                div class="grid" {
                    div {
                        h4 { "Incoming (" (incoming.len()) ")" }
                        @if incoming.is_empty() { p class="muted" { "None waiting." } } @else {
                            table {
                                thead { tr { th scope="col" { "Item" } th scope="col" { "Codes" } th scope="col" { "Decision" } } }
                                tbody { @for item in &incoming {
                                    @let action = format!("{base}/{}/{}", item.resource_type, item.id);
                                    @let targets: Vec<&ChartItem> = on_chart.iter().filter(|c| c.resource_type == item.resource_type).collect();
                                    @let select_id = format!("into-{}-{}", item.resource_type, item.id);
                                    tr {
                                        th scope="row" { (item.name) br; span class="muted" { (item.resource_type) } }
                                        td { ul class="codes" { @for code in chart::reconcile::codes_of(chart::reconcile::concept_of(&item.resource)) {
                                            li { code { (code) } }
                                        } } }
                                        td class="decisions" {
                                            form method="post" action=(action) {
                                                input type="hidden" name="csrf" value=(session.csrf);
                                                input type="hidden" name="decision" value="accept";
                                                button type="submit" aria-label={ "Accept " (item.name) } { "Accept" }
                                            }
                                            form method="post" action=(action) {
                                                input type="hidden" name="csrf" value=(session.csrf);
                                                input type="hidden" name="decision" value="reject";
                                                button type="submit" class="secondary" aria-label={ "Reject " (item.name) } { "Reject" }
                                            }
                                            @if targets.is_empty() {
                                                p class="muted" { "Nothing of this kind on the chart to merge into." }
                                            } @else {
                                                form method="post" action=(action) {
                                                    input type="hidden" name="csrf" value=(session.csrf);
                                                    input type="hidden" name="decision" value="merge";
                                                    label for=(select_id) { "Merge into" } " "
                                                    select id=(select_id) name="into" {
                                                        @for target in &targets { option value=(target.id) { (target.label) } }
                                                    }
                                                    " "
                                                    button type="submit" class="secondary" aria-label={ "Merge " (item.name) } { "Merge" }
                                                }
                                            }
                                        }
                                    }
                                } }
                            }
                        }
                    }
                    div {
                        h4 { "On the chart (" (on_chart.len()) ")" }
                        @if on_chart.is_empty() { p class="muted" { "None recorded." } } @else {
                            ul { @for item in &on_chart { li { (item.label) } } }
                        }
                    }
                }
            }
        }
    };
    layout::chart_page(session, &page.banner, Tab::Reconcile, "Reconcile", content)
}

/// `GET /app/patients/{id}/reconcile[?done=accepted|rejected|merged]`.
pub(crate) async fn page(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let id = patient.clone();
    let loaded = open_chart(&app, &session, &patient, "reconcile", move |reader, banner| {
        Ok(ReconcilePage {
            queue: chart::reconcile::queue(&reader.access, &id)?,
            lists: chart::lists::lists(&reader.access, &id)?,
            banner,
        })
    })
    .await?;
    Ok(match loaded {
        Ok(page) => render(&session, &page, query.get("done").map(String::as_str)).into_response(),
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}

/// `POST /app/patients/{id}/reconcile/{type}/{item}` with `decision` (`accept`, `reject`,
/// `merge` with `into`, the id of the chart's item): the decision, then back to the page.
pub(crate) async fn decide(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, resource_type, item)): Path<(String, String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    if !fhir::reference::is_id(&patient) || !fhir::reference::is_id(&item) {
        return Err(WebError::NotFound);
    }
    let (decision, done) = match form.get("decision").map(String::as_str) {
        Some("accept") => (Decision::Accept, "accepted"),
        Some("reject") => (Decision::Reject, "rejected"),
        Some("merge") => match form.get("into") {
            Some(into) if fhir::reference::is_id(into) => (Decision::MergeInto(into.clone()), "merged"),
            _ => return Err(WebError::BadRequest("choose the chart's item to merge into".into())),
        },
        _ => return Err(WebError::BadRequest("choose accept, reject or merge".into())),
    };
    let reader = Reader::new(&app, &session);
    let p = patient.clone();
    as_user(reader, move |reader| Ok(chart::reconcile::decide(&reader.access, &p, &resource_type, &item, &decision)?))
        .await?;
    Ok(Redirect::to(&format!("/app/patients/{patient}/reconcile?done={done}")).into_response())
}
