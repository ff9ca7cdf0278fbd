//! Field rules shared by the server and the CLI: namespace/function ids and descriptions.

/// Longest namespace or function id, in bytes (ids are ASCII).
pub const MAX_ID_LEN: usize = 128;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 256;

/// Why a field value was refused; the message is shown to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// An id that does not match `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
    #[error("must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit")]
    BadId,
    /// An empty description.
    #[error("must not be empty")]
    EmptyDescription,
    /// A description longer than [`MAX_DESCRIPTION_CHARS`].
    #[error("must be at most 256 characters")]
    LongDescription,
    /// A description with a control character (newline, tab, escape...).
    #[error("must not contain control characters")]
    ControlCharacter,
}

/// Checks a namespace or function id against `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
pub fn check_id(value: &str) -> Result<(), ValueError> {
    let bytes = value.as_bytes();
    let Some((first, rest)) = bytes.split_first() else {
        return Err(ValueError::BadId);
    };
    let valid = bytes.len() <= MAX_ID_LEN
        && first.is_ascii_alphanumeric()
        && rest.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ValueError::BadId)
    }
}

/// Checks a token description: 1 to 256 characters, none of them a control character.
pub fn check_description(value: &str) -> Result<(), ValueError> {
    if value.is_empty() {
        return Err(ValueError::EmptyDescription);
    }
    if value.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ValueError::LongDescription);
    }
    if value.chars().any(char::is_control) {
        return Err(ValueError::ControlCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let long_ok = format!("a{}", "b".repeat(127));
        let too_long = format!("a{}", "b".repeat(128));
        let cases: &[(&str, bool)] = &[
            ("a", true),
            ("0", true),
            ("my-ns", true),
            ("My_Func.v2", true),
            (&long_ok, true),
            (&too_long, false),
            ("", false),
            ("-ns", false),
            (".ns", false),
            ("_ns", false),
            ("ns/x", false),
            ("ns x", false),
            ("ns\n", false),
            ("é", false),
            ("..", false),
        ];
        for (value, ok) in cases {
            assert_eq!(check_id(value).is_ok(), *ok, "{value:?}");
        }
    }

    #[test]
    fn descriptions() {
        let max = "é".repeat(256);
        let over = "é".repeat(257);
        let cases: &[(&str, Result<(), ValueError>)] = &[
            ("ci deploy key", Ok(())),
            ("日本語 ok", Ok(())),
            (&max, Ok(())),
            ("", Err(ValueError::EmptyDescription)),
            (&over, Err(ValueError::LongDescription)),
            ("line\nbreak", Err(ValueError::ControlCharacter)),
            ("tab\there", Err(ValueError::ControlCharacter)),
            ("esc\u{1b}[31m", Err(ValueError::ControlCharacter)),
            ("del\u{7f}", Err(ValueError::ControlCharacter)),
            ("c1\u{85}", Err(ValueError::ControlCharacter)),
        ];
        for (value, want) in cases {
            assert_eq!(&check_description(value), want, "{value:?}");
        }
    }
}
