//! Small helpers over `roxmltree` nodes in the CDA namespace, and the narrative index.

use crate::CDA_NS;
use roxmltree::Node;
use std::cell::RefCell;
use std::collections::HashMap;

/// The XML Schema instance namespace (`xsi:type`).
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// An element node of the parsed document.
pub(crate) type El<'a> = Node<'a, 'a>;

/// Whether `node` is the CDA element `name`.
pub(crate) fn is(node: El<'_>, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(CDA_NS)
}

/// The first CDA child element named `name`.
pub(crate) fn child<'a>(node: El<'a>, name: &str) -> Option<El<'a>> {
    node.children().find(|c| is(*c, name))
}

/// The CDA child elements named `name`.
pub(crate) fn children<'a, 'n>(node: El<'a>, name: &'n str) -> impl Iterator<Item = El<'a>> + use<'a, 'n> {
    node.children().filter(move |c| is(*c, name))
}

/// The CDA child elements, whatever their names.
pub(crate) fn elements<'a>(node: El<'a>) -> impl Iterator<Item = El<'a>> {
    node.children().filter(|c| c.is_element() && c.tag_name().namespace() == Some(CDA_NS))
}

/// Follows a path of CDA child names (first match at each step).
pub(crate) fn path<'a>(node: El<'a>, names: &[&str]) -> Option<El<'a>> {
    let mut at = node;
    for name in names {
        at = child(at, name)?;
    }
    Some(at)
}

/// An attribute without namespace, trimmed; `None` when absent or blank.
pub(crate) fn attr<'a>(node: El<'a>, name: &str) -> Option<&'a str> {
    node.attribute(name).map(str::trim).filter(|v| !v.is_empty())
}

/// The `xsi:type` of an element, without its prefix (`PQ`, `CD`, `IVL_TS`…).
pub(crate) fn xsi_type<'a>(node: El<'a>) -> Option<&'a str> {
    let value = node.attribute((XSI_NS, "type"))?;
    Some(value.rsplit(':').next().unwrap_or(value).trim())
}

/// Whether the element carries `nullFlavor`.
pub(crate) fn is_null(node: El<'_>) -> bool {
    attr(node, "nullFlavor").is_some()
}

/// Whether the element's `negationInd` is true.
pub(crate) fn negated(node: El<'_>) -> bool {
    attr(node, "negationInd") == Some("true")
}

/// The roots of the element's `templateId`s.
pub(crate) fn template_roots<'a>(node: El<'a>) -> impl Iterator<Item = &'a str> {
    children(node, "templateId").filter_map(|t| attr(t, "root"))
}

/// Whether the element declares one of the templates `roots` (any extension).
pub(crate) fn has_template(node: El<'_>, roots: &[&str]) -> bool {
    template_roots(node).any(|r| roots.contains(&r))
}

/// The element's text content (all descendant text), whitespace collapsed; `None` when blank.
pub(crate) fn text_of(node: El<'_>) -> Option<String> {
    let mut out = String::new();
    for t in node.descendants().filter(|d| d.is_text()) {
        for word in t.text().unwrap_or_default().split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The longest narrative text taken into a resource (a code's original text, a sig…), in bytes;
/// a referenced element with more text is a whole table, not the text of one entry.
const MAX_NARRATIVE_TEXT: usize = 8 * 1024;
/// The most nodes walked to get the text of one narrative element.
const MAX_NARRATIVE_NODES: usize = 4 * 1024;

/// The `ID`s of a section's narrative (`text`), indexed once per section; each one's text is
/// computed once, within bounds (so that many entries pointing at a large element cost nothing
/// more than one).
#[derive(Default)]
pub(crate) struct Narrative<'a> {
    ids: HashMap<&'a str, El<'a>>,
    texts: RefCell<HashMap<&'a str, Option<String>>>,
}

/// The text of `node` (whitespace collapsed), or `None` when blank or beyond the bounds.
fn bounded_text(node: El<'_>) -> Option<String> {
    let mut out = String::new();
    for (visited, t) in node.descendants().enumerate() {
        if visited > MAX_NARRATIVE_NODES {
            return None;
        }
        if !t.is_text() {
            continue;
        }
        for word in t.text().unwrap_or_default().split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
            if out.len() > MAX_NARRATIVE_TEXT {
                return None;
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

impl<'a> Narrative<'a> {
    /// Indexes the narrative block of `section`.
    pub(crate) fn of(section: El<'a>) -> Self {
        let mut ids = HashMap::new();
        if let Some(text) = child(section, "text") {
            for node in text.descendants().filter(|d| d.is_element()) {
                if let Some(id) = node.attribute("ID") {
                    ids.entry(id.trim()).or_insert(node);
                }
            }
        }
        Narrative { ids, texts: RefCell::default() }
    }

    /// The text of the narrative element that `reference` (`#id`) points to (`None` when it is
    /// blank, or too large to be one entry's text).
    pub(crate) fn resolve(&self, reference: &str) -> Option<String> {
        let id = reference.trim().strip_prefix('#')?;
        let (&key, &node) = self.ids.get_key_value(id)?;
        if let Some(text) = self.texts.borrow().get(key) {
            return text.clone();
        }
        let text = bounded_text(node);
        self.texts.borrow_mut().insert(key, text.clone());
        text
    }

    /// The text of an `originalText` or `text` element: its reference resolved, else its content.
    pub(crate) fn text(&self, node: El<'_>) -> Option<String> {
        if let Some(reference) = child(node, "reference").and_then(|r| attr(r, "value"))
            && let Some(text) = self.resolve(reference)
        {
            return Some(text);
        }
        let mut out = String::new();
        for t in node.children().filter(|d| d.is_text()) {
            for word in t.text().unwrap_or_default().split_whitespace() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(word);
            }
        }
        (!out.is_empty()).then_some(out)
    }
}
