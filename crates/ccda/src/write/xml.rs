//! A small XML writer: one growing `String`, text and attribute escaping, and the
//! characters XML 1.0 forbids dropped.

/// Whether XML 1.0 allows `c` in a document (`Char` production, surrogates aside: a Rust
/// `char` is never one).
fn allowed(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Appends `s` as character data.
pub(crate) fn escape_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if allowed(c) => out.push(c),
            _ => {}
        }
    }
}

/// Appends `s` as the value of a `"`-quoted attribute (white space kept as character
/// references, so attribute-value normalization does not turn it into spaces).
pub(crate) fn escape_attr(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if allowed(c) => out.push(c),
            _ => {}
        }
    }
}

/// Versioned templates written that C-CDA R1.1 did not have.
const NEW_IN_R21: [&str; 1] = [
    // Birth Sex Observation.
    "2.16.840.1.113883.10.20.22.4.200",
];

/// The document being written.
pub(crate) struct Xml {
    /// What is written so far.
    pub(crate) out: String,
}

impl Xml {
    /// An empty document with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self { out: String::with_capacity(capacity) }
    }

    fn attrs(&mut self, attrs: &[(&str, &str)]) {
        for (name, value) in attrs {
            self.out.push(' ');
            self.out.push_str(name);
            self.out.push_str("=\"");
            escape_attr(&mut self.out, value);
            self.out.push('"');
        }
    }

    /// `<name attrs…>`.
    pub(crate) fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(name);
        self.attrs(attrs);
        self.out.push('>');
    }

    /// `</name>`.
    pub(crate) fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    /// `<name attrs…/>`.
    pub(crate) fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(name);
        self.attrs(attrs);
        self.out.push_str("/>");
    }

    /// `<name attrs…>text</name>`.
    pub(crate) fn leaf(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) {
        self.open(name, attrs);
        self.text(text);
        self.close(name);
    }

    /// Character data.
    pub(crate) fn text(&mut self, text: &str) {
        escape_text(&mut self.out, text);
    }

    /// Markup written as is (constants of this module's callers only).
    pub(crate) fn raw(&mut self, markup: &str) {
        self.out.push_str(markup);
    }

    /// `<templateId root=… [extension=…]/>`; a versioned template that had a C-CDA R1.1
    /// version is preceded by its R1.1 id (the root alone), as a document asserting the
    /// R1.1 header and document template ids must do (CONF:1198-32938 and its kin).
    pub(crate) fn template(&mut self, root: &str, extension: Option<&str>) {
        match extension {
            Some(ext) => {
                if !NEW_IN_R21.contains(&root) {
                    self.empty("templateId", &[("root", root)]);
                }
                self.empty("templateId", &[("root", root), ("extension", ext)]);
            }
            None => self.empty("templateId", &[("root", root)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_strips() {
        let mut s = String::new();
        escape_text(&mut s, "a<&>\"'\u{1}\u{FFFE}b");
        assert_eq!(s, "a&lt;&amp;&gt;\"'b");
        let mut s = String::new();
        escape_attr(&mut s, "a<&>\"'\u{0}\tb");
        assert_eq!(s, "a&lt;&amp;&gt;&quot;&apos;&#9;b");
    }
}
