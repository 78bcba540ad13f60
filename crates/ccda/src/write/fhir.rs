//! Reading the FHIR R4 JSON the document is made from: coded values, dates, references.

use serde_json::Value;
use std::collections::HashMap;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// `v[key]` as a string.
pub(crate) fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// `v[key]` as an array (empty when absent).
pub(crate) fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[][..], Vec::as_slice)
}

/// The codings of a CodeableConcept.
pub(crate) fn codings(cc: &Value) -> &[Value] {
    arr(cc, "coding")
}

/// Whether `cc` has a coding of `system` (when given) with `code`.
pub(crate) fn has_code(cc: &Value, system: Option<&str>, code: &str) -> bool {
    codings(cc).iter().any(|c| s(c, "code") == Some(code) && system.is_none_or(|sys| s(c, "system") == Some(sys)))
}

/// The first code of a CodeableConcept (any system).
pub(crate) fn first_code(cc: &Value) -> Option<&str> {
    codings(cc).iter().find_map(|c| s(c, "code"))
}

/// Whether any of `resource.category` (a CodeableConcept or a list of them) carries `code`.
pub(crate) fn has_category(resource: &Value, code: &str) -> bool {
    match resource.get("category") {
        Some(Value::Array(cats)) => cats.iter().any(|c| has_code(c, None, code)),
        Some(cat @ Value::Object(_)) => has_code(cat, None, code),
        _ => false,
    }
}

/// What a person reads for a CodeableConcept: its text, else a display, else a code.
pub(crate) fn cc_text(cc: &Value) -> String {
    if let Some(t) = s(cc, "text") {
        return t.to_owned();
    }
    let cs = codings(cc);
    cs.iter().find_map(|c| s(c, "display")).or_else(|| cs.iter().find_map(|c| s(c, "code"))).unwrap_or("").to_owned()
}

/// The OID of a FHIR code system URI, with its usual name.
pub(crate) fn system_oid(system: &str) -> Option<(&str, Option<&'static str>)> {
    if let Some(oid) = system.strip_prefix("urn:oid:") {
        return is_oid(oid).then_some((oid, None));
    }
    let known: (&'static str, &'static str) = match system {
        "http://loinc.org" => ("2.16.840.1.113883.6.1", "LOINC"),
        "http://snomed.info/sct" => ("2.16.840.1.113883.6.96", "SNOMED CT"),
        "http://www.nlm.nih.gov/research/umls/rxnorm" => ("2.16.840.1.113883.6.88", "RxNorm"),
        "http://hl7.org/fhir/sid/cvx" => ("2.16.840.1.113883.12.292", "CVX"),
        "http://hl7.org/fhir/sid/icd-10-cm" => ("2.16.840.1.113883.6.90", "ICD-10-CM"),
        "http://hl7.org/fhir/sid/icd-10" => ("2.16.840.1.113883.6.3", "ICD-10"),
        "http://hl7.org/fhir/sid/icd-9-cm" => ("2.16.840.1.113883.6.103", "ICD-9-CM"),
        "http://hl7.org/fhir/sid/ndc" => ("2.16.840.1.113883.6.69", "NDC"),
        "http://www.ama-assn.org/go/cpt" => ("2.16.840.1.113883.6.12", "CPT-4"),
        "http://unitsofmeasure.org" => ("2.16.840.1.113883.6.8", "UCUM"),
        "http://ncimeta.nci.nih.gov" | "http://ncit.nci.nih.gov" => ("2.16.840.1.113883.3.26.1.1", "NCI Thesaurus"),
        "http://terminology.hl7.org/CodeSystem/v3-ActCode" => ("2.16.840.1.113883.5.4", "ActCode"),
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation" => {
            ("2.16.840.1.113883.5.83", "ObservationInterpretation")
        }
        "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus" => ("2.16.840.1.113883.5.2", "MaritalStatus"),
        "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender" => {
            ("2.16.840.1.113883.5.1", "AdministrativeGender")
        }
        "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration" => {
            ("2.16.840.1.113883.5.112", "RouteOfAdministration")
        }
        "http://terminology.hl7.org/CodeSystem/v3-NullFlavor" => ("2.16.840.1.113883.5.1008", "NullFlavor"),
        "http://terminology.hl7.org/CodeSystem/v3-ActEncounterCode" => ("2.16.840.1.113883.5.4", "ActCode"),
        "http://nucc.org/provider-taxonomy" => ("2.16.840.1.113883.6.101", "NUCC"),
        "http://www.nlm.nih.gov/research/umls/hcpcs" => ("2.16.840.1.113883.6.285", "HCPCS"),
        "http://www.cms.gov/Medicare/Coding/ICD10" => ("2.16.840.1.113883.6.4", "ICD-10-PCS"),
        _ => return None,
    };
    Some((known.0, Some(known.1)))
}

