//! Vital signs as entered at the bedside, recorded as vital-sign `Observation`s (LOINC coded,
//! UCUM units) in one transaction, with a body mass index when weight and height are both given.

use crate::Result;
use access::Access;
use serde_json::{Value, json};

/// A vital sign measured as one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vital {
    /// Body weight, kg.
    Weight,
    /// Body height, cm.
    Height,
    /// Heart rate, per minute.
    HeartRate,
    /// Respiratory rate, per minute.
    RespiratoryRate,
    /// Body temperature, °C.
    Temperature,
    /// Oxygen saturation, %.
    OxygenSaturation,
}

impl Vital {
    /// Every one, in the order they are entered and recorded.
    pub const ALL: [Vital; 6] = [
        Vital::Weight,
        Vital::Height,
        Vital::HeartRate,
        Vital::RespiratoryRate,
        Vital::Temperature,
        Vital::OxygenSaturation,
    ];

    /// Its LOINC code.
    pub fn loinc(self) -> &'static str {
        match self {
            Vital::Weight => "29463-7",
            Vital::Height => "8302-2",
            Vital::HeartRate => "8867-4",
            Vital::RespiratoryRate => "9279-1",
            Vital::Temperature => "8310-5",
            Vital::OxygenSaturation => "2708-6",
        }
    }

    /// The LOINC display it is recorded with.
    pub fn display(self) -> &'static str {
        match self {
            Vital::Weight => "Body weight",
            Vital::Height => "Body height",
            Vital::HeartRate => "Heart rate",
            Vital::RespiratoryRate => "Respiratory rate",
            Vital::Temperature => "Body temperature",
            Vital::OxygenSaturation => "Oxygen saturation in Arterial blood",
        }
    }

    /// Its UCUM unit (also the unit shown).
    pub fn unit(self) -> &'static str {
        match self {
            Vital::Weight => "kg",
            Vital::Height => "cm",
            Vital::HeartRate | Vital::RespiratoryRate => "/min",
            Vital::Temperature => "Cel",
            Vital::OxygenSaturation => "%",
        }
    }

    /// The values that can be recorded (anything outside is a typing error).
    pub fn plausible_range(self) -> (f64, f64) {
        match self {
            Vital::Weight => (0.2, 500.0),
            Vital::Height => (20.0, 272.0),
            Vital::HeartRate => (10.0, 300.0),
            Vital::RespiratoryRate => (2.0, 80.0),
            Vital::Temperature => (25.0, 45.0),
            Vital::OxygenSaturation => (40.0, 100.0),
        }
    }
}

/// A blood pressure, mm[Hg].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BloodPressure {
    /// Systolic pressure.
    pub systolic: f64,
    /// Diastolic pressure.
    pub diastolic: f64,
}

impl BloodPressure {
    /// The systolic values that can be recorded.
    pub const SYSTOLIC_RANGE: (f64, f64) = (40.0, 300.0);
    /// The diastolic values that can be recorded.
    pub const DIASTOLIC_RANGE: (f64, f64) = (20.0, 200.0);
}

/// What was measured at one time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VitalSigns {
    /// The blood pressure, when taken.
    pub blood_pressure: Option<BloodPressure>,
    /// The other measurements taken, each once.
    pub measured: Vec<(Vital, f64)>,
}

impl VitalSigns {
    /// Whether nothing was measured.
    pub fn is_empty(&self) -> bool {
        self.blood_pressure.is_none() && self.measured.is_empty()
    }

    fn value(&self, vital: Vital) -> Option<f64> {
        self.measured.iter().find(|(v, _)| *v == vital).map(|(_, n)| *n)
    }
}

/// The body mass index (kg/m²) of a weight in kg and a height in cm.
pub fn bmi(weight_kg: f64, height_cm: f64) -> f64 {
    weight_kg / (height_cm / 100.0).powi(2)
}

