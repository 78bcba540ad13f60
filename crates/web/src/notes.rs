//! Visit notes: written from a template (SOAP, annual wellness, behavioral-health progress
//! note) or as free text, saved as a draft, signed, and amended with the original kept.
//!
//! A note is a `DocumentReference` (its text a `text/plain` attachment, one `## Section`
//! heading per template section) linked to an `Encounter` (an existing one, or a new office
//! visit written in the same transaction). `docStatus` is `preliminary` for a draft, `final`
//! once signed (with the signer as `authenticator`); an amendment is a new DocumentReference
//! with `docStatus` `amended` that `replaces` the original, whose own status becomes
//! `superseded` — its text and every version stay in the record. Behavioral-health notes are
//! labelled `PSY`, so the policy hides them from those who may not see them.

use crate::WebApp;
use crate::clinical::{Reader, as_user};
use crate::display;
use crate::error::WebError;
use crate::forms::{FormProblems, plain_text};
use crate::layout::{self, Banner, Tab};
use crate::pages::open_chart;
use crate::session::Session;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use maud::{Markup, html};
use serde_json::{Value, json};
use std::collections::HashMap;

/// A note template: its sections and its LOINC document type.
pub(crate) struct Template {
    pub key: &'static str,
    pub label: &'static str,
    pub loinc: &'static str,
    pub loinc_display: &'static str,
    pub sections: &'static [&'static str],
    /// Labelled behavioral health (`PSY`).
    pub sensitive: bool,
}

pub(crate) const TEMPLATES: &[Template] = &[
    Template {
        key: "soap",
        label: "SOAP progress note",
        loinc: "11506-3",
        loinc_display: "Progress note",
        sections: &["Subjective", "Objective", "Assessment", "Plan"],
        sensitive: false,
    },
    Template {
        key: "wellness",
        label: "Annual wellness visit",
        loinc: "34901-9",
        loinc_display: "General medicine Outpatient Progress note",
        sections: &["Health risk assessment", "Screenings", "Immunizations reviewed", "Personalized prevention plan"],
        sensitive: false,
    },
    Template {
        key: "bh",
        label: "Behavioral-health progress note",
        loinc: "34904-3",
        loinc_display: "Mental health Progress note",
        sections: &["Presenting concerns", "Mental status", "Risk assessment", "Interventions", "Plan"],
        sensitive: true,
    },
    Template {
        key: "free",
        label: "Free-text note",
        loinc: "11506-3",
        loinc_display: "Progress note",
        sections: &["Note"],
        sensitive: false,
    },
];

fn template(key: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.key == key)
}

/// The template of a stored note (from its type text, else its code).
fn template_of(note: &Value) -> &'static Template {
    let text = note.pointer("/type/text").and_then(Value::as_str).unwrap_or("");
    TEMPLATES.iter().find(|t| t.label == text).unwrap_or(&TEMPLATES[3])
}

const ACT_CODE: &str = policy::consent::ACT_CODE;
const MAX_SECTION: usize = 20_000;

/// The note's text: one `## heading` per section.
fn compose(template: &Template, sections: &[String]) -> String {
    let mut text = String::new();
    for (heading, body) in template.sections.iter().zip(sections) {
        if body.trim().is_empty() {
            continue;
        }
        text.push_str(&format!("## {heading}\n{}\n\n", body.trim_end()));
    }
    text.trim_end().to_string()
}

/// The sections back from a note's text (for editing a draft or amending).
fn decompose(template: &Template, text: &str) -> Vec<String> {
    let mut sections = vec![String::new(); template.sections.len()];
    let mut current: Option<usize> = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ")
            && let Some(i) = template.sections.iter().position(|s| *s == heading.trim())
        {
            current = Some(i);
            continue;
        }
        let i = current.unwrap_or(0);
        if !sections[i].is_empty() {
            sections[i].push('\n');
        }
        sections[i].push_str(line);
    }
    sections.iter().map(|s| s.trim().to_string()).collect()
}

