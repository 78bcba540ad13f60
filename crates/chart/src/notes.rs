//! The clinical note lifecycle: draft → signed → amended, on every write of a
//! `DocumentReference`.
//!
//! - A draft (`docStatus` `preliminary`) may be rewritten freely (who may is the policy's and
//!   the edge's business: the author).
//! - A signed note (`docStatus` `final` or `amended`, `status` `current`) is never rewritten.
//!   Its one permitted change is its `status`: to `superseded` once an amendment that
//!   `replaces` it exists (written in the same transaction), or to `entered-in-error`.
//! - A superseded or entered-in-error note does not change again.
//! - Deleting a note is an administrative act outside the lifecycle (FHIR delete keeps every
//!   version in the history); it is not refused here.
//!
//! Any other write of a signed note is refused with 422 (`business-rule`) and rolls back with
//! everything else its transaction did.
//!
//! The notes themselves are written here too, once for every edge: from a [`Template`] (the
//! text one `## Section` heading per section), a new note on a recorded or a new visit
//! ([`write`]), a draft saved or signed by its author only ([`save_draft`]), an amendment
//! ([`amend_note`]), each with `If-Match` on the version read.

use access::{Access, Error};
use serde_json::{Value, json};
use store::{NewVersion, ResourceVersion, Transaction, WriteHook};

mod templates;
mod writing;

pub use templates::{
    FREE_TEXT, TEMPLATES, Template, compose, decompose, note_text, sections_of, template, template_of,
};
pub use writing::{NoteContent, Visit, amend_note, is_author, may_use, save_draft, write};

/// The rule, as a write hook: install it on the records every door writes through
/// ([`store::Records::with_hook`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoteLifecycle;

/// The stage of a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `docStatus` `preliminary` (or none): a draft.
    Draft,
    /// `docStatus` `final` or `amended`, `status` `current`: signed and in force.
    Signed,
    /// `status` `superseded` or `entered-in-error`: kept, no longer in force.
    Retired,
}

/// The stage of `note`.
pub fn stage(note: &Value) -> Stage {
    let status = note.get("status").and_then(Value::as_str).unwrap_or("");
    let doc_status = note.get("docStatus").and_then(Value::as_str).unwrap_or("");
    match (status, doc_status) {
        ("superseded" | "entered-in-error", _) => Stage::Retired,
        (_, "final" | "amended") => Stage::Signed,
        _ => Stage::Draft,
    }
}

fn refused(diagnostics: String) -> store::Error {
    store::Error::Unprocessable(vec![fhir::Issue::error(fhir::IssueCode::BusinessRule, diagnostics)])
}

/// `note` without what a status change or the store itself may change (`meta`, `status`).
fn content(note: &Value) -> Value {
    let mut content = note.clone();
    if let Some(object) = content.as_object_mut() {
        object.remove("meta");
        object.remove("status");
    }
    content
}

impl WriteHook for NoteLifecycle {
    fn wants(&self, resource_type: &str) -> bool {
        resource_type == "DocumentReference"
    }

    fn written(
        &self,
        tx: &mut dyn Transaction,
        previous: Option<&ResourceVersion>,
        new: &NewVersion<'_>,
        _sequence: i64,
    ) -> store::Result<()> {
        let (Some(previous), Some(body)) = (previous.and_then(|p| p.body.as_deref()), new.body) else {
            // A new note, or a deletion: outside the rule.
            return Ok(());
        };
        let before: Value =
            serde_json::from_str(previous).map_err(|_| store::Error::Storage("a stored note is not JSON".into()))?;
        let after: Value =
            serde_json::from_str(body).map_err(|_| store::Error::Storage("a note is not JSON".into()))?;
        let note = format!("DocumentReference/{}", new.id);
        match stage(&before) {
            Stage::Draft => Ok(()),
            Stage::Retired if content(&before) == content(&after) && before.get("status") == after.get("status") => {
                Ok(())
            }
            Stage::Retired => Err(refused(format!(
                "{note} is no longer in force (superseded or entered in error); it does not change again"
            ))),
            Stage::Signed => {
                if content(&before) != content(&after) {
                    return Err(refused(format!(
                        "{note} is signed: it is changed only by an amendment (a new DocumentReference with docStatus `amended` that replaces it)"
                    )));
                }
                match after.get("status").and_then(Value::as_str).unwrap_or("") {
                    "current" | "entered-in-error" => Ok(()),
                    "superseded" if replaced(tx, &note)? => Ok(()),
                    "superseded" => Err(refused(format!(
                        "{note} is superseded only by an amendment that replaces it, written in the same transaction"
                    ))),
                    other => Err(refused(format!("{note} is signed; its status cannot become `{other}`"))),
                }
            }
        }
    }
}

