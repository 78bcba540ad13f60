//! Which rows are patient-owned and which patient owns them: the shard key (see
//! `docs/scale-out.md`).
//!
//! - A resource type is **patient-owned** when the R4 Patient CompartmentDefinition lists it
//!   with linking parameters (`Patient` itself included, through `link`). Its rows (current,
//!   history, identifiers, search index rows) live in the `patient_*` tables and carry
//!   `shard_key`. Every other type (Practitioner, Organization, Medication, Location,
//!   ValueSet…) is **shared**: its rows live in the `shared_*` tables, without a key (Citus
//!   reference tables, copied to every node).
//! - The **shard key** of a version: a Patient's own id; for another patient-owned type, the
//!   target id of the first reference index entry to `Patient` among the type's compartment
//!   parameters, taken in the definition's order (entries of one parameter in index order);
//!   `''` when it has none. A deletion keeps the key of the current row.
//! - A search is **pinned** to one patient's shard only where that is exact: every row it can
//!   match is known to carry that key. That holds for `Patient?_id=X` and reads of `Patient/X`,
//!   and for a reference filter to `Patient/X` on a type's *owner path*: the element of its
//!   first compartment parameter, when that element holds one reference at most (so that a
//!   resource that matches has `X` as its first patient reference). `Observation?subject=
//!   Patient/X` and `Observation?patient=X` are pinned; `Observation?performer=Patient/X` and
//!   compartment searches (`Patient/X/*`), which also match resources owned by another
//!   patient, are not.

use search::{IndexEntry, IndexValue, ParamKind, registry};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// Where a resource type's rows live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// `patient_*` tables, with `shard_key` (Citus: distributed by it).
    Patient,
    /// `shared_*` tables, without it (Citus: reference tables).
    Shared,
}

impl Family {
    /// The prefix of this family's concrete tables.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Family::Patient => "patient_",
            Family::Shared => "shared_",
        }
    }
}

/// The rules derived once from the definitions.
struct Rules {
    /// Patient-owned types, with their compartment parameters' keys in definition order.
    compartment_keys: HashMap<String, Vec<i64>>,
    /// Reference parameter keys that pin a search to the patient they point at, with whether
    /// the parameter points at nothing but Patients (so that a bare id pins as well).
    pinning: HashMap<i64, bool>,
}

fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let definitions = fhir::definitions();
        let compartment = definitions.patient_compartment();
        let mut compartment_keys = HashMap::new();
        let mut pinning = HashMap::new();
        for (resource_type, names) in &compartment.resources {
            if names.is_empty() {
                continue;
            }
            let keys: Vec<i64> = names
                .iter()
                .filter_map(|n| registry().param(resource_type, n))
                .filter(|p| p.kind == ParamKind::Reference)
                .map(|p| p.key)
                .collect();
            compartment_keys.insert(resource_type.clone(), keys);
            if resource_type == "Patient" {
                // A Patient's key is its id, not its links.
                continue;
            }
            let owner_is_reference =
                registry().param(resource_type, &names[0]).is_some_and(|p| p.kind == ParamKind::Reference);
            let Some(owner) = owner_path(resource_type, &names[0]).filter(|_| owner_is_reference) else { continue };
            for param in definitions.search_params(resource_type) {
                let Some(expression) = param.expression.as_deref() else { continue };
                if param.kind != "reference" || strip_patient_filter(expression) != owner {
                    continue;
                }
                if let Some(compiled) = registry().param(resource_type, &param.name) {
                    // Rows of `….where(resolve() is Patient)` point at Patients whatever the
                    // targets the parameter declares.
                    let only_patients = param.targets.iter().all(|t| t == "Patient")
                        || strip_patient_filter(expression) != expression.trim();
                    pinning.insert(compiled.key, only_patients);
                }
            }
        }
        Rules { compartment_keys, pinning }
    })
}

/// `expression` without a trailing `.where(resolve() is Patient)`.
fn strip_patient_filter(expression: &str) -> &str {
    expression.trim().strip_suffix(".where(resolve() is Patient)").unwrap_or(expression.trim())
}

/// The owner path of `resource_type` (the element of its first compartment parameter
/// `param`), when it is a plain path of elements that each hold one value at most.
fn owner_path(resource_type: &str, param: &str) -> Option<&'static str> {
    let definitions = fhir::definitions();
    let expression = definitions.search_param(resource_type, param)?.expression.as_deref()?;
    let path = strip_patient_filter(expression);
    let mut parts = path.split('.');
    if parts.next() != Some(resource_type) {
        return None;
    }
    let mut prefix = resource_type.to_string();
    for part in parts {
        if part.is_empty() || !part.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        prefix = format!("{prefix}.{part}");
        if definitions.element(&prefix)?.max != Some(1) {
            return None;
        }
    }
    Some(path)
}

