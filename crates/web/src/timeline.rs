//! The longitudinal timeline: every encounter, result, note, procedure, medication change,
//! immunization and document of a patient, newest first, across organizations, each with its
//! source organization (from the resource, else from its Provenance), filterable by type,
//! date range and organization, a page at a time (a cursor, so years of history stay fast).

use crate::WebApp;
use crate::clinical::Reader;
use crate::display;
use crate::error::WebError;
use crate::layout::{self, Tab};
use crate::pages::open_chart;
use crate::session::Session;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use time::OffsetDateTime;

/// Entries per page.
const PAGE: usize = 40;

/// A kind of entry: its label, the resource type, the date parameter, extra filters.
struct Kind {
    key: &'static str,
    label: &'static str,
    resource_type: &'static str,
    date_param: &'static str,
    extra: &'static [(&'static str, &'static str)],
}

const KINDS: &[Kind] = &[
    Kind { key: "encounter", label: "Encounter", resource_type: "Encounter", date_param: "date", extra: &[] },
    Kind {
        key: "result",
        label: "Result",
        resource_type: "Observation",
        date_param: "date",
        extra: &[("category", "laboratory")],
    },
    Kind { key: "report", label: "Report", resource_type: "DiagnosticReport", date_param: "date", extra: &[] },
    Kind { key: "note", label: "Note", resource_type: "DocumentReference", date_param: "date", extra: &[] },
    Kind { key: "procedure", label: "Procedure", resource_type: "Procedure", date_param: "date", extra: &[] },
    Kind {
        key: "medication",
        label: "Medication",
        resource_type: "MedicationRequest",
        date_param: "authoredon",
        extra: &[],
    },
    Kind { key: "immunization", label: "Immunization", resource_type: "Immunization", date_param: "date", extra: &[] },
    Kind { key: "document", label: "Document", resource_type: "Composition", date_param: "date", extra: &[] },
];

/// One line of the timeline.
struct Entry {
    at: OffsetDateTime,
    kind: &'static Kind,
    reference: String,
    title: String,
    detail: String,
    organization: Option<String>,
    link: Option<String>,
}

/// The filters, as asked.
#[derive(Default, Clone)]
struct Filters {
    kinds: Vec<&'static str>,
    from: Option<String>,
    to: Option<String>,
    organization: Option<String>,
    /// The cursor: entries strictly older than this (seconds, then reference).
    before: Option<(i64, String)>,
}

fn parse_filters(query: &HashMap<String, String>, raw: &str) -> Result<Filters, String> {
    let mut filters = Filters::default();
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        if name == "type"
            && let Some(kind) = KINDS.iter().find(|k| k.key == value)
            && !filters.kinds.contains(&kind.key)
        {
            filters.kinds.push(kind.key);
        }
    }
    let date = |name: &str| -> Result<Option<String>, String> {
        match query.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]"))
                .map(|_| Some(v.to_string()))
                .map_err(|_| format!("“{name}” must be a real date (YYYY-MM-DD)")),
        }
    };
    filters.from = date("from")?;
    filters.to = date("to")?;
    if let (Some(from), Some(to)) = (&filters.from, &filters.to)
        && from > to
    {
        return Err("the start date is after the end date".into());
    }
    filters.organization = query.get("org").map(|o| o.trim().to_string()).filter(|o| !o.is_empty());
    if let Some(before) = query.get("before") {
        let (seconds, reference) = before.split_once('~').ok_or("the page link is not valid")?;
        let seconds: i64 = seconds.parse().map_err(|_| "the page link is not valid")?;
        filters.before = Some((seconds, reference.to_string()));
    }
    Ok(filters)
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The organization a resource names as its source, if any.
fn own_organization(resource: &Value) -> Option<(Option<String>, Option<String>)> {
    let candidates = [
        resource.get("serviceProvider"),
        resource.get("custodian"),
        resource.pointer("/performer/0/onBehalfOf"),
        resource.pointer("/performer/0/actor"),
        resource.pointer("/performer/0"),
        resource.get("requester"),
        resource.get("author").and_then(|a| a.get(0)),
    ];
    for reference in candidates.into_iter().flatten() {
        let target = reference.get("reference").and_then(Value::as_str);
        if target.is_some_and(|t| t.starts_with("Organization/"))
            || reference.get("type").and_then(Value::as_str) == Some("Organization")
        {
            return Some((
                target.map(str::to_string),
                reference.get("display").and_then(Value::as_str).map(str::to_string),
            ));
        }
    }
    None
}

