//! VXU^V04 → Immunization, one per ORDER group (v2-to-FHIR IG, RXA → Immunization): vaccine
//! (RXA-5, CVX or NDC), date (RXA-3), dose (RXA-6/7), lot (RXA-15), expiry (RXA-16),
//! manufacturer (RXA-17, MVX), status (RXA-20 completion status, RXA-21 action code), primary
//! source (RXA-9), administering provider (RXA-10), route and site (RXR-1/2).
//!
//! Each Immunization is keyed by its order's filler number (ORC-3, else the placer's ORC-2).
//! An existing Patient is referenced, not changed; an unknown one is created from the PID.

use super::datatypes::{self, Key, comp, concept, cwe, first, text};
use super::{Context, MapError, Plan, practitioner, put, required};
use hl7v2::{ErrorLocation, Message};
use serde_json::{Map, Value, json};

pub(crate) fn map(message: &Message, ctx: &Context<'_>, plan: &mut Plan) -> Result<(), MapError> {
    let pid = required(message, "PID")?;
    let subject = super::patient::write(pid, ctx, plan, false)?;
    let grouping = hl7v2::group_lenient(message).map_err(|e| {
        let error = hl7v2::AckError::from_parse_error(&e);
        MapError { code: error.code, location: error.location, message: e.to_string() }
    })?;
    let mut n = 0;
    for order in grouping.root.groups("ORDER") {
        let Some(rxa) = order.segment("RXA") else { continue };
        n += 1;
        let at = |field: usize| ErrorLocation::field("RXA", n, field);
        let orc = order.segment("ORC");
        let key = orc
            .and_then(|orc| first(orc, 3).or_else(|| first(orc, 2)))
            .and_then(|r| datatypes::ei(&r, &ctx.local_system))
            .unwrap_or_else(|| Key {
                system: format!("{}:message", ctx.local_system),
                value: format!("{}-{n}", ctx.control_id),
            });
        let vaccine = first(rxa, 5).and_then(|r| cwe(&r)).ok_or_else(|| MapError::missing_field("RXA", 5).at(at(5)))?;
        let when = datatypes::field_date_time(rxa, 3, &ctx.offset)
            .map_err(|e| e.at(at(3)))?
            .ok_or_else(|| MapError::missing_field("RXA", 3).at(at(3)))?;
        let status = match (text(rxa, 21).as_deref(), text(rxa, 20).as_deref()) {
            (Some("D"), _) => "entered-in-error",
            (_, Some("RE" | "NA")) => "not-done",
            _ => "completed",
        };
        let mut body = Map::new();
        body.insert("resourceType".into(), "Immunization".into());
        body.insert("identifier".into(), json!([key.to_json()]));
        body.insert("status".into(), status.into());
        if status == "not-done" {
            put(&mut body, "statusReason", first(rxa, 18).and_then(|r| cwe(&r)));
        }
        body.insert("vaccineCode".into(), vaccine);
        body.insert("patient".into(), json!({"reference": subject}));
        body.insert("occurrenceDateTime".into(), when.into());
        match first(rxa, 9).and_then(|r| comp(&r, 1)).as_deref() {
            Some("00") => {
                body.insert("primarySource".into(), true.into());
            }
            Some("01") => {
                body.insert("primarySource".into(), false.into());
            }
            _ => {}
        }
        put(&mut body, "lotNumber", text(rxa, 15).map(Value::from));
        if let Some(expiry) = text(rxa, 16) {
            let expiry = datatypes::date(&expiry).map_err(|()| MapError::data_type("RXA", 16).at(at(16)))?;
            body.insert("expirationDate".into(), expiry.into());
        }
        if let Some(rep) = first(rxa, 17) {
            let mut manufacturer = Map::new();
            if let Some(code) = comp(&rep, 1)
                && comp(&rep, 3).is_some_and(|s| s.eq_ignore_ascii_case("MVX"))
            {
                manufacturer
                    .insert("identifier".into(), json!({"system": "http://hl7.org/fhir/sid/mvx", "value": code}));
            }
            put(&mut manufacturer, "display", comp(&rep, 2).or_else(|| comp(&rep, 1)).map(Value::from));
            body.insert("manufacturer".into(), Value::Object(manufacturer));
        }
        if let Some(amount) = text(rxa, 6).filter(|a| a != "999").and_then(|a| datatypes::decimal(&a)) {
            let mut dose = json!({"value": amount});
            if let Some(unit) = first(rxa, 7).and_then(|r| comp(&r, 1)) {
                dose["unit"] = unit.clone().into();
                dose["system"] = "http://unitsofmeasure.org".into();
                dose["code"] = unit.into();
            }
            body.insert("doseQuantity".into(), dose);
        }
        if let Some(rxr) = order.segment("RXR") {
            put(&mut body, "route", first(rxr, 1).and_then(|r| cwe(&r)));
            put(&mut body, "site", first(rxr, 2).and_then(|r| cwe(&r)));
        }
        if let Some(actor) = first(rxa, 10).and_then(|r| practitioner(plan, &r, ctx)) {
            let function =
                concept("http://terminology.hl7.org/CodeSystem/v2-0443", "AP", Some("Administering Provider"));
            body.insert("performer".into(), json!([{"function": function, "actor": {"reference": actor}}]));
        }
        plan.upsert("Immunization", &key, Value::Object(body));
    }
    if n == 0 {
        return Err(MapError::missing_segment("RXA"));
    }
    Ok(())
}
