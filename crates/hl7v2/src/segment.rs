//! Segments and the borrowed views into them: field → repetition → component → sub-component.
//!
//! A segment keeps its raw (escaped) text; views are slices of it, found by splitting on the
//! delimiters when asked. `raw()` gives the text as sent, `text()` resolves escape sequences.
//! All positions are 1-based, as HL7 numbers them.

use std::borrow::Cow;

use crate::delimiters::Delimiters;
use crate::error::{Error, Result};
use crate::path::Location;

/// One segment: its raw text (without terminator) and the delimiters of its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    raw: String,
    delimiters: Delimiters,
}

/// Whether `id` is a well-formed segment id: `[A-Z][A-Z0-9]{2}`.
pub fn is_segment_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 3 && b[0].is_ascii_uppercase() && b[1..].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// Header segments number their fields from the field separator itself (MSH-1 = `|`).
fn is_header_id(id: &str) -> bool {
    matches!(id, "MSH" | "BHS" | "FHS")
}

impl Segment {
    /// An empty segment (`ID` with no fields). Header segments (MSH, BHS, FHS) get MSH-1 and
    /// MSH-2 from `delimiters`.
    pub fn new(id: &str, delimiters: Delimiters) -> Result<Self> {
        if !is_segment_id(id) {
            return Err(Error::InvalidSegmentId);
        }
        let mut raw = id.to_owned();
        if is_header_id(id) {
            raw.push(delimiters.field);
            raw.push_str(&delimiters.encoding_characters());
        }
        Ok(Self { raw, delimiters })
    }

    /// Wraps already-checked raw text (id validated, header delimiters consistent).
    pub(crate) fn from_raw(raw: String, delimiters: Delimiters) -> Self {
        Self { raw, delimiters }
    }

    /// The segment id, e.g. `PID`.
    pub fn id(&self) -> &str {
        self.raw.get(..3).unwrap_or("")
    }

    /// The raw text of the whole segment, as it is encoded (without the terminator).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The delimiters this segment is encoded with.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }

    fn is_header(&self) -> bool {
        is_header_id(self.id())
    }

    /// How many fields the segment carries (trailing empty fields included, as sent).
    pub fn field_count(&self) -> usize {
        let parts = self.raw.split(self.delimiters.field).count() - 1;
        if self.is_header() { parts + 1 } else { parts }
    }

    /// Field `n` (1-based). For MSH (and BHS/FHS) numbering follows the standard: field 1 is
    /// the field separator and field 2 the encoding characters, both returned literally.
    pub fn field(&self, n: usize) -> Option<Field<'_>> {
        let d = &self.delimiters;
        if n == 0 {
            return None;
        }
        if self.is_header() && n <= 2 {
            let sep_len = d.field.len_utf8();
            let raw = if n == 1 {
                self.raw.get(3..3 + sep_len)?
            } else {
                self.raw.get(3 + sep_len..)?.split(d.field).next()?
            };
            return Some(Field { raw, delimiters: d, literal: true });
        }
        let index = if self.is_header() { n - 1 } else { n };
        let raw = self.raw.split(d.field).nth(index)?;
        Some(Field { raw, delimiters: d, literal: false })
    }

    /// All fields in order, from field 1.
    pub fn fields(&self) -> impl Iterator<Item = Field<'_>> {
        (1..=self.field_count()).filter_map(|n| self.field(n))
    }

    /// The decoded text at a location inside this segment (unspecified repetition, component
    /// and sub-component default to the first); `None` when absent or empty.
    pub fn get(&self, location: &Location) -> Option<String> {
        let field = self.field(location.field)?;
        let text = if field.literal {
            field.raw.to_owned()
        } else {
            let rep = field.repetition(location.repetition.unwrap_or(1))?;
            let comp = rep.component(location.component.unwrap_or(1))?;
            comp.subcomponent(location.subcomponent.unwrap_or(1))?.text().into_owned()
        };
        (!text.is_empty()).then_some(text)
    }

    /// Sets the value at a location to `text`, escaping delimiters. Like [`Segment::get`], an
    /// unspecified repetition, component or sub-component means the first, so the other
    /// components of the field are kept. Missing fields and parts are created empty.
    pub fn set(&mut self, location: &Location, text: &str) -> Result<()> {
        let full = Location {
            repetition: Some(location.repetition.unwrap_or(1)),
            component: Some(location.component.unwrap_or(1)),
            subcomponent: Some(location.subcomponent.unwrap_or(1)),
            ..*location
        };
        let escaped = self.delimiters.escape(text).into_owned();
        self.set_raw(&full, &escaped)
    }

    /// Replaces exactly the element a location names (the whole field when no repetition is
    /// given, the whole repetition when no component is given, …) with raw, already escaped
    /// text. The caller is responsible for the escaping.
    pub fn set_raw(&mut self, location: &Location, raw: &str) -> Result<()> {
        let n = location.field;
        if n == 0 {
            return Err(Error::InvalidPath);
        }
        let header = self.is_header();
        if header && n <= 2 {
            return Err(Error::ReadOnlyField(if n == 1 { "MSH-1" } else { "MSH-2" }));
        }
        let d = self.delimiters;
        let index = if header { n - 1 } else { n };
        let levels = [location.repetition, location.component, location.subcomponent];
        let seps = [d.repetition, d.component, d.subcomponent];
        self.raw = replace_part(&self.raw, d.field, index, &|field| replace_nested(field, &levels, &seps, raw));
        Ok(())
    }
}

