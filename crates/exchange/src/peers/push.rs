//! The push: a referral packet sent to a peer as one transaction Bundle, standard FHIR only.
//!
//! The packet holds the patient (a conditional create on one of its identifiers, so the peer
//! files everything under the patient it already holds, or a new one), a `ServiceRequest`
//! (the referral), the patient's active problems, active medication orders, allergies and
//! most recent laboratory results, the C-CDA Referral Note of the record (inline in a
//! `DocumentReference`), and a `Task` asking the receiving organization (the
//! peer's Organization, when registered) to act on the referral. Every resource is read
//! through the caller's door; each is sent without its id, with `meta.source` = its URL
//! here, and references rewritten: to the packet's entries (`urn:uuid:`) when they are in
//! it, else to this node's absolute URLs.

use super::Peers;
use crate::{Error, Result};
use access::Access;
use base64::Engine;
use search::query::SearchQuery;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use store::audit::{Outcome, Subtype};

/// The most recent laboratory results sent.
const RECENT_RESULTS: usize = 20;
/// The most items of one list sent.
const LIST_LIMIT: usize = 200;

/// One list of the packet: its type, its search filters, how many at most.
type List = (&'static str, &'static [(&'static str, &'static str)], usize);

/// What a push sent and what the peer answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushReport {
    /// The peer's name.
    pub peer: String,
    /// Resources sent, per type.
    pub sent: BTreeMap<String, u64>,
    /// Where the peer filed the patient (its `Patient/id`), as its response says.
    pub patient: Option<String>,
    /// The peer's Task (`Task/id`).
    pub task: Option<String>,
}

pub(crate) fn push(peers: &Peers, access: &Access, id: &str, name: &str, reason: Option<&str>) -> Result<PushReport> {
    let peer = peers.registry().get(name)?;
    let base =
        peers.base().ok_or_else(|| Error::invalid("this node's base URL is not known: push runs in the server"))?;
    let query_text = format!("Patient/{id}/$push peer={name}");
    let result = (|| {
        let version = access.read("Patient", id)?;
        let patient: Value = version
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
            .ok_or_else(|| Error::invalid("the patient's record could not be read"))?;
        let identifier = patient
            .get("identifier")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|i| {
                i.get("system")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.ends_with(crate::identity::ENTERPRISE_SYSTEM_PATH))
                    && i.get("value").and_then(Value::as_str).is_some()
            })
            .map(|i| {
                let system = i.get("system").and_then(Value::as_str).unwrap_or_default();
                let value = i.get("value").and_then(Value::as_str).unwrap_or_default();
                format!("{}|{}", encode(system), encode(value))
            })
            .ok_or_else(|| Error::invalid("the patient has no identifier the peer could file the referral under"))?;
        let mut items: Vec<Value> = Vec::new();
        let lists: [List; 4] = [
            ("Condition", &[("clinical-status", "active")], LIST_LIMIT),
            ("MedicationRequest", &[("status", "active")], LIST_LIMIT),
            ("AllergyIntolerance", &[], LIST_LIMIT),
            ("Observation", &[("category", "laboratory"), ("_sort", "-date")], RECENT_RESULTS),
        ];
        for (resource_type, filters, limit) in lists {
            let mut params = vec![("patient".to_string(), id.to_string())];
            params.extend(filters.iter().map(|(n, v)| (n.to_string(), v.to_string())));
            let query = SearchQuery::parse(Some(resource_type), &params, false).map_err(|e| Error::Invalid(e.0))?;
            match access.search(query, &params, limit, Subtype::SearchType) {
                Ok(page) => items.extend(
                    page.matches
                        .into_iter()
                        .filter_map(|v| v.body.as_deref().and_then(|b| serde_json::from_str(b).ok())),
                ),
                // A list the caller may not read is left out of the packet.
                Err(access::Error::Forbidden(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut in_packet: HashMap<String, String> = HashMap::new();
        let fresh = || format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let patient_urn = fresh();
        in_packet.insert(format!("Patient/{id}"), patient_urn.clone());
        for item in &items {
            in_packet.insert(key_of(item), fresh());
        }
        let urn = |item: &Value| in_packet.get(&key_of(item)).cloned().unwrap_or_default();
        let mut report = PushReport { peer: peer.name.clone(), ..PushReport::default() };
        let mut entries = vec![json!({
            "fullUrl": patient_urn,
            "resource": outgoing(&patient, base, &in_packet),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={identifier}")}
        })];
        *report.sent.entry("Patient".into()).or_default() += 1;
        for item in &items {
            let t = item.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_string();
            entries.push(json!({
                "fullUrl": urn(item),
                "resource": outgoing(item, base, &in_packet),
                "request": {"method": "POST", "url": t}
            }));
            *report.sent.entry(t).or_default() += 1;
        }
        let now = store::format_instant(time::OffsetDateTime::now_utc());
        // The C-CDA Referral Note of what the caller may read, inline in a DocumentReference.
        let custodian = crate::documents::custodian(base);
        let document =
            crate::documents::export_ccda(access, id, ccda::DocumentType::Referral, (None, None), &custodian)?;
        let (code, display) = ccda::DocumentType::Referral.loinc();
        let note_identifier = json!({"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", document.id)});
        entries.push(json!({
            "fullUrl": fresh(),
            "resource": {
                "resourceType": "DocumentReference",
                "meta": {"source": base},
                "masterIdentifier": note_identifier,
                "status": "current",
                "docStatus": "final",
                "type": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
                "subject": {"reference": patient_urn},
                "date": now,
                "description": display,
                "content": [{
                    "attachment": {
                        "contentType": "application/xml",
                        "data": base64::engine::general_purpose::STANDARD.encode(document.xml.as_bytes()),
                        "size": document.xml.len(),
                        "title": display,
                        "creation": now
                    },
                    "format": {"system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode", "code": ccda::FORMAT_STRUCTURED_BODY_R21}
                }]
            },
            "request": {"method": "POST", "url": "DocumentReference"}
        }));
        *report.sent.entry("DocumentReference".into()).or_default() += 1;
        let referral_urn = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let reason_text = reason.unwrap_or("Referral");
        let supporting: Vec<Value> = items.iter().map(|item| json!({"reference": urn(item)})).collect();
        let mut referral = json!({
            "resourceType": "ServiceRequest",
            "meta": {"source": base},
            "status": "active",
            "intent": "order",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}]}],
            "code": {"text": reason_text},
            "subject": {"reference": patient_urn},
            "authoredOn": now,
            "requester": {"display": base}
        });
        if !supporting.is_empty() {
            referral["supportingInfo"] = json!(supporting);
        }
        if let Some(org) = &peer.organization {
            referral["performer"] = json!([{"reference": org}]);
        }
        entries.push(json!({"fullUrl": referral_urn, "resource": referral, "request": {"method": "POST", "url": "ServiceRequest"}}));
        *report.sent.entry("ServiceRequest".into()).or_default() += 1;
        let mut task = json!({
            "resourceType": "Task",
            "meta": {"source": base},
            "status": "requested",
            "intent": "order",
            "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
            "description": reason_text,
            "focus": {"reference": referral_urn},
            "for": {"reference": patient_urn},
            "authoredOn": now,
            "requester": {"display": base}
        });
        if let Some(org) = &peer.organization {
            task["owner"] = json!({"reference": org});
        }
        let task_urn = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        entries.push(json!({"fullUrl": task_urn, "resource": task, "request": {"method": "POST", "url": "Task"}}));
        *report.sent.entry("Task".into()).or_default() += 1;
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let session = peers.session(peer.clone())?;
        let response = session.post("", &bundle)?;
        if response.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(Error::PeerAnswer("its transaction answer is not a Bundle".into()));
        }
        let locations: Vec<String> = response
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| e.pointer("/response/location").and_then(Value::as_str).unwrap_or_default().to_string())
            .collect();
        let located = |index: usize| {
            locations.get(index).map(|l| {
                let l = l.strip_prefix(&format!("{}/", session.peer.url)).unwrap_or(l);
                l.split("/_history/").next().unwrap_or(l).to_string()
            })
        };
        report.patient = located(0).filter(|l| l.starts_with("Patient/"));
        report.task = located(locations.len().saturating_sub(1)).filter(|l| l.starts_with("Task/"));
        Ok(report)
    })();
    let outcome = if result.is_ok() { Outcome::Success } else { Outcome::MinorFailure };
    access.noted_operation(vec![format!("Patient/{id}")], &query_text, Some(id), outcome);
    result
}

