//! The element model built from the StructureDefinition snapshots of resources and data types.

use super::raw;
use crate::hash::FastMap;
use regex::Regex;

pub(crate) type ElemId = u32;
pub(crate) type TypeId = u32;

/// What kind of definition a type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    /// `primitive-type`: a JSON string, number or boolean (`date`, `code`, `integer`...).
    Primitive,
    /// `complex-type`: a data type written as a JSON object (`HumanName`, `Quantity`...).
    Complex,
    /// `resource`: a resource type (`Patient`), including the abstract `DomainResource`.
    Resource,
}

/// How a primitive value is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    /// A JSON string (most primitives).
    String,
    /// A JSON number (`decimal`, `integer`, `unsignedInt`, `positiveInt`).
    Number,
    /// A JSON boolean (`boolean`).
    Boolean,
}

/// The value rules of a primitive type.
#[derive(Debug)]
pub struct Primitive {
    /// The JSON representation of the value.
    pub json: JsonKind,
    /// The type's regex from the definitions, anchored at both ends.
    pub(crate) regex: Option<Regex>,
    /// A 32-bit signed integer (or a restriction of one).
    pub(crate) integer: bool,
    /// The date part must also be a real calendar date (the regex allows e.g. 02-31).
    pub(crate) calendar: bool,
    /// Strings are limited to 1 MiB.
    pub(crate) max_chars: Option<usize>,
    /// XHTML (Narrative.div): a `<div>` element.
    pub(crate) xhtml: bool,
}

/// A resource type or data type.
#[derive(Debug)]
pub struct TypeDef {
    /// The type name (`Patient`, `HumanName`, `dateTime`, `SimpleQuantity`...).
    pub name: String,
    /// Primitive, complex data type or resource.
    pub kind: TypeKind,
    /// Abstract types (`DomainResource`, `Element`...) have no instances of their own.
    pub is_abstract: bool,
    /// The name of the type this one derives from (`DomainResource`, `Element`...).
    pub base: Option<String>,
    pub(crate) root: ElemId,
    pub(crate) primitive: Option<Primitive>,
}

impl TypeDef {
    /// The value rules, for primitive types.
    pub fn primitive(&self) -> Option<&Primitive> {
        self.primitive.as_ref()
    }
}

/// What an element's value is validated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Primitive(TypeId),
    Complex(TypeId),
    /// An object whose children are those of the given element (backbone elements, and
    /// `contentReference` elements pointing at one).
    Backbone(ElemId),
    /// Any concrete resource, chosen by its `resourceType`.
    Resource,
    Unknown,
}

/// One allowed type of an element.
#[derive(Debug)]
pub struct ElementType {
    /// The FHIR type code (`string`, `CodeableConcept`, `BackboneElement`, `Resource`...).
    pub code: String,
    /// The FHIRPath system type the definition names instead, for the internals of primitives
    /// and `id`s (e.g. `http://hl7.org/fhirpath/System.String`; `code` then holds the FHIR type).
    pub system_code: Option<String>,
    pub(crate) target: Target,
    /// The type-specific suffix of a choice element's JSON name (`Quantity` in `valueQuantity`).
    pub(crate) suffix: String,
}

/// How strongly an element is bound to a value set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingStrength {
    /// The code SHALL come from the value set.
    Required,
    /// The code SHALL come from the value set if a suitable one is in it.
    Extensible,
    /// The value set's codes are encouraged.
    Preferred,
    /// The value set only illustrates.
    Example,
}

/// A terminology binding.
#[derive(Debug)]
pub struct Binding {
    /// How strictly the value set applies.
    pub strength: BindingStrength,
    /// Canonical URL of the value set, without its `|version`.
    pub value_set: Option<String>,
}

/// Where a child element is found from its parent, by JSON name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Child {
    pub elem: ElemId,
    /// Index into the element's `types` (which type a choice name selects; 0 otherwise).
    pub ty: u16,
    /// Position in the parent's `required` list (`NOT_REQUIRED` if optional).
    slot: u8,
}

const NOT_REQUIRED: u8 = u8::MAX;
/// Required children are tracked in a 64-bit set while an object is walked.
pub(crate) const MAX_REQUIRED_CHILDREN: usize = 64;

impl Child {
    /// Position in the parent's list of required children, for required children.
    #[inline]
    pub fn required_slot(self) -> Option<u8> {
        (self.slot != NOT_REQUIRED).then_some(self.slot)
    }
}

/// Special roles some core elements play in validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Plain,
    /// `Reference.reference`: a reference string.
    ReferenceString,
    /// `DomainResource.contained`.
    Contained,
}

