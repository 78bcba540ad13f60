//! MLLP framing (HL7 v2 Minimal Lower Layer Protocol): `0x0B <message> 0x1C 0x0D`.
//!
//! A pure state machine with no I/O and no runtime: feed it whatever a read returned and it
//! hands back every frame completed so far. A `tokio_util::codec` wrapper is a few lines on top
//! and belongs with the network code. Memory stays bounded: bytes outside frames are dropped as
//! they come (and counted), and a frame that grows past the maximum is reported at once and
//! skipped up to its end block without being buffered.

use crate::error::{Error, Result};

/// Start block (VT).
pub const START_BLOCK: u8 = 0x0B;
/// End block (FS), followed by [`CARRIAGE_RETURN`].
pub const END_BLOCK: u8 = 0x1C;
/// The carriage return that ends a frame after [`END_BLOCK`].
pub const CARRIAGE_RETURN: u8 = 0x0D;
/// Default largest frame accepted: 10 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 10 * 1024 * 1024;

/// Frames a message for sending. Fails if the message contains a start or end block byte,
/// which would break the framing (escape them as `\X0B\` / `\X1C\` in values).
pub fn frame(message: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(message.len() + 3);
    write_frame(message, &mut out)?;
    Ok(out)
}

/// Appends a framed message to `out` (see [`frame`]).
pub fn write_frame(message: &[u8], out: &mut Vec<u8>) -> Result<()> {
    if message.iter().any(|&b| b == START_BLOCK || b == END_BLOCK) {
        return Err(Error::ControlByteInMessage);
    }
    out.reserve(message.len() + 3);
    out.push(START_BLOCK);
    out.extend_from_slice(message);
    out.push(END_BLOCK);
    out.push(CARRIAGE_RETURN);
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames: waiting for a start block.
    Idle,
    /// Inside a frame.
    InFrame,
    /// Inside a frame, just after its end block: expecting CR.
    AfterEnd,
    /// Inside a frame already reported too large: skipping to its end.
    Skipping,
    /// Skipping, just after the end block.
    SkippingAfterEnd,
}

