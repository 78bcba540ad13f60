//! Every corpus file: read as a message (or a batch), encoded back to the same bytes with
//! segment terminators normalised to CR, or refused with the error expected for it.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

mod common;

use hl7v2::{Batch, Error, Message, Warning};

/// What a file is expected to give, for files that are not plain single messages.
enum Expect {
    /// A message, with these warnings on top of the line-ending ones.
    Message(&'static [Warning]),
    /// Refused as a message (and as a batch) with this error.
    Rejected(Error),
    /// Refused as a single message; read as a batch of this many messages with these warnings.
    Batch(Error, usize, &'static [Warning]),
    /// Refused both as a single message and as a batch.
    BadBatch(Error, Error),
}

fn expectation(path: &str) -> Expect {
    use Expect::*;
    use Warning::*;
    let bhs = Error::BatchInput("BHS");
    let fhs = Error::BatchInput("FHS");
    match path.rsplit('/').next().unwrap_or(path) {
        // CDC malformed variants: MSH-9 gone (truncated header, or just the field) → refused.
        "Hepatitis_V1_0_1_TM_TC02_HEP_B_ACUTE_MOD.hl7" | "PHLIP_FLU_2.5.1_NO_MSH9.txt" => {
            Rejected(Error::MissingMessageType)
        }
        "Lyme_WithBadDelimiters.txt" => {
            Rejected(Error::BadDelimiters { segment: "MSH", reason: "delimiters must be distinct" })
        }
        "empty.txt" => Rejected(Error::Empty),
        // Required header fields missing but the message still meaningful → warnings.
        "PHLIP_FLU_2.5.1_NO_MSH7.txt" => Message(&[MissingHeaderField(7)]),
        "PHLIP_FLU_2.5.1_NO_MSH10.txt" => Message(&[MissingHeaderField(10)]),
        "PHLIP_FLU_2.5.1_NO_MSH11.txt" => Message(&[MissingHeaderField(11)]),
        "PHLIP_FLU_2.5.1_NO_MSH12.txt" => Message(&[MissingHeaderField(12)]),
        "InterPartner-CELR-TX-AIMSPlatform-Prod-Prod-202104050139-STOP-ATVersion251.txt" => {
            Message(&[MissingHeaderField(11)])
        }
        // python-hl7 batches and files.
        "sample_batch.hl7" => Batch(bhs, 1, &[]),
        "sample_batch1.hl7" => Batch(bhs, 2, &[]),
        "sample_batch2.hl7" => {
            Batch(Error::MultipleMessages { line: 7 }, 2, &[MissingBatchEnvelope("BHS"), MissingBatchEnvelope("BTS")])
        }
        "sample_batch3.hl7" => Batch(bhs, 1, &[MissingBatchEnvelope("BTS")]),
        "sample_batch4.hl7" => {
            Batch(Error::BatchSegmentInMessage { id: "BTS", line: 7 }, 1, &[MissingBatchEnvelope("BHS")])
        }
        "sample_file.hl7" => Batch(fhs, 1, &[]),
        "sample_file1.hl7" => Batch(fhs, 3, &[]),
        "sample_file2.hl7" => Batch(fhs, 2, &[MissingBatchEnvelope("BHS"), MissingBatchEnvelope("BTS")]),
        "sample_file3.hl7" => Batch(fhs, 1, &[MissingBatchEnvelope("FTS")]),
        "sample_file4.hl7" => Batch(bhs, 1, &[MissingBatchEnvelope("FHS")]),
        "sample_file5.hl7" => Batch(fhs, 1, &[MissingBatchEnvelope("BTS")]),
        "sample_file6.hl7" => Batch(fhs, 1, &[MissingBatchEnvelope("BHS")]),
        "sample_bad_batch.hl7" => BadBatch(bhs, Error::SegmentOutsideMessage { id: "EVN".into(), line: 2 }),
        "sample_bad_batch1.hl7" => BadBatch(bhs, Error::MisplacedBatchHeader { id: "BHS", line: 4 }),
        "sample_bad_file.hl7" => BadBatch(fhs, Error::SegmentOutsideMessage { id: "EVN".into(), line: 3 }),
        "sample_bad_file1.hl7" => BadBatch(fhs, Error::MisplacedBatchHeader { id: "BHS", line: 5 }),
        "sample_bad_file2.hl7" => BadBatch(fhs, Error::MisplacedBatchHeader { id: "FHS", line: 5 }),
        "sample_bad_file3.hl7" => BadBatch(fhs, Error::SegmentOutsideMessage { id: "EVN".into(), line: 2 }),
        _ => Message(&[]),
    }
}

/// The line-ending warnings the bytes call for, worked out independently of the reader.
fn format_warnings(bytes: &[u8]) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let mut text = std::str::from_utf8(bytes).unwrap();
    if let Some(rest) = text.strip_prefix('\u{FEFF}') {
        warnings.push(Warning::ByteOrderMark);
        text = rest;
    }
    let crlf = text.matches("\r\n").count();
    let cr = text.matches('\r').count() - crlf;
    let lf = text.matches('\n').count() - crlf;
    match (cr > 0, lf > 0, crlf > 0) {
        (false, true, false) => warnings.push(Warning::LineFeedTerminators),
        (false, false, true) => warnings.push(Warning::CrLfTerminators),
        (true, false, false) | (false, false, false) => {}
        _ => warnings.push(Warning::MixedTerminators),
    }
    let unified = text.replace("\r\n", "\r").replace('\n', "\r");
    let mut lines: Vec<&str> = unified.split('\r').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    if lines.iter().any(|l| l.trim().is_empty()) {
        warnings.push(Warning::BlankLines);
    }
    warnings
}

/// The input with BOM dropped, blank lines dropped and every segment terminated by CR.
fn normalised(bytes: &[u8]) -> String {
    let text = std::str::from_utf8(bytes).unwrap();
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let unified = text.replace("\r\n", "\r").replace('\n', "\r");
    unified.split('\r').filter(|l| !l.trim().is_empty()).map(|l| format!("{l}\r")).collect()
}

#[test]
fn every_corpus_file_reads_as_expected() {
    let files = common::corpus();
    assert_eq!(files.len(), 197, "the corpus has 197 files");
    let (mut messages, mut exact, mut batches, mut rejected) = (0, 0, 0, 0);
    for (path, bytes) in &files {
        let parsed = Message::parse_bytes(bytes);
        match expectation(path) {
            Expect::Message(extra) => {
                let message = parsed.unwrap_or_else(|e| panic!("{path}: {e}"));
                let mut expected = format_warnings(bytes);
                expected.extend_from_slice(extra);
                assert_eq!(message.warnings(), expected, "{path}");
                let encoded = message.encode();
                assert_eq!(encoded, normalised(bytes), "{path}: round trip");
                if encoded.as_bytes() == bytes.as_slice() {
                    exact += 1;
                }
                // Re-reading the encoding gives the same message, without warnings this time
                // (except for the header fields that are really missing).
                let again = Message::parse(&encoded).unwrap();
                assert_eq!(again.segments(), message.segments(), "{path}");
                assert_eq!(again.warnings(), extra, "{path}");
                messages += 1;
            }
            Expect::Rejected(error) => {
                assert_eq!(parsed, Err(error.clone()), "{path}");
                assert_eq!(Batch::parse_bytes(bytes), Err(error), "{path} as a batch");
                rejected += 1;
            }
            Expect::Batch(error, count, warnings) => {
                assert_eq!(parsed, Err(error), "{path}");
                let batch = Batch::parse_bytes(bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
                assert_eq!(batch.messages().count(), count, "{path}");
                let mut expected = format_warnings(bytes);
                expected.extend_from_slice(warnings);
                assert_eq!(batch.warnings(), expected, "{path}");
                assert_eq!(batch.encode(), normalised(bytes), "{path}: round trip");
                for message in batch.messages() {
                    assert_eq!(message.message_code().as_deref(), Some("ADT"), "{path}");
                    assert!(message.warnings().is_empty(), "{path}");
                }
                batches += 1;
            }
            Expect::BadBatch(error, batch_error) => {
                assert_eq!(parsed, Err(error), "{path}");
                assert_eq!(Batch::parse_bytes(bytes), Err(batch_error), "{path} as a batch");
                rejected += 1;
            }
        }
    }
    assert_eq!((messages, batches, rejected), (175, 12, 10));
    // CR-terminated files with a final CR and no BOM come back byte for byte.
    assert_eq!(exact, 8);
}

#[test]
fn single_messages_read_the_same_as_one_message_batches() {
    for (path, bytes) in common::corpus() {
        let Ok(message) = Message::parse_bytes(&bytes) else { continue };
        let batch = Batch::parse_bytes(&bytes).unwrap();
        let only: Vec<_> = batch.messages().collect();
        assert_eq!(only.len(), 1, "{path}");
        assert_eq!(only[0].segments(), message.segments(), "{path}");
    }
}

#[test]
fn header_helpers_on_corpus_messages() {
    let m = Message::parse(&common::text("ms-fhir-converter/ADT-A01-01.hl7")).unwrap();
    assert_eq!(m.message_code().as_deref(), Some("ADT"));
    assert_eq!(m.trigger_event().as_deref(), Some("A01"));
    assert_eq!(m.message_structure().as_deref(), Some("ADT_A01"));
    assert_eq!(m.version().as_deref(), Some("2.8"));
    assert_eq!(m.encoding_characters(), "^~\\&");

    let m = Message::parse(&common::text("cdc/case-notifications/Mumps-VPD.txt")).unwrap();
    assert_eq!(m.encoding_characters(), "^~\\&#", "v2.7 truncation character");
    assert_eq!(m.delimiters().truncation, Some('#'));

    let m = Message::parse(&common::text("python-hl7/rep_sample_hl7.hl7")).unwrap();
    assert_eq!(m.sending_application().unwrap().text(), "GHH LAB");
    assert_eq!(m.control_id().as_deref(), Some("CNTRL-3456"));
    assert_eq!(m.processing_id().as_deref(), Some("P"));
    assert_eq!(m.version().as_deref(), Some("2.4"));
    let pid = m.segment("PID").unwrap();
    assert_eq!(pid.field(1).unwrap().text(), "Field1");
    assert_eq!(pid.field(2).unwrap().component(2).unwrap().text(), "Component2");
    let f3 = pid.field(3).unwrap().component(2).unwrap();
    assert_eq!(
        f3.subcomponents().map(|s| s.text().into_owned()).collect::<Vec<_>>(),
        ["Sub-Component1", "Sub-Component2"]
    );
    let reps: Vec<_> = pid.field(4).unwrap().repetitions().map(|r| r.text().into_owned()).collect();
    assert_eq!(reps, ["Repeat1", "Repeat2"]);
    assert_eq!(m.get("PID-3.2.2").as_deref(), Some("Sub-Component2"));
    assert_eq!(m.get("PID-4(2)").as_deref(), Some("Repeat2"));
}

#[test]
fn corpus_escapes_decode() {
    // Every raw value containing the escape character decodes without losing text, and
    // re-escaping the decoded text decodes to the same thing.
    let mut seen = 0;
    for (path, bytes) in common::corpus() {
        let Ok(message) = Message::parse_bytes(&bytes) else { continue };
        let d = *message.delimiters();
        for segment in &message.segments()[1..] {
            for field in segment.fields() {
                for rep in field.repetitions() {
                    for comp in rep.components() {
                        for sub in comp.subcomponents() {
                            if sub.raw().contains(d.escape) {
                                seen += 1;
                                let text = sub.text();
                                assert_eq!(d.unescape(&d.escape(&text)), text.replace("\r\n", "\n"), "{path}");
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(seen > 0, "the corpus has escaped values");
}
