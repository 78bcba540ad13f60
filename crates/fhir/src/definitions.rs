//! The official FHIR R4 definitions, embedded and parsed once.
//! (Skeleton: filled in by the definitions work.)

/// One official SearchParameter as it applies to one resource type.
#[derive(Debug, Clone)]
pub struct SearchParamDef {
    pub name: String,
    pub url: String,
    /// `number | date | string | token | reference | composite | quantity | uri | special`
    pub kind: String,
    pub expression: Option<String>,
    pub targets: Vec<String>,
    pub documentation: String,
}

/// All R4 definitions the server runs on.
#[derive(Debug)]
pub struct Definitions {}

impl Definitions {
    /// Whether `name` is an R4 resource type (e.g. `Patient`).
    pub fn is_resource_type(&self, _name: &str) -> bool {
        unimplemented!()
    }

    /// All R4 resource type names, sorted.
    pub fn resource_types(&self) -> Vec<&str> {
        unimplemented!()
    }

    /// The search parameters defined for `resource_type` (including those on `Resource` and
    /// `DomainResource`), sorted by name.
    pub fn search_params(&self, _resource_type: &str) -> Vec<&SearchParamDef> {
        unimplemented!()
    }
}

/// The embedded R4 definitions, parsed on first use.
pub fn definitions() -> &'static Definitions {
    unimplemented!()
}
