//! How FHIR values read on a page: names, codes, dates, quantities, references.

use serde_json::Value;
use time::{Date, OffsetDateTime};

/// `Given Family` of the official (else first) name.
pub(crate) fn person_name(resource: &Value) -> String {
    let names = resource.get("name").and_then(Value::as_array);
    let name =
        names.and_then(|n| n.iter().find(|n| n.get("use").and_then(Value::as_str) == Some("official")).or(n.first()));
    let Some(name) = name else { return "(no name)".into() };
    if let Some(text) = name.get("text").and_then(Value::as_str) {
        return text.to_string();
    }
    let given: Vec<&str> =
        name.get("given").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let family = name.get("family").and_then(Value::as_str).unwrap_or("");
    let full = format!("{} {}", given.join(" "), family);
    let full = full.trim();
    if full.is_empty() { "(no name)".into() } else { full.to_string() }
}

/// The text of a CodeableConcept: its `text`, else the first coding's display, else its code.
pub(crate) fn concept(value: Option<&Value>) -> String {
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
pub(crate) fn has_code(value: Option<&Value>, system: &str, code: &str) -> bool {
    value.and_then(|v| v.get("coding")).and_then(Value::as_array).into_iter().flatten().any(|c| {
        c.get("system").and_then(Value::as_str) == Some(system) && c.get("code").and_then(Value::as_str) == Some(code)
    })
}

/// The first coding's code of a CodeableConcept (for status-like concepts).
pub(crate) fn first_code(value: Option<&Value>) -> Option<&str> {
    value?.get("coding")?.as_array()?.first()?.get("code")?.as_str()
}

/// A FHIR date/dateTime/instant as an instant (a date alone: its midnight UTC).
pub(crate) fn instant(text: &str) -> Option<OffsetDateTime> {
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

/// A date as read on a page: `2021-03-04` (the date part of a dateTime).
pub(crate) fn day(text: &str) -> String {
    text.get(..10).unwrap_or(text).to_string()
}

/// `2021-03-04 14:05` of an instant.
pub(crate) fn day_time(at: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02} {:02}:{:02}", at.year(), u8::from(at.month()), at.day(), at.hour(), at.minute())
}

/// Age in whole years on `today` of someone born on `birth` (`YYYY-MM-DD`).
pub(crate) fn age(birth: &str, today: Date) -> Option<i32> {
    let born = instant(birth)?.date();
    let mut years = today.year() - born.year();
    if (today.month() as u8, today.day()) < (born.month() as u8, born.day()) {
        years -= 1;
    }
    (years >= 0).then_some(years)
}

/// The medical record number: the identifier typed `MR`, else the first one.
pub(crate) fn mrn(patient: &Value) -> Option<String> {
    let ids = patient.get("identifier").and_then(Value::as_array)?;
    let mr = ids.iter().find(|id| {
        has_code(id.get("type"), "http://terminology.hl7.org/CodeSystem/v2-0203", "MR")
            || first_code(id.get("type")) == Some("MR")
    });
    mr.or(ids.first()).and_then(|id| id.get("value")).and_then(Value::as_str).map(str::to_string)
}

/// `7.2 %` of a Quantity.
pub(crate) fn quantity(value: &Value) -> Option<String> {
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
pub(crate) fn shown_number(text: &str) -> String {
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
pub(crate) fn quantity_number(value: &Value) -> Option<f64> {
    match value.get("value")? {
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// The value of an Observation as text (quantity, concept, string, components).
pub(crate) fn observation_value(observation: &Value) -> String {
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
pub(crate) fn when(resource: &Value) -> Option<&str> {
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
pub(crate) fn reference(value: Option<&Value>) -> Option<&str> {
    value?.get("reference")?.as_str()
}

/// Today's date (UTC).
pub(crate) fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_codes_and_ages() {
        let patient = json!({"name": [{"use": "usual", "given": ["Jo"]}, {"use": "official", "given": ["Joanna", "M"], "family": "Smith"}],
            "identifier": [{"value": "ssn"}, {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}, "value": "MRN-1"}]});
        assert_eq!(person_name(&patient), "Joanna M Smith");
        assert_eq!(mrn(&patient).as_deref(), Some("MRN-1"));
        assert_eq!(concept(Some(&json!({"coding": [{"code": "x"}, {"code": "y", "display": "Why"}]}))), "Why");
        let today = Date::from_calendar_date(2026, time::Month::March, 4).unwrap();
        assert_eq!(age("2000-03-04", today), Some(26));
        assert_eq!(age("2000-03-05", today), Some(25));
        assert_eq!(age("2030-01-01", today), None);
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
