//! CDA datatypes (II, CD, TS, IVL_TS, PQ, PN, AD, TEL) into FHIR datatypes.

use super::xml::{El, Narrative, attr, child, children, is_null, text_of, xsi_type};
use serde_json::{Map, Number, Value, json};

/// The FHIR system URI of a code system OID; `urn:oid:` for those not known.
pub(crate) fn system_uri(oid: &str) -> String {
    let known = match oid {
        "2.16.840.1.113883.6.1" => "http://loinc.org",
        "2.16.840.1.113883.6.96" => "http://snomed.info/sct",
        "2.16.840.1.113883.6.88" => "http://www.nlm.nih.gov/research/umls/rxnorm",
        "2.16.840.1.113883.12.292" => "http://hl7.org/fhir/sid/cvx",
        "2.16.840.1.113883.6.90" => "http://hl7.org/fhir/sid/icd-10-cm",
        "2.16.840.1.113883.6.3" => "http://hl7.org/fhir/sid/icd-10",
        "2.16.840.1.113883.6.103" => "http://hl7.org/fhir/sid/icd-9-cm",
        "2.16.840.1.113883.6.104" => "http://hl7.org/fhir/sid/icd-9-cm",
        "2.16.840.1.113883.6.69" => "http://hl7.org/fhir/sid/ndc",
        "2.16.840.1.113883.6.12" => "http://www.ama-assn.org/go/cpt",
        "2.16.840.1.113883.6.8" => "http://unitsofmeasure.org",
        "2.16.840.1.113883.3.26.1.1" => "http://ncithesaurus-stage.nci.nih.gov",
        "2.16.840.1.113883.6.101" => "http://nucc.org/provider-taxonomy",
        "2.16.840.1.113883.6.13" => "http://ada.org/cdt",
        "2.16.840.1.113883.6.4" => "http://www.cms.gov/Medicare/Coding/ICD10",
        "2.16.840.1.113883.6.259" => "https://www.cdc.gov/nhsn/cdaportal/terminology/codesystem/hsloc.html",
        "2.16.840.1.113883.6.301.3" => "https://www.nubc.org/CodeSystem/RevenueCodes",
        "2.16.840.1.113883.5.4" => "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "2.16.840.1.113883.5.83" => "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "2.16.840.1.113883.5.112" => "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration",
        "2.16.840.1.113883.5.14" => "http://terminology.hl7.org/CodeSystem/v3-ActStatus",
        "2.16.840.1.113883.5.1" => "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender",
        "2.16.840.1.113883.5.2" => "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
        "2.16.840.1.113883.5.25" => "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
        "2.16.840.1.113883.5.6" => "http://terminology.hl7.org/CodeSystem/v3-ActClass",
        "2.16.840.1.113883.5.1001" => "http://terminology.hl7.org/CodeSystem/v3-ActMood",
        "2.16.840.1.113883.5.1063" => "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "2.16.840.1.113883.5.111" => "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
        "2.16.840.1.113883.5.110" => "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
        "2.16.840.1.113883.5.88" => "http://terminology.hl7.org/CodeSystem/v3-ParticipationFunction",
        "2.16.840.1.113883.5.90" => "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
        "2.16.840.1.113883.5.1119" => "http://terminology.hl7.org/CodeSystem/v3-AddressUse",
        "2.16.840.1.113883.5.45" => "http://terminology.hl7.org/CodeSystem/v3-EntityNameUse",
        "2.16.840.1.113883.5.143" => "http://terminology.hl7.org/CodeSystem/v3-TelecomAddressUse",
        "2.16.840.1.113883.5.139" => "http://terminology.hl7.org/CodeSystem/v3-TimingEvent",
        "2.16.840.1.113883.5.1008" => "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
        "2.16.840.1.113883.5.1076" => "http://terminology.hl7.org/CodeSystem/v3-ReligiousAffiliation",
        "2.16.840.1.113883.5.85" => "http://terminology.hl7.org/CodeSystem/v3-ServiceDeliveryLocationRoleType",
        "2.16.840.1.113883.5.1052" => "http://terminology.hl7.org/CodeSystem/v3-ActSite",
        "2.16.840.1.113883.5.60" => "http://terminology.hl7.org/CodeSystem/v3-LanguageAbilityMode",
        "2.16.840.1.113883.5.61" => "http://terminology.hl7.org/CodeSystem/v3-LanguageAbilityProficiency",
        "2.16.840.1.113883.5.7" => "http://terminology.hl7.org/CodeSystem/v3-ActPriority",
        "2.16.840.1.113883.5.8" => "http://terminology.hl7.org/CodeSystem/v3-ActReason",
        "2.16.840.1.113883.5.1002" => "http://terminology.hl7.org/CodeSystem/v3-ActRelationshipType",
        "2.16.840.1.113883.18.2" => "http://terminology.hl7.org/CodeSystem/v2-0001",
        "2.16.840.1.113883.12.112" => "http://terminology.hl7.org/CodeSystem/v2-0112",
        "2.16.840.1.113883.12.443" => "http://terminology.hl7.org/CodeSystem/v2-0443",
        _ => return format!("urn:oid:{oid}"),
    };
    known.to_owned()
}