/// The plain text of a note's attachment.
pub(crate) fn note_text(note: &Value) -> String {
    note.pointer("/content/0/attachment/data")
        .and_then(Value::as_str)
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Why a sensitive template is refused.
const SENSITIVE_ONLY: &str =
    "Behavioral-health notes are written and read by behavioral-health clinicians (the records are labelled PSY).";

/// A note's text as (heading, body) sections: a line `## Heading` starts one (the plain-text
/// layout `compose` writes, kept in the stored attachment so any reader can follow it).
fn note_sections(text: &str) -> Vec<(Option<&str>, String)> {
    let mut sections: Vec<(Option<&str>, Vec<&str>)> = vec![(None, Vec::new())];
    for line in text.lines() {
        match line.strip_prefix("## ") {
            Some(heading) => sections.push((Some(heading.trim()), Vec::new())),
            None => {
                if let Some((_, lines)) = sections.last_mut() {
                    lines.push(line);
                }
            }
        }
    }
    sections
        .into_iter()
        .map(|(heading, lines)| (heading, lines.join("\n").trim().to_string()))
        .filter(|(heading, body)| heading.is_some() || !body.is_empty())
        .collect()
}

/// What a note form holds.
#[derive(Default, Clone)]
struct NoteForm {
    title: String,
    encounter: String,
    sections: Vec<String>,
    reason: String,
}

impl NoteForm {
    fn read(form: &HashMap<String, String>, template: &Template) -> NoteForm {
        NoteForm {
            title: form.get("title").cloned().unwrap_or_default(),
            encounter: form.get("encounter").cloned().unwrap_or_default(),
            sections: (0..template.sections.len())
                .map(|i| form.get(&format!("section{i}")).cloned().unwrap_or_default())
                .collect(),
            reason: form.get("reason").cloned().unwrap_or_default(),
        }
    }
}

/// An encounter to link a note to: (reference, label).
type EncounterChoice = (String, String);

fn encounter_choices(reader: &Reader, patient: &str) -> Result<Vec<EncounterChoice>, WebError> {
    let encounters = reader.search("Encounter", &[("patient", patient.to_string()), ("_sort", "-date".into())], 10)?;
    Ok(encounters
        .iter()
        .map(|e| {
            let id = e.get("id").and_then(Value::as_str).unwrap_or_default();
            let when = display::when(e).map(display::day).unwrap_or_default();
            (format!("Encounter/{id}"), format!("{when} {}", display::concept(e.pointer("/type/0"))))
        })
        .collect())
}

#[allow(clippy::too_many_arguments)]
fn note_form(
    session: &Session,
    banner: &Banner,
    template: &Template,
    form: &NoteForm,
    encounters: &[EncounterChoice],
    action: &str,
    problems: &FormProblems,
    amending: bool,
) -> Markup {
    let sees_sensitive = session.caller.sees_behavioral_health();
    let content = html! {
        h2 { @if amending { "Amend note" } @else { "New note" } }
        @if !amending {
            nav aria-label="Templates" class="tabs" { ul { @for t in TEMPLATES.iter().filter(|t| !t.sensitive || sees_sensitive) {
                li { @if t.key == template.key { a href={ "?template=" (t.key) } aria-current="page" { (t.label) } }
                     @else { a href={ "?template=" (t.key) } { (t.label) } } }
            } } }
        }
        (problems.render())
        form method="post" action=(action) novalidate {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="template" value=(template.key);
            div class="field" { label for="title" { "Title" } br; input id="title" name="title" size="50" value=(form.title); }
            @if !amending {
                div class="field" { label for="encounter" { "Encounter" } br;
                    select id="encounter" name="encounter" {
                        option value="new" selected[form.encounter == "new" || form.encounter.is_empty() && encounters.is_empty()] { "New office visit today" }
                        @for (reference, label) in encounters {
                            option value=(reference) selected[form.encounter == *reference] { (label) }
                        }
                    }
                }
            }
            @for (i, heading) in template.sections.iter().enumerate() {
                div class="field" {
                    label for={ "section" (i) } { (heading) } br;
                    textarea id={ "section" (i) } name={ "section" (i) } { (form.sections.get(i).map(String::as_str).unwrap_or("")) }
                }
            }
            @if amending {
                div class="field" { label for="reason" { "Reason for the amendment (required)" } br; input id="reason" name="reason" size="60" value=(form.reason); }
                button type="submit" name="action" value="sign" { "Sign amendment" }
            } @else {
                button type="submit" name="action" value="draft" class="secondary" { "Save draft" } " "
                button type="submit" name="action" value="sign" { "Sign note" }
            }
        }
    };
    layout::chart_page(session, banner, Tab::Note, "Note", content)
}

/// `GET /app/patients/{id}/notes/new?template=`.
pub(crate) async fn new_note(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let template = query.get("template").and_then(|t| template(t)).unwrap_or(&TEMPLATES[0]);
    if template.sensitive && !session.caller.sees_behavioral_health() {
        return Err(WebError::Forbidden(SENSITIVE_ONLY.into()));
    }
    let id = patient.clone();
    let loaded = open_chart(&app, &session, &patient, "note-form", move |reader, banner| {
        reader.may_create("DocumentReference")?;
        Ok((banner, encounter_choices(reader, &id)?))
    })
    .await?;
    let (banner, encounters) = match loaded {
        Ok(l) => l,
        Err(closed) => return Ok((StatusCode::FORBIDDEN, closed).into_response()),
    };
    let form = NoteForm {
        title: template.label.into(),
        encounter: encounters.first().map(|e| e.0.clone()).unwrap_or_else(|| "new".into()),
        sections: vec![String::new(); template.sections.len()],
        reason: String::new(),
    };
    let action = format!("/app/patients/{patient}/notes");
    Ok(note_form(&session, &banner, template, &form, &encounters, &action, &FormProblems::default(), false)
        .into_response())
}

/// Checks a note form: (title, sections) or the problems to show.
fn check_note(form: &NoteForm, problems: &mut FormProblems) -> (String, Vec<String>) {
    let title = plain_text(problems, "title", "Title", &form.title, true, 200);
    let sections: Vec<String> = form
        .sections
        .iter()
        .enumerate()
        .map(|(i, s)| plain_text(problems, &format!("section{i}"), "The note", s, false, MAX_SECTION))
        .collect();
    if sections.iter().all(|s| s.trim().is_empty()) && problems.is_empty() {
        problems.add("section0", "The note is empty: write at least one section.");
    }
    (title, sections)
}

/// The author of notes written by this session.
fn author(session: &Session) -> Value {
    match session.caller.principal.fhir_user() {
        Some(reference) => json!({"reference": reference, "display": session.username()}),
        None => json!({"display": session.username()}),
    }
}

fn now_text() -> String {
    store::format_instant(time::OffsetDateTime::now_utc())
}

/// A new DocumentReference of a note.
fn document(
    template: &Template,
    patient: &str,
    title: &str,
    text: &str,
    signed: bool,
    session: &Session,
    encounter: &str,
) -> Value {
    let now = now_text();
    let mut note = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": if signed { "final" } else { "preliminary" },
        "type": {"coding": [{"system": "http://loinc.org", "code": template.loinc, "display": template.loinc_display}], "text": template.label},
        "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "code": "clinical-note", "display": "Clinical Note"}]}],
        "subject": {"reference": format!("Patient/{patient}")},
        "date": now,
        "author": [author(session)],
        "description": title,
        "content": [{"attachment": {
            "contentType": "text/plain; charset=utf-8",
            "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
            "title": title,
            "creation": now,
        }}],
        "context": {"encounter": [{"reference": encounter}]},
    });
    if signed {
        note["authenticator"] = author(session);
    }
    // The organization keeping the note: the writer's (the timeline's source of the entry).
    if let Some(org) = writer_organization(session) {
        note["custodian"] = json!({"reference": org});
    }
    if template.sensitive {
        note["meta"] =
            json!({"security": [{"system": ACT_CODE, "code": "PSY", "display": "psychiatry information sensitivity"}]});
    }
    note
}

