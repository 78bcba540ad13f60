//! The Fellegi–Sunter model: for each field and agreement level, `m` (how often a true match
//! shows that level) and `u` (how often two different people do, among the candidates blocking
//! brings together); a level's weight is `log2(m / u)`, a comparison's weight the sum over the
//! fields. Deterministic rules come first, frequency-adjusted name weights replace `u` for exact
//! names, and thresholds on the weight give the grade.

use crate::compare::{Field, Level, compare};
use crate::demographics::{Demographics, IdentifierKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How sure a match is (the FHIR `match-grade` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grade {
    /// The same person: linked without review.
    Certain,
    /// Probably the same person: a person should review it.
    Probable,
    /// Possibly the same person: shown, never acted on.
    Possible,
    /// Not the same person.
    CertainlyNot,
}

impl Grade {
    /// The `match-grade` code.
    pub fn code(self) -> &'static str {
        match self {
            Grade::Certain => "certain",
            Grade::Probable => "probable",
            Grade::Possible => "possible",
            Grade::CertainlyNot => "certainly-not",
        }
    }
}

/// `m` and `u` of one agreement level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Probabilities {
    /// P(level | same person).
    pub m: f64,
    /// P(level | different people, among candidates).
    pub u: f64,
}

impl Probabilities {
    /// `log2(m / u)`.
    pub fn weight(self) -> f64 {
        (self.m.max(1e-9) / self.u.max(1e-9)).log2()
    }
}

/// The weights' thresholds: a comparison of weight at least `certain` is certain, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// At least this weight: certain.
    pub certain: f64,
    /// At least this weight: probable.
    pub probable: f64,
    /// At least this weight: possible; below it, certainly not.
    pub possible: f64,
}

/// The model: probabilities per field and level, the thresholds, and how name frequencies
/// adjust the weights. Written as JSON (`continuum serve --match-model FILE`); every field left
/// out keeps its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Model {
    /// Per field, per level.
    pub fields: BTreeMap<Field, BTreeMap<Level, Probabilities>>,
    /// The grades' thresholds.
    pub thresholds: Thresholds,
    /// The smallest `u` a frequency may give an exact name (a name no one else has is still
    /// not proof).
    pub min_name_frequency: f64,
}

/// Frequencies of names among the indexed records (the share of records with that value), to
/// weigh an agreement on a rare name above one on a common name.
pub trait NameFrequencies {
    /// The share of records whose first given name is `name` (folded), if known.
    fn given(&self, name: &str) -> Option<f64>;
    /// The share of records whose family name is `name` (folded, parts joined), if known.
    fn family(&self, name: &str) -> Option<f64>;
}

/// No frequencies: the configured `u` of every level.
pub struct NoFrequencies;

impl NameFrequencies for NoFrequencies {
    fn given(&self, _: &str) -> Option<f64> {
        None
    }
    fn family(&self, _: &str) -> Option<f64> {
        None
    }
}

fn p(m: f64, u: f64) -> Probabilities {
    Probabilities { m, u }
}

