//! ACKs: accept, error and reject, each re-read and checked field by field.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

mod common;

use hl7v2::{
    AckCode, AckError, AckHeader, Error, ErrorCode, ErrorLocation, Message, Severity, ack, ack_unparseable, group,
};

const HEADER: AckHeader<'static> = AckHeader { control_id: "ACK-1", timestamp: "20240102030405+0000" };

fn reparse(ack: &Message) -> Message {
    let text = ack.encode();
    let again = Message::parse(&text).unwrap();
    assert!(again.warnings().is_empty(), "{:?}", again.warnings());
    assert_eq!(group(&again).unwrap().name(), "ACK");
    again
}

#[test]
fn accept() {
    let original = Message::parse(&common::text("ms-fhir-converter/ADT-A01-01.hl7")).unwrap();
    let a = reparse(&ack(&original, AckCode::AA, None, &HEADER));
    assert_eq!(a.sending_application().unwrap().raw(), original.receiving_application().unwrap().raw());
    assert_eq!(a.sending_facility().unwrap().raw(), original.receiving_facility().unwrap().raw());
    assert_eq!(a.receiving_application().unwrap().raw(), original.sending_application().unwrap().raw());
    assert_eq!(a.receiving_facility().unwrap().raw(), original.sending_facility().unwrap().raw());
    assert_eq!(a.get("MSH-9").as_deref(), Some("ACK"));
    assert_eq!(a.msh().field(9).unwrap().raw(), "ACK^A01^ACK");
    assert_eq!(a.control_id().as_deref(), Some("ACK-1"));
    assert_eq!(a.timestamp().as_deref(), Some("20240102030405+0000"));
    assert_eq!(a.version(), original.version());
    assert_eq!(a.processing_id(), original.processing_id());
    assert_eq!(a.get("MSA-1").as_deref(), Some("AA"));
    assert_eq!(a.get("MSA-2"), original.control_id());
    assert!(a.segment("ERR").is_none());
    assert_eq!(a.segments().len(), 2);
}

#[test]
fn error_with_err_segment_v251() {
    let original =
        Message::parse(&common::text("cdc/malformed-variants/phlip-flu/PHLIP_FLU_2.5.1_PID5_ERROR.txt")).unwrap();
    let error = AckError::new(ErrorCode::RequiredFieldMissing)
        .at(ErrorLocation::field("PID", 1, 5))
        .with_message("Patient name is required");
    let a = reparse(&ack(&original, AckCode::AE, Some(&error), &HEADER));
    assert_eq!(a.get("MSA-1").as_deref(), Some("AE"));
    assert_eq!(a.get("MSA-2"), original.control_id());
    let err = a.segment("ERR").unwrap();
    assert_eq!(err.field(2).unwrap().raw(), "PID^1^5");
    assert_eq!(err.field(3).unwrap().raw(), "101^Required field missing^HL70357");
    assert_eq!(err.field(4).unwrap().raw(), "E");
    assert_eq!(err.field(8).unwrap().text(), "Patient name is required");
    assert!(err.field(1).unwrap().is_empty());
    assert_eq!(a.encoding_characters(), original.encoding_characters());

    // A v2.7-style truncation character in the original (^~\&#) is kept.
    let original = Message::parse(&common::text("cdc/case-notifications/Mumps-VPD.txt")).unwrap();
    let a = reparse(&ack(&original, AckCode::AE, Some(&error), &HEADER));
    assert_eq!(a.encoding_characters(), "^~\\&#");
}

#[test]
fn error_for_pre_25_versions_uses_err_1_and_msa() {
    let original = Message::parse(&common::text("python-hl7/sample_hl7.hl7")).unwrap();
    assert_eq!(original.version().as_deref(), Some("2.4"));
    let error = AckError {
        code: ErrorCode::TableValueNotFound,
        severity: Severity::Error,
        location: Some(ErrorLocation::field("OBX", 2, 2)),
        user_message: Some("Unknown value type | check OBX-2".into()),
    };
    let a = reparse(&ack(&original, AckCode::AE, Some(&error), &HEADER));
    assert_eq!(a.msh().field(9).unwrap().raw(), "ACK^R01^ACK");
    assert_eq!(a.segment("ERR").unwrap().field(1).unwrap().raw(), "OBX^2^2^103&Table value not found&HL70357");
    assert_eq!(a.get("MSA-3").as_deref(), Some("Unknown value type | check OBX-2"), "escaped and decoded");
    assert_eq!(a.get("MSA-6").as_deref(), Some("103"));
}