/// `Organization/ID` of the signed-in user's first organization, if they have one.
fn writer_organization(session: &Session) -> Option<String> {
    let org = session.caller.principal.organizations().first()?;
    Some(if org.starts_with("Organization/") { org.clone() } else { format!("Organization/{org}") })
}

/// A new office visit for a note written outside any recorded encounter.
fn new_encounter(patient: &str, session: &Session) -> Value {
    let mut encounter = json!({
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "type": [{"text": "Office visit"}],
        "subject": {"reference": format!("Patient/{patient}")},
        "period": {"start": now_text()},
    });
    if let Some(reference) = session.caller.principal.fhir_user().filter(|r| r.starts_with("Practitioner/")) {
        encounter["participant"] = json!([{"individual": {"reference": reference}}]);
    }
    if let Some(org) = writer_organization(session) {
        encounter["serviceProvider"] = json!({"reference": org});
    }
    encounter
}

/// `POST /app/patients/{id}/notes`: a new note, as a draft or signed.
pub(crate) async fn create_note(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Form(raw): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&raw)?;
    let template = raw.get("template").and_then(|t| template(t)).unwrap_or(&TEMPLATES[0]);
    if template.sensitive && !session.caller.sees_behavioral_health() {
        return Err(WebError::Forbidden(SENSITIVE_ONLY.into()));
    }
    let form = NoteForm::read(&raw, template);
    let signed = raw.get("action").map(String::as_str) == Some("sign");
    let mut problems = FormProblems::default();
    let (title, sections) = check_note(&form, &mut problems);
    let id = patient.clone();
    let loaded = open_chart(&app, &session, &patient, "note-form", move |reader, banner| {
        Ok((banner, encounter_choices(reader, &id)?))
    })
    .await?;
    let (banner, encounters) = match loaded {
        Ok(l) => l,
        Err(closed) => return Ok((StatusCode::FORBIDDEN, closed).into_response()),
    };
    let encounter = form.encounter.clone();
    if encounter != "new" && !encounters.iter().any(|(r, _)| *r == encounter) {
        problems.add("encounter", "Choose one of the patient's encounters, or a new office visit.");
    }
    if !problems.is_empty() {
        let action = format!("/app/patients/{patient}/notes");
        let page = note_form(&session, &banner, template, &form, &encounters, &action, &problems, false);
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let text = compose(template, &sections);
    let reader = Reader::new(&app, &session);
    let new_visit = encounter == "new";
    let link = if new_visit { "urn:uuid:7d1c1f5e-0000-4000-8000-000000000001".to_string() } else { encounter };
    let note = document(template, &patient, &title, &text, signed, &session, &link);
    let visit = new_visit.then(|| new_encounter(&patient, &session));
    let p = patient.clone();
    let note_id = as_user(reader, move |reader| {
        if let Some(visit) = visit {
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": link, "resource": visit, "request": {"method": "POST", "url": "Encounter"}},
                {"resource": note, "request": {"method": "POST", "url": "DocumentReference"}},
            ]});
            let answer = reader.transaction(bundle, &p)?;
            let location = answer.pointer("/entry/1/response/location").and_then(Value::as_str).unwrap_or_default();
            Ok(location.split('/').nth(1).unwrap_or_default().to_string())
        } else {
            let written = reader.write(note, &p)?;
            Ok(written.get("id").and_then(Value::as_str).unwrap_or_default().to_string())
        }
    })
    .await?;
    Ok(Redirect::to(&format!("/app/patients/{patient}/notes/{note_id}")).into_response())
}

