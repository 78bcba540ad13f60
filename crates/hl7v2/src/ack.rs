//! Acknowledgements (original acknowledgement mode, HL7 v2.5.1 chapter 2).
//!
//! The ACK goes back with the original's delimiters: MSH-3/4 and MSH-5/6 swapped, MSH-9
//! `ACK^<trigger>^ACK`, the original's processing id (MSH-11), version (MSH-12) and character
//! set (MSH-18); the caller supplies its own control id (MSH-10) and time (MSH-7). MSA-1 holds
//! the code, MSA-2 the original control id. An error goes in ERR, written for the version
//! acknowledged: from v2.5, ERR-2 location, ERR-3 code (table 0357), ERR-4 severity and ERR-8
//! user message; before v2.5, ERR-1 (segment^sequence^field^code) with the text in MSA-3 and
//! the code in MSA-6.
//!
//! Error texts must never carry patient data: the user message is sent to the other system
//! and usually logged there. [`AckError::from_parse_error`] only uses this crate's fixed texts.
//!
//! # Input that is not a usable message
//!
//! When no usable MSH can be read, the standard's answer is still a reject (AR, "message
//! rejected") so the sender stops retrying the same bytes; [`ack_unparseable`] salvages what
//! the first line allows — sender and receiver (swapped), control id, trigger, processing id
//! and version — and leaves the rest empty (MSA-2 empty when no control id can be read).

use crate::delimiters::Delimiters;
use crate::error::Error;
use crate::message::{Message, decode_bytes};
use crate::path::Location;
use crate::segment::Segment;

/// The acknowledgement code (MSA-1, table 0008), original mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// Application accept: processed.
    AA,
    /// Application error: could not be processed; resending it unchanged will fail again.
    AE,
    /// Application reject: refused for its header (type, version, processing id) or form.
    AR,
}

impl AckCode {
    /// The code as sent in MSA-1.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AA => "AA",
            Self::AE => "AE",
            Self::AR => "AR",
        }
    }
}

/// HL7 error codes (table 0357).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 0: message accepted.
    MessageAccepted,
    /// 100: segments out of order or required segments missing.
    SegmentSequenceError,
    /// 101: a required field is missing.
    RequiredFieldMissing,
    /// 102: a value does not match its data type.
    DataTypeError,
    /// 103: a value is not in its table.
    TableValueNotFound,
    /// 200: the message type is not supported.
    UnsupportedMessageType,
    /// 201: the trigger event is not supported.
    UnsupportedEventCode,
    /// 202: the processing id is not supported.
    UnsupportedProcessingId,
    /// 203: the version id is not supported.
    UnsupportedVersionId,
    /// 204: unknown key identifier (e.g. a patient that does not exist).
    UnknownKeyIdentifier,
    /// 205: duplicate key identifier.
    DuplicateKeyIdentifier,
    /// 206: the record is locked.
    ApplicationRecordLocked,
    /// 207: application internal error.
    ApplicationInternalError,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Self::MessageAccepted => 0,
            Self::SegmentSequenceError => 100,
            Self::RequiredFieldMissing => 101,
            Self::DataTypeError => 102,
            Self::TableValueNotFound => 103,
            Self::UnsupportedMessageType => 200,
            Self::UnsupportedEventCode => 201,
            Self::UnsupportedProcessingId => 202,
            Self::UnsupportedVersionId => 203,
            Self::UnknownKeyIdentifier => 204,
            Self::DuplicateKeyIdentifier => 205,
            Self::ApplicationRecordLocked => 206,
            Self::ApplicationInternalError => 207,
        }
    }

    /// The table's display text.
    pub fn text(self) -> &'static str {
        match self {
            Self::MessageAccepted => "Message accepted",
            Self::SegmentSequenceError => "Segment sequence error",
            Self::RequiredFieldMissing => "Required field missing",
            Self::DataTypeError => "Data type error",
            Self::TableValueNotFound => "Table value not found",
            Self::UnsupportedMessageType => "Unsupported message type",
            Self::UnsupportedEventCode => "Unsupported event code",
            Self::UnsupportedProcessingId => "Unsupported processing id",
            Self::UnsupportedVersionId => "Unsupported version id",
            Self::UnknownKeyIdentifier => "Unknown key identifier",
            Self::DuplicateKeyIdentifier => "Duplicate key identifier",
            Self::ApplicationRecordLocked => "Application record locked",
            Self::ApplicationInternalError => "Application internal error",
        }
    }
}

