//! Segment groups: message structures written in the standard's own abstract message syntax
//! (`[ ]` optional, `{ }` repeating, `NAME:` opens a group), and the arrangement of a parsed
//! message's segments into them.
//!
//! The definitions follow v2.5.1 with the optional segments later versions added (UAC, ARV,
//! PRT, the v2.7+ observation groups), so one definition serves 2.3–2.8: a receiver must accept
//! segments it does not expect, and optional additions cost nothing to older messages.
//!
//! Placing a segment: look forward in the current group from the current position (a
//! repeating element stays current), not past a required element not yet seen; failing that,
//! let an enclosing group take it (which closes the current group); failing that, allow
//! skipping required elements — but only those whose segment does not occur later in the
//! message, so a misplaced segment never makes a present one "missing". A segment nothing
//! takes (Z-segments, unknown or out-of-order segments) is kept as [`Node::Extra`] where it
//! appears. Required elements never seen are reported as [`Error::MissingSegment`].

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::segment::{Segment, is_segment_id};

/// One element of a structure: a segment or a group, with its cardinality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// What the element is.
    pub kind: ElementKind,
    /// Whether at least one occurrence is required.
    pub required: bool,
    /// Whether it may repeat.
    pub repeating: bool,
}

/// A segment or a named group of elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementKind {
    /// A segment, by id.
    Segment(String),
    /// A group: its name and elements.
    Group(String, Vec<Element>),
}

/// A message structure such as `ORU_R01`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Structure {
    /// The structure id (MSH-9.3).
    pub name: &'static str,
    /// Its elements, MSH first.
    pub elements: Vec<Element>,
}

const ADT_A01: &str = "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] \
    [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] \
    [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2] [PDA]";
const ADT_A02: &str = "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [PDA]";
const ADT_A03: &str = "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] \
    [{DB1}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{OBX}] [{GT1}] \
    [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [PDA]";
const ADT_A05: &str = "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] \
    [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] \
    [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2]";
const ADT_A09: &str = "MSH [{SFT}] [UAC] EVN PID [PD1] PV1 [PV2] [{DB1}] [{OBX}] [{DG1}]";
const ADT_A39: &str = "MSH [{SFT}] [UAC] EVN {PATIENT: PID [PD1] MRG [PV1]}";
const ORU_R01: &str = "MSH [{SFT}] [UAC] {PATIENT_RESULT: \
    [PATIENT: PID [PD1] [{PRT}] [{NTE}] [{NK1}] [{ARV}] [{PATIENT_OBSERVATION: OBX [{PRT}]}] \
        [VISIT: PV1 [PV2] [{PRT}]]] \
    {ORDER_OBSERVATION: [ORC] OBR [{NTE}] [{PRT}] [{TIMING_QTY: TQ1 [{TQ2}]}] [CTD] \
        [{OBSERVATION: OBX [{PRT}] [{NTE}]}] [{FT1}] [{CTI}] \
        [{SPECIMEN: SPM [{SPECIMEN_OBSERVATION: OBX [{PRT}]}]}]}} [DSC]";
const VXU_V04: &str = "MSH [{SFT}] [UAC] PID [PD1] [{NK1}] [{ARV}] [PATIENT: PV1 [PV2] [{ARV}]] [{GT1}] \
    [{INSURANCE: IN1 [IN2] [IN3]}] [{PERSON_OBSERVATION: OBX [{PRT}] [{NTE}]}] \
    [{ORDER: ORC [{PRT}] [{TIMING: TQ1 [{TQ2}]}] RXA [RXR] [{OBSERVATION: OBX [{PRT}] [{NTE}]}]}]";
const SIU_S12: &str = "MSH [{SFT}] [UAC] SCH [{TQ1}] [{NTE}] \
    [{PATIENT: PID [PD1] [{ARV}] [{PRT}] [PV1] [PV2] [{PRT}] [{OBX}] [{DG1}]}] \
    {RESOURCES: RGS [{SERVICE: AIS [{NTE}]}] [{GENERAL_RESOURCE: AIG [{NTE}]}] \
        [{LOCATION_RESOURCE: AIL [{NTE}]}] [{PERSONNEL_RESOURCE: AIP [{NTE}]}]}";
const ACK: &str = "MSH [{SFT}] [UAC] MSA [{ERR}]";

