//! Slim serde views of the official definition files: only the fields the server reads are
//! kept; everything else (narratives, mappings, constraint text...) is skipped while parsing.

use serde::Deserialize;

/// A `collection` Bundle of definitions.
#[derive(Deserialize)]
pub(crate) struct Bundle<T> {
    pub entry: Vec<Entry<T>>,
}

#[derive(Deserialize)]
pub(crate) struct Entry<T> {
    pub resource: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StructureDefinition {
    pub id: String,
    pub kind: String,
    #[serde(rename = "abstract", default)]
    pub is_abstract: bool,
    pub base_definition: Option<String>,
    pub derivation: Option<String>,
    pub snapshot: Snapshot,
}

#[derive(Deserialize)]
pub(crate) struct Snapshot {
    pub element: Vec<Element>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Element {
    pub path: String,
    pub min: Option<u32>,
    pub max: Option<String>,
    pub base: Option<ElementBase>,
    #[serde(rename = "type", default)]
    pub types: Vec<ElementType>,
    pub content_reference: Option<String>,
    pub binding: Option<ElementBinding>,
    pub is_summary: Option<bool>,
}

#[derive(Deserialize)]
pub(crate) struct ElementBase {
    pub path: String,
}

#[derive(Deserialize)]
pub(crate) struct ElementType {
    pub code: String,
    #[serde(default)]
    pub extension: Vec<Extension>,
    #[serde(default)]
    pub profile: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Extension {
    pub url: String,
    pub value_url: Option<String>,
    pub value_string: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ElementBinding {
    pub strength: String,
    pub value_set: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SearchParameter {
    pub url: String,
    pub code: String,
    #[serde(default)]
    pub base: Vec<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub expression: Option<String>,
    #[serde(default)]
    pub target: Vec<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub component: Vec<SearchParameterComponent>,
}

#[derive(Deserialize)]
pub(crate) struct SearchParameterComponent {
    pub definition: String,
    pub expression: String,
}

#[derive(Deserialize)]
pub(crate) struct CompartmentDefinition {
    pub code: String,
    #[serde(default)]
    pub resource: Vec<CompartmentResource>,
}

#[derive(Deserialize)]
pub(crate) struct CompartmentResource {
    pub code: String,
    #[serde(default)]
    pub param: Vec<String>,
}

/// A ValueSet or a CodeSystem (the terminology bundle mixes both).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Terminology {
    pub resource_type: String,
    pub url: String,
    pub content: Option<String>,
    pub compose: Option<Compose>,
    #[serde(default)]
    pub concept: Vec<Concept>,
}

#[derive(Deserialize)]
pub(crate) struct Concept {
    pub code: String,
    #[serde(default)]
    pub concept: Vec<Concept>,
}

#[derive(Deserialize)]
pub(crate) struct Compose {
    #[serde(default)]
    pub include: Vec<ComposeSet>,
    #[serde(default)]
    pub exclude: Vec<ComposeSet>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ComposeSet {
    pub system: Option<String>,
    #[serde(default)]
    pub concept: Vec<ComposeConcept>,
    #[serde(default)]
    pub filter: Vec<ComposeFilter>,
    #[serde(default)]
    pub value_set: Vec<String>,
}

#[derive(Deserialize)]
pub(crate) struct ComposeConcept {
    pub code: String,
}

#[derive(Deserialize)]
pub(crate) struct ComposeFilter {
    pub property: String,
    pub op: String,
    pub value: String,
}
