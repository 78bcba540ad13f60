//! Clinical information reconciliation: problems, allergies and medications that came from
//! outside (an imported C-CDA document) wait, as resources of the patient marked pending,
//! until a clinician accepts, rejects or merges each one. Until then they are kept out of
//! the chart's lists ([`is_held_back`]), and searchable through the API like any resource
//! (`_tag=urn:continuum:reconciliation|pending`).
//!
//! - **Accept**: the item joins the chart's list (its pending tag becomes `accepted`; a
//!   Condition's or AllergyIntolerance's verification status `confirmed`). Its Provenance
//!   still names the document it came from.
//! - **Reject**: the item is marked `entered-in-error` (tag `rejected`), never deleted: it
//!   stays traceable.
//! - **Merge** into an item already on the chart: the incoming item's codes the chart's item
//!   lacks are added to it (as further codings of the same concept), and the incoming item is
//!   marked `entered-in-error` with the tag `merged` and an extension naming the item it went
//!   into.

use crate::read::{self, may_write};
use crate::{Error, Result};
use access::Access;
use serde_json::{Value, json};

/// The tag system marking items in reconciliation.
pub const TAG_SYSTEM: &str = "urn:continuum:reconciliation";
/// The code of an item awaiting a decision.
pub const PENDING: &str = "pending";
/// The extension naming the chart item an incoming item was merged into.
pub const MERGED_INTO: &str = "urn:continuum:reconciliation:merged-into";

/// The types whose incoming items are reconciled.
pub const RECONCILED_TYPES: [&str; 4] = ["Condition", "AllergyIntolerance", "MedicationStatement", "MedicationRequest"];

/// A clinician's decision on an incoming item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Add it to the chart.
    Accept,
    /// Refuse it (marked entered-in-error, kept).
    Reject,
    /// Fold it into the chart's item of the same type with this id.
    MergeInto(String),
}

/// The reconciliation code of a resource's tag, when it has one.
pub fn tag_of(resource: &Value) -> Option<&str> {
    resource.pointer("/meta/tag").and_then(Value::as_array)?.iter().find_map(|t| {
        (t.get("system").and_then(Value::as_str) == Some(TAG_SYSTEM)).then(|| t.get("code").and_then(Value::as_str))?
    })
}

/// Whether a resource stays off the chart's lists: pending, rejected or merged away.
pub fn is_held_back(resource: &Value) -> bool {
    matches!(tag_of(resource), Some("pending") | Some("rejected") | Some("merged"))
}

/// Marks an incoming resource pending (what the importer files): the tag, and for a Condition
/// or AllergyIntolerance the verification status `unconfirmed`.
pub fn mark_pending(resource: &mut Value) {
    set_tag(resource, PENDING);
    match resource.get("resourceType").and_then(Value::as_str) {
        Some("Condition") => set_verification(resource, CONDITION_VERIFICATION, "unconfirmed"),
        Some("AllergyIntolerance") => set_verification(resource, ALLERGY_VERIFICATION, "unconfirmed"),
        _ => {}
    }
}

const CONDITION_VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";
const ALLERGY_VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";

fn set_tag(resource: &mut Value, code: &str) {
    let Some(object) = resource.as_object_mut() else { return };
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else { return };
    let tags = meta.entry("tag").or_insert_with(|| json!([]));
    if let Some(tags) = tags.as_array_mut() {
        tags.retain(|t| t.get("system").and_then(Value::as_str) != Some(TAG_SYSTEM));
        tags.push(json!({"system": TAG_SYSTEM, "code": code}));
    }
}

fn set_verification(resource: &mut Value, system: &str, code: &str) {
    resource["verificationStatus"] = json!({"coding": [{"system": system, "code": code}]});
}

/// An item awaiting reconciliation.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// Its type (`Condition`, `AllergyIntolerance`, `MedicationStatement`, `MedicationRequest`).
    pub resource_type: String,
    /// Its id.
    pub id: String,
    /// What it is (the concept's text or first display).
    pub name: String,
    /// The resource.
    pub resource: Value,
}

/// The items of `patient` awaiting a decision, by type.
pub fn queue(access: &Access, patient: &str) -> Result<Vec<Incoming>> {
    let mut items = Vec::new();
    for resource_type in RECONCILED_TYPES {
        let pairs = [("patient", patient.to_string()), ("_tag", format!("{TAG_SYSTEM}|{PENDING}"))];
        let Some(found) = read::search_if_allowed(access, resource_type, &pairs, 500)? else { continue };
        for resource in found {
            let name = match resource_type {
                "MedicationStatement" | "MedicationRequest" => crate::lists::medication_name(&resource),
                _ => crate::elements::concept(resource.get("code")),
            };
            items.push(Incoming {
                resource_type: resource_type.to_string(),
                id: resource.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
                name,
                resource,
            });
        }
    }
    Ok(items)
}

/// The concept a reconciled item is about: a Condition's or AllergyIntolerance's `code`, a
/// medication's `medicationCodeableConcept`.
pub fn concept_of(resource: &Value) -> Option<&Value> {
    resource.get("code").or_else(|| resource.get("medicationCodeableConcept"))
}

