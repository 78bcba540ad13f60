//! Messages: reading (tolerant of line-ending quirks, strict about the header), the MSH
//! helpers, location paths, building and encoding.
//!
//! # Why a hand-written parser
//!
//! The parser keeps every segment's raw text and splits it only when a value is asked for.
//! That makes `encode(parse(x)) == x` hold byte for byte (segment terminators aside) for any
//! input, including trailing delimiters, unknown escape sequences and Z-segments, with no
//! normalising model in between, and it lets the reader decide exactly what it tolerates (with
//! a [`Warning`]) and what it refuses (with a specific [`Error`]). That is a few hundred lines
//! with no dependency; `hl7-parser` (Apache-2.0) would still need this layer of rules and
//! round-trip guarantees on top, and the other crates on offer are AGPL/LGPL or abandoned.

use std::borrow::Cow;
use std::fmt;

use crate::delimiters::Delimiters;
use crate::error::{Error, Result};
use crate::path::{Location, Path};
use crate::segment::{Field, Segment, is_segment_id};

/// Something tolerated while reading that a strict reader would have refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Warning {
    /// The input began with a UTF-8 byte-order mark, which was dropped.
    ByteOrderMark,
    /// Segments ended with LF instead of CR.
    LineFeedTerminators,
    /// Segments ended with CR LF instead of CR.
    CrLfTerminators,
    /// Segments ended with a mix of CR, LF and CR LF.
    MixedTerminators,
    /// Blank lines between or after segments were skipped.
    BlankLines,
    /// The bytes were not UTF-8 and were read as ISO 8859-1.
    NotUtf8,
    /// A header field the standard requires is empty (MSH-7, MSH-10, MSH-11 or MSH-12).
    MissingHeaderField(u8),
    /// Batch/file structure: a header (BHS/FHS) or trailer (BTS/FTS) is missing.
    MissingBatchEnvelope(&'static str),
    /// Batch/file structure: the count in BTS-1 or FTS-1 does not match the content.
    BatchCountMismatch(&'static str),
}

/// A line of input with its 1-based number.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    pub(crate) number: usize,
    pub(crate) text: &'a str,
}

/// Splits input into non-blank lines on CR, LF or CR LF, noting the quirks met.
pub(crate) fn split_lines(input: &str) -> (Vec<Line<'_>>, Vec<Warning>) {
    let mut warnings = Vec::new();
    let input = match input.strip_prefix('\u{FEFF}') {
        Some(rest) => {
            warnings.push(Warning::ByteOrderMark);
            rest
        }
        None => input,
    };
    let (mut cr, mut lf, mut crlf, mut blank) = (0usize, 0usize, 0usize, false);
    let mut lines = Vec::new();
    let mut rest = input;
    let mut number = 0;
    while !rest.is_empty() {
        number += 1;
        let (text, next) = match rest.find(['\r', '\n']) {
            None => (rest, ""),
            Some(i) => {
                let after = &rest[i..];
                if after.starts_with("\r\n") {
                    crlf += 1;
                    (&rest[..i], &rest[i + 2..])
                } else {
                    if after.starts_with('\r') {
                        cr += 1
                    } else {
                        lf += 1
                    }
                    (&rest[..i], &rest[i + 1..])
                }
            }
        };
        if text.trim().is_empty() {
            blank = true;
        } else {
            lines.push(Line { number, text });
        }
        rest = next;
    }
    match (cr > 0, lf > 0, crlf > 0) {
        (false, true, false) => warnings.push(Warning::LineFeedTerminators),
        (false, false, true) => warnings.push(Warning::CrLfTerminators),
        (true, false, false) | (false, false, false) => {}
        _ => warnings.push(Warning::MixedTerminators),
    }
    if blank {
        warnings.push(Warning::BlankLines);
    }
    (lines, warnings)
}

