//! PID → Patient (v2-to-FHIR IG, segment PID to Patient): identifiers (PID-3, the assigning
//! authority PID-3.4 giving `Identifier.system`), name (PID-5), birth date (PID-7), gender
//! (PID-8), address (PID-11), telecom (PID-13, PID-14), marital status (PID-16), death
//! (PID-29, PID-30). Race, ethnicity, language and the other fields are not mapped yet.
//!
//! The Patient is found by its identifiers, in PID-3 order; a name is never used to match.

use super::datatypes::{self, Key, comp, cwe, first, reps, text, xad, xpn, xtn};
use super::{Context, Existing, MapError, Plan, non_empty, put};
use hl7v2::{ErrorCode, Segment};
use serde_json::{Map, Value};

/// The identifiers of a PID: keys in PID-3 order, and their FHIR form.
pub(crate) fn identifiers(pid: &Segment, ctx: &Context<'_>) -> Result<(Vec<Key>, Vec<Value>), MapError> {
    let mut keys = Vec::new();
    let mut values = Vec::new();
    for rep in reps(pid, 3) {
        if let Some((key, value)) = datatypes::cx(&rep, &ctx.local_system)
            && !keys.contains(&key)
        {
            keys.push(key);
            values.push(value);
        }
    }
    if keys.is_empty() {
        return Err(MapError::missing_field("PID", 3));
    }
    Ok((keys, values))
}

/// The Patient's fields a PID carries (without `identifier`).
fn demographics(pid: &Segment, ctx: &Context<'_>) -> Result<Map<String, Value>, MapError> {
    let mut patient = Map::new();
    put(&mut patient, "name", non_empty(reps(pid, 5).iter().filter_map(xpn).collect()));
    let telecom: Vec<Value> = reps(pid, 13)
        .iter()
        .filter_map(|r| xtn(r, "home"))
        .chain(reps(pid, 14).iter().filter_map(|r| xtn(r, "work")))
        .collect();
    put(&mut patient, "telecom", non_empty(telecom));
    let gender = match text(pid, 8).as_deref() {
        Some("M") => Some("male"),
        Some("F") => Some("female"),
        Some("O" | "A") => Some("other"),
        Some("U" | "N") => Some("unknown"),
        Some(_) => {
            return Err(MapError::new(ErrorCode::TableValueNotFound, "PID-8 is not a code of table 0001")
                .at(hl7v2::ErrorLocation::field("PID", 1, 8)));
        }
        None => None,
    };
    put(&mut patient, "gender", gender.map(Value::from));
    if let Some(birth) = text(pid, 7) {
        let birth = datatypes::date(&birth).map_err(|()| MapError::data_type("PID", 7))?;
        patient.insert("birthDate".into(), birth.into());
    }
    match (datatypes::field_date_time(pid, 29, &ctx.offset)?, text(pid, 30).as_deref()) {
        (Some(when), _) => {
            patient.insert("deceasedDateTime".into(), when.into());
        }
        (None, Some("Y")) => {
            patient.insert("deceasedBoolean".into(), true.into());
        }
        (None, Some("N")) => {
            patient.insert("deceasedBoolean".into(), false.into());
        }
        _ => {}
    }
    put(&mut patient, "address", non_empty(reps(pid, 11).iter().filter_map(xad).collect()));
    if let Some(rep) = first(pid, 16) {
        let code = comp(&rep, 1);
        let v3 = match code.as_deref() {
            Some(c @ ("M" | "D" | "W" | "S" | "I" | "L" | "P" | "T" | "U")) => Some(c),
            Some("A" | "E") => Some("L"),
            Some("N") => Some("A"),
            Some("R") => Some("T"),
            Some("B") => Some("U"),
            _ => None,
        };
        let status = match v3 {
            Some(c) => {
                let mut concept = datatypes::concept("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", c, None);
                if let Some(t) = comp(&rep, 2) {
                    concept["text"] = t.into();
                }
                Some(concept)
            }
            None => cwe(&rep),
        };
        put(&mut patient, "maritalStatus", status);
    }
    Ok(patient)
}

