//! Delimiters (MSH-1, MSH-2) and escape sequences.

use std::borrow::Cow;

use crate::error::{Error, Result};

/// The delimiters a message declares in MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delimiters {
    /// Field separator (MSH-1), normally `|`.
    pub field: char,
    /// Component separator, normally `^`.
    pub component: char,
    /// Repetition separator, normally `~`.
    pub repetition: char,
    /// Escape character, normally `\`.
    pub escape: char,
    /// Sub-component separator, normally `&`.
    pub subcomponent: char,
    /// Truncation character (v2.7+, the optional fifth encoding character), normally `#`.
    pub truncation: Option<char>,
}

impl Default for Delimiters {
    fn default() -> Self {
        Self { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&', truncation: None }
    }
}

impl Delimiters {
    /// Builds the delimiters from a field separator and the encoding characters (MSH-2),
    /// which must be 4 or 5 distinct printable ASCII punctuation characters.
    pub fn new(field: char, encoding_characters: &str) -> Result<Self> {
        Self::from_header("MSH", field, encoding_characters)
    }

    pub(crate) fn from_header(segment: &'static str, field: char, encoding: &str) -> Result<Self> {
        let bad = |reason| Error::BadDelimiters { segment, reason };
        let chars: Vec<char> = encoding.chars().collect();
        if chars.len() < 4 || chars.len() > 5 {
            return Err(bad("expected 4 or 5 encoding characters"));
        }
        let all = std::iter::once(field).chain(chars.iter().copied());
        if all.clone().any(|c| !c.is_ascii_punctuation()) {
            return Err(bad("delimiters must be ASCII punctuation"));
        }
        let mut seen = Vec::with_capacity(6);
        for c in all {
            if seen.contains(&c) {
                return Err(bad("delimiters must be distinct"));
            }
            seen.push(c);
        }
        Ok(Self {
            field,
            component: chars[0],
            repetition: chars[1],
            escape: chars[2],
            subcomponent: chars[3],
            truncation: chars.get(4).copied(),
        })
    }

    /// The encoding characters as written in MSH-2 (`^~\&`, or `^~\&#` with truncation).
    pub fn encoding_characters(&self) -> String {
        let mut s: String = [self.component, self.repetition, self.escape, self.subcomponent].iter().collect();
        s.extend(self.truncation);
        s
    }

    fn is_special(&self, c: char) -> bool {
        c == self.field
            || c == self.component
            || c == self.repetition
            || c == self.escape
            || c == self.subcomponent
            || Some(c) == self.truncation
    }

    /// Escapes text for use as a value: delimiters become `\F\ \S\ \T\ \R\ \E\` (and `\P\`),
    /// line breaks become `\.br\`, and CR, 0x0B and 0x1C (which would break segment or MLLP
    /// framing) become `\Xhh\`.
    pub fn escape<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let needs = |c: char| self.is_special(c) || matches!(c, '\r' | '\n' | '\u{0B}' | '\u{1C}');
        if !text.chars().any(needs) {
            return Cow::Borrowed(text);
        }
        let e = self.escape;
        let mut out = String::with_capacity(text.len() + 8);
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let code: Option<&str> = if c == self.escape {
                Some("E")
            } else if c == self.field {
                Some("F")
            } else if c == self.component {
                Some("S")
            } else if c == self.subcomponent {
                Some("T")
            } else if c == self.repetition {
                Some("R")
            } else if Some(c) == self.truncation {
                Some("P")
            } else if c == '\n' || (c == '\r' && chars.peek() == Some(&'\n')) {
                if c == '\r' {
                    chars.next();
                }
                Some(".br")
            } else if c == '\r' {
                Some("X0D")
            } else if c == '\u{0B}' {
                Some("X0B")
            } else if c == '\u{1C}' {
                Some("X1C")
            } else {
                None
            };
            match code {
                Some(code) => {
                    out.push(e);
                    out.push_str(code);
                    out.push(e);
                }
                None => out.push(c),
            }
        }
        Cow::Owned(out)
    }

    /// Resolves escape sequences in a raw value: `\F\ \S\ \T\ \R\ \E\` (and `\P\` when a
    /// truncation character is declared) give the delimiter, `\Xhh..\` the bytes it encodes
    /// (read as UTF-8, else as ISO 8859-1), `\.br\` a line feed. Other sequences (highlighting,
    /// character-set switches, formatting other than `.br`) and unterminated escapes are kept
    /// literally.
    pub fn unescape<'r>(&self, raw: &'r str) -> Cow<'r, str> {
        let e = self.escape;
        if !raw.contains(e) {
            return Cow::Borrowed(raw);
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(start) = rest.find(e) {
            out.push_str(&rest[..start]);
            let after = &rest[start + e.len_utf8()..];
            let Some(len) = after.find(e) else {
                // Unterminated: keep the rest as written.
                out.push_str(&rest[start..]);
                return Cow::Owned(out);
            };
            let seq = &after[..len];
            match self.resolve(seq) {
                Some(text) => out.push_str(&text),
                None => {
                    out.push(e);
                    out.push_str(seq);
                    out.push(e);
                }
            }
            rest = &after[len + e.len_utf8()..];
        }
        out.push_str(rest);
        Cow::Owned(out)
    }

    fn resolve(&self, seq: &str) -> Option<Cow<'static, str>> {
        let one = |c: char| Some(Cow::Owned(c.to_string()));
        match seq {
            "F" => one(self.field),
            "S" => one(self.component),
            "T" => one(self.subcomponent),
            "R" => one(self.repetition),
            "E" => one(self.escape),
            "P" => self.truncation.and_then(one),
            ".br" => Some(Cow::Borrowed("\n")),
            _ => {
                let hex = seq.strip_prefix('X')?;
                decode_hex(hex).map(Cow::Owned)
            }
        }
    }
}

