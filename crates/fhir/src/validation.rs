//! Validation of a resource (FHIR JSON) against the R4 StructureDefinitions.
//!
//! The walk follows the JSON: every property is looked up among the children of the element
//! being validated (precomputed maps, choice names included), then checked for JSON shape,
//! cardinality, primitive format and required bindings. Locations are kept as a stack of
//! borrowed path segments and only formatted into a string when an issue is reported.

mod bindings;
mod elements;
mod primitives;
#[cfg(test)]
mod tests;

use crate::definitions::{Definitions, ElemId, TypeKind, definitions};
use crate::{Issue, IssueCode};
use elements::ObjectKind;
use serde_json::{Map, Value};
use std::fmt::Write;

/// Objects nested deeper than this are not walked (the request is rejected instead).
pub const MAX_DEPTH: usize = 100;

/// Every problem in `resource`; empty (or warnings only) when it is a valid R4 resource.
pub fn validate(resource: &Value) -> Vec<Issue> {
    let mut validator = Validator::new(definitions());
    match resource {
        Value::Object(obj) => validator.resource(obj, Nesting::Root),
        _ => validator.error(IssueCode::Invalid, "a resource must be a JSON object"),
    }
    validator.issues
}

/// One step of a location: `name`, `[3]` or `.ofType(Quantity)`.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Name(&'a str),
    Index(usize),
    OfType(&'a str),
}

/// Where a resource sits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nesting {
    /// The resource passed to `validate`.
    Root,
    /// A resource inside another one that is not `contained` (Bundle entries, Parameters).
    Inner,
    /// `contained[index]` of the enclosing resource.
    Contained(usize),
}

/// What one resource (with its contained resources) needs checked once it has been walked.
#[derive(Default)]
struct Scope<'a> {
    /// `#...` values of references, canonicals and uris anywhere in the resource (dom-3).
    local_refs: Vec<&'a str>,
    /// `#id` Reference.reference values with their location (ref-1).
    contained_refs: Vec<(&'a str, String)>,
    contained: Vec<ContainedInfo<'a>>,
    /// The contained resource being walked, if any.
    current: Option<usize>,
}

struct ContainedInfo<'a> {
    index: usize,
    id: Option<&'a str>,
    /// It has a reference to `#` (its container).
    refers_to_container: bool,
}

struct Validator<'a> {
    defs: &'static Definitions,
    issues: Vec<Issue>,
    path: Vec<Seg<'a>>,
    depth: usize,
    scopes: Vec<Scope<'a>>,
    /// Choice elements seen in the objects being walked (a stack shared by nested objects).
    choices: Vec<(ElemId, u16)>,
}

impl<'a> Validator<'a> {
    fn new(defs: &'static Definitions) -> Self {
        Validator { defs, issues: Vec::new(), path: Vec::new(), depth: 0, scopes: Vec::new(), choices: Vec::new() }
    }

