//! HL7 v2 data types to FHIR data types, after the v2-to-FHIR IG's data type maps (CX →
//! Identifier, XPN → HumanName, XAD → Address, XTN → ContactPoint, CWE → CodeableConcept,
//! DTM → dateTime, HD → a system URI). Every function returns `None` for an empty value.

use super::MapError;
use hl7v2::{Field, Repetition, Segment};
use serde_json::{Map, Value, json};

/// The system of identifiers whose assigning authority is only a namespace id (HD.1).
pub(crate) const AUTHORITY_PREFIX: &str = "urn:continuum:hl7v2:authority:";

/// The non-empty, trimmed text of component `c`, sub-component `s` of a repetition.
pub(crate) fn sub(rep: &Repetition<'_>, c: usize, s: usize) -> Option<String> {
    let text = rep.component(c)?.subcomponent(s)?.text();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// The non-empty, trimmed text of component `c` (its first sub-component).
pub(crate) fn comp(rep: &Repetition<'_>, c: usize) -> Option<String> {
    sub(rep, c, 1)
}

/// The non-empty repetitions of field `n` of a segment.
pub(crate) fn reps<'s>(segment: &'s Segment, n: usize) -> Vec<Repetition<'s>> {
    segment.field(n).map(|f: Field<'s>| f.repetitions().filter(|r| !r.is_empty()).collect()).unwrap_or_default()
}

/// The first non-empty repetition of field `n`.
pub(crate) fn first<'s>(segment: &'s Segment, n: usize) -> Option<Repetition<'s>> {
    reps(segment, n).into_iter().next()
}

/// The text of field `n`, component 1 of its first repetition.
pub(crate) fn text(segment: &Segment, n: usize) -> Option<String> {
    first(segment, n).and_then(|r| comp(&r, 1))
}

/// Percent-encodes what cannot appear in a URN segment.
fn urn_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The system URI an HD (namespace, universal id, universal id type) stands for: the
/// universal id as `urn:oid:` / `urn:uuid:` / itself when its type says how, else the namespace
/// under [`AUTHORITY_PREFIX`].
pub(crate) fn hd_system(namespace: Option<&str>, universal: Option<&str>, kind: Option<&str>) -> Option<String> {
    if let Some(uid) = universal {
        match kind.map(str::to_ascii_uppercase).as_deref() {
            Some("ISO") if uid.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                return Some(format!("urn:oid:{uid}"));
            }
            Some("UUID") => return Some(format!("urn:uuid:{}", uid.to_ascii_lowercase())),
            Some("URI" | "URL") => return Some(uid.to_string()),
            _ => {}
        }
    }
    let namespace = namespace.or(universal)?;
    Some(format!("{AUTHORITY_PREFIX}{}", urn_part(namespace)))
}

/// The system of an HD held in component `c` of a repetition as sub-components (CX.4, XCN.9).
pub(crate) fn hd_system_in(rep: &Repetition<'_>, c: usize) -> Option<String> {
    hd_system(sub(rep, c, 1).as_deref(), sub(rep, c, 2).as_deref(), sub(rep, c, 3).as_deref())
}

/// The system of an HD that is a whole field (MSH-4) held as components.
pub(crate) fn hd_system_field(rep: &Repetition<'_>) -> Option<String> {
    hd_system(comp(rep, 1).as_deref(), comp(rep, 2).as_deref(), comp(rep, 3).as_deref())
}

/// An identifier's system and value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub system: String,
    pub value: String,
}

impl Key {
    /// Conditional criteria matching this identifier (FHIR-escaped and percent-encoded).
    pub(crate) fn criteria(&self) -> String {
        format!("identifier={}|{}", query_part(&self.system), query_part(&self.value))
    }

    /// The identifier as FHIR JSON.
    pub(crate) fn to_json(&self) -> Value {
        json!({"system": self.system, "value": self.value})
    }
}

