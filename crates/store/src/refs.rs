//! References inside resources: finding them, checking that they resolve (referential
//! integrity), and rewriting the Bundle-local ones of a transaction.

use crate::{Error, Result, Transaction};
use fhir::{Issue, IssueCode, ReferenceTarget};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write as _;

/// One step of a path into a resource.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A FHIRPath-like expression for `path` inside a resource of `resource_type`, e.g.
/// `Claim.item[0].encounter[0].reference`.
pub(crate) fn expression(resource_type: &str, path: &[Seg<'_>]) -> String {
    let mut out = resource_type.to_string();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

/// Calls `f(path, reference, in_contained)` for every string under a `reference` key anywhere
/// in `resource`; `in_contained` tells whether it sits inside a contained resource.
pub(crate) fn for_each_reference<'a>(resource: &'a Value, f: &mut impl FnMut(&[Seg<'a>], &'a str, bool)) {
    let mut path = Vec::new();
    let Some(object) = resource.as_object() else { return };
    for (key, value) in object {
        path.push(Seg::Key(key));
        walk(value, key == "reference", key == "contained", &mut path, f);
        path.pop();
    }
}

fn walk<'a>(
    value: &'a Value,
    is_reference: bool,
    in_contained: bool,
    path: &mut Vec<Seg<'a>>,
    f: &mut impl FnMut(&[Seg<'a>], &'a str, bool),
) {
    match value {
        Value::String(s) if is_reference => f(path, s, in_contained),
        Value::Object(object) => {
            for (key, child) in object {
                path.push(Seg::Key(key));
                walk(child, key == "reference", in_contained, path, f);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                walk(child, false, in_contained, path, f);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Visits every string in `value` in place: `f(under_reference_key, string)`. One pass, no
/// allocation unless `f` replaces a string.
pub(crate) fn rewrite_strings(value: &mut Value, f: &mut impl FnMut(bool, &mut String) -> Result<()>) -> Result<()> {
    rewrite(value, false, f)
}

fn rewrite(value: &mut Value, is_reference: bool, f: &mut impl FnMut(bool, &mut String) -> Result<()>) -> Result<()> {
    match value {
        Value::String(s) => f(is_reference, s),
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                rewrite(child, key == "reference", f)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|child| rewrite(child, false, f)),
        _ => Ok(()),
    }
}

/// The expression of the first `reference` equal to `reference` in `resource`, if any.
pub(crate) fn locate(resource: &Value, reference: &str) -> Option<String> {
    let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or("Resource");
    let mut found = None;
    for_each_reference(resource, &mut |path, r, _| {
        if found.is_none() && r == reference {
            found = Some(expression(resource_type, path));
        }
    });
    found
}

/// `(Type, query)` of a conditional reference such as `Practitioner?identifier=http://x|1`.
/// Checked before `ReferenceTarget::parse`, which takes a query holding `://` for an
/// absolute URL.
pub(crate) fn conditional_reference(reference: &str) -> Option<(&str, &str)> {
    let (resource_type, query) = reference.split_once('?')?;
    crate::resource::looks_like_type(resource_type).then_some((resource_type, query))
}

/// How `reference` is to be treated.
pub(crate) fn classify<'a>(reference: &'a str, base: Option<&str>) -> ReferenceTarget<'a> {
    match conditional_reference(reference) {
        Some((resource_type, query)) => ReferenceTarget::Conditional { resource_type, query },
        None => ReferenceTarget::parse(reference, base),
    }
}

/// What a `Type/id` currently is, as far as references care.
#[derive(Debug, Clone, Copy)]
enum Status {
    Missing,
    Deleted,
    Live(u64),
}

/// Checks that references resolve, caching lookups (a transaction checks thousands of
/// references to the same few resources).
pub(crate) struct RefChecker<'b> {
    base: Option<&'b str>,
    known: HashMap<String, Status>,
    key: String,
}

impl<'b> RefChecker<'b> {
    /// A checker for a server whose absolute references start with `base`.
    pub(crate) fn new(base: Option<&'b str>) -> Self {
        RefChecker { base, known: HashMap::new(), key: String::new() }
    }

    /// Records that `resource_type/id` is live at `version` (written in this transaction).
    pub(crate) fn note_live(&mut self, resource_type: &str, id: &str, version: u64) {
        self.known.insert(format!("{resource_type}/{id}"), Status::Live(version));
    }

    /// `Unprocessable` with one issue per reference that does not resolve; `Invalid` when a
    /// reference is not a valid reference at all. Bundles (documents, collections) are
    /// self-contained and not checked.
    pub(crate) fn check(&mut self, tx: &mut dyn Transaction, resource: &Value) -> Result<()> {
        let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or("Resource");
        if resource_type == "Bundle" {
            return Ok(());
        }
        let contained: Vec<&str> = match resource.get("contained") {
            Some(Value::Array(items)) => items.iter().filter_map(|c| c.get("id")?.as_str()).collect(),
            _ => Vec::new(),
        };
        let mut invalid = Vec::new();
        let mut dangling = Vec::new();
        let mut failure = None;
        let base = self.base;
        for_each_reference(resource, &mut |path, reference, in_contained| {
            if failure.is_some() {
                return;
            }
            let problem = match classify(reference, base) {
                ReferenceTarget::Local { resource_type: t, id, version } => match self.status(tx, t, id) {
                    Ok(status) => local_problem(status, version),
                    Err(e) => {
                        failure = Some(e);
                        None
                    }
                },
                ReferenceTarget::Contained(_) if in_contained => None,
                ReferenceTarget::Contained(id) => {
                    (!id.is_empty() && !contained.contains(&id)).then_some("has no contained resource with that id")
                }
                ReferenceTarget::Urn(_) => Some("is not the fullUrl of an entry of this transaction"),
                ReferenceTarget::Conditional { .. } => Some("is a conditional reference, resolved only in bundles"),
                ReferenceTarget::External(_) => None,
                ReferenceTarget::Invalid => {
                    let issue = Issue::error(IssueCode::Value, "not a valid reference");
                    invalid.push(issue.at(expression(resource_type, path)));
                    None
                }
            };
            if let Some(problem) = problem {
                let issue = Issue::error(IssueCode::BusinessRule, format!("reference `{reference}` {problem}"));
                dangling.push(issue.at(expression(resource_type, path)));
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        if !invalid.is_empty() {
            invalid.extend(dangling);
            return Err(Error::Invalid(invalid));
        }
        if !dangling.is_empty() {
            return Err(Error::Unprocessable(dangling));
        }
        Ok(())
    }

    fn status(&mut self, tx: &mut dyn Transaction, resource_type: &str, id: &str) -> Result<Status> {
        self.key.clear();
        self.key.push_str(resource_type);
        self.key.push('/');
        self.key.push_str(id);
        if let Some(status) = self.known.get(self.key.as_str()) {
            return Ok(*status);
        }
        let status = match tx.current_version(resource_type, id)? {
            None => Status::Missing,
            Some((_, true)) => Status::Deleted,
            Some((version, false)) => Status::Live(version),
        };
        self.known.insert(self.key.clone(), status);
        Ok(status)
    }
}

fn local_problem(status: Status, version: Option<&str>) -> Option<&'static str> {
    match status {
        Status::Missing => Some("points at a resource that does not exist"),
        Status::Deleted => Some("points at a deleted resource"),
        Status::Live(current) => match version.map(str::parse::<u64>) {
            None => None,
            Some(Ok(v)) if (1..=current).contains(&v) => None,
            Some(_) => Some("points at a version that does not exist"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_references_everywhere_with_paths() {
        let r = json!({
            "resourceType": "Claim",
            "contained": [{"resourceType": "Coverage", "id": "c", "payor": [{"reference": "#"}]}],
            "patient": {"reference": "Patient/1"},
            "item": [{"encounter": [{"reference": "Encounter/2"}]}],
            "extension": [{"url": "x", "valueReference": {"reference": "#c"}}],
            "note": {"text": "reference"}
        });
        let mut seen = Vec::new();
        for_each_reference(&r, &mut |path, reference, contained| {
            seen.push((expression("Claim", path), reference.to_string(), contained));
        });
        assert_eq!(
            seen,
            vec![
                ("Claim.contained[0].payor[0].reference".to_string(), "#".to_string(), true),
                ("Claim.patient.reference".to_string(), "Patient/1".to_string(), false),
                ("Claim.item[0].encounter[0].reference".to_string(), "Encounter/2".to_string(), false),
                ("Claim.extension[0].valueReference.reference".to_string(), "#c".to_string(), false),
            ]
        );
        assert_eq!(locate(&r, "Encounter/2").as_deref(), Some("Claim.item[0].encounter[0].reference"));
    }

    #[test]
    fn conditional_references_with_urls_in_the_query() {
        let r = "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1";
        assert_eq!(conditional_reference(r), Some(("Practitioner", "identifier=http://hl7.org/fhir/sid/us-npi|1")));
        assert!(matches!(classify(r, None), ReferenceTarget::Conditional { resource_type: "Practitioner", .. }));
        assert_eq!(conditional_reference("http://x/fhir/Patient?a=b"), None);
        assert!(matches!(classify("Patient/1", None), ReferenceTarget::Local { .. }));
    }

    #[test]
    fn rewrites_strings_in_place() {
        let mut r = json!({"a": "urn:uuid:1", "b": [{"reference": "urn:uuid:1"}], "c": 1.5});
        let mut calls = Vec::new();
        rewrite_strings(&mut r, &mut |is_ref, s| {
            calls.push(is_ref);
            if s == "urn:uuid:1" {
                *s = "Patient/p".into();
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(r, json!({"a": "Patient/p", "b": [{"reference": "Patient/p"}], "c": 1.5}));
        assert_eq!(calls, vec![false, true]);
    }

    #[test]
    fn checker_reports_each_problem_where_it_is() {
        use crate::memory::MemoryTx;
        let mut tx = MemoryTx::default();
        crate::write::create(&mut tx, "Patient", "p", json!({"resourceType": "Patient"}), None).unwrap();
        crate::write::delete(&mut tx, "Patient", "p", None).unwrap();
        crate::write::create(&mut tx, "Patient", "q", json!({"resourceType": "Patient"}), None).unwrap();
        let mut checker = RefChecker::new(Some("https://ehr.example/fhir"));
        let check = |checker: &mut RefChecker<'_>, tx: &mut MemoryTx, r: Value| checker.check(tx, &r);
        let ok = json!({
            "resourceType": "Observation",
            "contained": [{"resourceType": "Device", "id": "d", "parent": {"reference": "#x"}}],
            "subject": {"reference": "https://ehr.example/fhir/Patient/q/_history/1"},
            "device": {"reference": "#d"},
            "focus": [{"reference": "https://elsewhere.example/Patient/1"}, {"reference": "Patient/q"}]
        });
        check(&mut checker, &mut tx, ok).unwrap();
        let bad = json!({
            "resourceType": "Observation",
            "subject": {"reference": "Patient/p"},
            "device": {"reference": "#nothing"},
            "focus": [{"reference": "Patient/q/_history/2"}, {"reference": "urn:uuid:x"}, {"reference": "Group?identifier=a"}]
        });
        let err = check(&mut checker, &mut tx, bad).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unprocessable);
        let at: Vec<_> = err.issues().iter().map(|i| i.expression.clone().unwrap()).collect();
        assert_eq!(
            at,
            [
                "Observation.subject.reference",
                "Observation.device.reference",
                "Observation.focus[0].reference",
                "Observation.focus[1].reference",
                "Observation.focus[2].reference"
            ]
        );
        let invalid = json!({"resourceType": "Observation", "subject": {"reference": "Patient/"}});
        assert_eq!(check(&mut checker, &mut tx, invalid).unwrap_err().kind(), crate::ErrorKind::Invalid);
        let bundle =
            json!({"resourceType": "Bundle", "entry": [{"resource": {"subject": {"reference": "Patient/zz"}}}]});
        check(&mut checker, &mut tx, bundle).unwrap();
    }

    #[test]
    fn versioned_references() {
        assert_eq!(local_problem(Status::Live(2), Some("2")), None);
        assert!(local_problem(Status::Live(2), Some("3")).is_some());
        assert!(local_problem(Status::Deleted, None).is_some());
        assert!(local_problem(Status::Missing, None).is_some());
    }
}
