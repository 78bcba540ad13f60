//! ORU^R01 → DiagnosticReport (OBR) + Observation (OBX) + Specimen (SPM), after the
//! v2-to-FHIR IG's OBR → DiagnosticReport, OBX → Observation and SPM → Specimen maps: LOINC and
//! other codes from OBX-3, typed values (NM, SN, ST/TX/FT, CE/CWE, DT/DTM) with UCUM units from
//! OBX-6, reference ranges from OBX-7, abnormal flags OBX-8 → interpretation, status OBX-11.
//!
//! A report is keyed by its filler order number (OBR-3, else the placer's OBR-2) and each
//! observation by that key and its position, so a corrected result replaces the earlier one.
//! An existing Patient is referenced, not changed; an unknown one is created from the PID.

use super::datatypes::{self, Key, comp, concept, cwe, first, reps, text};
use super::{Context, MapError, Plan, non_empty, patient, put};
use hl7v2::{ErrorCode, ErrorLocation, Group, Message, Node, Segment};
use serde_json::{Map, Value, json};

pub(crate) fn map(message: &Message, ctx: &Context<'_>, plan: &mut Plan) -> Result<(), MapError> {
    let grouping = hl7v2::group_lenient(message).map_err(|e| {
        let error = hl7v2::AckError::from_parse_error(&e);
        MapError { code: error.code, location: error.location, message: e.to_string() }
    })?;
    let mut reports = 0;
    for result in grouping.root.groups("PATIENT_RESULT") {
        let pid = result
            .group("PATIENT")
            .and_then(|p| p.segment("PID"))
            .or_else(|| message.segment("PID"))
            .ok_or_else(|| MapError::missing_segment("PID"))?;
        let subject = patient::write(pid, ctx, plan, false)?;
        for order in result.groups("ORDER_OBSERVATION") {
            reports += 1;
            report(order, reports, &subject, ctx, plan)?;
        }
    }
    if reports == 0 {
        return Err(MapError::missing_segment("OBR"));
    }
    Ok(())
}

fn report(order: &Group<'_>, n: usize, subject: &str, ctx: &Context<'_>, plan: &mut Plan) -> Result<(), MapError> {
    let obr = order.segment("OBR").ok_or_else(|| MapError::missing_segment("OBR"))?;
    let key = first(obr, 3)
        .and_then(|r| datatypes::ei(&r, &ctx.local_system))
        .or_else(|| first(obr, 2).and_then(|r| datatypes::ei(&r, &ctx.local_system)))
        .unwrap_or_else(|| Key {
            system: format!("{}:message", ctx.local_system),
            value: format!("{}-{n}", ctx.control_id),
        });
    let code = first(obr, 4).and_then(|r| cwe(&r)).ok_or_else(|| MapError::missing_field("OBR", 4))?;
    let effective = datatypes::field_date_time(obr, 7, &ctx.offset)?;

    let specimens: Vec<String> = order
        .groups("SPECIMEN")
        .filter_map(|g| g.segment("SPM"))
        .map(|spm| specimen(spm, subject, ctx, plan))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();

    let mut results = Vec::new();
    let mut position = 0;
    for node in order.children() {
        let Node::Group(group) = node else { continue };
        if group.name() != "OBSERVATION" {
            continue;
        }
        let Some(obx) = group.segment("OBX") else { continue };
        position += 1;
        let obs_key = Key { system: key.system.clone(), value: format!("{}-obx-{position}", key.value) };
        let observation = observation(obx, position, &obs_key, subject, effective.as_deref(), &specimens, ctx)?;
        results.push(json!({"reference": plan.upsert("Observation", &obs_key, observation)}));
    }

    let mut body = Map::new();
    body.insert("resourceType".into(), "DiagnosticReport".into());
    body.insert("identifier".into(), json!([key.to_json()]));
    body.insert("status".into(), report_status(text(obr, 25).as_deref()).into());
    body.insert(
        "category".into(),
        json!([concept("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", Some("Laboratory"))]),
    );
    body.insert("code".into(), code);
    body.insert("subject".into(), json!({"reference": subject}));
    put(&mut body, "effectiveDateTime", effective.map(Value::from));
    if let Some(issued) = datatypes::field_date_time(obr, 22, &ctx.offset)?.filter(|t| t.contains('T')) {
        body.insert("issued".into(), issued.into());
    }
    put(&mut body, "specimen", non_empty(specimens.iter().map(|s| json!({"reference": s})).collect()));
    put(&mut body, "result", non_empty(results));
    plan.upsert("DiagnosticReport", &key, Value::Object(body));
    Ok(())
}