/// Whether `s` is an OID (digits and dots).
fn is_oid(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `s` is a UUID in its 8-4-4-4-12 form.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The URI form of an II root (`urn:oid:`, `urn:uuid:`), if it is an OID or a UUID.
fn root_uri(root: &str) -> Option<String> {
    if is_oid(root) {
        Some(format!("urn:oid:{root}"))
    } else if is_uuid(root) {
        Some(format!("urn:uuid:{}", root.to_ascii_lowercase()))
    } else {
        None
    }
}

/// An II (`id`) as a FHIR Identifier: root+extension → system `urn:oid:ROOT` (NPI and SSN by
/// their FHIR names), value extension; root alone → system `urn:ietf:rfc:3986`, value the root
/// as a URI. `None` for null or rootless ids.
pub(crate) fn identifier(id: El<'_>) -> Option<Value> {
    if is_null(id) {
        return None;
    }
    let root = attr(id, "root")?;
    match attr(id, "extension") {
        Some(extension) => {
            let system = match root {
                "2.16.840.1.113883.4.6" => "http://hl7.org/fhir/sid/us-npi".to_owned(),
                "2.16.840.1.113883.4.1" => "http://hl7.org/fhir/sid/us-ssn".to_owned(),
                _ => root_uri(root)?,
            };
            Some(json!({"system": system, "value": extension}))
        }
        None => Some(json!({"system": "urn:ietf:rfc:3986", "value": root_uri(root)?})),
    }
}

/// Every identifier of the `id` children of `node`.
pub(crate) fn identifiers(node: El<'_>) -> Vec<Value> {
    children(node, "id").filter_map(identifier).collect()
}

/// One Coding of a CD's `code`/`codeSystem`/`displayName`, if it has a code.
fn coding(cd: El<'_>) -> Option<Value> {
    if is_null(cd) {
        return None;
    }
    let code = attr(cd, "code")?;
    let mut c = Map::new();
    if let Some(system) = attr(cd, "codeSystem") {
        c.insert("system".into(), Value::String(system_uri(system)));
    }
    c.insert("code".into(), Value::String(code.to_owned()));
    if let Some(display) = attr(cd, "displayName") {
        c.insert("display".into(), Value::String(collapse(display)));
    }
    Some(Value::Object(c))
}

/// Whitespace collapsed to single spaces.
pub(crate) fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A CD/CE/CV as a CodeableConcept: the code and every translation as codings, the original
/// text (its narrative reference followed) as `text`. `None` when it says nothing.
pub(crate) fn concept(cd: El<'_>, narrative: &Narrative<'_>) -> Option<Value> {
    let mut codings: Vec<Value> = coding(cd).into_iter().collect();
    codings.extend(children(cd, "translation").filter_map(coding));
    let text = child(cd, "originalText").and_then(|t| narrative.text(t));
    if codings.is_empty() && text.is_none() {
        return None;
    }
    let mut cc = Map::new();
    if !codings.is_empty() {
        cc.insert("coding".into(), Value::Array(codings));
    }
    if let Some(text) = text {
        cc.insert("text".into(), Value::String(text));
    }
    Some(Value::Object(cc))
}

/// The code and system of a CD and its translations: `(system OID, code)` pairs.
pub(crate) fn codes<'a>(cd: El<'a>) -> impl Iterator<Item = (Option<&'a str>, &'a str)> {
    std::iter::once(cd)
        .chain(children(cd, "translation"))
        .filter_map(|c| attr(c, "code").map(|code| (attr(c, "codeSystem"), code)))
}

/// A `Coding` value as a CodeableConcept of one coding.
pub(crate) fn fixed(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}]})
}

/// Days in a month of a year.
fn days_in(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        _ => 31,
    }
}

