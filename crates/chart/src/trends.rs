//! Trends: which Observations form each charted measure (a LOINC code, or the components of a
//! panel such as blood pressure), their series over a period, and the reference range to draw
//! (the latest result's own, else the usual adult one).

use crate::Result;
use crate::elements::{has_code, instant, quantity, quantity_number, when};
use crate::read;
use access::Access;
use serde_json::Value;
use time::OffsetDateTime;

/// One value of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// When it was measured.
    pub at: OffsetDateTime,
    /// The number.
    pub value: f64,
    /// As shown, e.g. `7.2 %`.
    pub label: String,
}

/// A named line of values, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// What it measures (the measure, or a component such as "Systolic").
    pub name: String,
    /// Its values, oldest first.
    pub points: Vec<Point>,
}

/// The range of normal values, drawn behind the lines.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceRange {
    /// Its lower bound, when it has one.
    pub low: Option<f64>,
    /// Its upper bound, when it has one.
    pub high: Option<f64>,
    /// As written for a reader.
    pub text: String,
}

impl ReferenceRange {
    /// Whether `value` lies outside it.
    pub fn excludes(&self, value: f64) -> bool {
        self.high.is_some_and(|h| value > h) || self.low.is_some_and(|l| value < l)
    }
}

/// A measure of a patient over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// Whether the caller may read Observations at all (else the series are empty).
    pub shown: bool,
    /// One series per line.
    pub series: Vec<Series>,
    /// The range to draw, when known.
    pub range: Option<ReferenceRange>,
}

/// `measure` of `patient` between the dates `from` and `to` (`YYYY-MM-DD`, inclusive, when given).
pub fn trend(access: &Access, patient: &str, measure: &Measure, from: Option<&str>, to: Option<&str>) -> Result<Trend> {
    let mut pairs = vec![
        ("patient", patient.to_string()),
        ("code", format!("http://loinc.org|{}", measure.code)),
        ("_sort", "date".to_string()),
    ];
    if let Some(from) = from {
        pairs.push(("date", format!("ge{from}")));
    }
    if let Some(to) = to {
        pairs.push(("date", format!("le{to}")));
    }
    // A role that does not read observations is told so, not refused.
    let observations = read::search_if_allowed(access, "Observation", &pairs, 1000)?;
    let shown = observations.is_some();
    let observations = observations.unwrap_or_default();
    Ok(Trend { shown, series: series_of(measure, &observations), range: range_of(measure, &observations) })
}

/// A measure that can be charted: LOINC codes of the Observation (or of its components).
#[derive(Debug)]
pub struct Measure {
    /// Its name in an address (`?measure=bp`).
    pub key: &'static str,
    /// Its name on a page.
    pub label: &'static str,
    /// The Observation's code.
    pub code: &'static str,
    /// Components to draw as series (blood pressure), else the Observation's own value.
    pub components: &'static [(&'static str, &'static str)],
    /// The UCUM unit it is charted in.
    pub unit: &'static str,
}

/// Every measure that can be charted; the first is shown by default.
pub const MEASURES: &[Measure] = &[
    Measure {
        key: "bp",
        label: "Blood pressure",
        code: "85354-9",
        components: &[("8480-6", "Systolic"), ("8462-4", "Diastolic")],
        unit: "mm[Hg]",
    },
    Measure { key: "weight", label: "Body weight", code: "29463-7", components: &[], unit: "kg" },
    Measure { key: "bmi", label: "Body mass index", code: "39156-5", components: &[], unit: "kg/m2" },
    Measure { key: "hba1c", label: "Hemoglobin A1c", code: "4548-4", components: &[], unit: "%" },
    Measure { key: "ldl", label: "LDL cholesterol", code: "18262-6", components: &[], unit: "mg/dL" },
    Measure { key: "egfr", label: "eGFR", code: "33914-3", components: &[], unit: "mL/min/1.73m2" },
    Measure { key: "glucose", label: "Glucose", code: "2339-0", components: &[], unit: "mg/dL" },
    Measure { key: "phq9", label: "PHQ-9 total score", code: "44261-6", components: &[], unit: "{score}" },
    Measure { key: "gad7", label: "GAD-7 total score", code: "70274-6", components: &[], unit: "{score}" },
];

/// The usual adult reference ranges used when the results carry none (guideline cut-offs:
/// ADA for HbA1c and fasting glucose, NCEP for LDL, KDIGO for eGFR, ACC/AHA for blood
/// pressure, WHO for BMI, the instruments' own "minimal" bands for PHQ-9 and GAD-7).
pub fn typical_range(code: &str) -> Option<ReferenceRange> {
    let range =
        |low: Option<f64>, high: Option<f64>, text: &str| Some(ReferenceRange { low, high, text: text.to_string() });
    match code {
        "4548-4" => range(None, Some(5.7), "below 5.7 %"),
        "18262-6" => range(None, Some(100.0), "below 100 mg/dL"),
        "33914-3" => range(Some(60.0), None, "60 mL/min/1.73m2 or more"),
        "2339-0" => range(Some(70.0), Some(99.0), "70–99 mg/dL (fasting)"),
        "85354-9" | "8480-6" => range(None, Some(120.0), "systolic below 120 mm[Hg] (diastolic below 80)"),
        "8462-4" => range(None, Some(80.0), "below 80 mm[Hg]"),
        "39156-5" => range(Some(18.5), Some(25.0), "18.5–25 kg/m2"),
        "44261-6" => range(None, Some(5.0), "0–4 (minimal)"),
        "70274-6" => range(None, Some(5.0), "0–4 (minimal)"),
        _ => None,
    }
}

