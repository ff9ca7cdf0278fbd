//! The delete confirmation prompt.

use std::io::{BufRead, Write};

/// Asks `Delete token ID? This cannot be undone. [y/N]` on `prompt` and reads the answer from
/// `input`. Only `y`/`yes` (any case) confirms; anything else, or no answer, declines.
pub fn confirm_delete(id: &str, prompt: &mut impl Write, input: &mut impl BufRead) -> std::io::Result<bool> {
    write!(prompt, "Delete token {id}? This cannot be undone. [y/N] ")?;
    prompt.flush()?;
    let mut answer = String::new();
    if input.read_line(&mut answer)? == 0 {
        writeln!(prompt)?;
        return Ok(false);
    }
    let answer = answer.trim();
    Ok(answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let cases: &[(&str, bool)] = &[
            ("y\n", true),
            ("Y\n", true),
            ("yes\n", true),
            (" YES \n", true),
            ("n\n", false),
            ("\n", false),
            ("", false),
            ("yep\n", false),
        ];
        for (answer, want) in cases {
            let mut prompt = Vec::new();
            let got = confirm_delete("abc", &mut prompt, &mut answer.as_bytes()).unwrap();
            assert_eq!(got, *want, "{answer:?}");
            assert!(String::from_utf8(prompt).unwrap().starts_with("Delete token abc? This cannot be undone. [y/N] "));
        }
    }
}