/// One element of a snapshot.
#[derive(Debug)]
pub struct ElementDef {
    /// The definition path, e.g. `Patient.name.given` or `Observation.value[x]`.
    pub path: String,
    /// The JSON property name (without `[x]` for choice elements).
    pub name: String,
    /// Minimum cardinality.
    pub min: u32,
    /// Maximum cardinality; `None` for `*`.
    pub max: Option<u32>,
    /// The allowed types (several only for choice elements; one synthesized backbone type for
    /// `contentReference` elements).
    pub types: Vec<ElementType>,
    /// e.g. `#Questionnaire.item` for recursive structures.
    pub content_reference: Option<String>,
    /// The terminology binding, for coded elements.
    pub binding: Option<Binding>,
    /// A choice element (`value[x]`).
    pub choice: bool,
    /// Part of the summary (`isSummary`), what `_summary=true` keeps.
    pub summary: bool,
    pub(crate) role: Role,
    /// Children by JSON name (choice elements appear once per type, e.g. `valueString`).
    pub(crate) children: FastMap<Box<str>, Child>,
    /// Children with `min > 0`.
    pub(crate) required: Vec<ElemId>,
}

impl ElementDef {
    /// Whether the element may repeat (JSON array).
    pub fn is_repeating(&self) -> bool {
        self.max.is_none_or(|m| m > 1)
    }

    /// Whether this element holds children of its own (a backbone element or a type root).
    pub fn has_children(&self) -> bool {
        !self.children.is_empty()
    }
}

/// All types and elements, with lookup tables.
#[derive(Debug)]
pub(crate) struct Model {
    pub types: Vec<TypeDef>,
    pub type_index: FastMap<Box<str>, TypeId>,
    pub elements: Vec<ElementDef>,
    /// Definition path -> element, for the base (non-constraint) definitions.
    pub paths: FastMap<Box<str>, ElemId>,
}

const SYSTEM_PREFIX: &str = "http://hl7.org/fhirpath/System.";
const FHIR_TYPE_EXT: &str = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";
const REGEX_EXT: &str = "http://hl7.org/fhir/StructureDefinition/regex";
const SD_PREFIX: &str = "http://hl7.org/fhir/StructureDefinition/";
/// "Strings SHALL NOT exceed 1MB (1024*1024 characters) in size" (datatypes.html#string).
const MAX_STRING_CHARS: usize = 1024 * 1024;

/// A type's raw elements and their ids, kept until all types are known.
struct PendingType {
    tid: TypeId,
    elements: Vec<raw::Element>,
    local: FastMap<String, ElemId>,
}

/// What the build keeps about a primitive type until the whole base chain is known.
struct PrimitiveSource {
    system: String,
    regex: Option<String>,
}