/// Decodes bytes: UTF-8 when valid, else ISO 8859-1 (every byte is one character, so nothing
/// is lost and the reader never fails on encoding).
pub(crate) fn decode_bytes(input: &[u8]) -> (Cow<'_, str>, Option<Warning>) {
    match std::str::from_utf8(input) {
        Ok(s) => (Cow::Borrowed(s), None),
        Err(_) => (Cow::Owned(input.iter().map(|&b| char::from(b)).collect()), Some(Warning::NotUtf8)),
    }
}

/// The id of a line if it starts with a well-formed segment id followed by the field
/// separator (or ends there).
pub(crate) fn line_id(text: &str, field: char) -> Option<&str> {
    let id = text.get(..3)?;
    let rest = &text[3..];
    (is_segment_id(id) && (rest.is_empty() || rest.starts_with(field))).then_some(id)
}

/// Reads the delimiters of a header segment line (MSH, BHS, FHS).
pub(crate) fn header_delimiters(segment: &'static str, text: &str) -> Result<Delimiters> {
    let after = text.get(3..).ok_or(Error::BadDelimiters { segment, reason: "no field separator" })?;
    let field = after.chars().next().ok_or(Error::BadDelimiters { segment, reason: "no field separator" })?;
    let encoding = after[field.len_utf8()..].split(field).next().unwrap_or("");
    Delimiters::from_header(segment, field, encoding)
}

/// The header values of an outgoing message, as text (escaped when set). Composite values
/// (an HD with a universal id, say) can be completed afterwards with [`Message::set`], e.g.
/// `msg.set("MSH-3.2", "1.2.3")`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header<'a> {
    /// MSH-3.1.
    pub sending_application: &'a str,
    /// MSH-4.1.
    pub sending_facility: &'a str,
    /// MSH-5.1.
    pub receiving_application: &'a str,
    /// MSH-6.1.
    pub receiving_facility: &'a str,
    /// MSH-7.1, e.g. `20240101120000+0000`.
    pub timestamp: &'a str,
    /// MSH-9.1, e.g. `ADT`.
    pub message_code: &'a str,
    /// MSH-9.2, e.g. `A01`.
    pub trigger_event: &'a str,
    /// MSH-9.3, e.g. `ADT_A01`.
    pub message_structure: &'a str,
    /// MSH-10.
    pub control_id: &'a str,
    /// MSH-11.1, e.g. `P`.
    pub processing_id: &'a str,
    /// MSH-12.1, e.g. `2.5.1`.
    pub version: &'a str,
}

/// One HL7 v2 message: its segments (raw text kept), delimiters and reading warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    delimiters: Delimiters,
    segments: Vec<Segment>,
    warnings: Vec<Warning>,
}

impl Message {
    /// Reads one message. Tolerates LF / CR LF terminators, a BOM, blank lines and a missing
    /// final terminator (each noted in [`Message::warnings`]); refuses input without a leading
    /// MSH, with unusable delimiters, without MSH-9, with lines that are not segments, or with
    /// several messages or batch segments (see `Batch::parse` for those).
    pub fn parse(input: &str) -> Result<Self> {
        let (lines, warnings) = split_lines(input);
        Self::from_lines(&lines, warnings)
    }

    /// Reads one message from bytes (UTF-8, else ISO 8859-1 with a warning).
    pub fn parse_bytes(input: &[u8]) -> Result<Self> {
        let (text, warning) = decode_bytes(input);
        let mut message = Self::parse(&text)?;
        message.warnings.extend(warning);
        Ok(message)
    }

