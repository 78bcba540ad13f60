//! The official FHIR R4 definitions, embedded and parsed once.
//!
//! Everything here comes from the files in `crates/fhir/definitions/` (see SOURCES.md there):
//! the resource and data type StructureDefinitions, the SearchParameters, the
//! CompartmentDefinitions and the ValueSets/CodeSystems of required bindings.

mod raw;
mod search;
mod structure;
mod terminology;

use crate::hash::FastMap;
use std::sync::LazyLock;

pub use structure::{Binding, BindingStrength, ElementDef, ElementType, JsonKind, Primitive, TypeDef, TypeKind};
pub(crate) use structure::{ElemId, Role, Target};
pub use terminology::{CodeSystem, ValueSet};

const PROFILES_RESOURCES: &str = include_str!("../definitions/profiles-resources.json");
const PROFILES_TYPES: &str = include_str!("../definitions/profiles-types.json");
const SEARCH_PARAMETERS: &str = include_str!("../definitions/search-parameters.json");
const COMPARTMENTS: &str = include_str!("../definitions/compartments.json");
const VALUESETS: &str = include_str!("../definitions/valuesets-required.json");

/// One official SearchParameter as it applies to one resource type.
#[derive(Debug, Clone)]
pub struct SearchParamDef {
    /// The name used in search URLs (the SearchParameter's `code`, e.g. `birthdate`).
    pub name: String,
    /// The canonical URL of the SearchParameter.
    pub url: String,
    /// `number | date | string | token | reference | composite | quantity | uri | special`
    pub kind: String,
    /// The FHIRPath expression; of a union shared by several types (`a | b`), only the members
    /// rooted at this resource type.
    pub expression: Option<String>,
    /// For reference parameters, the resource types they may point at.
    pub targets: Vec<String>,
    /// The SearchParameter's description (markdown).
    pub documentation: String,
    /// The parts of a composite parameter.
    pub components: Vec<SearchParamComponent>,
}

/// One part of a composite search parameter.
#[derive(Debug, Clone)]
pub struct SearchParamComponent {
    /// Canonical URL of the SearchParameter this part uses.
    pub definition: String,
    /// FHIRPath, relative to the composite's expression.
    pub expression: String,
}

/// A CompartmentDefinition: which parameters link each resource type into the compartment.
#[derive(Debug)]
pub struct CompartmentDef {
    /// The compartment type (`Patient`, `Encounter`, `RelatedPerson`, `Practitioner`, `Device`).
    pub code: String,
    /// Resource types in the compartment, with the search parameters that link them.
    pub resources: Vec<(String, Vec<String>)>,
}

impl CompartmentDef {
    /// The linking parameters of `resource_type` (empty when it is not in the compartment).
    pub fn params(&self, resource_type: &str) -> &[String] {
        self.resources.iter().find(|(t, _)| t == resource_type).map_or(&[], |(_, p)| p.as_slice())
    }
}

/// All R4 definitions the server runs on.
#[derive(Debug)]
pub struct Definitions {
    model: structure::Model,
    resource_types: Vec<String>,
    search_params: FastMap<Box<str>, Vec<SearchParamDef>>,
    compartments: Vec<CompartmentDef>,
    /// Index of the Patient compartment in `compartments` (checked present on load).
    patient_compartment: usize,
    value_sets: FastMap<Box<str>, ValueSet>,
    code_systems: FastMap<Box<str>, CodeSystem>,
    /// The `Extension` type, which carries the ext-1 rule.
    pub(crate) extension_root: ElemId,
}