/// The family of `resource_type`'s rows.
pub(crate) fn family(resource_type: &str) -> Family {
    if rules().compartment_keys.contains_key(resource_type) { Family::Patient } else { Family::Shared }
}

/// The family of all of `types`, when they share one (`None`: none given or mixed).
pub(crate) fn family_of_all(types: &[String]) -> Option<Family> {
    let first = family(types.first()?);
    types.iter().all(|t| family(t) == first).then_some(first)
}

/// The patient-owned types, sorted.
pub(crate) fn patient_types() -> Vec<&'static str> {
    let mut types: Vec<&str> = rules().compartment_keys.keys().map(String::as_str).collect();
    types.sort_unstable();
    types
}

/// `(resource_type, parameter key, position)` of every compartment parameter of every
/// patient-owned type: the rule of [`shard_key`], as rows (for the upgrade of older data).
pub(crate) fn compartment_rule() -> Vec<(&'static str, i64, i32)> {
    let mut rows = Vec::new();
    for (resource_type, keys) in &rules().compartment_keys {
        for (position, key) in keys.iter().enumerate() {
            rows.push((resource_type.as_str(), *key, position as i32));
        }
    }
    rows
}

/// The shard key of a new (not deleted) version of a patient-owned resource.
pub(crate) fn shard_key(resource_type: &str, id: &str, entries: &[IndexEntry]) -> String {
    if resource_type == "Patient" {
        return id.to_string();
    }
    let Some(keys) = rules().compartment_keys.get(resource_type) else { return String::new() };
    for key in keys {
        for entry in entries.iter().filter(|e| e.param == *key) {
            if let IndexValue::Reference { target_type: Some(t), target_id: Some(target), .. } = &entry.value
                && t == "Patient"
            {
                return target.clone();
            }
        }
    }
    String::new()
}

/// The patient whose shard holds every resource `filter` can match on the searched
/// (patient-owned) types, if the filter pins it.
pub(crate) fn pinned_patient(filter: &search::Filter, types: &[String]) -> Option<String> {
    use search::Filter;
    use search::query::Condition;
    match filter {
        Filter::Is { resource_type, id } if resource_type == "Patient" => Some(id.clone()),
        Filter::Id(ids) if types.iter().all(|t| t == "Patient") => same(ids.iter().cloned()),
        Filter::Param { keys, kind: ParamKind::Reference, conditions } if !keys.is_empty() => {
            let pins = &rules().pinning;
            let only_patients = keys.iter().map(|k| pins.get(k).copied()).collect::<Option<Vec<bool>>>()?;
            let ids = conditions.iter().map(|c| match c {
                Condition::Reference { target_type: Some(t), id, .. } if t == "Patient" => Some(id.clone()),
                Condition::Reference { target_type: None, id, .. } if only_patients.iter().all(|o| *o) => {
                    Some(id.clone())
                }
                _ => None,
            });
            same(ids.collect::<Option<Vec<String>>>()?.into_iter())
        }
        Filter::AnyOf(filters) => {
            same(filters.iter().map(|f| pinned_patient(f, types)).collect::<Option<Vec<_>>>()?.into_iter())
        }
        _ => None,
    }
}

/// The one value all of `values` are (`None` for none or several).
fn same(mut values: impl Iterator<Item = String>) -> Option<String> {
    let first = values.next()?;
    let rest: HashSet<String> = values.collect();
    (rest.is_empty() || (rest.len() == 1 && rest.contains(&first))).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_the_patient_compartment() {
        assert_eq!(family("Patient"), Family::Patient);
        assert_eq!(family("Observation"), Family::Patient);
        assert_eq!(family("Encounter"), Family::Patient);
        for shared in ["Practitioner", "Organization", "Medication", "Location", "ValueSet"] {
            assert_eq!(family(shared), Family::Shared, "{shared}");
        }
    }

    #[test]
    fn owner_paths_are_single_valued() {
        assert_eq!(owner_path("Observation", "subject"), Some("Observation.subject"));
        assert_eq!(owner_path("Encounter", "patient"), Some("Encounter.subject"));
        // Several members, several actors, several targets: no owner path.
        assert_eq!(owner_path("Group", "member"), None);
        assert_eq!(owner_path("Appointment", "actor"), None);
        assert_eq!(owner_path("Provenance", "patient"), None);
        let pins = &rules().pinning;
        assert_eq!(pins.get(&search::param_key("Observation", "subject")), Some(&false));
        assert_eq!(pins.get(&search::param_key("Observation", "patient")), Some(&true));
        assert_eq!(pins.get(&search::param_key("Observation", "performer")), None);
    }
}
