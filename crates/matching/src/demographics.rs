//! A Patient's demographics, normalised for comparison: what [`crate::compare`] reads.

use crate::text::{digits, fold, name_parts};
use crate::{phonetic, tables};
use serde_json::Value;

/// A calendar date as recorded (no time zone: a birth date).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// The year.
    pub year: i32,
    /// The month, 1–12.
    pub month: u8,
    /// The day, 1–31.
    pub day: u8,
}

impl Date {
    /// Reads `YYYY-MM-DD` (the R4 `date` type at day precision); a partial or malformed date is
    /// `None`.
    pub fn parse(text: &str) -> Option<Date> {
        let mut parts = text.get(..10)?.split('-');
        let year: i32 = parts.next()?.parse().ok()?;
        let month: u8 = parts.next()?.parse().ok()?;
        let day: u8 = parts.next()?.parse().ok()?;
        Date::new(year, month, day)
    }

    /// A valid Gregorian date, else `None`.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        let month_of_year = time::Month::try_from(month).ok()?;
        time::Date::from_calendar_date(year, month_of_year, day).ok().map(|_| Date { year, month, day })
    }

    /// The date with day and month swapped, when that is another valid date.
    pub fn transposed(self) -> Option<Date> {
        (self.day != self.month).then(|| Date::new(self.year, self.day, self.month)).flatten()
    }

    /// `YYYYMMDD`, for digit-by-digit comparison.
    pub fn digits(self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// `YYYY-MM-DD`.
    pub fn iso(self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Administrative sex (`Patient.gender`); `other` and `unknown` compare as missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    /// `male`.
    Male,
    /// `female`.
    Female,
}

/// What an identifier identifies, read from its `type` (HL7 v2 table 0203) or its system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentifierKind {
    /// A medical record number, meaningful only with its assigning organization's system.
    MedicalRecord,
    /// A US Social Security number.
    SocialSecurity,
    /// A driver's licence number.
    DriversLicence,
    /// An insurance member or subscriber id.
    Member,
    /// A passport number.
    Passport,
    /// The person identifier this installation's index gives every linked set of records.
    Enterprise,
    /// Any other identifier.
    Other,
}

/// The US SSN system (FHIR's naming system).
pub const SSN_SYSTEM: &str = "http://hl7.org/fhir/sid/us-ssn";

/// One identifier, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier {
    /// What it identifies.
    pub kind: IdentifierKind,
    /// Its system as written (empty when none).
    pub system: String,
    /// Its value as written.
    pub value: String,
    /// Its value compared: upper case without spaces and hyphens; digits only for an SSN.
    pub normalized: String,
}

/// A postal address, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The street lines: folded, USPS suffix, unit and direction abbreviations ("12 north elm
    /// street apartment 4" → "12 n elm st apt 4").
    pub street: String,
    /// The city, folded.
    pub city: String,
    /// The state, folded.
    pub state: String,
    /// The first five digits of the postal code.
    pub zip5: String,
}

/// The demographics of one Patient resource, normalised.
#[derive(Debug, Clone, Default)]
pub struct Demographics {
    /// Given names of each `name`, first given first: folded parts.
    pub given: Vec<Vec<String>>,
    /// Family names (of every `name`, official first), each as its folded parts.
    pub family: Vec<Vec<String>>,
    /// `birthDate` at day precision.
    pub birth: Option<Date>,
    /// `gender`.
    pub sex: Option<Sex>,
    /// Home and other addresses.
    pub addresses: Vec<Address>,
    /// Phone numbers: the last ten digits.
    pub phones: Vec<String>,
    /// E-mail addresses, lower case.
    pub emails: Vec<String>,
    /// Identifiers.
    pub identifiers: Vec<Identifier>,
}

impl Demographics {
    /// Reads a Patient resource (any other JSON gives empty demographics).
    pub fn of_patient(patient: &Value, enterprise_system: Option<&str>) -> Demographics {
        let mut d = Demographics::default();
        let names = patient.get("name").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        // Official and usual names first; old and maiden names still count.
        let mut ordered: Vec<&Value> = names.iter().collect();
        ordered.sort_by_key(|n| match n.get("use").and_then(Value::as_str) {
            Some("official") | None => 0,
            Some("usual") => 1,
            _ => 2,
        });
        for name in ordered {
            let given: Vec<String> = name
                .get("given")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .flat_map(name_parts)
                .collect();
            if !given.is_empty() {
                d.given.push(given);
            }
            if let Some(family) = name.get("family").and_then(Value::as_str) {
                let parts = name_parts(family);
                if !parts.is_empty() {
                    d.family.push(parts);
                }
            }
        }
        d.birth = patient.get("birthDate").and_then(Value::as_str).and_then(Date::parse);
        d.sex = match patient.get("gender").and_then(Value::as_str) {
            Some("male") => Some(Sex::Male),
            Some("female") => Some(Sex::Female),
            _ => None,
        };
        for address in patient.get("address").and_then(Value::as_array).into_iter().flatten() {
            if let Some(address) = read_address(address) {
                d.addresses.push(address);
            }
        }
        for telecom in patient.get("telecom").and_then(Value::as_array).into_iter().flatten() {
            let Some(value) = telecom.get("value").and_then(Value::as_str) else { continue };
            match telecom.get("system").and_then(Value::as_str) {
                Some("phone") | Some("sms") | None => {
                    let digits = digits(value);
                    if digits.len() >= 7 {
                        d.phones.push(digits[digits.len().saturating_sub(10)..].to_string());
                    }
                }
                Some("email") => {
                    let email = value.trim().to_ascii_lowercase();
                    if email.contains('@') {
                        d.emails.push(email);
                    }
                }
                _ => {}
            }
        }
        for identifier in patient.get("identifier").and_then(Value::as_array).into_iter().flatten() {
            if let Some(identifier) = read_identifier(identifier, enterprise_system) {
                d.identifiers.push(identifier);
            }
        }
        d
    }