/// Replaces the part under `levels` (1-based indexes, `None` ends the descent) of `value`.
fn replace_nested(value: &str, levels: &[Option<usize>], seps: &[char], raw: &str) -> String {
    match (levels.first().copied().flatten(), seps.first()) {
        (Some(n), Some(&sep)) if n > 0 => {
            replace_part(value, sep, n - 1, &|part| replace_nested(part, &levels[1..], &seps[1..], raw))
        }
        _ => raw.to_owned(),
    }
}

/// Splits `value` on `sep`, pads with empty parts up to `index`, and rewrites part `index`.
fn replace_part(value: &str, sep: char, index: usize, rewrite: &dyn Fn(&str) -> String) -> String {
    let mut parts: Vec<&str> = value.split(sep).collect();
    if parts.len() <= index {
        parts.resize(index + 1, "");
    }
    let replaced = rewrite(parts[index]);
    let mut out = String::with_capacity(value.len() + replaced.len() + index);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        out.push_str(if i == index { &replaced } else { part });
    }
    out
}

fn nth_part(raw: &str, sep: char, n: usize) -> Option<&str> {
    if n == 0 { None } else { raw.split(sep).nth(n - 1) }
}

/// A field of a segment (all its repetitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    raw: &'a str,
    delimiters: &'a Delimiters,
    /// MSH-1 and MSH-2 hold delimiters themselves: never split nor unescaped.
    literal: bool,
}

impl<'a> Field<'a> {
    /// The raw (escaped) text of the field, repetitions included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the field is empty (not valued).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Whether the field holds the explicit HL7 null `""` (delete the stored value).
    pub fn is_null(&self) -> bool {
        self.raw == "\"\""
    }

    /// The decoded text of the whole field (delimiters inside it stay as they are).
    pub fn text(&self) -> Cow<'a, str> {
        if self.literal { Cow::Borrowed(self.raw) } else { self.delimiters.unescape(self.raw) }
    }

    /// The repetitions of the field (one, possibly empty, when it does not repeat).
    pub fn repetitions(&self) -> impl Iterator<Item = Repetition<'a>> + use<'a> {
        let (d, literal) = (self.delimiters, self.literal);
        let sep = if literal { None } else { Some(d.repetition) };
        split_opt(self.raw, sep).map(move |raw| Repetition { raw, delimiters: d, literal })
    }

    /// Repetition `n` (1-based).
    pub fn repetition(&self, n: usize) -> Option<Repetition<'a>> {
        if self.literal {
            return (n == 1).then_some(Repetition { raw: self.raw, delimiters: self.delimiters, literal: true });
        }
        let raw = nth_part(self.raw, self.delimiters.repetition, n)?;
        Some(Repetition { raw, delimiters: self.delimiters, literal: false })
    }

    /// Component `n` of the first repetition.
    pub fn component(&self, n: usize) -> Option<Component<'a>> {
        self.repetition(1)?.component(n)
    }
}

