//! What a write means for the care team: the alert events read from one resource's new
//! version and the one it replaced. Pure functions, no store: the hook calls them inside the
//! write's transaction.
//!
//! Only news alerts: a resource written as history (an import of old visits, results or
//! prescriptions) raises nothing. A result or prescription is news when its clinical time
//! (`effective[x]`/`issued`, `authoredOn`) lies within [`NEWS_DAYS`] of the write, or is absent.

use chart::elements::instant;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

/// How old a result or prescription may be and still be news.
pub const NEWS_DAYS: i64 = 7;

/// LOINC PHQ-9 total score.
pub const PHQ9_TOTAL: &str = "44261-6";
/// LOINC PHQ-9 item 9 (thoughts that you would be better off dead, or of hurting yourself).
pub const PHQ9_ITEM9: &str = "44260-8";
/// A PHQ-9 total at or above this is a positive depression screen.
pub const PHQ9_POSITIVE: i64 = 10;

/// Inpatient classes (v3 ActCode): becoming active is an admission.
const INPATIENT: &[&str] = &["IMP", "ACUTE", "NONAC", "OBSENC", "PRENC", "SS"];
/// Emergency class.
const EMERGENCY: &str = "EMER";

/// An event the care team is told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// An inpatient stay began (ADT A01, an inpatient Encounter in progress).
    Admission,
    /// An emergency-department visit began (ADT A04 with class E, an EMER Encounter).
    EdVisit,
    /// An inpatient stay or ED visit ended (ADT A03, the Encounter finished).
    Discharge,
    /// A new result outside its normal range.
    AbnormalResult,
    /// A new result at a critical level.
    CriticalResult,
    /// A medication was prescribed, changed or stopped.
    MedicationChange,
    /// A PHQ-9 of 10 or more.
    PositiveDepressionScreen,
    /// A PHQ-9 higher than the patient's previous one.
    RisingDepressionScore,
    /// PHQ-9 item 9 answered above 0.
    SelfHarmRisk,
}

impl AlertKind {
    /// Every kind, in a fixed order.
    pub const ALL: [AlertKind; 9] = [
        AlertKind::Admission,
        AlertKind::EdVisit,
        AlertKind::Discharge,
        AlertKind::AbnormalResult,
        AlertKind::CriticalResult,
        AlertKind::MedicationChange,
        AlertKind::PositiveDepressionScreen,
        AlertKind::RisingDepressionScore,
        AlertKind::SelfHarmRisk,
    ];

    /// Its code (in rules, in `Communication.reasonCode`, in the outbox).
    pub fn code(self) -> &'static str {
        match self {
            AlertKind::Admission => "admission",
            AlertKind::EdVisit => "ed-visit",
            AlertKind::Discharge => "discharge",
            AlertKind::AbnormalResult => "abnormal-result",
            AlertKind::CriticalResult => "critical-result",
            AlertKind::MedicationChange => "medication-change",
            AlertKind::PositiveDepressionScreen => "depression-screen-positive",
            AlertKind::RisingDepressionScore => "depression-score-rising",
            AlertKind::SelfHarmRisk => "self-harm-risk",
        }
    }

    /// The kind of `code`.
    pub fn parse(code: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// What the alert says, for the clinician.
    pub fn title(self) -> &'static str {
        match self {
            AlertKind::Admission => "Hospital admission",
            AlertKind::EdVisit => "Emergency department visit",
            AlertKind::Discharge => "Discharge",
            AlertKind::AbnormalResult => "Abnormal result",
            AlertKind::CriticalResult => "Critical result",
            AlertKind::MedicationChange => "Medication change",
            AlertKind::PositiveDepressionScreen => "Positive depression screen (PHQ-9 ≥ 10)",
            AlertKind::RisingDepressionScore => "Rising depression score (PHQ-9)",
            AlertKind::SelfHarmRisk => "PHQ-9 item 9 above 0: thoughts of self-harm",
        }
    }

    /// Whether it is urgent (`Communication.priority` `urgent`).
    pub fn urgent(self) -> bool {
        matches!(self, AlertKind::CriticalResult | AlertKind::RisingDepressionScore | AlertKind::SelfHarmRisk)
    }

    /// Whether it is meant for the team's behavioral-health clinicians first.
    pub fn behavioral_health(self) -> bool {
        matches!(self, AlertKind::RisingDepressionScore | AlertKind::SelfHarmRisk)
    }
}

