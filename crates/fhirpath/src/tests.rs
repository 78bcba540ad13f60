//! Unit tests of the engine on the R4 idioms.

use crate::value::{DateTime, Value};
use crate::{CompileError, Environment, EvalError, Expression, Item, TraceSink};
use serde_json::{Value as Json, json};
use std::sync::Mutex;

fn eval<'a>(expr: &str, resource: &'a Json) -> Vec<Item<'a>> {
    Expression::compile(expr).unwrap().evaluate(resource).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

fn texts(items: &[Item<'_>]) -> Vec<String> {
    items.iter().map(|i| i.to_value().map_or_else(|| i.json().to_string(), |v| v.render())).collect()
}

fn one(expr: &str, resource: &Json) -> String {
    let items = eval(expr, resource);
    assert_eq!(items.len(), 1, "{expr}: {:?}", texts(&items));
    texts(&items).remove(0)
}

fn empty() -> Json {
    json!({})
}

fn observation() -> Json {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Weight"},
        "subject": {"reference": "Patient/123"},
        "valueQuantity": {"value": 185, "unit": "lbs", "system": "http://unitsofmeasure.org", "code": "[lb_av]"},
        "component": [
            {"code": {"text": "a"}, "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
            {"code": {"text": "b"}, "valueCodeableConcept": {"text": "high"}}
        ]
    })
}

fn patient() -> Json {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "extension": [{"url": "http://example.org/race", "valueString": "x"}],
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
            {"use": "usual", "given": ["Jim"]}
        ],
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
        "_active": {"id": "a1"},
        "managingOrganization": {"reference": "#org"},
        "contained": [{"resourceType": "Organization", "id": "org", "name": "Acme"}]
    })
}

#[test]
fn expression_is_send_sync_and_reusable() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Expression>();
    let e = Expression::compile("name.given").unwrap();
    let p = patient();
    assert_eq!(e.evaluate(&p).unwrap().len(), 3);
    let e2 = e.clone();
    std::thread::spawn(move || assert_eq!(e2.evaluate(&patient()).unwrap().len(), 3)).join().unwrap();
}

#[test]
fn search_parameter_idioms() {
    let obs = observation();
    let q = eval("Observation.value as Quantity", &obs);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].fhir_type(), "Quantity");
    assert!(std::ptr::eq(q[0].as_node().unwrap(), &obs["valueQuantity"]), "navigation borrows");
    assert!(eval("(Observation.value as CodeableConcept).text", &obs).is_empty());
    assert_eq!(texts(&eval("(Observation.component.value as CodeableConcept).text", &obs)), ["high"]);
    assert_eq!(eval("Observation.component.value.ofType(Quantity)", &obs).len(), 1);
    let subject = eval("Observation.subject.where(resolve() is Patient)", &obs);
    assert_eq!(subject.len(), 1);
    assert_eq!(subject[0].fhir_type(), "Reference");
    assert!(eval("Observation.subject.where(resolve() is Group)", &obs).is_empty());

    let p = patient();
    assert_eq!(texts(&eval("Patient.name.where(use='official').family", &p)), ["Chalmers"]);
    assert_eq!(one("Patient.extension('http://example.org/race').value", &p), "x");
    assert_eq!(
        one("Patient.birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value", &p),
        "1974-12-25T14:35:45-05:00"
    );
    assert_eq!(one("Patient.birthDate", &p), "1974-12-25");
    assert_eq!(eval("Patient.birthDate", &p)[0].fhir_type(), "date");
    assert_eq!(one("Patient.managingOrganization.resolve().name", &p), "Acme");

    let condition =
        json!({"resourceType": "Condition", "onsetDateTime": "2019-03", "subject": {"reference": "Patient/1"}});
    let onset = eval("Condition.onset.as(dateTime)", &condition);
    assert_eq!(onset[0].fhir_type(), "dateTime");
    assert!(eval("Condition.onset.as(Period)", &condition).is_empty());

    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "a"}},
        {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Observation", "status": "final", "subject": {"reference": "urn:uuid:1"}}}
    ]});
    let first = eval("Bundle.entry[0].resource", &bundle);
    assert_eq!(first[0].fhir_type(), "Patient");
    assert_eq!(one("Bundle.entry[1].resource.subject.resolve().id", &bundle), "a");
}

#[test]
fn composite_parts_evaluate_from_context_items() {
    let obs = observation();
    let components = eval("Observation.component", &obs);
    let code = Expression::compile("code.text").unwrap();
    let value = Expression::compile("value.as(Quantity)").unwrap();
    let mut pairs = Vec::new();
    for c in components {
        let env = Environment::new(&obs).with_context_item(c);
        pairs.push((texts(&code.evaluate_with(&env).unwrap()), value.evaluate_with(&env).unwrap().len()));
    }
    assert_eq!(pairs, [(vec!["a".to_owned()], 1), (vec!["b".to_owned()], 0)]);
}

#[test]
fn primitive_extensions_and_values() {
    let p = patient();
    let active = eval("Patient.active", &p);
    assert_eq!(active.len(), 1, "a primitive with only _active is a node");
    assert_eq!(one("Patient.active.hasValue()", &p), "false");
    assert_eq!(one("Patient.active.id", &p), "a1");
    assert_eq!(one("Patient.birthDate.hasValue()", &p), "true");
    assert_eq!(active[0].json(), std::borrow::Cow::<Json>::Owned(Json::Null));
}

#[test]
fn three_valued_logic() {
    let e = empty();
    let cases = [
        ("true and {}", ""),
        ("false and {}", "false"),
        ("true or {}", "true"),
        ("false or {}", ""),
        ("{} implies true", "true"),
        ("false implies {}", "true"),
        ("true implies {}", ""),
        ("true xor {}", ""),
        ("true xor false", "true"),
        ("{}.not()", ""),
    ];
    for (expr, expected) in cases {
        assert_eq!(texts(&eval(expr, &e)).join(","), expected, "{expr}");
    }
}