fn split_opt(raw: &str, sep: Option<char>) -> Box<dyn Iterator<Item = &str> + '_> {
    match sep {
        Some(sep) => Box::new(raw.split(sep)),
        None => Box::new(std::iter::once(raw)),
    }
}

/// One repetition of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repetition<'a> {
    raw: &'a str,
    delimiters: &'a Delimiters,
    literal: bool,
}

impl<'a> Repetition<'a> {
    /// The raw (escaped) text of the repetition.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the repetition is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The decoded text of the whole repetition.
    pub fn text(&self) -> Cow<'a, str> {
        if self.literal { Cow::Borrowed(self.raw) } else { self.delimiters.unescape(self.raw) }
    }

    /// The components of the repetition.
    pub fn components(&self) -> impl Iterator<Item = Component<'a>> + use<'a> {
        let (d, literal) = (self.delimiters, self.literal);
        let sep = if literal { None } else { Some(d.component) };
        split_opt(self.raw, sep).map(move |raw| Component { raw, delimiters: d, literal })
    }

    /// Component `n` (1-based).
    pub fn component(&self, n: usize) -> Option<Component<'a>> {
        if self.literal {
            return (n == 1).then_some(Component { raw: self.raw, delimiters: self.delimiters, literal: true });
        }
        let raw = nth_part(self.raw, self.delimiters.component, n)?;
        Some(Component { raw, delimiters: self.delimiters, literal: false })
    }
}

/// One component of a repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component<'a> {
    raw: &'a str,
    delimiters: &'a Delimiters,
    literal: bool,
}

impl<'a> Component<'a> {
    /// The raw (escaped) text of the component.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the component is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The decoded text of the whole component.
    pub fn text(&self) -> Cow<'a, str> {
        if self.literal { Cow::Borrowed(self.raw) } else { self.delimiters.unescape(self.raw) }
    }

    /// The sub-components of the component.
    pub fn subcomponents(&self) -> impl Iterator<Item = Subcomponent<'a>> + use<'a> {
        let (d, literal) = (self.delimiters, self.literal);
        let sep = if literal { None } else { Some(d.subcomponent) };
        split_opt(self.raw, sep).map(move |raw| Subcomponent { raw, delimiters: d, literal })
    }

    /// Sub-component `n` (1-based).
    pub fn subcomponent(&self, n: usize) -> Option<Subcomponent<'a>> {
        if self.literal {
            return (n == 1).then_some(Subcomponent { raw: self.raw, delimiters: self.delimiters, literal: true });
        }
        let raw = nth_part(self.raw, self.delimiters.subcomponent, n)?;
        Some(Subcomponent { raw, delimiters: self.delimiters, literal: false })
    }
}

/// One sub-component of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subcomponent<'a> {
    raw: &'a str,
    delimiters: &'a Delimiters,
    literal: bool,
}