/// ERR-4 severity (table 0516).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Severity {
    /// E: the message was not (fully) processed.
    #[default]
    Error,
    /// W: processed, with a problem worth reporting.
    Warning,
    /// I: information only.
    Information,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "E",
            Self::Warning => "W",
            Self::Information => "I",
        }
    }
}

/// Where an error is (ERR-2, an ERL): segment id and occurrence, then optional positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLocation {
    /// Segment id.
    pub segment: String,
    /// Occurrence of the segment in the message (1-based).
    pub sequence: usize,
    /// Field, repetition, component and sub-component, as far as known.
    pub position: Option<Location>,
}

impl ErrorLocation {
    /// A whole segment.
    pub fn segment(segment: &str, sequence: usize) -> Self {
        Self { segment: segment.to_owned(), sequence, position: None }
    }

    /// A field of a segment.
    pub fn field(segment: &str, sequence: usize, field: usize) -> Self {
        let position = Location { field, repetition: None, component: None, subcomponent: None };
        Self { segment: segment.to_owned(), sequence, position: Some(position) }
    }

    fn parts(&self) -> Vec<String> {
        let mut parts = vec![self.segment.clone(), self.sequence.to_string()];
        if let Some(p) = &self.position {
            let rest = [Some(p.field), p.repetition, p.component, p.subcomponent];
            parts.extend(rest.iter().map(|n| n.map(|n| n.to_string()).unwrap_or_default()));
        }
        while parts.last().is_some_and(String::is_empty) {
            parts.pop();
        }
        parts
    }
}

/// An error to report in the ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    /// ERR-3, the HL7 error code.
    pub code: ErrorCode,
    /// ERR-4.
    pub severity: Severity,
    /// ERR-2.
    pub location: Option<ErrorLocation>,
    /// ERR-8, text for a person. Never put patient data here.
    pub user_message: Option<String>,
}

impl AckError {
    /// An error with this code, severity E, no location and no text.
    pub fn new(code: ErrorCode) -> Self {
        Self { code, severity: Severity::Error, location: None, user_message: None }
    }

    /// Sets the location.
    pub fn at(mut self, location: ErrorLocation) -> Self {
        self.location = Some(location);
        self
    }

    /// Sets the user message (never patient data).
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.user_message = Some(message.into());
        self
    }

    /// The ACK error for a reading or grouping error of this crate: the table 0357 code, the
    /// location where known, and the error's own text (which never carries message content).
    pub fn from_parse_error(error: &Error) -> Self {
        let (code, location) = match error {
            Error::Empty | Error::BatchInput(_) | Error::InvalidSegment { .. } => {
                (ErrorCode::SegmentSequenceError, None)
            }
            Error::MissingMsh => (ErrorCode::SegmentSequenceError, Some(ErrorLocation::segment("MSH", 1))),
            Error::MultipleMessages { .. } => (ErrorCode::SegmentSequenceError, Some(ErrorLocation::segment("MSH", 2))),
            Error::BatchSegmentInMessage { id, .. } => {
                (ErrorCode::SegmentSequenceError, Some(ErrorLocation::segment(id, 1)))
            }
            Error::BadDelimiters { .. } => (ErrorCode::DataTypeError, Some(ErrorLocation::field("MSH", 1, 2))),
            Error::MissingMessageType => (ErrorCode::RequiredFieldMissing, Some(ErrorLocation::field("MSH", 1, 9))),
            Error::MissingSegment { segment, .. } => {
                (ErrorCode::SegmentSequenceError, Some(ErrorLocation::segment(segment, 1)))
            }
            Error::UnknownStructure => (ErrorCode::UnsupportedMessageType, Some(ErrorLocation::field("MSH", 1, 9))),
            _ => (ErrorCode::ApplicationInternalError, None),
        };
        Self { code, severity: Severity::Error, location, user_message: Some(error.to_string()) }
    }
}

