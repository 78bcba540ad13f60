//! The R4 type model as FHIRPath navigates it, built once from `fhir::Definitions`.
//!
//! Every resource type, data type and backbone element becomes a [`Class`] with its elements
//! by FHIRPath name; a choice element (`value[x]`) lists one JSON name per allowed type.

use fhir::definitions::{ElementDef, TypeKind};
use std::collections::HashMap as StdHashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::LazyLock;

/// Word-at-a-time multiplicative hashing for the model's name tables: they are built from the
/// embedded definitions only, so SipHash's flooding resistance would buy nothing but time on
/// every element name navigated.
#[derive(Default, Clone, Copy)]
pub(crate) struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(K).rotate_left(23);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type HashMap<K, V> = StdHashMap<K, V, BuildHasherDefault<NameHasher>>;

/// Index of a [`Class`] in the model.
pub(crate) type ClassId = u32;

/// A JSON object of no known type (navigated by its member names alone).
pub(crate) const UNKNOWN: ClassId = 0;
/// An element typed `Resource`: the class is the `resourceType` of the JSON found there.
pub(crate) const ANY_RESOURCE: ClassId = 1;

/// The System type a FHIR primitive's value converts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sys {
    Boolean,
    Integer,
    Decimal,
    String,
    Date,
    DateTime,
    Time,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Primitive(Sys),
    Complex,
    Resource,
    Backbone,
    Unknown,
}

/// One JSON spelling of an element: `valueQuantity` (and `_valueQuantity` for primitives).
#[derive(Debug)]
pub(crate) struct Variant {
    pub json: Box<str>,
    pub ext: Box<str>,
    pub class: ClassId,
}

#[derive(Debug)]
pub(crate) struct Field {
    pub variants: Vec<Variant>,
}

#[derive(Debug)]
pub(crate) struct Class {
    /// The FHIR type name (`BackboneElement` for backbone elements).
    pub name: Box<str>,
    pub kind: Kind,
    pub base: Option<ClassId>,
    pub fields: Vec<Field>,
    pub by_name: HashMap<Box<str>, u32>,
    /// `Quantity` or one of its specialisations (`Age`, `Duration`...).
    pub quantity: bool,
}

#[derive(Debug)]
pub(crate) struct Model {
    pub classes: Vec<Class>,
    types: HashMap<String, ClassId>,
    backbones: HashMap<String, ClassId>,
}

static MODEL: LazyLock<Model> = LazyLock::new(Model::build);

/// The model, built on first use.
pub(crate) fn model() -> &'static Model {
    &MODEL
}

fn sys_of(name: &str) -> Sys {
    match name {
        "boolean" => Sys::Boolean,
        "integer" | "positiveInt" | "unsignedInt" | "integer64" => Sys::Integer,
        "decimal" => Sys::Decimal,
        "date" => Sys::Date,
        "dateTime" | "instant" => Sys::DateTime,
        "time" => Sys::Time,
        _ => Sys::String,
    }
}