fn describe(kind: &Kind, resource: &Value) -> (String, String) {
    let status = resource.get("status").and_then(Value::as_str).unwrap_or("");
    match kind.resource_type {
        "Encounter" => {
            let class = resource.pointer("/class/code").and_then(Value::as_str).unwrap_or("");
            let reason = display::concept(resource.pointer("/reasonCode/0"));
            (display::concept(resource.pointer("/type/0")), format!("{class} {reason}").trim().to_string())
        }
        "Observation" => (display::concept(resource.get("code")), display::observation_value(resource)),
        "DiagnosticReport" => {
            let count = resource.get("result").and_then(Value::as_array).map_or(0, Vec::len);
            (display::concept(resource.get("code")), format!("{count} results"))
        }
        "DocumentReference" => {
            let doc_status = resource.get("docStatus").and_then(Value::as_str).unwrap_or("");
            let title = resource
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| display::concept(resource.get("type")));
            let state = match (status, doc_status) {
                ("superseded", _) => "superseded by an amendment",
                ("entered-in-error", _) => "entered in error",
                (_, "final") => "signed",
                (_, "amended") => "signed amendment",
                (_, "preliminary") => "draft",
                _ => status,
            };
            (title, state.to_string())
        }
        "MedicationRequest" => {
            let reason = display::concept(resource.get("statusReason"));
            (crate::pages::medication_name(resource), format!("{status} {reason}").trim().to_string())
        }
        "Immunization" => (display::concept(resource.get("vaccineCode")), status.to_string()),
        "Composition" => {
            (resource.get("title").and_then(Value::as_str).unwrap_or("Document").to_string(), status.to_string())
        }
        _ => (display::concept(resource.get("code")), status.to_string()),
    }
}

/// One page of the timeline.
struct TimelinePage {
    entries: Vec<Entry>,
    /// Older entries exist.
    more: bool,
    /// The organizations seen on the page, as (reference, display name).
    organizations: Vec<(String, String)>,
    /// Kinds the user's role does not read (left out, and said so).
    hidden: Vec<&'static str>,
}

/// One page of the timeline, read through the policy.
fn load(reader: &Reader, patient: &str, filters: &Filters) -> Result<TimelinePage, WebError> {
    let mut hidden = Vec::new();
    let kinds: Vec<&'static Kind> = if filters.kinds.is_empty() {
        KINDS.iter().collect()
    } else {
        KINDS.iter().filter(|k| filters.kinds.contains(&k.key)).collect()
    };
    // With an organization filter more is read per kind, then filtered.
    let per_kind = if filters.organization.is_some() { PAGE * 4 } else { PAGE + 1 };
    let mut entries = Vec::new();
    for kind in kinds {
        let mut pairs: Vec<(&str, String)> = vec![("patient", patient.to_string())];
        pairs.extend(kind.extra.iter().map(|(k, v)| (*k, v.to_string())));
        pairs.push(("_sort", format!("-{}", kind.date_param)));
        if let Some((seconds, _)) = &filters.before
            && let Ok(at) = OffsetDateTime::from_unix_timestamp(*seconds + 1)
        {
            pairs.push((kind.date_param, format!("lt{}", rfc3339(at))));
        }
        if let Some(from) = &filters.from {
            pairs.push((kind.date_param, format!("ge{from}")));
        }
        if let Some(to) = &filters.to {
            pairs.push((kind.date_param, format!("le{to}")));
        }
        let Some(found) = reader.search_if_allowed(kind.resource_type, &pairs, per_kind)? else {
            hidden.push(kind.label);
            continue;
        };
        for resource in found {
            let Some(at) = display::when(&resource).and_then(display::instant) else { continue };
            let id = resource.get("id").and_then(Value::as_str).unwrap_or_default();
            let reference = format!("{}/{id}", kind.resource_type);
            if let Some((seconds, last)) = &filters.before
                && (at.unix_timestamp(), reference.as_str()) >= (*seconds, last.as_str())
            {
                continue;
            }
            let (title, detail) = describe(kind, &resource);
            let organization = own_organization(&resource);
            let link =
                (kind.resource_type == "DocumentReference").then(|| format!("/app/patients/{patient}/notes/{id}"));
            let encounter =
                display::reference(resource.get("encounter").or_else(|| resource.pointer("/context/encounter/0")))
                    .filter(|r| r.starts_with("Encounter/"))
                    .map(str::to_string);
            entries.push((
                Entry { at, kind, reference, title, detail, organization: None, link },
                organization,
                encounter,
            ));
        }
    }
    entries.sort_by(|a, b| (b.0.at, &b.0.reference).cmp(&(a.0.at, &a.0.reference)));
    // Sources not named by the resource come from its Provenance, in one search.
    let unnamed: Vec<String> =
        entries.iter().filter(|(_, o, _)| o.is_none()).take(PAGE * 4).map(|(e, _, _)| e.reference.clone()).collect();
    let mut provenance: HashMap<String, String> = HashMap::new();
    if !unnamed.is_empty() {
        for chunk in unnamed.chunks(100) {
            let found = reader.search_if_allowed("Provenance", &[("target", chunk.join(","))], 200)?;
            for prov in found.into_iter().flatten() {
                let org = prov.get("agent").and_then(Value::as_array).into_iter().flatten().find_map(|agent| {
                    [agent.get("onBehalfOf"), agent.get("who")]
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r.get("reference").and_then(Value::as_str))
                        .find(|r| r.starts_with("Organization/"))
                        .map(str::to_string)
                });
                let Some(org) = org else { continue };
                for target in prov.get("target").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(t) = target.get("reference").and_then(Value::as_str)
                        && chunk.iter().any(|c| c == t)
                    {
                        provenance.entry(t.to_string()).or_insert_with(|| org.clone());
                    }
                }
            }
        }
    }
    // Else from the encounter the resource belongs to (its service provider), in one search.
    let visits: BTreeSet<&str> = entries
        .iter()
        .take(PAGE * 4)
        .filter(|(e, o, _)| o.is_none() && !provenance.contains_key(&e.reference))
        .filter_map(|(_, _, encounter)| encounter.as_deref()?.strip_prefix("Encounter/"))
        .collect();
    let visits: Vec<&str> = visits.into_iter().collect();
    let mut providers: HashMap<String, String> = HashMap::new();
    for chunk in visits.chunks(100) {
        for visit in reader.search_if_allowed("Encounter", &[("_id", chunk.join(","))], 200)?.into_iter().flatten() {
            if let (Some(id), Some(provider)) = (
                visit.get("id").and_then(Value::as_str),
                display::reference(visit.get("serviceProvider")).filter(|r| r.starts_with("Organization/")),
            ) {
                providers.insert(format!("Encounter/{id}"), provider.to_string());
            }
        }
    }
    let inferred = |entry: &Entry, encounter: &Option<String>| -> Option<String> {
        provenance.get(&entry.reference).or_else(|| encounter.as_ref().and_then(|e| providers.get(e))).cloned()
    };
    // Organization names, in one search.
    let mut org_refs: BTreeSet<String> = BTreeSet::new();
    for (entry, own, encounter) in &entries {
        match own {
            Some((Some(r), _)) => {
                org_refs.insert(r.clone());
            }
            Some((None, _)) => {}
            None => {
                if let Some(r) = inferred(entry, encounter) {
                    org_refs.insert(r);
                }
            }
        }
    }
    let ids: Vec<&str> = org_refs.iter().filter_map(|r| r.strip_prefix("Organization/")).collect();
    let mut names: HashMap<String, String> = HashMap::new();
    for chunk in ids.chunks(100) {
        for org in reader.search("Organization", &[("_id", chunk.join(","))], 200)? {
            if let (Some(id), Some(name)) =
                (org.get("id").and_then(Value::as_str), org.get("name").and_then(Value::as_str))
            {
                names.insert(format!("Organization/{id}"), name.to_string());
            }
        }
    }
    let mut organizations: Vec<(String, String)> = names.iter().map(|(r, n)| (r.clone(), n.clone())).collect();
    organizations.sort_by(|a, b| a.1.cmp(&b.1));
    let mut out = Vec::new();
    for (mut entry, own, encounter) in entries {
        let (reference, shown) = match own {
            Some((r, display)) => {
                let name = r.as_ref().and_then(|r| names.get(r)).cloned().or(display);
                (r, name)
            }
            None => {
                let r = inferred(&entry, &encounter);
                let name = r.as_ref().and_then(|r| names.get(r).cloned());
                (r, name)
            }
        };
        if let Some(wanted) = &filters.organization
            && reference.as_deref() != Some(wanted.as_str())
        {
            continue;
        }
        entry.organization = shown;
        out.push(entry);
        if out.len() > PAGE {
            break;
        }
    }
    let more = out.len() > PAGE;
    out.truncate(PAGE);
    Ok(TimelinePage { entries: out, more, organizations, hidden })
}