/// Escapes a search token part: FHIR's `\` escapes, then percent-encoding.
fn query_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '\\' | '|' | ',' | '$') {
            out.push_str("%5C");
        }
        if ch.is_ascii_alphanumeric() || "-._~:/".contains(ch) {
            out.push(ch);
        } else {
            let mut buf = [0u8; 4];
            for b in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// CX → Identifier. `fallback` is the system used when CX.4 is empty (the sender's own
/// namespace). `None` without an id number (CX.1).
pub(crate) fn cx(rep: &Repetition<'_>, fallback: &str) -> Option<(Key, Value)> {
    let value = comp(rep, 1)?;
    let system = hd_system_in(rep, 4).unwrap_or_else(|| fallback.to_string());
    let key = Key { system, value };
    let mut identifier = key.to_json();
    if let Some(code) = comp(rep, 5) {
        let coding = json!({"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": code});
        identifier["type"] = json!({"coding": [coding]});
    }
    if let Some(name) = sub(rep, 4, 1) {
        identifier["assigner"] = json!({"display": name});
    }
    Some((key, identifier))
}

/// EI (entity id, namespace, universal id, type) → identifier key.
pub(crate) fn ei(rep: &Repetition<'_>, fallback: &str) -> Option<Key> {
    let value = comp(rep, 1)?;
    let system =
        hd_system(comp(rep, 2).as_deref(), comp(rep, 3).as_deref(), comp(rep, 4).as_deref()).unwrap_or(fallback.into());
    Some(Key { system, value })
}

/// Code systems named in CWE.3 (table 0396) that have a FHIR URI.
pub(crate) fn code_system(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    let known = match upper.as_str() {
        "LN" | "LOINC" => "http://loinc.org",
        "SCT" | "SNM" | "SNOMED" | "SNOMEDCT" | "SNM3" => "http://snomed.info/sct",
        "CVX" => "http://hl7.org/fhir/sid/cvx",
        "NDC" => "http://hl7.org/fhir/sid/ndc",
        "MVX" => "http://hl7.org/fhir/sid/mvx",
        "UCUM" => "http://unitsofmeasure.org",
        "I10" | "ICD10" => "http://hl7.org/fhir/sid/icd-10",
        "I10C" | "ICD10CM" => "http://hl7.org/fhir/sid/icd-10-cm",
        "I9" | "I9C" => "http://hl7.org/fhir/sid/icd-9-cm",
        "RXNORM" => "http://www.nlm.nih.gov/research/umls/rxnorm",
        "NCIT" => "http://ncithesaurus-stage.nci.nih.gov",
        _ => {
            let digits = upper.strip_prefix("HL7")?;
            if digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()) {
                return Some(format!("http://terminology.hl7.org/CodeSystem/v2-{digits}"));
            }
            return None;
        }
    };
    Some(known.to_string())
}

fn coding(code: Option<String>, display: Option<String>, system: Option<String>) -> Option<Value> {
    let code = code?;
    let mut coding = Map::new();
    if let Some(system) = system.as_deref().and_then(code_system) {
        coding.insert("system".into(), system.into());
    }
    coding.insert("code".into(), code.into());
    if let Some(display) = display {
        coding.insert("display".into(), display.into());
    }
    Some(Value::Object(coding))
}

/// CWE/CE (code, text, system, alternate code, text, system) → CodeableConcept.
pub(crate) fn cwe(rep: &Repetition<'_>) -> Option<Value> {
    let codings: Vec<Value> =
        [coding(comp(rep, 1), comp(rep, 2), comp(rep, 3)), coding(comp(rep, 4), comp(rep, 5), comp(rep, 6))]
            .into_iter()
            .flatten()
            .collect();
    let text = comp(rep, 2).or_else(|| comp(rep, 5));
    let mut concept = Map::new();
    if !codings.is_empty() {
        concept.insert("coding".into(), codings.into());
    }
    if let Some(text) = text {
        concept.insert("text".into(), text.into());
    }
    (!concept.is_empty()).then_some(Value::Object(concept))
}

/// A concept of one code in a known system.
pub(crate) fn concept(system: &str, code: &str, display: Option<&str>) -> Value {
    let mut coding = json!({"system": system, "code": code});
    if let Some(display) = display {
        coding["display"] = display.into();
    }
    json!({"coding": [coding]})
}

/// XPN → HumanName (family from XPN.1.1, given from XPN.2 and XPN.3).
pub(crate) fn xpn(rep: &Repetition<'_>) -> Option<Value> {
    let mut name = Map::new();
    if let Some(family) = sub(rep, 1, 1) {
        name.insert("family".into(), family.into());
    }
    let given: Vec<Value> = [comp(rep, 2), comp(rep, 3)].into_iter().flatten().map(Value::from).collect();
    if !given.is_empty() {
        name.insert("given".into(), given.into());
    }
    let suffix: Vec<Value> = [comp(rep, 4), comp(rep, 6)].into_iter().flatten().map(Value::from).collect();
    if !suffix.is_empty() {
        name.insert("suffix".into(), suffix.into());
    }
    if let Some(prefix) = comp(rep, 5) {
        name.insert("prefix".into(), json!([prefix]));
    }
    if name.is_empty() {
        return None;
    }
    let name_use = match comp(rep, 7).as_deref() {
        Some("L") => Some("official"),
        Some("D") => Some("usual"),
        Some("M") => Some("maiden"),
        Some("N") => Some("nickname"),
        Some("A") => Some("anonymous"),
        Some("T") => Some("temp"),
        _ => None,
    };
    if let Some(u) = name_use {
        name.insert("use".into(), u.into());
    }
    Some(Value::Object(name))
}