/// Builds the model from the StructureDefinitions of data types and resources.
pub(crate) fn build(definitions: Vec<raw::StructureDefinition>) -> Model {
    let mut model =
        Model { types: Vec::new(), type_index: FastMap::default(), elements: Vec::new(), paths: FastMap::default() };
    // Per type: the raw elements and their ids (kept until all types are known).
    let mut pending: Vec<PendingType> = Vec::new();
    let mut primitive_sources: FastMap<TypeId, PrimitiveSource> = FastMap::default();

    for sd in definitions {
        let tid = model.types.len() as TypeId;
        let kind = match sd.kind.as_str() {
            "primitive-type" => TypeKind::Primitive,
            "resource" => TypeKind::Resource,
            _ => TypeKind::Complex,
        };
        let is_constraint = sd.derivation.as_deref() == Some("constraint");
        let mut local = FastMap::default();
        for el in &sd.snapshot.element {
            let id = model.elements.len() as ElemId;
            local.entry(el.path.clone()).or_insert(id);
            if !is_constraint {
                model.paths.entry(el.path.as_str().into()).or_insert(id);
            }
            model.elements.push(element_def(el));
        }
        if kind == TypeKind::Primitive {
            let value =
                sd.snapshot.element.iter().find(|e| e.path.ends_with(".value") && e.path.matches('.').count() == 1);
            if let Some(ty) = value.and_then(|v| v.types.first()) {
                let regex = ty.extension.iter().find(|e| e.url == REGEX_EXT).and_then(|e| e.value_string.clone());
                primitive_sources.insert(tid, PrimitiveSource { system: ty.code.clone(), regex });
            }
        }
        let root = local.get(sd.snapshot.element.first().map_or("", |e| e.path.as_str())).copied().unwrap_or(0);
        model.types.push(TypeDef {
            name: sd.id.clone(),
            kind,
            is_abstract: sd.is_abstract,
            base: sd.base_definition.as_deref().and_then(|b| b.strip_prefix(SD_PREFIX)).map(str::to_owned),
            root,
            primitive: None,
        });
        model.type_index.insert(sd.id.as_str().into(), tid);
        pending.push(PendingType { tid, elements: sd.snapshot.element, local });
    }

    for tid in 0..model.types.len() as TypeId {
        if primitive_sources.contains_key(&tid) {
            let primitive = primitive_rules(&model, &primitive_sources, tid);
            model.types[tid as usize].primitive = Some(primitive);
        }
    }

    for PendingType { tid, elements: raw_elements, local } in &pending {
        let root = model.types[*tid as usize].root;
        let mut parents: Vec<Option<ElemId>> = Vec::with_capacity(raw_elements.len());
        let mut has_children = vec![false; raw_elements.len()];
        for el in raw_elements {
            let parent = el.path.rsplit_once('.').and_then(|(p, _)| local.get(p).copied());
            if let Some(p) = parent {
                has_children[(p - root) as usize] = true;
            }
            parents.push(parent);
        }
        for (offset, el) in raw_elements.iter().enumerate() {
            let id = root + offset as ElemId;
            let types = if let Some(target) = el.content_reference.as_deref() {
                let target = target.strip_prefix('#').and_then(|p| local.get(p)).copied();
                let code = target
                    .and_then(|t| raw_elements[(t - root) as usize].types.first())
                    .map_or("BackboneElement".to_owned(), |t| t.code.clone());
                let target = target.map_or(Target::Unknown, Target::Backbone);
                vec![ElementType { suffix: String::new(), code, system_code: None, target }]
            } else if has_children[offset] && parents[offset].is_some() {
                let code = el.types.first().map_or("BackboneElement".to_owned(), |t| t.code.clone());
                vec![ElementType { suffix: String::new(), code, system_code: None, target: Target::Backbone(id) }]
            } else {
                el.types.iter().map(|t| element_type(&model, el, t)).collect()
            };
            let def = &mut model.elements[id as usize];
            def.types = types;
            if def.path == "Reference.reference" {
                def.role = Role::ReferenceString;
            } else if el.base.as_ref().is_some_and(|b| b.path == "DomainResource.contained") {
                def.role = Role::Contained;
            }
        }
        for (offset, parent) in parents.iter().enumerate() {
            let Some(parent) = *parent else { continue };
            let id = root + offset as ElemId;
            let child = &model.elements[id as usize];
            let slot = if child.min > 0 {
                let required = &model.elements[parent as usize].required;
                assert!(required.len() < MAX_REQUIRED_CHILDREN, "too many required children");
                required.len() as u8
            } else {
                NOT_REQUIRED
            };
            let mut names: Vec<(Box<str>, Child)> = Vec::new();
            if child.choice {
                for (i, t) in child.types.iter().enumerate() {
                    names.push((format!("{}{}", child.name, t.suffix).into(), Child { elem: id, ty: i as u16, slot }));
                }
            } else {
                names.push((child.name.as_str().into(), Child { elem: id, ty: 0, slot }));
            }
            let parent = &mut model.elements[parent as usize];
            parent.children.extend(names);
            if slot != NOT_REQUIRED {
                parent.required.push(id);
            }
        }
    }
    model
}

fn element_def(el: &raw::Element) -> ElementDef {
    let last = el.path.rsplit('.').next().unwrap_or(&el.path);
    let (name, choice) = match last.strip_suffix("[x]") {
        Some(n) => (n.to_owned(), true),
        None => (last.to_owned(), false),
    };
    let max = match el.max.as_deref() {
        None | Some("*") => None,
        Some(n) => Some(n.parse().unwrap_or(u32::MAX)),
    };
    let binding = el.binding.as_ref().map(|b| Binding {
        strength: match b.strength.as_str() {
            "required" => BindingStrength::Required,
            "extensible" => BindingStrength::Extensible,
            "preferred" => BindingStrength::Preferred,
            _ => BindingStrength::Example,
        },
        value_set: b.value_set.as_deref().map(|v| v.split_once('|').map_or(v, |(u, _)| u).to_owned()),
    });
    ElementDef {
        path: el.path.clone(),
        name,
        min: el.min.unwrap_or(0),
        max,
        types: Vec::new(),
        content_reference: el.content_reference.clone(),
        binding,
        choice,
        summary: el.is_summary.unwrap_or(false),
        role: Role::Plain,
        children: FastMap::default(),
        required: Vec::new(),
    }
}