    pub(crate) fn from_lines(lines: &[Line<'_>], mut warnings: Vec<Warning>) -> Result<Self> {
        let first = lines.first().ok_or(Error::Empty)?;
        match first.text.get(..3) {
            Some("MSH") => {}
            Some("BHS") => return Err(Error::BatchInput("BHS")),
            Some("FHS") => return Err(Error::BatchInput("FHS")),
            _ => return Err(Error::MissingMsh),
        }
        let delimiters = header_delimiters("MSH", first.text)?;
        let mut segments = Vec::with_capacity(lines.len());
        segments.push(Segment::from_raw(first.text.to_owned(), delimiters));
        for line in &lines[1..] {
            let id = line_id(line.text, delimiters.field).ok_or(Error::InvalidSegment { line: line.number })?;
            match id {
                "MSH" => return Err(Error::MultipleMessages { line: line.number }),
                "BHS" | "BTS" | "FHS" | "FTS" => {
                    let id = match id {
                        "BHS" => "BHS",
                        "BTS" => "BTS",
                        "FHS" => "FHS",
                        _ => "FTS",
                    };
                    return Err(Error::BatchSegmentInMessage { id, line: line.number });
                }
                _ => segments.push(Segment::from_raw(line.text.to_owned(), delimiters)),
            }
        }
        let message = Self { delimiters, segments, warnings: Vec::new() };
        if message.header_text(9, Some(1)).is_none() {
            return Err(Error::MissingMessageType);
        }
        for field in [7u8, 10, 11, 12] {
            if message.header_text(usize::from(field), Some(1)).is_none() {
                warnings.push(Warning::MissingHeaderField(field));
            }
        }
        Ok(Self { warnings, ..message })
    }

    /// A new message holding only an MSH with MSH-1 and MSH-2; fill it with [`Message::set`]
    /// and [`Message::add_segment`].
    pub fn new(delimiters: Delimiters) -> Self {
        let msh = Segment::from_raw(format!("MSH{}{}", delimiters.field, delimiters.encoding_characters()), delimiters);
        Self { delimiters, segments: vec![msh], warnings: Vec::new() }
    }

    /// A new message with its MSH filled from `header` (empty values left out).
    pub fn with_header(delimiters: Delimiters, header: &Header<'_>) -> Self {
        let mut message = Self::new(delimiters);
        let values = [
            ("MSH-3.1", header.sending_application),
            ("MSH-4.1", header.sending_facility),
            ("MSH-5.1", header.receiving_application),
            ("MSH-6.1", header.receiving_facility),
            ("MSH-7.1", header.timestamp),
            ("MSH-9.1", header.message_code),
            ("MSH-9.2", header.trigger_event),
            ("MSH-9.3", header.message_structure),
            ("MSH-10", header.control_id),
            ("MSH-11.1", header.processing_id),
            ("MSH-12.1", header.version),
        ];
        for (path, value) in values {
            if !value.is_empty() {
                // These paths name MSH fields above 2, which can always be set.
                let _ = message.set(path, value);
            }
        }
        message
    }

    /// What was tolerated while reading.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The message's delimiters.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }

    /// MSH-2 as written, e.g. `^~\&`.
    pub fn encoding_characters(&self) -> &str {
        self.msh().field(2).map_or("", |f| f.raw())
    }

    /// All segments in order, MSH first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The MSH segment.
    pub fn msh(&self) -> &Segment {
        &self.segments[0]
    }

    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id() == id)
    }

    /// Every segment with this id, in order.
    pub fn segments_with_id<'m>(&'m self, id: &'m str) -> impl Iterator<Item = &'m Segment> + 'm {
        self.segments.iter().filter(move |s| s.id() == id)
    }

    /// Occurrence `n` (1-based) of the segment with this id, for changing it.
    pub fn segment_mut(&mut self, id: &str, n: usize) -> Option<&mut Segment> {
        self.segments.iter_mut().filter(|s| s.id() == id).nth(n.checked_sub(1)?)
    }

    /// Appends an empty segment and returns it for filling in.
    pub fn add_segment(&mut self, id: &str) -> Result<&mut Segment> {
        if matches!(id, "MSH" | "BHS" | "BTS" | "FHS" | "FTS") {
            return Err(Error::InvalidSegmentId);
        }
        self.segments.push(Segment::new(id, self.delimiters)?);
        let last = self.segments.len() - 1;
        Ok(&mut self.segments[last])
    }

    /// Decoded text at a path such as `PID-3(2).4.1` (see [`Path`]); an unspecified
    /// repetition, component or sub-component means the first, as in HAPI's terser. `None`
    /// when the path is malformed or the value absent or empty.
    pub fn get(&self, path: &str) -> Option<String> {
        let path = Path::parse(path).ok()?;
        self.segments_with_id(&path.segment).nth(path.occurrence - 1)?.get(&path.location)
    }

    /// Sets the value at a path, escaping delimiters (the inverse of [`Message::get`]). A
    /// segment occurrence one past the last is appended.
    pub fn set(&mut self, path: &str, text: &str) -> Result<()> {
        let path = Path::parse(path)?;
        self.segment_for_path(&path)?.set(&path.location, text)
    }

    /// Replaces exactly the element a path names with raw, already escaped text (see
    /// [`Segment::set_raw`]).
    pub fn set_raw(&mut self, path: &str, raw: &str) -> Result<()> {
        let path = Path::parse(path)?;
        self.segment_for_path(&path)?.set_raw(&path.location, raw)
    }

    fn segment_for_path(&mut self, path: &Path) -> Result<&mut Segment> {
        let count = self.segments_with_id(&path.segment).count();
        if path.occurrence == count + 1 {
            return self.add_segment(&path.segment);
        }
        self.segment_mut(&path.segment, path.occurrence).ok_or(Error::InvalidPath)
    }

    /// The message as HL7 text: segments each terminated by CR.
    pub fn encode(&self) -> String {
        let len = self.segments.iter().map(|s| s.raw().len() + 1).sum();
        let mut out = String::with_capacity(len);
        for segment in &self.segments {
            out.push_str(segment.raw());
            out.push('\r');
        }
        out
    }

    fn header_text(&self, field: usize, component: Option<usize>) -> Option<String> {
        self.msh().get(&Location { field, repetition: None, component, subcomponent: None })
    }

    /// MSH-3, the sending application (an HD: namespace^universal id^type).
    pub fn sending_application(&self) -> Option<Field<'_>> {
        self.msh().field(3)
    }

    /// MSH-4, the sending facility.
    pub fn sending_facility(&self) -> Option<Field<'_>> {
        self.msh().field(4)
    }

    /// MSH-5, the receiving application.
    pub fn receiving_application(&self) -> Option<Field<'_>> {
        self.msh().field(5)
    }

    /// MSH-6, the receiving facility.
    pub fn receiving_facility(&self) -> Option<Field<'_>> {
        self.msh().field(6)
    }

    /// MSH-7.1, the date/time of the message as sent.
    pub fn timestamp(&self) -> Option<String> {
        self.header_text(7, Some(1))
    }

    /// MSH-9.1, the message code (`ADT`, `ORU`, …). Always present in a parsed message.
    pub fn message_code(&self) -> Option<String> {
        self.header_text(9, Some(1))
    }

    /// MSH-9.2, the trigger event (`A01`, `R01`, …).
    pub fn trigger_event(&self) -> Option<String> {
        self.header_text(9, Some(2))
    }

    /// MSH-9.3, the message structure as declared (`ADT_A01`, …).
    pub fn message_structure(&self) -> Option<String> {
        self.header_text(9, Some(3))
    }

    /// MSH-10, the message control id.
    pub fn control_id(&self) -> Option<String> {
        self.header_text(10, Some(1))
    }

    /// MSH-11.1, the processing id (`P` production, `T` training, `D` debugging).
    pub fn processing_id(&self) -> Option<String> {
        self.header_text(11, Some(1))
    }

    /// MSH-12.1, the version id (`2.5.1`, …).
    pub fn version(&self) -> Option<String> {
        self.header_text(12, Some(1))
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &str = "MSH|^~\\&|APP|FAC|REC|RFAC|20240101120000||ADT^A01^ADT_A01|MSG1|P|2.5.1\rEVN|A01\rPID|1||123^^^H&1.2&ISO^MR~456||DOE^JANE\\T\\JO||19800101|F\rZPI|custom|stuff|\r";

    #[test]
    fn reads_header_helpers() {
        let m = Message::parse(ADT).unwrap();
        assert!(m.warnings().is_empty());
        assert_eq!(m.message_code().as_deref(), Some("ADT"));
        assert_eq!(m.trigger_event().as_deref(), Some("A01"));
        assert_eq!(m.message_structure().as_deref(), Some("ADT_A01"));
        assert_eq!(m.control_id().as_deref(), Some("MSG1"));
        assert_eq!(m.processing_id().as_deref(), Some("P"));
        assert_eq!(m.version().as_deref(), Some("2.5.1"));
        assert_eq!(m.timestamp().as_deref(), Some("20240101120000"));
        assert_eq!(m.sending_application().unwrap().raw(), "APP");
        assert_eq!(m.receiving_facility().unwrap().raw(), "RFAC");
        assert_eq!(m.encoding_characters(), "^~\\&");
        assert_eq!(m.encode(), ADT);
    }

    #[test]
    fn path_getter() {
        let m = Message::parse(ADT).unwrap();
        assert_eq!(m.get("PID-3(1).4.2").as_deref(), Some("1.2"));
        assert_eq!(m.get("PID-3(2)").as_deref(), Some("456"));
        assert_eq!(m.get("PID-3").as_deref(), Some("123"));
        assert_eq!(m.get("PID-5.2").as_deref(), Some("JANE&JO"));
        assert_eq!(m.get("MSH-1").as_deref(), Some("|"));
        assert_eq!(m.get("MSH-2").as_deref(), Some("^~\\&"));
        assert_eq!(m.get("MSH-9.2").as_deref(), Some("A01"));
        assert_eq!(m.get("ZPI-2").as_deref(), Some("stuff"));
        assert_eq!(m.get("ZPI-3"), None);
        assert_eq!(m.get("PID(2)-1"), None);
        assert_eq!(m.get("bad path"), None);
    }

    #[test]
    fn tolerated_quirks_are_warned() {
        let lf = ADT.replace('\r', "\n");
        let m = Message::parse(&format!("\u{FEFF}{lf}\n\n")).unwrap();
        assert_eq!(m.warnings(), &[Warning::ByteOrderMark, Warning::LineFeedTerminators, Warning::BlankLines]);
        assert_eq!(m.encode(), ADT);
        let crlf = ADT.replace('\r', "\r\n");
        assert_eq!(Message::parse(&crlf).unwrap().warnings(), &[Warning::CrLfTerminators]);
        let mixed = ADT.replacen('\r', "\n", 1);
        assert_eq!(Message::parse(&mixed).unwrap().warnings(), &[Warning::MixedTerminators]);
        let no_final = ADT.trim_end_matches('\r');
        assert!(Message::parse(no_final).unwrap().warnings().is_empty());
    }

    #[test]
    fn strict_where_meaning_is_lost() {
        assert_eq!(Message::parse(""), Err(Error::Empty));
        assert_eq!(Message::parse("\r\n \n"), Err(Error::Empty));
        assert_eq!(Message::parse("PID|1\r"), Err(Error::MissingMsh));
        assert_eq!(Message::parse("BHS|^~\\&\rMSH|^~\\&\r"), Err(Error::BatchInput("BHS")));
        assert!(matches!(Message::parse("MSH|&&&&|A\r"), Err(Error::BadDelimiters { .. })));
        assert!(matches!(Message::parse("MSH"), Err(Error::BadDelimiters { .. })));
        assert_eq!(Message::parse("MSH|^~\\&|A|B|C|D|2024||\r"), Err(Error::MissingMessageType));
        assert_eq!(Message::parse("MSH|^~\\&|A|B|C|D|2024||^A01\r"), Err(Error::MissingMessageType));
        assert_eq!(Message::parse(&format!("{ADT}free text line\r")), Err(Error::InvalidSegment { line: 5 }));
        assert_eq!(Message::parse(&format!("{ADT}PIDX|1\r")), Err(Error::InvalidSegment { line: 5 }));
        assert_eq!(Message::parse(&format!("{ADT}{ADT}")), Err(Error::MultipleMessages { line: 5 }));
        assert_eq!(Message::parse(&format!("{ADT}BTS|1\r")), Err(Error::BatchSegmentInMessage { id: "BTS", line: 5 }));
    }

    #[test]
    fn missing_required_header_fields_are_warnings() {
        let m = Message::parse("MSH|^~\\&|||||||ACK\r").unwrap();
        assert_eq!(
            m.warnings(),
            &[
                Warning::MissingHeaderField(7),
                Warning::MissingHeaderField(10),
                Warning::MissingHeaderField(11),
                Warning::MissingHeaderField(12)
            ]
        );
    }

    #[test]
    fn latin1_fallback() {
        let bytes = b"MSH|^~\\&|||||2024||ADT^A01|1|P|2.5\rPID|1||||M\xfcller\r";
        let m = Message::parse_bytes(bytes).unwrap();
        assert_eq!(m.get("PID-5").as_deref(), Some("Müller"));
        assert_eq!(m.warnings(), &[Warning::NotUtf8]);
    }

    #[test]
    fn builds_from_a_header() {
        let header = Header {
            sending_application: "CONTINUUM",
            sending_facility: "HOSP",
            timestamp: "20240101120000",
            message_code: "ORU",
            trigger_event: "R01",
            message_structure: "ORU_R01",
            control_id: "c|1",
            processing_id: "P",
            version: "2.5.1",
            ..Header::default()
        };
        let mut m = Message::with_header(Delimiters::default(), &header);
        m.set("MSH-3.2", "1.2.3").unwrap();
        assert_eq!(m.encode(), "MSH|^~\\&|CONTINUUM^1.2.3|HOSP|||20240101120000||ORU^R01^ORU_R01|c\\F\\1|P|2.5.1\r");
        assert_eq!(Message::parse(&m.encode()).unwrap().control_id().as_deref(), Some("c|1"));
    }

    #[test]
    fn builds_a_message() {
        let mut m = Message::new(Delimiters::default());
        m.set("MSH-3", "CONTINUUM").unwrap();
        m.set("MSH-7", "20240101120000").unwrap();
        m.set("MSH-9.1", "ADT").unwrap();
        m.set("MSH-9.2", "A01").unwrap();
        m.set("MSH-9.3", "ADT_A01").unwrap();
        m.set("MSH-10", "1").unwrap();
        m.set("MSH-11", "P").unwrap();
        m.set("MSH-12", "2.5.1").unwrap();
        m.set("PID-5.1", "O'Brien|Smith^Jr").unwrap();
        m.set("PID-3(2).1", "X~Y").unwrap();
        m.add_segment("PV1").unwrap().set(&Location::parse_in_segment("2").unwrap(), "I").unwrap();
        m.set("OBX(1)-5", "a").unwrap();
        m.set("OBX(2)-5", "b").unwrap();
        assert_eq!(m.set("OBX(4)-5", "d"), Err(Error::InvalidPath));
        assert_eq!(m.set("MSH-1", "!"), Err(Error::ReadOnlyField("MSH-1")));
        assert!(m.add_segment("MSH").is_err());
        let text = m.encode();
        assert_eq!(
            text,
            "MSH|^~\\&|CONTINUUM||||20240101120000||ADT^A01^ADT_A01|1|P|2.5.1\r\
             PID|||~X\\R\\Y||O'Brien\\F\\Smith\\S\\Jr\rPV1||I\rOBX|||||a\rOBX|||||b\r"
        );
        let back = Message::parse(&text).unwrap();
        assert!(back.warnings().is_empty());
        assert_eq!(back.get("PID-5").as_deref(), Some("O'Brien|Smith^Jr"));
        assert_eq!(back.get("PID-3(2)").as_deref(), Some("X~Y"));
        assert_eq!(back, m);
    }
}
