//! The page shell: the document, the header, the patient banner and the chart's tabs, and
//! the one stylesheet (readable at 200% zoom: relative units, wrapping layout, visible focus).

use crate::clinical::Reader;
use crate::display;
use crate::error::WebError;
use crate::session::Session;
use axum::http::header;
use axum::response::IntoResponse;
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

/// A page without the header (sign-in, errors).
pub(crate) fn bare_page(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Continuum" }
                link rel="stylesheet" href="/app/static/app.css";
            }
            body { (content) }
        }
    }
}

/// A page of the signed-in app.
pub(crate) fn page(session: &Session, title: &str, content: Markup) -> Markup {
    bare_page(
        title,
        html! {
            a class="skip" href="#main" { "Skip to content" }
            header class="top" {
                a class="brand" href="/app/patients" { "Continuum" }
                nav aria-label="App" {
                    a href="/app/patients" { "Patients" }
                    " " a href="/app/alerts" { "Alerts" }
                    " " a href="/app/discharges" { "Discharges" }
                    @if session.caller.roles().iter().any(|r| matches!(r, auth::Role::Physician | auth::Role::Nurse | auth::Role::BehavioralHealthClinician | auth::Role::CareManager)) {
                        " " a href="/app/tasks" { "Tasks" }
                        " " a href="/app/referrals" { "Referrals" }
                    }
                    @if session.caller.roles().iter().any(|r| matches!(r, auth::Role::Administrator | auth::Role::FrontDesk)) {
                        " " a href="/app/duplicates" { "Duplicates" }
                    }
                }
                form class="signout" method="post" action="/app/sign-out" {
                    span { "Signed in as " strong { (session.username()) } }
                    input type="hidden" name="csrf" value=(session.csrf);
                    button type="submit" { "Sign out" }
                }
            }
            main id="main" { (content) }
        },
    )
}

/// What the banner says of allergies.
pub(crate) enum Allergies {
    /// Active allergies and intolerances (substance, criticality).
    Recorded(Vec<String>),
    /// Recorded as "no known allergies".
    NoneKnown,
    /// Nothing recorded either way.
    NotRecorded,
    /// The user's role does not read allergies.
    NotShown,
}

/// The patient banner, on every chart page.
pub(crate) struct Banner {
    pub id: String,
    pub name: String,
    pub birth_date: Option<String>,
    pub age: Option<i32>,
    pub sex: String,
    pub mrn: Option<String>,
    pub allergies: Allergies,
    pub care_team: Vec<String>,
    pub flags: Vec<String>,
    pub deceased: bool,
    /// The day of death, when recorded.
    pub died: Option<String>,
    pub glass: bool,
}