    /// The first given name of the first name that has one.
    pub fn first_given(&self) -> Option<&str> {
        self.given.first().and_then(|g| g.first()).map(String::as_str)
    }

    /// The first name's family name, its parts joined ("smith jones" → "smithjones").
    pub fn family_joined(&self) -> Option<String> {
        self.family.first().map(|parts| parts.concat())
    }

    /// Every family name part (of every name).
    pub fn family_parts(&self) -> impl Iterator<Item = &str> {
        self.family.iter().flatten().map(String::as_str)
    }

    /// The identifiers of a kind.
    pub fn identifiers_of(&self, kind: IdentifierKind) -> impl Iterator<Item = &Identifier> {
        self.identifiers.iter().filter(move |i| i.kind == kind)
    }

    /// The Double Metaphone codes of the first family name (joined), for blocking.
    pub fn family_codes(&self) -> Vec<String> {
        self.family_joined().map(|f| phonetic::codes(&f)).unwrap_or_default()
    }
}

fn read_address(address: &Value) -> Option<Address> {
    let text = |field: &str| address.get(field).and_then(Value::as_str).map(fold).unwrap_or_default();
    let lines: Vec<String> = address
        .get("line")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(fold)
        .collect();
    let street = lines
        .join(" ")
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| tables::standard_direction(tables::standard_street_word(w)).to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let zip = address.get("postalCode").and_then(Value::as_str).map(digits).unwrap_or_default();
    let address = Address { street, city: text("city"), state: text("state"), zip5: zip.chars().take(5).collect() };
    (!address.street.is_empty() || !address.zip5.is_empty() || !address.city.is_empty()).then_some(address)
}

fn type_codes(identifier: &Value) -> impl Iterator<Item = &str> {
    identifier
        .pointer("/type/coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("code").and_then(Value::as_str))
}

fn read_identifier(identifier: &Value, enterprise_system: Option<&str>) -> Option<Identifier> {
    let value = identifier.get("value").and_then(Value::as_str)?.trim();
    if value.is_empty() {
        return None;
    }
    let system = identifier.get("system").and_then(Value::as_str).unwrap_or("").to_string();
    let kind = if enterprise_system.is_some_and(|s| s == system) {
        IdentifierKind::Enterprise
    } else if system == SSN_SYSTEM {
        IdentifierKind::SocialSecurity
    } else {
        type_codes(identifier)
            .find_map(|code| match code {
                "MR" | "MRT" => Some(IdentifierKind::MedicalRecord),
                "SS" | "SB" => Some(IdentifierKind::SocialSecurity),
                "DL" => Some(IdentifierKind::DriversLicence),
                "MB" | "SN" | "MA" | "MC" => Some(IdentifierKind::Member),
                "PPN" => Some(IdentifierKind::Passport),
                _ => None,
            })
            .unwrap_or(IdentifierKind::Other)
    };
    let normalized = if kind == IdentifierKind::SocialSecurity {
        digits(value)
    } else {
        value.chars().filter(|c| !matches!(c, ' ' | '-')).collect::<String>().to_ascii_uppercase()
    };
    Some(Identifier { kind, system, value: value.to_string(), normalized })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patient_is_normalised() {
        let patient = json!({
            "resourceType": "Patient",
            "name": [
                {"use": "maiden", "family": "Old"},
                {"use": "official", "family": "Smith-Jones", "given": ["Mary-Ann", "Zoë"]}
            ],
            "birthDate": "1961-03-04",
            "gender": "female",
            "telecom": [{"system": "phone", "value": "+1 (555) 123-4567"}, {"system": "email", "value": " Mary@Example.ORG"}],
            "address": [{"line": ["12 North Elm Street", "Apartment 4"], "city": "Boston", "state": "MA", "postalCode": "02134-1234"}],
            "identifier": [
                {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-12-3456"},
                {"type": {"coding": [{"code": "MR"}]}, "system": "urn:mrn", "value": "ab 12"},
                {"system": "urn:person", "value": "p1"}
            ]
        });
        let d = Demographics::of_patient(&patient, Some("urn:person"));
        assert_eq!(d.family, [vec!["smith".to_string(), "jones".into()], vec!["old".into()]]);
        assert_eq!(d.first_given(), Some("mary"));
        assert_eq!(d.given[0], ["mary", "ann", "zoe"]);
        assert_eq!(d.birth, Date::new(1961, 3, 4));
        assert_eq!(d.sex, Some(Sex::Female));
        assert_eq!(d.phones, ["5551234567"]);
        assert_eq!(d.emails, ["mary@example.org"]);
        assert_eq!(d.addresses[0].street, "12 n elm st apt 4");
        assert_eq!(d.addresses[0].zip5, "02134");
        let kinds: Vec<_> = d.identifiers.iter().map(|i| (i.kind, i.normalized.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (IdentifierKind::SocialSecurity, "999123456"),
                (IdentifierKind::MedicalRecord, "AB12"),
                (IdentifierKind::Enterprise, "P1")
            ]
        );
    }

    #[test]
    fn dates_are_checked_and_transposed() {
        assert_eq!(Date::parse("1961-02-30"), None);
        assert_eq!(Date::parse("1961"), None);
        let d = Date::parse("1961-03-04").unwrap();
        assert_eq!(d.transposed(), Date::new(1961, 4, 3));
        assert_eq!(Date::parse("1961-03-13").unwrap().transposed(), None);
        assert_eq!(Date::parse("1961-03-03").unwrap().transposed(), None);
    }
}
