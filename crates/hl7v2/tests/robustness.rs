//! No input makes the crate panic: corpus files mutated thousands of ways, and random bytes,
//! go through every reader, the accessors, grouping, ACKs and the MLLP decoder. Whatever
//! reads also re-reads identically after encoding.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

mod common;

use hl7v2::{AckCode, AckError, AckHeader, Batch, Message, ack, ack_unparseable, group_lenient, mllp};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

const INTERESTING: &[u8] = b"|^~\\&#\r\nMSHBTSFTS\x0b\x1cX.br\"0123456789 \xef\xbb\xbf\xff\x00";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            1 => out.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 if at < out.len() => {
                let end = (at + rng.below(40)).min(out.len());
                out.drain(at..end);
            }
            3 => out.truncate(at),
            4 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            _ => {
                let start = rng.below(out.len() + 1);
                let end = (start + rng.below(60)).min(out.len());
                let chunk = out[start..end].to_vec();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, chunk);
            }
        }
    }
    out
}

fn exercise(bytes: &[u8]) {
    let header = AckHeader { control_id: "1", timestamp: "20240101" };
    match Message::parse_bytes(bytes) {
        Ok(message) => {
            for segment in message.segments() {
                for field in segment.fields() {
                    let _ = field.text();
                    for rep in field.repetitions() {
                        for comp in rep.components() {
                            for sub in comp.subcomponents() {
                                let _ = sub.text();
                            }
                        }
                    }
                }
            }
            for path in ["MSH-9.2", "PID-3(2).4.1", "OBX(3)-5", "MSH-1", "MSH-2", "ZZZ-1"] {
                let _ = message.get(path);
            }
            let _ = message.version();
            if let Ok(grouping) = group_lenient(&message) {
                assert_eq!(grouping.root.all_segments().len(), message.segments().len());
            }
            let encoded = message.encode();
            let again = Message::parse(&encoded).expect("an encoded message re-reads");
            assert_eq!(again.segments(), message.segments());
            for code in [AckCode::AA, AckCode::AE] {
                let a = ack(&message, code, Some(&AckError::new(hl7v2::ErrorCode::DataTypeError)), &header);
                Message::parse(&a.encode()).expect("an ACK re-reads");
            }
        }
        Err(error) => {
            let a = ack_unparseable(bytes, &AckError::from_parse_error(&error), &header);
            Message::parse(&a.encode()).expect("a reject re-reads");
        }
    }
    if let Ok(batch) = Batch::parse_bytes(bytes) {
        let again = Batch::parse(&batch.encode()).expect("an encoded batch re-reads");
        assert_eq!(again.messages().count(), batch.messages().count());
    }
    let mut decoder = mllp::Decoder::with_max_frame_len(512);
    for chunk in bytes.chunks(97) {
        for frame in decoder.decode(chunk).into_iter().flatten() {
            assert!(frame.len() <= 512);
        }
        assert!(decoder.buffered() <= 512);
    }
    let _ = decoder.finish();
}

#[test]
fn mutated_corpus_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (_, bytes) in common::corpus() {
        exercise(&bytes);
        for _ in 0..60 {
            exercise(&mutate(&mut rng, &bytes));
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..3000 {
        let len = rng.below(300);
        let mut bytes: Vec<u8> = (0..len).map(|_| INTERESTING[rng.below(INTERESTING.len())]).collect();
        if rng.below(2) == 0 {
            bytes.splice(0..0, b"MSH|^~\\&|".iter().copied());
        }
        exercise(&bytes);
        let raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        exercise(&raw);
    }
}
