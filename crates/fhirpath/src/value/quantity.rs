//! Quantities with UCUM units (a common subset) and FHIRPath calendar durations.

use super::Decimal;
#[cfg(test)]
use std::cmp::Ordering;

/// A value with a unit: a UCUM code (`mg`, `mm[Hg]`, `'1'`) or a calendar duration keyword
/// (`year`, `months`, `day`...), as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    /// The amount.
    pub value: Decimal,
    /// The unit as written (UCUM code or calendar keyword).
    pub unit: String,
}

/// Exponents of the base dimensions: m, g, s, mol, K, international units, equivalents.
type Dims = [i8; 7];

const CALENDAR: [(&str, &str); 16] = [
    ("year", "year"),
    ("years", "year"),
    ("month", "month"),
    ("months", "month"),
    ("week", "week"),
    ("weeks", "week"),
    ("day", "day"),
    ("days", "day"),
    ("hour", "hour"),
    ("hours", "hour"),
    ("minute", "minute"),
    ("minutes", "minute"),
    ("second", "second"),
    ("seconds", "second"),
    ("millisecond", "millisecond"),
    ("milliseconds", "millisecond"),
];

/// The singular calendar keyword a unit is written with, if it is one (`weeks` -> `week`).
pub fn calendar_keyword(unit: &str) -> Option<&'static str> {
    CALENDAR.iter().find(|(k, _)| *k == unit).map(|(_, c)| *c)
}

/// The calendar unit a quantity adds to a date or time with: keywords, and the definite UCUM
/// durations `wk d h min s ms` (not `a` or `mo`, whose length varies).
pub fn duration_unit(unit: &str) -> Option<&'static str> {
    calendar_keyword(unit).or(match unit {
        "wk" => Some("week"),
        "d" => Some("day"),
        "h" => Some("hour"),
        "min" => Some("minute"),
        "s" => Some("second"),
        "ms" => Some("millisecond"),
        _ => None,
    })
}

fn dec(s: &str) -> Decimal {
    Decimal::parse(s).unwrap_or(Decimal::ZERO)
}

/// Atoms: symbol, factor to base units, dimensions, whether metric prefixes apply.
fn atom(symbol: &str) -> Option<(Decimal, Dims, bool)> {
    let (f, d, metric): (&str, Dims, bool) = match symbol {
        "m" => ("1", [1, 0, 0, 0, 0, 0, 0], true),
        "g" => ("1", [0, 1, 0, 0, 0, 0, 0], true),
        "s" => ("1", [0, 0, 1, 0, 0, 0, 0], true),
        "mol" => ("1", [0, 0, 0, 1, 0, 0, 0], true),
        "K" => ("1", [0, 0, 0, 0, 1, 0, 0], true),
        "[iU]" | "[IU]" => ("1", [0, 0, 0, 0, 0, 1, 0], true),
        "eq" => ("1", [0, 0, 0, 0, 0, 0, 1], true),
        "L" | "l" => ("0.001", [3, 0, 0, 0, 0, 0, 0], true),
        "Pa" => ("1000", [-1, 1, -2, 0, 0, 0, 0], true),
        "bar" => ("100000000", [-1, 1, -2, 0, 0, 0, 0], true),
        "m[Hg]" => ("133322000", [-1, 1, -2, 0, 0, 0, 0], true),
        "m[H2O]" => ("9806650", [-1, 1, -2, 0, 0, 0, 0], true),
        "min" => ("60", [0, 0, 1, 0, 0, 0, 0], false),
        "h" => ("3600", [0, 0, 1, 0, 0, 0, 0], false),
        "d" => ("86400", [0, 0, 1, 0, 0, 0, 0], false),
        "wk" => ("604800", [0, 0, 1, 0, 0, 0, 0], false),
        "mo" => ("2629800", [0, 0, 1, 0, 0, 0, 0], false),
        "a" => ("31557600", [0, 0, 1, 0, 0, 0, 0], false),
        "[lb_av]" => ("453.59237", [0, 1, 0, 0, 0, 0, 0], false),
        "[oz_av]" => ("28.349523125", [0, 1, 0, 0, 0, 0, 0], false),
        "[in_i]" => ("0.0254", [1, 0, 0, 0, 0, 0, 0], false),
        "[ft_i]" => ("0.3048", [1, 0, 0, 0, 0, 0, 0], false),
        "%" => ("0.01", [0; 7], false),
        "1" => ("1", [0; 7], false),
        _ => return None,
    };
    Some((dec(f), d, metric))
}

