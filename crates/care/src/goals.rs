//! Goals of a care plan: their targets (a LOINC measure with a quantity such as HbA1c < 7 % or
//! a range, and a due date) and their **achievement computed from the latest results**.
//!
//! # The achievement rule
//!
//! For one target, the patient's Observations of the target's code (final, amended or
//! corrected; a value in the target's unit, or without one) are read newest first; the latest
//! and the one before it decide, with the target's distance `d(x)` — 0 when `x` meets the target,
//! else how far `x` lies from its nearest bound (a comparator's value, a range's low or high):
//!
//! 1. no result yet: no status (the view says so);
//! 2. the latest meets the target: `achieved`;
//! 3. the due date has passed (today is after it): `not-achieved` when the latest is closer to
//!    the target than the previous one (it was moving the right way), else `no-progress`;
//! 4. otherwise, against the previous result: closer `improving`, farther `worsening`, the
//!    same `no-change`; with no previous result `in-progress`.
//!
//! A goal with several targets is `achieved` when every target is, else it takes the status of
//! its first target not achieved. The codes are those of
//! `http://terminology.hl7.org/CodeSystem/goal-achievement`. The status is computed when a
//! plan is shown, not stored: stored, it would be stale as soon as the next result arrived.

use crate::{Error, Result};
use access::Access;
use search::query::SearchQuery;
use serde_json::{Value, json};
use store::audit::Subtype;
use time::Date;

/// The code system of `Goal.achievementStatus`.
pub const ACHIEVEMENT_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/goal-achievement";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

/// The lifecycle codes of a goal (`Goal.lifecycleStatus`).
pub const LIFECYCLE: &[&str] =
    &["proposed", "planned", "accepted", "active", "on-hold", "completed", "cancelled", "entered-in-error", "rejected"];

/// A measure a goal's target may name, as offered by editors: (LOINC code, name, UCUM unit).
pub const MEASURES: &[(&str, &str, &str)] = &[
    ("4548-4", "Hemoglobin A1c", "%"),
    ("44261-6", "PHQ-9 total score", "{score}"),
    ("70274-6", "GAD-7 total score", "{score}"),
    ("18262-6", "LDL cholesterol", "mg/dL"),
    ("8480-6", "Systolic blood pressure", "mm[Hg]"),
    ("29463-7", "Body weight", "kg"),
    ("39156-5", "Body mass index", "kg/m2"),
];

/// How a result is compared with a target value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    /// Below.
    Less,
    /// At most.
    LessOrEqual,
    /// At least.
    GreaterOrEqual,
    /// Above.
    Greater,
    /// Exactly (a quantity without a comparator).
    Equal,
}

impl Comparator {
    /// The comparator of FHIR's `Quantity.comparator` (absent: [`Comparator::Equal`]).
    pub fn from_code(code: Option<&str>) -> Option<Comparator> {
        match code {
            Some("<") => Some(Comparator::Less),
            Some("<=") => Some(Comparator::LessOrEqual),
            Some(">=") => Some(Comparator::GreaterOrEqual),
            Some(">") => Some(Comparator::Greater),
            None => Some(Comparator::Equal),
            Some(_) => None,
        }
    }

    /// Its `Quantity.comparator` code (`None` for equality).
    pub fn code(self) -> Option<&'static str> {
        match self {
            Comparator::Less => Some("<"),
            Comparator::LessOrEqual => Some("<="),
            Comparator::GreaterOrEqual => Some(">="),
            Comparator::Greater => Some(">"),
            Comparator::Equal => None,
        }
    }
}

/// What a target asks of the measure.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetDetail {
    /// A value with a comparator (`detailQuantity`), e.g. `< 7 %`.
    Quantity {
        /// How results compare with it.
        comparator: Comparator,
        /// The value.
        value: f64,
        /// Its UCUM unit, when given.
        unit: Option<String>,
    },
    /// Between bounds, inclusive (`detailRange`).
    Range {
        /// The lower bound, when there is one.
        low: Option<f64>,
        /// The upper bound, when there is one.
        high: Option<f64>,
        /// The unit of the bounds, when given.
        unit: Option<String>,
    },
}

