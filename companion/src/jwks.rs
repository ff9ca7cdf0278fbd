//! The namespace JWKS: which keys are published (the liveness rule), the document, its ETag.
//!
//! A token's key is published while the token is not deleted and either never expires or
//! expired less than [`EXPIRY_GRACE_SECS`] ago. The grace hour lets the filter answer "expired"
//! (it still finds the key) rather than "unknown key"; after it the key leaves the set.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// How long a key stays published after its token expired.
pub const EXPIRY_GRACE_SECS: i64 = 3600;

/// Whether a token's key belongs in the JWKS at `now` (unix seconds).
pub fn is_published(expires_at: Option<i64>, deleted_at: Option<i64>, now: i64) -> bool {
    deleted_at.is_none() && expires_at.is_none_or(|expires| expires > published_cutoff(now))
}

/// Keys of tokens that expired at or before this instant are no longer published.
///
/// Stores filter with `expires_at > published_cutoff(now)`, the same rule as [`is_published`].
pub fn published_cutoff(now: i64) -> i64 {
    now.saturating_sub(EXPIRY_GRACE_SECS)
}

/// One published key: the token id and its raw Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKey {
    /// Token id, published as `kid`.
    pub id: String,
    /// Raw 32-byte public key, published as `x`.
    pub public_key: [u8; 32],
}

/// A rendered JWKS document and its strong ETag; cheap to clone (the body is shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksDocument {
    /// `{"keys":[...]}` as sent.
    pub body: Bytes,
    /// Quoted strong ETag derived from the body, e.g. `"3a7bd3e2..."`.
    pub etag: String,
}

#[derive(Serialize)]
struct Document<'a> {
    keys: Vec<Jwk<'a>>,
}

#[derive(Serialize)]
struct Jwk<'a> {
    kty: &'static str,
    crv: &'static str,
    #[serde(rename = "use")]
    use_: &'static str,
    alg: &'static str,
    kid: &'a str,
    x: String,
}

/// Renders the keys, in the given order, as a JWKS document.
pub fn render(keys: &[PublishedKey]) -> Result<JwksDocument, serde_json::Error> {
    let document = Document {
        keys: keys
            .iter()
            .map(|key| Jwk {
                kty: "OKP",
                crv: "Ed25519",
                use_: "sig",
                alg: "EdDSA",
                kid: &key.id,
                x: URL_SAFE_NO_PAD.encode(key.public_key),
            })
            .collect(),
    };
    let body = serde_json::to_vec(&document)?;
    let etag = etag_of(&body);
    Ok(JwksDocument { body: Bytes::from(body), etag })
}

fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut etag = String::with_capacity(2 + 2 * digest.len());
    etag.push('"');
    for byte in digest.iter() {
        etag.push_str(&format!("{byte:02x}"));
    }
    etag.push('"');
    etag
}

/// Whether an `If-None-Match` header value names `etag` (weak comparison, as RFC 9110 asks).
pub fn if_none_match_hits(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_317_200;

    #[test]
    fn liveness_rule_with_fixed_clock() {
        let cases: &[(&str, Option<i64>, Option<i64>, bool)] = &[
            ("never expires", None, None, true),
            ("expires later", Some(NOW + 1), None, true),
            ("expires now", Some(NOW), None, true),
            ("expired within the hour", Some(NOW - 3599), None, true),
            ("expired exactly an hour ago", Some(NOW - 3600), None, false),
            ("expired long ago", Some(NOW - 86_400), None, false),
            ("deleted", None, Some(NOW - 10), false),
            ("deleted, not expired", Some(NOW + 3600), Some(NOW), false),
        ];
        for (name, expires_at, deleted_at, want) in cases {
            assert_eq!(is_published(*expires_at, *deleted_at, NOW), *want, "{name}");
        }
    }

    #[test]
    fn renders_okp_keys_in_order() {
        let keys = [
            PublishedKey { id: "b".to_owned(), public_key: [0u8; 32] },
            PublishedKey { id: "a".to_owned(), public_key: [0xfb; 32] },
        ];
        let document = render(&keys).unwrap();
        let expected = concat!(
            r#"{"keys":["#,
            r#"{"kty":"OKP","crv":"Ed25519","use":"sig","alg":"EdDSA","kid":"b","#,
            r#""x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},"#,
            r#"{"kty":"OKP","crv":"Ed25519","use":"sig","alg":"EdDSA","kid":"a","#,
            r#""x":"-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s"}"#,
            r#"]}"#
        );
        assert_eq!(String::from_utf8(document.body.to_vec()).unwrap(), expected);
    }

    #[test]
    fn empty_set_and_etags() {
        let empty = render(&[]).unwrap();
        assert_eq!(&empty.body[..], br#"{"keys":[]}"#);
        assert_eq!(empty.etag.len(), 66);
        assert!(empty.etag.starts_with('"') && empty.etag.ends_with('"'));
        assert_eq!(render(&[]).unwrap().etag, empty.etag);
        let one = render(&[PublishedKey { id: "a".to_owned(), public_key: [1; 32] }]).unwrap();
        assert_ne!(one.etag, empty.etag);
    }

    #[test]
    fn if_none_match() {
        let etag = r#""abc""#;
        let cases: &[(&str, bool)] = &[
            (r#""abc""#, true),
            (r#"W/"abc""#, true),
            (r#""x", "abc""#, true),
            ("*", true),
            (r#""abd""#, false),
            ("abc", false),
            ("", false),
        ];
        for (header, want) in cases {
            assert_eq!(if_none_match_hits(header, etag), *want, "{header}");
        }
    }
}