fn key_of(resource: &Value) -> String {
    let t = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    let i = resource.get("id").and_then(Value::as_str).unwrap_or_default();
    format!("{t}/{i}")
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `resource` as sent: without id, its meta only `source` (and security labels and tags),
/// references to the packet's entries as their `urn:uuid:`, others as this node's URLs.
fn outgoing(resource: &Value, base: &str, in_packet: &HashMap<String, String>) -> Value {
    let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    let id = resource.get("id").and_then(Value::as_str).unwrap_or_default();
    let mut copy = resource.clone();
    if let Some(object) = copy.as_object_mut() {
        object.remove("id");
        if resource_type == "Patient" {
            // Links name records here; the peer keeps its own.
            object.remove("link");
        }
        let mut meta = Map::new();
        for field in ["security", "tag"] {
            if let Some(value) = resource.pointer(&format!("/meta/{field}")) {
                meta.insert(field.into(), value.clone());
            }
        }
        meta.insert("source".into(), json!(format!("{base}/{resource_type}/{id}")));
        object.insert("meta".into(), Value::Object(meta));
    }
    rewrite(&mut copy, base, in_packet);
    copy
}

fn rewrite(value: &mut Value, base: &str, in_packet: &HashMap<String, String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if key == "reference"
                    && let Value::String(reference) = child
                {
                    let relative = reference.strip_prefix(&format!("{base}/")).unwrap_or(reference).to_string();
                    let plain = relative.split("/_history/").next().unwrap_or(&relative).to_string();
                    if let Some(urn) = in_packet.get(&plain) {
                        *reference = urn.clone();
                    } else if !relative.starts_with('#')
                        && !relative.starts_with("urn:")
                        && !relative.contains("://")
                        && !relative.contains('?')
                        && relative.contains('/')
                    {
                        *reference = format!("{base}/{relative}");
                    }
                } else {
                    rewrite(child, base, in_packet);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite(item, base, in_packet)),
        _ => {}
    }
}