const DEFINITIONS: &[(&str, &str)] = &[
    ("ADT_A01", ADT_A01),
    ("ADT_A02", ADT_A02),
    ("ADT_A03", ADT_A03),
    ("ADT_A05", ADT_A05),
    ("ADT_A09", ADT_A09),
    ("ADT_A39", ADT_A39),
    ("ORU_R01", ORU_R01),
    ("VXU_V04", VXU_V04),
    ("SIU_S12", SIU_S12),
    ("ACK", ACK),
];

/// Which structure each message type and trigger uses (HL7 table 0354), for those defined here.
const EVENTS: &[(&str, &[&str], &str)] = &[
    ("ADT", &["A01", "A04", "A08", "A13"], "ADT_A01"),
    ("ADT", &["A02"], "ADT_A02"),
    ("ADT", &["A03"], "ADT_A03"),
    ("ADT", &["A05", "A14", "A28", "A31"], "ADT_A05"),
    ("ADT", &["A09", "A10", "A11"], "ADT_A09"),
    ("ADT", &["A39", "A40", "A41", "A42"], "ADT_A39"),
    ("ORU", &["R01"], "ORU_R01"),
    ("VXU", &["V04"], "VXU_V04"),
    (
        "SIU",
        &["S12", "S13", "S14", "S15", "S16", "S17", "S18", "S19", "S20", "S21", "S22", "S23", "S24", "S26"],
        "SIU_S12",
    ),
];

static STRUCTURES: LazyLock<Vec<Structure>> = LazyLock::new(|| {
    // The definitions are constants checked by the tests; one that failed to parse would
    // simply be absent (and its test would fail).
    DEFINITIONS
        .iter()
        .filter_map(|&(name, text)| parse_notation(text).ok().map(|elements| Structure { name, elements }))
        .collect()
});

impl Structure {
    /// The structure with this id, if defined here.
    pub fn by_name(name: &str) -> Option<&'static Structure> {
        STRUCTURES.iter().find(|s| s.name == name)
    }

    /// The ids of every structure defined here.
    pub fn names() -> impl Iterator<Item = &'static str> {
        STRUCTURES.iter().map(|s| s.name)
    }
}

/// The structure a message uses: MSH-9.3 when it names one defined here, else the one its
/// message code and trigger event map to (senders often put a non-standard id such as
/// `ADT_A04` in MSH-9.3).
pub fn structure_for(message: &Message) -> Option<&'static Structure> {
    if let Some(declared) = message.message_structure().and_then(|s| Structure::by_name(&s)) {
        return Some(declared);
    }
    let code = message.message_code()?;
    if code == "ACK" {
        return Structure::by_name("ACK");
    }
    let trigger = message.trigger_event()?;
    let (_, _, name) = EVENTS.iter().find(|(c, triggers, _)| *c == code && triggers.contains(&trigger.as_str()))?;
    Structure::by_name(name)
}

// ---- the notation ----

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open(char),
    Close(char),
    Label(String),
    Word(String),
}

fn tokenize(text: &str) -> std::result::Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '[' | '{' => {
                tokens.push(Token::Open(c));
                chars.next();
            }
            ']' | '}' => {
                tokens.push(Token::Close(c));
                chars.next();
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek().filter(|c| c.is_ascii_alphanumeric() || **c == '_') {
                    word.push(c);
                    chars.next();
                }
                if chars.peek() == Some(&':') {
                    chars.next();
                    tokens.push(Token::Label(word));
                } else {
                    tokens.push(Token::Word(word));
                }
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(tokens)
}

/// Parses the abstract message syntax, e.g. `MSH [{SFT}] {PATIENT: PID [PD1]}`.
pub fn parse_notation(text: &str) -> std::result::Result<Vec<Element>, String> {
    let tokens = tokenize(text)?;
    let mut pos = 0;
    let elements = parse_sequence(&tokens, &mut pos, None)?;
    if pos != tokens.len() {
        return Err("unbalanced closing bracket".into());
    }
    Ok(elements)
}

fn parse_sequence(
    tokens: &[Token],
    pos: &mut usize,
    closer: Option<char>,
) -> std::result::Result<Vec<Element>, String> {
    let mut elements = Vec::new();
    while let Some(token) = tokens.get(*pos) {
        *pos += 1;
        match token {
            Token::Word(id) if is_segment_id(id) => {
                elements.push(Element { kind: ElementKind::Segment(id.clone()), required: true, repeating: false });
            }
            Token::Word(word) => return Err(format!("{word} is not a segment id")),
            Token::Open(open) => elements.push(parse_bracket(tokens, pos, *open)?),
            Token::Close(c) if Some(*c) == closer => return Ok(elements),
            Token::Close(c) => return Err(format!("unexpected {c}")),
            Token::Label(name) => return Err(format!("group label {name} outside brackets")),
        }
    }
    match closer {
        None => Ok(elements),
        Some(c) => Err(format!("missing {c}")),
    }
}