/// Whether a note with `docStatus` `amended` replacing `note` exists (inside the transaction).
fn replaced(tx: &mut dyn Transaction, note: &str) -> store::Result<bool> {
    let params = [("relatesto".to_string(), note.to_string()), ("relation".to_string(), "replaces".to_string())];
    let query = search::query::SearchQuery::parse(Some("DocumentReference"), &params, true)
        .map_err(|e| store::Error::Invalid(e.0))?;
    for id in tx.search_ids(&query, 10)? {
        let amendment = tx.current("DocumentReference", &id)?;
        let amended = amendment
            .and_then(|v| v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()))
            .is_some_and(|a| a.get("docStatus").and_then(Value::as_str) == Some("amended"));
        if amended {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Amends the signed note `original` (as read, with its `meta.versionId`) with `amendment`
/// (a new `DocumentReference`, signed), as the caller of `access`, for `patient`'s chart: the
/// amendment is created with `docStatus` `amended` and `relatesTo` `replaces` the original,
/// and the original becomes `superseded` — in one transaction, only if the original is still
/// the version read (`If-Match`): of two concurrent amendments one wins, the other gets 412.
/// Returns the amendment's id.
pub fn amend(access: &Access, patient: &str, original: &Value, mut amendment: Value) -> Result<String, Error> {
    let id = original.get("id").and_then(Value::as_str).ok_or_else(|| Error::invalid("the note has no id"))?;
    if stage(original) != Stage::Signed {
        return Err(Error::Store(refused(format!(
            "DocumentReference/{id} is not a signed note in force; only those are amended"
        ))));
    }
    let version = original.pointer("/meta/versionId").and_then(Value::as_str).unwrap_or("1").to_string();
    amendment["docStatus"] = json!("amended");
    amendment["status"] = json!("current");
    amendment["relatesTo"] = json!([{"code": "replaces", "target": {"reference": format!("DocumentReference/{id}")}}]);
    let mut superseded = original.clone();
    superseded["status"] = json!("superseded");
    if let Some(meta) = superseded.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            superseded.as_object_mut().map(|o| o.remove("meta"));
        }
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": superseded, "request": {"method": "PUT", "url": format!("DocumentReference/{id}"), "ifMatch": format!("W/\"{version}\"")}},
        {"resource": amendment, "request": {"method": "POST", "url": "DocumentReference"}},
    ]});
    let answer = access.transaction_for(bundle, Some(patient))?;
    let location = answer.pointer("/entry/1/response/location").and_then(Value::as_str).unwrap_or_default();
    Ok(location.split('/').nth(1).unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_follow_status_and_doc_status() {
        assert_eq!(stage(&json!({"status": "current", "docStatus": "preliminary"})), Stage::Draft);
        assert_eq!(stage(&json!({"status": "current"})), Stage::Draft);
        assert_eq!(stage(&json!({"status": "current", "docStatus": "final"})), Stage::Signed);
        assert_eq!(stage(&json!({"status": "current", "docStatus": "amended"})), Stage::Signed);
        assert_eq!(stage(&json!({"status": "superseded", "docStatus": "final"})), Stage::Retired);
    }
}
