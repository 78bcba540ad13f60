//! Runs the entries of a transaction (or a single batch entry) inside one unit of work, in the
//! order R4 sets: DELETE, then POST, then PUT/PATCH, then GET/HEAD. Identities are resolved
//! first, so that each resource is then walked once to rewrite `urn:` and conditional
//! references before it is stored; references are checked once everything is written.

use crate::bundle::{Entry, Method, Target, read_response, write_response};
use crate::records::conditional_criteria;
use crate::refs::{RefChecker, conditional_reference, locate, rewrite_strings};
use crate::write::{self, Written, apply_patch, check_if_match, find_one};
use crate::{Error, Result, Transaction};
use fhir::{Issue, IssueCode};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// What resolving a POST decided.
enum Resolved {
    /// Create with this id.
    Write(String),
    /// An If-None-Exist matched: this is the response, nothing is written.
    Done(Value),
}

/// Executes `entries` in `tx` and returns their response entries in request order. Errors
/// name the entry they come from.
pub(crate) fn execute(tx: &mut dyn Transaction, mut entries: Vec<Entry>, base: Option<&str>) -> Result<Vec<Value>> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| entries[i].method.rank());
    let mut run = Run {
        tx,
        checker: RefChecker::new(base),
        targets: HashSet::new(),
        urns: HashMap::new(),
        conditional: HashMap::new(),
    };
    let mut responses = vec![Value::Null; entries.len()];
    let mut ids: Vec<Option<String>> = vec![None; entries.len()];
    for &i in &order {
        let entry = &entries[i];
        let at = |e: Error| e.in_entry(entry.index);
        match entry.method {
            Method::Delete => responses[i] = run.delete(entry).map_err(at)?,
            Method::Post => match run.resolve_post(entry).map_err(at)? {
                Resolved::Write(id) => ids[i] = Some(id),
                Resolved::Done(response) => responses[i] = response,
            },
            Method::Put | Method::Patch => ids[i] = Some(run.resolve_update(entry).map_err(at)?),
            Method::Get | Method::Head => {}
        }
    }
    let mut written = Vec::new();
    for &i in &order {
        let Some(id) = ids[i].take() else { continue };
        let index = entries[i].index;
        let done = run.write(&mut entries[i], &id).map_err(|e| e.in_entry(index))?;
        responses[i] = write_response(&done.outcome);
        if let Some(v) = &done.outcome.version {
            run.checker.note_live(&v.resource_type, &v.id, v.version);
        }
        if let Some(body) = done.body {
            written.push((index, body));
        }
    }
    for (index, body) in &written {
        run.checker.check(run.tx, body).map_err(|e| e.in_entry(*index))?;
    }
    for &i in &order {
        if matches!(entries[i].method, Method::Get | Method::Head) {
            responses[i] = run.read(&entries[i]).map_err(|e| e.in_entry(entries[i].index))?;
        }
    }
    Ok(responses)
}

struct Run<'t, 'b> {
    tx: &'t mut dyn Transaction,
    checker: RefChecker<'b>,
    /// Every `(type, id)` written so far: a second write to one is refused.
    targets: HashSet<(String, String)>,
    /// `fullUrl` of an entry → `Type/id` it now has.
    urns: HashMap<String, String>,
    /// Conditional reference → `Type/id` it resolved to.
    conditional: HashMap<String, String>,
}

impl Run<'_, '_> {
    fn claim(&mut self, resource_type: &str, id: &str) -> Result<()> {
        if self.targets.insert((resource_type.to_string(), id.to_string())) {
            Ok(())
        } else {
            Err(Error::invalid(format!("{resource_type}/{id} is the target of more than one entry")))
        }
    }

    fn register(&mut self, entry: &Entry, id: &str) -> Result<()> {
        let Some(full_url) = &entry.full_url else { return Ok(()) };
        let local = format!("{}/{id}", entry.resource_type);
        match self.urns.insert(full_url.clone(), local) {
            None => Ok(()),
            Some(_) => Err(Error::invalid(format!("fullUrl `{full_url}` is used by more than one entry"))),
        }
    }