/// What the caller supplies for the ACK's own header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckHeader<'a> {
    /// MSH-10 of the ACK: a new control id.
    pub control_id: &'a str,
    /// MSH-7 of the ACK: the time, e.g. `20240101120000+0000`.
    pub timestamp: &'a str,
}

/// What the ACK copies from the original, as raw text in the ACK's delimiters.
#[derive(Default)]
struct Original {
    sending_application: String,
    sending_facility: String,
    receiving_application: String,
    receiving_facility: String,
    trigger: String,
    control_id: String,
    processing_id: String,
    version: String,
    charset: String,
}

/// The acknowledgement of `original`, with an optional error in ERR.
pub fn ack(original: &Message, code: AckCode, error: Option<&AckError>, header: &AckHeader<'_>) -> Message {
    let msh = original.msh();
    let raw = |n: usize| msh.field(n).map(|f| f.raw().to_owned()).unwrap_or_default();
    let trigger = msh.field(9).and_then(|f| f.component(2)).map(|c| c.raw().to_owned()).unwrap_or_default();
    let copied = Original {
        sending_application: raw(3),
        sending_facility: raw(4),
        receiving_application: raw(5),
        receiving_facility: raw(6),
        trigger,
        control_id: raw(10),
        processing_id: raw(11),
        version: raw(12),
        charset: raw(18),
    };
    build(*original.delimiters(), &copied, code, error, header)
}

/// The rejection (AR) of input that is not a usable message, salvaging the header fields the
/// first line allows (see the module documentation).
pub fn ack_unparseable(input: &[u8], error: &AckError, header: &AckHeader<'_>) -> Message {
    let (text, _) = decode_bytes(input);
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let first = text.split(['\r', '\n']).next().unwrap_or("");
    let (delimiters, copied) = salvage(first);
    build(delimiters, &copied, AckCode::AR, Some(error), header)
}

fn salvage(first_line: &str) -> (Delimiters, Original) {
    let default = (Delimiters::default(), Original::default());
    let Some(rest) = first_line.strip_prefix("MSH") else { return default };
    let Some(field) = rest.chars().next().filter(char::is_ascii_punctuation) else { return default };
    let parts: Vec<&str> = rest[field.len_utf8()..].split(field).collect();
    // parts[0] is MSH-2, parts[n - 2] is MSH-n.
    let original = Delimiters::from_header("MSH", field, parts[0]).ok();
    let delimiters = original.unwrap_or_default();
    let usable = |s: &&&str| s.len() <= 199 && !s.chars().any(char::is_control);
    let value = |n: usize| -> String {
        let Some(raw) = parts.get(n - 2).filter(usable) else { return String::new() };
        // With the original delimiters the raw text means the same in the ACK; otherwise it
        // can only be carried as text.
        if original.is_some() { (*raw).to_owned() } else { delimiters.escape(raw).into_owned() }
    };
    let component = |n: usize, c: usize| -> String {
        let v = value(n);
        match original {
            Some(d) => v.split(d.component).nth(c - 1).unwrap_or("").to_owned(),
            None => String::new(),
        }
    };
    let trigger = component(9, 2);
    let version = component(12, 1);
    let copied = Original {
        sending_application: value(3),
        sending_facility: value(4),
        receiving_application: value(5),
        receiving_facility: value(6),
        trigger: if trigger.len() == 3 && trigger.bytes().all(|b| b.is_ascii_alphanumeric()) {
            trigger
        } else {
            String::new()
        },
        control_id: value(10),
        processing_id: component(11, 1),
        version: if version.bytes().all(|b| b.is_ascii_digit() || b == b'.') { version } else { String::new() },
        charset: String::new(),
    };
    (delimiters, copied)
}

