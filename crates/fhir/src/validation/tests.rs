use super::validate;
use crate::{Issue, IssueCode};
use serde_json::{Value, json};

/// The error issues of `resource` as (code, expression) pairs.
fn errors(resource: &Value) -> Vec<(IssueCode, String)> {
    validate(resource).into_iter().filter(Issue::is_error).map(|i| (i.code, i.expression.unwrap_or_default())).collect()
}

fn assert_valid(resource: &Value) {
    let issues = validate(resource);
    assert!(issues.is_empty(), "unexpected issues: {issues:#?}");
}

/// Asserts exactly one error, with this code and location.
fn assert_one(resource: &Value, code: IssueCode, expression: &str) {
    assert_eq!(errors(resource), vec![(code, expression.to_owned())], "for {resource}");
}

fn patient_with(key: &str, value: Value) -> Value {
    let mut patient = json!({"resourceType": "Patient"});
    patient[key] = value;
    patient
}

fn extension_value(key: &str, value: Value) -> Value {
    let mut ext = json!({"url": "http://example.org/ext"});
    ext[key] = value;
    json!({"resourceType": "Patient", "extension": [ext]})
}

#[test]
fn valid_resources_pass() {
    assert_valid(&json!({"resourceType": "Patient"}));
    assert_valid(&json!({
        "resourceType": "Patient",
        "id": "p-1.a",
        "meta": {"versionId": "3", "lastUpdated": "2020-01-01T10:00:00.123+01:00", "tag": [{"system": "http://x", "code": "t"}]},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Jane</div>"},
        "contained": [{"resourceType": "Organization", "id": "org", "name": "Clinic"}],
        "extension": [{"url": "http://example.org/a", "extension": [{"url": "b", "valueDecimal": 1.50}]}],
        "identifier": [{"system": "urn:oid:1.2.3", "value": "123"}],
        "active": true,
        "name": [{"use": "official", "family": "Doe", "given": ["Jane", null, "Q"], "_given": [null, {"extension": [{"url": "http://x", "valueCode": "x"}]}, null]}],
        "gender": "female",
        "birthDate": "1970-02-28",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1970-02-28T10:00:00Z"}]},
        "deceasedBoolean": false,
        "multipleBirthInteger": 2,
        "photo": [{"contentType": "image/png", "data": "aGVsbG8=", "size": 5}],
        "managingOrganization": {"reference": "#org"},
        "generalPractitioner": [{"reference": "Practitioner/1/_history/2"}, {"reference": "urn:uuid:0b4f7f62-93c6-4ad8-9f5f-6f4b5d1a1a11"}, {"reference": "http://other.org/fhir/Organization/9"}]
    }));
    assert_valid(&json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
        "subject": {"reference": "Patient?identifier=http://x|1"},
        "effectiveDateTime": "2021-03-04T05:06:07Z",
        "issued": "2021-03-04T05:06:07.123Z",
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
        "referenceRange": [{"low": {"value": 60}, "high": {"value": 100}}]
    }));
}

#[test]
fn rejects_what_is_not_a_resource() {
    let issues = validate(&json!([1, 2]));
    assert_eq!(issues.len(), 1);
    assert_eq!((issues[0].code, issues[0].expression.as_deref()), (IssueCode::Invalid, None));
    assert_eq!(errors(&json!({"id": "1"})), vec![(IssueCode::Required, String::new())]);
    assert_eq!(errors(&json!({"resourceType": 1})), vec![(IssueCode::Structure, String::new())]);
    assert_eq!(errors(&json!({"resourceType": "Unicorn"})), vec![(IssueCode::Invalid, String::new())]);
    assert_eq!(errors(&json!({"resourceType": "DomainResource"})), vec![(IssueCode::Invalid, String::new())]);
    assert_eq!(errors(&json!({"resourceType": "HumanName"})), vec![(IssueCode::Invalid, String::new())]);
}