    fn delete(&mut self, entry: &Entry) -> Result<Value> {
        let resource_type = entry.resource_type.as_str();
        match &entry.target {
            Target::Instance { id, .. } => {
                self.claim(resource_type, id)?;
                Ok(write_response(&write::delete(self.tx, resource_type, id, entry.if_match)?.outcome))
            }
            Target::Conditional(criteria) => {
                for id in criteria.find(self.tx, resource_type)? {
                    self.claim(resource_type, &id)?;
                    write::delete(self.tx, resource_type, &id, None)?;
                }
                Ok(json!({ "response": { "status": "204 No Content" } }))
            }
            Target::Type => Err(Error::invalid("DELETE needs an id or criteria")),
        }
    }

    fn resolve_post(&mut self, entry: &Entry) -> Result<Resolved> {
        let resource_type = entry.resource_type.as_str();
        if let Some(criteria) = &entry.if_none_exist
            && let Some(existing) = find_one(self.tx, resource_type, criteria)?
        {
            self.register(entry, &existing)?;
            let matched = write::matched(self.tx, resource_type, &existing)?;
            return Ok(Resolved::Done(write_response(&matched.outcome)));
        }
        self.claim(resource_type, &entry.new_id)?;
        self.register(entry, &entry.new_id)?;
        Ok(Resolved::Write(entry.new_id.clone()))
    }

    fn resolve_update(&mut self, entry: &Entry) -> Result<String> {
        let resource_type = entry.resource_type.as_str();
        let id = match &entry.target {
            Target::Instance { id, .. } => id.clone(),
            Target::Conditional(criteria) => {
                let body_id = entry.body.as_ref().and_then(|b| b.get("id")).and_then(Value::as_str);
                write::conditional_target(self.tx, resource_type, criteria, body_id, &entry.new_id)?
            }
            Target::Type => return Err(Error::invalid("PUT and PATCH need an id or criteria")),
        };
        self.claim(resource_type, &id)?;
        self.register(entry, &id)?;
        Ok(id)
    }

    fn write(&mut self, entry: &mut Entry, id: &str) -> Result<Written> {
        let resource_type = entry.resource_type.as_str();
        match entry.method {
            Method::Post => {
                let mut body = entry.body.take().ok_or_else(|| Error::invalid("a POST entry needs a resource"))?;
                self.rewrite(&mut body)?;
                write::create(self.tx, resource_type, id, body, None)
            }
            Method::Put => {
                let mut body = entry.body.take().ok_or_else(|| Error::invalid("a PUT entry needs a resource"))?;
                self.rewrite(&mut body)?;
                write::update(self.tx, resource_type, id, body, entry.if_match)
            }
            Method::Patch => {
                let patch = entry.patch.as_ref().ok_or_else(|| Error::invalid("a PATCH entry needs a patch"))?;
                let current = match self.tx.current(resource_type, id)? {
                    Some(c) if !c.is_deleted() => c,
                    Some(c) => {
                        let (resource_type, id) = (resource_type.to_string(), id.to_string());
                        return Err(Error::Gone { resource_type, id, version: c.version });
                    }
                    None => {
                        let (resource_type, id) = (resource_type.to_string(), id.to_string());
                        return Err(Error::NotFound { resource_type, id });
                    }
                };
                check_if_match(entry.if_match, Some(&current))?;
                let mut body = apply_patch(&current, patch)?;
                self.rewrite(&mut body)?;
                write::update(self.tx, resource_type, id, body, None)
            }
            Method::Get | Method::Head | Method::Delete => Err(Error::invalid("not a write")),
        }
    }

    /// Replaces, in one pass, every `urn:` string that is an entry's fullUrl (and every
    /// reference equal to one) with the entry's `Type/id`, and every conditional reference with
    /// the one resource it matches.
    fn rewrite(&mut self, body: &mut Value) -> Result<()> {
        let Run { tx, urns, conditional, .. } = self;
        let mut failed = None;
        let result = rewrite_strings(body, &mut |is_reference, s| {
            if (is_reference || s.starts_with("urn:"))
                && let Some(local) = urns.get(s.as_str())
            {
                s.clone_from(local);
                return Ok(());
            }
            if is_reference && let Some((resource_type, query)) = conditional_reference(s) {
                match resolve_conditional(&mut **tx, conditional, s, resource_type, query) {
                    Ok(local) => *s = local,
                    Err(e) => {
                        failed = Some(s.clone());
                        return Err(e);
                    }
                }
            }
            Ok(())
        });
        match (result, failed) {
            (Err(e), Some(reference)) => Err(located(e, body, &reference)),
            (result, _) => result,
        }
    }

