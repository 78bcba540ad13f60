//! The search parameters of every R4 resource type, compiled once from the official
//! definitions.

use fhirpath::Expression;
use std::collections::HashMap;
use std::sync::LazyLock;

/// A search parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Decimal and integer values, matched with their precision.
    Number,
    /// Dates, times and periods, matched as ranges of instants.
    Date,
    /// Text, matched normalised from its start (or exactly, or anywhere).
    String,
    /// Codes and identifiers, with an optional system.
    Token,
    /// References to other resources.
    Reference,
    /// Several parameters' values taken together from one element (e.g. code and value).
    Composite,
    /// Quantities with a unit, converted to canonical UCUM where known.
    Quantity,
    /// URIs, URLs and canonicals.
    Uri,
    /// Parameters with search rules of their own (e.g. `Location.near`): neither indexed nor
    /// searchable here.
    Special,
}

impl ParamKind {
    fn parse(kind: &str) -> ParamKind {
        match kind {
            "number" => ParamKind::Number,
            "date" => ParamKind::Date,
            "string" => ParamKind::String,
            "token" => ParamKind::Token,
            "reference" => ParamKind::Reference,
            "composite" => ParamKind::Composite,
            "quantity" => ParamKind::Quantity,
            "uri" => ParamKind::Uri,
            _ => ParamKind::Special,
        }
    }
}

/// One part of a composite parameter.
#[derive(Debug, Clone)]
pub struct CompiledComponent {
    /// The key of this component's index rows (the composite's name with `#` and the
    /// component's position, see [`param_key`]).
    pub key: i64,
    /// The type of the parameter the component uses.
    pub kind: ParamKind,
    /// Where its value is, relative to each element the composite's expression selects.
    pub expression: Expression,
}

/// A search parameter of one resource type, ready to index and to query.
#[derive(Debug, Clone)]
pub struct CompiledParam {
    /// The name used in search URLs (`birthdate`).
    pub name: String,
    /// The key of its index rows ([`param_key`] of the type and name).
    pub key: i64,
    /// The parameter's type.
    pub kind: ParamKind,
    /// The official FHIRPath expression that selects its values; `None` when the definition
    /// has none or it does not compile (such a parameter yields no index rows).
    pub expression: Option<Expression>,
    /// Resource types a reference parameter may point at.
    pub targets: Vec<String>,
    /// The parts of a composite parameter (empty for the other types).
    pub components: Vec<CompiledComponent>,
    /// For token parameters: the key of their `:of-type` rows (Identifier type + value).
    pub of_type_key: Option<i64>,
}

/// Every resource type's compiled search parameters.
#[derive(Debug)]
pub struct Registry {
    by_type: HashMap<String, Vec<CompiledParam>>,
    /// Key of a parameter → key of the same parameter on resources contained in others.
    contained: HashMap<i64, i64>,
}

/// The key of the marker row (a uri row holding the contained id) that says a resource
/// contains a resource of `resource_type`.
pub fn contained_marker(resource_type: &str) -> i64 {
    param_key(&format!("#{resource_type}"), "#")
}

/// The key rows of a contained resource carry for parameter `name` of its type: the same
/// hash over `#Type.name`, so that contained resources never match ordinary searches.
pub fn contained_key(resource_type: &str, name: &str) -> i64 {
    param_key(&format!("#{resource_type}"), name)
}

impl Registry {
    /// The parameters of `resource_type`, sorted by name.
    pub fn params(&self, resource_type: &str) -> Option<&[CompiledParam]> {
        self.by_type.get(resource_type).map(Vec::as_slice)
    }

    /// The key contained resources' rows carry for the parameter whose key is `key`.
    pub fn contained(&self, key: i64) -> Option<i64> {
        self.contained.get(&key).copied()
    }

    /// The parameter `name` of `resource_type`.
    pub fn param(&self, resource_type: &str, name: &str) -> Option<&CompiledParam> {
        self.params(resource_type)?.iter().find(|p| p.name == name)
    }
}

/// The registry, built on first use.
pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(build);
    &REGISTRY
}

/// The key index rows of parameter `name` of `resource_type` carry: a stable 63-bit FNV-1a
/// hash of `Type.name` (stable across releases, so stored rows stay valid; a test checks that
/// no two R4 parameters collide).
pub fn param_key(resource_type: &str, name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in resource_type.bytes().chain([b'.']).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 1) as i64
}

fn build() -> Registry {
    let definitions = fhir::definitions();
    let mut by_url: HashMap<&str, &fhir::SearchParamDef> = HashMap::new();
    for t in definitions.resource_types() {
        for p in definitions.search_params(t) {
            by_url.entry(p.url.as_str()).or_insert(p);
        }
    }
    let mut by_type = HashMap::new();
    let mut contained = HashMap::new();
    for t in definitions.resource_types() {
        let mut params = Vec::new();
        for def in definitions.search_params(t) {
            let kind = ParamKind::parse(&def.kind);
            let expression = def.expression.as_deref().and_then(|e| Expression::compile(e).ok());
            let components = def
                .components
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let part = by_url.get(c.definition.as_str())?;
                    Some(CompiledComponent {
                        key: param_key(t, &format!("{}#{i}", def.name)),
                        kind: ParamKind::parse(&part.kind),
                        expression: Expression::compile(&c.expression).ok()?,
                    })
                })
                .collect();
            params.push(CompiledParam {
                name: def.name.clone(),
                key: {
                    contained.insert(param_key(t, &def.name), contained_key(t, &def.name));
                    for (i, _) in def.components.iter().enumerate() {
                        let part = format!("{}#{i}", def.name);
                        contained.insert(param_key(t, &part), contained_key(t, &part));
                    }
                    let of_type = format!("{}:of-type", def.name);
                    contained.insert(param_key(t, &of_type), contained_key(t, &of_type));
                    param_key(t, &def.name)
                },
                kind,
                expression,
                targets: def.targets.clone(),
                components,
                of_type_key: (kind == ParamKind::Token).then(|| param_key(t, &format!("{}:of-type", def.name))),
            });
        }
        by_type.insert(t.to_string(), params);
    }
    Registry { by_type, contained }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_do_not_collide() {
        let mut seen = HashSet::new();
        for (t, params) in &registry().by_type {
            for p in params {
                assert!(seen.insert(p.key), "{t}.{} collides", p.name);
                for c in &p.components {
                    assert!(seen.insert(c.key), "{t}.{} component collides", p.name);
                }
                if let Some(k) = p.of_type_key {
                    assert!(seen.insert(k), "{t}.{}:of-type collides", p.name);
                }
            }
        }
        assert!(seen.len() > 3000, "{}", seen.len());
    }

    #[test]
    fn every_expression_compiles() {
        let definitions = fhir::definitions();
        for t in definitions.resource_types() {
            for def in definitions.search_params(t) {
                let compiled = registry().param(t, &def.name).expect("registered");
                assert_eq!(def.expression.is_some(), compiled.expression.is_some(), "{t}.{}", def.name);
                assert_eq!(def.components.len(), compiled.components.len(), "{t}.{} components", def.name);
            }
        }
    }
}