#[test]
fn dates_with_precision() {
    let e = empty();
    assert_eq!(texts(&eval("@2012 = @2012-01", &e)), Vec::<String>::new());
    assert_eq!(one("@2012-01-01 < @2012-02", &e), "true");
    assert_eq!(one("@2019-01-31 + 1 month", &e), "2019-02-28");
    assert_eq!(one("@2019-01-01 + 1 'd'", &e), "2019-01-02");
    assert_eq!(one("@2019-01-01T10:00:00Z - 90 minutes", &e), "2019-01-01T08:30:00Z");
    assert!(Expression::compile("@2019-01-01 + 1 'mo'").unwrap().evaluate(&e).is_err());
    let now = DateTime::parse("2020-05-06T07:08:09.010Z").unwrap().0;
    let env = Environment::empty().with_now(now);
    let today = Expression::compile("today()").unwrap().evaluate_with(&env).unwrap();
    assert_eq!(texts(&today), ["2020-05-06"]);
}

#[test]
fn quantities_convert_units() {
    let e = empty();
    assert_eq!(one("1 'kg' = 1000 'g'", &e), "true");
    assert_eq!(one("120 'mm[Hg]' > 11 'cm[Hg]'", &e), "true");
    assert_eq!(one("90 'min' = 1.5 'h'", &e), "true");
    assert_eq!(one("1 week = 7 'd'", &e), "true");
    assert_eq!(texts(&eval("1 year = 1 'a'", &e)), Vec::<String>::new());
    assert_eq!(one("1 year ~ 1 'a'", &e), "true");
    assert_eq!(one("Observation.value > 180 '[lb_av]'", &observation()), "true");
    assert_eq!(one("Observation.value < 100 'kg'", &observation()), "true");
}

#[test]
fn equality_and_equivalence() {
    let e = empty();
    assert_eq!(one("'a b' ~ 'A  B'", &e), "true");
    assert_eq!(one("'a' = 'A'", &e), "false");
    assert_eq!(one("1.10 = 1.1", &e), "true");
    assert_eq!(one("(1 | 2) ~ (2 | 1)", &e), "true");
    assert_eq!(one("(1 | 2) = (2 | 1)", &e), "false");
}

#[test]
fn variables_and_trace() {
    struct Sink(Mutex<Vec<(String, usize)>>);
    impl TraceSink for Sink {
        fn trace(&self, name: &str, items: &[Item<'_>]) {
            self.0.lock().unwrap().push((name.to_owned(), items.len()));
        }
    }
    let sink = Sink(Mutex::new(Vec::new()));
    let p = patient();
    let env = Environment::new(&p).with_variable("x", vec![Item::from_value(Value::Integer(2))]).with_trace(&sink);
    let r = Expression::compile("name.trace('names').count() + %x").unwrap().evaluate_with(&env).unwrap();
    assert_eq!(texts(&r), ["4"]);
    assert_eq!(sink.0.lock().unwrap().as_slice(), [("names".to_owned(), 2)]);
    assert_eq!(one("%`vs-administrative-gender`", &p), "http://hl7.org/fhir/ValueSet/administrative-gender");
    assert_eq!(one("%resource.id", &p), "p1");
    assert!(matches!(Expression::compile("%nope").unwrap().evaluate(&p), Err(EvalError::UnknownVariable(_))));
}

#[test]
fn errors_instead_of_panics() {
    let p = patient();
    assert!(matches!(Expression::compile("foo("), Err(CompileError::Syntax(_))));
    assert!(matches!(Expression::compile("nosuch()"), Err(CompileError::UnknownFunction(_))));
    assert!(matches!(Expression::compile("where()"), Err(CompileError::Arity(_))));
    assert!(matches!(Expression::compile("(value as Period).unit"), Err(CompileError::Semantic(_))));
    assert!(matches!(Expression::compile("Patient.nmae").unwrap().evaluate(&p), Err(EvalError::UnknownElement { .. })));
    assert!(Expression::compile("name.single()").unwrap().evaluate(&p).is_err());
    assert!(Expression::compile("memberOf('x')").unwrap().evaluate(&p).is_err());
    let gender = "http://hl7.org/fhir/ValueSet/administrative-gender";
    let with_gender = json!({"resourceType": "Patient", "gender": "female"});
    assert_eq!(one(&format!("Patient.gender.memberOf('{gender}')"), &with_gender), "true");
    assert_eq!(one(&format!("'woman'.memberOf('{gender}')"), &with_gender), "false");
    assert!(Expression::compile("'a'.matches('(')").unwrap().evaluate(&p).is_err());
    for src in ["1 / 0", "2147483647 * 2147483647 * 2147483647", "(-1).sqrt()", "1.0e", "@2019-02-30"] {
        if let Ok(e) = Expression::compile(src) {
            let _ = e.evaluate(&p);
        }
    }
}

#[test]
fn children_and_descendants() {
    let p = patient();
    assert_eq!(one("Patient.name.first().children().count()", &p), "4");
    assert!(eval("Patient.descendants()", &p).len() > 10);
    assert_eq!(one("Patient.descendants().where($this is HumanName).count()", &p), "2");
}

#[test]
fn computed_items_render_as_json() {
    let e = empty();
    let q = eval("2 'mg'", &e);
    assert_eq!(q[0].fhir_type(), "System.Quantity");
    assert_eq!(q[0].json()["code"], "mg");
    assert_eq!(eval("1.50", &e)[0].json().to_string(), "1.50");
    assert!(eval("1", &e)[0].as_node().is_none());
}
