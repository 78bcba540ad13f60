//! Reading FHIR elements as a chart shows them: the text of a concept, an Observation's
//! value, a resource's effective time, a reference. Pure functions of the JSON, for every edge.

use serde_json::Value;
use time::{Date, OffsetDateTime};

/// The text of a CodeableConcept: its `text`, else the first coding's display, else its code.
pub fn concept(value: Option<&Value>) -> String {
    let Some(value) = value else { return String::new() };
    if let Some(text) = value.get("text").and_then(Value::as_str) {
        return text.to_string();
    }
    let codings = value.get("coding").and_then(Value::as_array);
    for coding in codings.into_iter().flatten() {
        if let Some(display) = coding.get("display").and_then(Value::as_str) {
            return display.to_string();
        }
    }
    codings.and_then(|c| c.first()).and_then(|c| c.get("code")).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// Whether a CodeableConcept has `system|code` among its codings.
pub fn has_code(value: Option<&Value>, system: &str, code: &str) -> bool {
    value.and_then(|v| v.get("coding")).and_then(Value::as_array).into_iter().flatten().any(|c| {
        c.get("system").and_then(Value::as_str) == Some(system) && c.get("code").and_then(Value::as_str) == Some(code)
    })
}

/// The first coding's code of a CodeableConcept (for status-like concepts).
pub fn first_code(value: Option<&Value>) -> Option<&str> {
    value?.get("coding")?.as_array()?.first()?.get("code")?.as_str()
}

/// A FHIR date/dateTime/instant as an instant (a date alone: its midnight UTC).
pub fn instant(text: &str) -> Option<OffsetDateTime> {
    if let Ok(at) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Some(at);
    }
    let date = match text.len() {
        10 => Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")).ok()?,
        7 => Date::parse(&format!("{text}-01"), time::macros::format_description!("[year]-[month]-[day]")).ok()?,
        4 => Date::from_calendar_date(text.parse().ok()?, time::Month::January, 1).ok()?,
        _ => return None,
    };
    Some(date.midnight().assume_utc())
}

/// An instant written as RFC 3339 (a search value, an HTML `datetime`).
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// `7.2 %` of a Quantity.
pub fn quantity(value: &Value) -> Option<String> {
    let number = value.get("value")?;
    let number = match number {
        Value::Number(n) => shown_number(&n.to_string()),
        other => other.as_str()?.to_string(),
    };
    let unit = value.get("unit").or_else(|| value.get("code")).and_then(Value::as_str).unwrap_or("");
    Some(if unit.is_empty() { number } else { format!("{number} {unit}") })
}

/// A decimal as shown: as recorded, except that digits past the second decimal (machine
/// precision such as Synthea's 5.879319517876564) are rounded away.
pub fn shown_number(text: &str) -> String {
    match text.split_once('.') {
        Some((_, decimals)) if decimals.len() > 2 && decimals.bytes().all(|b| b.is_ascii_digit()) => {
            match text.parse::<f64>() {
                Ok(value) => format!("{value:.2}").trim_end_matches('0').trim_end_matches('.').to_string(),
                Err(_) => text.to_string(),
            }
        }
        _ => text.to_string(),
    }
}

/// The number of a Quantity.
pub fn quantity_number(value: &Value) -> Option<f64> {
    match value.get("value")? {
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// The value of an Observation as text (quantity, concept, string, components).
pub fn observation_value(observation: &Value) -> String {
    if let Some(q) = observation.get("valueQuantity").and_then(quantity) {
        return q;
    }
    if let Some(c) = observation.get("valueCodeableConcept") {
        return concept(Some(c));
    }
    if let Some(s) = observation.get("valueString").and_then(Value::as_str) {
        return s.to_string();
    }
    // Systolic before diastolic, whatever order the components came in (Synthea writes the
    // diastolic first).
    let mut components: Vec<&Value> =
        observation.get("component").and_then(Value::as_array).into_iter().flatten().collect();
    components.sort_by_key(|c| match code_of(c) {
        Some("8480-6") => 0,
        Some("8462-4") => 1,
        _ => 2,
    });
    let parts: Vec<String> = components
        .iter()
        .filter_map(|c| c.get("valueQuantity").and_then(|q| q.get("value")).map(|v| shown_number(&v.to_string())))
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    let unit = components.first().and_then(|c| c.pointer("/valueQuantity/unit")).and_then(Value::as_str).unwrap_or("");
    format!("{} {unit}", parts.join("/")).trim().to_string()
}

/// The first LOINC (or else first) code of an element's `code`.
fn code_of(element: &Value) -> Option<&str> {
    let codings = element.pointer("/code/coding").and_then(Value::as_array)?;
    let loinc = codings.iter().find(|c| c.get("system").and_then(Value::as_str) == Some("http://loinc.org"));
    loinc.or(codings.first()).and_then(|c| c.get("code")).and_then(Value::as_str)
}

/// The effective time of a clinical resource as written (the first of the usual elements).
pub fn when(resource: &Value) -> Option<&str> {
    for key in [
        "effectiveDateTime",
        "effectiveInstant",
        "occurrenceDateTime",
        "performedDateTime",
        "authoredOn",
        "recordedDate",
        "onsetDateTime",
        "issued",
        "date",
        "created",
    ] {
        if let Some(text) = resource.get(key).and_then(Value::as_str) {
            return Some(text);
        }
    }
    for key in ["period", "effectivePeriod", "performedPeriod"] {
        if let Some(text) = resource.get(key).and_then(|p| p.get("start")).and_then(Value::as_str) {
            return Some(text);
        }
    }
    None
}

/// `Type/id` of a reference relative to this server.
pub fn reference(value: Option<&Value>) -> Option<&str> {
    value?.get("reference")?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn concepts_and_instants() {
        assert_eq!(concept(Some(&json!({"coding": [{"code": "x"}, {"code": "y", "display": "Why"}]}))), "Why");
        assert_eq!(instant("2021-02").map(|i| i.date().day()), Some(1));
        assert!(instant("not a date").is_none());
    }

    #[test]
    fn observation_values() {
        assert_eq!(observation_value(&json!({"valueQuantity": {"value": 7.2, "unit": "%"}})), "7.2 %");
        let bp = json!({"component": [{"valueQuantity": {"value": 120, "unit": "mm[Hg]"}}, {"valueQuantity": {"value": 80, "unit": "mm[Hg]"}}]});
        assert_eq!(observation_value(&bp), "120/80 mm[Hg]");
        assert_eq!(observation_value(&json!({"valueQuantity": {"value": 5.879319517876564, "unit": "%"}})), "5.88 %");
        assert_eq!(shown_number("12.5"), "12.5");
        assert_eq!(shown_number("103.3012"), "103.3");
        assert_eq!(shown_number("6.0004"), "6");
        assert_eq!(shown_number("1e3"), "1e3");
        let diastolic_first = json!({"component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": 80, "unit": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}}]});
        assert_eq!(observation_value(&diastolic_first), "120/80 mm[Hg]");
    }
}
