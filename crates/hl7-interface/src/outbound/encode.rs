//! FHIR to HL7 v2 for outbound messages: the ADT of an Encounter and the ORU^R01 of a
//! DiagnosticReport. Text goes through [`hl7v2::Message::set`], which escapes delimiters.

use hl7v2::{Delimiters, Header, Message};
use serde_json::Value;
use store::Records;

/// Why an outbound message could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// A resource it needs does not exist (or was deleted).
    #[error("{0} was not found")]
    NotFound(String),
    /// The store failed.
    #[error("the record could not be read")]
    Storage,
    /// The message could not be assembled.
    #[error("the message could not be encoded")]
    Encoding,
}

impl From<hl7v2::Error> for OutboundError {
    fn from(_: hl7v2::Error) -> Self {
        OutboundError::Encoding
    }
}

/// Sending application and facility of outbound messages.
const SENDER: &str = "CONTINUUM";
/// The HL7 version outbound messages claim.
const VERSION: &str = "2.5.1";

/// A new message with our MSH.
fn header(code: &str, trigger: &str, structure: &str, control_id: &str) -> Message {
    let now = now_dtm();
    Message::with_header(
        Delimiters::default(),
        &Header {
            sending_application: SENDER,
            sending_facility: SENDER,
            receiving_application: "",
            receiving_facility: "",
            timestamp: &now,
            message_code: code,
            trigger_event: trigger,
            message_structure: structure,
            control_id,
            processing_id: "P",
            version: VERSION,
        },
    )
}

fn now_dtm() -> String {
    let format = time::macros::format_description!("[year][month][day][hour][minute][second]+0000");
    time::OffsetDateTime::now_utc().format(&format).unwrap_or_default()
}

/// A FHIR date or dateTime as an HL7 DTM (`2024-03-01T11:30:00+01:00` → `20240301113000+0100`).
pub(crate) fn dtm(fhir: &str) -> String {
    let (main, zone) = if let Some(main) = fhir.strip_suffix('Z') {
        (main, "+0000".to_string())
    } else if fhir.len() > 19 && matches!(fhir.as_bytes()[fhir.len() - 6], b'+' | b'-') {
        let (main, zone) = fhir.split_at(fhir.len() - 6);
        (main, zone.replace(':', ""))
    } else {
        (fhir, String::new())
    };
    let main = main.split('.').next().unwrap_or(main);
    let digits: String = main.chars().filter(char::is_ascii_digit).collect();
    format!("{digits}{zone}")
}

fn str_at<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn set(message: &mut Message, path: &str, text: Option<&str>) -> Result<(), OutboundError> {
    match text {
        Some(text) if !text.is_empty() => Ok(message.set(path, text)?),
        _ => Ok(()),
    }
}

/// The short name HL7 uses for a code system URI, when there is one.
fn system_name(system: &str) -> Option<&str> {
    match system {
        "http://loinc.org" => Some("LN"),
        "http://snomed.info/sct" => Some("SCT"),
        "http://unitsofmeasure.org" => Some("UCUM"),
        "http://hl7.org/fhir/sid/cvx" => Some("CVX"),
        "http://hl7.org/fhir/sid/icd-10-cm" => Some("I10"),
        _ => system.strip_prefix("urn:oid:"),
    }
}

/// The first coding of a CodeableConcept into a CWE at `path` (code^text^system).
fn set_cwe(message: &mut Message, path: &str, concept: Option<&Value>) -> Result<(), OutboundError> {
    let Some(concept) = concept else { return Ok(()) };
    let coding = concept.pointer("/coding/0");
    let code = coding.and_then(|c| str_at(c, "/code"));
    let display = coding.and_then(|c| str_at(c, "/display")).or_else(|| str_at(concept, "/text"));
    set(message, &format!("{path}.1"), code)?;
    set(message, &format!("{path}.2"), display)?;
    set(message, &format!("{path}.3"), coding.and_then(|c| str_at(c, "/system")).and_then(system_name))
}