/// Whether this session wrote the note (drafts are their author's to edit and sign).
fn is_author(session: &Session, note: &Value) -> bool {
    let author = note.pointer("/author/0");
    match session.caller.principal.fhir_user() {
        Some(reference) => display::reference(author) == Some(reference.as_str()),
        None => author.and_then(|a| a.get("display")).and_then(Value::as_str) == Some(session.username().as_str()),
    }
}

/// Loads a note of the patient (with the banner and what replaced it, if anything).
async fn load_note(
    app: &WebApp,
    session: &Session,
    patient: &str,
    note_id: &str,
) -> Result<Result<(Banner, Value, Option<String>, Vec<EncounterChoice>), Markup>, WebError> {
    let (p, n) = (patient.to_string(), note_id.to_string());
    open_chart(app, session, patient, "note", move |reader, banner| {
        let note = reader.read("DocumentReference", &n)?;
        if display::reference(note.get("subject")) != Some(format!("Patient/{p}").as_str()) {
            return Err(WebError::NotFound);
        }
        let replaced_by = reader
            .search("DocumentReference", &[("relatesto", format!("DocumentReference/{n}"))], 1)?
            .first()
            .and_then(|d| d.get("id").and_then(Value::as_str).map(str::to_string));
        Ok((banner, note, replaced_by, encounter_choices(reader, &p)?))
    })
    .await
}