impl<'a> Subcomponent<'a> {
    /// The raw (escaped) text of the sub-component.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the sub-component is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The decoded text: escape sequences resolved.
    pub fn text(&self) -> Cow<'a, str> {
        if self.literal { Cow::Borrowed(self.raw) } else { self.delimiters.unescape(self.raw) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(raw: &str) -> Segment {
        Segment::from_raw(raw.to_owned(), Delimiters::default())
    }

    #[test]
    fn msh_numbering_follows_the_standard() {
        let msh = seg(r"MSH|^~\&|APP|FAC|||20240101||ADT^A01^ADT_A01|42|P|2.5.1");
        assert_eq!(msh.field(1).unwrap().raw(), "|");
        assert_eq!(msh.field(2).unwrap().raw(), r"^~\&");
        assert_eq!(msh.field(2).unwrap().text(), r"^~\&");
        assert_eq!(msh.field(2).unwrap().component(1).unwrap().raw(), r"^~\&");
        assert_eq!(msh.field(3).unwrap().raw(), "APP");
        assert_eq!(msh.field(9).unwrap().component(2).unwrap().raw(), "A01");
        assert_eq!(msh.field(12).unwrap().raw(), "2.5.1");
        assert_eq!(msh.field_count(), 12);
        assert!(msh.field(13).is_none());
        assert!(msh.field(0).is_none());
        assert_eq!(msh.fields().count(), 12);
    }

    #[test]
    fn nested_access() {
        let pid = seg(r"PID|1||A^^^X&1.2&ISO~B\T\C^^^Y||DOE^JOHN");
        let f3 = pid.field(3).unwrap();
        assert_eq!(f3.repetitions().count(), 2);
        let r2 = f3.repetition(2).unwrap();
        assert_eq!(r2.component(1).unwrap().raw(), r"B\T\C");
        assert_eq!(r2.component(1).unwrap().text(), "B&C");
        assert_eq!(r2.component(1).unwrap().subcomponents().count(), 1, "escaped & does not split");
        let hd = f3.repetition(1).unwrap().component(4).unwrap();
        assert_eq!(hd.subcomponent(2).unwrap().raw(), "1.2");
        assert!(hd.subcomponent(4).is_none());
        assert_eq!(pid.field(5).unwrap().component(2).unwrap().text(), "JOHN");
        assert!(pid.field(2).unwrap().is_empty());
        assert!(pid.field(6).is_none());
    }

    #[test]
    fn set_creates_and_escapes() {
        let mut pid = Segment::new("PID", Delimiters::default()).unwrap();
        pid.set(&Location::parse_in_segment("5.2").unwrap(), "Jo|hn").unwrap();
        assert_eq!(pid.raw(), r"PID|||||^Jo\F\hn");
        pid.set(&Location::parse_in_segment("3(2).4.2").unwrap(), "1.2.3").unwrap();
        assert_eq!(pid.raw(), r"PID|||~^^^&1.2.3||^Jo\F\hn");
        pid.set(&Location::parse_in_segment("5").unwrap(), "Doe").unwrap();
        assert_eq!(pid.raw(), r"PID|||~^^^&1.2.3||Doe^Jo\F\hn");
        pid.set_raw(&Location::parse_in_segment("5").unwrap(), "X^Y~Z").unwrap();
        assert_eq!(pid.field(5).unwrap().repetitions().count(), 2);
        assert_eq!(pid.get(&Location::parse_in_segment("5(2)").unwrap()).as_deref(), Some("Z"));
    }

    #[test]
    fn msh_delimiter_fields_are_read_only() {
        let mut msh = Segment::new("MSH", Delimiters::default()).unwrap();
        assert_eq!(msh.raw(), r"MSH|^~\&");
        assert!(matches!(msh.set(&Location::parse_in_segment("2").unwrap(), "x"), Err(Error::ReadOnlyField(_))));
        msh.set(&Location::parse_in_segment("9.2").unwrap(), "A01").unwrap();
        assert_eq!(msh.raw(), r"MSH|^~\&|||||||^A01");
        assert_eq!(msh.field(9).unwrap().component(2).unwrap().raw(), "A01");
    }

    #[test]
    fn segment_ids() {
        assert!(is_segment_id("PID") && is_segment_id("ZP1") && is_segment_id("IN1"));
        assert!(!is_segment_id("pid") && !is_segment_id("1AB") && !is_segment_id("PI") && !is_segment_id("PIDX"));
        assert!(Segment::new("P|D", Delimiters::default()).is_err());
    }
}