/// PID of `patient` (`id` when the Patient itself is unknown).
fn set_pid(message: &mut Message, patient: Option<&Value>, id: Option<&str>) -> Result<(), OutboundError> {
    set(message, "PID-1", Some("1"))?;
    let mut n = 1;
    if let Some(identifiers) = patient.and_then(|p| p.get("identifier")).and_then(Value::as_array) {
        for identifier in identifiers {
            let Some(value) = str_at(identifier, "/value") else { continue };
            set(message, &format!("PID-3({n}).1"), Some(value))?;
            match str_at(identifier, "/system") {
                Some(system) if system.starts_with("urn:oid:") => {
                    set(message, &format!("PID-3({n}).4.2"), system.strip_prefix("urn:oid:"))?;
                    set(message, &format!("PID-3({n}).4.3"), Some("ISO"))?;
                }
                Some(system) => {
                    let name = system.strip_prefix(crate::map::datatypes::AUTHORITY_PREFIX).unwrap_or(system);
                    set(message, &format!("PID-3({n}).4.1"), Some(name))?;
                }
                None => {}
            }
            set(message, &format!("PID-3({n}).5"), str_at(identifier, "/type/coding/0/code"))?;
            n += 1;
        }
    }
    let id = patient.and_then(|p| str_at(p, "/id")).or(id);
    if let Some(id) = id {
        set(message, &format!("PID-3({n}).1"), Some(id))?;
        set(message, &format!("PID-3({n}).4.1"), Some(SENDER))?;
        set(message, &format!("PID-3({n}).5"), Some("PI"))?;
    }
    let Some(patient) = patient else { return Ok(()) };
    if let Some(name) = patient.pointer("/name/0") {
        set(message, "PID-5.1", str_at(name, "/family"))?;
        set(message, "PID-5.2", str_at(name, "/given/0"))?;
        set(message, "PID-5.3", str_at(name, "/given/1"))?;
    }
    set(message, "PID-7", str_at(patient, "/birthDate").map(dtm).as_deref())?;
    let sex = match str_at(patient, "/gender") {
        Some("female") => Some("F"),
        Some("male") => Some("M"),
        Some("other") => Some("O"),
        Some("unknown") => Some("U"),
        _ => None,
    };
    set(message, "PID-8", sex)
}

/// The ADT^`event` message announcing `encounter` (PV1 from the Encounter, PID from `patient`).
pub fn adt_message(
    event: &str,
    encounter: &Value,
    patient: Option<&Value>,
    control_id: &str,
) -> Result<String, OutboundError> {
    let structure = match event {
        "A01" | "A04" | "A08" => "ADT_A01",
        _ => "ADT_A03",
    };
    let mut message = header("ADT", event, structure, control_id);
    set(&mut message, "EVN-1", Some(event))?;
    set(&mut message, "EVN-2", Some(&now_dtm()))?;
    let patient_id = str_at(encounter, "/subject/reference").and_then(|r| r.strip_prefix("Patient/"));
    set_pid(&mut message, patient, patient_id)?;
    set(&mut message, "PV1-1", Some("1"))?;
    let class = match str_at(encounter, "/class/code") {
        Some("EMER") => "E",
        Some("IMP" | "ACUTE" | "NONAC" | "SS") => "I",
        Some("OBSENC") => "O",
        Some("PRENC") => "P",
        Some("AMB" | "VR" | "HH" | "FLD") => "O",
        _ => "U",
    };
    set(&mut message, "PV1-2", Some(class))?;
    set(&mut message, "PV1-3.1", str_at(encounter, "/location/0/location/display"))?;
    set(&mut message, "PV1-10", str_at(encounter, "/serviceType/coding/0/code"))?;
    set(&mut message, "PV1-19.1", str_at(encounter, "/id"))?;
    set(&mut message, "PV1-19.4.1", Some(SENDER))?;
    set(&mut message, "PV1-19.5", Some("VN"))?;
    set(&mut message, "PV1-36", str_at(encounter, "/hospitalization/dischargeDisposition/coding/0/code"))?;
    set(&mut message, "PV1-44", str_at(encounter, "/period/start").map(dtm).as_deref())?;
    set(&mut message, "PV1-45", str_at(encounter, "/period/end").map(dtm).as_deref())?;
    Ok(message.encode())
}

fn read_json(records: &Records, resource_type: &str, id: &str) -> Result<Value, OutboundError> {
    let version = records.read(resource_type, id).map_err(|e| match e.kind() {
        store::ErrorKind::NotFound | store::ErrorKind::Gone => OutboundError::NotFound(format!("{resource_type}/{id}")),
        _ => OutboundError::Storage,
    })?;
    version.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).ok_or(OutboundError::Storage)
}

fn result_status(status: Option<&str>) -> &'static str {
    match status {
        Some("final") => "F",
        Some("preliminary" | "partial" | "registered") => "P",
        Some("amended" | "corrected" | "appended") => "C",
        Some("cancelled") => "X",
        Some("entered-in-error") => "W",
        _ => "F",
    }
}