/// The alert events of an Encounter's change: becoming active as an inpatient stay is an
/// admission (also an ED visit turning inpatient), as an emergency visit an ED visit; an
/// inpatient stay or ED visit known before and now finished is a discharge. Office visits and
/// encounters written already finished (history) raise nothing.
pub fn of_encounter(before: Option<&Value>, after: &Value) -> Vec<AlertKind> {
    let status = |e: &Value| e.get("status").and_then(Value::as_str).unwrap_or_default().to_string();
    let class = |e: &Value| e.pointer("/class/code").and_then(Value::as_str).unwrap_or_default().to_string();
    let (now, class_now) = (status(after), class(after));
    let was = before.map(status);
    let class_was = before.map(class);
    let inpatient = INPATIENT.contains(&class_now.as_str());
    let emergency = class_now == EMERGENCY;
    let active = |s: &str| matches!(s, "arrived" | "triaged" | "in-progress");
    match now.as_str() {
        s if active(s) => {
            let newly = was.as_deref().is_none_or(|w| !active(w));
            let turned_inpatient = !newly && inpatient && class_was.as_deref().is_some_and(|c| !INPATIENT.contains(&c));
            if (newly && inpatient) || turned_inpatient {
                vec![AlertKind::Admission]
            } else if newly && emergency {
                vec![AlertKind::EdVisit]
            } else {
                Vec::new()
            }
        }
        "finished" if (inpatient || emergency) && was.as_deref().is_some_and(|w| w != "finished") => {
            vec![AlertKind::Discharge]
        }
        _ => Vec::new(),
    }
}

/// Interpretation codes (v3 ObservationInterpretation) of a critical result.
const CRITICAL: &[&str] = &["HH", "LL", "AA", "HU", "LU", "CR"];
/// Interpretation codes of an abnormal result.
const ABNORMAL: &[&str] = &["H", "L", "A", "HX", "LX", ">", "<", "POS", "DET", "R", "W"];

/// The alert events of an Observation's new version: a new final result (not one already
/// final before) that is critical or abnormal by its interpretation, else outside its
/// reference range; a PHQ-9 total of 10 or more, item 9 above 0. (A rising PHQ-9 needs the
/// patient's previous score: [`rising`].)
pub fn of_observation(before: Option<&Value>, after: &Value, now: OffsetDateTime) -> Vec<AlertKind> {
    if !is_new_result(before, after, now) {
        return Vec::new();
    }
    let mut kinds = Vec::new();
    if has_loinc(after, PHQ9_TOTAL) {
        if integer_value(after).is_some_and(|v| v >= PHQ9_POSITIVE) {
            kinds.push(AlertKind::PositiveDepressionScreen);
        }
        if item9(after).is_some_and(|v| v > 0) {
            kinds.push(AlertKind::SelfHarmRisk);
        }
        return kinds;
    }
    let codes = interpretation_codes(after);
    if codes.iter().any(|c| CRITICAL.contains(&c.as_str())) {
        kinds.push(AlertKind::CriticalResult);
    } else if codes.iter().any(|c| ABNORMAL.contains(&c.as_str())) || (codes.is_empty() && out_of_range(after)) {
        kinds.push(AlertKind::AbnormalResult);
    }
    kinds
}

/// Whether an Observation's new version is a new result: final (or amended, corrected), not
/// the same final value written again, and news (see the module's documentation).
pub fn is_new_result(before: Option<&Value>, after: &Value, now: OffsetDateTime) -> bool {
    let final_status =
        |o: &Value| matches!(o.get("status").and_then(Value::as_str), Some("final" | "amended" | "corrected"));
    final_status(after) && !before.is_some_and(|b| final_status(b) && same_value(b, after)) && is_news(after, now)
}

/// Whether a PHQ-9 total `after` is higher than the patient's previous total `previous`.
pub fn rising(previous: Option<i64>, after: &Value) -> bool {
    match (previous, integer_value(after)) {
        (Some(before), Some(now)) => now > before,
        _ => false,
    }
}