fn element_type(model: &Model, el: &raw::Element, ty: &raw::ElementType) -> ElementType {
    let code = if ty.code.starts_with(SYSTEM_PREFIX) {
        // Resource.id is an `id`, though R4 snapshots label it System.String / fhir-type string.
        if el.base.as_ref().is_some_and(|b| b.path == "Resource.id") {
            "id".to_owned()
        } else {
            ty.extension.iter().find(|e| e.url == FHIR_TYPE_EXT).and_then(|e| e.value_url.clone()).unwrap_or_else(
                || {
                    // No explicit FHIR type (e.g. xhtml.id): System.String -> string, System.DateTime -> dateTime.
                    let system = &ty.code[SYSTEM_PREFIX.len()..];
                    let mut chars = system.chars();
                    chars.next().map_or_else(String::new, |c| c.to_ascii_lowercase().to_string() + chars.as_str())
                },
            )
        }
    } else {
        ty.code.clone()
    };
    // A profile on a core type (SimpleQuantity) narrows it; other profiles are not modelled.
    let profiled = ty
        .profile
        .iter()
        .filter_map(|p| p.strip_prefix(SD_PREFIX))
        .find_map(|name| model.type_index.get(name).copied());
    let target = match profiled.or_else(|| model.type_index.get(code.as_str()).copied()) {
        _ if code == "Resource" => Target::Resource,
        Some(tid) => match model.types[tid as usize].kind {
            TypeKind::Primitive => Target::Primitive(tid),
            TypeKind::Complex => Target::Complex(tid),
            TypeKind::Resource => Target::Resource,
        },
        None => Target::Unknown,
    };
    let mut suffix = String::with_capacity(code.len());
    let mut chars = code.chars();
    if let Some(first) = chars.next() {
        suffix.extend(first.to_uppercase());
        suffix.push_str(chars.as_str());
    }
    let system_code = ty.code.starts_with(SYSTEM_PREFIX).then(|| ty.code.clone());
    ElementType { code, system_code, target, suffix }
}

/// The value rules of primitive `tid`, from its own `value` element and its base types'.
fn primitive_rules(model: &Model, sources: &FastMap<TypeId, PrimitiveSource>, tid: TypeId) -> Primitive {
    let mut chain = Vec::new();
    let mut cur = Some(tid);
    while let Some(t) = cur.filter(|t| sources.contains_key(t) && !chain.contains(t)) {
        chain.push(t);
        cur = model.types[t as usize].base.as_deref().and_then(|b| model.type_index.get(b).copied());
    }
    let system_of = |t: &TypeId| sources[t].system.strip_prefix(SYSTEM_PREFIX).unwrap_or("");
    // R4 labels the value of e.g. positiveInt as System.String; its base (integer) tells the truth.
    let json = match chain.iter().map(system_of).find(|s| *s != "String") {
        Some("Boolean") => JsonKind::Boolean,
        Some("Integer" | "Decimal") => JsonKind::Number,
        _ => JsonKind::String,
    };
    let source = &sources[&tid];
    let name = model.types[tid as usize].name.as_str();
    Primitive {
        json,
        regex: source.regex.as_deref().map(|r| {
            #[allow(
                clippy::expect_used,
                reason = "embedded data, part of the build: checked by every test that loads it"
            )]
            Regex::new(&format!("^(?:{})$", ascii_classes(r))).expect("regex from the R4 definitions compiles")
        }),
        integer: chain.iter().any(|t| system_of(t) == "Integer"),
        calendar: matches!(system_of(&tid), "Date" | "DateTime"),
        max_chars: chain.iter().any(|t| model.types[*t as usize].name == "string").then_some(MAX_STRING_CHARS),
        xhtml: name == "xhtml",
    }
}

/// Rewrites `\s`, `\d`, `\w` (and negations) to their ASCII meaning: the definitions' regexes
/// follow XML Schema / Java, where these classes are ASCII, while Rust's are Unicode-aware.
fn ascii_classes(re: &str) -> String {
    let mut out = String::with_capacity(re.len() + 16);
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push_str(r"[\t\n\x0B\x0C\r ]"),
            Some('S') => out.push_str(r"[^\t\n\x0B\x0C\r ]"),
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('w') => out.push_str("[A-Za-z0-9_]"),
            Some('W') => out.push_str("[^A-Za-z0-9_]"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ascii_classes;
    use regex::Regex;

    #[test]
    fn regex_classes_become_ascii_also_inside_brackets() {
        let re = Regex::new(&format!("^(?:{})$", ascii_classes(r"[ \r\n\t\S]+"))).unwrap();
        assert!(re.is_match("a b\tc"));
        assert!(re.is_match("caf\u{e9}"));
        assert!(!re.is_match("a\u{0B}b"));
        // U+00A0 is Unicode whitespace but not XML Schema whitespace: allowed in a string.
        assert!(re.is_match("a\u{a0}b"));
        assert_eq!(ascii_classes(r"a\\s\."), r"a\\s\.");
    }
}
