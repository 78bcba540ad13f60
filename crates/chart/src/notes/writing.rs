//! Writing notes as the caller of the door: a new note (a draft, or signed at once) on a
//! recorded visit or on a new office visit written with it, a draft saved or signed by its
//! author, an amendment of a signed note. The documents are made here, once, for every edge.

use super::templates::{Template, compose};
use super::{Stage, amend, stage};
use crate::{Error, Result};
use access::Access;
use base64::Engine;
use serde_json::{Value, json};

/// What a note says: its template, title and sections (in the template's order).
#[derive(Debug, Clone)]
pub struct NoteContent {
    /// The template it follows.
    pub template: &'static Template,
    /// Its title (the `DocumentReference.description`).
    pub title: String,
    /// The body of each of the template's sections.
    pub sections: Vec<String>,
}

/// The visit a new note belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visit {
    /// A recorded encounter (`Encounter/id`).
    Recorded(String),
    /// A new office visit, started now and written in the same transaction as the note.
    NewOfficeVisit,
}

/// Who writes, as the record names them.
struct Author {
    /// `Practitioner/id` (or the patient's or proxy's own reference), when the caller has one.
    reference: Option<String>,
    /// Their user name, or the app's client id.
    display: String,
    /// The first organization they work for (`Organization/id`).
    organization: Option<String>,
}

impl Author {
    fn of(access: &Access) -> Author {
        let Some(caller) = access.caller() else {
            let display = match access.who() {
                access::Who::Job(name) => (*name).to_string(),
                _ => "unidentified".to_string(),
            };
            return Author { reference: None, display, organization: None };
        };
        let principal = &caller.principal;
        let display = principal.subject.name().to_string();
        let organization = principal
            .organizations()
            .first()
            .map(|o| if o.starts_with("Organization/") { o.clone() } else { format!("Organization/{o}") });
        Author { reference: principal.fhir_user(), display, organization }
    }

    fn as_reference(&self) -> Value {
        match &self.reference {
            Some(reference) => json!({"reference": reference, "display": self.display}),
            None => json!({"display": self.display}),
        }
    }
}

/// Whether the caller of `access` wrote `note` (drafts are their author's to edit and sign).
pub fn is_author(access: &Access, note: &Value) -> bool {
    let author = Author::of(access);
    let written_by = note.pointer("/author/0");
    match &author.reference {
        Some(reference) => crate::elements::reference(written_by) == Some(reference.as_str()),
        None => written_by.and_then(|a| a.get("display")).and_then(Value::as_str) == Some(author.display.as_str()),
    }
}

/// Whether `caller` may write notes of `template` (a behavioral-health template only by those
/// who see behavioral-health records; `None`: a job or an open door, which may).
pub fn may_use(caller: Option<&policy::Caller>, template: &Template) -> bool {
    !template.sensitive || caller.is_none_or(|c| c.sees_behavioral_health())
}

fn now_text() -> String {
    store::format_instant(time::OffsetDateTime::now_utc())
}

/// The `DocumentReference` of a note with `text`, by `author`, linked to `encounter` (none:
/// no context).
fn document(
    author: &Author,
    patient: &str,
    content: &NoteContent,
    text: &str,
    signed: bool,
    encounter: Option<&str>,
) -> Value {
    let template = content.template;
    let now = now_text();
    let mut note = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": if signed { "final" } else { "preliminary" },
        "type": {"coding": [{"system": "http://loinc.org", "code": template.loinc, "display": template.loinc_display}], "text": template.label},
        "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "code": "clinical-note", "display": "Clinical Note"}]}],
        "subject": {"reference": format!("Patient/{patient}")},
        "date": now,
        "author": [author.as_reference()],
        "description": content.title,
        "content": [{"attachment": {
            "contentType": "text/plain; charset=utf-8",
            "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
            "title": content.title,
            "creation": now,
        }}],
    });
    if let Some(encounter) = encounter {
        note["context"] = json!({"encounter": [{"reference": encounter}]});
    }
    if signed {
        note["authenticator"] = author.as_reference();
    }
    // The organization keeping the note: the writer's (the timeline's source of the entry).
    if let Some(organization) = &author.organization {
        note["custodian"] = json!({"reference": organization});
    }
    if template.sensitive {
        note["meta"] = json!({"security": [{"system": policy::consent::ACT_CODE, "code": "PSY",
            "display": "psychiatry information sensitivity"}]});
    }
    note
}

