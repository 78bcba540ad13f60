//! Dates, date-times and times with partial precision, as FHIRPath compares and adds them.

use super::Decimal;
use std::cmp::Ordering;
use std::fmt::{self, Write as _};

/// How much of a date/time is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    /// `2019`
    Year,
    /// `2019-03`
    Month,
    /// `2019-03-12`
    Day,
    /// `2019-03-12T10`
    Hour,
    /// `2019-03-12T10:30`
    Minute,
    /// `2019-03-12T10:30:15`
    Second,
    /// `2019-03-12T10:30:15.250`
    Millisecond,
}

/// A date or date-time (a `Date` has at most day precision and no offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Year (1..=9999 when parsed).
    pub year: i32,
    /// Month 1..=12 (1 when not known).
    pub month: u8,
    /// Day 1..=31 (1 when not known).
    pub day: u8,
    /// Hour 0..=23.
    pub hour: u8,
    /// Minute 0..=59.
    pub minute: u8,
    /// Second 0..=59.
    pub second: u8,
    /// Millisecond 0..=999.
    pub millisecond: u16,
    /// How much is known.
    pub precision: Precision,
    /// The offset from UTC in minutes, when given.
    pub offset: Option<i32>,
}

/// A time of day (`@T10:30`), with partial precision and no offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    /// Hour 0..=23.
    pub hour: u8,
    /// Minute 0..=59.
    pub minute: u8,
    /// Second 0..=59.
    pub second: u8,
    /// Millisecond 0..=999.
    pub millisecond: u16,
    /// `Hour`, `Minute`, `Second` or `Millisecond`.
    pub precision: Precision,
}

fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    let head = s.get(..n)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, &s[n..]))
}

pub(crate) fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (i32::try_from(y).unwrap_or(i32::MAX), m, d)
}

fn parse_time_part(s: &str) -> Option<(u8, u8, u8, u16, Precision, &str)> {
    let (h, rest) = digits(s, 2)?;
    if h > 23 {
        return None;
    }
    let Some(rest) = rest.strip_prefix(':') else { return Some((h as u8, 0, 0, 0, Precision::Hour, rest)) };
    let (mi, rest) = digits(rest, 2)?;
    if mi > 59 {
        return None;
    }
    let Some(rest) = rest.strip_prefix(':') else { return Some((h as u8, mi as u8, 0, 0, Precision::Minute, rest)) };
    let (sec, rest) = digits(rest, 2)?;
    if sec > 59 {
        return None;
    }
    let Some(frac) = rest.strip_prefix('.') else {
        return Some((h as u8, mi as u8, sec as u8, 0, Precision::Second, rest));
    };
    let n = frac.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return None;
    }
    let mut ms = 0u16;
    for (i, b) in frac.bytes().take(3).enumerate() {
        if b.is_ascii_digit() {
            ms += u16::from(b - b'0') * [100, 10, 1][i];
        }
    }
    Some((h as u8, mi as u8, sec as u8, ms, Precision::Millisecond, &frac[n..]))
}

fn parse_offset(s: &str) -> Option<Option<i32>> {
    if s.is_empty() {
        return Some(None);
    }
    if s == "Z" {
        return Some(Some(0));
    }
    let sign = match s.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, rest) = digits(&s[1..], 2)?;
    let rest = rest.strip_prefix(':')?;
    let (m, rest) = digits(rest, 2)?;
    if !rest.is_empty() || h > 14 || m > 59 {
        return None;
    }
    Some(Some(sign * (h as i32 * 60 + m as i32)))
}