    fn read(&mut self, entry: &Entry) -> Result<Value> {
        let resource_type = entry.resource_type.as_str();
        let Target::Instance { id, version } = &entry.target else {
            return Err(Error::NotSupported("search in a Bundle".into()));
        };
        let found = match version {
            None => self.tx.current(resource_type, id)?,
            Some(v) => self.tx.version(resource_type, id, *v)?,
        };
        match found {
            Some(v) if v.is_deleted() => {
                Err(Error::Gone { resource_type: v.resource_type, id: v.id, version: v.version })
            }
            Some(v) => read_response(&v, entry.method == Method::Head),
            None => Err(Error::NotFound { resource_type: resource_type.to_string(), id: id.clone() }),
        }
    }
}

/// The `Type/id` of the one live resource a conditional reference matches.
fn resolve_conditional(
    tx: &mut dyn Transaction,
    cache: &mut HashMap<String, String>,
    reference: &str,
    resource_type: &str,
    query: &str,
) -> Result<String> {
    if let Some(local) = cache.get(reference) {
        return Ok(local.clone());
    }
    let criteria = conditional_criteria(query, resource_type)?;
    let found = criteria.find_to_read(tx, resource_type)?;
    let local = match found.as_slice() {
        [one] => format!("{resource_type}/{one}"),
        [] => {
            let issue = Issue::error(
                IssueCode::BusinessRule,
                format!("the conditional reference to {resource_type} matches no resource"),
            );
            return Err(Error::Unprocessable(vec![issue]));
        }
        many => {
            let n = many.len();
            return Err(Error::PreconditionFailed(format!(
                "the conditional reference to {resource_type} matches {n} resources, not one"
            )));
        }
    };
    cache.insert(reference.to_string(), local.clone());
    Ok(local)
}

