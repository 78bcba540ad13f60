//! Required bindings: coded values must come from the bound value set.
//!
//! "required: To be conformant, the concept in this element SHALL be from the specified value
//! set" (R4 terminologies.html). A `code` is looked up in the set; a Coding must match by system
//! and code; a CodeableConcept must have at least one such Coding (translations from other
//! systems may accompany it, text alone does not satisfy the binding), and every Coding that
//! claims one of the set's systems must be in the set. Value sets that cannot be expanded from
//! the embedded definitions are not checked.

use super::{Seg, Validator};
use crate::IssueCode;
use crate::definitions::{BindingStrength, ElementDef, ElementType, ValueSet};
use serde_json::{Map, Value};

impl Validator<'_> {
    fn required_value_set(&self, elem: &ElementDef) -> Option<&'static ValueSet> {
        let binding = elem.binding.as_ref().filter(|b| b.strength == BindingStrength::Required)?;
        self.defs.value_set(binding.value_set.as_deref()?).filter(|vs| vs.is_checkable())
    }

    /// A code-like primitive (`code`, or a string with a required binding).
    pub(super) fn code_binding(&mut self, elem: &ElementDef, code: &str) {
        let Some(vs) = self.required_value_set(elem) else { return };
        if vs.contains_code(code) == Some(false) {
            self.error(IssueCode::CodeInvalid, format!("code is not in the required value set {}", vs.url));
        }
    }

    /// A Coding or CodeableConcept element with a required binding.
    pub(super) fn coded_binding(&mut self, elem: &ElementDef, ty: &ElementType, obj: &Map<String, Value>) {
        let Some(vs) = self.required_value_set(elem) else { return };
        if ty.code == "Coding" {
            if !coding_in(vs, obj) {
                self.error(IssueCode::CodeInvalid, format!("coding is not in the required value set {}", vs.url));
            }
            return;
        }
        let codings = obj.get("coding").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        if codings.is_empty() {
            return self.error(
                IssueCode::CodeInvalid,
                format!("no coding given, but a code from the required value set {} is needed", vs.url),
            );
        }
        let mut any_in = false;
        for (i, coding) in codings.iter().enumerate() {
            let Some(coding) = coding.as_object() else { continue };
            if coding_in(vs, coding) {
                any_in = true;
            } else if coding.get("system").and_then(Value::as_str).is_some_and(|s| vs.systems().any(|v| v == s)) {
                // Other systems may add translations, but a code claimed from the bound system must exist.
                self.path.push(Seg::Name("coding"));
                self.error_at(
                    Seg::Index(i),
                    IssueCode::CodeInvalid,
                    format!("code is not in the required value set {}", vs.url),
                );
                self.path.pop();
                any_in = true; // reported here; not again for the whole concept
            }
        }
        if !any_in {
            self.error(IssueCode::CodeInvalid, format!("no coding is from the required value set {}", vs.url));
        }
    }
}

fn coding_in(vs: &ValueSet, coding: &Map<String, Value>) -> bool {
    let system = coding.get("system").and_then(Value::as_str);
    let code = coding.get("code").and_then(Value::as_str);
    match (system, code) {
        (Some(system), Some(code)) => vs.contains(system, code) == Some(true),
        _ => false,
    }
}
