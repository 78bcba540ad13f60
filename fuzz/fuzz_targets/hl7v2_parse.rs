//! HL7 v2: parse any bytes as a message (and as a batch), group it by its structure, build its
//! ACK, and check that encoding what was parsed parses again to the same segments.
#![no_main]

use hl7v2::{AckCode, AckError, AckHeader, Batch, Message};
use libfuzzer_sys::fuzz_target;

const HEADER: AckHeader<'static> = AckHeader { control_id: "FUZZ1", timestamp: "20240101120000+0000" };

fuzz_target!(|data: &[u8]| {
    let _ = Batch::parse_bytes(data);
    match Message::parse_bytes(data) {
        Ok(message) => {
            let _ = hl7v2::group_lenient(&message);
            let ack = hl7v2::ack(&message, AckCode::AA, None, &HEADER);
            Message::parse(&ack.encode()).expect("an ACK we built parses");
            let text = message.encode();
            let again = Message::parse(&text).expect("an encoded message parses again");
            assert_eq!(again.segments().len(), message.segments().len(), "segments changed across a round trip");
            assert_eq!(again.encode(), text, "encoding is not stable");
        }
        Err(error) => {
            let ack = hl7v2::ack_unparseable(data, &AckError::from_parse_error(&error), &HEADER);
            Message::parse(&ack.encode()).expect("a reject we built parses");
        }
    }
});
