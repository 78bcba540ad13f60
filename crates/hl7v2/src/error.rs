//! The crate's one error type.
//!
//! Error texts never carry message content: they name segments (only ids that are well-formed
//! three-character HL7 segment ids), field numbers and line numbers, never values, so they can
//! be logged and echoed in ACKs without leaking patient data.

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, building, grouping or framing HL7 v2 messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input holds no segment at all (empty, or only blank lines).
    #[error("no segments: the input is empty")]
    Empty,
    /// The first segment is not an MSH segment.
    #[error("the message does not start with an MSH segment")]
    MissingMsh,
    /// The input starts with a batch or file header; read it with `Batch::parse`.
    #[error("the input is a batch or file (starts with {0}), not a single message")]
    BatchInput(&'static str),
    /// MSH-1/MSH-2 (or BHS/FHS-1/2) do not define usable delimiters.
    #[error("bad delimiters in {segment}-1/{segment}-2: {reason}")]
    BadDelimiters {
        /// The header segment (MSH, BHS or FHS).
        segment: &'static str,
        /// What is wrong, in fixed words.
        reason: &'static str,
    },
    /// MSH-9 (message type) is empty: the message cannot be routed or acknowledged properly.
    #[error("MSH-9 (message type) is missing")]
    MissingMessageType,
    /// A line does not start with a well-formed segment id followed by the field separator.
    #[error("line {line}: not a segment (expected a three-character segment id)")]
    InvalidSegment {
        /// 1-based line number in the input.
        line: usize,
    },
    /// A second MSH segment: the input holds several messages; read it with `Batch::parse`.
    #[error("line {line}: a second MSH segment; use the batch reader for several messages")]
    MultipleMessages {
        /// 1-based line number in the input.
        line: usize,
    },
    /// A batch or file segment (FHS, FTS, BHS, BTS) inside a single message.
    #[error("line {line}: batch segment {id} inside a message")]
    BatchSegmentInMessage {
        /// The segment id.
        id: &'static str,
        /// 1-based line number in the input.
        line: usize,
    },
    /// A segment other than MSH or a batch segment where no message has started.
    #[error("line {line}: segment {id} outside any message (no MSH before it)")]
    SegmentOutsideMessage {
        /// The segment id.
        id: String,
        /// 1-based line number in the input.
        line: usize,
    },
    /// A batch or file header where one is already open, or in the wrong place.
    #[error("line {line}: unexpected {id} (nested or misplaced batch/file header)")]
    MisplacedBatchHeader {
        /// BHS or FHS.
        id: &'static str,
        /// 1-based line number in the input.
        line: usize,
    },
    /// Content after the file trailer (FTS).
    #[error("line {line}: content after the file trailer (FTS)")]
    AfterFileTrailer {
        /// 1-based line number in the input.
        line: usize,
    },
    /// A location path (`PID-3(2).4.1`) that does not follow the path syntax.
    #[error("invalid location path")]
    InvalidPath,
    /// A segment id that is not three characters `[A-Z][A-Z0-9]{2}`.
    #[error("invalid segment id")]
    InvalidSegmentId,
    /// MSH-1 and MSH-2 (the delimiters themselves) cannot be set as values.
    #[error("{0} cannot be changed: it defines the delimiters")]
    ReadOnlyField(&'static str),
    /// The message structure (MSH-9) has no segment-group definition here.
    #[error("no segment-group definition for this message structure")]
    UnknownStructure,
    /// A required segment or group is absent when grouping a message.
    #[error("required {segment} missing in {group}")]
    MissingSegment {
        /// The group path, e.g. `ORU_R01.PATIENT_RESULT.ORDER_OBSERVATION`.
        group: String,
        /// The segment id (for a missing group: its first required segment).
        segment: String,
    },
    /// An MLLP frame grew beyond the configured maximum; it is skipped up to its end block.
    #[error("MLLP frame larger than {limit} bytes")]
    FrameTooLarge {
        /// The configured maximum frame size in bytes.
        limit: usize,
    },
    /// The stream ended inside an MLLP frame.
    #[error("stream ended inside an MLLP frame ({received} bytes received)")]
    TruncatedFrame {
        /// Bytes of the incomplete frame that were received.
        received: usize,
    },
    /// A start block (0x0B) arrived inside a frame; the partial frame is dropped.
    #[error("MLLP start block inside a frame; partial frame of {received} bytes dropped")]
    UnexpectedStartBlock {
        /// Bytes of the dropped partial frame.
        received: usize,
    },
    /// The end block 0x1C was not followed by 0x0D; the frame is dropped.
    #[error("MLLP end block 0x1C not followed by 0x0D; frame dropped")]
    BadEndBlock,
    /// A message to be framed contains an MLLP control byte (0x0B or 0x1C).
    #[error("message contains an MLLP control byte (0x0B or 0x1C)")]
    ControlByteInMessage,
}
