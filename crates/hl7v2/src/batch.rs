//! Batch files: `[FHS] { [BHS] { MSH … } [BTS] } [FTS]`.
//!
//! As in python-hl7, missing envelope segments (a batch without BHS or BTS, a file without
//! FHS or FTS, bare messages one after another) are tolerated with a warning; what is refused
//! is anything that leaves a segment without a message (a segment before any MSH), nested or
//! misplaced headers, and content after the file trailer.

use crate::delimiters::Delimiters;
use crate::error::{Error, Result};
use crate::message::{Line, Message, Warning, decode_bytes, header_delimiters, line_id, split_lines};
use crate::segment::{Segment, is_segment_id};

/// A batch file: an optional file header and trailer around batches of messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    file_header: Option<Segment>,
    groups: Vec<BatchGroup>,
    file_trailer: Option<Segment>,
    warnings: Vec<Warning>,
}

/// One batch: an optional BHS, its messages, an optional BTS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchGroup {
    header: Option<Segment>,
    messages: Vec<Message>,
    trailer: Option<Segment>,
}

impl BatchGroup {
    /// The batch header (BHS), if sent.
    pub fn header(&self) -> Option<&Segment> {
        self.header.as_ref()
    }

    /// The messages of this batch.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The batch trailer (BTS), if sent.
    pub fn trailer(&self) -> Option<&Segment> {
        self.trailer.as_ref()
    }
}

/// The id of a line, whatever its field separator (batch files mix header delimiters).
fn any_line_id(text: &str) -> Option<&str> {
    let id = text.get(..3)?;
    let ok = is_segment_id(id) && text[3..].chars().next().is_none_or(|c| c.is_ascii_punctuation());
    ok.then_some(id)
}

struct Reader<'a> {
    batch: Batch,
    file_delimiters: Delimiters,
    current: Option<BatchGroup>,
    current_delimiters: Delimiters,
    batch_open: bool,
    message: Vec<Line<'a>>,
}

impl<'a> Reader<'a> {
    fn flush_message(&mut self) -> Result<()> {
        if self.message.is_empty() {
            return Ok(());
        }
        let message = Message::from_lines(&self.message, Vec::new())?;
        self.message.clear();
        self.current.get_or_insert_with(BatchGroup::default).messages.push(message);
        Ok(())
    }

    fn close_group(&mut self) {
        if let Some(group) = self.current.take() {
            if group.header.is_none() {
                self.warn(Warning::MissingBatchEnvelope("BHS"));
            }
            if group.trailer.is_none() {
                self.warn(Warning::MissingBatchEnvelope("BTS"));
            }
            if let Some(count) = group.trailer.as_ref().and_then(count_field)
                && count != group.messages.len()
            {
                self.warn(Warning::BatchCountMismatch("BTS-1"));
            }
            self.batch.groups.push(group);
        }
        self.batch_open = false;
    }

    fn warn(&mut self, warning: Warning) {
        if !self.batch.warnings.contains(&warning) {
            self.batch.warnings.push(warning);
        }
    }

    fn line(&mut self, index: usize, line: Line<'a>) -> Result<()> {
        let number = line.number;
        let Some(id) = any_line_id(line.text) else {
            if self.message.is_empty() {
                return Err(Error::InvalidSegment { line: number });
            }
            // Let the message reader report it with its own delimiters.
            self.message.push(line);
            return Ok(());
        };
        match id {
            "FHS" => {
                if index > 0 {
                    return Err(Error::MisplacedBatchHeader { id: "FHS", line: number });
                }
                self.file_delimiters = header_delimiters("FHS", line.text)?;
                self.current_delimiters = self.file_delimiters;
                self.batch.file_header = Some(Segment::from_raw(line.text.to_owned(), self.file_delimiters));
            }
            "BHS" => {
                if self.batch_open {
                    return Err(Error::MisplacedBatchHeader { id: "BHS", line: number });
                }
                self.flush_message()?;
                self.close_group();
                let delimiters = header_delimiters("BHS", line.text)?;
                self.current_delimiters = delimiters;
                let header = Some(Segment::from_raw(line.text.to_owned(), delimiters));
                self.current = Some(BatchGroup { header, ..BatchGroup::default() });
                self.batch_open = true;
            }
            "BTS" => {
                self.flush_message()?;
                let trailer = self.own_segment(line, self.current_delimiters)?;
                self.current.get_or_insert_with(BatchGroup::default).trailer = Some(trailer);
                self.close_group();
                self.current_delimiters = self.file_delimiters;
            }
            "FTS" => {
                self.flush_message()?;
                self.close_group();
                self.batch.file_trailer = Some(self.own_segment(line, self.file_delimiters)?);
            }
            "MSH" => {
                self.flush_message()?;
                self.message.push(line);
            }
            other => {
                if self.message.is_empty() {
                    return Err(Error::SegmentOutsideMessage { id: other.to_owned(), line: number });
                }
                self.message.push(line);
            }
        }
        Ok(())
    }

    fn own_segment(&self, line: Line<'_>, delimiters: Delimiters) -> Result<Segment> {
        line_id(line.text, delimiters.field).ok_or(Error::InvalidSegment { line: line.number })?;
        Ok(Segment::from_raw(line.text.to_owned(), delimiters))
    }
}

/// BTS-1 / FTS-1 as a number, when valued.
fn count_field(segment: &Segment) -> Option<usize> {
    segment.field(1)?.component(1)?.text().trim().parse().ok()
}