/// A number from ASCII digits.
fn num(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A TS value as a FHIR `date` or `dateTime`, at the precision given. A time without a zone
/// offset is not a valid FHIR dateTime: only its date is kept then.
pub(crate) fn ts(value: &str) -> Option<String> {
    let value = value.trim();
    let (stamp, zone) = match value.find(['+', '-']) {
        Some(at) => (value.get(..at)?, value.get(at..)),
        None => (value, None),
    };
    let (digits, fraction) = match stamp.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (stamp, None),
    };
    let year = num(digits.get(..4)?)?;
    if year == 0 {
        return None;
    }
    let mut out = format!("{year:04}");
    if digits.len() == 4 {
        return Some(out);
    }
    let month = num(digits.get(4..6)?)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    out.push_str(&format!("-{month:02}"));
    if digits.len() == 6 {
        return Some(out);
    }
    let day = num(digits.get(6..8)?)?;
    if day == 0 || day > days_in(year, month) {
        return None;
    }
    out.push_str(&format!("-{day:02}"));
    if digits.len() == 8 {
        return Some(out);
    }
    let hour = num(digits.get(8..10)?)?;
    let minute = if digits.len() >= 12 { num(digits.get(10..12)?)? } else { 0 };
    let second = if digits.len() >= 14 { num(digits.get(12..14)?)? } else { 0 };
    if hour > 23 || minute > 59 || second > 59 || !matches!(digits.len(), 10 | 12 | 14) {
        return None;
    }
    let Some(zone) = zone else {
        // No offset: FHIR needs one for a time, so the date alone is kept.
        return Some(out);
    };
    let sign = zone.get(..1)?;
    let zh = num(zone.get(1..3)?)?;
    let zm = num(zone.get(3..5)?)?;
    if zone.len() != 5 || zh > 14 || zm > 59 {
        return Some(out);
    }
    out.push_str(&format!("T{hour:02}:{minute:02}:{second:02}"));
    if let Some(fraction) = fraction.filter(|f| digits.len() == 14 && !f.is_empty())
        && fraction.bytes().all(|b| b.is_ascii_digit())
    {
        out.push('.');
        out.push_str(fraction);
    }
    out.push_str(&format!("{sign}{zh:02}:{zm:02}"));
    Some(out)
}

/// The date part of a FHIR date/dateTime.
pub(crate) fn date_only(value: &str) -> String {
    value.get(..10).unwrap_or(value).to_owned()
}

/// The TS `value` of an element (null flavors give nothing).
pub(crate) fn ts_of(node: El<'_>) -> Option<String> {
    if is_null(node) {
        return None;
    }
    attr(node, "value").and_then(ts)
}

/// An IVL_TS (or TS): `(low, high, value)`, each a FHIR date/dateTime.
#[derive(Debug, Default)]
pub(crate) struct Interval {
    /// `low`.
    pub(crate) low: Option<String>,
    /// `high`.
    pub(crate) high: Option<String>,
    /// The point `value`, or `center`.
    pub(crate) value: Option<String>,
}

impl Interval {
    /// Reads an IVL_TS or TS element.
    pub(crate) fn of(node: El<'_>) -> Self {
        Interval {
            low: child(node, "low").and_then(ts_of),
            high: child(node, "high").and_then(ts_of),
            value: ts_of(node).or_else(|| child(node, "center").and_then(ts_of)),
        }
    }

    /// The first instant of it: `value`, else `low`.
    pub(crate) fn start(&self) -> Option<String> {
        self.value.clone().or_else(|| self.low.clone())
    }

    /// As a FHIR Period (`value` as the start when no `low`).
    pub(crate) fn period(&self) -> Option<Value> {
        let mut p = Map::new();
        if let Some(start) = self.start() {
            p.insert("start".into(), Value::String(start));
        }
        if let Some(end) = &self.high {
            p.insert("end".into(), Value::String(end.clone()));
        }
        (!p.is_empty()).then_some(Value::Object(p))
    }

    /// Sets `{prefix}DateTime` for a point in time (a `value`; `low` equal to `high`; or, when
    /// `open_is_point`, a `low` without `high`), else `{prefix}Period`, on `out`.
    pub(crate) fn set_choice(&self, out: &mut Map<String, Value>, prefix: &str, open_is_point: bool) {
        let point = match (&self.value, &self.low, &self.high) {
            (Some(v), None, None) => Some(v),
            (None, Some(low), Some(high)) if low == high => Some(low),
            (None, Some(low), None) if open_is_point => Some(low),
            _ => None,
        };
        match point {
            Some(v) => {
                out.insert(format!("{prefix}DateTime"), Value::String(v.clone()));
            }
            None => {
                if let Some(p) = self.period() {
                    out.insert(format!("{prefix}Period"), p);
                }
            }
        }
    }
}

