//! The record locator: a local patient's demographics and identifiers sent to every peer's
//! `Patient/$match`; nothing is copied.

use super::Peers;
use super::client::Session;
use crate::{Error, Result};
use access::Access;
use serde_json::{Map, Value, json};
use store::audit::Outcome;

/// The match-grade extension of a `$match` entry.
const MATCH_GRADE: &str = "http://hl7.org/fhir/StructureDefinition/match-grade";
/// The most candidates asked of one peer.
const CANDIDATES: u64 = 5;

/// A patient a peer holds that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The peer's Patient as a full URL.
    pub reference: String,
    /// The peer's id of it.
    pub id: String,
    /// The peer's score (0 to 1).
    pub score: f64,
    /// The peer's grade: `certain`, `probable`, `possible`.
    pub grade: String,
}

/// What one peer answered.
#[derive(Debug)]
pub struct Located {
    /// The peer's name.
    pub peer: String,
    /// Its candidates, best first, or why it could not be asked.
    pub outcome: Result<Vec<Candidate>>,
}

pub(crate) fn locate(peers: &Peers, access: &Access, id: &str) -> Result<Vec<Located>> {
    let patient = read_patient(access, id)?;
    let subject = subject_of(&patient);
    let mut out = Vec::new();
    for peer in peers.registry().list()? {
        let name = peer.name.clone();
        let outcome = peers.session(peer).and_then(|session| ask(&session, &subject));
        out.push(Located { peer: name, outcome });
    }
    let asked: Vec<String> = out.iter().map(|l| l.peer.clone()).collect();
    access.noted_operation(
        vec![format!("Patient/{id}")],
        &format!("Patient/{id}/$locate peers={}", asked.join(",")),
        Some(id),
        Outcome::Success,
    );
    Ok(out)
}

/// The local Patient, read through the caller's door.
pub(crate) fn read_patient(access: &Access, id: &str) -> Result<Value> {
    let version = access.read("Patient", id)?;
    version
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or_else(|| Error::invalid("the patient's record could not be read"))
}

/// What is sent to a peer's `$match`: the demographics and identifiers only (no id, meta,
/// links, narrative or extensions; not this installation's person ids).
pub(crate) fn subject_of(patient: &Value) -> Value {
    let mut subject = Map::new();
    subject.insert("resourceType".into(), json!("Patient"));
    for field in ["name", "gender", "birthDate", "address", "telecom"] {
        if let Some(value) = patient.get(field) {
            subject.insert(field.into(), value.clone());
        }
    }
    let identifiers: Vec<Value> = patient
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| {
            !i.get("system")
                .and_then(Value::as_str)
                .is_some_and(|s| s.ends_with(crate::identity::ENTERPRISE_SYSTEM_PATH))
        })
        .map(|i| {
            let mut i = i.clone();
            if let Some(o) = i.as_object_mut() {
                o.remove("assigner");
                o.remove("id");
            }
            i
        })
        .collect();
    if !identifiers.is_empty() {
        subject.insert("identifier".into(), Value::Array(identifiers));
    }
    Value::Object(subject)
}

/// Asks one peer's `Patient/$match`.
pub(crate) fn ask(session: &Session<'_>, subject: &Value) -> Result<Vec<Candidate>> {
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": subject},
        {"name": "count", "valueInteger": CANDIDATES}
    ]});
    let bundle = session.post("Patient/$match", &parameters)?;
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(Error::PeerAnswer("its $match answer is not a Bundle".into()));
    }
    let base = &session.peer.url;
    let mut out = Vec::new();
    for entry in bundle.get("entry").and_then(Value::as_array).into_iter().flatten() {
        let resource = entry.get("resource");
        if resource.and_then(|r| r.get("resourceType")).and_then(Value::as_str) != Some("Patient") {
            continue;
        }
        let Some(id) = resource.and_then(|r| r.get("id")).and_then(Value::as_str).filter(|i| fhir::reference::is_id(i))
        else {
            continue;
        };
        let grade = entry
            .pointer("/search/extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|e| e.get("url").and_then(Value::as_str) == Some(MATCH_GRADE))
            .and_then(|e| e.get("valueCode").and_then(Value::as_str))
            .unwrap_or("possible");
        out.push(Candidate {
            reference: format!("{base}/Patient/{id}"),
            id: id.to_string(),
            score: entry.pointer("/search/score").and_then(Value::as_f64).unwrap_or(0.0),
            grade: grade.to_string(),
        });
    }
    Ok(out)
}
