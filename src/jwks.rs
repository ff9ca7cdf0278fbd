//! JWKS document -> [`KeySet`].
//!
//! Each key is parsed on its own (RFC 7517 section 5): a key tokengate cannot or must not use
//! is skipped with a [`SkipReason`], and never spoils its siblings. Only a document that is not
//! a JWKS at all is an error, and then the caller keeps its last good key set.

use crate::b64;
use crate::crypto::{Alg, KeyError, PublicKey};
use crate::json;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Largest key-set document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 4 << 20;
/// Most keys accepted in one key set (a namespace publishes one key per live token; the key
/// service caps a namespace well below this). Above it, the whole document is refused.
pub const MAX_KEYS: usize = 50_000;
/// Longest `kid` accepted.
pub const MAX_KID_BYTES: usize = 256;

/// One usable verification key.
#[derive(Debug, Clone)]
pub struct Jwk {
    /// The key id, if the key has one.
    pub kid: Option<String>,
    /// The one algorithm this key is bound to by its `alg` member, if it has one.
    pub alg: Option<Alg>,
    /// The key material, ready to verify.
    pub key: PublicKey,
}

impl Jwk {
    /// Whether this key may verify a signature made with `alg`.
    pub fn accepts(&self, alg: Alg) -> bool {
        self.alg.is_none_or(|bound| bound == alg) && self.key.fits(alg)
    }
}

/// The usable keys of one key-set document, indexed by `kid`: a namespace publishes a key per
/// live token (thousands), and a request must find its key without scanning them all.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
    /// Positions in `keys` of the keys with each `kid`, in document order.
    by_kid: HashMap<String, Vec<usize>>,
    /// Positions of the keys without a `kid` (they may verify any token), in document order.
    without_kid: Vec<usize>,
}

impl KeySet {
    fn push(&mut self, key: Jwk) {
        let position = self.keys.len();
        match &key.kid {
            Some(kid) => self.by_kid.entry(kid.clone()).or_default().push(position),
            None => self.without_kid.push(position),
        }
        self.keys.push(key);
    }

    /// All usable keys, in document order.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// The keys that may verify a token with this `kid` (or without one), in document order:
    /// those with exactly that `kid` and those with none; every key when the token names none.
    pub fn for_kid(&self, kid: Option<&str>) -> ForKid<'_> {
        let named = match kid {
            Some(kid) => self.by_kid.get(kid).map_or(&[][..], Vec::as_slice),
            None => &[],
        };
        ForKid { set: self, all: kid.is_none(), next_all: 0, named, unnamed: &self.without_kid }
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether some key carries exactly this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }
}

/// The iterator of [`KeySet::for_kid`]: merges the ascending positions of the keys with the
/// `kid` and of those without one (or walks all keys), without allocating.
pub struct ForKid<'a> {
    set: &'a KeySet,
    all: bool,
    next_all: usize,
    named: &'a [usize],
    unnamed: &'a [usize],
}

impl<'a> Iterator for ForKid<'a> {
    type Item = &'a Jwk;

    fn next(&mut self) -> Option<&'a Jwk> {
        if self.all {
            let key = self.set.keys.get(self.next_all)?;
            self.next_all += 1;
            return Some(key);
        }
        let position = match (self.named.split_first(), self.unnamed.split_first()) {
            (Some((a, rest)), Some((b, _))) if a < b => {
                self.named = rest;
                *a
            }
            (_, Some((b, rest))) => {
                self.unnamed = rest;
                *b
            }
            (Some((a, rest)), None) => {
                self.named = rest;
                *a
            }
            (None, None) => return None,
        };
        self.set.keys.get(position)
    }
}

/// Why one key of a document was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("not a JSON object, or an object with repeated members")]
    NotAnObject,
    #[error("member `{0}` is missing or has the wrong type")]
    BadMember(&'static str),
    #[error("member `{0}` is not canonical base64url")]
    BadEncoding(&'static str),
    #[error("key type `{0}` is not supported")]
    UnsupportedKeyType(String),
    #[error("curve `{0}` is not supported")]
    UnsupportedCurve(String),
    #[error("`use` is `{0}`, not `sig`")]
    NotForSignatures(String),
    #[error("`key_ops` does not allow `verify`")]
    NoVerifyOperation,
    #[error("algorithm `{0}` is not an accepted signature algorithm")]
    UnsupportedAlgorithm(String),
    #[error("algorithm `{0}` does not fit the key type or curve")]
    AlgorithmMismatch(String),
    #[error("the key carries private or symmetric key material")]
    SecretMaterial,
    #[error("`kid` is longer than {MAX_KID_BYTES} bytes")]
    KidTooLong,
    #[error("{0}")]
    BadKey(KeyError),
}

/// A key that was skipped, with where it stood and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub index: usize,
    pub kid: Option<String>,
    pub reason: SkipReason,
}

