//! Field-by-field comparison of two [`Demographics`]: each field's agreement [`Level`].

use crate::demographics::{Date, Demographics, IdentifierKind};
use crate::{phonetic, tables};
use serde::{Deserialize, Serialize};
use strsim::{damerau_levenshtein, jaro_winkler};

/// The fields compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Field {
    /// The first given name (and the middle names).
    Given,
    /// The family name (its parts, other names such as maiden names).
    Family,
    /// The birth date.
    BirthDate,
    /// Administrative sex.
    Sex,
    /// The postal address.
    Address,
    /// A phone number.
    Phone,
    /// An e-mail address.
    Email,
    /// The Social Security number.
    Ssn,
    /// The driver's licence number.
    DriversLicence,
    /// A medical record number of the same assigning organization (system).
    MedicalRecord,
    /// An insurance member id of the same system.
    Member,
}

impl Field {
    /// Every field, in the order they are reported.
    pub const ALL: [Field; 11] = [
        Field::Given,
        Field::Family,
        Field::BirthDate,
        Field::Sex,
        Field::Address,
        Field::Phone,
        Field::Email,
        Field::Ssn,
        Field::DriversLicence,
        Field::MedicalRecord,
        Field::Member,
    ];

    /// Its name in configuration and reports (`birth-date`).
    pub fn name(self) -> &'static str {
        match self {
            Field::Given => "given",
            Field::Family => "family",
            Field::BirthDate => "birth-date",
            Field::Sex => "sex",
            Field::Address => "address",
            Field::Phone => "phone",
            Field::Email => "email",
            Field::Ssn => "ssn",
            Field::DriversLicence => "drivers-licence",
            Field::MedicalRecord => "medical-record",
            Field::Member => "member",
        }
    }
}

/// How far two values of a field agree. What each level means depends on the field:
///
/// | field | exact | alias | similar | partial |
/// |---|---|---|---|---|
/// | given | same first name | a nickname of it, or one's first name is the other's middle | one edit apart, Jaro–Winkler ≥ 0.88 or same Double Metaphone | an initial that fits |
/// | family | same (parts joined) | one shares a part or another name (compound, married, maiden) | one edit apart, Jaro–Winkler ≥ 0.88 or same Double Metaphone | — |
/// | birth date | same day | day and month swapped | one digit differs, two adjacent digits swapped, or one part off by one | same year and month |
/// | address | same street and ZIP or city | — | street Jaro–Winkler ≥ 0.9, same ZIP | same ZIP or city and state |
/// | SSN | same | — | one digit differs | — |
///
/// The other fields are exact or differ. `Missing`: either side has no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// The same value.
    Exact,
    /// Another known form of the same value.
    Alias,
    /// Nearly the same (a typing error, a spelling that sounds alike).
    Similar,
    /// Partly the same.
    Partial,
    /// Different values.
    Differ,
    /// A value is missing on one side (no evidence either way).
    Missing,
}

impl Level {
    /// Its name in configuration and reports.
    pub fn name(self) -> &'static str {
        match self {
            Level::Exact => "exact",
            Level::Alias => "alias",
            Level::Similar => "similar",
            Level::Partial => "partial",
            Level::Differ => "differ",
            Level::Missing => "missing",
        }
    }

    /// Whether the values agree at least in part.
    pub fn agrees(self) -> bool {
        matches!(self, Level::Exact | Level::Alias | Level::Similar | Level::Partial)
    }
}

/// The similarity above which two names count as the same name mistyped.
const NAME_SIMILARITY: f64 = 0.88;

/// Compares one field of two records.
pub fn compare(field: Field, a: &Demographics, b: &Demographics) -> Level {
    match field {
        Field::Given => given(a, b),
        Field::Family => family(a, b),
        Field::BirthDate => match (a.birth, b.birth) {
            (Some(x), Some(y)) => birth_date(x, y),
            _ => Level::Missing,
        },
        Field::Sex => match (a.sex, b.sex) {
            (Some(x), Some(y)) if x == y => Level::Exact,
            (Some(_), Some(_)) => Level::Differ,
            _ => Level::Missing,
        },
        Field::Address => address(a, b),
        Field::Phone => any_equal(&a.phones, &b.phones),
        Field::Email => any_equal(&a.emails, &b.emails),
        Field::Ssn => ssn(a, b),
        Field::DriversLicence => identifiers(a, b, IdentifierKind::DriversLicence, false),
        Field::MedicalRecord => identifiers(a, b, IdentifierKind::MedicalRecord, true),
        Field::Member => identifiers(a, b, IdentifierKind::Member, true),
    }
}

fn first_given(d: &Demographics) -> Option<&str> {
    d.first_given()
}