impl Default for Model {
    /// The defaults, set from the generated matching set (see the README's "Patient identity"):
    /// `u` is among candidate pairs (blocking already agrees on something), which is why, for
    /// instance, an exact address is worth less than it would be among random pairs — household
    /// members share it.
    fn default() -> Model {
        use Level::*;
        let levels = |list: &[(Level, Probabilities)]| list.iter().copied().collect::<BTreeMap<_, _>>();
        let mut fields = BTreeMap::new();
        fields.insert(
            Field::Given,
            levels(&[
                (Exact, p(0.86, 0.02)),
                (Alias, p(0.06, 0.002)),
                (Similar, p(0.05, 0.005)),
                (Partial, p(0.005, 0.02)),
                (Differ, p(0.01, 0.95)),
            ]),
        );
        fields.insert(
            Field::Family,
            levels(&[
                (Exact, p(0.84, 0.02)),
                (Alias, p(0.06, 0.002)),
                (Similar, p(0.08, 0.004)),
                (Differ, p(0.05, 0.97)),
            ]),
        );
        fields.insert(
            Field::BirthDate,
            levels(&[
                (Exact, p(0.93, 0.01)),
                (Alias, p(0.02, 0.0005)),
                (Similar, p(0.03, 0.005)),
                (Partial, p(0.005, 0.02)),
                (Differ, p(0.015, 0.96)),
            ]),
        );
        fields.insert(Field::Sex, levels(&[(Exact, p(0.99, 0.5)), (Differ, p(0.01, 0.5))]));
        fields.insert(
            Field::Address,
            levels(&[
                (Exact, p(0.6, 0.03)),
                (Similar, p(0.05, 0.005)),
                (Partial, p(0.1, 0.1)),
                (Differ, p(0.25, 0.87)),
            ]),
        );
        fields.insert(Field::Phone, levels(&[(Exact, p(0.6, 0.03)), (Differ, p(0.4, 0.97))]));
        fields.insert(Field::Email, levels(&[(Exact, p(0.7, 0.001)), (Differ, p(0.3, 0.999))]));
        fields.insert(
            Field::Ssn,
            levels(&[(Exact, p(0.985, 0.0001)), (Similar, p(0.01, 0.001)), (Differ, p(0.005, 0.9989))]),
        );
        fields.insert(Field::DriversLicence, levels(&[(Exact, p(0.95, 0.0001)), (Differ, p(0.05, 0.9999))]));
        // Two numbers of one organization for one person are the duplicates an index exists to find.
        fields.insert(Field::MedicalRecord, levels(&[(Exact, p(0.7, 0.0001)), (Differ, p(0.3, 0.9999))]));
        fields.insert(Field::Member, levels(&[(Exact, p(0.9, 0.0001)), (Differ, p(0.1, 0.9999))]));
        Model {
            fields,
            thresholds: Thresholds { certain: 17.0, probable: 12.0, possible: 6.0 },
            min_name_frequency: 0.0005,
        }
    }
}

/// One field's part in a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FieldScore {
    /// The field.
    pub field: Field,
    /// How far it agreed.
    pub level: Level,
    /// Its weight (0 when missing).
    pub weight: f64,
}

/// The outcome of comparing two records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Each field compared.
    pub fields: Vec<FieldScore>,
    /// The summed weight.
    pub weight: f64,
    /// The weight as a score between 0 and 1 (a logistic curve in base 2 centred on the
    /// probable threshold: 0.5 there, 0.99 about seven bits above); at least 0.99 for a record
    /// certain by rule.
    pub score: f64,
    /// The grade.
    pub grade: Grade,
    /// The deterministic rule that decided, if one did.
    pub rule: Option<&'static str>,
}

/// Identifier kinds that, shared with the same birth date, make two records certainly one
/// person's (the issuing system must agree for record numbers and member ids).
const DECISIVE: [IdentifierKind; 6] = [
    IdentifierKind::Enterprise,
    IdentifierKind::MedicalRecord,
    IdentifierKind::SocialSecurity,
    IdentifierKind::DriversLicence,
    IdentifierKind::Member,
    IdentifierKind::Passport,
];

/// The fields beyond name, birth date and sex that can corroborate a match.
const CORROBORATING: [Field; 7] = [
    Field::Address,
    Field::Phone,
    Field::Email,
    Field::Ssn,
    Field::DriversLicence,
    Field::MedicalRecord,
    Field::Member,
];

fn shared_identifier(a: &Demographics, b: &Demographics) -> bool {
    a.identifiers.iter().filter(|i| DECISIVE.contains(&i.kind)).any(|x| {
        b.identifiers.iter().any(|y| {
            x.kind == y.kind
                && x.normalized == y.normalized
                && (x.system == y.system
                    || matches!(x.kind, IdentifierKind::SocialSecurity | IdentifierKind::DriversLicence))
        })
    })
}