/// Why a document is not a key set at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("key set is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("key set is not a JSON object with a `keys` array: {0}")]
    NotAJwks(String),
    #[error("key set has more than {MAX_KEYS} keys")]
    TooManyKeys,
}

/// A parsed document: the usable keys and the skipped ones.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub keys: KeySet,
    pub skipped: Vec<SkippedKey>,
}

/// Parses a JWKS document.
pub fn parse(body: &[u8]) -> Result<Parsed, JwksError> {
    if body.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge);
    }
    let (keys, count) = json::jwks_keys(body, MAX_KEYS).map_err(|e| JwksError::NotAJwks(short(&e)))?;
    if count > MAX_KEYS {
        return Err(JwksError::TooManyKeys);
    }
    let mut parsed = Parsed::default();
    for (index, raw) in keys.into_iter().enumerate() {
        let member = json::parse_strict(raw.get().as_bytes()).ok();
        parsed.add(index, member.as_ref());
    }
    Ok(parsed)
}

/// Parses a JWKS given as an already-parsed JSON value (the config's `local_jwks`), with the same
/// rules as [`parse`].
pub fn parse_value(value: &Value) -> Result<Parsed, JwksError> {
    let keys = value.get("keys").ok_or_else(|| JwksError::NotAJwks("no `keys` member".to_owned()))?;
    let keys = keys.as_array().ok_or_else(|| JwksError::NotAJwks("`keys` is not an array".to_owned()))?;
    if keys.len() > MAX_KEYS {
        return Err(JwksError::TooManyKeys);
    }
    let mut parsed = Parsed::default();
    for (index, member) in keys.iter().enumerate() {
        parsed.add(index, Some(member));
    }
    Ok(parsed)
}

impl Parsed {
    /// Adds the document's `index`th key, or the reason it is skipped (`None`: not valid JSON).
    fn add(&mut self, index: usize, member: Option<&Value>) {
        let Some(Value::Object(object)) = member else {
            self.skipped.push(SkippedKey { index, kid: None, reason: SkipReason::NotAnObject });
            return;
        };
        match parse_key(object) {
            Ok(jwk) => self.keys.push(jwk),
            Err(reason) => {
                let kid = object.get("kid").and_then(Value::as_str).map(|k| json::printable(k, 64));
                self.skipped.push(SkippedKey { index, kid, reason });
            }
        }
    }
}

const SECRET_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn parse_key(object: &Map<String, Value>) -> Result<Jwk, SkipReason> {
    let kty = string_member(object, "kty")?.ok_or(SkipReason::BadMember("kty"))?;
    let kid = match string_member(object, "kid")? {
        Some(kid) if kid.len() > MAX_KID_BYTES => return Err(SkipReason::KidTooLong),
        other => other.map(str::to_owned),
    };
    if let Some(usage) = string_member(object, "use")? {
        if usage != "sig" {
            return Err(SkipReason::NotForSignatures(json::printable(usage, 32)));
        }
    }
    if let Some(ops) = object.get("key_ops") {
        let ops = ops.as_array().ok_or(SkipReason::BadMember("key_ops"))?;
        if ops.iter().any(|op| !op.is_string()) {
            return Err(SkipReason::BadMember("key_ops"));
        }
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Err(SkipReason::NoVerifyOperation);
        }
    }
    if SECRET_MEMBERS.iter().any(|m| object.contains_key(*m)) {
        return Err(SkipReason::SecretMaterial);
    }
    let alg = match string_member(object, "alg")? {
        None => None,
        Some(name) => {
            Some(Alg::from_name(name).ok_or_else(|| SkipReason::UnsupportedAlgorithm(json::printable(name, 32)))?)
        }
    };
    let key = match kty {
        "RSA" => PublicKey::rsa(&bytes_member(object, "n")?, &bytes_member(object, "e")?),
        "EC" => match string_member(object, "crv")?.ok_or(SkipReason::BadMember("crv"))? {
            "P-256" => PublicKey::p256(&bytes_member(object, "x")?, &bytes_member(object, "y")?),
            "P-384" => PublicKey::p384(&bytes_member(object, "x")?, &bytes_member(object, "y")?),
            other => return Err(SkipReason::UnsupportedCurve(json::printable(other, 32))),
        },
        "OKP" => match string_member(object, "crv")?.ok_or(SkipReason::BadMember("crv"))? {
            "Ed25519" => PublicKey::ed25519(&bytes_member(object, "x")?),
            other => return Err(SkipReason::UnsupportedCurve(json::printable(other, 32))),
        },
        "oct" => return Err(SkipReason::SecretMaterial),
        other => return Err(SkipReason::UnsupportedKeyType(json::printable(other, 32))),
    }
    .map_err(SkipReason::BadKey)?;
    if let Some(alg) = alg {
        if !key.fits(alg) {
            return Err(SkipReason::AlgorithmMismatch(alg.name().to_owned()));
        }
    }
    Ok(Jwk { kid, alg, key })
}