fn given(a: &Demographics, b: &Demographics) -> Level {
    let (Some(x), Some(y)) = (first_given(a), first_given(b)) else {
        return Level::Missing;
    };
    if x == y {
        return Level::Exact;
    }
    if tables::are_nicknames(x, y) {
        return Level::Alias;
    }
    let (a_others, b_others) = (other_given(a), other_given(b));
    if b_others.contains(&x) || a_others.contains(&y) {
        return Level::Alias;
    }
    // A first name run into the middle name ("maryann" against "mary ann").
    if let (Some(ga), Some(gb)) = (a.given.first(), b.given.first())
        && (ga.concat() == y || gb.concat() == x || ga.concat() == gb.concat())
    {
        return Level::Alias;
    }
    if x.len() > 1 && y.len() > 1 && mistyped(x, y) {
        return Level::Similar;
    }
    if (x.len() == 1 || y.len() == 1) && x.chars().next() == y.chars().next() {
        return Level::Partial;
    }
    Level::Differ
}

/// The given names after the first (middle names, and the given names of other names).
fn other_given(d: &Demographics) -> Vec<&str> {
    d.given.iter().flatten().skip(1).map(String::as_str).collect()
}

fn family(a: &Demographics, b: &Demographics) -> Level {
    let (Some(x), Some(y)) = (a.family_joined(), b.family_joined()) else {
        return Level::Missing;
    };
    if x == y {
        return Level::Exact;
    }
    let a_parts: Vec<&str> = a.family_parts().collect();
    let b_parts: Vec<&str> = b.family_parts().collect();
    let all_a: Vec<String> = a.family.iter().map(|p| p.concat()).collect();
    let all_b: Vec<String> = b.family.iter().map(|p| p.concat()).collect();
    if a_parts.iter().any(|p| p.len() > 1 && b_parts.contains(p)) || all_a.iter().any(|f| all_b.contains(f)) {
        return Level::Alias;
    }
    if mistyped(&x, &y) || a_parts.iter().any(|p| p.len() > 3 && b_parts.iter().any(|q| q.len() > 3 && mistyped(p, q)))
    {
        return Level::Similar;
    }
    Level::Differ
}

/// Whether two different names are one name mistyped or spelled as it sounds: one edit apart
/// (a letter inserted, dropped, changed, or two swapped; two edits in a long name), close by
/// Jaro–Winkler, or the same Double Metaphone code.
fn mistyped(x: &str, y: &str) -> bool {
    let edits = damerau_levenshtein(x, y);
    let shorter = x.len().min(y.len());
    (shorter >= 3 && edits <= 1)
        || (shorter >= 7 && edits <= 2)
        || jaro_winkler(x, y) >= NAME_SIMILARITY
        || phonetic::sound_alike(x, y)
}

fn birth_date(x: Date, y: Date) -> Level {
    if x == y {
        return Level::Exact;
    }
    if x.transposed() == Some(y) {
        return Level::Alias;
    }
    let (dx, dy) = (x.digits(), y.digits());
    let differing: Vec<usize> =
        dx.bytes().zip(dy.bytes()).enumerate().filter(|(_, (p, q))| p != q).map(|(i, _)| i).collect();
    let swapped = differing.len() == 2
        && differing[1] == differing[0] + 1
        && dx.as_bytes()[differing[0]] == dy.as_bytes()[differing[1]]
        && dx.as_bytes()[differing[1]] == dy.as_bytes()[differing[0]];
    // One part off by one (a day, a month or a year keyed one higher or lower).
    let off_by_one = [
        (x.year - y.year).abs(),
        (i32::from(x.month) - i32::from(y.month)).abs(),
        (i32::from(x.day) - i32::from(y.day)).abs(),
    ];
    let one_part_off = off_by_one.iter().filter(|d| **d != 0).count() == 1 && off_by_one.contains(&1);
    if differing.len() == 1 || swapped || one_part_off {
        return Level::Similar;
    }
    if x.year == y.year && x.month == y.month {
        return Level::Partial;
    }
    Level::Differ
}

fn address(a: &Demographics, b: &Demographics) -> Level {
    if a.addresses.is_empty() || b.addresses.is_empty() {
        return Level::Missing;
    }
    let mut best = Level::Differ;
    for x in &a.addresses {
        for y in &b.addresses {
            let same_zip = !x.zip5.is_empty() && x.zip5 == y.zip5;
            let same_city = !x.city.is_empty() && x.city == y.city && x.state == y.state;
            let level = if !x.street.is_empty() && x.street == y.street && (same_zip || same_city) {
                Level::Exact
            } else if same_zip
                && !x.street.is_empty()
                && !y.street.is_empty()
                && jaro_winkler(&x.street, &y.street) >= 0.9
            {
                Level::Similar
            } else if same_zip || same_city {
                Level::Partial
            } else {
                Level::Differ
            };
            best = best.min(level);
        }
    }
    best
}

