//! How FHIR values read on a page: names, codes, dates, quantities, references.

pub(crate) use chart::elements::{concept, first_code, has_code, instant, reference, when};
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

/// Today's date (UTC).
pub(crate) fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_ages() {
        let patient = json!({"name": [{"use": "usual", "given": ["Jo"]}, {"use": "official", "given": ["Joanna", "M"], "family": "Smith"}],
            "identifier": [{"value": "ssn"}, {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}, "value": "MRN-1"}]});
        assert_eq!(person_name(&patient), "Joanna M Smith");
        assert_eq!(mrn(&patient).as_deref(), Some("MRN-1"));
        let today = Date::from_calendar_date(2026, time::Month::March, 4).unwrap();
        assert_eq!(age("2000-03-04", today), Some(26));
        assert_eq!(age("2000-03-05", today), Some(25));
        assert_eq!(age("2030-01-01", today), None);
    }
}