#[test]
fn reports_unknown_elements() {
    assert_one(&patient_with("foo", json!(1)), IssueCode::Structure, "Patient.foo");
    assert_one(&patient_with("Gender", json!("male")), IssueCode::Structure, "Patient.Gender");
    assert_one(&patient_with("name", json!([{"first": "x"}])), IssueCode::Structure, "Patient.name[0].first");
    // `_name` siblings exist only for primitives.
    assert_one(&patient_with("_name", json!([{"id": "a"}])), IssueCode::Structure, "Patient._name");
    // The value of a primitive is its JSON value, not a `value` property of the sibling.
    let sibling = json!({"value": "1970", "extension": [{"url": "http://x", "valueString": "y"}]});
    assert_one(&patient_with("_birthDate", sibling), IssueCode::Structure, "Patient.birthDate.value");
    // resourceType belongs to resources only.
    assert_one(
        &patient_with("name", json!([{"resourceType": "HumanName", "family": "x"}])),
        IssueCode::Structure,
        "Patient.name[0].resourceType",
    );
    // Choice names must use one of the allowed types.
    assert_one(&patient_with("deceasedString", json!("yes")), IssueCode::Structure, "Patient.deceasedString");
}

#[test]
fn checks_json_types() {
    assert_one(&patient_with("active", json!("true")), IssueCode::Structure, "Patient.active");
    assert_one(&patient_with("gender", json!(1)), IssueCode::Structure, "Patient.gender");
    assert_one(&patient_with("birthDate", json!({"date": "1970"})), IssueCode::Structure, "Patient.birthDate");
    assert_one(&patient_with("maritalStatus", json!("married")), IssueCode::Structure, "Patient.maritalStatus");
    assert_one(
        &patient_with("multipleBirthInteger", json!("2")),
        IssueCode::Structure,
        "Patient.multipleBirth.ofType(integer)",
    );
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": "7.2"}});
    assert_one(&obs, IssueCode::Structure, "Observation.value.ofType(Quantity).value");
}

#[test]
fn checks_arrays_against_cardinality() {
    assert_one(&patient_with("gender", json!(["male"])), IssueCode::Structure, "Patient.gender");
    assert_one(&patient_with("name", json!({"family": "x"})), IssueCode::Structure, "Patient.name");
    assert_one(&patient_with("name", json!([{"given": "Jane"}])), IssueCode::Structure, "Patient.name[0].given");
    // SimpleQuantity prohibits the comparator (max 0).
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "referenceRange": [{"low": {"value": 1, "comparator": "<"}}]});
    assert_one(&obs, IssueCode::Structure, "Observation.referenceRange[0].low.comparator");
}

#[test]
fn reports_missing_required_elements() {
    let obs = json!({"resourceType": "Observation"});
    assert_eq!(
        errors(&obs),
        vec![(IssueCode::Required, "Observation.status".into()), (IssueCode::Required, "Observation.code".into())]
    );
    // Present through its `_name` sibling only (a value given as an extension) counts.
    let obs = json!({"resourceType": "Observation", "_status": {"extension": [{"url": "http://x", "valueString": "?"}]}, "code": {"text": "x"}});
    assert_valid(&obs);
    // A '_' sibling of a complex element is not the element.
    let obs = json!({"resourceType": "Observation", "status": "final", "_code": {"id": "x"}});
    assert_eq!(
        errors(&obs),
        vec![(IssueCode::Structure, "Observation._code".into()), (IssueCode::Required, "Observation.code".into())]
    );
    // Required choice: MedicationAdministration.effective[x].
    let admin = json!({"resourceType": "MedicationAdministration", "status": "completed", "medicationCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/1"}});
    assert_one(&admin, IssueCode::Required, "MedicationAdministration.effective");
    let mut admin = admin;
    admin["effectivePeriod"] = json!({"start": "2020"});
    assert_valid(&admin);
    // Inside backbone elements and recursive (contentReference) structures.
    let q = json!({"resourceType": "Questionnaire", "status": "draft", "item": [{"linkId": "1", "type": "group", "item": [{"type": "string"}]}]});
    assert_one(&q, IssueCode::Required, "Questionnaire.item[0].item[0].linkId");
}

