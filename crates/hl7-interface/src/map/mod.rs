//! HL7 v2 messages to FHIR: each supported message becomes ONE transaction Bundle ([`Plan`])
//! so that its effects commit together or not at all. Resources are matched by identifier
//! (conditional updates and creates), never by name; a Provenance with an id derived from the
//! message's log id points back at the message, which makes a re-run of the same logged message
//! write the same Provenance again instead of a second one.
//!
//! The mappings follow the HL7 v2-to-FHIR IG (segment and data type maps) where it covers the
//! message; see each module for what is mapped and what is not.

mod adt;
pub(crate) mod datatypes;
mod oru;
mod patient;
mod siu;
mod vxu;

use access::Access;
use datatypes::Key;
use hl7v2::{AckError, ErrorCode, ErrorLocation, Message, Segment};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// The system of `Provenance.entity.what.identifier`: the message's log id.
pub const MESSAGE_LOG_SYSTEM: &str = "urn:continuum:hl7v2:message-log";

/// Why a message could not be mapped. The text is fixed words (never message content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError {
    /// The HL7 error code (table 0357).
    pub code: ErrorCode,
    /// Where in the message.
    pub location: Option<ErrorLocation>,
    /// What is wrong, for a person.
    pub message: String,
}

impl MapError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        MapError { code, location: None, message: message.into() }
    }

    pub(crate) fn at(mut self, location: ErrorLocation) -> Self {
        self.location = Some(location);
        self
    }

    pub(crate) fn missing_segment(id: &str) -> Self {
        MapError::new(ErrorCode::SegmentSequenceError, format!("required segment {id} is missing"))
            .at(ErrorLocation::segment(id, 1))
    }

    pub(crate) fn missing_field(segment: &str, field: usize) -> Self {
        MapError::new(ErrorCode::RequiredFieldMissing, format!("required field {segment}-{field} is missing"))
            .at(ErrorLocation::field(segment, 1, field))
    }

    pub(crate) fn data_type(segment: &str, field: usize) -> Self {
        MapError::new(ErrorCode::DataTypeError, format!("{segment}-{field} does not hold a value of its data type"))
            .at(ErrorLocation::field(segment, 1, field))
    }

    pub(crate) fn storage() -> Self {
        MapError::new(ErrorCode::ApplicationInternalError, "the record could not be read")
    }

    /// The ACK error for this failure.
    pub fn to_ack_error(&self) -> AckError {
        let mut error = AckError::new(self.code).with_message(self.message.clone());
        if let Some(location) = &self.location {
            error = error.at(location.clone());
        }
        error
    }
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MapError {}

/// What a message is, as far as mapping goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Adt(adt::Trigger),
    Oru,
    Vxu,
    Siu(siu::Trigger),
}

impl Kind {
    /// The trigger event when it removes or moves data (one of
    /// [`crate::partners::DESTRUCTIVE_EVENTS`]): applied only for partners allowed it.
    pub(crate) fn destructive(self) -> Option<&'static str> {
        match self {
            Kind::Adt(adt::Trigger::A40) => Some("A40"),
            Kind::Adt(adt::Trigger::A11) => Some("A11"),
            Kind::Adt(adt::Trigger::A13) => Some("A13"),
            Kind::Siu(siu::Trigger::S15) => Some("S15"),
            Kind::Adt(_) | Kind::Oru | Kind::Vxu | Kind::Siu(_) => None,
        }
    }
}

