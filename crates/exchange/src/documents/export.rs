//! Making a C-CDA document of a patient's record, and listing the documents kept.

use crate::{Error, Result};
use access::Access;
use ccda::DocumentType;
use search::query::SearchQuery;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use store::audit::Subtype;
use time::OffsetDateTime;

/// The types a document is made from (the patient's), searched one by one.
pub const CHART_TYPES: &[&str] = &[
    "Condition",
    "AllergyIntolerance",
    "MedicationRequest",
    "MedicationStatement",
    "Immunization",
    "Observation",
    "DiagnosticReport",
    "Procedure",
    "Encounter",
    "CarePlan",
    "ServiceRequest",
    "Goal",
];
/// Most resources of one type a document is made from.
const MAX_PER_TYPE: usize = 10_000;

/// A document made.
#[derive(Debug, Clone)]
pub struct ExportedDocument {
    /// The XML.
    pub xml: String,
    /// Its id (a UUID, `ClinicalDocument.id/@root`).
    pub id: String,
    /// How many of the patient's resources it was made from.
    pub resources: usize,
}

/// This installation as the keeper of the documents it makes (the `custodian` of
/// [`export_ccda`] and [`crate::documents::file_outgoing`]): an Organization whose address is
/// the FHIR base `base_url`. The FHIR API and the web app give the same one.
pub fn custodian(base_url: &str) -> Value {
    json!({"resourceType": "Organization", "id": "continuum", "name": "Continuum EHR",
           "telecom": [{"system": "url", "value": base_url}]})
}

fn search_all(access: &Access, resource_type: &str, params: Vec<(String, String)>) -> Result<Vec<Value>> {
    let query = SearchQuery::parse(Some(resource_type), &params, false).map_err(access::Error::from)?;
    let page = match access.search(query, &params, MAX_PER_TYPE, Subtype::SearchType) {
        Ok(page) => page,
        // A type the caller may not read is left out of the document.
        Err(access::Error::Forbidden(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(page.matches.iter().filter_map(|v| v.body.as_deref()).filter_map(|b| serde_json::from_str(b).ok()).collect())
}

/// Makes the document of `kind` for `patient` (only what happened between `start` and `end`
/// when given), from what `access` may read, with `custodian` (this installation's
/// Organization) keeping it. Items awaiting reconciliation are left out.
pub fn export_ccda(
    access: &Access,
    patient: &str,
    kind: DocumentType,
    period: (Option<OffsetDateTime>, Option<OffsetDateTime>),
    custodian: &Value,
) -> Result<ExportedDocument> {
    let patient_resource: Value = access
        .read("Patient", patient)?
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or_else(|| Error::invalid("the patient could not be read"))?;
    let mut resources = Vec::new();
    for resource_type in CHART_TYPES {
        let found = search_all(access, resource_type, vec![("patient".into(), patient.to_string())])?;
        resources.extend(found.into_iter().filter(|r| !chart::reconcile::is_held_back(r)));
    }
    let made_from = resources.len();
    // What they reference that the document names: medications, people, organizations.
    let mut wanted = BTreeSet::new();
    for resource in &resources {
        collect_references(resource, &mut wanted);
    }
    for reference in wanted {
        let Some((resource_type, id)) = reference.split_once('/') else { continue };
        if let Ok(version) = access.read(resource_type, id)
            && let Some(found) = version.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok())
        {
            resources.push(found);
        }
    }
    let author = access
        .caller()
        .and_then(|c| c.principal.fhir_user())
        .and_then(|url| url.rsplit_once("Practitioner/").map(|(_, id)| id.to_string()))
        .and_then(|id| access.read("Practitioner", &id).ok())
        .and_then(|v| v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()));
    let id = uuid::Uuid::new_v4().to_string();
    let chart = ccda::Chart {
        patient: &patient_resource,
        resources: &resources,
        custodian,
        author: author.as_ref(),
        document_id: &id,
        now: OffsetDateTime::now_utc(),
        period,
    };
    let xml = ccda::write(&chart, kind)?;
    Ok(ExportedDocument { xml, id, resources: made_from })
}

fn collect_references(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                if key == "reference"
                    && let Some(reference) = item.as_str()
                    && ["Medication/", "Practitioner/", "Organization/", "Location/"]
                        .iter()
                        .any(|p| reference.starts_with(p))
                    && reference.matches('/').count() == 1
                {
                    into.insert(reference.to_string());
                } else {
                    collect_references(item, into);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_references(i, into)),
        _ => {}
    }
}

/// `DocumentReference/$docref` (US Core): the patient's stored documents (of `type`, within
/// `start`–`end`, when given), and with `on_demand` a DocumentReference of a fresh CCD at
/// `ccd_url` (generated when fetched).
pub fn document_references(
    access: &Access,
    patient: &str,
    doc_type: Option<&str>,
    start: Option<&str>,
    end: Option<&str>,
    on_demand: Option<&str>,
) -> Result<Vec<Value>> {
    access.read("Patient", patient)?;
    let mut params = vec![("patient".to_string(), patient.to_string())];
    if let Some(t) = doc_type {
        params.push(("type".into(), t.to_string()));
    }
    if let Some(start) = start {
        params.push(("period".into(), format!("ge{start}")));
    }
    if let Some(end) = end {
        params.push(("period".into(), format!("le{end}")));
    }
    let mut found = search_all(access, "DocumentReference", params)?;
    if let Some(url) = on_demand {
        found.push(json!({
            "resourceType": "DocumentReference",
            "status": "current",
            "type": {"coding": [{"system": "http://loinc.org", "code": "34133-9", "display": "Summary of episode note"}]},
            "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "code": "clinical-note"}]}],
            "subject": {"reference": format!("Patient/{patient}")},
            "date": store::format_instant(OffsetDateTime::now_utc()),
            "content": [{
                "attachment": {"contentType": "application/xml", "url": url},
                "format": {"system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode", "code": ccda::FORMAT_STRUCTURED_BODY_R21}
            }]
        }));
    }
    Ok(found)
}