impl DateTime {
    /// Parses `YYYY[-MM[-DD[Thh[:mm[:ss[.fff]]][offset]]]]`; a trailing `T` alone is allowed
    /// (FHIRPath's `@2015T`). Returns the value and whether a time part or `T` was present.
    pub fn parse(s: &str) -> Option<(DateTime, bool)> {
        let (year, mut rest) = digits(s, 4)?;
        let mut dt = DateTime {
            year: year as i32,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            millisecond: 0,
            precision: Precision::Year,
            offset: None,
        };
        if let Some(r) = rest.strip_prefix('-') {
            let (m, r) = digits(r, 2)?;
            if !(1..=12).contains(&m) {
                return None;
            }
            dt.month = m as u8;
            dt.precision = Precision::Month;
            rest = r;
            if let Some(r) = rest.strip_prefix('-') {
                let (d, r) = digits(r, 2)?;
                if d < 1 || d > u32::from(days_in_month(dt.year, dt.month)) {
                    return None;
                }
                dt.day = d as u8;
                dt.precision = Precision::Day;
                rest = r;
            }
        }
        let Some(r) = rest.strip_prefix('T') else {
            return rest.is_empty().then_some((dt, false));
        };
        if r.is_empty() {
            return Some((dt, true));
        }
        if dt.precision != Precision::Day {
            return None;
        }
        let (h, mi, sec, ms, precision, rest) = parse_time_part(r)?;
        (dt.hour, dt.minute, dt.second, dt.millisecond, dt.precision) = (h, mi, sec, ms, precision);
        dt.offset = parse_offset(rest)?;
        Some((dt, true))
    }

    /// Whether only a date part is present.
    pub fn is_date_only(&self) -> bool {
        self.precision <= Precision::Day
    }

    /// Cuts the value to `precision` (dropping the offset below hours).
    pub fn truncate(mut self, precision: Precision) -> DateTime {
        if precision < self.precision {
            self.precision = precision;
        }
        if self.precision < Precision::Month {
            self.month = 1;
        }
        if self.precision < Precision::Day {
            self.day = 1;
        }
        if self.precision < Precision::Hour {
            (self.hour, self.offset) = (0, None);
        }
        if self.precision < Precision::Minute {
            self.minute = 0;
        }
        if self.precision < Precision::Second {
            self.second = 0;
        }
        if self.precision < Precision::Millisecond {
            self.millisecond = 0;
        }
        self
    }

    fn epoch_ms(&self) -> i64 {
        let days = days_from_civil(self.year, self.month, self.day);
        let ms = ((i64::from(self.hour) * 60 + i64::from(self.minute)) * 60 + i64::from(self.second)) * 1000
            + i64::from(self.millisecond);
        days * 86_400_000 + ms
    }

    fn set_epoch_ms(&mut self, ms: i64) {
        let days = ms.div_euclid(86_400_000);
        let rem = ms.rem_euclid(86_400_000);
        (self.year, self.month, self.day) = civil_from_days(days);
        self.hour = (rem / 3_600_000) as u8;
        self.minute = (rem / 60_000 % 60) as u8;
        self.second = (rem / 1000 % 60) as u8;
        self.millisecond = (rem % 1000) as u16;
    }

    /// The same instant in UTC (unchanged without offset or below hour precision).
    fn to_utc(self) -> DateTime {
        match self.offset {
            Some(off) if self.precision >= Precision::Hour && off != 0 => {
                let mut d = self;
                d.set_epoch_ms(self.epoch_ms() - i64::from(off) * 60_000);
                d.offset = Some(0);
                d
            }
            _ => self,
        }
    }

    /// FHIRPath comparison: `None` when the values differ only below a precision one of them
    /// lacks (e.g. `@2012 < @2012-01`).
    pub fn compare(&self, other: &DateTime) -> Option<Ordering> {
        let timed = |d: &DateTime| d.precision >= Precision::Hour;
        if timed(self) && timed(other) && self.offset.is_some() != other.offset.is_some() {
            return None;
        }
        let (a, b) = if self.offset.is_some() || other.offset.is_some() {
            (self.to_utc(), other.to_utc())
        } else {
            (*self, *other)
        };
        let fields = |d: &DateTime| {
            [
                i64::from(d.year),
                i64::from(d.month),
                i64::from(d.day),
                i64::from(d.hour),
                i64::from(d.minute),
                i64::from(d.second) * 1000 + i64::from(d.millisecond),
            ]
        };
        let level = |p: Precision| match p {
            Precision::Millisecond => 5,
            p => p as usize,
        };
        let (fa, fb) = (fields(&a), fields(&b));
        let (la, lb) = (level(a.precision), level(b.precision));
        for i in 0..=la.min(lb) {
            match fa[i].cmp(&fb[i]) {
                Ordering::Equal => {}
                o => return Some(o),
            }
        }
        (la == lb).then_some(Ordering::Equal)
    }