/// A new office visit, started now, for a note written outside any recorded encounter.
fn office_visit(author: &Author, patient: &str) -> Value {
    let mut encounter = json!({
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "type": [{"text": "Office visit"}],
        "subject": {"reference": format!("Patient/{patient}")},
        "period": {"start": now_text()},
    });
    if let Some(reference) = author.reference.as_deref().filter(|r| r.starts_with("Practitioner/")) {
        encounter["participant"] = json!([{"individual": {"reference": reference}}]);
    }
    if let Some(organization) = &author.organization {
        encounter["serviceProvider"] = json!({"reference": organization});
    }
    encounter
}

/// Writes a new note on `patient`'s chart as the caller of `access`: a draft, or signed at
/// once when `sign`; on `visit` (a new office visit is written in the same transaction).
/// Returns the note's id.
pub fn write(access: &Access, patient: &str, content: &NoteContent, visit: &Visit, sign: bool) -> Result<String> {
    if !may_use(access.caller().map(|c| &**c), content.template) {
        return Err(Error::BehavioralHealthOnly);
    }
    let author = Author::of(access);
    let text = compose(content.template, &content.sections);
    let written = match visit {
        Visit::Recorded(encounter) => {
            let note = document(&author, patient, content, &text, sign, Some(encounter));
            access.create(note, None)?
        }
        Visit::NewOfficeVisit => {
            let link = "urn:uuid:7d1c1f5e-0000-4000-8000-000000000001";
            let note = document(&author, patient, content, &text, sign, Some(link));
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": link, "resource": office_visit(&author, patient), "request": {"method": "POST", "url": "Encounter"}},
                {"resource": note, "request": {"method": "POST", "url": "DocumentReference"}},
            ]});
            let answer = access.transaction_for(bundle, Some(patient))?;
            let location = answer.pointer("/entry/1/response/location").and_then(Value::as_str).unwrap_or_default();
            return Ok(location.split('/').nth(1).unwrap_or_default().to_string());
        }
    };
    Ok(written.version.map(|v| v.id).unwrap_or_default())
}

/// Saves (or, with `sign`, signs) the draft `original` (as read, with its `meta.versionId`)
/// with `content`, on `encounter` (`Encounter/id`): only by its author, and only if the draft
/// is still the version read (`If-Match`; an edit made meanwhile, in another tab say, is not
/// silently overwritten).
pub fn save_draft(
    access: &Access,
    patient: &str,
    original: &Value,
    content: &NoteContent,
    encounter: &str,
    sign: bool,
) -> Result<()> {
    if stage(original) != Stage::Draft || !is_author(access, original) {
        return Err(Error::NotYourDraft);
    }
    let id = original.get("id").and_then(Value::as_str).ok_or(Error::NotOnChart)?;
    let author = Author::of(access);
    let text = compose(content.template, &content.sections);
    let mut updated = document(&author, patient, content, &text, sign, Some(encounter));
    updated["id"] = json!(id);
    let read_at = original.pointer("/meta/versionId").and_then(Value::as_str).and_then(|v| v.parse().ok());
    access.update("DocumentReference", id, updated, read_at)?;
    Ok(())
}

/// Amends the signed note `original` (as read) with `content` and the `reason` for the
/// change, as the caller of `access`: the amendment keeps the original's visit, and is
/// written by [`amend`] (the original superseded only if still the version read). Returns
/// the amendment's id.
pub fn amend_note(
    access: &Access,
    patient: &str,
    original: &Value,
    content: &NoteContent,
    reason: &str,
) -> Result<String> {
    if stage(original) != Stage::Signed {
        return Err(Error::NotInForce);
    }
    let author = Author::of(access);
    let encounter = crate::elements::reference(original.pointer("/context/encounter/0"));
    let text = format!("{}\n\n## Amendment reason\n{reason}", compose(content.template, &content.sections));
    let amendment = document(&author, patient, content, &text, true, encounter);
    Ok(amend(access, patient, original, amendment)?)
}