/// `GET /app/patients/{id}/timeline?type=&from=&to=&org=&before=`.
pub(crate) async fn page(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
) -> Result<Response, WebError> {
    let raw = uri.query().unwrap_or("").to_string();
    let (filters, problem) = match parse_filters(&query, &raw) {
        Ok(f) => (f, None),
        Err(e) => (Filters::default(), Some(e)),
    };
    let f = filters.clone();
    let id = patient.clone();
    let loaded =
        open_chart(&app, &session, &patient, "timeline", move |reader, banner| Ok((banner, load(reader, &id, &f)?)))
            .await?;
    let (banner, TimelinePage { entries, more, organizations, hidden }) = match loaded {
        Ok(l) => l,
        Err(closed) => return Ok((axum::http::StatusCode::FORBIDDEN, closed).into_response()),
    };
    let next = entries.last().filter(|_| more).map(|last| {
        let mut link = form_urlencoded::Serializer::new(String::new());
        for kind in &filters.kinds {
            link.append_pair("type", kind);
        }
        if let Some(from) = &filters.from {
            link.append_pair("from", from);
        }
        if let Some(to) = &filters.to {
            link.append_pair("to", to);
        }
        if let Some(org) = &filters.organization {
            link.append_pair("org", org);
        }
        link.append_pair("before", &format!("{}~{}", last.at.unix_timestamp(), last.reference));
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
            div class="field" { label for="from" { "From" } br; input id="from" name="from" type="date" value=[filters.from.as_deref()]; }
            div class="field" { label for="to" { "To" } br; input id="to" name="to" type="date" value=[filters.to.as_deref()]; }
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
                    @if let Some(link) = &e.link { a href=(link) { (e.title) } } @else { (e.title) }
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
