//! The note pages: a note written from a template (SOAP, annual wellness, behavioral-health
//! progress note) or as free text, saved as a draft, signed, read, and amended with the
//! original kept. The notes themselves — their documents, who may change a draft, the
//! lifecycle, the amendment transaction — are the chart service's ([`chart::notes`]); these
//! pages read the forms and render.

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
use chart::notes::{
    NoteContent, Stage, TEMPLATES, Template, Visit, decompose, note_text, sections_of, stage, template, template_of,
};
use maud::{Markup, html};
use serde_json::Value;
use std::collections::HashMap;

const MAX_SECTION: usize = 20_000;

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
    let content = html! {
        h2 { @if amending { "Amend note" } @else { "New note" } }
        @if !amending {
            nav aria-label="Templates" class="tabs" { ul { @for t in TEMPLATES.iter().filter(|t| chart::notes::may_use(Some(&session.caller), t)) {
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
    if !chart::notes::may_use(Some(&session.caller), template) {
        return Err(chart::Error::BehavioralHealthOnly.into());
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

/// `POST /app/patients/{id}/notes`: a new note, as a draft or signed.
pub(crate) async fn create_note(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Form(raw): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&raw)?;
    let template = raw.get("template").and_then(|t| template(t)).unwrap_or(&TEMPLATES[0]);
    if !chart::notes::may_use(Some(&session.caller), template) {
        return Err(chart::Error::BehavioralHealthOnly.into());
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
    let content = NoteContent { template, title, sections };
    let visit = if encounter == "new" { Visit::NewOfficeVisit } else { Visit::Recorded(encounter) };
    let reader = Reader::new(&app, &session);
    let p = patient.clone();
    let note_id =
        as_user(reader, move |reader| Ok(chart::notes::write(&reader.access, &p, &content, &visit, signed)?)).await?;
    Ok(Redirect::to(&format!("/app/patients/{patient}/notes/{note_id}")).into_response())
}

/// A note of the patient, as loaded for its pages.
struct LoadedNote {
    banner: Banner,
    note: Value,
    /// The amendment that replaced it, if any.
    replaced_by: Option<String>,
    encounters: Vec<EncounterChoice>,
    /// Whether the user wrote it.
    mine: bool,
}

/// Loads a note of the patient (with the banner and what replaced it, if anything).
async fn load_note(
    app: &WebApp,
    session: &Session,
    patient: &str,
    note_id: &str,
) -> Result<Result<LoadedNote, Markup>, WebError> {
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
        let mine = chart::notes::is_author(&reader.access, &note);
        Ok(LoadedNote { banner, note, replaced_by, encounters: encounter_choices(reader, &p)?, mine })
    })
    .await
}

/// `GET /app/patients/{id}/notes/{note}`: a note; a draft opens for editing by its author.
pub(crate) async fn show_note(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, note_id)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let LoadedNote { banner, note, replaced_by, encounters, mine } =
        match load_note(&app, &session, &patient, &note_id).await? {
            Ok(l) => l,
            Err(closed) => return Ok((StatusCode::FORBIDDEN, closed).into_response()),
        };
    let template = template_of(&note);
    let doc_status = note.get("docStatus").and_then(Value::as_str).unwrap_or("");
    let status = note.get("status").and_then(Value::as_str).unwrap_or("");
    let text = note_text(&note);
    if stage(&note) == Stage::Draft && mine {
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
                @for (heading, body) in sections_of(&text) {
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
    let LoadedNote { banner, note, encounters, mine, .. } = match load_note(&app, &session, &patient, &note_id).await? {
        Ok(l) => l,
        Err(closed) => return Ok((StatusCode::FORBIDDEN, closed).into_response()),
    };
    // Refused before the form is read; the chart service enforces it on the write too.
    if stage(&note) != Stage::Draft || !mine {
        return Err(chart::Error::NotYourDraft.into());
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
    let content = NoteContent { template, title, sections };
    let reader = Reader::new(&app, &session);
    let p = patient.clone();
    as_user(reader, move |reader| {
        Ok(chart::notes::save_draft(&reader.access, &p, &note, &content, &form.encounter, signed)?)
    })
    .await?;
    Ok(Redirect::to(&format!("/app/patients/{patient}/notes/{note_id}")).into_response())
}

/// `GET /app/patients/{id}/notes/{note}/amend`.
pub(crate) async fn amend_form(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, note_id)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let LoadedNote { banner, note, encounters, .. } = match load_note(&app, &session, &patient, &note_id).await? {
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
    let LoadedNote { banner, note, encounters, .. } = match load_note(&app, &session, &patient, &note_id).await? {
        Ok(l) => l,
        Err(closed) => return Ok((StatusCode::FORBIDDEN, closed).into_response()),
    };
    // The lifecycle's own reading of the note (the chart service enforces it on the write too).
    if stage(&note) != Stage::Signed {
        return Err(chart::Error::NotInForce.into());
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
    // The chart service writes it: the original superseded only if still the version read.
    let content = NoteContent { template, title, sections };
    let reader = Reader::new(&app, &session);
    let p = patient.clone();
    let new_id =
        as_user(reader, move |reader| Ok(chart::notes::amend_note(&reader.access, &p, &note, &content, &reason)?))
            .await?;
    Ok(Redirect::to(&format!("/app/patients/{patient}/notes/{new_id}")).into_response())
}