/// Every `system|code` of a concept (its codings, translations included).
pub fn codes_of(concept: Option<&Value>) -> Vec<String> {
    concept
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let code = c.get("code").and_then(Value::as_str)?;
            Some(format!("{}|{code}", c.get("system").and_then(Value::as_str).unwrap_or_default()))
        })
        .collect()
}

/// Applies `decision` to the incoming item `resource_type/id` of `patient`.
pub fn decide(access: &Access, patient: &str, resource_type: &str, id: &str, decision: &Decision) -> Result<()> {
    if !RECONCILED_TYPES.contains(&resource_type) {
        return Err(Error::NotOnChart);
    }
    may_write(access, patient)?;
    let mut incoming = read::read(access, resource_type, id)?;
    if !store::compartment::patients_of(resource_type, &incoming).iter().any(|p| p == patient)
        || tag_of(&incoming) != Some(PENDING)
    {
        return Err(Error::NotOnChart);
    }
    match decision {
        Decision::Accept => {
            set_tag(&mut incoming, "accepted");
            match resource_type {
                "Condition" => set_verification(&mut incoming, CONDITION_VERIFICATION, "confirmed"),
                "AllergyIntolerance" => set_verification(&mut incoming, ALLERGY_VERIFICATION, "confirmed"),
                _ => {}
            }
            read::write_back(access, incoming)
        }
        Decision::Reject => {
            retire(&mut incoming, "rejected");
            read::write_back(access, incoming)
        }
        Decision::MergeInto(target) => {
            let mut kept = read::read(access, resource_type, target)?;
            if !store::compartment::patients_of(resource_type, &kept).iter().any(|p| p == patient)
                || is_held_back(&kept)
            {
                return Err(Error::NotOnChart);
            }
            let field = if kept.get("code").is_some() { "code" } else { "medicationCodeableConcept" };
            let known = codes_of(kept.get(field));
            let added: Vec<Value> = concept_of(&incoming)
                .and_then(|c| c.get("coding"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|c| {
                    let key = format!(
                        "{}|{}",
                        c.get("system").and_then(Value::as_str).unwrap_or_default(),
                        c.get("code").and_then(Value::as_str).unwrap_or_default()
                    );
                    !known.contains(&key)
                })
                .cloned()
                .collect();
            retire(&mut incoming, "merged");
            incoming["extension"] =
                json!([{"url": MERGED_INTO, "valueReference": {"reference": format!("{resource_type}/{target}")}}]);
            let mut entries = vec![read::update_entry(incoming)];
            if !added.is_empty() {
                if let Some(codings) =
                    kept.get_mut(field).and_then(|c| c.get_mut("coding")).and_then(Value::as_array_mut)
                {
                    codings.extend(added);
                } else {
                    kept[field] = json!({"coding": added});
                }
                entries.push(read::update_entry(kept));
            }
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
            access.transaction_for(bundle, Some(patient))?;
            Ok(())
        }
    }
}

/// Marks an item entered-in-error with the reconciliation tag `code`.
fn retire(resource: &mut Value, code: &str) {
    set_tag(resource, code);
    match resource.get("resourceType").and_then(Value::as_str) {
        Some("Condition") => {
            set_verification(resource, CONDITION_VERIFICATION, "entered-in-error");
            // con-5: no clinical status on an entry in error.
            resource.as_object_mut().map(|r| r.remove("clinicalStatus"));
        }
        Some("AllergyIntolerance") => {
            set_verification(resource, ALLERGY_VERIFICATION, "entered-in-error");
            resource.as_object_mut().map(|r| r.remove("clinicalStatus"));
        }
        _ => resource["status"] = json!("entered-in-error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_marks_tag_and_verification_and_holds_back() {
        let mut condition = json!({"resourceType": "Condition", "meta": {"tag": [{"system": "x", "code": "y"}]}});
        mark_pending(&mut condition);
        assert_eq!(tag_of(&condition), Some(PENDING));
        assert!(is_held_back(&condition));
        assert_eq!(condition["verificationStatus"]["coding"][0]["code"], "unconfirmed");
        assert_eq!(condition["meta"]["tag"].as_array().unwrap().len(), 2, "other tags are kept");
        let mut medication = json!({"resourceType": "MedicationStatement", "status": "active"});
        mark_pending(&mut medication);
        assert!(medication.get("verificationStatus").is_none());
        retire(&mut medication, "rejected");
        assert_eq!((medication["status"].as_str(), tag_of(&medication)), (Some("entered-in-error"), Some("rejected")));
        let mut allergy = json!({"resourceType": "AllergyIntolerance", "clinicalStatus": {"text": "active"}});
        retire(&mut allergy, "merged");
        assert!(allergy.get("clinicalStatus").is_none());
        assert!(!is_held_back(&json!({"resourceType": "Condition"})));
    }

    #[test]
    fn codes_include_every_coding() {
        let concept = json!({"coding": [{"system": "a", "code": "1"}, {"system": "b", "code": "2"}, {"display": "x"}]});
        assert_eq!(codes_of(Some(&concept)), ["a|1", "b|2"]);
    }
}