#[test]
fn checks_primitive_formats() {
    let cases: &[(&str, Value, &str)] = &[
        ("id", json!("has space"), "Patient.id"),
        ("id", json!("x".repeat(65)), "Patient.id"),
        ("birthDate", json!("1970-13-01"), "Patient.birthDate"),
        ("birthDate", json!("1970-02-30"), "Patient.birthDate"),
        ("birthDate", json!("70-01-01"), "Patient.birthDate"),
        ("deceasedDateTime", json!("2020-01-01T10:00"), "Patient.deceased.ofType(dateTime)"),
        ("deceasedDateTime", json!("2020-01-01T10:00:00"), "Patient.deceased.ofType(dateTime)"),
        ("implicitRules", json!("http://a b"), "Patient.implicitRules"),
        ("language", json!(" en"), "Patient.language"),
        ("multipleBirthInteger", json!(1.5), "Patient.multipleBirth.ofType(integer)"),
        ("multipleBirthInteger", json!(2147483648u64), "Patient.multipleBirth.ofType(integer)"),
    ];
    for (key, value, expression) in cases {
        assert_one(&patient_with(key, value.clone()), IssueCode::Value, expression);
    }
    let ext_cases: &[(&str, Value)] = &[
        ("valueInstant", json!("2020-01-01")),
        ("valueTime", json!("25:00:00")),
        ("valueUnsignedInt", json!(-1)),
        ("valuePositiveInt", json!(0)),
        ("valueOid", json!("1.2.3")),
        ("valueUuid", json!("urn:uuid:ABC")),
        ("valueCode", json!("a  b")),
        ("valueCode", json!("a ")),
        ("valueBase64Binary", json!("abc")),
        ("valueUrl", json!("http://a b")),
        ("valueCanonical", json!("http://a\tb")),
        ("valueString", json!("bell\u{0B}")),
    ];
    for (key, value) in ext_cases {
        let resource = extension_value(key, value.clone());
        let expected = format!("Patient.extension[0].value.ofType({})", {
            let t = &key["value".len()..];
            let mut c = t.chars();
            c.next().unwrap().to_ascii_lowercase().to_string() + c.as_str()
        });
        assert_one(&resource, IssueCode::Value, &expected);
    }
    let ok_cases: &[(&str, Value)] = &[
        ("valueInstant", json!("2020-01-01T00:00:00Z")),
        ("valueTime", json!("23:59:60.5")),
        ("valueDecimal", json!(-0.000)),
        ("valueDecimal", json!(1e3)),
        ("valueUnsignedInt", json!(0)),
        ("valuePositiveInt", json!(2147483647)),
        ("valueOid", json!("urn:oid:2.16.840.1")),
        ("valueUuid", json!("urn:uuid:c757873d-ec9a-4326-a141-556f43239520")),
        ("valueCode", json!("a b")),
        ("valueBase64Binary", json!("aGVsbG8gd29ybGQ=")),
        ("valueMarkdown", json!("# Title\n\n* item  ")),
        ("valueString", json!("  spaced\ttext\u{a0} ")),
        ("valueDate", json!("2024-02-29")),
        ("valueDateTime", json!("2024")),
        ("valueUri", json!("urn:ietf:rfc:3986")),
    ];
    for (key, value) in ok_cases {
        assert_valid(&extension_value(key, value.clone()));
    }
}

#[test]
fn rejects_empty_and_null_values() {
    assert_one(&patient_with("gender", json!("")), IssueCode::Value, "Patient.gender");
    assert_one(&patient_with("gender", Value::Null), IssueCode::Structure, "Patient.gender");
    // Outside arrays a null is not a placeholder, even next to a `_name` sibling.
    let mut p = patient_with("gender", Value::Null);
    p["_gender"] = json!({"extension": [{"url": "http://x", "valueString": "y"}]});
    assert_one(&p, IssueCode::Structure, "Patient.gender");
    assert_one(&patient_with("name", json!([])), IssueCode::Structure, "Patient.name");
    assert_one(&patient_with("name", json!([{}])), IssueCode::Structure, "Patient.name[0]");
    assert_one(&patient_with("name", json!([null])), IssueCode::Structure, "Patient.name[0]");
    assert_one(&patient_with("maritalStatus", json!({"id": "x"})), IssueCode::Structure, "Patient.maritalStatus");
    assert_one(&patient_with("name", json!([{"given": ["a", ""]}])), IssueCode::Value, "Patient.name[0].given[1]");
}

