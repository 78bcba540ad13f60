//! Filing a document made of a patient's record as outgoing: the XML kept as a `Binary`, a
//! `DocumentReference` for it, both written through the door in one transaction.

use crate::{Error, Result};
use access::Access;
use base64::Engine;
use ccda::DocumentType;
use serde_json::{Value, json};

/// The tag marking a DocumentReference of a document this installation made to send
/// (`system`, `code`).
pub const OUTGOING: (&str, &str) = ("urn:continuum:exchange", "outgoing");

/// Makes the document of `kind` for `patient` (the whole record `access` may read, items
/// awaiting reconciliation left out), kept by `custodian`, and files it on the patient's
/// record as an outgoing document. Returns the DocumentReference's id (its attachment is at
/// `Binary/<id>`).
pub fn file_outgoing(access: &Access, patient: &str, kind: DocumentType, custodian: &Value) -> Result<String> {
    let document = super::export_ccda(access, patient, kind, (None, None), custodian)?;
    let (code, display) = kind.loinc();
    let binary_id = uuid::Uuid::new_v4().to_string();
    let subject = format!("Patient/{patient}");
    let now = store::format_instant(time::OffsetDateTime::now_utc());
    let identifier = json!({"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", document.id)});
    let mut reference = json!({
        "resourceType": "DocumentReference",
        "meta": {"tag": [{"system": OUTGOING.0, "code": OUTGOING.1}]},
        "masterIdentifier": identifier,
        "identifier": [identifier],
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "code": "clinical-note", "display": "Clinical Note"}]}],
        "subject": {"reference": subject},
        "date": now,
        "description": format!("{display} (outgoing)"),
        "content": [{
            "attachment": {"contentType": "application/xml", "url": format!("Binary/{binary_id}"),
                           "size": document.xml.len(), "title": display, "creation": now},
            "format": {"system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode", "code": ccda::FORMAT_STRUCTURED_BODY_R21}
        }]
    });
    // The author: the user who made it, when they are a Practitioner.
    if let Some(user) = access.caller().and_then(|c| c.principal.fhir_user())
        && let Some((_, id)) = user.rsplit_once("Practitioner/")
        && fhir::reference::is_id(id)
        && access.read("Practitioner", id).is_ok()
    {
        reference["author"] = json!([{"reference": format!("Practitioner/{id}")}]);
    }
    if let Some(name) = custodian.get("name").and_then(Value::as_str) {
        reference["custodian"] = json!({"display": name});
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {
            "resource": {"resourceType": "Binary", "id": binary_id, "contentType": "application/xml",
                         "securityContext": {"reference": subject},
                         "data": base64::engine::general_purpose::STANDARD.encode(document.xml.as_bytes())},
            "request": {"method": "PUT", "url": format!("Binary/{binary_id}")}
        },
        {
            "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            "resource": reference,
            "request": {"method": "POST", "url": "DocumentReference"}
        }
    ]});
    let response = access.transaction_for(bundle, Some(patient))?;
    response
        .pointer("/entry/1/response/location")
        .and_then(Value::as_str)
        .and_then(|l| l.strip_prefix("DocumentReference/"))
        .and_then(|l| l.split('/').next())
        .map(str::to_string)
        .ok_or_else(|| Error::invalid("the document could not be filed"))
}

/// A document kept on a patient's record: its bytes and what kind it is.
#[derive(Debug, Clone)]
pub struct KeptDocument {
    /// The document's exact bytes.
    pub bytes: Vec<u8>,
    /// `ccd`, `referral`, `discharge`, else `document` (from its LOINC type).
    pub kind: &'static str,
}

/// The document behind `patient`'s DocumentReference `reference` (its attachment's Binary),
/// read through the door. One that is not the patient's is, for the caller, not found.
pub fn kept_document(access: &Access, patient: &str, reference: &str) -> Result<KeptDocument> {
    let body = |version: store::ResourceVersion| -> Result<Value> {
        version.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).ok_or_else(not_found)
    };
    let document = body(access.read("DocumentReference", reference)?)?;
    if document.pointer("/subject/reference").and_then(Value::as_str) != Some(&format!("Patient/{patient}")) {
        return Err(not_found());
    }
    let binary = document
        .pointer("/content/0/attachment/url")
        .and_then(Value::as_str)
        .and_then(|url| url.strip_prefix("Binary/"))
        .ok_or_else(not_found)?;
    let binary = body(access.read("Binary", binary)?)?;
    let bytes = binary
        .get("data")
        .and_then(Value::as_str)
        .and_then(|data| base64::engine::general_purpose::STANDARD.decode(data).ok())
        .ok_or_else(not_found)?;
    let kind = match document.pointer("/type/coding/0/code").and_then(Value::as_str) {
        Some("57133-1") => "referral",
        Some("18842-5") => "discharge",
        Some("34133-9") => "ccd",
        _ => "document",
    };
    Ok(KeptDocument { bytes, kind })
}

fn not_found() -> Error {
    Error::Access(access::Error::Hidden)
}