/// OBR-25 (table 0123) → DiagnosticReport.status.
fn report_status(code: Option<&str>) -> &'static str {
    match code {
        Some("F") => "final",
        Some("C") => "corrected",
        Some("P") => "preliminary",
        Some("A") => "partial",
        Some("X") => "cancelled",
        Some("I" | "O" | "S" | "R") => "registered",
        _ => "unknown",
    }
}

/// OBX-11 (table 0085) → Observation.status.
fn observation_status(code: Option<&str>) -> &'static str {
    match code {
        Some("F") => "final",
        Some("C") => "corrected",
        Some("P" | "S") => "preliminary",
        Some("R" | "I") => "registered",
        Some("X") => "cancelled",
        Some("D" | "W") => "entered-in-error",
        Some("A") => "amended",
        _ => "unknown",
    }
}

fn observation(
    obx: &Segment,
    position: usize,
    key: &Key,
    subject: &str,
    report_time: Option<&str>,
    specimens: &[String],
    ctx: &Context<'_>,
) -> Result<Value, MapError> {
    let at = |field: usize| ErrorLocation::field("OBX", position, field);
    let code = first(obx, 3).and_then(|r| cwe(&r)).ok_or_else(|| MapError::missing_field("OBX", 3).at(at(3)))?;
    let mut body = Map::new();
    body.insert("resourceType".into(), "Observation".into());
    body.insert("identifier".into(), json!([key.to_json()]));
    body.insert("status".into(), observation_status(text(obx, 11).as_deref()).into());
    body.insert(
        "category".into(),
        json!([concept(
            "http://terminology.hl7.org/CodeSystem/observation-category",
            "laboratory",
            Some("Laboratory")
        )]),
    );
    body.insert("code".into(), code);
    body.insert("subject".into(), json!({"reference": subject}));
    let effective = datatypes::field_date_time(obx, 14, &ctx.offset).map_err(|e| e.at(at(14)))?;
    put(&mut body, "effectiveDateTime", effective.or(report_time.map(str::to_string)).map(Value::from));
    let unit = first(obx, 6);
    let value_type = text(obx, 2).unwrap_or_default();
    if let Some((name, value)) = value(obx, &value_type, unit.as_ref(), ctx).map_err(|e| e.at(at(5)))? {
        body.insert(name.into(), value);
    }
    if let Some(range) = text(obx, 7).and_then(|t| reference_range(&t, unit.as_ref())) {
        body.insert("referenceRange".into(), json!([range]));
    }
    let flags: Vec<Value> = reps(obx, 8)
        .iter()
        .filter_map(|r| comp(r, 1))
        .map(|code| concept("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", &code, None))
        .collect();
    put(&mut body, "interpretation", non_empty(flags));
    if let Some(s) = specimens.first() {
        body.insert("specimen".into(), json!({"reference": s}));
    }
    Ok(Value::Object(body))
}

/// A Quantity of `value` in the unit of OBX-6 (UCUM when OBX-6.3 says so or is empty).
fn quantity(value: Value, unit: Option<&hl7v2::Repetition<'_>>) -> Value {
    let mut q = Map::new();
    q.insert("value".into(), value);
    if let Some(unit) = unit
        && let Some(code) = comp(unit, 1)
    {
        q.insert("unit".into(), comp(unit, 2).unwrap_or_else(|| code.clone()).into());
        let system = comp(unit, 3).map(|s| s.to_ascii_uppercase());
        if matches!(system.as_deref(), None | Some("UCUM" | "ISO+" | "ANS+")) && !code.contains(' ') {
            q.insert("system".into(), "http://unitsofmeasure.org".into());
            q.insert("code".into(), code.into());
        }
    }
    Value::Object(q)
}