/// The alert events of a MedicationRequest's new version: a new current prescription, or a
/// change of status or of dosage of one known before.
pub fn of_medication_request(before: Option<&Value>, after: &Value, now: OffsetDateTime) -> Vec<AlertKind> {
    let status = |m: &Value| m.get("status").and_then(Value::as_str).unwrap_or_default().to_string();
    match before {
        None => {
            let current = matches!(status(after).as_str(), "active" | "on-hold" | "draft");
            let recent = after
                .get("authoredOn")
                .and_then(Value::as_str)
                .and_then(instant)
                .is_none_or(|at| now - at <= Duration::days(NEWS_DAYS));
            if current && recent { vec![AlertKind::MedicationChange] } else { Vec::new() }
        }
        Some(before) => {
            let changed = status(before) != status(after)
                || before.get("dosageInstruction") != after.get("dosageInstruction")
                || before.get("medicationCodeableConcept") != after.get("medicationCodeableConcept")
                || before.get("medicationReference") != after.get("medicationReference");
            if changed { vec![AlertKind::MedicationChange] } else { Vec::new() }
        }
    }
}

/// Whether an Observation carries the LOINC code `code`.
pub fn has_loinc(observation: &Value, code: &str) -> bool {
    observation.pointer("/code/coding").and_then(Value::as_array).is_some_and(|all| {
        all.iter().any(|c| {
            c.get("system").and_then(Value::as_str) == Some("http://loinc.org")
                && c.get("code").and_then(Value::as_str) == Some(code)
        })
    })
}

/// The whole-number value of an Observation (`valueInteger`, or a `valueQuantity` without
/// fraction).
pub fn integer_value(observation: &Value) -> Option<i64> {
    if let Some(v) = observation.get("valueInteger").and_then(Value::as_i64) {
        return Some(v);
    }
    let value = observation.pointer("/valueQuantity/value")?;
    value.as_i64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
}

/// PHQ-9 item 9 from the total's `component`.
pub fn item9(observation: &Value) -> Option<i64> {
    observation
        .get("component")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| has_loinc(c, PHQ9_ITEM9))
        .and_then(integer_value)
}

/// When the result is clinically from: `effectiveDateTime`, the start of `effectivePeriod`,
/// `effectiveInstant`, else `issued`.
pub fn clinical_time(observation: &Value) -> Option<OffsetDateTime> {
    ["/effectiveDateTime", "/effectiveInstant", "/effectivePeriod/start", "/issued"]
        .iter()
        .filter_map(|at| observation.pointer(at).and_then(Value::as_str))
        .find_map(instant)
}

fn is_news(observation: &Value, now: OffsetDateTime) -> bool {
    clinical_time(observation).is_none_or(|at| now - at <= Duration::days(NEWS_DAYS))
}

fn same_value(a: &Value, b: &Value) -> bool {
    ["valueQuantity", "valueInteger", "valueCodeableConcept", "valueString", "interpretation", "component"]
        .iter()
        .all(|k| a.get(k) == b.get(k))
}