fn string_member<'a>(object: &'a Map<String, Value>, name: &'static str) -> Result<Option<&'a str>, SkipReason> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(SkipReason::BadMember(name)),
    }
}

fn bytes_member(object: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, SkipReason> {
    let text = string_member(object, name)?.ok_or(SkipReason::BadMember(name))?;
    b64::decode(text).map_err(|_| SkipReason::BadEncoding(name))
}

/// The parse error in words ("`keys` is not an array at line 1 column 9"): tokengate's own texts
/// and serde_json's syntax errors, none of which quote the document.
fn short(error: &serde_json::Error) -> String {
    error.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_for_a_kid_are_those_with_it_and_those_without_any_in_document_order() {
        let key = |kid: Option<&str>, seed: u8| {
            let x = crate::b64::encode(
                ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed + 1; 32])).pk.as_ref(),
            );
            match kid {
                Some(kid) => serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": x}),
                None => serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
            }
        };
        let doc = serde_json::json!({"keys": [key(Some("a"), 0), key(None, 1), key(Some("b"), 2), key(Some("a"), 3), key(None, 4), key(Some("a"), 5)]});
        let set = parse_value(&doc).unwrap().keys;
        let positions = |kid: Option<&str>| -> Vec<usize> {
            set.for_kid(kid).map(|k| set.keys().iter().position(|o| std::ptr::eq(o, k)).unwrap()).collect()
        };
        assert_eq!(positions(Some("a")), [0, 1, 3, 4, 5]);
        assert_eq!(positions(Some("b")), [1, 2, 4]);
        assert_eq!(positions(Some("c")), [1, 4]);
        assert_eq!(positions(Some("")), [1, 4]);
        assert_eq!(positions(None), [0, 1, 2, 3, 4, 5]);
        assert!(set.has_kid("a") && set.has_kid("b") && !set.has_kid("c"));
    }
    use serde_json::json;

    const ED_X: &str = "-sMjijSE0upXqunAueledd7rUPOlyKB5in-8PuZL6Zs";
    const P256_X: &str = "_diSrqFA-HULJaV7tLYoXaMVekiv5C65joLIg_yHZJc";
    const P256_Y: &str = "pBPleFaMp4vEdNxOWJi-kcKAF1W1xNhyvI6G-AUzgJw";

    fn ed(extra: Value) -> Value {
        let mut key = json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X});
        if let (Some(k), Value::Object(e)) = (key.as_object_mut(), extra) {
            k.extend(e);
        }
        key
    }

    fn one(key: Value) -> Result<Jwk, SkipReason> {
        let parsed = parse_value(&json!({ "keys": [key] })).unwrap();
        match (parsed.keys.keys.first(), parsed.skipped.first()) {
            (Some(jwk), None) => Ok(jwk.clone()),
            (None, Some(skip)) => Err(skip.reason.clone()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn documents_that_are_not_key_sets_are_errors() {
        for body in [
            &b"<html>502</html>"[..],
            b"",
            b"{}",
            b"[]",
            b"{\"keys\":{}}",
            b"{\"keys\":null}",
            b"{\"keys\":[],\"keys\":[]}",
            b"null",
        ] {
            assert!(matches!(parse(body), Err(JwksError::NotAJwks(_))), "{:?}", String::from_utf8_lossy(body));
        }
        assert_eq!(parse(&vec![b' '; MAX_JWKS_BYTES + 1]).err(), Some(JwksError::TooLarge));
    }

    #[test]
    fn an_empty_key_set_is_valid() {
        let parsed = parse(b"{\"keys\":[]}").unwrap();
        assert!(parsed.keys.is_empty() && parsed.skipped.is_empty());
    }

    #[test]
    fn each_key_is_judged_on_its_own() {
        let cases: Vec<(Value, Result<(), SkipReason>)> = vec![
            (ed(json!({})), Ok(())),
            (ed(json!({"use": "sig", "alg": "EdDSA", "kid": "a"})), Ok(())),
            (ed(json!({"alg": "Ed25519"})), Ok(())),
            (ed(json!({"key_ops": ["verify", "sign"]})), Ok(())),
            (ed(json!({"use": "enc"})), Err(SkipReason::NotForSignatures("enc".into()))),
            (ed(json!({"use": 1})), Err(SkipReason::BadMember("use"))),
            (ed(json!({"key_ops": ["encrypt"]})), Err(SkipReason::NoVerifyOperation)),
            (ed(json!({"key_ops": "verify"})), Err(SkipReason::BadMember("key_ops"))),
            (ed(json!({"alg": "ES256"})), Err(SkipReason::AlgorithmMismatch("ES256".into()))),
            (ed(json!({"alg": "RSA-OAEP"})), Err(SkipReason::UnsupportedAlgorithm("RSA-OAEP".into()))),
            (ed(json!({"alg": "HS256"})), Err(SkipReason::UnsupportedAlgorithm("HS256".into()))),
            (ed(json!({"alg": "none"})), Err(SkipReason::UnsupportedAlgorithm("none".into()))),
            (ed(json!({"d": ED_X})), Err(SkipReason::SecretMaterial)),
            (ed(json!({"kid": 7})), Err(SkipReason::BadMember("kid"))),
            (ed(json!({"kid": "k".repeat(300)})), Err(SkipReason::KidTooLong)),
            (ed(json!({"x": format!("{ED_X}=")})), Err(SkipReason::BadEncoding("x"))),
            (ed(json!({"crv": "Ed448"})), Err(SkipReason::UnsupportedCurve("Ed448".into()))),
            (ed(json!({"crv": "X25519"})), Err(SkipReason::UnsupportedCurve("X25519".into()))),
            (json!({"kty": "oct", "k": "c2VjcmV0"}), Err(SkipReason::SecretMaterial)),
            (
                json!({"kty": "AKP", "alg": "ML-DSA-65", "pub": "AA"}),
                Err(SkipReason::UnsupportedAlgorithm("ML-DSA-65".into())),
            ),
            (json!({"kty": "AKP", "pub": "AA"}), Err(SkipReason::UnsupportedKeyType("AKP".into()))),
            (json!({"crv": "Ed25519", "x": ED_X}), Err(SkipReason::BadMember("kty"))),
            (json!({"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y}), Ok(())),
            (
                json!({"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y, "alg": "ES384"}),
                Err(SkipReason::AlgorithmMismatch("ES384".into())),
            ),
            (json!({"kty": "EC", "crv": "P-256", "x": P256_X}), Err(SkipReason::BadMember("y"))),
            (
                json!({"kty": "EC", "crv": "secp256k1", "x": P256_X, "y": P256_Y}),
                Err(SkipReason::UnsupportedCurve("secp256k1".into())),
            ),
            (
                json!({"kty": "EC", "crv": "P-521", "x": P256_X, "y": P256_Y}),
                Err(SkipReason::UnsupportedCurve("P-521".into())),
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": P256_Y, "y": P256_X}),
                Err(SkipReason::BadKey(KeyError::EcPoint)),
            ),
            (json!({"kty": "RSA", "x5c": ["MIIB"]}), Err(SkipReason::BadMember("n"))),
            (json!("a string"), Err(SkipReason::NotAnObject)),
            (json!(null), Err(SkipReason::NotAnObject)),
        ];
        for (key, want) in cases {
            let got = one(key.clone()).map(|_| ());
            assert_eq!(got, want, "{key}");
        }
    }

    #[test]
    fn a_bad_key_never_spoils_its_siblings() {
        let body = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{ED_X}","kid":"dup","kid":"dup"}},
                7, {{"kty":"OKP","crv":"Ed25519","x":"{ED_X}","kid":"good"}}]}}"#
        );
        let parsed = parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.keys.len(), 1);
        assert!(parsed.keys.has_kid("good"));
        assert_eq!(parsed.skipped.len(), 2);
        assert_eq!(parsed.skipped.first().map(|s| s.index), Some(0));
    }

    #[test]
    fn key_alg_binds_the_key() {
        let jwk = one(json!({"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y, "alg": "ES256"})).unwrap();
        assert!(jwk.accepts(Alg::ES256));
        assert!(!jwk.accepts(Alg::ES384));
        assert!(!jwk.accepts(Alg::RS256));
    }
}
