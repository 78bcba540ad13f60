//! Location paths in the style of HAPI's terser: `PID-3(2).4.1`.
//!
//! Syntax: `SEG[(occurrence)]-field[(repetition)][.component[.sub-component]]`, all numbers
//! 1-based; `-` is accepted in place of `.` between components. `OBX(2)-5` is field 5 of the
//! second OBX segment, `PID-3(2).4.1` the first sub-component of the fourth component of the
//! second repetition of PID-3.

use crate::error::{Error, Result};
use crate::segment::is_segment_id;

/// A position inside a segment: field, and optionally repetition, component, sub-component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Field number (1-based; MSH-1 is the field separator).
    pub field: usize,
    /// Repetition (1-based), if named.
    pub repetition: Option<usize>,
    /// Component (1-based), if named.
    pub component: Option<usize>,
    /// Sub-component (1-based), if named.
    pub subcomponent: Option<usize>,
}

/// A segment (with its occurrence) and a location inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// Segment id, e.g. `PID`.
    pub segment: String,
    /// Which occurrence of the segment in the message (1-based).
    pub occurrence: usize,
    /// Where inside the segment.
    pub location: Location,
}

fn number(s: &str) -> Result<usize> {
    if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidPath);
    }
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::InvalidPath),
    }
}

/// Splits `name(n)` into `name` and `Some(n)`.
fn with_index(s: &str) -> Result<(&str, Option<usize>)> {
    match s.split_once('(') {
        None => Ok((s, None)),
        Some((name, rest)) => {
            let inner = rest.strip_suffix(')').ok_or(Error::InvalidPath)?;
            Ok((name, Some(number(inner)?)))
        }
    }
}

impl Location {
    /// Parses the in-segment part of a path: `3(2).4.1`.
    pub fn parse_in_segment(s: &str) -> Result<Self> {
        let mut parts = s.split(['.', '-']);
        let (field, repetition) = with_index(parts.next().ok_or(Error::InvalidPath)?)?;
        let field = number(field)?;
        let component = parts.next().map(number).transpose()?;
        let subcomponent = parts.next().map(number).transpose()?;
        if parts.next().is_some() {
            return Err(Error::InvalidPath);
        }
        Ok(Self { field, repetition, component, subcomponent })
    }
}

impl Path {
    /// Parses a full path: `PID-3(2).4.1`, `OBX(2)-5`, `MSH-9.2`.
    pub fn parse(s: &str) -> Result<Self> {
        let (head, rest) = s.split_once('-').ok_or(Error::InvalidPath)?;
        let (segment, occurrence) = with_index(head)?;
        if !is_segment_id(segment) {
            return Err(Error::InvalidPath);
        }
        Ok(Self {
            segment: segment.to_owned(),
            occurrence: occurrence.unwrap_or(1),
            location: Location::parse_in_segment(rest)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        let p = Path::parse("PID-3(2).4.1").unwrap();
        assert_eq!(p.segment, "PID");
        assert_eq!(p.occurrence, 1);
        assert_eq!(p.location, Location { field: 3, repetition: Some(2), component: Some(4), subcomponent: Some(1) });
        let p = Path::parse("OBX(12)-5").unwrap();
        assert_eq!((p.occurrence, p.location.field, p.location.component), (12, 5, None));
        assert_eq!(Path::parse("MSH-9-2").unwrap().location.component, Some(2));
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in
            ["", "PID", "PID-", "PID-0", "pid-3", "PID-3.", "PID-3(0)", "PID-3(2", "PID-3.1.2.3", "PID(x)-1", "P-1"]
        {
            assert_eq!(Path::parse(bad), Err(Error::InvalidPath), "{bad:?}");
        }
    }
}