#[test]
fn reject_for_version_23_has_two_component_type() {
    let original = Message::parse(&common::text("python-hl7/sample_msh.hl7")).unwrap();
    let a = reparse(&ack(&original, AckCode::AR, Some(&AckError::new(ErrorCode::UnsupportedVersionId)), &HEADER));
    assert_eq!(a.msh().field(9).unwrap().raw(), "ACK^A01");
    assert_eq!(a.get("MSA-1").as_deref(), Some("AR"));
    assert_eq!(a.get("MSA-6").as_deref(), Some("203"));
}

#[test]
fn reject_garbage() {
    for garbage in [&b""[..], b"hello world", b"\x00\xff\xfe garbage \r\n more", b"MSH", b"MSH|"] {
        let error = match Message::parse_bytes(garbage) {
            Err(e) => AckError::from_parse_error(&e),
            Ok(_) => panic!("garbage parsed"),
        };
        let a = reparse(&ack_unparseable(garbage, &error, &HEADER));
        assert_eq!(a.get("MSA-1").as_deref(), Some("AR"));
        assert_eq!(a.get("MSA-2"), None, "no control id to salvage");
        assert_eq!(a.msh().field(9).unwrap().raw(), "ACK");
        assert_eq!(a.version().as_deref(), Some("2.5.1"));
        assert_eq!(a.control_id().as_deref(), Some("ACK-1"));
        let err = a.segment("ERR").unwrap();
        assert!(matches!(err.field(3).unwrap().component(1).unwrap().raw(), "100" | "102"));
        assert_eq!(err.field(4).unwrap().raw(), "E");
    }
}

#[test]
fn reject_salvages_the_header() {
    // MSH-9 missing: delimiters fine, so the header is copied as is.
    let bytes = common::read("cdc/malformed-variants/phlip-flu/PHLIP_FLU_2.5.1_NO_MSH9.txt");
    let parse_error = Message::parse_bytes(&bytes).unwrap_err();
    assert_eq!(parse_error, Error::MissingMessageType);
    let a = reparse(&ack_unparseable(&bytes, &AckError::from_parse_error(&parse_error), &HEADER));
    let text = String::from_utf8(bytes).unwrap();
    let original_msh: Vec<&str> = text.lines().next().unwrap().split('|').collect();
    assert_eq!(a.sending_application().unwrap().raw(), original_msh[4], "MSH-5 → MSH-3");
    assert_eq!(a.receiving_application().unwrap().raw(), original_msh[2], "MSH-3 → MSH-5");
    assert_eq!(a.get("MSA-2").as_deref(), Some(original_msh[9]), "control id salvaged");
    assert_eq!(a.version().as_deref(), Some("2.5.1"));
    assert_eq!(a.encoding_characters(), "^~\\&#");
    let err = a.segment("ERR").unwrap();
    assert_eq!(err.field(2).unwrap().raw(), "MSH^1^9");
    assert_eq!(err.field(3).unwrap().raw(), "101^Required field missing^HL70357");
    assert_eq!(err.field(8).unwrap().text(), "MSH-9 (message type) is missing");

    // Bad delimiters: values can only travel as escaped text in standard delimiters.
    let bytes = common::read("cdc/malformed-variants/Lyme_WithBadDelimiters.txt");
    let parse_error = Message::parse_bytes(&bytes).unwrap_err();
    let a = reparse(&ack_unparseable(&bytes, &AckError::from_parse_error(&parse_error), &HEADER));
    assert_eq!(a.encoding_characters(), "^~\\&");
    assert_eq!(a.get("MSA-2").as_deref(), Some("MESSAGE CONTROL ID"));
    assert_eq!(a.receiving_application().unwrap().text(), "SendAppName^2.16.840.1.114222.1111^ISO");
    assert_eq!(a.segment("ERR").unwrap().field(2).unwrap().raw(), "MSH^1^2");
    assert_eq!(a.segment("ERR").unwrap().field(3).unwrap().component(1).unwrap().raw(), "102");
}

#[test]
fn error_texts_carry_no_message_content() {
    // Every rejection in the corpus explains itself without quoting the message.
    for (path, bytes) in common::corpus() {
        let Err(error) = Message::parse_bytes(&bytes) else { continue };
        let text = error.to_string();
        let content = String::from_utf8_lossy(&bytes);
        for field in content.split(['|', '^', '\r', '\n']).filter(|f| f.len() > 4) {
            assert!(!text.contains(field), "{path}: {text:?} quotes {field:?}");
        }
    }
}