fn interpretation_codes(observation: &Value) -> Vec<String> {
    observation
        .get("interpretation")
        .and_then(Value::as_array)
        .map(|all| {
            all.iter()
                .filter_map(|i| i.get("coding").and_then(Value::as_array))
                .flatten()
                .filter_map(|c| c.get("code").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A quantity outside the low or high of its first reference range (same unit code, or none).
fn out_of_range(observation: &Value) -> bool {
    let Some(value) = observation.pointer("/valueQuantity/value").and_then(Value::as_f64) else { return false };
    let Some(range) = observation.get("referenceRange").and_then(Value::as_array).and_then(|r| r.first()) else {
        return false;
    };
    let unit = observation.pointer("/valueQuantity/code").and_then(Value::as_str);
    let bound = |at: &str| {
        let bound = range.get(at)?;
        let bound_unit = bound.get("code").and_then(Value::as_str);
        if bound_unit.is_some() && unit.is_some() && bound_unit != unit {
            return None;
        }
        bound.get("value").and_then(Value::as_f64)
    };
    bound("low").is_some_and(|low| value < low) || bound("high").is_some_and(|high| value > high)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc(status: &str, class: &str) -> Value {
        json!({"resourceType": "Encounter", "status": status, "class": {"code": class}})
    }

    #[test]
    fn encounters_admit_visit_the_ed_and_discharge() {
        assert_eq!(of_encounter(None, &enc("in-progress", "IMP")), [AlertKind::Admission]);
        assert_eq!(of_encounter(None, &enc("arrived", "EMER")), [AlertKind::EdVisit]);
        assert_eq!(of_encounter(Some(&enc("arrived", "EMER")), &enc("in-progress", "EMER")), []);
        assert_eq!(of_encounter(Some(&enc("in-progress", "EMER")), &enc("in-progress", "IMP")), [AlertKind::Admission]);
        assert_eq!(of_encounter(Some(&enc("in-progress", "IMP")), &enc("finished", "IMP")), [AlertKind::Discharge]);
        assert_eq!(of_encounter(Some(&enc("arrived", "EMER")), &enc("finished", "EMER")), [AlertKind::Discharge]);
        assert!(of_encounter(None, &enc("finished", "IMP")).is_empty(), "history is not news");
        assert!(of_encounter(None, &enc("in-progress", "AMB")).is_empty(), "office visits raise nothing");
        assert!(of_encounter(Some(&enc("finished", "IMP")), &enc("finished", "IMP")).is_empty());
    }

    fn observation(extra: Value) -> Value {
        let mut o = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "effectiveDateTime": "2026-12-01T10:00:00Z"});
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        o
    }

    #[test]
    fn results_are_critical_abnormal_or_nothing_and_only_when_new() {
        let now = instant("2026-12-02T00:00:00Z").unwrap();
        let hh = observation(json!({"interpretation": [{"coding": [{"code": "HH"}]}]}));
        assert_eq!(of_observation(None, &hh, now), [AlertKind::CriticalResult]);
        let h = observation(json!({"interpretation": [{"coding": [{"code": "H"}]}]}));
        assert_eq!(of_observation(None, &h, now), [AlertKind::AbnormalResult]);
        let ranged = observation(json!({"valueQuantity": {"value": 250, "code": "mg/dL"},
            "referenceRange": [{"low": {"value": 70, "code": "mg/dL"}, "high": {"value": 99, "code": "mg/dL"}}]}));
        assert_eq!(of_observation(None, &ranged, now), [AlertKind::AbnormalResult]);
        let normal = observation(json!({"valueQuantity": {"value": 80, "code": "mg/dL"},
            "referenceRange": [{"low": {"value": 70, "code": "mg/dL"}, "high": {"value": 99, "code": "mg/dL"}}]}));
        assert!(of_observation(None, &normal, now).is_empty());
        assert!(of_observation(Some(&hh), &hh, now).is_empty(), "the same final result again is not news");
        let old = instant("2027-01-01T00:00:00Z").unwrap();
        assert!(of_observation(None, &hh, old).is_empty(), "a result a month old is history");
        let mut preliminary = hh.clone();
        preliminary["status"] = json!("preliminary");
        assert!(of_observation(None, &preliminary, now).is_empty());
    }

    #[test]
    fn phq9_positive_and_item9() {
        let now = instant("2026-12-02T00:00:00Z").unwrap();
        let phq = |total: i64, item: i64| {
            json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": PHQ9_TOTAL}]},
                "valueInteger": total,
                "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": PHQ9_ITEM9}]}, "valueInteger": item}]})
        };
        assert!(of_observation(None, &phq(9, 0), now).is_empty());
        assert_eq!(of_observation(None, &phq(10, 0), now), [AlertKind::PositiveDepressionScreen]);
        assert_eq!(of_observation(None, &phq(4, 1), now), [AlertKind::SelfHarmRisk]);
        assert!(rising(Some(8), &phq(9, 0)));
        assert!(!rising(Some(9), &phq(9, 0)));
        assert!(!rising(None, &phq(20, 0)));
    }

    #[test]
    fn prescriptions_new_changed_or_stopped() {
        let now = instant("2026-12-02T00:00:00Z").unwrap();
        let rx = |status: &str, authored: &str| json!({"resourceType": "MedicationRequest", "status": status, "authoredOn": authored});
        assert_eq!(of_medication_request(None, &rx("active", "2026-12-01"), now), [AlertKind::MedicationChange]);
        assert!(of_medication_request(None, &rx("active", "2019-01-01"), now).is_empty(), "imported history");
        assert!(of_medication_request(None, &rx("stopped", "2026-12-01"), now).is_empty());
        assert_eq!(
            of_medication_request(Some(&rx("active", "2019-01-01")), &rx("stopped", "2019-01-01"), now),
            [AlertKind::MedicationChange]
        );
        assert!(of_medication_request(Some(&rx("active", "2019-01-01")), &rx("active", "2019-01-01"), now).is_empty());
    }
}