/// The ORU^R01 of `DiagnosticReport/report_id`: PID of its subject, OBR of the report, one OBX
/// per result Observation (value, UCUM unit, reference range, abnormal flag, status).
pub fn oru_r01(records: &Records, report_id: &str) -> Result<String, OutboundError> {
    let report = read_json(records, "DiagnosticReport", report_id)?;
    let patient_id = str_at(&report, "/subject/reference").and_then(|r| r.strip_prefix("Patient/"));
    let patient = match patient_id {
        Some(id) => Some(read_json(records, "Patient", id)?),
        None => None,
    };
    let control_id = format!("ORU{report_id}");
    let mut message = header("ORU", "R01", "ORU_R01", &control_id);
    set_pid(&mut message, patient.as_ref(), patient_id)?;
    set(&mut message, "OBR-1", Some("1"))?;
    set(&mut message, "OBR-3.1", str_at(&report, "/identifier/0/value").or(Some(report_id)))?;
    set_cwe(&mut message, "OBR-4", report.get("code"))?;
    let effective = str_at(&report, "/effectiveDateTime").or_else(|| str_at(&report, "/effectivePeriod/start"));
    set(&mut message, "OBR-7", effective.map(dtm).as_deref())?;
    set(&mut message, "OBR-22", str_at(&report, "/issued").map(dtm).as_deref())?;
    set(&mut message, "OBR-25", Some(result_status(str_at(&report, "/status"))))?;
    let results = report.get("result").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut n = 0;
    for reference in results.iter().filter_map(|r| str_at(r, "/reference")) {
        let Some(id) = reference.strip_prefix("Observation/") else { continue };
        let observation = read_json(records, "Observation", id)?;
        n += 1;
        let obx = |field: usize| format!("OBX({n})-{field}");
        set(&mut message, &obx(1), Some(&n.to_string()))?;
        set_cwe(&mut message, &obx(3), observation.get("code"))?;
        if let Some(quantity) = observation.get("valueQuantity") {
            set(&mut message, &obx(2), Some("NM"))?;
            let value = quantity.get("value").map(|v| v.to_string());
            set(&mut message, &obx(5), value.as_deref())?;
            set(&mut message, &format!("{}.1", obx(6)), str_at(quantity, "/code").or(str_at(quantity, "/unit")))?;
            set(&mut message, &format!("{}.2", obx(6)), str_at(quantity, "/unit"))?;
            set(&mut message, &format!("{}.3", obx(6)), str_at(quantity, "/system").and_then(system_name))?;
        } else if let Some(text) = str_at(&observation, "/valueString") {
            set(&mut message, &obx(2), Some("ST"))?;
            set(&mut message, &obx(5), Some(text))?;
        } else if let Some(concept) = observation.get("valueCodeableConcept") {
            set(&mut message, &obx(2), Some("CWE"))?;
            set_cwe(&mut message, &obx(5), Some(concept))?;
        }
        if let Some(range) = observation.pointer("/referenceRange/0") {
            let bound = |p: &str| range.pointer(p).map(|v| v.to_string());
            let text = match (bound("/low/value"), bound("/high/value")) {
                (Some(low), Some(high)) => Some(format!("{low}-{high}")),
                (Some(low), None) => Some(format!(">{low}")),
                (None, Some(high)) => Some(format!("<{high}")),
                (None, None) => str_at(range, "/text").map(str::to_string),
            };
            set(&mut message, &obx(7), text.as_deref())?;
        }
        set(&mut message, &obx(8), str_at(&observation, "/interpretation/0/coding/0/code"))?;
        set(&mut message, &obx(11), Some(result_status(str_at(&observation, "/status"))))?;
        let effective = str_at(&observation, "/effectiveDateTime");
        set(&mut message, &obx(14), effective.map(dtm).as_deref())?;
    }
    Ok(message.encode())
}

#[cfg(test)]
mod tests {
    use super::dtm;

    #[test]
    fn fhir_times_become_dtm() {
        assert_eq!(dtm("2024-03-01T11:30:00+01:00"), "20240301113000+0100");
        assert_eq!(dtm("2024-03-01T11:30:00.123Z"), "20240301113000+0000");
        assert_eq!(dtm("2024-03-01"), "20240301");
        assert_eq!(dtm("1980-02-15"), "19800215");
    }
}