#[test]
fn checks_primitive_siblings() {
    // An extension without a value.
    assert_valid(&patient_with("_birthDate", json!({"extension": [{"url": "http://x", "valueCode": "unknown"}]})));
    // An id alone, without a value, is not content (ele-1).
    assert_one(&patient_with("_birthDate", json!({"id": "a"})), IssueCode::Structure, "Patient.birthDate");
    assert_one(&patient_with("_birthDate", json!("x")), IssueCode::Structure, "Patient.birthDate");
    // Extensions inside the sibling are validated.
    assert_one(
        &patient_with("_gender", json!({"extension": [{"valueString": "x"}]})),
        IssueCode::Required,
        "Patient.gender.extension[0].url",
    );
    // Repeating primitives: aligned arrays, nulls only as placeholders.
    let name = |given: Value, ext: Value| patient_with("name", json!([{"given": given, "_given": ext}]));
    assert_valid(&name(
        json!(["a", null]),
        json!([null, {"id": "x", "extension": [{"url": "http://x", "valueString": "y"}]}]),
    ));
    assert_one(&name(json!(["a", "b"]), json!([null])), IssueCode::Structure, "Patient.name[0].given");
    assert_one(&name(json!(["a", null]), json!([null, null])), IssueCode::Structure, "Patient.name[0].given[1]");
    assert_one(
        &patient_with("name", json!([{"given": ["a", null]}])),
        IssueCode::Structure,
        "Patient.name[0].given[1]",
    );
    assert_one(&name(json!(["a"]), json!({"id": "x"})), IssueCode::Structure, "Patient.name[0].given");
    // Only the sibling array, without values.
    assert_valid(&patient_with(
        "name",
        json!([{"_given": [{"extension": [{"url": "http://x", "valueString": "y"}]}]}]),
    ));
}

#[test]
fn allows_one_type_per_choice_element() {
    let p = json!({"resourceType": "Patient", "deceasedBoolean": true, "deceasedDateTime": "2020"});
    assert_one(&p, IssueCode::Structure, "Patient.deceasedDateTime");
    // The value and its sibling of the same type are one choice.
    let p = json!({"resourceType": "Patient", "deceasedDateTime": "2020", "_deceasedDateTime": {"id": "d"}});
    assert_valid(&p);
    let p = json!({"resourceType": "Patient", "deceasedDateTime": "2020", "_deceasedBoolean": {"extension": [{"url": "http://x", "valueString": "y"}]}});
    assert_one(&p, IssueCode::Structure, "Patient._deceasedBoolean");
    // Two choices of different elements are independent.
    assert_valid(&json!({"resourceType": "Patient", "deceasedBoolean": true, "multipleBirthBoolean": false}));
}

#[test]
fn validates_contained_resources() {
    let with_contained = |contained: Value| json!({"resourceType": "Patient", "contained": [contained], "managingOrganization": {"reference": "#o"}});
    assert_valid(&with_contained(json!({"resourceType": "Organization", "id": "o"})));
    assert_one(
        &with_contained(json!({"resourceType": "Organization", "id": "o", "active": "yes"})),
        IssueCode::Structure,
        "Patient.contained[0].active",
    );
    assert_one(
        &with_contained(json!({"resourceType": "Organisation", "id": "o"})),
        IssueCode::Invalid,
        "Patient.contained[0]",
    );
    // dom-2: no nested contained resources.
    let nested = with_contained(
        json!({"resourceType": "Organization", "id": "o", "contained": [{"resourceType": "Location", "id": "l"}], "partOf": {"reference": "#l"}}),
    );
    assert!(errors(&nested).contains(&(IssueCode::Invariant, "Patient.contained[0].contained".into())));
    // dom-4 and dom-5.
    let meta = with_contained(json!({"resourceType": "Organization", "id": "o", "meta": {"versionId": "1"}}));
    assert_one(&meta, IssueCode::Invariant, "Patient.contained[0].meta");
    let meta =
        with_contained(json!({"resourceType": "Organization", "id": "o", "meta": {"security": [{"code": "R"}]}}));
    assert_one(&meta, IssueCode::Invariant, "Patient.contained[0].meta");
    // dom-3: a contained resource is referenced, or references its container.
    let unreferenced = json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o"}]});
    assert_one(&unreferenced, IssueCode::Invariant, "Patient.contained[0]");
    let back = json!({"resourceType": "Patient", "contained": [{"resourceType": "RelatedPerson", "id": "r", "patient": {"reference": "#"}}]});
    assert_valid(&back);
    // Referenced from another contained resource, or by a canonical.
    let chain = json!({"resourceType": "Questionnaire", "status": "draft", "contained": [{"resourceType": "ValueSet", "id": "vs", "status": "draft"}],
        "item": [{"linkId": "1", "type": "choice", "answerValueSet": "#vs"}]});
    assert_valid(&chain);
    // Each Bundle entry is its own resource: a reference from another entry does not count.
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o"}]}},
        {"resource": {"resourceType": "Patient", "managingOrganization": {"reference": "#o"}}}
    ]});
    assert_eq!(
        errors(&bundle),
        vec![
            (IssueCode::Invariant, "Bundle.entry[0].resource.contained[0]".into()),
            (IssueCode::Invariant, "Bundle.entry[1].resource.managingOrganization.reference".into()),
        ]
    );
    // ref-1: a local reference names a contained resource.
    let dangling = json!({"resourceType": "Patient", "managingOrganization": {"reference": "#nope"}});
    assert_one(&dangling, IssueCode::Invariant, "Patient.managingOrganization.reference");
}