fn parse_bracket(tokens: &[Token], pos: &mut usize, open: char) -> std::result::Result<Element, String> {
    let closer = if open == '[' { ']' } else { '}' };
    let mut element = if let Some(Token::Label(name)) = tokens.get(*pos) {
        *pos += 1;
        let children = parse_sequence(tokens, pos, Some(closer))?;
        if children.is_empty() {
            return Err(format!("empty group {name}"));
        }
        Element { kind: ElementKind::Group(name.clone(), children), required: true, repeating: false }
    } else {
        let mut children = parse_sequence(tokens, pos, Some(closer))?;
        if children.len() != 1 {
            return Err("brackets around several elements need a group name".into());
        }
        children.remove(0)
    };
    if open == '[' {
        element.required = false;
    } else {
        element.repeating = true;
    }
    Ok(element)
}

/// The segment ids an element can begin with.
fn first_ids<'s>(element: &'s Element, out: &mut Vec<&'s str>) {
    match &element.kind {
        ElementKind::Segment(id) => out.push(id),
        ElementKind::Group(_, children) => {
            for child in children {
                first_ids(child, out);
                if child.required {
                    break;
                }
            }
        }
    }
}

fn starts_with(element: &Element, id: &str) -> bool {
    let mut ids = Vec::new();
    first_ids(element, &mut ids);
    ids.contains(&id)
}

/// The segment that stands for a missing element in error reports.
fn first_required_id(element: &Element) -> &str {
    match &element.kind {
        ElementKind::Segment(id) => id,
        ElementKind::Group(_, children) => {
            children.iter().find(|c| c.required).or(children.first()).map_or("", first_required_id)
        }
    }
}

// ---- grouping ----

/// A group of a grouped message: its name and its children in message order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group<'m> {
    name: &'static str,
    children: Vec<Node<'m>>,
}

/// A child of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node<'m> {
    /// A segment the structure places here.
    Segment(&'m Segment),
    /// A segment the structure does not place here (Z-segment, unknown or out of order),
    /// kept where it appeared.
    Extra(&'m Segment),
    /// A nested group.
    Group(Group<'m>),
}

impl<'m> Group<'m> {
    /// The group name (`ORDER_OBSERVATION`), or the structure id for the message itself.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The children in message order.
    pub fn children(&self) -> &[Node<'m>] {
        &self.children
    }

    /// The direct child segments with this id (extras included).
    pub fn segments<'g>(&'g self, id: &'g str) -> impl Iterator<Item = &'m Segment> + 'g {
        self.children.iter().filter_map(move |node| match node {
            Node::Segment(s) | Node::Extra(s) if s.id() == id => Some(*s),
            _ => None,
        })
    }

    /// The first direct child segment with this id.
    pub fn segment(&self, id: &str) -> Option<&'m Segment> {
        self.segments(id).next()
    }

    /// The direct child groups with this name.
    pub fn groups<'g>(&'g self, name: &'g str) -> impl Iterator<Item = &'g Group<'m>> + 'g {
        self.children.iter().filter_map(move |node| match node {
            Node::Group(g) if g.name == name => Some(g),
            _ => None,
        })
    }

    /// The first direct child group with this name.
    pub fn group(&self, name: &str) -> Option<&Group<'m>> {
        self.children.iter().find_map(|node| match node {
            Node::Group(g) if g.name == name => Some(g),
            _ => None,
        })
    }

    /// Every segment inside the group, nested ones included, in message order.
    pub fn all_segments(&self) -> Vec<&'m Segment> {
        let mut out = Vec::new();
        self.collect(&mut out, false);
        out
    }

    /// Every [`Node::Extra`] segment inside the group, nested ones included.
    pub fn extras(&self) -> Vec<&'m Segment> {
        let mut out = Vec::new();
        self.collect(&mut out, true);
        out
    }

    fn collect(&self, out: &mut Vec<&'m Segment>, extras_only: bool) {
        for node in &self.children {
            match node {
                Node::Segment(s) if !extras_only => out.push(s),
                Node::Extra(s) => out.push(s),
                Node::Group(g) => g.collect(out, extras_only),
                Node::Segment(_) => {}
            }
        }
    }

    /// A one-line outline, e.g. `ORU_R01[MSH PATIENT_RESULT[PATIENT[PID] …]]`; extras are
    /// marked with `*`.
    pub fn outline(&self) -> String {
        let mut out = String::new();
        self.write_outline(&mut out);
        out
    }

    fn write_outline(&self, out: &mut String) {
        out.push_str(self.name);
        out.push('[');
        for (i, node) in self.children.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            match node {
                Node::Segment(s) => out.push_str(s.id()),
                Node::Extra(s) => {
                    out.push_str(s.id());
                    out.push('*');
                }
                Node::Group(g) => g.write_outline(out),
            }
        }
        out.push(']');
    }
}