/// `GET /app/patients/{id}/notes/{note}`: a note; a draft opens for editing by its author.
pub(crate) async fn show_note(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, note_id)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let (banner, note, replaced_by, encounters) = match load_note(&app, &session, &patient, &note_id).await? {
        Ok(l) => l,
        Err(closed) => return Ok((StatusCode::FORBIDDEN, closed).into_response()),
    };
    let template = template_of(&note);
    let doc_status = note.get("docStatus").and_then(Value::as_str).unwrap_or("");
    let status = note.get("status").and_then(Value::as_str).unwrap_or("");
    let text = note_text(&note);
    if doc_status == "preliminary" && status == "current" && is_author(&session, &note) {
        let form = NoteForm {
            title: note.get("description").and_then(Value::as_str).unwrap_or("").into(),
            encounter: display::reference(note.pointer("/context/encounter/0")).unwrap_or("new").into(),
            sections: decompose(template, &text),
            reason: String::new(),
        };
        let action = format!("/app/patients/{patient}/notes/{note_id}");
        return Ok(note_form(
            &session,
            &banner,
            template,
            &form,
            &encounters,
            &action,
            &FormProblems::default(),
            false,
        )
        .into_response());
    }
    let amends = note
        .get("relatesTo")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|r| r.get("code").and_then(Value::as_str) == Some("replaces"))
        .and_then(|r| display::reference(r.get("target")))
        .and_then(|r| r.strip_prefix("DocumentReference/"))
        .map(str::to_string);
    let base = format!("/app/patients/{patient}/notes");
    let content = html! {
        article class="note" {
            h2 { (note.get("description").and_then(Value::as_str).unwrap_or("Note")) }
            p class="muted" {
                (template.label) " · "
                @match (status, doc_status) {
                    ("superseded", _) => { strong { "Superseded by an amendment" } }
                    (_, "final") => { "Signed" }
                    (_, "amended") => { "Signed amendment" }
                    (_, "preliminary") => { "Draft" }
                    _ => { (doc_status) }
                }
                " · " (note.get("date").and_then(Value::as_str).map(display::day).unwrap_or_default())
                " · " (note.pointer("/author/0/display").and_then(Value::as_str).unwrap_or(""))
            }
            @if let Some(newer) = &replaced_by { p { "Amended: " a href={ (base) "/" (newer) } { "read the amendment" } } }
            @if let Some(older) = &amends { p { "Amends " a href={ (base) "/" (older) } { "the original note" } " (kept unchanged)." } }
            div class="note-text" id="note-text" {
                @for (heading, body) in note_sections(&text) {
                    @if let Some(heading) = heading { h3 { (heading) } }
                    @if !body.is_empty() { p { (body) } }
                }
            }
            @if status == "current" && matches!(doc_status, "final" | "amended") {
                p { a href={ (base) "/" (note_id) "/amend" } { "Amend this note" } }
            }
        }
    };
    Ok(layout::chart_page(&session, &banner, Tab::Timeline, "Note", content).into_response())
}

/// `POST /app/patients/{id}/notes/{note}`: saves or signs the author's draft.
pub(crate) async fn update_note(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, note_id)): Path<(String, String)>,
    Form(raw): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&raw)?;
    let (banner, note, _, encounters) = match load_note(&app, &session, &patient, &note_id).await? {
        Ok(l) => l,
        Err(closed) => return Ok((StatusCode::FORBIDDEN, closed).into_response()),
    };
    if chart::notes::stage(&note) != chart::notes::Stage::Draft || !is_author(&session, &note) {
        return Err(WebError::Forbidden("only its author can change a draft; signed notes are amended".into()));
    }
    let template = template_of(&note);
    let form = NoteForm::read(&raw, template);
    let signed = raw.get("action").map(String::as_str) == Some("sign");
    let mut problems = FormProblems::default();
    let (title, sections) = check_note(&form, &mut problems);
    if !encounters.iter().any(|(r, _)| *r == form.encounter) {
        problems.add("encounter", "Choose one of the patient's encounters.");
    }
    if !problems.is_empty() {
        let action = format!("/app/patients/{patient}/notes/{note_id}");
        let page = note_form(&session, &banner, template, &form, &encounters, &action, &problems, false);
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let mut updated =
        document(template, &patient, &title, &compose(template, &sections), signed, &session, &form.encounter);
    updated["id"] = json!(note_id);
    // Saved only if the draft is still the version read (If-Match): an edit made meanwhile,
    // in another tab say, is not silently overwritten.
    if let Some(version) = note.pointer("/meta/versionId") {
        updated["meta"] = json!({"versionId": version});
    }
    let reader = Reader::new(&app, &session);
    let p = patient.clone();
    as_user(reader, move |reader| reader.write(updated, &p).map(|_| ())).await?;
    Ok(Redirect::to(&format!("/app/patients/{patient}/notes/{note_id}")).into_response())
}

