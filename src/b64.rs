//! Strict base64url (RFC 4648 section 5) without padding, as JWS and JWK require.
//!
//! Padding, the standard alphabet, whitespace and non-canonical trailing bits are all errors:
//! one value has exactly one encoding, so nothing can be smuggled past a comparison.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The input was not canonical unpadded base64url.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not canonical unpadded base64url")]
pub struct B64Error;

/// Decodes canonical unpadded base64url.
pub fn decode(text: &str) -> Result<Vec<u8>, B64Error> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| B64Error)
}

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_canonical_unpadded_base64url() {
        let cases: &[(&str, Option<&[u8]>)] = &[
            ("", Some(b"")),
            ("YQ", Some(b"a")),
            ("YWI", Some(b"ab")),
            ("YWJj", Some(b"abc")),
            ("-_8", Some(&[0xfb, 0xff])),
            ("YQ==", None),  // padding
            ("YR", None),    // non-zero trailing bits
            ("+/8", None),   // standard alphabet
            ("YW Jj", None), // whitespace
            ("Y", None),     // impossible length
            ("YWJj\n", None),
        ];
        for (input, want) in cases {
            assert_eq!(decode(input).ok().as_deref(), *want, "input {input:?}");
        }
    }

    #[test]
    fn round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&bytes)), Ok(bytes));
    }
}
