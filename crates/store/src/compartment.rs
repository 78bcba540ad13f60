//! Whose record a resource is part of: the Patient compartment of the R4 definitions.
//!
//! R4's Patient compartment leaves out a few types that hold one patient's data all the same:
//! `Task` (`Task.for`), `Device` (`Device.patient`), `Contract` and `GuidanceResponse`. They are
//! found from the definitions too, never listed by hand: a type outside the compartment whose
//! `patient` search parameter references a Patient belongs to that patient. (The sharded
//! PostgreSQL layout still places tables by the R4 compartment alone.)

use search::ParamKind;
use serde_json::Value;

/// The search parameters linking `resource_type` to its patients: its Patient compartment
/// parameters, or else its `patient` parameter when that references a Patient.
pub fn linking_params(resource_type: &str) -> Vec<String> {
    let defs = fhir::definitions();
    let compartment = defs.patient_compartment().params(resource_type);
    if !compartment.is_empty() {
        return compartment.to_vec();
    }
    match defs.search_param(resource_type, "patient") {
        Some(p) if p.kind == "reference" && p.targets.iter().any(|t| t == "Patient") => vec!["patient".to_string()],
        _ => Vec::new(),
    }
}

/// Whether resources of `resource_type` belong to patients (it has [`linking_params`], or it is
/// `Patient`).
pub fn patient_owned(resource_type: &str) -> bool {
    resource_type == "Patient" || !linking_params(resource_type).is_empty()
}

/// The keys of the reference parameters linking `resource_type` to its patients.
pub fn compartment_keys(resource_type: &str) -> Vec<i64> {
    static KEYS: std::sync::OnceLock<std::collections::HashMap<String, Vec<i64>>> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        fhir::definitions().resource_types().into_iter().map(|t| (t.to_string(), keys_of(t))).collect()
    });
    keys.get(resource_type).cloned().unwrap_or_default()
}

fn keys_of(resource_type: &str) -> Vec<i64> {
    linking_params(resource_type)
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
        // Outside R4's compartment, yet one patient's: found from their `patient` parameter.
        for t in ["Task", "Device", "Contract", "GuidanceResponse"] {
            assert!(patient_owned(t), "{t}");
            assert!(!compartment_keys(t).is_empty(), "{t}");
        }
        let task = json!({"resourceType": "Task", "status": "requested", "intent": "order",
            "for": {"reference": "Patient/p3"}});
        assert_eq!(patients_of("Task", &task), vec!["p3"]);
    }
}