    /// Adds a calendar amount: `unit` is one of `year month week day hour minute second
    /// millisecond`. `None` when the result is out of range.
    pub fn add(&self, amount: Decimal, unit: &str) -> Option<DateTime> {
        let whole = i64::try_from(amount.trunc_i128()?).ok()?;
        let mut d = *self;
        match unit {
            "year" | "month" => {
                let months = if unit == "year" { whole.checked_mul(12)? } else { whole };
                let total = i64::from(d.year) * 12 + i64::from(d.month) - 1 + months;
                d.year = i32::try_from(total.div_euclid(12)).ok()?;
                d.month = (total.rem_euclid(12) + 1) as u8;
                d.day = d.day.min(days_in_month(d.year, d.month));
            }
            _ => {
                let ms = match unit {
                    "week" => whole.checked_mul(7 * 86_400_000)?,
                    "day" => whole.checked_mul(86_400_000)?,
                    "hour" => whole.checked_mul(3_600_000)?,
                    "minute" => whole.checked_mul(60_000)?,
                    "second" => whole.checked_mul(1000)?,
                    "millisecond" => whole,
                    _ => return None,
                };
                d.set_epoch_ms(d.epoch_ms().checked_add(ms)?);
            }
        }
        if !(1..=9999).contains(&d.year) {
            return None;
        }
        Some(d.truncate(self.precision))
    }

    /// Writes the value at its precision, without the `@` (`2019-03-12T10:30:00.000+10:00`).
    pub fn render(&self, date_only: bool) -> String {
        let mut s = format!("{:04}", self.year);
        if self.precision >= Precision::Month {
            let _ = write!(s, "-{:02}", self.month);
        }
        if self.precision >= Precision::Day {
            let _ = write!(s, "-{:02}", self.day);
        }
        if self.precision >= Precision::Hour {
            let _ = write!(s, "T{:02}", self.hour);
            if self.precision >= Precision::Minute {
                let _ = write!(s, ":{:02}", self.minute);
            }
            if self.precision >= Precision::Second {
                let _ = write!(s, ":{:02}", self.second);
            }
            if self.precision >= Precision::Millisecond {
                let _ = write!(s, ".{:03}", self.millisecond);
            }
            match self.offset {
                Some(0) => s.push('Z'),
                Some(off) => {
                    let sign = if off < 0 { '-' } else { '+' };
                    let _ = write!(s, "{sign}{:02}:{:02}", off.abs() / 60, off.abs() % 60);
                }
                None => {}
            }
        } else if !date_only {
            s.push('T');
        }
        s
    }

    /// The current instant in UTC, to the millisecond.
    pub fn now() -> DateTime {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
        let mut d = DateTime {
            year: 1970,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            millisecond: 0,
            precision: Precision::Millisecond,
            offset: Some(0),
        };
        d.set_epoch_ms(ms);
        d
    }
}

impl Time {
    /// Parses `hh[:mm[:ss[.fff]]]`.
    pub fn parse(s: &str) -> Option<Time> {
        let (hour, minute, second, millisecond, precision, rest) = parse_time_part(s)?;
        rest.is_empty().then_some(Time { hour, minute, second, millisecond, precision })
    }