fn capitalized(code: &str) -> String {
    let mut c = code.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

impl Model {
    fn build() -> Model {
        let mut m = Model { classes: Vec::new(), types: HashMap::default(), backbones: HashMap::default() };
        let blank = |name: &str, kind| Class {
            name: name.into(),
            kind,
            base: None,
            fields: Vec::new(),
            by_name: HashMap::default(),
            quantity: false,
        };
        m.classes.push(blank("Element", Kind::Unknown));
        m.classes.push(blank("Resource", Kind::Resource));
        // `Resource` has no StructureDefinition of its own in the embedded set
        m.types.insert("Resource".to_owned(), ANY_RESOURCE);
        let defs = fhir::definitions();
        for t in defs.resource_types() {
            m.type_class(t);
        }
        m
    }

    /// The class of a named FHIR type, created (with its elements) on first request.
    fn type_class(&mut self, name: &str) -> Option<ClassId> {
        if let Some(&id) = self.types.get(name) {
            return Some(id);
        }
        let defs = fhir::definitions();
        let def = defs.type_def(name)?;
        let kind = match def.kind {
            TypeKind::Primitive => Kind::Primitive(sys_of(name)),
            TypeKind::Complex => Kind::Complex,
            TypeKind::Resource => Kind::Resource,
        };
        let id = self.classes.len() as ClassId;
        self.classes.push(Class {
            name: name.into(),
            kind,
            base: None,
            fields: Vec::new(),
            by_name: HashMap::default(),
            quantity: name == "Quantity",
        });
        self.types.insert(name.to_owned(), id);
        let base = def.base.as_deref().and_then(|b| self.type_class(b));
        let quantity = name == "Quantity" || base.is_some_and(|b| self.classes[b as usize].quantity);
        self.classes[id as usize].base = base;
        self.classes[id as usize].quantity = quantity;
        let root = defs.root(def);
        self.fill(id, root);
        Some(id)
    }

    fn backbone_class(&mut self, element: &ElementDef) -> ClassId {
        if let Some(&id) = self.backbones.get(&element.path) {
            return id;
        }
        let id = self.classes.len() as ClassId;
        let base = element.types.first().and_then(|t| self.type_class(&t.code));
        self.classes.push(Class {
            name: element.types.first().map_or("BackboneElement", |t| t.code.as_str()).into(),
            kind: Kind::Backbone,
            base,
            fields: Vec::new(),
            by_name: HashMap::default(),
            quantity: false,
        });
        self.backbones.insert(element.path.clone(), id);
        self.fill(id, element);
        id
    }

    fn fill(&mut self, id: ClassId, parent: &ElementDef) {
        let defs = fhir::definitions();
        let primitive = matches!(self.classes[id as usize].kind, Kind::Primitive(_));
        for child in defs.children(parent) {
            if primitive && child.name == "value" {
                continue;
            }
            let mut variants = Vec::new();
            let target = match child.content_reference.as_deref() {
                Some(r) => defs.element(r.trim_start_matches('#')).map(|e| self.backbone_class(e)),
                None if child.has_children() => Some(self.backbone_class(child)),
                None => None,
            };
            for t in &child.types {
                let class = match target {
                    Some(c) => c,
                    None if t.code == "Resource" => ANY_RESOURCE,
                    None => self.type_class(&t.code).unwrap_or(UNKNOWN),
                };
                let json =
                    if child.choice { format!("{}{}", child.name, capitalized(&t.code)) } else { child.name.clone() };
                variants.push(Variant { ext: format!("_{json}").into(), json: json.into(), class });
                if target.is_some() {
                    break;
                }
            }
            let class = &mut self.classes[id as usize];
            let index = class.fields.len() as u32;
            class.by_name.insert(child.name.as_str().into(), index);
            class.fields.push(Field { variants });
        }
    }

    /// The class of a resource type or data type by name.
    pub(crate) fn class_named(&self, name: &str) -> Option<ClassId> {
        self.types.get(name).copied()
    }

    pub(crate) fn class(&self, id: ClassId) -> &Class {
        &self.classes[id as usize]
    }

    /// Whether `class` is `ancestor` or derives from it.
    pub(crate) fn derives_from(&self, class: ClassId, ancestor: ClassId) -> bool {
        let mut c = Some(class);
        while let Some(id) = c {
            if id == ancestor {
                return true;
            }
            c = self.classes[id as usize].base;
        }
        false
    }

    /// The class of a resource's JSON, from its `resourceType`.
    pub(crate) fn resource_class(&self, json: &serde_json::Value) -> ClassId {
        json.get("resourceType").and_then(|t| t.as_str()).and_then(|t| self.class_named(t)).unwrap_or(UNKNOWN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_choices_backbones_and_recursion() {
        let m = model();
        let obs = m.class(m.class_named("Observation").unwrap());
        let value = &obs.fields[obs.by_name["value"] as usize];
        assert!(value.variants.iter().any(|v| &*v.json == "valueQuantity"));
        let patient = m.class(m.class_named("Patient").unwrap());
        let contact = &patient.fields[patient.by_name["contact"] as usize];
        assert_eq!(&*m.class(contact.variants[0].class).name, "BackboneElement");
        let q = m.class(m.class_named("Questionnaire").unwrap());
        let item = q.fields[q.by_name["item"] as usize].variants[0].class;
        let inner = m.class(item);
        assert_eq!(inner.fields[inner.by_name["item"] as usize].variants[0].class, item);
        let age = m.class_named("Age").unwrap();
        assert!(m.class(age).quantity && m.derives_from(age, m.class_named("Quantity").unwrap()));
        let pt = m.class_named("Patient").unwrap();
        assert!(m.derives_from(pt, m.class_named("DomainResource").unwrap()));
        let birth = &patient.fields[patient.by_name["birthDate"] as usize].variants[0];
        assert_eq!(m.class(birth.class).kind, Kind::Primitive(Sys::Date));
    }
}
