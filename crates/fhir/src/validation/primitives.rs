//! Primitive values: JSON type, the format regexes of the definitions, and the few rules the
//! regexes do not express (integer range, calendar dates, string size, narrative XHTML).

use super::Validator;
use crate::IssueCode;
use crate::definitions::{ElementDef, ElementType, JsonKind, Primitive, Role};
use crate::reference::ReferenceTarget;
use serde_json::{Number, Value};

impl<'a> Validator<'a> {
    pub(super) fn primitive_value(
        &mut self,
        elem: &'static ElementDef,
        ty: &'static ElementType,
        tid: u32,
        value: &'a Value,
    ) {
        let defs = self.defs;
        let type_def = defs.type_at(tid);
        let Some(rules) = type_def.primitive() else { return };
        let name = type_def.name.as_str();
        match (rules.json, value) {
            (JsonKind::String, Value::String(s)) => self.string_value(elem, ty, rules, name, s),
            (JsonKind::Number, Value::Number(n)) => self.number_value(rules, name, n),
            (JsonKind::Boolean, Value::Bool(_)) => {}
            (JsonKind::String, _) => self.error(IssueCode::Structure, format!("expected a JSON string ({name})")),
            (JsonKind::Number, _) => self.error(IssueCode::Structure, format!("expected a JSON number ({name})")),
            (JsonKind::Boolean, _) => self.error(IssueCode::Structure, format!("expected a JSON boolean ({name})")),
        }
    }

    fn string_value(
        &mut self,
        elem: &'static ElementDef,
        ty: &'static ElementType,
        rules: &Primitive,
        name: &str,
        s: &'a str,
    ) {
        if s.is_empty() {
            return self.error(IssueCode::Value, format!("empty {name}: omit the element instead"));
        }
        if rules.max_chars.is_some_and(|max| s.len() > max && s.chars().count() > max) {
            return self.error(IssueCode::TooLong, format!("{name} longer than 1 MiB"));
        }
        if rules.xhtml {
            let trimmed = s.trim();
            if !(trimmed.starts_with("<div") && trimmed.ends_with('>')) {
                self.error(IssueCode::Value, "narrative must be an XHTML <div> element");
            }
            return;
        }
        if rules.regex.as_ref().is_some_and(|re| !re.is_match(s)) {
            return self.error(IssueCode::Value, format!("invalid {name} format"));
        }
        if rules.calendar && !is_calendar_date(s) {
            return self.error(IssueCode::Value, format!("invalid {name}: no such calendar date"));
        }
        match (elem.role, ty.code.as_str()) {
            (Role::ReferenceString, _) => self.reference_string(s),
            (_, "uri" | "url" | "canonical") if s.starts_with('#') => self.note_local_ref(s),
            _ => {}
        }
        if elem.binding.is_some() {
            self.code_binding(elem, s);
        }
    }

    fn number_value(&mut self, rules: &Primitive, name: &str, n: &Number) {
        // With arbitrary_precision the number keeps its JSON text, so the regex sees what was sent.
        let text = n.as_str();
        if rules.regex.as_ref().is_some_and(|re| !re.is_match(text)) {
            self.error(IssueCode::Value, format!("invalid {name} format"));
        } else if rules.integer && text.parse::<i32>().is_err() {
            self.error(IssueCode::Value, format!("{name} out of range (32-bit signed integer)"));
        }
    }

    /// `Reference.reference`: one of the reference forms, to a known resource type.
    fn reference_string(&mut self, s: &'a str) {
        match ReferenceTarget::parse(s, None) {
            ReferenceTarget::Invalid => self.error(IssueCode::Value, "invalid reference format"),
            ReferenceTarget::Local { resource_type, .. } | ReferenceTarget::Conditional { resource_type, .. }
                if !self.defs.is_resource_type(resource_type) =>
            {
                self.error(IssueCode::Value, "reference to an unknown resource type")
            }
            ReferenceTarget::Contained(id) => {
                self.note_local_ref(s);
                if !id.is_empty() {
                    let location = self.location();
                    if let Some(scope) = self.scopes.last_mut() {
                        scope.contained_refs.push((s, location));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether the `YYYY-MM-DD` part of a date/dateTime/instant (when present) exists in the
/// Gregorian calendar; the format itself is checked by the regex.
fn is_calendar_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return true;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    let (Some(year), Some(month), Some(day)) = (num(0..4), num(5..7), num(8..10)) else { return false };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

#[cfg(test)]
mod tests {
    use super::is_calendar_date;

    #[test]
    fn calendar_dates() {
        assert!(is_calendar_date("2024-02-29"));
        assert!(!is_calendar_date("2023-02-29"));
        assert!(is_calendar_date("2000-02-29T10:00:00Z"));
        assert!(!is_calendar_date("1900-02-29"));
        assert!(!is_calendar_date("2021-04-31"));
        assert!(is_calendar_date("2021-04"));
        assert!(is_calendar_date("2021"));
    }
}