/// `2.5.1` → (2, 5, 1); unreadable parts count as 0.
fn version_number(version: &str) -> (u32, u32, u32) {
    let mut parts = version.split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or(0)
    });
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn build(
    d: Delimiters,
    original: &Original,
    code: AckCode,
    error: Option<&AckError>,
    header: &AckHeader<'_>,
) -> Message {
    let version = if original.version.is_empty() { "2.5.1" } else { original.version.as_str() };
    let number = version_number(version.split(d.component).next().unwrap_or(""));
    let c = d.component.to_string();
    let s = d.subcomponent.to_string();
    let message_type = match (original.trigger.is_empty(), number >= (2, 3, 1)) {
        (true, _) => "ACK".to_owned(),
        (false, true) => ["ACK", &original.trigger, "ACK"].join(&c),
        (false, false) => ["ACK", &original.trigger].join(&c),
    };
    let processing = if original.processing_id.is_empty() { "P" } else { original.processing_id.as_str() };
    let mut fields: Vec<(usize, String)> = vec![
        (3, original.receiving_application.clone()),
        (4, original.receiving_facility.clone()),
        (5, original.sending_application.clone()),
        (6, original.sending_facility.clone()),
        (7, d.escape(header.timestamp).into_owned()),
        (9, message_type),
        (10, d.escape(header.control_id).into_owned()),
        (11, processing.to_owned()),
        (12, version.to_owned()),
    ];
    if !original.charset.is_empty() {
        fields.push((18, original.charset.clone()));
    }
    let modern = number >= (2, 5, 0);
    let code_triplet =
        |e: &AckError, sep: &str| [e.code.code().to_string(), e.code.text().to_owned(), "HL70357".into()].join(sep);
    let user_message = |e: &AckError| e.user_message.as_deref().map(|m| d.escape(m).into_owned()).unwrap_or_default();

    let mut msa_fields = vec![(1, code.as_str().to_owned()), (2, original.control_id.clone())];
    let mut err_fields = Vec::new();
    if let Some(e) = error {
        let location = e.location.as_ref().map(ErrorLocation::parts).unwrap_or_default();
        if modern {
            err_fields.push((2, location.iter().map(|p| d.escape(p).into_owned()).collect::<Vec<_>>().join(&c)));
            err_fields.push((3, code_triplet(e, &c)));
            err_fields.push((4, e.severity.as_str().to_owned()));
            err_fields.push((8, user_message(e)));
        } else {
            // ERR-1 (ELD): segment^sequence^field^code&text&table.
            let mut eld: Vec<String> = location.iter().take(3).map(|p| d.escape(p).into_owned()).collect();
            eld.resize(3, String::new());
            eld.push(code_triplet(e, &s));
            err_fields.push((1, eld.join(&c)));
            msa_fields.push((3, user_message(e)));
            msa_fields.push((6, code_triplet(e, &c)));
        }
    }

    let mut message = Message::new(d);
    if let Some(msh) = message.segment_mut("MSH", 1) {
        set_fields(msh, &fields);
    }
    if let Ok(msa) = message.add_segment("MSA") {
        set_fields(msa, &msa_fields);
    }
    if error.is_some()
        && let Ok(err) = message.add_segment("ERR")
    {
        set_fields(err, &err_fields);
    }
    message
}

fn set_fields(segment: &mut Segment, fields: &[(usize, String)]) {
    for (field, raw) in fields {
        let location = Location { field: *field, repetition: None, component: None, subcomponent: None };
        // Field numbers here are constants above 2, which set_raw accepts.
        let _ = segment.set_raw(&location, raw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(version_number("2.5.1"), (2, 5, 1));
        assert_eq!(version_number("2.3.z"), (2, 3, 0));
        assert_eq!(version_number("2.8"), (2, 8, 0));
        assert_eq!(version_number("x"), (0, 0, 0));
    }

    #[test]
    fn locations() {
        assert_eq!(ErrorLocation::segment("PID", 1).parts(), ["PID", "1"]);
        assert_eq!(ErrorLocation::field("PID", 1, 5).parts(), ["PID", "1", "5"]);
        let deep = ErrorLocation {
            segment: "OBX".into(),
            sequence: 2,
            position: Some(Location { field: 5, repetition: None, component: Some(2), subcomponent: None }),
        };
        assert_eq!(deep.parts(), ["OBX", "2", "5", "", "2"]);
    }
}