fn decode_hex(hex: &str) -> Option<String> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> =
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16)).collect::<Result<_, _>>().ok()?;
    Some(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_delimiters() {
        let d = Delimiters::new('|', "^~\\&").unwrap();
        assert_eq!(d, Delimiters::default());
        assert_eq!(d.encoding_characters(), "^~\\&");
        let t = Delimiters::new('|', "^~\\&#").unwrap();
        assert_eq!(t.truncation, Some('#'));
        assert_eq!(t.encoding_characters(), "^~\\&#");
    }

    #[test]
    fn bad_delimiters() {
        for enc in ["&&&&", "^~\\", "^~\\&#!", "^~a&", "^~ &", "^|\\&", ""] {
            assert!(matches!(Delimiters::new('|', enc), Err(Error::BadDelimiters { .. })), "{enc:?}");
        }
        assert!(Delimiters::new('A', "^~\\&").is_err());
    }

    #[test]
    fn unescape_all_sequences() {
        let d = Delimiters { truncation: Some('#'), ..Delimiters::default() };
        assert_eq!(d.unescape(r"a\F\b\S\c\T\d\R\e\E\f\P\g"), "a|b^c&d~e\\f#g");
        assert_eq!(d.unescape(r"line1\.br\line2"), "line1\nline2");
        assert_eq!(d.unescape(r"\X4142\"), "AB");
        assert_eq!(d.unescape(r"\XC3A9\"), "é");
        assert_eq!(d.unescape(r"\XE9\"), "é");
        assert_eq!(d.unescape("plain"), "plain");
    }

    #[test]
    fn unescape_keeps_unknown_and_broken_sequences() {
        let d = Delimiters::default();
        assert_eq!(d.unescape(r"\H\bold\N\"), r"\H\bold\N\");
        assert_eq!(d.unescape(r"C:\path\file"), r"C:\path\file");
        assert_eq!(d.unescape(r"trailing\"), r"trailing\");
        assert_eq!(d.unescape(r"\X4\ \XZZ\ \X\"), r"\X4\ \XZZ\ \X\");
        assert_eq!(d.unescape(r"\\"), r"\\");
        assert_eq!(d.unescape(r"\P\"), r"\P\", "no truncation character declared");
    }

    #[test]
    fn escape_round_trips() {
        let d = Delimiters { truncation: Some('#'), ..Delimiters::default() };
        let text = "a|b^c&d~e\\f#g\nh\r\ni\rj\u{0B}\u{1C}é";
        let escaped = d.escape(text);
        assert_eq!(escaped, "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\P\\g\\.br\\h\\.br\\i\\X0D\\j\\X0B\\\\X1C\\é");
        assert_eq!(d.unescape(&escaped), text.replace("\r\n", "\n"));
        assert!(matches!(d.escape("plain"), Cow::Borrowed(_)));
    }
}
