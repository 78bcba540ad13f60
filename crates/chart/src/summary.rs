//! The chart summary: what a clinician sees first — active problems and medications, the
//! latest of each vital sign, recent results with their abnormal flags, immunizations,
//! upcoming appointments, open tasks and referrals. A section is `None` when the caller's role
//! does not read its type.

use crate::elements::{concept, first_code, observation_value, quantity_number, when};
use crate::lists::{Medication, Problem};
use crate::read::search_if_allowed;
use crate::reconcile::is_held_back;
use crate::{Result, trends};
use access::Access;
use serde_json::Value;

/// A measurement or result (`Observation`).
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The Observation's id.
    pub id: String,
    /// What was measured.
    pub name: String,
    /// The value as text (`7.2 %`, `120/80 mm[Hg]`).
    pub value: String,
    /// When, as written.
    pub when: Option<String>,
    /// Whether it is outside its reference range or flagged so.
    pub flag: Option<AbnormalFlag>,
}

impl Measurement {
    /// The view of an Observation.
    pub fn of(observation: &Value) -> Measurement {
        Measurement {
            id: id_of(observation),
            name: concept(observation.get("code")),
            value: observation_value(observation),
            when: when(observation).map(str::to_string),
            flag: abnormal_flag(observation),
        }
    }
}

/// How a result lies against its reference range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbnormalFlag {
    /// Above the range.
    High,
    /// Below the range.
    Low,
    /// Flagged abnormal.
    Abnormal,
}

impl AbnormalFlag {
    /// Its one-letter code (`H`, `L`, `A`).
    pub fn code(self) -> &'static str {
        match self {
            AbnormalFlag::High => "H",
            AbnormalFlag::Low => "L",
            AbnormalFlag::Abnormal => "A",
        }
    }
}

/// How a result lies against its reference range: its interpretation when recorded, else its
/// value against its own range, else against the usual one ([`trends::typical_range`]).
pub fn abnormal_flag(observation: &Value) -> Option<AbnormalFlag> {
    let interpretation = first_code(observation.get("interpretation").and_then(|i| i.get(0)));
    match interpretation {
        Some("H" | "HH" | "HU") => return Some(AbnormalFlag::High),
        Some("L" | "LL" | "LU") => return Some(AbnormalFlag::Low),
        Some("A" | "AA") => return Some(AbnormalFlag::Abnormal),
        _ => {}
    }
    let value = observation.get("valueQuantity").and_then(quantity_number)?;
    let (low, high) = match observation.pointer("/referenceRange/0") {
        Some(range) => (range.get("low").and_then(quantity_number), range.get("high").and_then(quantity_number)),
        None => {
            let code = observation.pointer("/code/coding/0/code").and_then(Value::as_str)?;
            let known = trends::typical_range(code)?;
            (known.low, known.high)
        }
    };
    if high.is_some_and(|h| value > h) {
        Some(AbnormalFlag::High)
    } else if low.is_some_and(|l| value < l) {
        Some(AbnormalFlag::Low)
    } else {
        None
    }
}

/// An immunization given.
#[derive(Debug, Clone, PartialEq)]
pub struct Immunization {
    /// The Immunization's id.
    pub id: String,
    /// The vaccine.
    pub vaccine: String,
    /// When, as written.
    pub when: Option<String>,
}

/// A booked appointment.
#[derive(Debug, Clone, PartialEq)]
pub struct Appointment {
    /// The Appointment's id.
    pub id: String,
    /// Its start, as written.
    pub start: Option<String>,
    /// What it is for: its description, else its first service type.
    pub description: String,
}

/// An open task or referral.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenItem {
    /// The Task's or ServiceRequest's id.
    pub id: String,
    /// What is to be done.
    pub description: String,
    /// Its status code.
    pub status: String,
}

/// What the summary shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Active problems, latest onset first.
    pub problems: Option<Vec<Problem>>,
    /// Active medications, latest first.
    pub medications: Option<Vec<Medication>>,
    /// The latest immunizations.
    pub immunizations: Option<Vec<Immunization>>,
    /// The newest of each vital sign.
    pub vitals: Option<Vec<Measurement>>,
    /// The latest laboratory results.
    pub results: Option<Vec<Measurement>>,
    /// Appointments from today on, soonest first.
    pub appointments: Option<Vec<Appointment>>,
    /// Open tasks.
    pub tasks: Option<Vec<OpenItem>>,
    /// Active or on-hold referrals and orders.
    pub referrals: Option<Vec<OpenItem>>,
}

fn id_of(resource: &Value) -> String {
    resource.get("id").and_then(Value::as_str).unwrap_or_default().to_string()
}

fn text_or_concept(resource: &Value, text: &str, code: Option<&Value>) -> String {
    resource.get(text).and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| concept(code))
}