/// XCN (id, family, given, middle, suffix, prefix, degree, …, assigning authority in .9)
/// → the identifier key and the HumanName of a practitioner.
pub(crate) fn xcn(rep: &Repetition<'_>, fallback: &str) -> Option<(Option<Key>, Option<Value>)> {
    let key = comp(rep, 1).map(|value| Key { system: hd_system_in(rep, 9).unwrap_or(fallback.into()), value });
    let mut name = Map::new();
    if let Some(family) = sub(rep, 2, 1) {
        name.insert("family".into(), family.into());
    }
    let given: Vec<Value> = [comp(rep, 3), comp(rep, 4)].into_iter().flatten().map(Value::from).collect();
    if !given.is_empty() {
        name.insert("given".into(), given.into());
    }
    if let Some(prefix) = comp(rep, 6) {
        name.insert("prefix".into(), json!([prefix]));
    }
    let suffix: Vec<Value> = [comp(rep, 5), comp(rep, 7)].into_iter().flatten().map(Value::from).collect();
    if !suffix.is_empty() {
        name.insert("suffix".into(), suffix.into());
    }
    let name = (!name.is_empty()).then_some(Value::Object(name));
    (key.is_some() || name.is_some()).then_some((key, name))
}

/// XAD → Address.
pub(crate) fn xad(rep: &Repetition<'_>) -> Option<Value> {
    let mut address = Map::new();
    let lines: Vec<Value> = [sub(rep, 1, 1), comp(rep, 2)].into_iter().flatten().map(Value::from).collect();
    if !lines.is_empty() {
        address.insert("line".into(), lines.into());
    }
    for (c, key) in [(3, "city"), (4, "state"), (5, "postalCode"), (6, "country"), (9, "district")] {
        if let Some(v) = comp(rep, c) {
            address.insert(key.into(), v.into());
        }
    }
    if address.is_empty() {
        return None;
    }
    match comp(rep, 7).as_deref() {
        Some("H" | "L" | "P") => {
            address.insert("use".into(), "home".into());
        }
        Some("B" | "O") => {
            address.insert("use".into(), "work".into());
        }
        Some("C") => {
            address.insert("use".into(), "temp".into());
        }
        Some("BA" | "BI") => {
            address.insert("use".into(), "old".into());
        }
        Some("M") => {
            address.insert("type".into(), "postal".into());
        }
        _ => {}
    }
    Some(Value::Object(address))
}

/// XTN → ContactPoint; `default_use` when XTN.2 says nothing (`home` for PID-13, `work` for
/// PID-14).
pub(crate) fn xtn(rep: &Repetition<'_>, default_use: &str) -> Option<Value> {
    let equipment = comp(rep, 3);
    let email = matches!(equipment.as_deref(), Some("Internet" | "X.400" | "NET"));
    let value = if email {
        comp(rep, 4).or_else(|| comp(rep, 1))
    } else {
        comp(rep, 1).or_else(|| {
            let parts: Vec<String> = [comp(rep, 5), comp(rep, 6), comp(rep, 7)].into_iter().flatten().collect();
            let mut number = parts.join(" ");
            if let Some(ext) = comp(rep, 8) {
                number.push_str(&format!(" ext. {ext}"));
            }
            (!number.is_empty()).then_some(number)
        })
    }?;
    let system = match equipment.as_deref() {
        _ if email => "email",
        Some("FX") => "fax",
        Some("BP") => "pager",
        Some("Internet" | "X.400") => "email",
        _ => "phone",
    };
    let contact_use = match (comp(rep, 2).as_deref(), equipment.as_deref()) {
        (_, Some("CP")) => "mobile",
        (Some("WPN"), _) => "work",
        (Some("PRN" | "ORN" | "VHN"), _) => "home",
        (Some("EMR"), _) => "temp",
        _ => default_use,
    };
    Some(json!({"system": system, "value": value, "use": contact_use}))
}

/// A parsed DTM: date part, optional time part (`hh:mm:ss[.fff]`), optional offset
/// (`+hh:mm`).
struct Dtm {
    date: String,
    time: Option<String>,
    offset: Option<String>,
}

