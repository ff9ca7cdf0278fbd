//! `--expires-in` durations: a positive integer and a unit, `30s`, `15m`, `12h` or `30d`.

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not `<digits><unit>`.
    #[error("expected a positive integer and a unit (s, m, h or d), e.g. 30s, 15m, 12h, 30d")]
    Syntax,
    /// Zero length.
    #[error("must be longer than zero")]
    Zero,
    /// Too large to represent.
    #[error("too long")]
    Overflow,
}

/// Parses a duration into seconds.
pub fn parse_duration(text: &str) -> Result<u64, DurationError> {
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or(DurationError::Syntax)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(DurationError::Syntax);
    }
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(DurationError::Syntax),
    };
    let count: u64 = digits.parse().map_err(|_| DurationError::Overflow)?;
    if count == 0 {
        return Err(DurationError::Zero);
    }
    count.checked_mul(unit_secs).ok_or(DurationError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases: &[(&str, Result<u64, DurationError>)] = &[
            ("30s", Ok(30)),
            ("15m", Ok(900)),
            ("12h", Ok(43_200)),
            ("30d", Ok(2_592_000)),
            ("007m", Ok(420)),
            ("0s", Err(DurationError::Zero)),
            ("", Err(DurationError::Syntax)),
            ("30", Err(DurationError::Syntax)),
            ("d", Err(DurationError::Syntax)),
            ("-5m", Err(DurationError::Syntax)),
            ("+5m", Err(DurationError::Syntax)),
            ("1.5h", Err(DurationError::Syntax)),
            ("5 m", Err(DurationError::Syntax)),
            ("5M", Err(DurationError::Syntax)),
            ("5ms", Err(DurationError::Syntax)),
            ("1w", Err(DurationError::Syntax)),
            ("1h30m", Err(DurationError::Syntax)),
            ("99999999999999999999s", Err(DurationError::Overflow)),
            ("999999999999999999d", Err(DurationError::Overflow)),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_duration(text), want, "{text:?}");
        }
    }
}