impl TargetDetail {
    /// The unit results must be in to compare, when the target names one.
    pub fn unit(&self) -> Option<&str> {
        match self {
            TargetDetail::Quantity { unit, .. } | TargetDetail::Range { unit, .. } => unit.as_deref(),
        }
    }

    /// How far `x` lies from meeting the target (0 when it meets it).
    pub fn distance(&self, x: f64) -> f64 {
        match *self {
            TargetDetail::Quantity { comparator, value, .. } => match comparator {
                Comparator::Less if x < value => 0.0,
                Comparator::LessOrEqual if x <= value => 0.0,
                Comparator::Greater if x > value => 0.0,
                Comparator::GreaterOrEqual if x >= value => 0.0,
                Comparator::Equal if x == value => 0.0,
                // Off the target: the distance to its bound (a strict bound counts as reached
                // only beyond it, so sitting on it is not yet 0).
                _ => (x - value).abs().max(f64::MIN_POSITIVE),
            },
            TargetDetail::Range { low, high, .. } => {
                if let Some(low) = low
                    && x < low
                {
                    return low - x;
                }
                if let Some(high) = high
                    && x > high
                {
                    return x - high;
                }
                0.0
            }
        }
    }

    /// Whether `x` meets the target.
    pub fn meets(&self, x: f64) -> bool {
        self.distance(x) == 0.0
    }

    /// As read by a clinician: `< 7 %`, `4–6 %`.
    pub fn text(&self) -> String {
        let unit = |u: &Option<String>| {
            u.as_deref().filter(|u| !u.starts_with('{')).map(|u| format!(" {u}")).unwrap_or_default()
        };
        match self {
            TargetDetail::Quantity { comparator, value, unit: u } => {
                format!("{} {value}{}", comparator.code().unwrap_or("="), unit(u))
            }
            TargetDetail::Range { low, high, unit: u } => match (low, high) {
                (Some(l), Some(h)) => format!("{l}–{h}{}", unit(u)),
                (Some(l), None) => format!(">= {l}{}", unit(u)),
                (None, Some(h)) => format!("<= {h}{}", unit(u)),
                (None, None) => "any value".into(),
            },
        }
    }
}

/// A goal's target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The LOINC code of the measure, when it names one.
    pub measure: Option<String>,
    /// The measure as written.
    pub measure_name: String,
    /// What it asks, when it asks a number.
    pub detail: Option<TargetDetail>,
    /// When it is due (`YYYY-MM-DD`).
    pub due: Option<String>,
}

/// One result of a measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// When it was measured (as written).
    pub at: String,
    /// The number.
    pub value: f64,
    /// As shown, e.g. `7.2 %`.
    pub text: String,
}

/// `Goal.achievementStatus`, computed (see the module's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Achievement {
    /// Not met yet, no trend to tell (`in-progress`).
    InProgress,
    /// Not met, closer than before (`improving`).
    Improving,
    /// Not met, farther than before (`worsening`).
    Worsening,
    /// Not met, as far as before (`no-change`).
    NoChange,
    /// Met (`achieved`).
    Achieved,
    /// Past due, not met, though it moved the right way (`not-achieved`).
    NotAchieved,
    /// Past due, not met, and it did not move the right way (`no-progress`).
    NoProgress,
}

impl Achievement {
    /// Its code in [`ACHIEVEMENT_SYSTEM`].
    pub fn code(self) -> &'static str {
        match self {
            Achievement::InProgress => "in-progress",
            Achievement::Improving => "improving",
            Achievement::Worsening => "worsening",
            Achievement::NoChange => "no-change",
            Achievement::Achieved => "achieved",
            Achievement::NotAchieved => "not-achieved",
            Achievement::NoProgress => "no-progress",
        }
    }

    /// As read by a clinician.
    pub fn display(self) -> &'static str {
        match self {
            Achievement::InProgress => "In progress",
            Achievement::Improving => "Improving",
            Achievement::Worsening => "Worsening",
            Achievement::NoChange => "No change",
            Achievement::Achieved => "Achieved",
            Achievement::NotAchieved => "Not achieved",
            Achievement::NoProgress => "No progress",
        }
    }
}