fn parse_dtm(text: &str) -> Option<Dtm> {
    let (body, offset) = match text.find(['+', '-']) {
        Some(p) => (&text[..p], Some(&text[p..])),
        None => (text, None),
    };
    let (main, fraction) = match body.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (body, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(main) || ![4, 6, 8, 10, 12, 14].contains(&main.len()) {
        return None;
    }
    let part = |a: usize, b: usize| main.get(a..b).map(str::to_string);
    let year = part(0, 4)?;
    let month = part(4, 6);
    let day = part(6, 8);
    let in_range = |v: &Option<String>, lo: u32, hi: u32| {
        v.as_ref().is_none_or(|s| s.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n)))
    };
    if !in_range(&month, 1, 12) || !in_range(&day, 1, 31) {
        return None;
    }
    let date = match (&month, &day) {
        (Some(m), Some(d)) => format!("{year}-{m}-{d}"),
        (Some(m), None) => format!("{year}-{m}"),
        _ => year,
    };
    let time = if main.len() > 8 {
        let (h, mi, s) = (part(8, 10), part(10, 12), part(12, 14));
        if !in_range(&h, 0, 23) || !in_range(&mi, 0, 59) || !in_range(&s, 0, 60) {
            return None;
        }
        let mut t = format!("{}:{}:{}", h?, mi.unwrap_or("00".into()), s.unwrap_or("00".into()));
        if let Some(f) = fraction.filter(|f| digits(f)) {
            t.push('.');
            t.push_str(f);
        }
        Some(t)
    } else {
        None
    };
    let offset = match offset {
        Some(o) if o.len() == 5 && digits(&o[1..]) => Some(format!("{}:{}", &o[..3], &o[3..])),
        Some(_) => return None,
        None => None,
    };
    Some(Dtm { date, time, offset })
}

/// DTM/TS → FHIR dateTime. A time without an offset takes `default_offset` (FHIR requires a
/// zone with a time). Errors when the text is not a v2 date/time.
pub(crate) fn date_time(text: &str, default_offset: &str) -> Result<String, ()> {
    let dtm = parse_dtm(text).ok_or(())?;
    Ok(match dtm.time {
        Some(t) => format!("{}T{t}{}", dtm.date, dtm.offset.as_deref().unwrap_or(default_offset)),
        None => dtm.date,
    })
}

/// DT/DTM → FHIR date (the date part only).
pub(crate) fn date(text: &str) -> Result<String, ()> {
    parse_dtm(text).map(|d| d.date).ok_or(())
}

/// The offset of a DTM (`+hh:mm`), if it has one.
pub(crate) fn offset_of(text: &str) -> Option<String> {
    parse_dtm(text).and_then(|d| d.offset)
}

/// Field `n` (component 1 of its first repetition, DTM) as a dateTime; a malformed value is a
/// data type error located at the field.
pub(crate) fn field_date_time(segment: &Segment, n: usize, offset: &str) -> Result<Option<String>, MapError> {
    match text(segment, n) {
        None => Ok(None),
        Some(t) => date_time(&t, offset).map(Some).map_err(|()| MapError::data_type(segment.id(), n)),
    }
}

/// A decimal as FHIR JSON (exact digits kept), if `text` is one.
pub(crate) fn decimal(text: &str) -> Option<Value> {
    let t = text.trim();
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let ok = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(unsigned.contains('.') && frac.is_empty());
    if !ok {
        return None;
    }
    let normalized = t.strip_prefix('+').unwrap_or(t);
    serde_json::from_str::<Value>(normalized).ok().filter(Value::is_number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date_time("20240301", "Z"), Ok("2024-03-01".into()));
        assert_eq!(date_time("202403011230", "Z"), Ok("2024-03-01T12:30:00Z".into()));
        assert_eq!(date_time("20240301123015.25-0500", "Z"), Ok("2024-03-01T12:30:15.25-05:00".into()));
        assert_eq!(date_time("2024", "Z"), Ok("2024".into()));
        assert!(date_time("2024-03-01", "Z").is_err());
        assert!(date_time("20241301", "Z").is_err());
        assert_eq!(date("198808181126+0215"), Ok("1988-08-18".into()));
    }

    #[test]
    fn systems_and_decimals() {
        assert_eq!(hd_system(Some("X"), Some("1.2.3"), Some("ISO")).as_deref(), Some("urn:oid:1.2.3"));
        assert_eq!(
            hd_system(Some("GOOD HOSP"), None, None).as_deref(),
            Some("urn:continuum:hl7v2:authority:GOOD%20HOSP")
        );
        assert_eq!(decimal("182").unwrap().to_string(), "182");
        assert_eq!(decimal("+0.50").unwrap().to_string(), "0.50");
        assert!(decimal("1.").is_none() && decimal("<5").is_none() && decimal("").is_none());
        let key = Key { system: "urn:a".into(), value: "1|2 3".into() };
        assert_eq!(key.criteria(), "identifier=urn:a|1%5C%7C2%203");
    }
}
