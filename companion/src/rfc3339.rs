//! RFC 3339 timestamps <-> unix seconds (UTC), without a date-time crate.
//!
//! Parsing accepts any RFC 3339 `date-time` (fractional seconds are truncated, offsets are
//! applied, a leap second `:60` is read as `:59`); formatting always writes whole seconds in UTC
//! with a `Z`, like `2026-12-03T17:00:00Z`.

/// `9999-01-01T00:00:00Z`: the first instant this service no longer accepts as an expiry.
pub const YEAR_9999_UNIX: i64 = 253_370_764_800;

/// Why a timestamp was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rfc3339Error {
    /// The text does not have the `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)` shape.
    #[error("not an RFC 3339 timestamp (expected e.g. 2030-01-01T00:00:00Z)")]
    Syntax,
    /// The shape is right but a component is out of range (month 13, February 30, hour 24...).
    #[error("not a valid date and time: {0} out of range")]
    OutOfRange(&'static str),
}

/// Parses an RFC 3339 `date-time` into unix seconds.
pub fn parse(text: &str) -> Result<i64, Rfc3339Error> {
    let mut cursor = Cursor { bytes: text.as_bytes(), pos: 0 };
    let year = cursor.digits(4)?;
    cursor.literal(b"-")?;
    let month = cursor.digits(2)?;
    cursor.literal(b"-")?;
    let day = cursor.digits(2)?;
    cursor.literal(b"Tt")?;
    let hour = cursor.digits(2)?;
    cursor.literal(b":")?;
    let minute = cursor.digits(2)?;
    cursor.literal(b":")?;
    let second = cursor.digits(2)?;
    if cursor.peek() == Some(b'.') {
        cursor.pos += 1;
        let start = cursor.pos;
        while cursor.peek().is_some_and(|b| b.is_ascii_digit()) {
            cursor.pos += 1;
        }
        if cursor.pos == start {
            return Err(Rfc3339Error::Syntax);
        }
    }
    let offset = match cursor.next() {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let hours = cursor.digits(2)?;
            cursor.literal(b":")?;
            let minutes = cursor.digits(2)?;
            if hours > 23 {
                return Err(Rfc3339Error::OutOfRange("offset hour"));
            }
            if minutes > 59 {
                return Err(Rfc3339Error::OutOfRange("offset minute"));
            }
            let magnitude = hours * 3600 + minutes * 60;
            if sign == b'-' {
                -magnitude
            } else {
                magnitude
            }
        }
        _ => return Err(Rfc3339Error::Syntax),
    };
    if cursor.peek().is_some() {
        return Err(Rfc3339Error::Syntax);
    }

    if !(1..=12).contains(&month) {
        return Err(Rfc3339Error::OutOfRange("month"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(Rfc3339Error::OutOfRange("day"));
    }
    if hour > 23 {
        return Err(Rfc3339Error::OutOfRange("hour"));
    }
    if minute > 59 {
        return Err(Rfc3339Error::OutOfRange("minute"));
    }
    if second > 60 {
        return Err(Rfc3339Error::OutOfRange("second"));
    }
    // A leap second names the last second of its minute; unix time has no slot for it.
    let second = second.min(59);
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Ok(local - offset)
}

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek();
        if byte.is_some() {
            self.pos += 1;
        }
        byte
    }

    fn digits(&mut self, count: usize) -> Result<i64, Rfc3339Error> {
        let mut value = 0i64;
        for _ in 0..count {
            match self.next() {
                Some(byte) if byte.is_ascii_digit() => value = value * 10 + i64::from(byte - b'0'),
                _ => return Err(Rfc3339Error::Syntax),
            }
        }
        Ok(value)
    }

    fn literal(&mut self, allowed: &[u8]) -> Result<(), Rfc3339Error> {
        match self.next() {
            Some(byte) if allowed.contains(&byte) => Ok(()),
            _ => Err(Rfc3339Error::Syntax),
        }
    }
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_timestamps() {
        let cases: &[(&str, i64)] = &[
            ("1970-01-01T00:00:00Z", 0),
            ("2026-12-03T17:00:00Z", 1_796_317_200),
            ("2026-12-03t17:00:00z", 1_796_317_200),
            ("2026-12-03T17:00:00.999999Z", 1_796_317_200),
            ("2026-12-03T18:30:00+01:30", 1_796_317_200),
            ("2026-12-03T12:00:00-05:00", 1_796_317_200),
            ("2000-02-29T00:00:00Z", 951_782_400),
            ("2016-12-31T23:59:60Z", 1_483_228_799),
            ("9999-01-01T00:00:00Z", YEAR_9999_UNIX),
            ("1969-12-31T23:59:59Z", -1),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(*want), "{text}");
        }
    }

    #[test]
    fn rejects_invalid_timestamps() {
        let cases: &[(&str, Rfc3339Error)] = &[
            ("", Rfc3339Error::Syntax),
            ("2026-12-03", Rfc3339Error::Syntax),
            ("2026-12-03T17:00:00", Rfc3339Error::Syntax),
            ("2026-12-03 17:00:00Z", Rfc3339Error::Syntax),
            ("2026-12-03T17:00Z", Rfc3339Error::Syntax),
            ("2026-12-03T17:00:00.Z", Rfc3339Error::Syntax),
            ("2026-12-03T17:00:00+0100", Rfc3339Error::Syntax),
            ("2026-12-03T17:00:00Z ", Rfc3339Error::Syntax),
            ("+2026-12-03T17:00:00Z", Rfc3339Error::Syntax),
            ("2026-1-03T17:00:00Z", Rfc3339Error::Syntax),
            ("１９７０-01-01T00:00:00Z", Rfc3339Error::Syntax),
            ("2026-13-03T17:00:00Z", Rfc3339Error::OutOfRange("month")),
            ("2026-00-03T17:00:00Z", Rfc3339Error::OutOfRange("month")),
            ("2026-02-29T17:00:00Z", Rfc3339Error::OutOfRange("day")),
            ("1900-02-29T17:00:00Z", Rfc3339Error::OutOfRange("day")),
            ("2026-04-31T17:00:00Z", Rfc3339Error::OutOfRange("day")),
            ("2026-12-03T24:00:00Z", Rfc3339Error::OutOfRange("hour")),
            ("2026-12-03T17:60:00Z", Rfc3339Error::OutOfRange("minute")),
            ("2026-12-03T17:00:61Z", Rfc3339Error::OutOfRange("second")),
            ("2026-12-03T17:00:00+24:00", Rfc3339Error::OutOfRange("offset hour")),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).as_ref(), Err(want), "{text}");
        }
    }

    #[test]
    fn formats_utc_with_whole_seconds() {
        let cases: &[(i64, &str)] = &[
            (0, "1970-01-01T00:00:00Z"),
            (1_796_317_200, "2026-12-03T17:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (-1, "1969-12-31T23:59:59Z"),
            (YEAR_9999_UNIX - 1, "9998-12-31T23:59:59Z"),
        ];
        for (unix, want) in cases {
            assert_eq!(format(*unix), *want, "{unix}");
        }
    }

    #[test]
    fn round_trips_every_day_for_centuries() {
        let mut unix = days_from_civil(1899, 1, 1) * 86_400 + 45_296;
        let end = days_from_civil(2501, 1, 1) * 86_400;
        while unix < end {
            assert_eq!(parse(&format(unix)), Ok(unix));
            unix += 86_400;
        }
    }
}