/// The achievement of one target from its latest and previous results (the module's rule);
/// `today` decides whether it is past due.
pub fn achievement(
    detail: &TargetDetail,
    latest: Option<&Reading>,
    previous: Option<&Reading>,
    due: Option<Date>,
    today: Date,
) -> Option<Achievement> {
    let latest = latest?;
    let now = detail.distance(latest.value);
    if now == 0.0 {
        return Some(Achievement::Achieved);
    }
    let before = previous.map(|p| detail.distance(p.value));
    if due.is_some_and(|due| today > due) {
        return Some(match before {
            Some(before) if now < before => Achievement::NotAchieved,
            _ => Achievement::NoProgress,
        });
    }
    Some(match before {
        None => Achievement::InProgress,
        Some(before) if now < before => Achievement::Improving,
        Some(before) if now > before => Achievement::Worsening,
        Some(_) => Achievement::NoChange,
    })
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

fn quantity_unit(q: &Value) -> Option<String> {
    q.get("code").or_else(|| q.get("unit")).and_then(Value::as_str).map(str::to_string)
}

/// The targets of a Goal.
pub fn targets_of(goal: &Value) -> Vec<Target> {
    goal.get("target")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            let measure = t.get("measure");
            let code = measure
                .and_then(|m| m.get("coding"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|c| c.get("system").and_then(Value::as_str) == Some(LOINC))
                .and_then(|c| c.get("code"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let name = measure
                .and_then(|m| m.get("text").or_else(|| m.pointer("/coding/0/display")))
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| code.clone())
                .unwrap_or_default();
            let detail = if let Some(q) = t.get("detailQuantity") {
                let comparator = Comparator::from_code(q.get("comparator").and_then(Value::as_str));
                match (comparator, q.get("value").and_then(number)) {
                    (Some(comparator), Some(value)) => {
                        Some(TargetDetail::Quantity { comparator, value, unit: quantity_unit(q) })
                    }
                    _ => None,
                }
            } else if let Some(r) = t.get("detailRange") {
                let low = r.pointer("/low/value").and_then(number);
                let high = r.pointer("/high/value").and_then(number);
                let unit = r.get("low").or_else(|| r.get("high")).and_then(quantity_unit);
                (low.is_some() || high.is_some()).then_some(TargetDetail::Range { low, high, unit })
            } else {
                None
            };
            let due = t.get("dueDate").and_then(Value::as_str).map(str::to_string);
            Target { measure: code, measure_name: name, detail, due }
        })
        .collect()
}

/// The reading of an Observation in `unit` (any unit when `None`): its `valueQuantity` or
/// `valueInteger` and its effective time; `None` when it holds no such number or another unit.
pub fn reading_of(observation: &Value, unit: Option<&str>) -> Option<Reading> {
    if matches!(observation.get("status").and_then(Value::as_str), Some("entered-in-error" | "cancelled")) {
        return None;
    }
    let at = ["effectiveDateTime", "effectiveInstant", "issued"]
        .iter()
        .find_map(|k| observation.get(*k).and_then(Value::as_str))
        .or_else(|| observation.pointer("/effectivePeriod/start").and_then(Value::as_str))?
        .to_string();
    if let Some(n) = observation.get("valueInteger").and_then(Value::as_i64) {
        return Some(Reading { at, value: n as f64, text: n.to_string() });
    }
    let q = observation.get("valueQuantity")?;
    let value = q.get("value").and_then(number)?;
    let own = quantity_unit(q);
    if let (Some(want), Some(own)) = (unit, own.as_deref())
        && want != own
    {
        return None;
    }
    let shown = q.get("unit").and_then(Value::as_str).or(own.as_deref()).unwrap_or("");
    let text = format!("{value} {shown}").trim().to_string();
    Some(Reading { at, value, text })
}

/// A goal as a plan shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalView {
    /// The Goal's id.
    pub id: String,
    /// The version read (an edit of it is written only if it is still the current one).
    pub version: u64,
    /// What the goal is.
    pub description: String,
    /// `Goal.lifecycleStatus`.
    pub lifecycle: String,
    /// Its targets, each with its latest results and achievement.
    pub targets: Vec<TargetView>,
    /// The goal's achievement (see the module's rule), `None` before any result.
    pub achievement: Option<Achievement>,
}

