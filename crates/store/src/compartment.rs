//! Whose record a resource is part of: the Patient compartment of the R4 definitions.

use search::ParamKind;
use serde_json::Value;

/// Whether resources of `resource_type` belong to patients (the Patient compartment lists the
/// type with linking parameters, or it is `Patient`).
pub fn patient_owned(resource_type: &str) -> bool {
    resource_type == "Patient" || !fhir::definitions().patient_compartment().params(resource_type).is_empty()
}

/// The keys of the reference parameters linking `resource_type` to its patients.
pub fn compartment_keys(resource_type: &str) -> Vec<i64> {
    static KEYS: std::sync::OnceLock<std::collections::HashMap<String, Vec<i64>>> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        fhir::definitions().patient_compartment().resources.iter().map(|(t, _)| (t.clone(), keys_of(t))).collect()
    });
    keys.get(resource_type).cloned().unwrap_or_default()
}

fn keys_of(resource_type: &str) -> Vec<i64> {
    fhir::definitions()
        .patient_compartment()
        .params(resource_type)
        .iter()
        .filter_map(|p| search::registry().param(resource_type, p))
        .filter(|p| p.kind == ParamKind::Reference)
        .map(|p| p.key)
        .collect()
}

/// The patients a resource belongs to (its own id for a Patient), in the order its
/// compartment parameters name them.
pub fn patients_of(resource_type: &str, resource: &Value) -> Vec<String> {
    if resource_type == "Patient" {
        return resource.get("id").and_then(Value::as_str).map(|id| vec![id.to_string()]).unwrap_or_default();
    }
    let keys = compartment_keys(resource_type);
    if keys.is_empty() {
        return Vec::new();
    }
    let index = search::index::extract_params(resource_type, resource, &keys, &search::index::IndexContext::default());
    patients_in_index(resource_type, &index)
}

/// The patients named by a resource's index rows (as [`patients_of`], from rows already
/// extracted).
pub fn patients_in_index(resource_type: &str, index: &[search::IndexEntry]) -> Vec<String> {
    let keys = compartment_keys(resource_type);
    let mut out: Vec<String> = Vec::new();
    for entry in index.iter().filter(|e| keys.contains(&e.param)) {
        if let search::IndexValue::Reference { target_type: Some(t), target_id: Some(id), .. } = &entry.value
            && t == "Patient"
            && !out.contains(id)
        {
            out.push(id.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_name_their_patients() {
        let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Practitioner/d"}]});
        assert_eq!(patients_of("Observation", &obs), vec!["p1"]);
        assert_eq!(patients_of("Patient", &json!({"resourceType": "Patient", "id": "p2"})), vec!["p2"]);
        assert!(patient_owned("Observation") && patient_owned("Patient"));
        assert!(!patient_owned("Practitioner") && !patient_owned("Organization") && !patient_owned("Medication"));
    }
}