#[test]
fn validates_resources_in_bundles_and_parameters() {
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "x"}},
        {"resource": {"resourceType": "Nope"}},
        {"resource": {"gender": "male"}}
    ]});
    assert_eq!(
        errors(&bundle),
        vec![
            (IssueCode::CodeInvalid, "Bundle.entry[1].resource.gender".into()),
            (IssueCode::Invalid, "Bundle.entry[2].resource".into()),
            (IssueCode::Required, "Bundle.entry[3].resource".into()),
        ]
    );
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "a", "resource": {"resourceType": "Patient", "birthDate": "x"}},
        {"name": "b", "part": [{"name": "c", "valueBoolean": "no"}]}
    ]});
    assert_eq!(
        errors(&params),
        vec![
            (IssueCode::Value, "Parameters.parameter[0].resource.birthDate".into()),
            (IssueCode::Structure, "Parameters.parameter[1].part[0].value.ofType(boolean)".into()),
        ]
    );
}

#[test]
fn checks_required_bindings() {
    assert_one(&patient_with("gender", json!("F")), IssueCode::CodeInvalid, "Patient.gender");
    let condition = |status: Value| json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "clinicalStatus": status});
    let system = "http://terminology.hl7.org/CodeSystem/condition-clinical";
    assert_valid(&condition(json!({"coding": [{"system": system, "code": "active"}]})));
    assert_valid(&condition(
        json!({"coding": [{"system": "http://snomed.info/sct", "code": "55561003"}, {"system": system, "code": "remission"}]}),
    ));
    let expr = "Condition.clinicalStatus";
    assert_one(
        &condition(json!({"coding": [{"system": system, "code": "gone"}]})),
        IssueCode::CodeInvalid,
        "Condition.clinicalStatus.coding[0]",
    );
    let mixed = json!({"coding": [{"system": system, "code": "active"}, {"system": system, "code": "gone"}]});
    assert_one(&condition(mixed), IssueCode::CodeInvalid, "Condition.clinicalStatus.coding[1]");
    assert_one(
        &condition(json!({"coding": [{"system": "http://example.org", "code": "active"}]})),
        IssueCode::CodeInvalid,
        expr,
    );
    assert_one(&condition(json!({"coding": [{"code": "active"}]})), IssueCode::CodeInvalid, expr);
    assert_one(&condition(json!({"text": "active"})), IssueCode::CodeInvalid, expr);
    // Bindings inside data types (Timing.repeat.periodUnit: UCUM codes listed in the value set).
    let timing = |unit: &str| {
        json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "medicationCodeableConcept": {"text": "x"},
            "subject": {"reference": "Patient/1"}, "dosageInstruction": [{"timing": {"repeat": {"period": 1, "periodUnit": unit}}}]})
    };
    assert_valid(&timing("wk"));
    assert_one(
        &timing("week"),
        IssueCode::CodeInvalid,
        "MedicationRequest.dosageInstruction[0].timing.repeat.periodUnit",
    );
    // Value sets over external terminologies (MIME types) are not checked.
    assert_valid(&patient_with("photo", json!([{"contentType": "application/x-anything"}])));
}