/// Whether `s` is an OID (as the CDA schema's `oid` pattern).
pub(crate) fn is_oid(s: &str) -> bool {
    let mut parts = s.split('.');
    let first_ok = matches!(parts.next(), Some("0" | "1" | "2"));
    first_ok
        && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0')))
}

/// Whether `s` is a UUID (as the CDA schema's `uuid` pattern).
pub(crate) fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The OID of an identifier system, when it has one.
pub(crate) fn identifier_root(system: &str) -> Option<&str> {
    match system {
        "http://hl7.org/fhir/sid/us-ssn" => Some("2.16.840.1.113883.4.1"),
        "http://hl7.org/fhir/sid/us-npi" => Some("2.16.840.1.113883.4.6"),
        "http://hl7.org/fhir/sid/us-medicare" => Some("2.16.840.1.113883.4.572"),
        _ => {
            if let Some(oid) = system.strip_prefix("urn:oid:") {
                is_oid(oid).then_some(oid)
            } else if let Some(uuid) = system.strip_prefix("urn:uuid:") {
                is_uuid(uuid).then_some(uuid)
            } else {
                None
            }
        }
    }
}

/// A FHIR `date`, `dateTime` or `instant` as an HL7 TS (`YYYYMMDDHHMMSS[.f]±ZZZZ`, or
/// only as precise as given); `None` when it is not one.
pub(crate) fn ts(fhir: &str) -> Option<String> {
    let fhir = fhir.trim();
    let (date, rest) = match fhir.split_once('T') {
        Some((d, r)) => (d, Some(r)),
        None => (fhir, None),
    };
    let mut out = String::with_capacity(24);
    let parts: Vec<&str> = date.split('-').collect();
    let lens = [4, 2, 2];
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    for (p, n) in parts.iter().zip(lens) {
        if p.len() != n || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        out.push_str(p);
    }
    let Some(rest) = rest else {
        return Some(out);
    };
    if parts.len() != 3 {
        return None;
    }
    let (clock, zone) = if let Some(c) = rest.strip_suffix('Z') {
        (c, "+0000".to_owned())
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let z = &rest[i..];
        let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        (&rest[..i], format!("{}{digits}", &z[..1]))
    } else {
        return None;
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (clock, None),
    };
    let hms: Vec<&str> = hms.split(':').collect();
    if hms.len() != 3 || !hms.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    for p in hms {
        out.push_str(p);
    }
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        out.push('.');
        out.push_str(f);
    }
    out.push_str(&zone);
    Some(out)
}

/// An instant as a TS with its offset.
pub(crate) fn ts_of(t: OffsetDateTime) -> String {
    let off = t.offset();
    let (h, m, _) = off.as_hms();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}{}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        if off.is_negative() { '-' } else { '+' },
        h.unsigned_abs(),
        m.unsigned_abs()
    )
}

/// A FHIR date or dateTime as an instant (a partial date as its first moment, in UTC).
pub(crate) fn instant(fhir: &str) -> Option<OffsetDateTime> {
    let fhir = fhir.trim();
    if fhir.contains('T') {
        return OffsetDateTime::parse(fhir, &time::format_description::well_known::Rfc3339).ok();
    }
    let mut parts = fhir.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next().map_or(Some(1), |m| m.parse().ok())?;
    let day: u8 = parts.next().map_or(Some(1), |d| d.parse().ok())?;
    let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
    Some(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_offset(UtcOffset::UTC))
}

/// The resources of a chart indexed by `Type/id`.
pub(crate) struct Index<'a> {
    by_ref: HashMap<String, &'a Value>,
}