impl Model {
    /// Reads a model from JSON; fields left out keep their defaults.
    pub fn from_json(text: &str) -> Result<Model, serde_json::Error> {
        let partial: Model = serde_json::from_str(text)?;
        let mut model = Model::default();
        for (field, levels) in partial.fields {
            model.fields.entry(field).or_default().extend(levels);
        }
        model.thresholds = partial.thresholds;
        model.min_name_frequency = partial.min_name_frequency;
        Ok(model)
    }

    /// The probabilities of a field's level, if the model has them (a level without them
    /// weighs nothing).
    pub fn probabilities(&self, field: Field, level: Level) -> Option<Probabilities> {
        self.fields.get(&field)?.get(&level).copied()
    }

    /// Compares two records.
    pub fn compare(&self, a: &Demographics, b: &Demographics, frequencies: &dyn NameFrequencies) -> Comparison {
        let mut fields = Vec::with_capacity(Field::ALL.len());
        let mut weight = 0.0;
        for field in Field::ALL {
            let level = compare(field, a, b);
            let w = match (level, self.probabilities(field, level)) {
                (Level::Missing, _) | (_, None) => 0.0,
                (Level::Exact, Some(mut probabilities)) if matches!(field, Field::Given | Field::Family) => {
                    let frequency = match field {
                        Field::Given => a.first_given().and_then(|n| frequencies.given(n)),
                        _ => a.family_joined().and_then(|n| frequencies.family(&n)),
                    };
                    if let Some(f) = frequency {
                        probabilities.u = f.max(self.min_name_frequency);
                    }
                    probabilities.weight()
                }
                (_, Some(probabilities)) => probabilities.weight(),
            };
            weight += w;
            fields.push(FieldScore { field, level, weight: w });
        }
        let level_of = |f: Field| fields.iter().find(|s| s.field == f).map(|s| s.level).unwrap_or(Level::Missing);
        let birth = level_of(Field::BirthDate);
        let mut score = 1.0 / (1.0 + (-(weight - self.thresholds.probable)).exp2());
        let mut rule = None;
        let mut grade = if weight >= self.thresholds.certain {
            Grade::Certain
        } else if weight >= self.thresholds.probable {
            Grade::Probable
        } else if weight >= self.thresholds.possible {
            Grade::Possible
        } else {
            Grade::CertainlyNot
        };
        if birth == Level::Exact && shared_identifier(a, b) {
            grade = Grade::Certain;
            score = score.max(0.99);
            rule = Some("same identifier and birth date");
        } else if grade == Grade::Certain
            && [Field::Ssn, Field::Sex, Field::BirthDate, Field::Given].iter().any(|f| level_of(*f) == Level::Differ)
        {
            // A certain grade links without review: never over a contradiction.
            grade = Grade::Probable;
            score = score.min(0.98);
            rule = Some("a contradicting field keeps it for review");
        } else if grade == Grade::Certain
            && birth != Level::Exact
            && !CORROBORATING.iter().any(|f| matches!(level_of(*f), Level::Exact | Level::Alias | Level::Similar))
        {
            // Names and a nearly equal birth date are what namesakes share: certain only with
            // an address, a phone, an e-mail or an identifier that agrees too.
            grade = Grade::Probable;
            score = score.min(0.98);
            rule = Some("an inexact birth date needs another field to agree");
        }
        Comparison { fields, weight, score, grade, rule }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: serde_json::Value) -> Demographics {
        Demographics::of_patient(&value, None)
    }

    fn jon() -> Demographics {
        record(json!({
            "resourceType": "Patient",
            "name": [{"family": "Smith", "given": ["Jon"]}],
            "birthDate": "1961-03-04", "gender": "male",
            "address": [{"line": ["12 Elm Street"], "city": "Boston", "state": "MA", "postalCode": "02134"}],
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-12-3456"}]
        }))
    }