/// Whether the message type (MSH-9) is one this interface takes; the error says which part is
/// not.
pub(crate) fn kind_of(message: &Message) -> Result<Kind, MapError> {
    let code = message.message_code().unwrap_or_default();
    let trigger = message.trigger_event().unwrap_or_default();
    let unsupported_event = || {
        MapError::new(ErrorCode::UnsupportedEventCode, format!("trigger event of {code} is not supported"))
            .at(ErrorLocation::field("MSH", 1, 9))
    };
    match code.as_str() {
        "ADT" => adt::Trigger::parse(&trigger).map(Kind::Adt).ok_or_else(unsupported_event),
        "ORU" if trigger == "R01" => Ok(Kind::Oru),
        "VXU" if trigger == "V04" => Ok(Kind::Vxu),
        "SIU" => siu::Trigger::parse(&trigger).map(Kind::Siu).ok_or_else(unsupported_event),
        "ORU" | "VXU" => Err(unsupported_event()),
        _ => Err(MapError::new(ErrorCode::UnsupportedMessageType, "message type is not supported")
            .at(ErrorLocation::field("MSH", 1, 9))),
    }
}

/// What mapping needs besides the message: the record (to find existing resources), the log
/// id, and defaults.
pub(crate) struct Context<'a> {
    /// The door, entered as the interface.
    pub access: &'a Access,
    /// The message's id in the log.
    pub log_id: i64,
    /// The system for identifiers without an assigning authority: the sending facility's.
    pub local_system: String,
    /// The offset for times sent without one (`+hh:mm` or `Z`).
    pub offset: String,
    /// The sender (MSH-3 and MSH-4, for the Provenance agent).
    pub sender: String,
    /// The message type, e.g. `ADT^A01`.
    pub message_type: String,
    /// MSH-10.
    pub control_id: String,
}

impl Context<'_> {
    /// The live resource of `resource_type` with identifier `key`; an error when several
    /// resources carry it (the record would be ambiguous).
    pub(crate) fn find(&self, resource_type: &str, key: &Key) -> Result<Option<Existing>, MapError> {
        let found =
            self.access.by_identifier(resource_type, Some(&key.system), &key.value).map_err(|_| MapError::storage())?;
        match found.as_slice() {
            [] => Ok(None),
            [version] => {
                let body = version.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
                Ok(Some(Existing { id: version.id.clone(), version: version.version, body }))
            }
            _ => Err(MapError::new(
                ErrorCode::DuplicateKeyIdentifier,
                format!("several {resource_type} resources carry the same identifier"),
            )),
        }
    }
}

/// A resource found in the record.
#[derive(Debug, Clone)]
pub(crate) struct Existing {
    pub id: String,
    pub version: u64,
    pub body: Value,
}

/// The transaction Bundle being built for one message.
#[derive(Debug, Default)]
pub struct Plan {
    entries: Vec<Value>,
    /// `Type|system|value` → the reference given to that resource in this Bundle.
    by_key: HashMap<String, String>,
    /// References (fullUrls or `Type/id`) of what the message writes, for the Provenance.
    targets: Vec<String>,
    /// Index of the entry writing the message's Patient, or its known id.
    patient: Option<PatientRef>,
    /// The id of a patient to merge into the message's Patient once the Bundle committed (A40).
    merge: Option<String>,
}

#[derive(Debug, Clone)]
enum PatientRef {
    Entry(usize),
    Known(String),
}

fn urn() -> String {
    format!("urn:uuid:{}", uuid::Uuid::new_v4())
}

impl Plan {
    fn push(&mut self, full_url: String, resource: Value, request: Value) -> String {
        self.entries.push(json!({"fullUrl": full_url, "resource": resource, "request": request}));
        self.targets.push(full_url.clone());
        full_url
    }

    /// Creates or replaces the resource with identifier `key` (a conditional update).
    pub(crate) fn upsert(&mut self, resource_type: &str, key: &Key, resource: Value) -> String {
        let index = format!("{resource_type}|{}|{}", key.system, key.value);
        if let Some(existing) = self.by_key.get(&index) {
            return existing.clone();
        }
        let url = format!("{resource_type}?{}", key.criteria());
        let reference = self.push(urn(), resource, json!({"method": "PUT", "url": url}));
        self.by_key.insert(index, reference.clone());
        reference
    }