impl Definitions {
    /// Whether `name` is an R4 resource type (e.g. `Patient`).
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.resource_types.binary_search_by(|t| t.as_str().cmp(name)).is_ok()
    }

    /// All R4 resource type names, sorted.
    pub fn resource_types(&self) -> Vec<&str> {
        self.resource_types.iter().map(String::as_str).collect()
    }

    /// The search parameters defined for `resource_type` (including those on `Resource` and
    /// `DomainResource`), sorted by name.
    pub fn search_params(&self, resource_type: &str) -> Vec<&SearchParamDef> {
        self.search_params.get(resource_type).map(|l| l.iter().collect()).unwrap_or_default()
    }

    /// The search parameter `name` of `resource_type`.
    pub fn search_param(&self, resource_type: &str, name: &str) -> Option<&SearchParamDef> {
        self.search_params.get(resource_type)?.iter().find(|p| p.name == name)
    }

    /// An embedded CodeSystem (those behind required bindings) with its concept hierarchy.
    pub fn code_system(&self, url: &str) -> Option<&CodeSystem> {
        self.code_systems.get(url)
    }

    /// The compartment definition with code `code` (e.g. `Patient`).
    pub fn compartment(&self, code: &str) -> Option<&CompartmentDef> {
        self.compartments.iter().find(|c| c.code == code)
    }

    /// The Patient compartment: resource type -> parameters that link it to the patient.
    pub fn patient_compartment(&self) -> &CompartmentDef {
        &self.compartments[self.patient_compartment]
    }

    /// A resource type or data type by name (`Patient`, `HumanName`, `date`...).
    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.model.type_index.get(name).map(|&t| &self.model.types[t as usize])
    }

    /// An element by definition path (`Patient.name.given`, `Observation.value[x]`).
    pub fn element(&self, path: &str) -> Option<&ElementDef> {
        self.model.paths.get(path).map(|&e| self.elem(e))
    }

    /// The child elements of `element` (a type root or a backbone element), each once.
    pub fn children<'a>(&'a self, element: &'a ElementDef) -> impl Iterator<Item = &'a ElementDef> + 'a {
        let mut ids: Vec<ElemId> = element.children.values().map(|c| c.elem).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(|e| self.elem(e))
    }

    /// The root element of a type (its children are the type's top-level elements).
    pub fn root(&self, type_def: &TypeDef) -> &ElementDef {
        self.elem(type_def.root)
    }

    /// The expanded ValueSet with canonical `url` (only those of required bindings are embedded).
    pub fn value_set(&self, url: &str) -> Option<&ValueSet> {
        self.value_sets.get(url.split_once('|').map_or(url, |(u, _)| u))
    }

    #[inline]
    pub(crate) fn elem(&self, id: ElemId) -> &ElementDef {
        &self.model.elements[id as usize]
    }

    #[inline]
    pub(crate) fn type_at(&self, id: structure::TypeId) -> &TypeDef {
        &self.model.types[id as usize]
    }

    fn load() -> Self {
        fn parse<T: serde::de::DeserializeOwned>(name: &str, text: &str) -> Vec<T> {
            let bundle: raw::Bundle<T> =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("embedded definitions {name}: {e}"));
            bundle.entry.into_iter().map(|e| e.resource).collect()
        }
        let mut structures: Vec<raw::StructureDefinition> = parse("profiles-types.json", PROFILES_TYPES);
        structures.extend(parse("profiles-resources.json", PROFILES_RESOURCES));
        let model = structure::build(structures);

        let mut resource_types: Vec<String> = model
            .types
            .iter()
            .filter(|t| t.kind == TypeKind::Resource && !t.is_abstract)
            .map(|t| t.name.clone())
            .collect();
        resource_types.sort();
        let domain_resources: Vec<String> = model
            .types
            .iter()
            .filter(|t| t.kind == TypeKind::Resource && !t.is_abstract && t.base.as_deref() == Some("DomainResource"))
            .map(|t| t.name.clone())
            .collect();
        let search_params = search::by_resource_type(
            parse("search-parameters.json", SEARCH_PARAMETERS),
            &resource_types,
            &domain_resources,
        );
        let compartments = search::compartments(parse("compartments.json", COMPARTMENTS));
        #[allow(clippy::expect_used, reason = "embedded data, part of the build: checked by every test that loads it")]
        let patient_compartment = compartments
            .iter()
            .position(|c| c.code == "Patient")
            .expect("embedded definitions compartments.json: the Patient compartment");
        let terminology: Vec<raw::Terminology> = parse("valuesets-required.json", VALUESETS);
        let value_sets = terminology::expand_all(&terminology);
        let code_systems = terminology::code_systems(&terminology);

        let root_of = |name: &str| model.types[model.type_index[name] as usize].root;
        let extension_root = root_of("Extension");
        Definitions {
            model,
            resource_types,
            search_params,
            compartments,
            patient_compartment,
            value_sets,
            code_systems,
            extension_root,
        }
    }
}

static DEFINITIONS: LazyLock<Definitions> = LazyLock::new(Definitions::load);