/// OBX-5 as the Observation's `value[x]` according to OBX-2.
fn value(
    obx: &Segment,
    value_type: &str,
    unit: Option<&hl7v2::Repetition<'_>>,
    ctx: &Context<'_>,
) -> Result<Option<(&'static str, Value)>, MapError> {
    let Some(rep) = first(obx, 5) else { return Ok(None) };
    let data_type = || MapError::new(ErrorCode::DataTypeError, "OBX-5 does not hold a value of the type OBX-2 names");
    Ok(Some(match value_type {
        "NM" => {
            let text = comp(&rep, 1).ok_or_else(data_type)?;
            ("valueQuantity", quantity(datatypes::decimal(&text).ok_or_else(data_type)?, unit))
        }
        "SN" => {
            let comparator = comp(&rep, 1);
            let low = comp(&rep, 2).map(|t| datatypes::decimal(&t).ok_or_else(data_type)).transpose()?;
            let separator = comp(&rep, 3);
            let high = comp(&rep, 4).map(|t| datatypes::decimal(&t).ok_or_else(data_type)).transpose()?;
            match (separator.as_deref(), low, high) {
                (None, Some(v), None) => {
                    let mut q = quantity(v, unit);
                    match comparator.as_deref() {
                        None | Some("=") => {}
                        Some(c @ ("<" | "<=" | ">" | ">=")) => q["comparator"] = c.into(),
                        Some(_) => return Err(data_type()),
                    }
                    ("valueQuantity", q)
                }
                (Some("-"), Some(l), Some(h)) => {
                    ("valueRange", json!({"low": quantity(l, unit), "high": quantity(h, unit)}))
                }
                (Some(":" | "/"), Some(n), Some(d)) => {
                    ("valueRatio", json!({"numerator": {"value": n}, "denominator": {"value": d}}))
                }
                _ => return Err(data_type()),
            }
        }
        "CE" | "CWE" | "CNE" | "CF" => ("valueCodeableConcept", cwe(&rep).ok_or_else(data_type)?),
        "DT" | "DTM" | "TS" => {
            let text = comp(&rep, 1).ok_or_else(data_type)?;
            ("valueDateTime", datatypes::date_time(&text, &ctx.offset).map_err(|()| data_type())?.into())
        }
        _ => {
            let text: Vec<String> =
                reps(obx, 5).iter().map(|r| r.text().trim().to_string()).filter(|t| !t.is_empty()).collect();
            if text.is_empty() {
                return Ok(None);
            }
            ("valueString", text.join("\n").into())
        }
    }))
}

/// OBX-7 (`low-high`, `<high`, `>low`) → referenceRange; other forms are kept as text.
fn reference_range(text: &str, unit: Option<&hl7v2::Repetition<'_>>) -> Option<Value> {
    let text = text.trim();
    let bound = |t: &str| datatypes::decimal(t.trim()).map(|v| quantity(v, unit));
    let split = text.char_indices().skip(1).find(|&(_, c)| c == '-').map(|(i, _)| (&text[..i], &text[i + 1..]));
    let range = if let Some((low, high)) = split {
        bound(low).zip(bound(high)).map(|(l, h)| json!({"low": l, "high": h}))
    } else if let Some(high) = text.strip_prefix("<=").or_else(|| text.strip_prefix('<')) {
        bound(high).map(|h| json!({"high": h}))
    } else if let Some(low) = text.strip_prefix(">=").or_else(|| text.strip_prefix('>')) {
        bound(low).map(|l| json!({"low": l}))
    } else {
        None
    };
    let mut range = range.unwrap_or_else(|| json!({}));
    range["text"] = text.into();
    Some(range)
}

/// SPM → Specimen (id SPM-2, type SPM-4, collection time SPM-17); `None` for an empty SPM.
fn specimen(spm: &Segment, subject: &str, ctx: &Context<'_>, plan: &mut Plan) -> Result<Option<String>, MapError> {
    let id = first(spm, 2).and_then(|r| datatypes::sub(&r, 1, 1).or_else(|| datatypes::sub(&r, 2, 1)));
    let mut body = Map::new();
    body.insert("resourceType".into(), "Specimen".into());
    let key = id.map(|value| Key { system: format!("{}:specimen", ctx.local_system), value });
    if let Some(key) = &key {
        body.insert("identifier".into(), json!([key.to_json()]));
    }
    put(&mut body, "type", first(spm, 4).and_then(|r| cwe(&r)));
    body.insert("subject".into(), json!({"reference": subject}));
    if let Some(collected) = datatypes::field_date_time(spm, 17, &ctx.offset)? {
        body.insert("collection".into(), json!({"collectedDateTime": collected}));
    }
    if key.is_none() && body.len() <= 2 {
        return Ok(None);
    }
    Ok(Some(match key {
        Some(key) => plan.upsert("Specimen", &key, Value::Object(body)),
        None => plan.create("Specimen", Value::Object(body)),
    }))
}
