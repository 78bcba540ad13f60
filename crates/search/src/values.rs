//! Value semantics shared by indexing and querying: string normalisation, date ranges,
//! number ranges and UCUM canonical quantities.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// The form strings are indexed and searched in: accents removed (NFD, combining marks
/// dropped), case folded, runs of white space collapsed to one space, trimmed.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.nfd().filter(|c| !is_combining_mark(*c)) {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// An inclusive range of instants in Unix microseconds. `i64::MIN` / `i64::MAX` stand for an
/// open end (a Period without a start or an end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    /// The first instant covered.
    pub low: i64,
    /// The last instant covered.
    pub high: i64,
}

/// Microseconds in one day.
const DAY: i64 = 86_400_000_000;

impl DateRange {
    /// The range a FHIR `date`, `dateTime` or `instant` value covers at its precision:
    /// `2019` is the whole year, `2019-05-12T10:00Z` one minute, `2019-05-12T10:00:00.5Z`
    /// one millisecond's worth of microseconds. Values without a time zone are taken as UTC.
    /// `None` when the text is not such a value.
    pub fn parse(text: &str) -> Option<DateRange> {
        let bytes = text.as_bytes();
        let year = digits(text, 0, 4)?;
        if bytes.len() == 4 {
            let low = day_start(year, 1, 1)?;
            return Some(DateRange { low, high: day_start(year + 1, 1, 1)? - 1 });
        }
        if bytes.get(4) != Some(&b'-') {
            return None;
        }
        let month = digits(text, 5, 2)?;
        if bytes.len() == 7 {
            let low = day_start(year, month, 1)?;
            let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
            return Some(DateRange { low, high: day_start(ny, nm, 1)? - 1 });
        }
        if bytes.get(7) != Some(&b'-') {
            return None;
        }
        let day = digits(text, 8, 2)?;
        let date = Date::from_calendar_date(year, Month::try_from(u8::try_from(month).ok()?).ok()?, day as u8).ok()?;
        if bytes.len() == 10 {
            let low = micros(date.midnight().assume_utc());
            return Some(DateRange { low, high: low + DAY - 1 });
        }
        if bytes.get(10) != Some(&b'T') {
            return None;
        }
        let hour = digits(text, 11, 2)?;
        if bytes.get(13) != Some(&b':') {
            return None;
        }
        let minute = digits(text, 14, 2)?;
        let mut at = 16;
        let mut second = 0;
        let mut micro = 0i64;
        // The width of the range: a minute, a second, or the last fractional digit's unit.
        let mut width: i64 = 60_000_000;
        if bytes.get(at) == Some(&b':') {
            second = digits(text, at + 1, 2)?;
            at += 3;
            width = 1_000_000;
            if bytes.get(at) == Some(&b'.') {
                let start = at + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                if end == start {
                    return None;
                }
                let fraction = &text[start..end.min(start + 6)];
                let scale = 10i64.pow(6 - fraction.len() as u32);
                micro = fraction.parse::<i64>().ok()? * scale;
                width = scale;
                at = end;
            }
        }
        let offset = match &text[at..] {
            "" => UtcOffset::UTC,
            "Z" => UtcOffset::UTC,
            zone => {
                let zb = zone.as_bytes();
                if zone.len() != 6 || zb[3] != b':' {
                    return None;
                }
                let sign = match zb[0] {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let h = digits(zone, 1, 2)?;
                let m = digits(zone, 4, 2)?;
                UtcOffset::from_hms(sign * h as i8, sign * m as i8, 0).ok()?
            }
        };
        let hour = if hour == 24 && minute == 0 && second == 0 { return None } else { hour };
        let time = Time::from_hms_micro(hour as u8, minute as u8, second as u8, micro as u32).ok()?;
        let low = micros(PrimitiveDateTime::new(date, time).assume_offset(offset));
        Some(DateRange { low, high: low + width - 1 })
    }

    /// The range of an instant given exactly (e.g. `meta.lastUpdated`).
    pub fn instant(at: OffsetDateTime) -> DateRange {
        let low = micros(at);
        DateRange { low, high: low }
    }

    /// A range from two optional ends (a Period); a missing end is open.
    pub fn between(start: Option<DateRange>, end: Option<DateRange>) -> Option<DateRange> {
        if start.is_none() && end.is_none() {
            return None;
        }
        Some(DateRange { low: start.map_or(i64::MIN, |s| s.low), high: end.map_or(i64::MAX, |e| e.high) })
    }
}

fn digits(text: &str, at: usize, len: usize) -> Option<i32> {
    let part = text.get(at..at + len)?;
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

fn day_start(year: i32, month: i32, day: u8) -> Option<i64> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    Some(micros(Date::from_calendar_date(year, month, day).ok()?.midnight().assume_utc()))
}

/// `at` in Unix microseconds: how dates are indexed and how the stores keep every time.
pub fn micros(at: OffsetDateTime) -> i64 {
    let micros = at.unix_timestamp_nanos() / 1_000;
    // Every `OffsetDateTime` (years ±9999) fits; saturate rather than wrap all the same.
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

/// The instant of `micros` Unix microseconds (an error when it is beyond the years ±9999).
pub fn from_micros(micros: i64) -> Result<OffsetDateTime, time::error::ComponentRange> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
}

/// A decimal value with the range its precision implies: `100` is `[99.5, 100.5)`, `1e2`
/// is `[50, 150)`, `100.00` is `[99.995, 100.005)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumberRange {
    /// The value as written.
    pub value: f64,
    /// The lower end of the range (the value itself when it is exact).
    pub low: f64,
    /// The upper end of the range (the value itself when it is exact).
    pub high: f64,
}