/// A decimal from CDA text as a JSON number (the literal is kept), if it is one.
pub(crate) fn decimal(s: &str) -> Option<Value> {
    let s = s.trim();
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let ok = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && (frac.is_empty() && !body.ends_with('.') || frac.bytes().all(|b| b.is_ascii_digit()) && !frac.is_empty());
    if !ok || body.len() > 40 {
        return None;
    }
    s.parse::<Number>().ok().map(Value::Number)
}

/// A PQ as a Quantity (UCUM system and code when a unit is given).
pub(crate) fn quantity(pq: El<'_>) -> Option<Value> {
    if is_null(pq) {
        return None;
    }
    let value = decimal(attr(pq, "value")?)?;
    let mut q = Map::new();
    q.insert("value".into(), value);
    if let Some(unit) = attr(pq, "unit") {
        q.insert("unit".into(), Value::String(unit.to_owned()));
        q.insert("system".into(), Value::String("http://unitsofmeasure.org".into()));
        q.insert("code".into(), Value::String(unit.to_owned()));
    }
    Some(Value::Object(q))
}

/// An IVL_PQ as a Range (`low`/`high`), if either is given.
pub(crate) fn range(ivl: El<'_>) -> Option<Value> {
    let mut r = Map::new();
    if let Some(low) = child(ivl, "low").and_then(quantity) {
        r.insert("low".into(), low);
    }
    if let Some(high) = child(ivl, "high").and_then(quantity) {
        r.insert("high".into(), high);
    }
    (!r.is_empty()).then_some(Value::Object(r))
}

/// The value of an observation's `value`, as `(valueX name, FHIR value)` by its `xsi:type`.
pub(crate) fn observation_value(value: El<'_>, narrative: &Narrative<'_>) -> Option<(&'static str, Value)> {
    match xsi_type(value).unwrap_or("") {
        "PQ" => quantity(value).map(|q| ("valueQuantity", q)),
        "REAL" => attr(value, "value").and_then(decimal).map(|v| ("valueQuantity", json!({"value": v}))),
        "INT" => {
            attr(value, "value").and_then(|v| v.parse::<i32>().ok()).map(|v| ("valueInteger", Value::Number(v.into())))
        }
        "IVL_PQ" => {
            if let Some(q) = quantity(value) {
                return Some(("valueQuantity", q));
            }
            range(value).map(|r| ("valueRange", r))
        }
        "CD" | "CE" | "CV" | "CO" | "CS" => concept(value, narrative).map(|c| ("valueCodeableConcept", c)),
        "ST" | "ED" | "SC" => narrative.text(value).map(|s| ("valueString", Value::String(s))),
        "BL" => match attr(value, "value") {
            Some("true") => Some(("valueBoolean", Value::Bool(true))),
            Some("false") => Some(("valueBoolean", Value::Bool(false))),
            _ => None,
        },
        "TS" => ts_of(value).map(|t| ("valueDateTime", Value::String(t))),
        "IVL_TS" => Interval::of(value).period().map(|p| ("valuePeriod", p)),
        _ => {
            // Untyped: a code if it has one, else its text.
            if let Some(c) = concept(value, narrative) {
                Some(("valueCodeableConcept", c))
            } else {
                text_of(value).map(|s| ("valueString", Value::String(s)))
            }
        }
    }
}

/// A PN as a HumanName.
pub(crate) fn human_name(name: El<'_>) -> Option<Value> {
    if is_null(name) {
        return None;
    }
    let mut n = Map::new();
    if let Some(u) = attr(name, "use") {
        let u = match u.split_whitespace().next().unwrap_or("") {
            "L" | "OR" => Some("official"),
            "P" | "A" => Some("nickname"),
            "ASGN" => Some("usual"),
            "C" => Some("old"),
            "ANON" => Some("anonymous"),
            _ => None,
        };
        if let Some(u) = u {
            n.insert("use".into(), Value::String(u.into()));
        }
    }
    let parts =
        |tag: &str| -> Vec<Value> { children(name, tag).filter_map(|p| text_of(p)).map(Value::String).collect() };
    if let Some(family) = child(name, "family").and_then(text_of) {
        n.insert("family".into(), Value::String(family));
    }
    for (tag, key) in [("given", "given"), ("prefix", "prefix"), ("suffix", "suffix")] {
        let values = parts(tag);
        if !values.is_empty() {
            n.insert(key.into(), Value::Array(values));
        }
    }
    if !n.contains_key("family") && !n.contains_key("given") {
        // A name given as plain text.
        let mut text = String::new();
        for t in name.children().filter(|c| c.is_text()) {
            for w in t.text().unwrap_or_default().split_whitespace() {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(w);
            }
        }
        if text.is_empty() {
            return None;
        }
        n.insert("text".into(), Value::String(text));
    }
    Some(Value::Object(n))
}