const PREFIXES: [(&str, &str); 14] = [
    ("da", "10"),
    ("k", "1000"),
    ("M", "1000000"),
    ("G", "1000000000"),
    ("T", "1000000000000"),
    ("h", "100"),
    ("d", "0.1"),
    ("c", "0.01"),
    ("m", "0.001"),
    ("u", "0.000001"),
    ("n", "0.000000001"),
    ("p", "0.000000000001"),
    ("f", "0.000000000000001"),
    ("a", "0.000000000000000001"),
];

/// A unit term without exponent: an atom, a prefixed metric atom, `10*n`, or an annotation.
fn simple_unit(symbol: &str) -> Option<(Decimal, Dims)> {
    if symbol.starts_with('{') && symbol.ends_with('}') {
        return Some((Decimal::from_i64(1), [0; 7]));
    }
    if let Some(exp) = symbol.strip_prefix("10*").or_else(|| symbol.strip_prefix("10^")) {
        let n: u32 = exp.parse().ok()?;
        return Some((Decimal::parse(&format!("1e{n}"))?, [0; 7]));
    }
    if let Some((f, d, _)) = atom(symbol) {
        return Some((f, d));
    }
    for (p, pf) in PREFIXES {
        if let Some(rest) = symbol.strip_prefix(p)
            && let Some((f, d, true)) = atom(rest)
        {
            return Some((f.checked_mul(dec(pf))?, d));
        }
    }
    None
}

/// One component (`cm2`, `s-1`, `mm[Hg]`, `{beats}`).
fn component(text: &str) -> Option<(Decimal, Dims)> {
    let text = match text.find('{') {
        Some(0) | None => text,
        Some(i) => &text[..i],
    };
    let digits_at = text
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_digit() || *c == '-' || *c == '+')
        .last()
        .map(|(i, _)| i)
        .filter(|&i| i > 0 && !text[..i].ends_with(['*', '^']));
    let (symbol, exp) = match digits_at {
        Some(i) if !text.starts_with('{') && text != "1" => (&text[..i], text[i..].parse::<i8>().ok()?),
        _ => (text, 1),
    };
    let (f, d) = simple_unit(symbol)?;
    let mut factor = Decimal::from_i64(1);
    for _ in 0..exp.unsigned_abs() {
        factor = factor.checked_mul(f)?;
    }
    if exp < 0 {
        factor = Decimal::from_i64(1).checked_div(factor)?;
    }
    Some((factor, d.map(|x| x.saturating_mul(exp))))
}

/// A UCUM unit expression as (factor to base units, dimensions); `None` when not understood.
pub(crate) fn ucum(unit: &str) -> Option<(Decimal, Dims)> {
    if unit.is_empty() || unit.contains(['(', ')', ' ']) {
        return None;
    }
    let mut factor = Decimal::from_i64(1);
    let mut dims = [0i8; 7];
    let mut divide = false;
    let mut start = 0;
    let bytes = unit.as_bytes();
    let mut depth = 0i32;
    for i in 0..=bytes.len() {
        let at_sep = i == bytes.len() || (depth == 0 && (bytes[i] == b'.' || bytes[i] == b'/'));
        if i < bytes.len() {
            match bytes[i] {
                b'[' | b'{' => depth += 1,
                b']' | b'}' => depth -= 1,
                _ => {}
            }
        }
        if !at_sep {
            continue;
        }
        let part = &unit[start..i];
        if part.is_empty() {
            if !(i == 0 && bytes.first() == Some(&b'/')) {
                return None;
            }
        } else {
            let (f, d) = component(part)?;
            if divide {
                factor = factor.checked_div(f)?;
                dims.iter_mut().zip(d).for_each(|(a, b)| *a -= b);
            } else {
                factor = factor.checked_mul(f)?;
                dims.iter_mut().zip(d).for_each(|(a, b)| *a += b);
            }
        }
        if i < bytes.len() {
            divide = bytes[i] == b'/';
        }
        start = i + 1;
    }
    Some((factor, dims))
}

/// How two quantities relate for `=` / comparisons.
pub(crate) enum Comparable {
    /// Both values in the same unit.
    Values(Decimal, Decimal),
    /// Units that cannot be compared (different dimensions or unknown units).
    Incompatible,
    /// Calendar year/month against UCUM `a`/`mo`: not equal-comparable, only equivalent.
    Indefinite(Decimal, Decimal),
}

impl Quantity {
    /// The unit as UCUM for conversion: calendar keywords become their UCUM counterparts.
    fn ucum_unit(&self) -> &str {
        match calendar_keyword(&self.unit) {
            Some("year") => "a",
            Some("month") => "mo",
            Some("week") => "wk",
            Some("day") => "d",
            Some("hour") => "h",
            Some("minute") => "min",
            Some("second") => "s",
            Some("millisecond") => "ms",
            _ => &self.unit,
        }
    }