impl Banner {
    /// Reads the banner's facts (through the policy, like every read).
    pub(crate) fn load(reader: &Reader, patient_id: &str) -> Result<Banner, WebError> {
        let patient = reader.read("Patient", patient_id)?;
        let allergies = reader.search_if_allowed("AllergyIntolerance", &[("patient", patient_id.to_string())], 100)?;
        let shown = allergies.is_some();
        let mut recorded = Vec::new();
        let mut none_known = false;
        for allergy in allergies.iter().flatten() {
            let status = display::first_code(allergy.get("clinicalStatus")).unwrap_or("active");
            let verification = display::first_code(allergy.get("verificationStatus")).unwrap_or("confirmed");
            // Allergies from imported documents count once a clinician accepted them.
            if status != "active"
                || matches!(verification, "refuted" | "entered-in-error")
                || chart::reconcile::is_held_back(allergy)
            {
                continue;
            }
            if chart::lists::is_no_known_allergy(allergy) {
                none_known = true;
                continue;
            }
            let mut text = display::concept(allergy.get("code"));
            if let Some(criticality) = allergy.get("criticality").and_then(Value::as_str)
                && criticality == "high"
            {
                text.push_str(" (high criticality)");
            }
            recorded.push(text);
        }
        let allergies = match (recorded.is_empty(), none_known) {
            _ if !shown => Allergies::NotShown,
            (false, _) => Allergies::Recorded(recorded),
            (true, true) => Allergies::NoneKnown,
            (true, false) => Allergies::NotRecorded,
        };
        let teams = reader
            .search_if_allowed("CareTeam", &[("patient", patient_id.to_string()), ("status", "active".into())], 10)?
            .unwrap_or_default();
        let mut care_team = Vec::new();
        for team in &teams {
            for participant in team.get("participant").and_then(Value::as_array).into_iter().flatten() {
                let member = participant.get("member");
                // The patient is on their own care team; the banner names the others.
                let reference = member.and_then(|m| m.get("reference")).and_then(Value::as_str).unwrap_or("");
                if reference.starts_with("Patient/") {
                    continue;
                }
                let name = member
                    .and_then(|m| m.get("display"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| display::reference(member).map(str::to_string));
                let role = display::concept(participant.get("role").and_then(|r| r.get(0)));
                if let Some(name) = name {
                    let entry = if role.is_empty() { name } else { format!("{name} ({role})") };
                    if !care_team.contains(&entry) {
                        care_team.push(entry);
                    }
                }
            }
        }
        care_team.truncate(6);
        let flags = reader
            .search_if_allowed("Flag", &[("patient", patient_id.to_string()), ("status", "active".into())], 10)?
            .unwrap_or_default();
        let birth_date = patient.get("birthDate").and_then(Value::as_str).map(str::to_string);
        let died = patient.get("deceasedDateTime").and_then(Value::as_str).map(str::to_string);
        let deceased = died.is_some() || patient.get("deceasedBoolean").and_then(Value::as_bool).unwrap_or(false);
        // The age today, or at death (the age of someone who died is not what they would be now).
        let age_on = match died.as_deref().and_then(display::instant) {
            Some(at) => at.date(),
            None if deceased => time::Date::MIN,
            None => display::today(),
        };
        Ok(Banner {
            id: patient_id.to_string(),
            name: display::person_name(&patient),
            age: birth_date.as_deref().and_then(|b| display::age(b, age_on)),
            died: died.as_deref().map(display::day),
            birth_date,
            sex: patient.get("gender").and_then(Value::as_str).unwrap_or("unknown").to_string(),
            mrn: display::mrn(&patient),
            allergies,
            care_team,
            flags: flags.iter().map(|f| display::concept(f.get("code"))).collect(),
            deceased,
            glass: reader.caller.under_glass(patient_id),
        })
    }

    fn render(&self) -> Markup {
        html! {
            section class="banner" aria-label="Patient" {
                h1 class="patient-name" { (self.name) }
                dl class="facts" {
                    div { dt { "Born" } dd { (self.birth_date.as_deref().unwrap_or("unknown"))
                        @if let Some(age) = self.age { " (" (age) " y" @if self.deceased { " at death" } ")" } } }
                    div { dt { "Sex" } dd { (self.sex) } }
                    div { dt { "MRN" } dd { (self.mrn.as_deref().unwrap_or("—")) } }
                    @if self.deceased { div { dt { "Status" } dd { strong { "Deceased" } @if let Some(day) = &self.died { " " (day) } } } }
                }
                div class="allergies" id="banner-allergies" {
                    strong { "Allergies: " }
                    @match &self.allergies {
                        Allergies::Recorded(list) => { span class="allergy-list" { (list.join("; ")) } }
                        Allergies::NoneKnown => { span { "No known allergies" } }
                        Allergies::NotRecorded => { span class="warn" { "Not recorded" } }
                        Allergies::NotShown => { span class="warn" { "Not shown to your role" } }
                    }
                }
                @if !self.care_team.is_empty() {
                    div class="careteam" { strong { "Care team: " } (self.care_team.join("; ")) }
                }
                @if !self.flags.is_empty() {
                    ul class="flags" aria-label="Flags" { @for flag in &self.flags { li { (flag) } } }
                }
                @if self.glass {
                    p class="glass" role="status" { "Emergency access (break-the-glass) is in effect; every view is audited." }
                }
            }
        }
    }
}

/// The chart's tabs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tab {
    Summary,
    Timeline,
    Trends,
    Note,
    Vitals,
    Lists,
    /// The care team across organizations.
    CareTeam,
    /// Reconciliation of incoming items (a tab only while open: the summary links to it).
    Reconcile,
    /// Shared care plans.
    CarePlans,
    /// PHQ-9 and GAD-7.
    Screening,
}

/// A chart page: banner, tabs, content.
pub(crate) fn chart_page(session: &Session, banner: &Banner, tab: Tab, title: &str, content: Markup) -> Markup {
    let base = format!("/app/patients/{}", banner.id);
    let tabs = [
        (Tab::Summary, "Summary", base.clone()),
        (Tab::Timeline, "Timeline", format!("{base}/timeline")),
        (Tab::Trends, "Trends", format!("{base}/trends")),
        (Tab::Note, "New note", format!("{base}/notes/new")),
        (Tab::Vitals, "Vitals", format!("{base}/vitals")),
        (Tab::Lists, "Problems, allergies, medications", format!("{base}/lists")),
        (Tab::CareTeam, "Care team", format!("{base}/care-team")),
        (Tab::CarePlans, "Care plans", format!("{base}/care-plans")),
        (Tab::Screening, "PHQ-9 / GAD-7", format!("{base}/screening")),
    ];
    let extra = (tab == Tab::Reconcile).then(|| (Tab::Reconcile, "Reconcile", format!("{base}/reconcile")));
    let tabs: Vec<_> = tabs.into_iter().chain(extra).collect();
    page(
        session,
        &format!("{title} — {}", banner.name),
        html! {
            (banner.render())
            nav class="tabs" aria-label="Chart" {
                ul { @for (t, label, href) in &tabs {
                    li { @if *t == tab { a href=(href) aria-current="page" { (label) } } @else { a href=(href) { (label) } } }
                } }
            }
            (content)
        },
    )
}