fn number(value: &Value) -> Option<(f64, String)> {
    // Scores (PHQ-9, GAD-7 totals) are integers without a unit.
    if let Some(n) = value.get("valueInteger").and_then(Value::as_i64) {
        return Some((n as f64, n.to_string()));
    }
    let q = value.get("valueQuantity")?;
    Some((quantity_number(q)?, quantity(q)?))
}

/// The series of a measure from its Observations (oldest first).
pub fn series_of(measure: &Measure, observations: &[Value]) -> Vec<Series> {
    let make = |name: &str| Series { name: name.to_string(), points: Vec::new() };
    let mut series: Vec<Series> = if measure.components.is_empty() {
        vec![make(measure.label)]
    } else {
        measure.components.iter().map(|(_, name)| make(name)).collect()
    };
    for observation in observations {
        let Some(at) = when(observation).and_then(instant) else { continue };
        if measure.components.is_empty() {
            if let Some((value, label)) = number(observation) {
                series[0].points.push(Point { at, value, label });
            }
            continue;
        }
        for component in observation.get("component").and_then(Value::as_array).into_iter().flatten() {
            let Some(i) = measure
                .components
                .iter()
                .position(|(code, _)| has_code(component.get("code"), "http://loinc.org", code))
            else {
                continue;
            };
            if let Some((value, label)) = number(component) {
                series[i].points.push(Point { at, value, label });
            }
        }
    }
    for s in &mut series {
        s.points.sort_by_key(|p| p.at);
    }
    series
}

/// The range to draw: the latest result's own, else the typical one.
pub fn range_of(measure: &Measure, observations: &[Value]) -> Option<ReferenceRange> {
    let own = observations.iter().rev().find_map(|o| o.pointer("/referenceRange/0")).and_then(|r| {
        let low = r.get("low").and_then(quantity_number);
        let high = r.get("high").and_then(quantity_number);
        (low.is_some() || high.is_some()).then(|| ReferenceRange {
            low,
            high,
            text: r.get("text").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| {
                format!(
                    "{}–{}",
                    low.map(|l| l.to_string()).unwrap_or_default(),
                    high.map(|h| h.to_string()).unwrap_or_default()
                )
            }),
        })
    });
    own.or_else(|| typical_range(measure.code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blood_pressure_components_form_two_series_oldest_first() {
        let bp = &MEASURES[0];
        let reading = |at: &str, systolic: i64, diastolic: i64| {
            json!({"effectiveDateTime": at, "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": diastolic, "unit": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": systolic, "unit": "mm[Hg]"}}]})
        };
        let series = series_of(bp, &[reading("2024-02-01", 130, 85), reading("2024-01-01", 120, 80)]);
        assert_eq!(series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["Systolic", "Diastolic"]);
        assert_eq!(series[0].points.iter().map(|p| p.value).collect::<Vec<_>>(), [120.0, 130.0]);
        assert_eq!(series[1].points[1].label, "85 mm[Hg]");
        let range = range_of(bp, &[]).unwrap();
        assert!(range.excludes(121.0) && !range.excludes(119.0));
    }

    #[test]
    fn a_result_s_own_range_wins_over_the_typical_one() {
        let hba1c = MEASURES.iter().find(|m| m.key == "hba1c").unwrap();
        let own = json!({"effectiveDateTime": "2024-01-01", "valueQuantity": {"value": 6.1, "unit": "%"},
            "referenceRange": [{"low": {"value": 4}, "high": {"value": 6}}]});
        assert_eq!(
            range_of(hba1c, &[own]).map(|r| (r.low, r.high, r.text)),
            Some((Some(4.0), Some(6.0), "4–6".into()))
        );
        assert_eq!(range_of(hba1c, &[]).and_then(|r| r.high), Some(5.7));
    }

    #[test]
    fn screening_totals_are_integers() {
        let phq9 = MEASURES.iter().find(|m| m.key == "phq9").unwrap();
        let scores = [
            json!({"effectiveDateTime": "2026-01-01", "valueInteger": 14}),
            json!({"effectiveDateTime": "2026-02-01", "valueInteger": 9}),
        ];
        let series = series_of(phq9, &scores);
        assert_eq!(
            series[0].points.iter().map(|p| (p.value, p.label.as_str())).collect::<Vec<_>>(),
            [(14.0, "14"), (9.0, "9")]
        );
    }
}