impl Batch {
    /// Reads a batch file (or several bare messages one after another).
    pub fn parse(input: &str) -> Result<Self> {
        let (lines, warnings) = split_lines(input);
        if lines.is_empty() {
            return Err(Error::Empty);
        }
        let mut reader = Reader {
            batch: Batch { warnings, ..Batch::default() },
            file_delimiters: Delimiters::default(),
            current: None,
            current_delimiters: Delimiters::default(),
            batch_open: false,
            message: Vec::new(),
        };
        for (index, &line) in lines.iter().enumerate() {
            if reader.batch.file_trailer.is_some() {
                return Err(Error::AfterFileTrailer { line: line.number });
            }
            reader.line(index, line)?;
        }
        reader.flush_message()?;
        reader.close_group();
        let mut batch = reader.batch;
        match (&batch.file_header, &batch.file_trailer) {
            (Some(_), None) => batch.warnings.push(Warning::MissingBatchEnvelope("FTS")),
            (None, Some(_)) => batch.warnings.push(Warning::MissingBatchEnvelope("FHS")),
            _ => {}
        }
        if let Some(count) = batch.file_trailer.as_ref().and_then(count_field)
            && count != batch.groups.len()
        {
            batch.warnings.push(Warning::BatchCountMismatch("FTS-1"));
        }
        Ok(batch)
    }

    /// Reads a batch file from bytes (UTF-8, else ISO 8859-1 with a warning).
    pub fn parse_bytes(input: &[u8]) -> Result<Self> {
        let (text, warning) = decode_bytes(input);
        let mut batch = Self::parse(&text)?;
        batch.warnings.extend(warning);
        Ok(batch)
    }

    /// The file header (FHS), if sent.
    pub fn file_header(&self) -> Option<&Segment> {
        self.file_header.as_ref()
    }

    /// The file trailer (FTS), if sent.
    pub fn file_trailer(&self) -> Option<&Segment> {
        self.file_trailer.as_ref()
    }

    /// The batches, in order.
    pub fn groups(&self) -> &[BatchGroup] {
        &self.groups
    }

    /// Every message of every batch, in order.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.groups.iter().flat_map(|g| g.messages.iter())
    }

    /// What was tolerated while reading (envelope and line-ending quirks).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The batch file as HL7 text, every segment terminated by CR.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let mut push = |s: &Segment| {
            out.push_str(s.raw());
            out.push('\r');
        };
        self.file_header.iter().for_each(&mut push);
        for group in &self.groups {
            group.header.iter().for_each(&mut push);
            for message in &group.messages {
                message.segments().iter().for_each(&mut push);
            }
            group.trailer.iter().for_each(&mut push);
        }
        self.file_trailer.iter().for_each(&mut push);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = "MSH|^~\\&|A|B|C|D|2024||ADT^A04|1|P|2.5\rPID|1\r";

    #[test]
    fn full_envelope() {
        let text = format!("FHS|^~\\&|A\rBHS|^~\\&|A\r{MSG}{MSG}BTS|2\rFTS|1\r");
        let batch = Batch::parse(&text).unwrap();
        assert!(batch.warnings().is_empty(), "{:?}", batch.warnings());
        assert_eq!(batch.groups().len(), 1);
        assert_eq!(batch.messages().count(), 2);
        assert_eq!(batch.file_header().unwrap().field(3).unwrap().raw(), "A");
        assert_eq!(batch.encode(), text);
    }

    #[test]
    fn tolerated_gaps_are_warned() {
        let bare = Batch::parse(&format!("{MSG}{MSG}")).unwrap();
        assert_eq!(bare.messages().count(), 2);
        assert_eq!(bare.warnings(), &[Warning::MissingBatchEnvelope("BHS"), Warning::MissingBatchEnvelope("BTS")]);
        let counted = Batch::parse(&format!("BHS|^~\\&\r{MSG}BTS|3\r")).unwrap();
        assert_eq!(counted.warnings(), &[Warning::BatchCountMismatch("BTS-1")]);
        let empty_batch = Batch::parse("BHS|^~\\&\rBTS|0\r").unwrap();
        assert_eq!(empty_batch.groups()[0].messages().len(), 0);
    }

    #[test]
    fn refused_structures() {
        assert_eq!(Batch::parse(""), Err(Error::Empty));
        assert_eq!(
            Batch::parse("BHS|^~\\&\rEVN|A04\r"),
            Err(Error::SegmentOutsideMessage { id: "EVN".into(), line: 2 })
        );
        assert_eq!(
            Batch::parse(&format!("BHS|^~\\&\r{MSG}BHS|^~\\&\r")),
            Err(Error::MisplacedBatchHeader { id: "BHS", line: 4 })
        );
        assert_eq!(
            Batch::parse(&format!("FHS|^~\\&\r{MSG}FHS|^~\\&\r")),
            Err(Error::MisplacedBatchHeader { id: "FHS", line: 4 })
        );
        assert_eq!(Batch::parse(&format!("{MSG}FTS|1\r{MSG}")), Err(Error::AfterFileTrailer { line: 4 }));
        assert_eq!(Batch::parse("garbage\r"), Err(Error::InvalidSegment { line: 1 }));
        assert!(matches!(Batch::parse("BHS|&&&&\r"), Err(Error::BadDelimiters { segment: "BHS", .. })));
    }
}