    #[test]
    fn the_same_record_is_certain_and_a_stranger_certainly_not() {
        let model = Model::default();
        let same = model.compare(&jon(), &jon(), &NoFrequencies);
        assert_eq!(same.grade, Grade::Certain);
        assert!(same.score > 0.99);
        let stranger = record(json!({
            "resourceType": "Patient", "name": [{"family": "Brown", "given": ["Mary"]}],
            "birthDate": "1990-11-21", "gender": "female"
        }));
        let other = model.compare(&jon(), &stranger, &NoFrequencies);
        assert_eq!(other.grade, Grade::CertainlyNot);
        assert!(other.score < 0.01);
    }

    #[test]
    fn the_issues_example_matches_without_the_ssn() {
        // "Jon Smith, 1961-03-04" at a hospital is "Jonathan Smith, 1961-04-03" at a clinic.
        let clinic = record(json!({
            "resourceType": "Patient", "name": [{"family": "Smith", "given": ["Jonathan"]}],
            "birthDate": "1961-04-03", "gender": "male",
            "address": [{"line": ["12 Elm St."], "city": "Boston", "state": "MA", "postalCode": "02134-0001"}]
        }));
        let c = Model::default().compare(&jon(), &clinic, &NoFrequencies);
        assert!(c.grade <= Grade::Probable, "{c:?}");
    }

    #[test]
    fn a_twin_is_not_certain() {
        let twin = record(json!({
            "resourceType": "Patient", "name": [{"family": "Smith", "given": ["Paul"]}],
            "birthDate": "1961-03-04", "gender": "male",
            "address": [{"line": ["12 Elm Street"], "city": "Boston", "state": "MA", "postalCode": "02134"}],
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-12-9999"}]
        }));
        let c = Model::default().compare(&jon(), &twin, &NoFrequencies);
        assert!(c.grade >= Grade::Possible, "{c:?}");
    }

    #[test]
    fn a_shared_identifier_with_the_birth_date_is_certain_by_rule() {
        let a = record(
            json!({"resourceType": "Patient", "name": [{"family": "X", "given": ["Y"]}], "birthDate": "2001-01-01",
            "identifier": [{"type": {"coding": [{"code": "MR"}]}, "system": "urn:h", "value": "1"}]}),
        );
        let b = record(
            json!({"resourceType": "Patient", "name": [{"family": "Q", "given": ["Z"]}], "birthDate": "2001-01-01",
            "identifier": [{"type": {"coding": [{"code": "MR"}]}, "system": "urn:h", "value": "1"}]}),
        );
        let c = Model::default().compare(&a, &b, &NoFrequencies);
        assert_eq!((c.grade, c.rule), (Grade::Certain, Some("same identifier and birth date")));
    }

    #[test]
    fn common_names_weigh_less_than_rare_ones() {
        struct Common;
        impl NameFrequencies for Common {
            fn given(&self, _: &str) -> Option<f64> {
                Some(0.05)
            }
            fn family(&self, _: &str) -> Option<f64> {
                Some(0.05)
            }
        }
        let model = Model::default();
        assert!(model.compare(&jon(), &jon(), &Common).weight < model.compare(&jon(), &jon(), &NoFrequencies).weight);
    }

    #[test]
    fn a_partial_model_keeps_the_other_defaults() {
        let model =
            Model::from_json(r#"{"thresholds": {"certain": 30, "probable": 15, "possible": 5}, "fields": {"sex": {"differ": {"m": 0.1, "u": 0.5}}}}"#)
                .unwrap();
        assert_eq!(model.thresholds.certain, 30.0);
        assert_eq!(model.probabilities(Field::Sex, Level::Differ), Some(Probabilities { m: 0.1, u: 0.5 }));
        assert_eq!(
            model.probabilities(Field::Sex, Level::Exact),
            Model::default().probabilities(Field::Sex, Level::Exact)
        );
    }
}
