//! The structural walk: properties, cardinality, arrays, choice types, `_name` siblings.

use super::{MAX_DEPTH, Nesting, Seg, Validator};
use crate::IssueCode;
use crate::definitions::{ElemId, ElementDef, ElementType, Role, Target};
use serde_json::{Map, Value};

/// What a JSON object being walked represents.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ObjectKind {
    /// A resource: `resourceType` is expected.
    Resource,
    /// A complex or backbone element.
    Element,
    /// The `_name` sibling of a primitive: its id and extensions.
    PrimitiveSibling,
}

impl<'a> Validator<'a> {
    /// Checks the properties of `obj` against the children of element `ctx`.
    pub(super) fn object(&mut self, obj: &'a Map<String, Value>, ctx: ElemId, kind: ObjectKind) {
        if self.depth >= MAX_DEPTH {
            return self.error(IssueCode::TooCostly, format!("content nested more than {MAX_DEPTH} levels deep"));
        }
        self.depth += 1;
        let defs = self.defs;
        let parent = defs.elem(ctx);
        let choice_mark = self.choices.len();
        // Most objects have no `_name` siblings; then no sibling lookups are needed.
        let has_siblings = obj.keys().any(|k| k.starts_with('_'));
        let mut seen_required = 0u64;
        for (key, value) in obj {
            if kind == ObjectKind::Resource && key == "resourceType" {
                continue;
            }
            let (name, underscore) = match key.strip_prefix('_') {
                Some(name) => (name, true),
                None => (key.as_str(), false),
            };
            let child = parent.children.get(name).filter(|_| !(kind == ObjectKind::PrimitiveSibling && key == "value"));
            let Some(&child) = child else {
                self.error_at(Seg::Name(key), IssueCode::Structure, format!("unknown element in {}", parent.path));
                continue;
            };
            let elem = defs.elem(child.elem);
            let ty = &elem.types[child.ty as usize];
            let primitive = matches!(ty.target, Target::Primitive(_));
            if underscore && !primitive {
                self.error_at(
                    Seg::Name(key),
                    IssueCode::Structure,
                    format!("unknown element in {}: only primitive elements have a '_' sibling", parent.path),
                );
                continue;
            }
            if let Some(slot) = child.required_slot() {
                seen_required |= 1 << slot;
            }
            if elem.choice && !self.note_choice(child.elem, child.ty, choice_mark) {
                self.error_at(
                    Seg::Name(key),
                    IssueCode::Structure,
                    format!("only one type may be given for the choice element {}[x]", elem.name),
                );
            }
            if underscore {
                if obj.contains_key(name) {
                    continue; // walked together with its value
                }
                self.element(elem, ty, None, Some(value));
            } else {
                let ext = if primitive && has_siblings { sibling(obj, key) } else { None };
                self.element(elem, ty, Some(value), ext);
            }
        }
        if seen_required.count_ones() as usize != parent.required.len() {
            self.missing_children(parent, seen_required);
        }
        if ctx == defs.extension_root {
            self.extension_rule(obj, parent);
        }
        self.choices.truncate(choice_mark);
        self.depth -= 1;
    }

    /// Records the type used for a choice element; false when another type was already used.
    fn note_choice(&mut self, elem: ElemId, ty: u16, mark: usize) -> bool {
        match self.choices[mark..].iter().find(|(e, _)| *e == elem) {
            Some(&(_, seen)) => seen == ty,
            None => {
                self.choices.push((elem, ty));
                true
            }
        }
    }

    fn missing_children(&mut self, parent: &'static ElementDef, seen: u64) {
        for (slot, &id) in parent.required.iter().enumerate() {
            if seen & (1 << slot) != 0 {
                continue;
            }
            let elem = self.defs.elem(id);
            let name = if elem.choice { format!("{}[x]", elem.name) } else { elem.name.clone() };
            self.error_at(
                Seg::Name(&elem.name),
                IssueCode::Required,
                format!("missing required element {name} (minimum cardinality {})", elem.min),
            );
        }
    }

    /// ext-1: an extension has either a value or nested extensions, not both.
    fn extension_rule(&mut self, obj: &'a Map<String, Value>, parent: &'static ElementDef) {
        let has_extensions = obj.contains_key("extension");
        let has_value = obj.keys().any(|k| {
            let name = k.strip_prefix('_').unwrap_or(k);
            name.starts_with("value") && parent.children.contains_key(name)
        });
        if has_extensions && has_value {
            self.error(
                IssueCode::Invariant,
                "an extension SHALL have either a value or nested extensions, not both (ext-1)",
            );
        } else if !has_extensions && !has_value {
            self.error(IssueCode::Invariant, "an extension SHALL have either a value or nested extensions (ext-1)");
        }
    }

    /// One property (and its `_name` sibling for primitives) of element `elem`, typed `ty`.
    fn element(
        &mut self,
        elem: &'static ElementDef,
        ty: &'static ElementType,
        value: Option<&'a Value>,
        ext: Option<&'a Value>,
    ) {
        self.path.push(Seg::Name(&elem.name));
        if elem.choice {
            self.path.push(Seg::OfType(&ty.code));
        }
        if elem.max == Some(0) {
            self.error(IssueCode::Structure, "element not allowed here (maximum cardinality 0)");
        } else if elem.is_repeating() {
            self.repeating(elem, ty, value, ext);
        } else if value.is_some_and(Value::is_array) || ext.is_some_and(Value::is_array) {
            self.error(IssueCode::Structure, "element does not repeat: expected a single value, not a JSON array");
        } else if value.is_some_and(Value::is_null) || ext.is_some_and(Value::is_null) {
            // Nulls only align the two arrays of a repeating primitive.
            self.error(IssueCode::Structure, "null is not a valid value");
        } else {
            self.item(elem, ty, value, ext, 0);
        }
        self.path.pop();
        if elem.choice {
            self.path.pop();
        }
    }