/// Splits a byte stream into MLLP frames.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    frame: Vec<u8>,
    max_frame_len: usize,
    skipped: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder accepting frames up to [`DEFAULT_MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self::with_max_frame_len(DEFAULT_MAX_FRAME_LEN)
    }

    /// A decoder accepting frames up to `max` bytes of content.
    pub fn with_max_frame_len(max: usize) -> Self {
        Self { state: State::Idle, frame: Vec::new(), max_frame_len: max, skipped: 0 }
    }

    /// Bytes dropped so far because they came outside any frame.
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped
    }

    /// Bytes of the frame in progress held in memory (never more than the maximum).
    pub fn buffered(&self) -> usize {
        self.frame.len()
    }

    /// Whether the decoder is between frames (nothing would be lost if the stream ended now).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Feeds the bytes of one read; returns each frame completed (its content, without the
    /// framing bytes) or each framing error met, in stream order. After an error the decoder
    /// carries on with the next frame.
    pub fn decode(&mut self, mut input: &[u8]) -> Vec<Result<Vec<u8>>> {
        let mut out = Vec::new();
        while !input.is_empty() {
            match self.state {
                State::Idle => match input.iter().position(|&b| b == START_BLOCK) {
                    Some(p) => {
                        self.skipped += p as u64;
                        self.frame.clear();
                        self.state = State::InFrame;
                        input = &input[p + 1..];
                    }
                    None => {
                        self.skipped += input.len() as u64;
                        input = &[];
                    }
                },
                State::InFrame => {
                    let stop = input.iter().position(|&b| b == START_BLOCK || b == END_BLOCK);
                    let content = &input[..stop.unwrap_or(input.len())];
                    if self.frame.len() + content.len() > self.max_frame_len {
                        out.push(Err(Error::FrameTooLarge { limit: self.max_frame_len }));
                        self.frame = Vec::new();
                        self.state = State::Skipping;
                        input = &input[content.len()..];
                        continue;
                    }
                    self.frame.extend_from_slice(content);
                    input = &input[content.len()..];
                    match input.first() {
                        Some(&START_BLOCK) => {
                            out.push(Err(Error::UnexpectedStartBlock { received: self.frame.len() }));
                            self.frame.clear();
                            input = &input[1..];
                        }
                        Some(_) => {
                            self.state = State::AfterEnd;
                            input = &input[1..];
                        }
                        None => {}
                    }
                }
                State::AfterEnd => {
                    if input[0] == CARRIAGE_RETURN {
                        out.push(Ok(std::mem::take(&mut self.frame)));
                        input = &input[1..];
                    } else {
                        // Not consumed: the byte may start the next frame.
                        out.push(Err(Error::BadEndBlock));
                        self.frame.clear();
                    }
                    self.state = State::Idle;
                }
                State::Skipping => match input.iter().position(|&b| b == START_BLOCK || b == END_BLOCK) {
                    Some(p) => {
                        self.state = if input[p] == START_BLOCK { State::InFrame } else { State::SkippingAfterEnd };
                        self.frame.clear();
                        input = &input[p + 1..];
                    }
                    None => input = &[],
                },
                State::SkippingAfterEnd => {
                    if input[0] == CARRIAGE_RETURN {
                        input = &input[1..];
                    }
                    self.state = State::Idle;
                }
            }
        }
        out
    }

    /// Declares the end of the stream: an error if it ended inside a frame (the partial frame
    /// is dropped). A frame already reported too large is not reported again.
    pub fn finish(&mut self) -> Result<()> {
        let state = std::mem::replace(&mut self.state, State::Idle);
        let received = std::mem::take(&mut self.frame).len();
        match state {
            State::InFrame | State::AfterEnd => Err(Error::TruncatedFrame { received }),
            State::Idle | State::Skipping | State::SkippingAfterEnd => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5.1\rPID|1\r";

    fn ok(frames: Vec<Result<Vec<u8>>>) -> Vec<Vec<u8>> {
        frames.into_iter().map(|f| f.unwrap()).collect()
    }

    #[test]
    fn frames_and_unframes() {
        let framed = frame(MSG).unwrap();
        assert_eq!(framed[0], START_BLOCK);
        assert_eq!(&framed[framed.len() - 2..], &[END_BLOCK, CARRIAGE_RETURN]);
        let mut d = Decoder::new();
        assert_eq!(ok(d.decode(&framed)), vec![MSG.to_vec()]);
        assert!(d.is_idle());
        assert_eq!(d.finish(), Ok(()));
        assert_eq!(frame(b"a\x0bb"), Err(Error::ControlByteInMessage));
        assert_eq!(frame(b"a\x1cb"), Err(Error::ControlByteInMessage));
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut stream = Vec::new();
        for i in 0..5u8 {
            write_frame(&[b'x', b'0' + i], &mut stream).unwrap();
        }
        let frames = ok(Decoder::new().decode(&stream));
        assert_eq!(frames.len(), 5);
        assert_eq!(frames[4], b"x4");
    }

    #[test]
    fn frames_split_at_every_boundary() {
        let mut stream = frame(MSG).unwrap();
        stream.extend(frame(b"second").unwrap());
        for cut in 0..=stream.len() {
            let mut d = Decoder::new();
            let mut frames = ok(d.decode(&stream[..cut]));
            frames.extend(ok(d.decode(&stream[cut..])));
            assert_eq!(frames, vec![MSG.to_vec(), b"second".to_vec()], "cut at {cut}");
            assert_eq!(d.finish(), Ok(()));
        }
        let mut d = Decoder::new();
        let frames: Vec<_> = stream.iter().flat_map(|b| ok(d.decode(std::slice::from_ref(b)))).collect();
        assert_eq!(frames.len(), 2, "byte by byte");
    }

    #[test]
    fn garbage_outside_frames_is_skipped() {
        let mut stream = b"noise\r\n".to_vec();
        stream.extend(frame(b"one").unwrap());
        stream.extend(b"\r\n");
        stream.extend(frame(b"two").unwrap());
        stream.extend(b"tail");
        let mut d = Decoder::new();
        assert_eq!(ok(d.decode(&stream)), vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(d.skipped_bytes(), 7 + 2 + 4);
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn empty_frame() {
        assert_eq!(ok(Decoder::new().decode(&[START_BLOCK, END_BLOCK, CARRIAGE_RETURN])), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn oversized_frames_are_rejected_without_buffering() {
        let mut d = Decoder::with_max_frame_len(10);
        let mut stream = frame(b"0123456789").unwrap();
        stream.extend(frame(b"0123456789A").unwrap());
        stream.extend(frame(b"ok").unwrap());
        let results = d.decode(&stream);
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].as_deref(), Ok(&b"0123456789"[..]));
        assert_eq!(results[1], Err(Error::FrameTooLarge { limit: 10 }));
        assert_eq!(results[2].as_deref(), Ok(&b"ok"[..]));

        // A frame that never ends: memory stays bounded, one error, and EOF adds none.
        let mut d = Decoder::with_max_frame_len(1000);
        let mut errors = d.decode(&[START_BLOCK]);
        for _ in 0..1000 {
            errors.extend(d.decode(&[b'x'; 1024]));
            assert!(d.buffered() <= 1000);
        }
        assert_eq!(errors, vec![Err(Error::FrameTooLarge { limit: 1000 })]);
        assert_eq!(d.finish(), Ok(()));

        // Split across reads, the limit still holds; a start block resumes decoding.
        let mut d = Decoder::with_max_frame_len(4);
        let mut results = d.decode(b"\x0bab");
        results.extend(d.decode(b"cde"));
        results.extend(d.decode(b"f\x0bxy\x1c\r"));
        assert_eq!(results, vec![Err(Error::FrameTooLarge { limit: 4 }), Ok(b"xy".to_vec())]);
    }

    #[test]
    fn truncated_frame_at_eof() {
        let mut d = Decoder::new();
        assert!(d.decode(b"\x0bMSH|partial").is_empty());
        assert_eq!(d.finish(), Err(Error::TruncatedFrame { received: 11 }));
        assert_eq!(d.finish(), Ok(()), "reset after reporting");
        let mut d = Decoder::new();
        assert!(d.decode(b"\x0babc\x1c").is_empty());
        assert_eq!(d.finish(), Err(Error::TruncatedFrame { received: 3 }));
    }

    #[test]
    fn start_block_inside_a_frame_restarts() {
        let results = Decoder::new().decode(b"\x0bpartial\x0bwhole\x1c\r");
        assert_eq!(results, vec![Err(Error::UnexpectedStartBlock { received: 7 }), Ok(b"whole".to_vec())]);
    }

    #[test]
    fn end_block_without_carriage_return() {
        let results = Decoder::new().decode(b"\x0bbad\x1cX\x0bgood\x1c\r");
        assert_eq!(results, vec![Err(Error::BadEndBlock), Ok(b"good".to_vec())]);
        let results = Decoder::new().decode(b"\x0bbad\x1c\x0bgood\x1c\r");
        assert_eq!(results, vec![Err(Error::BadEndBlock), Ok(b"good".to_vec())], "next start block kept");
    }
}