/// The embedded R4 definitions, parsed on first use.
pub fn definitions() -> &'static Definitions {
    &DEFINITIONS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_resource_types() {
        let d = definitions();
        assert!(d.is_resource_type("Patient"));
        assert!(d.is_resource_type("MedicinalProductUndesirableEffect"));
        assert!(!d.is_resource_type("DomainResource"));
        assert!(!d.is_resource_type("HumanName"));
        assert!(!d.is_resource_type("patient"));
        let types = d.resource_types();
        assert_eq!(types.len(), 146);
        assert!(types.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn models_elements_from_snapshots() {
        let d = definitions();
        let given = d.element("Patient.name").unwrap();
        assert_eq!((given.min, given.max), (0, None));
        assert_eq!(given.types[0].code, "HumanName");
        let gender = d.element("Patient.gender").unwrap();
        assert_eq!(gender.max, Some(1));
        let binding = gender.binding.as_ref().unwrap();
        assert_eq!(binding.strength, BindingStrength::Required);
        assert_eq!(binding.value_set.as_deref(), Some("http://hl7.org/fhir/ValueSet/administrative-gender"));
        let value = d.element("Observation.value[x]").unwrap();
        assert!(value.choice);
        assert_eq!(value.name, "value");
        assert!(value.types.iter().any(|t| t.code == "Quantity"));
        let id = &d.element("Patient.id").unwrap().types[0];
        assert_eq!(
            (id.code.as_str(), id.system_code.as_deref()),
            ("id", Some("http://hl7.org/fhirpath/System.String"))
        );
        assert_eq!(d.element("Extension.url").unwrap().types[0].code, "uri");
        let item = d.element("Questionnaire.item.item").unwrap();
        assert_eq!(item.content_reference.as_deref(), Some("#Questionnaire.item"));
        let obs = d.root(d.type_def("Observation").unwrap());
        assert!(d.children(obs).any(|c| c.path == "Observation.status" && c.min == 1));
    }

    #[test]
    fn every_element_type_resolves() {
        let d = definitions();
        for e in &d.model.elements {
            for t in &e.types {
                assert!(t.target != Target::Unknown, "{} : {}", e.path, t.code);
            }
        }
    }

    #[test]
    fn primitive_types_take_json_kind_and_regex_from_definitions() {
        let d = definitions();
        let kind = |n: &str| d.type_def(n).unwrap().primitive().unwrap().json;
        assert_eq!(kind("positiveInt"), JsonKind::Number);
        assert_eq!(kind("decimal"), JsonKind::Number);
        assert_eq!(kind("boolean"), JsonKind::Boolean);
        assert_eq!(kind("date"), JsonKind::String);
        assert_eq!(kind("code"), JsonKind::String);
        let id = d.type_def("id").unwrap().primitive().unwrap();
        assert!(id.regex.as_ref().unwrap().is_match("abc-1.2"));
        assert!(!id.regex.as_ref().unwrap().is_match("abc_1"));
        assert!(d.type_def("unsignedInt").unwrap().primitive().unwrap().integer);
        assert!(!d.type_def("decimal").unwrap().primitive().unwrap().integer);
    }

    #[test]
    fn expands_required_value_sets() {
        let d = definitions();
        let gender = d.value_set("http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1").unwrap();
        assert_eq!(gender.contains("http://hl7.org/fhir/administrative-gender", "female"), Some(true));
        assert_eq!(gender.contains_code("woman"), Some(false));
        assert_eq!(gender.len(), 4);
        assert!(!d.value_set("http://hl7.org/fhir/ValueSet/mimetypes").unwrap().is_checkable());
        let time = d.value_set("http://hl7.org/fhir/ValueSet/units-of-time").unwrap();
        assert_eq!(time.contains("http://unitsofmeasure.org", "wk"), Some(true));
    }

    #[test]
    fn distributes_search_params() {
        let d = definitions();
        let patient = d.search_params("Patient");
        let names: Vec<&str> = patient.iter().map(|p| p.name.as_str()).collect();
        for n in ["_id", "_lastUpdated", "_text", "birthdate", "family", "gender", "identifier", "name"] {
            assert!(names.contains(&n), "{n}");
        }
        assert!(names.windows(2).all(|w| w[0] <= w[1]));
        assert!(!d.search_params("Bundle").iter().any(|p| p.name == "_text"));
        assert!(d.search_params("Bundle").iter().any(|p| p.name == "_id"));
        let code = d.search_param("Observation", "code").unwrap();
        assert_eq!(code.kind, "token");
        assert_eq!(code.expression.as_deref(), Some("Observation.code"));
        let subject = d.search_param("Condition", "patient").unwrap();
        assert_eq!(subject.expression.as_deref(), Some("Condition.subject.where(resolve() is Patient)"));
        let composite = d.search_param("Observation", "code-value-quantity").unwrap();
        assert_eq!(composite.components.len(), 2);
        assert!(d.search_params("NotAType").is_empty());
        let total: usize = d.resource_types().iter().map(|t| d.search_params(t).len()).sum();
        assert!(total > 1375, "{total}");
    }

    #[test]
    fn exposes_the_patient_compartment() {
        let d = definitions();
        let patient = d.patient_compartment();
        assert_eq!(patient.params("Observation"), ["subject", "performer"]);
        assert_eq!(patient.params("AllergyIntolerance"), ["patient", "recorder", "asserter"]);
        assert!(patient.params("Organization").is_empty());
        assert!(d.compartment("Encounter").is_some());
    }
}