    fn repeating(
        &mut self,
        elem: &'static ElementDef,
        ty: &'static ElementType,
        value: Option<&'a Value>,
        ext: Option<&'a Value>,
    ) {
        let values = match value {
            None => None,
            Some(Value::Array(a)) => Some(a),
            Some(_) => return self.error(IssueCode::Structure, "element repeats: expected a JSON array"),
        };
        let exts = match ext {
            None => None,
            Some(Value::Array(a)) => Some(a),
            Some(_) => {
                return self.error(IssueCode::Structure, "element repeats: expected a JSON array for its '_' sibling");
            }
        };
        let value_len = values.map_or(0, Vec::len);
        let ext_len = exts.map_or(0, Vec::len);
        if values.is_some_and(Vec::is_empty) || exts.is_some_and(Vec::is_empty) {
            self.error(IssueCode::Structure, "empty array: omit the element instead");
        }
        if values.is_some() && exts.is_some() && value_len != ext_len {
            self.error(
                IssueCode::Structure,
                "the value array and its '_' sibling array differ in length (they must be aligned with nulls)",
            );
        }
        let count = value_len.max(ext_len);
        if let Some(max) = elem.max.filter(|&m| count > m as usize) {
            self.error(IssueCode::Structure, format!("too many repetitions (maximum cardinality {max})"));
        }
        if count > 0 && count < elem.min as usize {
            self.error(IssueCode::Required, format!("too few repetitions (minimum cardinality {})", elem.min));
        }
        for i in 0..count {
            self.path.push(Seg::Index(i));
            self.item(elem, ty, values.and_then(|a| a.get(i)), exts.and_then(|a| a.get(i)), i);
            self.path.pop();
        }
    }

    /// One value of an element (one array item for repeating elements).
    fn item(
        &mut self,
        elem: &'static ElementDef,
        ty: &'static ElementType,
        value: Option<&'a Value>,
        ext: Option<&'a Value>,
        index: usize,
    ) {
        if let Target::Primitive(tid) = ty.target {
            return self.primitive_item(elem, ty, tid, value, ext);
        }
        let Some(value) = value else { return };
        let obj = match value {
            Value::Object(obj) => obj,
            Value::Null => return self.error(IssueCode::Structure, "null is not a valid value"),
            _ => return self.error(IssueCode::Structure, format!("expected a JSON object ({})", ty.code)),
        };
        let ctx = match ty.target {
            Target::Complex(tid) => self.defs.type_at(tid).root,
            Target::Backbone(ctx) => ctx,
            Target::Resource => {
                let nesting = if elem.role == Role::Contained { Nesting::Contained(index) } else { Nesting::Inner };
                return self.resource(obj, nesting);
            }
            Target::Primitive(_) | Target::Unknown => return,
        };
        if obj.is_empty() || (obj.len() == 1 && obj.contains_key("id")) {
            self.error(IssueCode::Structure, "element has no value or children (ele-1)");
        }
        self.object(obj, ctx, ObjectKind::Element);
        if ty.code == "Coding" || ty.code == "CodeableConcept" {
            self.coded_binding(elem, ty, obj);
        }
    }

    /// A primitive: its value and/or its `_name` object (id, extensions); nulls only as
    /// placeholders in aligned arrays.
    fn primitive_item(
        &mut self,
        elem: &'static ElementDef,
        ty: &'static ElementType,
        tid: u32,
        value: Option<&'a Value>,
        ext: Option<&'a Value>,
    ) {
        let value = match value {
            Some(Value::Null) | None => None,
            Some(v) => Some(v),
        };
        let ext = match ext {
            Some(Value::Null) | None => None,
            Some(v) => Some(v),
        };
        if value.is_none() && ext.is_none() {
            return self.error(IssueCode::Structure, "null is not a valid value (nor an extension placeholder here)");
        }
        if let Some(value) = value {
            self.primitive_value(elem, ty, tid, value);
        }
        match ext {
            None => {}
            Some(Value::Object(obj)) => {
                if obj.is_empty() || (value.is_none() && !obj.contains_key("extension")) {
                    self.error(IssueCode::Structure, "element has no value or extensions (ele-1)");
                }
                // The primitive type's own root (id, extension; its `value` is the JSON value).
                self.object(obj, self.defs.type_at(tid).root, ObjectKind::PrimitiveSibling);
            }
            Some(_) => self.error(IssueCode::Structure, "expected a JSON object in the '_' sibling"),
        }
    }
}

/// The `_key` property of `obj` (the id/extensions of primitive `key`), without allocating.
fn sibling<'m>(obj: &'m Map<String, Value>, key: &str) -> Option<&'m Value> {
    let mut buf = [0u8; 96];
    let len = key.len() + 1;
    if len > buf.len() {
        return obj.get(&format!("_{key}"));
    }
    buf[0] = b'_';
    buf[1..len].copy_from_slice(key.as_bytes());
    obj.get(std::str::from_utf8(&buf[..len]).ok()?)
}