/// An AD as an Address.
pub(crate) fn address(ad: El<'_>) -> Option<Value> {
    if is_null(ad) {
        return None;
    }
    let mut a = Map::new();
    if let Some(u) = attr(ad, "use") {
        let u = match u.split_whitespace().next().unwrap_or("") {
            "H" | "HP" | "HV" => Some("home"),
            "WP" | "DIR" | "PUB" => Some("work"),
            "TMP" => Some("temp"),
            "OLD" | "BAD" => Some("old"),
            _ => None,
        };
        if let Some(u) = u {
            a.insert("use".into(), Value::String(u.into()));
        }
    }
    let lines: Vec<Value> = children(ad, "streetAddressLine").filter_map(text_of).map(Value::String).collect();
    if !lines.is_empty() {
        a.insert("line".into(), Value::Array(lines));
    }
    for (tag, key) in [
        ("city", "city"),
        ("county", "district"),
        ("state", "state"),
        ("postalCode", "postalCode"),
        ("country", "country"),
    ] {
        if let Some(v) = child(ad, tag).and_then(text_of) {
            a.insert(key.into(), Value::String(v));
        }
    }
    (!a.is_empty()).then_some(Value::Object(a))
}

/// A TEL as a ContactPoint (`tel:` phone, `mailto:` email, `fax:` fax, `http(s):` url).
pub(crate) fn contact_point(tel: El<'_>) -> Option<Value> {
    if is_null(tel) {
        return None;
    }
    let raw = attr(tel, "value")?;
    let (system, value) = if let Some(v) = raw.strip_prefix("tel:") {
        ("phone", v)
    } else if let Some(v) = raw.strip_prefix("mailto:") {
        ("email", v)
    } else if let Some(v) = raw.strip_prefix("fax:") {
        ("fax", v)
    } else if raw.starts_with("http:") || raw.starts_with("https:") {
        ("url", raw)
    } else {
        ("other", raw)
    };
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let mut c = Map::new();
    c.insert("system".into(), Value::String(system.into()));
    c.insert("value".into(), Value::String(value.into()));
    if let Some(u) = attr(tel, "use") {
        let u = match u.split_whitespace().next().unwrap_or("") {
            "H" | "HP" | "HV" => Some("home"),
            "WP" | "DIR" | "PUB" => Some("work"),
            "MC" | "PG" => Some("mobile"),
            "TMP" => Some("temp"),
            "BAD" => Some("old"),
            _ => None,
        };
        if let Some(u) = u {
            c.insert("use".into(), Value::String(u.into()));
        }
    }
    Some(Value::Object(c))
}

/// Inserts `key: [items]` when there are items.
pub(crate) fn put_list(out: &mut Map<String, Value>, key: &str, items: Vec<Value>) {
    if !items.is_empty() {
        out.insert(key.into(), Value::Array(items));
    }
}

/// Inserts `key: value` when there is a value.
pub(crate) fn put(out: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        out.insert(key.into(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_their_precision() {
        assert_eq!(ts("2013").as_deref(), Some("2013"));
        assert_eq!(ts("201309").as_deref(), Some("2013-09"));
        assert_eq!(ts("20130915").as_deref(), Some("2013-09-15"));
        assert_eq!(ts("201309151030-0500").as_deref(), Some("2013-09-15T10:30:00-05:00"));
        assert_eq!(ts("20130915103005.123+0100").as_deref(), Some("2013-09-15T10:30:05.123+01:00"));
        // A time without a zone: the date only.
        assert_eq!(ts("20130915103005").as_deref(), Some("2013-09-15"));
        assert_eq!(ts("20130231"), None);
        assert_eq!(ts("2013x"), None);
        assert_eq!(ts(""), None);
        assert_eq!(ts("+"), None);
    }

    #[test]
    fn decimals_are_checked() {
        assert!(decimal("1.50").is_some());
        assert!(decimal("-3").is_some());
        assert!(decimal(".5").is_none());
        assert!(decimal("5.").is_none());
        assert!(decimal("1e5").is_none());
    }

    #[test]
    fn systems() {
        assert_eq!(system_uri("2.16.840.1.113883.6.1"), "http://loinc.org");
        assert_eq!(system_uri("1.2.3"), "urn:oid:1.2.3");
    }
}