fn status_of(resource: &Value) -> String {
    resource.get("status").and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The newest of each measurement among `vitals` (newest first), told apart by its first code
/// (displays differ by source).
fn latest_of_each(vitals: Vec<Value>) -> Vec<Value> {
    let key = |o: &Value| {
        o.pointer("/code/coding/0/code")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| concept(o.get("code")))
    };
    let mut latest: Vec<Value> = Vec::new();
    for v in vitals {
        if !latest.iter().any(|l| key(l) == key(&v)) {
            latest.push(v);
        }
    }
    latest
}

/// `patient`'s summary on `today`.
pub fn summary(access: &Access, patient: &str, today: time::Date) -> Result<Summary> {
    let p = || ("patient", patient.to_string());
    let section = |resource_type: &str, pairs: &[(&str, String)], count: usize| {
        search_if_allowed(access, resource_type, pairs, count)
    };
    let vitals = section("Observation", &[p(), ("category", "vital-signs".into()), ("_sort", "-date".into())], 60)?;
    let problems =
        section("Condition", &[p(), ("clinical-status", "active".into()), ("_sort", "-onset-date".into())], 100)?;
    let medications =
        section("MedicationRequest", &[p(), ("status", "active".into()), ("_sort", "-authoredon".into())], 100)?;
    let immunizations = section("Immunization", &[p(), ("_sort", "-date".into())], 10)?;
    let results = section("Observation", &[p(), ("category", "laboratory".into()), ("_sort", "-date".into())], 15)?;
    let appointments = section("Appointment", &[p(), ("date", format!("ge{today}")), ("_sort", "date".into())], 10)?;
    let tasks =
        section("Task", &[p(), ("status", "draft,requested,received,accepted,ready,in-progress,on-hold".into())], 20)?;
    let referrals = section("ServiceRequest", &[p(), ("status", "active,on-hold".into())], 20)?;
    let each = |found: Option<Vec<Value>>, view: &dyn Fn(&Value) -> _| found.map(|f| f.iter().map(view).collect());
    Ok(Summary {
        // Items from outside wait for reconciliation off the summary too.
        problems: problems.map(|f| f.iter().filter(|r| !is_held_back(r)).map(Problem::of).collect()),
        medications: medications.map(|f| f.iter().filter(|r| !is_held_back(r)).map(Medication::of).collect()),
        immunizations: immunizations.map(|f| {
            f.iter()
                .map(|i| Immunization {
                    id: id_of(i),
                    vaccine: concept(i.get("vaccineCode")),
                    when: when(i).map(str::to_string),
                })
                .collect()
        }),
        vitals: vitals.map(|f| latest_of_each(f).iter().map(Measurement::of).collect()),
        results: results.map(|f| f.iter().map(Measurement::of).collect()),
        appointments: appointments.map(|f| {
            f.iter()
                .map(|a| Appointment {
                    id: id_of(a),
                    start: a.get("start").and_then(Value::as_str).map(str::to_string),
                    description: text_or_concept(a, "description", a.get("serviceType").and_then(|t| t.get(0))),
                })
                .collect()
        }),
        tasks: each(tasks, &|t| OpenItem {
            id: id_of(t),
            description: text_or_concept(t, "description", t.get("code")),
            status: status_of(t),
        }),
        referrals: each(referrals, &|r| OpenItem {
            id: id_of(r),
            description: concept(r.get("code")),
            status: status_of(r),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_are_flagged_by_interpretation_own_range_or_usual_range() {
        let flagged = json!({"interpretation": [{"coding": [{"code": "HH"}]}]});
        assert_eq!(abnormal_flag(&flagged), Some(AbnormalFlag::High));
        let own =
            json!({"valueQuantity": {"value": 3}, "referenceRange": [{"low": {"value": 4}, "high": {"value": 6}}]});
        assert_eq!(abnormal_flag(&own), Some(AbnormalFlag::Low));
        let usual = json!({"code": {"coding": [{"code": "4548-4"}]}, "valueQuantity": {"value": 6.2}});
        assert_eq!(abnormal_flag(&usual).map(AbnormalFlag::code), Some("H"));
        let unknown = json!({"code": {"coding": [{"code": "0000-0"}]}, "valueQuantity": {"value": 6.2}});
        assert_eq!(abnormal_flag(&unknown), None);
    }

    #[test]
    fn only_the_newest_of_each_vital_is_kept() {
        let vital =
            |code: &str, value: i64| json!({"code": {"coding": [{"code": code}]}, "valueQuantity": {"value": value}});
        let latest = latest_of_each(vec![vital("29463-7", 71), vital("8867-4", 60), vital("29463-7", 70)]);
        assert_eq!(latest, vec![vital("29463-7", 71), vital("8867-4", 60)]);
    }
}
