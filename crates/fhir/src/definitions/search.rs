//! Search parameters per resource type, and compartment definitions.

use super::raw;
use super::{CompartmentDef, SearchParamComponent, SearchParamDef};
use crate::hash::FastMap;

/// Distributes the official SearchParameters over the concrete resource types they apply to.
/// `domain_resources` are the types deriving from DomainResource.
pub(crate) fn by_resource_type(
    params: Vec<raw::SearchParameter>,
    resource_types: &[String],
    domain_resources: &[String],
) -> FastMap<Box<str>, Vec<SearchParamDef>> {
    let mut out: FastMap<Box<str>, Vec<SearchParamDef>> =
        resource_types.iter().map(|t| (t.as_str().into(), Vec::new())).collect();
    for param in &params {
        for base in &param.base {
            let applies: &[String] = match base.as_str() {
                "Resource" => resource_types,
                "DomainResource" => domain_resources,
                other => std::slice::from_ref(resource_types.iter().find(|t| *t == other).unwrap_or(base)),
            };
            for resource_type in applies {
                if let Some(list) = out.get_mut(resource_type.as_str()) {
                    list.push(param_for(param, resource_type));
                }
            }
        }
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.url.cmp(&b.url)));
    }
    out
}

fn param_for(param: &raw::SearchParameter, resource_type: &str) -> SearchParamDef {
    SearchParamDef {
        name: param.code.clone(),
        url: param.url.clone(),
        kind: param.kind.clone(),
        expression: param.expression.as_deref().map(|e| expression_for(e, resource_type)),
        targets: param.target.clone(),
        documentation: param.description.clone(),
        components: param
            .component
            .iter()
            .map(|c| SearchParamComponent { definition: c.definition.clone(), expression: c.expression.clone() })
            .collect(),
    }
}

/// The members of a `a | b | c` union expression that start at `resource_type` (shared
/// parameters such as `clinical-patient` list one member per type); the whole expression when
/// no member is specific to the type (e.g. `Resource.id`).
pub(crate) fn expression_for(expression: &str, resource_type: &str) -> String {
    let members = split_union(expression);
    let mine: Vec<&str> = members.iter().copied().filter(|m| root_name(m) == resource_type).collect();
    if mine.is_empty() { expression.to_owned() } else { mine.join(" | ") }
}

/// Splits at top-level `|` (outside parentheses, brackets and string literals).
fn split_union(expression: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut in_string, mut start) = (0i32, false, 0);
    let bytes = expression.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'\'' => in_string = !in_string,
            b'(' | b'[' if !in_string => depth += 1,
            b')' | b']' if !in_string => depth -= 1,
            b'|' if !in_string && depth == 0 => {
                parts.push(expression[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(expression[start..].trim());
    parts
}

/// The leading identifier of an expression member, ignoring opening parentheses.
fn root_name(member: &str) -> &str {
    let member = member.trim_start_matches(['(', ' ']);
    let end = member.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(member.len());
    &member[..end]
}

/// The compartment definitions keyed by code (`Patient`, `Encounter`...).
pub(crate) fn compartments(defs: Vec<raw::CompartmentDefinition>) -> Vec<CompartmentDef> {
    defs.into_iter()
        .map(|d| CompartmentDef {
            code: d.code,
            resources: d.resource.into_iter().filter(|r| !r.param.is_empty()).map(|r| (r.code, r.param)).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_members_for_the_type() {
        let e =
            "AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient) | (Goal.subject as Reference)";
        assert_eq!(expression_for(e, "CarePlan"), "CarePlan.subject.where(resolve() is Patient)");
        assert_eq!(expression_for(e, "Goal"), "(Goal.subject as Reference)");
        assert_eq!(expression_for("Resource.id", "Patient"), "Resource.id");
        assert_eq!(expression_for("Patient.name.where(use = 'a|b')", "Patient"), "Patient.name.where(use = 'a|b')");
    }
}