    /// Creates the resource with identifier `key` unless one exists (a conditional create):
    /// reference data such as Practitioner and Location that the message only points at.
    pub(crate) fn ensure(&mut self, resource_type: &str, key: &Key, resource: Value) -> String {
        let index = format!("{resource_type}|{}|{}", key.system, key.value);
        if let Some(existing) = self.by_key.get(&index) {
            return existing.clone();
        }
        let request = json!({"method": "POST", "url": resource_type, "ifNoneExist": key.criteria()});
        let full_url = urn();
        self.entries.push(json!({"fullUrl": full_url, "resource": resource, "request": request}));
        self.by_key.insert(index, full_url.clone());
        full_url
    }

    /// Replaces `Type/id`, provided it is still at `version` (else the Bundle fails and the
    /// message is mapped again).
    pub(crate) fn replace(&mut self, resource_type: &str, existing: &Existing, mut resource: Value) -> String {
        resource["id"] = existing.id.clone().into();
        let url = format!("{resource_type}/{}", existing.id);
        let request = json!({"method": "PUT", "url": url, "ifMatch": format!("W/\"{}\"", existing.version)});
        self.entries.push(json!({"fullUrl": urn(), "resource": resource, "request": request}));
        self.targets.push(url.clone());
        url
    }

    /// Creates a resource that has no identifier to match on.
    pub(crate) fn create(&mut self, resource_type: &str, resource: Value) -> String {
        self.push(urn(), resource, json!({"method": "POST", "url": resource_type}))
    }

    /// Notes that the last entry added wrote the message's Patient.
    pub(crate) fn mark_patient_entry(&mut self) {
        self.patient = Some(PatientRef::Entry(self.entries.len().saturating_sub(1)));
    }

    /// Notes that patient `prior` is to be merged into the message's Patient after the Bundle
    /// committed (A40).
    pub(crate) fn merge_after(&mut self, prior: &str) {
        self.merge = Some(prior.to_string());
    }

    /// Notes the id of the message's Patient (when it is not written).
    pub(crate) fn mark_patient_known(&mut self, id: &str) {
        self.patient = Some(PatientRef::Known(id.to_string()));
    }

    /// The transaction Bundle, with the Provenance of the message.
    pub(crate) fn into_bundle(mut self, ctx: &Context<'_>) -> Mapped {
        let provenance = provenance(ctx, &self.targets);
        let id = provenance_id(ctx.log_id);
        self.entries.push(json!({
            "fullUrl": urn(),
            "resource": provenance,
            "request": {"method": "PUT", "url": format!("Provenance/{id}")},
        }));
        let (entry, known) = match self.patient {
            Some(PatientRef::Entry(i)) => (Some(i), None),
            Some(PatientRef::Known(id)) => (None, Some(id)),
            None => (None, None),
        };
        Mapped {
            bundle: json!({"resourceType": "Bundle", "type": "transaction", "entry": self.entries}),
            patient_entry: entry,
            known_patient: known,
            merge: self.merge,
        }
    }
}

/// A message mapped: its transaction Bundle, where its Patient is (the index of its entry, or
/// its id when it is not written), and the patient to merge into it once committed (A40).
#[derive(Debug)]
pub(crate) struct Mapped {
    pub bundle: Value,
    pub patient_entry: Option<usize>,
    pub known_patient: Option<String>,
    pub merge: Option<String>,
}

/// The id of the Provenance of logged message `log_id`.
pub fn provenance_id(log_id: i64) -> String {
    format!("hl7v2-message-{log_id}")
}

