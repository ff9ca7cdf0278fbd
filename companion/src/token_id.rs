//! Token ids: random UUID v4 strings, used as the JWT `jti` and the JWK `kid`.

/// Makes a fresh random UUID v4 in lowercase hex, e.g. `0f8fad5b-d9cb-469f-a165-70867728950e`.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(format_uuid_v4(bytes))
}

/// Sets the version (4) and variant (RFC 4122) bits and writes the 8-4-4-4-12 form.
fn format_uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = String::with_capacity(36);
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// Whether `text` has the shape of a token id (a lowercase hex UUID).
///
/// Used to answer 404 for junk path segments without asking the store.
pub fn looks_like_token_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_digit() || (b'a'..=b'f').contains(byte),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_version_and_variant_bits() {
        assert_eq!(format_uuid_v4([0u8; 16]), "00000000-0000-4000-8000-000000000000");
        assert_eq!(format_uuid_v4([0xff; 16]), "ffffffff-ffff-4fff-bfff-ffffffffffff");
    }

    #[test]
    fn generates_distinct_well_formed_ids() {
        let first = generate().unwrap();
        let second = generate().unwrap();
        assert_ne!(first, second);
        for id in [&first, &second] {
            assert!(looks_like_token_id(id), "{id}");
            assert_eq!(id.as_bytes()[14], b'4', "{id}");
            assert!(matches!(id.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{id}");
        }
    }

    #[test]
    fn recognises_token_id_shape() {
        let cases: &[(&str, bool)] = &[
            ("0f8fad5b-d9cb-469f-a165-70867728950e", true),
            ("0F8FAD5B-D9CB-469F-A165-70867728950E", false),
            ("0f8fad5bd9cb469fa16570867728950e", false),
            ("0f8fad5b-d9cb-469f-a165-70867728950", false),
            ("0f8fad5b-d9cb-469f-a165-70867728950g", false),
            ("../../../../../../../../etc/passwd/x", false),
            ("", false),
        ];
        for (text, want) in cases {
            assert_eq!(looks_like_token_id(text), *want, "{text}");
        }
    }
}