/// `GET /app/static/app.css`.
pub(crate) async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], STYLESHEET)
}

const STYLESHEET: &str = r#"
:root { --ink: #1b1f24; --muted: #5a6270; --line: #c9ced6; --accent: #0b5cad; --warn: #9a3412; --bad: #b00020; --bg: #f7f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 1rem/1.5 system-ui, sans-serif; color: var(--ink); background: var(--bg); }
a { color: var(--accent); }
:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
.skip { position: absolute; left: -999em; } .skip:focus { left: 1em; top: 1em; background: #fff; padding: .5em; }
header.top { display: flex; flex-wrap: wrap; gap: 1em; align-items: center; padding: .5em 1em; background: #10243e; color: #fff; }
header.top a { color: #fff; } .brand { font-weight: 700; text-decoration: none; }
.signout { margin-left: auto; display: flex; gap: .5em; align-items: center; flex-wrap: wrap; }
main { padding: 1em; max-width: 75em; margin: 0 auto; } main.narrow { max-width: 28em; margin-top: 3em; }
.banner { background: #fff; border: 1px solid var(--line); border-left: .4em solid var(--accent); padding: .5em 1em; margin-bottom: .5em; }
.banner h1 { margin: 0; font-size: 1.5rem; }
.facts { display: flex; flex-wrap: wrap; gap: .25em 2em; margin: .25em 0; } .facts div { display: flex; gap: .4em; } .facts dt { color: var(--muted); } .facts dd { margin: 0; }
.allergies .allergy-list { color: var(--bad); font-weight: 600; } .warn { color: var(--warn); font-weight: 600; }
.flags { display: flex; gap: .5em; padding: 0; list-style: none; flex-wrap: wrap; } .flags li { background: #fde68a; padding: 0 .5em; border-radius: .25em; }
.glass { background: #fee2e2; padding: .25em .5em; }
.tabs ul { display: flex; flex-wrap: wrap; gap: .25em; list-style: none; padding: 0; margin: .5em 0 1em; border-bottom: 1px solid var(--line); }
.tabs a { display: block; padding: .4em .8em; text-decoration: none; border: 1px solid transparent; }
.tabs a[aria-current] { border-color: var(--line); border-bottom-color: var(--bg); background: var(--bg); font-weight: 600; margin-bottom: -1px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 22em), 1fr)); gap: 1em; }
section.card { background: #fff; border: 1px solid var(--line); padding: .5em 1em; } section.card h2 { font-size: 1.1rem; margin: .25em 0 .5em; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: .25em .5em; border-bottom: 1px solid var(--line); vertical-align: top; }
.abnormal { color: var(--bad); font-weight: 700; } .muted { color: var(--muted); }
.error { color: var(--bad); font-weight: 600; } .ok { color: #166534; font-weight: 600; }
form.filters { display: flex; flex-wrap: wrap; gap: .5em 1em; align-items: end; margin-bottom: 1em; }
label { font-weight: 600; } input, select, textarea, button { font: inherit; } textarea { width: 100%; min-height: 6em; }
button { padding: .3em .9em; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: .2em; cursor: pointer; }
button.secondary { background: #fff; color: var(--accent); }
fieldset { border: 1px solid var(--line); margin: 0 0 1em; } .field { margin: .5em 0; }
.timeline li { list-style: none; border-left: 3px solid var(--line); padding: .25em 0 .5em 1em; }
.timeline .kind { font-weight: 600; } .timeline .src { color: var(--muted); }
.chart svg { max-width: 100%; height: auto; } .chart .point:focus circle, .chart .point:hover circle { stroke: #111; stroke-width: 2; fill: #fff; }
.note-text { white-space: pre-wrap; background: #fff; border: 1px solid var(--line); padding: .5em; }
td.muted { white-space: nowrap; }
.decisions form { display: inline-block; margin: 0 .25em .25em 0; } ul.codes { margin: 0; padding-left: 1em; } ul.codes code { overflow-wrap: anywhere; }
.reconcile h3 { font-size: 1.1rem; margin: .25em 0 .5em; } .reconcile h4 { margin: .25em 0; } .reconcile-link a { font-weight: 600; }
.note-text h3 { font-size: 1em; margin: .6em 0 .2em; } .note-text h3:first-child { margin-top: 0; } .note-text p { margin: 0 0 .4em; }
"#;