    /// The current location as FHIRPath, e.g. `Patient.name[0].given[1]`.
    fn location(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Seg::Name(n) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(n);
                }
                Seg::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
                Seg::OfType(t) => {
                    let _ = write!(out, ".ofType({t})");
                }
            }
        }
        out
    }

    fn error(&mut self, code: IssueCode, diagnostics: impl Into<String>) {
        let mut issue = Issue::error(code, diagnostics);
        if !self.path.is_empty() {
            issue = issue.at(self.location());
        }
        self.issues.push(issue);
    }

    /// Reports an issue one path step below the current location.
    fn error_at(&mut self, seg: Seg<'a>, code: IssueCode, diagnostics: impl Into<String>) {
        self.path.push(seg);
        self.error(code, diagnostics);
        self.path.pop();
    }

    fn resource(&mut self, obj: &'a Map<String, Value>, nesting: Nesting) {
        // A contained resource is registered even when invalid, so references to it resolve.
        let contained = match nesting {
            Nesting::Contained(index) => self.scopes.last_mut().filter(|s| s.current.is_none()).map(|scope| {
                let id = obj.get("id").and_then(Value::as_str);
                scope.contained.push(ContainedInfo { index, id, refers_to_container: false });
                scope.contained.len() - 1
            }),
            _ => None,
        };
        let resource_type = match obj.get("resourceType") {
            Some(Value::String(s)) => s.as_str(),
            None => return self.error(IssueCode::Required, "missing resourceType"),
            Some(_) => return self.error(IssueCode::Structure, "resourceType must be a JSON string"),
        };
        let defs = self.defs;
        let Some(type_def) = defs.type_def(resource_type).filter(|t| t.kind == TypeKind::Resource) else {
            return self.error(IssueCode::Invalid, "unknown resource type");
        };
        if type_def.is_abstract {
            return self.error(IssueCode::Invalid, "abstract resource type: a concrete resource type is required");
        }
        if nesting == Nesting::Root {
            self.path.push(Seg::Name(type_def.name.as_str()));
        }
        match contained {
            Some(slot) => {
                self.contained_rules(obj);
                self.walking_contained(Some(slot));
                self.object(obj, type_def.root, ObjectKind::Resource);
                self.walking_contained(None);
            }
            None => {
                // A resource inside a contained one breaks dom-2 (reported there); walk it as
                // a resource of its own so that its content is still checked.
                self.scopes.push(Scope::default());
                self.object(obj, type_def.root, ObjectKind::Resource);
                // Every push has its pop, so this is the scope pushed above.
                let scope = self.scopes.pop().unwrap_or_default();
                self.check_local_references(scope);
            }
        }
        if nesting == Nesting::Root {
            self.path.pop();
        }
    }

    /// Notes which contained resource of the innermost scope is being walked (`None` when
    /// none is), so that its `#` references are known to point at the container. A slot exists
    /// only where its scope does.
    fn walking_contained(&mut self, slot: Option<usize>) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.current = slot;
        }
    }

    /// dom-2, dom-4, dom-5: what a contained resource may not have.
    fn contained_rules(&mut self, obj: &'a Map<String, Value>) {
        if obj.contains_key("contained") {
            self.error_at(
                Seg::Name("contained"),
                IssueCode::Invariant,
                "a contained resource SHALL NOT contain nested resources (dom-2)",
            );
        }
        if let Some(Value::Object(meta)) = obj.get("meta") {
            if meta.contains_key("versionId") || meta.contains_key("lastUpdated") {
                self.error_at(
                    Seg::Name("meta"),
                    IssueCode::Invariant,
                    "a contained resource SHALL NOT have a meta.versionId or a meta.lastUpdated (dom-4)",
                );
            }
            if meta.contains_key("security") {
                self.error_at(
                    Seg::Name("meta"),
                    IssueCode::Invariant,
                    "a contained resource SHALL NOT have a security label (dom-5)",
                );
            }
        }
    }

    /// Records a `#...` reference, canonical or uri value found in the current resource.
    fn note_local_ref(&mut self, value: &'a str) {
        let Some(scope) = self.scopes.last_mut() else { return };
        scope.local_refs.push(value);
        if let Some(current) = scope.current.filter(|_| value == "#") {
            scope.contained[current].refers_to_container = true;
        }
    }

    /// dom-3 (every contained resource is referenced, or refers to its container) and ref-1
    /// (every `#id` reference names a contained resource).
    fn check_local_references(&mut self, scope: Scope<'a>) {
        for c in &scope.contained {
            let referenced = c.id.is_some_and(|id| scope.local_refs.iter().any(|r| &r[1..] == id));
            if !(referenced || c.refers_to_container) {
                self.path.push(Seg::Name("contained"));
                self.error_at(
                    Seg::Index(c.index),
                    IssueCode::Invariant,
                    "a contained resource SHALL be referred to from elsewhere in the resource or SHALL refer to \
                     the containing resource (dom-3)",
                );
                self.path.pop();
            }
        }
        for (reference, location) in scope.contained_refs {
            let id = &reference[1..];
            if !scope.contained.iter().any(|c| c.id == Some(id)) {
                self.issues.push(
                    Issue::error(IssueCode::Invariant, "reference to a contained resource that does not exist (ref-1)")
                        .at(location),
                );
            }
        }
    }
}