#[test]
fn checks_reference_strings() {
    let reference = |r: &str| patient_with("managingOrganization", json!({"reference": r}));
    for ok in [
        "Organization/1",
        "Organization/1/_history/2",
        "http://x.org/fhir/Organization/1",
        "urn:uuid:1",
        "Organization?name=a",
    ] {
        assert_valid(&reference(ok));
    }
    for bad in ["Organization/../1", "organization/1", "Unicorn/1", "Organization/a b", "Organization/"] {
        assert_one(&reference(bad), IssueCode::Value, "Patient.managingOrganization.reference");
    }
}

#[test]
fn checks_extensions() {
    let ext = |e: Value| patient_with("extension", json!([e]));
    assert_valid(&ext(json!({"url": "http://x", "valueString": "a"})));
    assert_valid(&ext(json!({"url": "http://x", "extension": [{"url": "a", "valueBoolean": true}]})));
    assert_one(&ext(json!({"valueString": "a"})), IssueCode::Required, "Patient.extension[0].url");
    assert_one(&ext(json!({"url": "http://x"})), IssueCode::Invariant, "Patient.extension[0]");
    assert_one(
        &ext(json!({"url": "http://x", "valueString": "a", "extension": [{"url": "a", "valueBoolean": true}]})),
        IssueCode::Invariant,
        "Patient.extension[0]",
    );
    let modifier = patient_with("modifierExtension", json!([{"url": "http://x"}]));
    assert_one(&modifier, IssueCode::Invariant, "Patient.modifierExtension[0]");
}

#[test]
fn checks_narrative_div() {
    let text = |div: &str| patient_with("text", json!({"status": "generated", "div": div}));
    assert_valid(&text("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>x</p></div>"));
    assert_one(&text("plain text"), IssueCode::Value, "Patient.text.div");
    assert_one(
        &patient_with("text", json!({"status": "generated", "div": 5})),
        IssueCode::Structure,
        "Patient.text.div",
    );
    assert_one(&patient_with("text", json!({"status": "generated"})), IssueCode::Required, "Patient.text.div");
}

#[test]
fn reports_every_problem() {
    let p = json!({"resourceType": "Patient", "id": "a b", "gender": "x", "birthDate": "y", "foo": 1, "name": [{"given": [1]}]});
    let found = errors(&p);
    assert_eq!(found.len(), 5, "{found:?}");
    let expressions: Vec<&str> = found.iter().map(|(_, e)| e.as_str()).collect();
    for e in ["Patient.id", "Patient.gender", "Patient.birthDate", "Patient.foo", "Patient.name[0].given[0]"] {
        assert!(expressions.contains(&e), "{e} missing from {expressions:?}");
    }
}

#[test]
fn diagnostics_do_not_echo_values() {
    let secret = "SECRET-1234";
    let p = json!({"resourceType": "Patient", "id": secret, "gender": secret, "birthDate": secret, "active": secret,
        "managingOrganization": {"reference": format!("{secret}/../x")}, "text": {"status": "generated", "div": secret},
        "extension": [{"url": secret, "valueInstant": secret}], "contained": [{"resourceType": secret}]});
    let issues = validate(&p);
    assert!(issues.len() >= 7, "{issues:#?}");
    for issue in issues {
        assert!(!issue.diagnostics.contains(secret), "{issue:?}");
        assert!(!issue.expression.unwrap_or_default().contains(secret));
    }
}

#[test]
fn survives_deep_nesting() {
    let mut ext = json!({"url": "http://x", "valueString": "leaf"});
    for _ in 0..300 {
        ext = json!({"url": "http://x", "extension": [ext]});
    }
    let issues = validate(&patient_with("extension", json!([ext])));
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].code, IssueCode::TooCostly);
    // Just inside the limit is fine.
    let mut ext = json!({"url": "http://x", "valueString": "leaf"});
    for _ in 0..90 {
        ext = json!({"url": "http://x", "extension": [ext]});
    }
    assert_valid(&patient_with("extension", json!([ext])));
}

#[test]
fn locations_use_fhirpath() {
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "component": [{"code": {"text": "a"}}, {"code": {"text": "b"}, "valueQuantity": {"value": "1"}}]});
    assert_one(&obs, IssueCode::Structure, "Observation.component[1].value.ofType(Quantity).value");
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [{}, {}, {"resource": {"resourceType": "Patient", "gender": 1}}]});
    let found = errors(&bundle);
    assert!(found.contains(&(IssueCode::Structure, "Bundle.entry[2].resource.gender".into())), "{found:?}");
}