impl NumberRange {
    /// Parses a FHIR decimal (or a search value) and derives its precision range.
    pub fn parse(text: &str) -> Option<NumberRange> {
        let value: f64 = text.parse().ok()?;
        if !value.is_finite() {
            return None;
        }
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
            None => (text, 0),
        };
        let decimals = mantissa.find('.').map_or(0, |dot| mantissa.len() - dot - 1) as i32;
        let half = 0.5 * 10f64.powi(exponent - decimals);
        Some(NumberRange { value, low: value - half, high: value + half })
    }

    /// A value known exactly (an integer, or a stored value compared as a point).
    pub fn exact(value: f64) -> NumberRange {
        NumberRange { value, low: value, high: value }
    }

    /// The same range multiplied by `factor` (for unit conversion).
    pub fn scaled(self, factor: f64) -> NumberRange {
        let (a, b) = (self.low * factor, self.high * factor);
        NumberRange { value: self.value * factor, low: a.min(b), high: a.max(b) }
    }
}

/// UCUM code → (canonical unit, factor to it). Written by hand because no maintained Rust
/// crate converts UCUM units; this covers the units clinical data commonly carries (mass,
/// volume, length, time, concentrations, pressure) rather than the whole grammar. Units not
/// listed are indexed and compared as they are, so they still match themselves exactly.
const UCUM: &[(&str, &str, f64)] = &[
    // mass
    ("kg", "g", 1e3),
    ("g", "g", 1.0),
    ("mg", "g", 1e-3),
    ("ug", "g", 1e-6),
    ("ng", "g", 1e-9),
    ("pg", "g", 1e-12),
    ("[lb_av]", "g", 453.592_37),
    ("[oz_av]", "g", 28.349_523_125),
    // length
    ("km", "m", 1e3),
    ("m", "m", 1.0),
    ("cm", "m", 1e-2),
    ("mm", "m", 1e-3),
    ("um", "m", 1e-6),
    ("[in_i]", "m", 0.0254),
    ("[ft_i]", "m", 0.3048),
    // volume
    ("L", "L", 1.0),
    ("l", "L", 1.0),
    ("dL", "L", 0.1),
    ("mL", "L", 1e-3),
    ("uL", "L", 1e-6),
    ("fL", "L", 1e-15),
    // time
    ("a", "s", 31_557_600.0),
    ("mo", "s", 2_629_800.0),
    ("wk", "s", 604_800.0),
    ("d", "s", 86_400.0),
    ("h", "s", 3_600.0),
    ("min", "s", 60.0),
    ("s", "s", 1.0),
    ("ms", "s", 1e-3),
    // mass concentration
    ("g/L", "g/L", 1.0),
    ("g/dL", "g/L", 10.0),
    ("mg/dL", "g/L", 1e-2),
    ("mg/L", "g/L", 1e-3),
    ("ug/L", "g/L", 1e-6),
    ("ug/dL", "g/L", 1e-5),
    ("ng/mL", "g/L", 1e-6),
    ("pg/mL", "g/L", 1e-9),
    ("g/mL", "g/L", 1e3),
    // substance concentration
    ("mol/L", "mol/L", 1.0),
    ("mmol/L", "mol/L", 1e-3),
    ("umol/L", "mol/L", 1e-6),
    ("nmol/L", "mol/L", 1e-9),
    ("pmol/L", "mol/L", 1e-12),
    ("meq/L", "eq/L", 1e-3),
    ("mEq/L", "eq/L", 1e-3),
    // pressure
    ("mm[Hg]", "Pa", 133.322_387_415),
    ("kPa", "Pa", 1e3),
    ("Pa", "Pa", 1.0),
    ("cm[H2O]", "Pa", 98.066_5),
    // rates and others
    ("/min", "/s", 1.0 / 60.0),
    ("{beats}/min", "/s", 1.0 / 60.0),
    ("{breaths}/min", "/s", 1.0 / 60.0),
    ("/s", "/s", 1.0),
    ("%", "1", 1e-2),
    ("1", "1", 1.0),
    ("kg/m2", "g/m2", 1e3),
    ("g/m2", "g/m2", 1.0),
    ("mL/min", "L/s", 1e-3 / 60.0),
    ("mL/min/{1.73_m2}", "L/s/{1.73_m2}", 1e-3 / 60.0),
    ("L/min", "L/s", 1.0 / 60.0),
    ("10*3/uL", "/L", 1e9),
    ("10*6/uL", "/L", 1e12),
    ("10*9/L", "/L", 1e9),
    ("10*12/L", "/L", 1e12),
    ("/uL", "/L", 1e6),
    ("/L", "/L", 1.0),
];