fn provenance(ctx: &Context<'_>, targets: &[String]) -> Value {
    let recorded = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
    let targets: Vec<Value> = targets.iter().map(|t| json!({"reference": t})).collect();
    json!({
        "resourceType": "Provenance",
        "id": provenance_id(ctx.log_id),
        "target": targets,
        "recorded": recorded,
        "activity": concept("http://terminology.hl7.org/CodeSystem/v3-DataOperation", "UPDATE", Some("revise")),
        "agent": [{
            "type": concept("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "assembler", Some("Assembler")),
            "who": {"identifier": {"system": "urn:continuum:hl7v2:sender", "value": ctx.sender}, "display": "HL7 v2 interface"},
        }],
        "entity": [{
            "role": "source",
            "what": {
                "identifier": {"system": MESSAGE_LOG_SYSTEM, "value": ctx.log_id.to_string()},
                "display": format!("HL7 v2 {} {}", ctx.message_type, ctx.control_id),
            },
        }],
    })
}

use datatypes::concept;

/// Maps `message` into a transaction Bundle (see [`Mapped`]).
pub(crate) fn map(message: &Message, kind: Kind, ctx: &Context<'_>) -> Result<Mapped, MapError> {
    let mut plan = Plan::default();
    match kind {
        Kind::Adt(trigger) => adt::map(message, trigger, ctx, &mut plan)?,
        Kind::Oru => oru::map(message, ctx, &mut plan)?,
        Kind::Vxu => vxu::map(message, ctx, &mut plan)?,
        Kind::Siu(trigger) => siu::map(message, trigger, ctx, &mut plan)?,
    }
    Ok(plan.into_bundle(ctx))
}

/// The one segment `id` of a message, or a segment error.
pub(crate) fn required<'m>(message: &'m Message, id: &str) -> Result<&'m Segment, MapError> {
    message.segment(id).ok_or_else(|| MapError::missing_segment(id))
}

/// Sets `key` in `object` when `value` is present.
pub(crate) fn put(object: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        object.insert(key.to_string(), value);
    }
}

/// An array value, or `None` when empty.
pub(crate) fn non_empty(values: Vec<Value>) -> Option<Value> {
    (!values.is_empty()).then_some(Value::Array(values))
}

/// A Practitioner from an XCN, ensured by its identifier; `None` without an id number.
pub(crate) fn practitioner(plan: &mut Plan, rep: &hl7v2::Repetition<'_>, ctx: &Context<'_>) -> Option<String> {
    let (key, name) = datatypes::xcn(rep, &ctx.local_system)?;
    let key = key?;
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Practitioner".into());
    resource.insert("identifier".into(), json!([key.to_json()]));
    put(&mut resource, "name", name.map(|n| json!([n])));
    Some(plan.ensure("Practitioner", &key, Value::Object(resource)))
}

/// A Location from a PL (point of care, room, bed, facility, status, type, building, floor),
/// ensured by an identifier built from its parts.
pub(crate) fn location(plan: &mut Plan, rep: &hl7v2::Repetition<'_>, ctx: &Context<'_>) -> Option<String> {
    use datatypes::{comp, sub};
    let parts: Vec<String> =
        [sub(rep, 4, 1), sub(rep, 7, 1), sub(rep, 8, 1), sub(rep, 1, 1), sub(rep, 2, 1), sub(rep, 3, 1)]
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
    if parts.iter().all(String::is_empty) {
        return None;
    }
    let key = Key { system: format!("{}:location", ctx.local_system), value: parts.join("|") };
    let name: Vec<String> =
        [sub(rep, 1, 1), comp(rep, 2), comp(rep, 3), sub(rep, 4, 1)].into_iter().flatten().collect();
    let mut resource = json!({"resourceType": "Location", "identifier": [key.to_json()], "name": name.join(" ")});
    let physical = if sub(rep, 3, 1).is_some() {
        Some(("bd", "Bed"))
    } else if sub(rep, 2, 1).is_some() {
        Some(("ro", "Room"))
    } else if sub(rep, 8, 1).is_some() {
        Some(("lvl", "Level"))
    } else if sub(rep, 7, 1).is_some() {
        Some(("bu", "Building"))
    } else {
        None
    };
    if let Some((code, display)) = physical {
        resource["physicalType"] =
            concept("http://terminology.hl7.org/CodeSystem/location-physical-type", code, Some(display));
    }
    Some(plan.ensure("Location", &key, resource))
}
