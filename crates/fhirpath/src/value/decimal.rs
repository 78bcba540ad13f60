//! Exact decimal numbers: an `i128` mantissa with a count of fractional digits.
//!
//! FHIRPath decimals keep their written precision (`1.10` has two decimals, which `~` and
//! `toString()` observe) and add exactly (`0.1 + 0.2 = 0.3`), which binary floats cannot do.

use std::cmp::Ordering;
use std::fmt;

/// Digits kept after the point by a division that does not come out even.
const DIVISION_SCALE: u32 = 8;
/// The largest number of fractional digits kept.
const MAX_SCALE: u32 = 28;

/// A decimal number with its precision (`1.50` is `150` with scale 2).
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    mantissa: i128,
    scale: u32,
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Decimal {
    /// Zero with no fractional digits.
    pub const ZERO: Decimal = Decimal { mantissa: 0, scale: 0 };

    /// A decimal from an integer.
    pub fn from_i64(n: i64) -> Decimal {
        Decimal { mantissa: i128::from(n), scale: 0 }
    }

    /// Parses `-12.340`, `1e3` (as written in JSON); `None` when not a number or too long.
    pub fn parse(text: &str) -> Option<Decimal> {
        let (body, exp) = match text.find(['e', 'E']) {
            Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
            None => (text, 0),
        };
        let (negative, digits) = match body.as_bytes().first()? {
            b'-' => (true, &body[1..]),
            b'+' => (false, &body[1..]),
            _ => (false, body),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if digits.contains('.') && frac.is_empty() {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        let mut scale = i64::try_from(frac.len()).ok()? - i64::from(exp);
        if mantissa == 0 {
            scale = scale.clamp(0, 38);
        }
        while scale < 0 {
            mantissa = mantissa.checked_mul(10)?;
            scale += 1;
        }
        let scale = u32::try_from(scale).ok()?;
        if scale > 38 {
            return None;
        }
        Some(Decimal { mantissa: if negative { -mantissa } else { mantissa }, scale })
    }

    /// The nearest decimal to a float (shortest round-trip digits); `None` for NaN/infinity.
    pub fn from_f64(f: f64) -> Option<Decimal> {
        if !f.is_finite() {
            return None;
        }
        let d = Decimal::parse(&format!("{f}"))?;
        Some(d.rescale_round(d.scale.min(MAX_SCALE)))
    }

    /// The value as a float (for `exp`, `ln`, `sqrt`...).
    pub fn to_f64(self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    /// Fractional digits as written or computed.
    pub fn scale(self) -> u32 {
        self.scale
    }

    /// Whether the value is zero.
    pub fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// Whether the value is below zero.
    pub fn is_negative(self) -> bool {
        self.mantissa < 0
    }

    /// The value when it is a whole number that fits an `i64`.
    pub fn to_i64_exact(self) -> Option<i64> {
        let p = pow10(self.scale)?;
        if self.mantissa % p != 0 {
            return None;
        }
        i64::try_from(self.mantissa / p).ok()
    }

    /// The integer part, toward zero.
    pub fn trunc_i128(self) -> Option<i128> {
        Some(self.mantissa / pow10(self.scale)?)
    }

    fn with_scale(self, scale: u32) -> Option<Decimal> {
        if scale >= self.scale {
            let m = self.mantissa.checked_mul(pow10(scale - self.scale)?)?;
            Some(Decimal { mantissa: m, scale })
        } else {
            None
        }
    }

    /// Rounds half away from zero to `scale` digits (or pads to it).
    pub fn rescale_round(self, scale: u32) -> Decimal {
        if scale >= self.scale {
            return self.with_scale(scale).unwrap_or(self);
        }
        let Some(p) = pow10(self.scale - scale) else { return Decimal { mantissa: 0, scale } };
        let q = self.mantissa / p;
        let r = self.mantissa % p;
        let adjust = if r.abs() >= p - r.abs() { r.signum() } else { 0 };
        Decimal { mantissa: q + adjust, scale }
    }

    /// Cuts to `scale` digits toward zero (or pads to it).
    pub fn rescale_trunc(self, scale: u32) -> Decimal {
        if scale >= self.scale {
            return self.with_scale(scale).unwrap_or(self);
        }
        let Some(p) = pow10(self.scale - scale) else { return Decimal { mantissa: 0, scale } };
        Decimal { mantissa: self.mantissa / p, scale }
    }

    /// The largest whole number not above the value.
    pub fn floor(self) -> Decimal {
        let t = self.rescale_trunc(0);
        if self.is_negative() && t.cmp_value(self) != Ordering::Equal {
            Decimal { mantissa: t.mantissa - 1, scale: 0 }
        } else {
            t
        }
    }

    /// The smallest whole number not below the value.
    pub fn ceiling(self) -> Decimal {
        let t = self.rescale_trunc(0);
        if !self.is_negative() && t.cmp_value(self) != Ordering::Equal {
            Decimal { mantissa: t.mantissa + 1, scale: 0 }
        } else {
            t
        }
    }

    /// The same value without trailing fractional zeros.
    pub fn normalized(self) -> Decimal {
        let mut d = self;
        while d.scale > 0 && d.mantissa % 10 == 0 {
            d.mantissa /= 10;
            d.scale -= 1;
        }
        d
    }

    fn align(self, other: Decimal) -> Option<(i128, i128, u32)> {
        let scale = self.scale.max(other.scale);
        Some((self.with_scale(scale)?.mantissa, other.with_scale(scale)?.mantissa, scale))
    }

    /// `self + other`; `None` on overflow.
    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let (a, b, scale) = self.align(other)?;
        Some(Decimal { mantissa: a.checked_add(b)?, scale })
    }

    /// `self - other`; `None` on overflow.
    pub fn checked_sub(self, other: Decimal) -> Option<Decimal> {
        self.checked_add(other.negated())
    }

    /// `self * other`; `None` on overflow.
    pub fn checked_mul(self, other: Decimal) -> Option<Decimal> {
        let mut d = Decimal { mantissa: self.mantissa.checked_mul(other.mantissa)?, scale: self.scale + other.scale };
        if d.scale > MAX_SCALE {
            d = d.rescale_round(MAX_SCALE);
        }
        Some(d)
    }

    /// `self / other` to at least 8 decimals, trailing zeros removed; `None` for `/ 0`.
    pub fn checked_div(self, other: Decimal) -> Option<Decimal> {
        if other.mantissa == 0 {
            return None;
        }
        let target = DIVISION_SCALE.max(self.scale).max(other.scale);
        // self.m / 10^sa / (other.m / 10^sb) = self.m * 10^(sb + target + 1 - sa) / other.m / 10^(target + 1)
        let shift = (other.scale + target + 1).checked_sub(self.scale)?;
        let num = self.mantissa.checked_mul(pow10(shift)?)?;
        let q = Decimal { mantissa: num / other.mantissa, scale: target + 1 };
        Some(q.rescale_round(target).normalized())
    }

    /// Integer division toward zero; `None` for `div 0`.
    pub fn div_trunc(self, other: Decimal) -> Option<Decimal> {
        let (a, b, _) = self.align(other)?;
        if b == 0 {
            return None;
        }
        Some(Decimal { mantissa: a / b, scale: 0 })
    }

    /// Remainder of the division toward zero; `None` for `mod 0`.
    pub fn checked_rem(self, other: Decimal) -> Option<Decimal> {
        let (a, b, scale) = self.align(other)?;
        if b == 0 {
            return None;
        }
        Some(Decimal { mantissa: a % b, scale })
    }

    /// `-self`.
    pub fn negated(self) -> Decimal {
        Decimal { mantissa: -self.mantissa, scale: self.scale }
    }

    /// `|self|`.
    pub fn abs(self) -> Decimal {
        Decimal { mantissa: self.mantissa.abs(), scale: self.scale }
    }

    /// Numeric order, whatever the precisions.
    pub fn cmp_value(self, other: Decimal) -> Ordering {
        match self.align(other) {
            Some((a, b, _)) => a.cmp(&b),
            None => self.to_f64().total_cmp(&other.to_f64()),
        }
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Decimal) -> bool {
        self.cmp_value(*other) == Ordering::Equal
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let scale = self.scale as usize;
        if self.mantissa < 0 {
            f.write_str("-")?;
        }
        if scale == 0 {
            return f.write_str(&digits);
        }
        if digits.len() <= scale {
            write!(f, "0.{}{}", "0".repeat(scale - digits.len()), digits)
        } else {
            let (i, r) = digits.split_at(digits.len() - scale);
            write!(f, "{i}.{r}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn keeps_precision_and_adds_exactly() {
        assert_eq!(d("1.10").to_string(), "1.10");
        assert_eq!(d("0.1").checked_add(d("0.2")).unwrap(), d("0.3"));
        assert_eq!(d("-0.05").to_string(), "-0.05");
        assert_eq!(d("1e3").to_string(), "1000");
        assert_eq!(d("1.5e-2").to_string(), "0.015");
        assert!(Decimal::parse("1.").is_none() && Decimal::parse("abc").is_none() && Decimal::parse("").is_none());
    }

    #[test]
    fn divides_and_rounds() {
        assert_eq!(d("1").checked_div(d("2")).unwrap().to_string(), "0.5");
        assert_eq!(d("1.2").checked_div(d("1.8")).unwrap().rescale_round(2).to_string(), "0.67");
        assert_eq!(d("1").checked_div(d("3")).unwrap().to_string(), "0.33333333");
        assert!(d("1").checked_div(d("0")).is_none());
        assert_eq!(d("3.14159").rescale_round(3).to_string(), "3.142");
        assert_eq!(d("-1.5").floor().to_string(), "-2");
        assert_eq!(d("-1.5").ceiling().to_string(), "-1");
        assert_eq!(d("1.1").ceiling().to_string(), "2");
        assert_eq!(d("-0.5").floor().to_string(), "-1");
        assert_eq!(d("5.5").checked_rem(d("0.7")).unwrap().to_string(), "0.6");
    }
}