    /// Comparison with the same precision rules as [`DateTime::compare`].
    pub fn compare(&self, other: &Time) -> Option<Ordering> {
        let as_dt = |t: &Time| DateTime {
            year: 2000,
            month: 1,
            day: 1,
            hour: t.hour,
            minute: t.minute,
            second: t.second,
            millisecond: t.millisecond,
            precision: t.precision,
            offset: None,
        };
        as_dt(self).compare(&as_dt(other))
    }

    /// Adds an amount of `hour minute second millisecond`, wrapping around midnight.
    pub fn add(&self, amount: Decimal, unit: &str) -> Option<Time> {
        let ms: i64 = match unit {
            "hour" => i64::try_from(amount.trunc_i128()?).ok()?.checked_mul(3_600_000)?,
            "minute" => i64::try_from(amount.trunc_i128()?).ok()?.checked_mul(60_000)?,
            "second" => amount.checked_mul(Decimal::from_i64(1000))?.trunc_i128()?.try_into().ok()?,
            "millisecond" => i64::try_from(amount.trunc_i128()?).ok()?,
            _ => return None,
        };
        let now = ((i64::from(self.hour) * 60 + i64::from(self.minute)) * 60 + i64::from(self.second)) * 1000
            + i64::from(self.millisecond);
        let t = now.checked_add(ms)?.rem_euclid(86_400_000);
        Some(Time {
            hour: (t / 3_600_000) as u8,
            minute: (t / 60_000 % 60) as u8,
            second: (t / 1000 % 60) as u8,
            millisecond: (t % 1000) as u16,
            precision: self.precision,
        })
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.hour)?;
        if self.precision >= Precision::Minute {
            write!(f, ":{:02}", self.minute)?;
        }
        if self.precision >= Precision::Second {
            write!(f, ":{:02}", self.second)?;
        }
        if self.precision >= Precision::Millisecond {
            write!(f, ".{:03}", self.millisecond)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> DateTime {
        DateTime::parse(s).unwrap().0
    }

    #[test]
    fn parses_partial_dates() {
        assert_eq!(dt("2019").precision, Precision::Year);
        assert_eq!(dt("2019-02-28T10:30:00.123+10:00").render(false), "2019-02-28T10:30:00.123+10:00");
        assert_eq!(dt("2015T").render(false), "2015T");
        assert!(DateTime::parse("2019-02-30").is_none());
        assert!(DateTime::parse("2019-13").is_none());
        assert!(DateTime::parse("2019-01T10").is_none());
    }

    #[test]
    fn compares_with_precision() {
        assert_eq!(dt("2012-04-15").compare(&dt("2012-04-16")), Some(Ordering::Less));
        assert_eq!(dt("2012").compare(&dt("2012-01")), None);
        assert_eq!(dt("2011").compare(&dt("2012-01")), Some(Ordering::Less));
        assert_eq!(dt("2012-04-15T15:30:31").compare(&dt("2012-04-15T15:30:31.0")), Some(Ordering::Equal));
        assert_eq!(dt("2017-11-05T01:30:00.0-04:00").compare(&dt("2017-11-05T01:15:00.0-05:00")), Some(Ordering::Less));
    }

    #[test]
    fn adds_calendar_durations() {
        let d = Decimal::from_i64;
        assert_eq!(dt("2019-01-31").add(d(1), "month").unwrap().render(true), "2019-02-28");
        assert_eq!(dt("2016-02-29").add(d(1), "year").unwrap().render(true), "2017-02-28");
        assert_eq!(dt("1973-12-25").add(d(1), "week").unwrap().render(true), "1974-01-01");
        assert_eq!(dt("2019-01-01").add(d(-1), "day").unwrap().render(true), "2018-12-31");
        assert_eq!(dt("2014").add(d(24), "month").unwrap().render(true), "2016");
        let t = Time::parse("23:30").unwrap().add(d(1), "hour").unwrap();
        assert_eq!(t.to_string(), "00:30");
    }
}