fn any_equal(a: &[String], b: &[String]) -> Level {
    if a.is_empty() || b.is_empty() {
        Level::Missing
    } else if a.iter().any(|x| b.contains(x)) {
        Level::Exact
    } else {
        Level::Differ
    }
}

fn ssn(a: &Demographics, b: &Demographics) -> Level {
    let xs: Vec<&str> = a.identifiers_of(IdentifierKind::SocialSecurity).map(|i| i.normalized.as_str()).collect();
    let ys: Vec<&str> = b.identifiers_of(IdentifierKind::SocialSecurity).map(|i| i.normalized.as_str()).collect();
    if xs.is_empty() || ys.is_empty() {
        return Level::Missing;
    }
    let mut best = Level::Differ;
    for x in &xs {
        for y in &ys {
            if x == y {
                return Level::Exact;
            }
            if x.len() == y.len() && x.bytes().zip(y.bytes()).filter(|(p, q)| p != q).count() == 1 {
                best = Level::Similar;
            }
        }
    }
    best
}

/// Identifiers of a kind: compared within the same system when `same_system` (a medical record
/// number means nothing under another organization's system), else by value alone.
fn identifiers(a: &Demographics, b: &Demographics, kind: IdentifierKind, same_system: bool) -> Level {
    let mut level = Level::Missing;
    for x in a.identifiers_of(kind) {
        for y in b.identifiers_of(kind) {
            if same_system && x.system != y.system {
                continue;
            }
            if x.normalized == y.normalized {
                return Level::Exact;
            }
            level = Level::Differ;
        }
    }
    level
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn person(given: &[&str], family: &str, birth: &str) -> Demographics {
        Demographics::of_patient(
            &json!({"resourceType": "Patient", "name": [{"given": given, "family": family}], "birthDate": birth}),
            None,
        )
    }

    #[test]
    fn given_names_agree_by_nickname_middle_name_and_spelling() {
        let jon = person(&["Jon"], "Smith", "1961-03-04");
        assert_eq!(compare(Field::Given, &jon, &person(&["Jon"], "Smith", "1961-03-04")), Level::Exact);
        assert_eq!(compare(Field::Given, &jon, &person(&["Jonathan"], "Smith", "1961-03-04")), Level::Alias);
        assert_eq!(compare(Field::Given, &jon, &person(&["Jonn"], "Smith", "1961-03-04")), Level::Similar);
        assert_eq!(compare(Field::Given, &jon, &person(&["Paul", "Jon"], "Smith", "1961-03-04")), Level::Alias);
        assert_eq!(compare(Field::Given, &jon, &person(&["J"], "Smith", "1961-03-04")), Level::Partial);
        assert_eq!(compare(Field::Given, &jon, &person(&["Mary"], "Smith", "1961-03-04")), Level::Differ);
    }

    #[test]
    fn family_names_agree_by_part_and_spelling() {
        let a = person(&["Ann"], "Smith-Jones", "1961-03-04");
        assert_eq!(compare(Field::Family, &a, &person(&["Ann"], "Smith Jones", "1961-03-04")), Level::Exact);
        assert_eq!(compare(Field::Family, &a, &person(&["Ann"], "Jones", "1961-03-04")), Level::Alias);
        assert_eq!(compare(Field::Family, &a, &person(&["Ann"], "Smithjones", "1961-03-04")), Level::Exact);
        let b = person(&["Ann"], "Gutmann", "1961-03-04");
        assert_eq!(compare(Field::Family, &b, &person(&["Ann"], "Gutman", "1961-03-04")), Level::Similar);
        assert_eq!(compare(Field::Family, &b, &person(&["Ann"], "Brown", "1961-03-04")), Level::Differ);
    }

    #[test]
    fn birth_dates_tolerate_transposition_and_one_digit() {
        let d = |s| Date::parse(s).unwrap();
        assert_eq!(birth_date(d("1961-03-04"), d("1961-03-04")), Level::Exact);
        assert_eq!(birth_date(d("1961-03-04"), d("1961-04-03")), Level::Alias);
        assert_eq!(birth_date(d("1961-03-04"), d("1961-03-07")), Level::Similar);
        assert_eq!(birth_date(d("1961-03-04"), d("1916-03-04")), Level::Similar);
        assert_eq!(birth_date(d("1961-03-04"), d("1961-03-27")), Level::Partial);
        assert_eq!(birth_date(d("1961-03-04"), d("1972-08-19")), Level::Differ);
    }
}