/// A grouped message and the required elements found missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping<'m> {
    /// The message as a tree of groups.
    pub root: Group<'m>,
    /// One [`Error::MissingSegment`] per required element never seen.
    pub missing: Vec<Error>,
}

/// Groups a message by its structure; fails when the structure is not defined here or a
/// required segment or group is missing.
pub fn group(message: &Message) -> Result<Group<'_>> {
    let grouping = group_lenient(message)?;
    match grouping.missing.into_iter().next() {
        Some(error) => Err(error),
        None => Ok(grouping.root),
    }
}

/// Groups a message by its structure, reporting missing required elements instead of failing
/// on them; fails only when the structure is not defined here.
pub fn group_lenient(message: &Message) -> Result<Grouping<'_>> {
    let structure = structure_for(message).ok_or(Error::UnknownStructure)?;
    let segments = message.segments();
    let mut last_seen = HashMap::new();
    for (i, s) in segments.iter().enumerate() {
        last_seen.insert(s.id(), i);
    }
    let mut matcher = Matcher { segments, pos: 0, last_seen, missing: Vec::new() };
    let mut children = Vec::new();
    matcher.fill(&structure.elements, structure.name, &[], &mut children);
    // Anything left (only when nothing could take it) stays as extras at the end.
    while let Some(s) = segments.get(matcher.pos) {
        children.push(Node::Extra(s));
        matcher.pos += 1;
    }
    Ok(Grouping { root: Group { name: structure.name, children }, missing: matcher.missing })
}

/// An enclosing group's state, consulted before a segment is left as an extra.
struct Frame<'s> {
    elements: &'s [Element],
    from: usize,
    satisfied: Vec<bool>,
}

struct Matcher<'m> {
    segments: &'m [Segment],
    pos: usize,
    last_seen: HashMap<&'m str, usize>,
    missing: Vec<Error>,
}

impl<'m> Matcher<'m> {
    /// Whether a required element may be passed over: none of its first segments comes later.
    fn absent_later(&self, element: &Element) -> bool {
        let mut ids = Vec::new();
        first_ids(element, &mut ids);
        ids.iter().all(|id| self.last_seen.get(id).is_none_or(|&last| last <= self.pos))
    }

    fn find(&self, elements: &[Element], from: usize, satisfied: &[bool], id: &str, skip: bool) -> Option<usize> {
        for (k, element) in elements.iter().enumerate().skip(from) {
            if starts_with(element, id) {
                return Some(k);
            }
            if element.required && !satisfied[k] && !(skip && self.absent_later(element)) {
                return None;
            }
        }
        None
    }