/// A target with what the results say of it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetView {
    /// The target.
    pub target: Target,
    /// The latest result.
    pub latest: Option<Reading>,
    /// The one before.
    pub previous: Option<Reading>,
    /// Its achievement.
    pub achievement: Option<Achievement>,
}

/// A search of `resource_type` with `pairs`, as the caller may see it (up to `count`).
pub(crate) fn search(
    access: &Access,
    resource_type: &str,
    pairs: &[(&str, String)],
    count: usize,
) -> Result<Vec<Value>> {
    let params: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let query = SearchQuery::parse(Some(resource_type), &params, false).map_err(access::Error::from)?;
    let page = access.search(query, &params, count, Subtype::SearchType)?;
    Ok(page.matches.iter().filter_map(|v| v.body.as_deref()).filter_map(|b| serde_json::from_str(b).ok()).collect())
}

fn day(text: &str) -> Option<Date> {
    Date::parse(text.get(..10)?, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

/// The view of `goal` (read with its `meta.versionId`) of `patient`: each target with the
/// patient's latest two results of its measure (as the caller may see them) and the
/// achievement computed on `today`.
pub fn goal_view(access: &Access, patient: &str, goal: &Value, today: Date) -> Result<GoalView> {
    let mut targets = Vec::new();
    for target in targets_of(goal) {
        let (mut latest, mut previous) = (None, None);
        if let (Some(code), Some(detail)) = (&target.measure, &target.detail) {
            let found = search(
                access,
                "Observation",
                &[("patient", patient.to_string()), ("code", format!("{LOINC}|{code}")), ("_sort", "-date".into())],
                20,
            )?;
            let mut readings = found.iter().filter_map(|o| reading_of(o, detail.unit()));
            latest = readings.next();
            previous = readings.next();
        }
        let achievement = target.detail.as_ref().and_then(|d| {
            achievement(d, latest.as_ref(), previous.as_ref(), target.due.as_deref().and_then(day), today)
        });
        targets.push(TargetView { target, latest, previous, achievement });
    }
    let statuses: Vec<Achievement> = targets.iter().filter_map(|t| t.achievement).collect();
    let achievement = if statuses.is_empty() {
        None
    } else if statuses.len() == targets.len() && statuses.iter().all(|a| *a == Achievement::Achieved) {
        Some(Achievement::Achieved)
    } else {
        targets.iter().filter_map(|t| t.achievement).find(|a| *a != Achievement::Achieved)
    };
    Ok(GoalView {
        id: goal.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
        version: goal.pointer("/meta/versionId").and_then(Value::as_str).and_then(|v| v.parse().ok()).unwrap_or(1),
        description: goal
            .pointer("/description/text")
            .or_else(|| goal.pointer("/description/coding/0/display"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        lifecycle: goal.get("lifecycleStatus").and_then(Value::as_str).unwrap_or_default().to_string(),
        targets,
        achievement,
    })
}

/// A goal to add to a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct NewGoal {
    /// What the goal is, as the clinician wrote it.
    pub description: String,
    /// The measure's LOINC code (one of [`MEASURES`], or another).
    pub measure: String,
    /// What the measure must reach.
    pub detail: TargetDetail,
    /// When (`YYYY-MM-DD`), when given.
    pub due: Option<String>,
}

/// The Goal resource of `new` for `patient`, active from `today`.
pub fn goal_resource(patient: &str, new: &NewGoal, today: &str) -> Result<Value> {
    if new.description.trim().is_empty() {
        return Err(Error::Invalid("a goal needs a description".into()));
    }
    if !new.measure.contains('-') || !new.measure.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return Err(Error::Invalid("the measure must be a LOINC code".into()));
    }
    if let Some(due) = &new.due
        && day(due).is_none_or(|_| due.len() != 10)
    {
        return Err(Error::Invalid("the due date must be a date (YYYY-MM-DD)".into()));
    }
    let name = MEASURES.iter().find(|(c, _, _)| *c == new.measure).map(|(_, n, _)| *n);
    let mut measure = json!({"coding": [{"system": LOINC, "code": new.measure}]});
    if let Some(name) = name {
        measure["coding"][0]["display"] = json!(name);
        measure["text"] = json!(name);
    }
    let quantity = |value: f64, unit: &Option<String>| {
        let mut q = json!({"value": value});
        if let Some(unit) = unit {
            q["unit"] = json!(unit);
            q["system"] = json!(UCUM);
            q["code"] = json!(unit);
        }
        q
    };
    let mut target = json!({"measure": measure});
    match &new.detail {
        TargetDetail::Quantity { comparator, value, unit } => {
            if !value.is_finite() {
                return Err(Error::Invalid("the target must be a number".into()));
            }
            let mut q = quantity(*value, unit);
            if let Some(code) = comparator.code() {
                q["comparator"] = json!(code);
            }
            target["detailQuantity"] = q;
        }
        TargetDetail::Range { low, high, unit } => {
            if low.is_none() && high.is_none() {
                return Err(Error::Invalid("a target range needs a bound".into()));
            }
            let mut range = json!({});
            if let Some(low) = low {
                range["low"] = quantity(*low, unit);
            }
            if let Some(high) = high {
                range["high"] = quantity(*high, unit);
            }
            target["detailRange"] = range;
        }
    }
    if let Some(due) = &new.due {
        target["dueDate"] = json!(due);
    }
    Ok(json!({
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": {"text": new.description.trim()},
        "subject": {"reference": format!("Patient/{patient}")},
        "startDate": today,
        "target": [target],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(value: f64) -> Reading {
        Reading { at: "2026-01-01".into(), value, text: value.to_string() }
    }

    #[test]
    fn distances_of_comparators_and_ranges() {
        let below_7 = TargetDetail::Quantity { comparator: Comparator::Less, value: 7.0, unit: Some("%".into()) };
        assert!(below_7.meets(6.9) && !below_7.meets(7.0) && !below_7.meets(7.5));
        assert!(below_7.distance(8.0) > below_7.distance(7.5));
        let range = TargetDetail::Range { low: Some(4.0), high: Some(6.0), unit: None };
        assert_eq!((range.distance(3.0), range.distance(5.0), range.distance(6.5)), (1.0, 0.0, 0.5));
        assert_eq!(below_7.text(), "< 7 %");
        let today = Date::from_calendar_date(2026, time::Month::June, 1).unwrap();
        let due_past = Date::from_calendar_date(2026, time::Month::May, 1).unwrap();
        let a =
            |l: f64, p: Option<f64>, due| achievement(&below_7, Some(&reading(l)), p.map(reading).as_ref(), due, today);
        assert_eq!(a(8.0, None, None), Some(Achievement::InProgress));
        assert_eq!(a(8.0, Some(8.0), None), Some(Achievement::NoChange));
        assert_eq!(a(8.0, Some(9.0), Some(due_past)), Some(Achievement::NotAchieved));
        assert_eq!(a(8.0, Some(7.5), Some(due_past)), Some(Achievement::NoProgress));
        assert_eq!(achievement(&below_7, None, None, None, today), None);
    }
}