/// The UCUM system URI.
pub const UCUM_SYSTEM: &str = "http://unitsofmeasure.org";

/// The canonical unit of a UCUM `code` and the factor that converts a value to it.
pub fn ucum_canonical(code: &str) -> Option<(&'static str, f64)> {
    UCUM.iter().find(|(c, _, _)| *c == code).map(|(_, canonical, factor)| (*canonical, *factor))
}

/// The canonical unit for Celsius and Fahrenheit is Kelvin, with an offset rather than a
/// factor; `value` converted to Kelvin, or `None` for other units.
pub fn ucum_temperature(code: &str, value: f64) -> Option<f64> {
    match code {
        "Cel" => Some(value + 273.15),
        "[degF]" => Some((value - 32.0) * 5.0 / 9.0 + 273.15),
        "K" => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_lose_case_accents_and_extra_space() {
        assert_eq!(normalize("  Zoë  O'Brien\tMÜLLER "), "zoe o'brien muller");
        assert_eq!(normalize("Ångström"), "angstrom");
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn times_round_trip_through_microseconds() {
        let at = time::macros::datetime!(2025-11-25 09:01:02.123456789 UTC);
        assert_eq!(micros(at), 1_764_061_262_123_456);
        assert_eq!(from_micros(micros(at)).unwrap(), time::macros::datetime!(2025-11-25 09:01:02.123456 UTC));
        assert_eq!(micros(OffsetDateTime::UNIX_EPOCH - time::Duration::microseconds(1)), -1);
        assert!(from_micros(i64::MAX).is_err());
    }

    #[test]
    fn date_ranges_follow_precision() {
        let year = DateRange::parse("2019").unwrap();
        let jan1 = DateRange::parse("2019-01-01").unwrap();
        let dec31 = DateRange::parse("2019-12-31").unwrap();
        assert_eq!(year.low, jan1.low);
        assert_eq!(year.high, dec31.high);
        let feb = DateRange::parse("2020-02").unwrap();
        assert_eq!(feb.high - feb.low + 1, 29 * DAY);
        let minute = DateRange::parse("2019-05-12T10:00+02:00").unwrap();
        let utc = DateRange::parse("2019-05-12T08:00:00Z").unwrap();
        assert_eq!(minute.low, utc.low);
        assert_eq!(minute.high - minute.low + 1, 60_000_000);
        let milli = DateRange::parse("2019-05-12T08:00:00.123Z").unwrap();
        assert_eq!(milli.low - utc.low, 123_000);
        assert_eq!(milli.high - milli.low + 1, 1_000);
        for bad in ["", "19", "2019-13", "2019-02-30", "2019-05-12T25:00Z", "2019-05-12 10:00", "2019-05-12T10:00:00+2"]
        {
            assert_eq!(DateRange::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn number_ranges_follow_significant_figures() {
        let n = NumberRange::parse("100").unwrap();
        assert_eq!((n.low, n.high), (99.5, 100.5));
        let n = NumberRange::parse("100.00").unwrap();
        assert!((n.low - 99.995).abs() < 1e-9 && (n.high - 100.005).abs() < 1e-9);
        let n = NumberRange::parse("1e2").unwrap();
        assert_eq!((n.low, n.high), (50.0, 150.0));
        assert!(NumberRange::parse("abc").is_none());
        assert!(NumberRange::parse("inf").is_none());
    }

    #[test]
    fn ucum_units_share_a_canonical_form() {
        let (g_per_l, f1) = ucum_canonical("mg/dL").unwrap();
        let (same, f2) = ucum_canonical("g/L").unwrap();
        assert_eq!(g_per_l, same);
        assert!((126.0 * f1 - 1.26 * f2).abs() < 1e-12);
        assert_eq!(ucum_canonical("kg").unwrap().0, ucum_canonical("[lb_av]").unwrap().0);
        assert!(ucum_canonical("furlong").is_none());
        assert!((ucum_temperature("[degF]", 212.0).unwrap() - ucum_temperature("Cel", 100.0).unwrap()).abs() < 1e-9);
    }
}