    fn enclosing_takes(&self, frames: &[Frame<'_>], id: &str, skip: bool) -> bool {
        frames.iter().rev().any(|f| self.find(f.elements, f.from, &f.satisfied, id, skip).is_some())
    }

    fn fill(&mut self, elements: &'static [Element], path: &str, frames: &[Frame<'_>], out: &mut Vec<Node<'m>>) {
        let mut from = 0;
        let mut satisfied = vec![false; elements.len()];
        while let Some(segment) = self.segments.get(self.pos) {
            let id = segment.id();
            let found = match self.find(elements, from, &satisfied, id, false) {
                Some(k) => Some(k),
                None if self.enclosing_takes(frames, id, false) => return self.report(elements, &satisfied, path),
                None => self.find(elements, from, &satisfied, id, true),
            };
            let Some(k) = found else {
                if self.enclosing_takes(frames, id, true) {
                    return self.report(elements, &satisfied, path);
                }
                out.push(Node::Extra(segment));
                self.pos += 1;
                continue;
            };
            let element = &elements[k];
            satisfied[k] = true;
            from = if element.repeating { k } else { k + 1 };
            match &element.kind {
                ElementKind::Segment(_) => {
                    out.push(Node::Segment(segment));
                    self.pos += 1;
                }
                ElementKind::Group(name, children) => {
                    let mut inner =
                        frames.iter().map(|f| Frame { satisfied: f.satisfied.clone(), ..*f }).collect::<Vec<_>>();
                    inner.push(Frame { elements, from, satisfied: satisfied.clone() });
                    let start = self.pos;
                    let mut nodes = Vec::new();
                    self.fill(children, &format!("{path}.{name}"), &inner, &mut nodes);
                    out.push(Node::Group(Group { name, children: nodes }));
                    if self.pos == start {
                        // Cannot happen (the group starts with this segment), but never loop.
                        out.push(Node::Extra(segment));
                        self.pos += 1;
                    }
                }
            }
        }
        self.report(elements, &satisfied, path);
    }

    fn report(&mut self, elements: &[Element], satisfied: &[bool], path: &str) {
        for (element, &seen) in elements.iter().zip(satisfied) {
            if element.required && !seen {
                let segment = first_required_id(element).to_owned();
                self.missing.push(Error::MissingSegment { group: path.to_owned(), segment });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_definition_parses() {
        for (name, text) in DEFINITIONS {
            assert!(parse_notation(text).is_ok(), "{name}: {:?}", parse_notation(text));
            assert!(Structure::by_name(name).is_some());
        }
        for (_, _, name) in EVENTS {
            assert!(Structure::by_name(name).is_some(), "{name}");
        }
    }

    #[test]
    fn notation() {
        let e = parse_notation("MSH [{SFT}] {G: A01 [B02]} [H: C03]").unwrap();
        assert_eq!(e.len(), 4);
        assert!(e[0].required && !e[0].repeating);
        assert!(!e[1].required && e[1].repeating);
        assert!(e[2].required && e[2].repeating);
        assert!(matches!(&e[2].kind, ElementKind::Group(n, c) if n == "G" && c.len() == 2));
        assert!(!e[3].required && !e[3].repeating);
        for bad in ["[A01 B02]", "{A01", "A01]", "G: A01", "[G:]", "abc", "MSH!"] {
            assert!(parse_notation(bad).is_err(), "{bad}");
        }
    }

    fn outline(text: &str) -> (String, Vec<Error>) {
        let message = Message::parse(text).unwrap();
        let grouping = group_lenient(&message).unwrap();
        (grouping.root.outline(), grouping.missing)
    }

    #[test]
    fn oru_nesting() {
        let text = "MSH|^~\\&|||||||ORU^R01|1|P|2.5.1\rPID|1\rOBR|1\rOBX|1\rNTE|1\rOBX|2\rOBR|2\rOBX|1\rZZZ|1\r";
        let (o, missing) = outline(text);
        assert_eq!(
            o,
            "ORU_R01[MSH PATIENT_RESULT[PATIENT[PID] ORDER_OBSERVATION[OBR OBSERVATION[OBX NTE] OBSERVATION[OBX]] \
             ORDER_OBSERVATION[OBR OBSERVATION[OBX ZZZ*]]]]"
        );
        assert!(missing.is_empty());
    }

    #[test]
    fn missing_required_is_reported_not_misplaced() {
        let (o, missing) = outline("MSH|^~\\&|||||||ORU^R01|1|P|2.5.1\rPID|1\rNTE|1\r");
        assert_eq!(o, "ORU_R01[MSH PATIENT_RESULT[PATIENT[PID NTE]]]");
        assert_eq!(
            missing,
            vec![Error::MissingSegment { group: "ORU_R01.PATIENT_RESULT".into(), segment: "OBR".into() }]
        );
        // A segment placed too early stays an extra; the later one is not reported missing.
        let (o, missing) = outline("MSH|^~\\&|||||||ADT^A01|1|P|2.5.1\rPID|1\rEVN|1\rPV1|1\r");
        assert_eq!(o, "ADT_A01[MSH PID* EVN PV1]");
        assert_eq!(missing, vec![Error::MissingSegment { group: "ADT_A01".into(), segment: "PID".into() }]);
    }
}