/// A PID's identifiers and the Patient they found.
pub(crate) struct Found {
    /// Identifier keys in PID-3 order.
    pub keys: Vec<Key>,
    /// The identifiers in FHIR form, in the same order.
    pub identifiers: Vec<Value>,
    /// The Patient carrying the first identifier that matches one.
    pub existing: Option<Existing>,
}

/// The Patient a message is about, found by the PID's identifiers.
pub(crate) fn find(pid: &Segment, ctx: &Context<'_>) -> Result<Found, MapError> {
    let (keys, identifiers) = identifiers(pid, ctx)?;
    for key in &keys {
        if let Some(found) = ctx.find("Patient", key)? {
            return Ok(Found { keys, identifiers, existing: Some(found) });
        }
    }
    Ok(Found { keys, identifiers, existing: None })
}

/// Writes the Patient of `pid`: an existing one gets the PID's demographics over its own
/// (other elements, such as links, are kept) and any new identifiers; a new one is created.
/// With `update_existing` false (results, immunizations, appointments) an existing Patient
/// is only referenced, not changed. Returns the reference to use.
pub(crate) fn write(
    pid: &Segment,
    ctx: &Context<'_>,
    plan: &mut Plan,
    update_existing: bool,
) -> Result<String, MapError> {
    let Found { keys, identifiers, existing } = find(pid, ctx)?;
    let fields = demographics(pid, ctx)?;
    match existing {
        Some(existing) if !update_existing => {
            plan.mark_patient_known(&existing.id);
            Ok(format!("Patient/{}", existing.id))
        }
        Some(existing) => {
            let mut body = match existing.body.clone() {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            body.extend(fields);
            let mut all = body.get("identifier").and_then(Value::as_array).cloned().unwrap_or_default();
            for (key, identifier) in keys.iter().zip(identifiers) {
                let known = all.iter().any(|i| {
                    i.get("system").and_then(Value::as_str) == Some(key.system.as_str())
                        && i.get("value").and_then(Value::as_str) == Some(key.value.as_str())
                });
                if !known {
                    all.push(identifier);
                }
            }
            body.insert("identifier".into(), all.into());
            body.remove("meta");
            let reference = plan.replace("Patient", &existing, Value::Object(body));
            plan.mark_patient_entry();
            Ok(reference)
        }
        None => {
            let mut body = Map::new();
            body.insert("resourceType".into(), "Patient".into());
            body.insert("identifier".into(), identifiers.into());
            body.insert("active".into(), true.into());
            body.extend(fields);
            let reference = plan.upsert("Patient", &keys[0], Value::Object(body));
            plan.mark_patient_entry();
            Ok(reference)
        }
    }
}

/// The reference of the prior patient of an MRG segment (A40), with the patient found.
pub(crate) fn find_prior(mrg: &hl7v2::Segment, ctx: &Context<'_>) -> Result<Existing, MapError> {
    let mut any = false;
    for rep in reps(mrg, 1) {
        if let Some((key, _)) = datatypes::cx(&rep, &ctx.local_system) {
            any = true;
            if let Some(found) = ctx.find("Patient", &key)? {
                return Ok(found);
            }
        }
    }
    if !any {
        return Err(MapError::missing_field("MRG", 1));
    }
    Err(MapError::new(ErrorCode::UnknownKeyIdentifier, "no patient carries the prior identifier of MRG-1")
        .at(hl7v2::ErrorLocation::field("MRG", 1, 1)))
}

/// The body of an existing resource as an object, without `meta`.
pub(crate) fn body_of(existing: &Existing) -> Map<String, Value> {
    let mut body = match existing.body.clone() {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    body.remove("meta");
    body
}