/// `GET /app/patients/{id}/notes/{note}/amend`.
pub(crate) async fn amend_form(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, note_id)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let (banner, note, _, encounters) = match load_note(&app, &session, &patient, &note_id).await? {
        Ok(l) => l,
        Err(closed) => return Ok((StatusCode::FORBIDDEN, closed).into_response()),
    };
    let template = template_of(&note);
    let form = NoteForm {
        title: note.get("description").and_then(Value::as_str).unwrap_or("").into(),
        encounter: String::new(),
        sections: decompose(template, &note_text(&note)),
        reason: String::new(),
    };
    let action = format!("/app/patients/{patient}/notes/{note_id}/amend");
    Ok(note_form(&session, &banner, template, &form, &encounters, &action, &FormProblems::default(), true)
        .into_response())
}

/// `POST /app/patients/{id}/notes/{note}/amend`: the amendment replaces the signed note,
/// which is kept (superseded) — both in one transaction.
pub(crate) async fn amend(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, note_id)): Path<(String, String)>,
    Form(raw): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&raw)?;
    let (banner, note, _, encounters) = match load_note(&app, &session, &patient, &note_id).await? {
        Ok(l) => l,
        Err(closed) => return Ok((StatusCode::FORBIDDEN, closed).into_response()),
    };
    // The lifecycle's own reading of the note (the chart service enforces it on the write too).
    if chart::notes::stage(&note) != chart::notes::Stage::Signed {
        return Err(WebError::Forbidden("only a current, signed note can be amended".into()));
    }
    let template = template_of(&note);
    let form = NoteForm::read(&raw, template);
    let mut problems = FormProblems::default();
    let (title, sections) = check_note(&form, &mut problems);
    let reason = plain_text(&mut problems, "reason", "The reason", &form.reason, true, 500);
    if !problems.is_empty() {
        let action = format!("/app/patients/{patient}/notes/{note_id}/amend");
        let page = note_form(&session, &banner, template, &form, &encounters, &action, &problems, true);
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let encounter = display::reference(note.pointer("/context/encounter/0")).unwrap_or_default().to_string();
    let text = format!("{}\n\n## Amendment reason\n{reason}", compose(template, &sections));
    let mut amendment = document(template, &patient, &title, &text, true, &session, &encounter);
    if encounter.is_empty() {
        amendment.as_object_mut().map(|o| o.remove("context"));
    }
    // The chart service writes it: the original superseded only if still the version read.
    let reader = Reader::new(&app, &session);
    let p = patient.clone();
    let new_id = as_user(reader, move |reader| Ok(chart::notes::amend(&reader.access, &p, &note, amendment)?)).await?;
    Ok(Redirect::to(&format!("/app/patients/{patient}/notes/{new_id}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_round_trip_through_the_text() {
        let soap = &TEMPLATES[0];
        let sections =
            vec!["Cough for 3 days".to_string(), String::new(), "Viral URI\nno red flags".into(), "Fluids".into()];
        let text = compose(soap, &sections);
        assert_eq!(
            text,
            "## Subjective\nCough for 3 days\n\n## Assessment\nViral URI\nno red flags\n\n## Plan\nFluids"
        );
        assert_eq!(decompose(soap, &text), sections);
        let amended = format!("{text}\n\n## Amendment reason\nTypo");
        let shown = note_sections(&amended);
        assert_eq!(shown[0], (Some("Subjective"), "Cough for 3 days".to_string()));
        assert_eq!(shown[1], (Some("Assessment"), "Viral URI\nno red flags".to_string()));
        assert_eq!(shown.last().unwrap(), &(Some("Amendment reason"), "Typo".to_string()));
        assert_eq!(note_sections("free text\nonly"), vec![(None, "free text\nonly".to_string())]);
    }
}