/// Points the issues of `error` that have no location at where `reference` is in `body`.
fn located(error: Error, body: &Value, reference: &str) -> Error {
    let place = |mut issues: Vec<Issue>| {
        let at = locate(body, reference);
        for issue in issues.iter_mut().filter(|i| i.expression.is_none()) {
            issue.expression.clone_from(&at);
        }
        issues
    };
    match error {
        Error::Invalid(issues) => Error::Invalid(place(issues)),
        Error::Unprocessable(issues) => Error::Unprocessable(place(issues)),
        Error::PreconditionFailed(message) => match locate(body, reference) {
            Some(at) => Error::PreconditionFailed(format!("{message} (at {at})")),
            None => Error::PreconditionFailed(message),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::parse_entry;
    use crate::memory::MemoryTx;
    use crate::{ErrorKind, write};

    fn entries(raw: Value) -> Vec<Entry> {
        let raw = raw.as_array().unwrap().clone();
        raw.into_iter().enumerate().map(|(i, e)| parse_entry(i, e).unwrap()).collect()
    }

    fn stored(tx: &mut MemoryTx, location: &Value) -> Value {
        let location = location.as_str().unwrap();
        let mut parts = location.split('/');
        let (t, id) = (parts.next().unwrap(), parts.next().unwrap());
        serde_json::from_str(tx.current(t, id).unwrap().unwrap().body.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn rewrites_urns_in_every_string_and_resolves_conditional_references() {
        let mut tx = MemoryTx::default();
        let doctor = json!({"resourceType": "Practitioner", "identifier": [{"system": "npi", "value": "1"}]});
        write::create(&mut tx, "Practitioner", "dr", doctor, None).unwrap();
        let batch = entries(json!([
            {"fullUrl": "urn:uuid:obs", "request": {"method": "POST", "url": "Observation"},
             "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "subject": {"reference": "urn:uuid:pat"}, "performer": [{"reference": "Practitioner?identifier=npi|1"}],
                          "note": [{"text": "urn:uuid:pat"}], "derivedFrom": [{"reference": "urn:uuid:obs"}]}},
            {"fullUrl": "urn:uuid:pat", "request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient"}}
        ]));
        let responses = execute(&mut tx, batch, None).unwrap();
        let obs = stored(&mut tx, &responses[0]["response"]["location"]);
        let patient_ref = format!("Patient/{}", tx.live("Patient")[0]);
        assert_eq!(obs["subject"]["reference"], json!(patient_ref));
        assert_eq!(obs["note"][0]["text"], json!(patient_ref), "any string equal to the urn");
        assert_eq!(obs["performer"][0]["reference"], json!("Practitioner/dr"));
        assert_eq!(obs["derivedFrom"][0]["reference"], json!(format!("Observation/{}", obs["id"].as_str().unwrap())));
    }

    #[test]
    fn deletes_run_before_creates_and_reads_last() {
        let mut tx = MemoryTx::default();
        let old = json!({"resourceType": "Patient", "identifier": [{"system": "s", "value": "1"}]});
        write::create(&mut tx, "Patient", "old", old, None).unwrap();
        let request = entries(json!([
            {"request": {"method": "GET", "url": "Patient/old"}},
            {"request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=s|1"},
             "resource": {"resourceType": "Patient", "identifier": [{"system": "s", "value": "1"}]}},
            {"request": {"method": "DELETE", "url": "Patient/old"}}
        ]));
        let err = execute(&mut tx, request, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Gone, "the GET ran after the DELETE");
        assert_eq!(err.issues()[0].expression.as_deref(), Some("Bundle.entry[0]"));
        // A MemoryTx has no rollback: start again from the same state.
        let mut tx = MemoryTx::default();
        let old = json!({"resourceType": "Patient", "identifier": [{"system": "s", "value": "1"}]});
        write::create(&mut tx, "Patient", "old", old, None).unwrap();
        let request = entries(json!([
            {"request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=s|1"},
             "resource": {"resourceType": "Patient", "identifier": [{"system": "s", "value": "1"}]}},
            {"request": {"method": "DELETE", "url": "Patient/old"}}
        ]));
        let responses = execute(&mut tx, request, None).unwrap();
        assert_eq!(responses[0]["response"]["status"], json!("201 Created"), "the delete ran first, so no match");
        assert_eq!(tx.live("Patient").len(), 1);
        assert!(!tx.live("Patient").contains(&"old".to_string()));
    }

    #[test]
    fn one_target_twice_and_unresolved_urns_fail() {
        let mut tx = MemoryTx::default();
        let twice = entries(json!([
            {"request": {"method": "PUT", "url": "Patient/a"}, "resource": {"resourceType": "Patient", "id": "a"}},
            {"request": {"method": "DELETE", "url": "Patient/a"}}
        ]));
        let err = execute(&mut tx, twice, None).unwrap_err();
        assert_eq!((err.kind(), err.issues()[0].expression.as_deref()), (ErrorKind::Invalid, Some("Bundle.entry[0]")));
        let dangling = entries(json!([
            {"request": {"method": "POST", "url": "Observation"},
             "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "subject": {"reference": "urn:uuid:nobody"}}}
        ]));
        let err = execute(&mut tx, dangling, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unprocessable);
        assert_eq!(err.issues()[0].expression.as_deref(), Some("Bundle.entry[0].resource.subject.reference"));
        let ambiguous = entries(json!([
            {"request": {"method": "PUT", "url": "Patient/b"},
             "resource": {"resourceType": "Patient", "id": "b", "link": [{"other": {"reference": "Patient?_id=a,b"}, "type": "seealso"}]}}
        ]));
        write::create(&mut tx, "Patient", "a", json!({"resourceType": "Patient"}), None).unwrap();
        write::create(&mut tx, "Patient", "b", json!({"resourceType": "Patient"}), None).unwrap();
        let err = execute(&mut tx, ambiguous, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PreconditionFailed);
        assert!(err.to_string().contains("Patient.link[0].other.reference"), "{err}");
    }
}