    fn is_variable_calendar(&self) -> bool {
        matches!(calendar_keyword(&self.unit), Some("year" | "month"))
    }

    /// The two values in a common unit, if the units are comparable.
    pub(crate) fn comparable(&self, other: &Quantity) -> Comparable {
        let (a, b) = (self.ucum_unit(), other.ucum_unit());
        if a == b && self.is_variable_calendar() == other.is_variable_calendar() {
            return Comparable::Values(self.value, other.value);
        }
        let (Some((fa, da)), Some((fb, db))) = (ucum(a), ucum(b)) else { return Comparable::Incompatible };
        if da != db {
            return Comparable::Incompatible;
        }
        let (Some(va), Some(vb)) = (self.value.checked_mul(fa), other.value.checked_mul(fb)) else {
            return Comparable::Incompatible;
        };
        if self.is_variable_calendar() != other.is_variable_calendar() {
            return Comparable::Indefinite(va, vb);
        }
        Comparable::Values(va, vb)
    }

    /// Order of two quantities with comparable units.
    #[cfg(test)]
    pub(crate) fn compare(&self, other: &Quantity) -> Option<Ordering> {
        match self.comparable(other) {
            Comparable::Values(a, b) => Some(a.cmp_value(b)),
            _ => None,
        }
    }

    /// `self * other` or `self / other`, with the units combined.
    pub(crate) fn multiply(&self, other: &Quantity, divide: bool) -> Option<Quantity> {
        let (fa, da) = ucum(self.ucum_unit())?;
        let (fb, db) = ucum(other.ucum_unit())?;
        let va = self.value.checked_mul(fa)?;
        let vb = other.value.checked_mul(fb)?;
        let (value, dims) = if divide {
            (va.checked_div(vb)?, std::array::from_fn(|i| da[i] - db[i]))
        } else {
            (va.checked_mul(vb)?, std::array::from_fn(|i| da[i] + db[i]))
        };
        Some(Quantity { value, unit: unit_of(dims) })
    }

    /// `self` in `unit`, when convertible.
    pub(crate) fn convert_to(&self, unit: &str) -> Option<Quantity> {
        let (fa, da) = ucum(self.ucum_unit())?;
        let (fb, db) = ucum(unit)?;
        (da == db).then_some(())?;
        Some(Quantity { value: self.value.checked_mul(fa)?.checked_div(fb)?, unit: unit.to_owned() })
    }
}

/// A UCUM expression for base-unit dimensions (`g.m-1`, `1` when dimensionless).
fn unit_of(dims: Dims) -> String {
    const BASE: [&str; 7] = ["m", "g", "s", "mol", "K", "[iU]", "eq"];
    let parts: Vec<String> = BASE
        .iter()
        .zip(dims)
        .filter(|(_, e)| *e != 0)
        .map(|(b, e)| if e == 1 { (*b).to_owned() } else { format!("{b}{e}") })
        .collect();
    if parts.is_empty() { "1".to_owned() } else { parts.join(".") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: &str, u: &str) -> Quantity {
        Quantity { value: Decimal::parse(v).unwrap(), unit: u.to_owned() }
    }

    #[test]
    fn converts_common_units() {
        assert_eq!(q("4.0000", "g").compare(&q("4000.0", "mg")), Some(Ordering::Equal));
        assert_eq!(q("1", "kg").compare(&q("999", "g")), Some(Ordering::Greater));
        assert_eq!(q("120", "mm[Hg]").compare(&q("12", "cm[Hg]")), Some(Ordering::Equal));
        assert_eq!(q("1", "m").compare(&q("100", "cm")), Some(Ordering::Equal));
        assert_eq!(q("1", "h").compare(&q("60", "min")), Some(Ordering::Equal));
        assert_eq!(q("1", "d").compare(&q("24", "h")), Some(Ordering::Equal));
        assert_eq!(q("7", "days").compare(&q("1", "wk")), Some(Ordering::Equal));
        assert_eq!(q("1", "mg/dL").compare(&q("10", "mg/L")), Some(Ordering::Equal));
        assert_eq!(q("1", "g").compare(&q("1", "m")), None);
        assert!(matches!(q("1", "year").comparable(&q("1", "a")), Comparable::Indefinite(..)));
        let area = q("2.0", "cm").multiply(&q("2.0", "m"), false).unwrap();
        assert_eq!(area.compare(&q("0.040", "m2")), Some(Ordering::Equal));
        assert_eq!(
            q("4.0", "g").multiply(&q("2.0", "m"), true).unwrap().compare(&q("2", "g/m")),
            Some(Ordering::Equal)
        );
    }
}
