//! Blocking: the few searches whose union holds every record worth comparing, so that a match
//! is a handful of index lookups, never a scan. Each block is a FHIR search on Patient, run on
//! the store's indexes (`phonetic` is indexed with the codes of [`crate::phonetic`]).

use crate::demographics::{Date, Demographics, IdentifierKind};

/// One block: the search parameters of a `Patient?` search, and why it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// What it blocks on (for reports and tests).
    pub name: &'static str,
    /// The search parameters (name, value), AND-ed.
    pub params: Vec<(String, String)>,
}

fn block(name: &'static str, params: &[(&str, String)]) -> Block {
    Block { name, params: params.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect() }
}

/// Escapes a value for a search parameter (`,`, `|`, `$` and `\`).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, ',' | '|' | '$' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn year_range(date: Date) -> [(&'static str, String); 2] {
    [("birthdate", format!("ge{:04}-01-01", date.year)), ("birthdate", format!("le{:04}-12-31", date.year))]
}

/// The phone as people write it: its digits in the common US layouts, OR-ed.
fn phone_forms(digits: &str) -> String {
    let mut forms = vec![digits.to_string()];
    if digits.len() == 10 {
        let (a, b, c) = (&digits[..3], &digits[3..6], &digits[6..]);
        forms.push(format!("{a}-{b}-{c}"));
        forms.push(format!("({a}) {b}-{c}"));
        forms.push(format!("{a}.{b}.{c}"));
        forms.push(format!("+1{digits}"));
        forms.push(format!("1-{a}-{b}-{c}"));
    }
    forms.iter().map(|f| escape(f)).collect::<Vec<_>>().join(",")
}

/// The blocks of a record: its decisive identifiers, its family and first given names' sound
/// with the birth year, the birth date (and its day/month transposition), the phone, the
/// e-mail, and the ZIP code with the birth year.
pub fn blocks(d: &Demographics) -> Vec<Block> {
    let mut out = Vec::new();
    for identifier in &d.identifiers {
        if matches!(identifier.kind, IdentifierKind::Other) {
            continue;
        }
        // One search per written form: SQLite answers a single `system|value` from the token
        // index, but scans for an OR of them.
        let mut values = vec![format!("{}|{}", escape(&identifier.system), escape(&identifier.value))];
        if identifier.kind == IdentifierKind::SocialSecurity && identifier.normalized.len() == 9 {
            let n = &identifier.normalized;
            for form in [n.clone(), format!("{}-{}-{}", &n[..3], &n[3..5], &n[5..])] {
                let value = format!("{}|{}", escape(&identifier.system), form);
                if !values.contains(&value) {
                    values.push(value);
                }
            }
        }
        for value in values {
            out.push(block("identifier", &[("identifier", value)]));
        }
    }
    if let Some(birth) = d.birth {
        let [from, to] = year_range(birth);
        if let Some(family) = d.family_joined() {
            out.push(block("family sound and birth year", &[("phonetic", family), from.clone(), to.clone()]));
        }
        if let Some(given) = d.first_given().filter(|g| g.len() > 1) {
            out.push(block("given sound and birth year", &[("phonetic", given.to_string()), from.clone(), to.clone()]));
        }
        out.push(block("birth date", &[("birthdate", birth.iso())]));
        if let Some(t) = birth.transposed() {
            out.push(block("birth date transposed", &[("birthdate", t.iso())]));
        }
        if let Some(zip) = d.addresses.iter().map(|a| a.zip5.as_str()).find(|z| z.len() == 5) {
            out.push(block("ZIP and birth year", &[("address-postalcode", zip.to_string()), from, to]));
        }
    } else if let Some(family) = d.family_joined() {
        out.push(block("family sound", &[("phonetic", family)]));
    }
    for phone in &d.phones {
        out.push(block("phone", &[("phone", phone_forms(phone))]));
    }
    for email in &d.emails {
        out.push(block("email", &[("email", escape(email))]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blocks_use_indexes_only() {
        let d = Demographics::of_patient(
            &json!({
                "resourceType": "Patient", "name": [{"family": "Smith", "given": ["Jon"]}], "birthDate": "1961-03-04",
                "telecom": [{"system": "phone", "value": "555-123-4567"}],
                "address": [{"postalCode": "02134"}],
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-12-3456"}, {"system": "urn:x", "value": "a,b"}]
            }),
            None,
        );
        let blocks = blocks(&d);
        let names: Vec<_> = blocks.iter().map(|b| b.name).collect();
        assert_eq!(
            names,
            [
                "identifier",
                "identifier",
                "family sound and birth year",
                "given sound and birth year",
                "birth date",
                "birth date transposed",
                "ZIP and birth year",
                "phone"
            ]
        );
        assert_eq!(blocks[0].params[0].1, "http://hl7.org/fhir/sid/us-ssn|999-12-3456");
        assert_eq!(blocks[1].params[0].1, "http://hl7.org/fhir/sid/us-ssn|999123456");
        assert_eq!(blocks[4].params[0].1, "1961-03-04");
        assert_eq!(blocks[5].params[0].1, "1961-04-03");
        assert!(blocks[7].params[0].1.contains("(555) 123-4567"));
    }
}