fn vital_signs_category() -> Value {
    json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}])
}

fn quantity(value: f64, unit: &str) -> Value {
    // Whole numbers are kept whole (128, not 128.0); others to two decimals.
    let rounded = (value * 100.0).round() / 100.0;
    let value = if rounded.fract() == 0.0 && rounded.abs() < 1e9 { json!(rounded as i64) } else { json!(rounded) };
    json!({"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit})
}

/// The Observations recording `signs` of `patient`, taken at `at` (a FHIR instant): the blood
/// pressure panel, each measurement, then the BMI when weight and height were both measured.
pub fn observations(patient: &str, signs: &VitalSigns, at: &str) -> Vec<Value> {
    let subject = json!({"reference": format!("Patient/{patient}")});
    let observation = |code: &str, display: &str| {
        json!({"resourceType": "Observation", "status": "final", "category": vital_signs_category(),
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display},
            "subject": subject, "effectiveDateTime": at, "issued": at})
    };
    let mut resources = Vec::new();
    if let Some(bp) = signs.blood_pressure {
        let mut panel = observation("85354-9", "Blood pressure panel with all children optional");
        panel["component"] = json!([
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}]}, "valueQuantity": quantity(bp.systolic, "mm[Hg]")},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic blood pressure"}]}, "valueQuantity": quantity(bp.diastolic, "mm[Hg]")},
        ]);
        resources.push(panel);
    }
    for vital in Vital::ALL {
        if let Some(value) = signs.value(vital) {
            let mut o = observation(vital.loinc(), vital.display());
            o["valueQuantity"] = quantity(value, vital.unit());
            resources.push(o);
        }
    }
    if let (Some(w), Some(h)) = (signs.value(Vital::Weight), signs.value(Vital::Height)) {
        let mut o = observation("39156-5", "Body mass index (BMI) [Ratio]");
        o["valueQuantity"] = quantity(bmi(w, h), "kg/m2");
        resources.push(o);
    }
    resources
}

/// Records `signs` of `patient` now, in one transaction through the door.
pub fn record(access: &Access, patient: &str, signs: &VitalSigns) -> Result<()> {
    let now = store::format_instant(time::OffsetDateTime::now_utc());
    let entries: Vec<Value> = observations(patient, signs, &now)
        .into_iter()
        .map(|r| json!({"resource": r, "request": {"method": "POST", "url": "Observation"}}))
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    access.transaction_for(bundle, Some(patient))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bmi_is_weight_over_height_in_metres_squared() {
        assert!((bmi(70.0, 175.0) - 22.857).abs() < 0.001);
        assert!((bmi(100.0, 200.0) - 25.0).abs() < 1e-9);
    }

    #[test]
    fn observations_add_a_bmi_only_with_weight_and_height() {
        let at = "2026-01-02T03:04:05Z";
        let both = VitalSigns {
            blood_pressure: Some(BloodPressure { systolic: 128.0, diastolic: 82.0 }),
            measured: vec![(Vital::Height, 175.0), (Vital::Weight, 70.0)],
        };
        let written = observations("p1", &both, at);
        let codes: Vec<&str> =
            written.iter().filter_map(|o| o.pointer("/code/coding/0/code").and_then(Value::as_str)).collect();
        assert_eq!(codes, ["85354-9", "29463-7", "8302-2", "39156-5"]);
        assert_eq!(written[0].pointer("/component/0/valueQuantity/value"), Some(&json!(128)));
        assert_eq!(written[3].pointer("/valueQuantity/value"), Some(&json!(22.86)));
        assert_eq!(written[3].pointer("/subject/reference"), Some(&json!("Patient/p1")));
        let weight_only = VitalSigns { blood_pressure: None, measured: vec![(Vital::Weight, 70.5)] };
        let written = observations("p1", &weight_only, at);
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].pointer("/valueQuantity/value"), Some(&json!(70.5)));
    }
}