impl<'a> Index<'a> {
    /// Indexes `resources` (each once).
    pub(crate) fn new(resources: &'a [Value]) -> Self {
        let mut by_ref = HashMap::with_capacity(resources.len());
        for r in resources {
            if let (Some(t), Some(id)) = (s(r, "resourceType"), s(r, "id")) {
                by_ref.entry(format!("{t}/{id}")).or_insert(r);
            }
        }
        Self { by_ref }
    }

    /// The resource a Reference (`{"reference": "Type/id"}`, possibly absolute) points at.
    pub(crate) fn resolve(&self, reference: &Value) -> Option<&'a Value> {
        let r = s(reference, "reference")?;
        let r = r.split("/_history/").next().unwrap_or(r);
        if let Some(v) = self.by_ref.get(r) {
            return Some(v);
        }
        let mut tail = r.rsplitn(3, '/');
        let id = tail.next()?;
        let ty = tail.next()?;
        self.by_ref.get(&format!("{ty}/{id}")).copied()
    }
}

/// `Type/id` of a resource.
pub(crate) fn key(r: &Value) -> String {
    format!("{}/{}", s(r, "resourceType").unwrap_or("Resource"), s(r, "id").unwrap_or(""))
}

/// Whether `reference` (a Reference) points at `target` (`Type/id`).
pub(crate) fn refers_to(reference: &Value, target: &str) -> bool {
    s(reference, "reference").is_some_and(|r| r == target || r.ends_with(&format!("/{target}")))
}

/// The start and end (FHIR strings) of what a resource records, when dated.
pub(crate) fn span(r: &Value) -> (Option<&str>, Option<&str>) {
    fn start_end<'v>(r: &'v Value, prefix: &str) -> Option<(Option<&'v str>, Option<&'v str>)> {
        if let Some(d) = s(r, &format!("{prefix}DateTime")) {
            return Some((Some(d), Some(d)));
        }
        let p = r.get(format!("{prefix}Period"))?;
        Some((s(p, "start"), s(p, "end")))
    }
    let ty = s(r, "resourceType").unwrap_or("");
    match ty {
        "Condition" => {
            let start = start_end(r, "onset").and_then(|x| x.0).or_else(|| s(r, "recordedDate"));
            let end = start_end(r, "abatement").and_then(|x| x.1.or(x.0));
            (start, end)
        }
        "AllergyIntolerance" => {
            let start = start_end(r, "onset").and_then(|x| x.0).or_else(|| s(r, "recordedDate"));
            (start, None)
        }
        "MedicationRequest" => {
            let start = s(r, "authoredOn");
            let open = matches!(s(r, "status"), Some("active" | "on-hold" | "draft"));
            (start, if open { None } else { start })
        }
        "Observation" | "DiagnosticReport" | "MedicationStatement" => {
            start_end(r, "effective").unwrap_or((s(r, "issued"), s(r, "issued")))
        }
        "Immunization" => start_end(r, "occurrence").unwrap_or((None, None)),
        "Procedure" => start_end(r, "performed").unwrap_or((None, None)),
        "Encounter" | "CarePlan" => r.get("period").map_or((None, None), |p| (s(p, "start"), s(p, "end"))),
        "ServiceRequest" => start_end(r, "occurrence").unwrap_or((s(r, "authoredOn"), None)),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(ts("2016-06-09T02:24:13+05:30").as_deref(), Some("20160609022413+0530"));
        assert_eq!(ts("2016-06-09T02:24:13.424Z").as_deref(), Some("20160609022413.424+0000"));
        assert_eq!(ts("2016-06-09T02:24:13-04:00").as_deref(), Some("20160609022413-0400"));
        assert_eq!(ts("2016-06").as_deref(), Some("201606"));
        assert_eq!(ts("2016").as_deref(), Some("2016"));
        assert_eq!(ts("16-06"), None);
        assert_eq!(ts("2016-06-09T02:24"), None);
        assert!(instant("2016-06").is_some());
        assert!(instant("2016-06-09T02:24:13+05:30").is_some());
    }

    #[test]
    fn oids() {
        assert!(is_oid("2.16.840.1.113883.6.1"));
        assert!(!is_oid("2.16.08"));
        assert!(!is_oid("http://x"));
        assert_eq!(system_oid("urn:oid:1.2.3").map(|x| x.0), Some("1.2.3"));
        assert_eq!(system_oid("http://example.org"), None);
    }
}
