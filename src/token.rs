//! Header value -> [`Token`]: a parsed compact JWS whose contents are not trusted yet.
//!
//! The grammar is exact: three unpadded base64url parts joined by two dots, nothing before,
//! between or after. Header and claims are strict JSON objects (no repeated members), and each
//! claim tokengate reads must have its registered type. Parsing never looks at keys.

use crate::b64;
use crate::crypto::Alg;
use crate::deny::Denial;
use crate::json;
use serde_json::{Map, Value};

/// Longest header value accepted as a token.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// The scope claim's name.
pub const SCOPE_CLAIM: &str = "application_claim";

/// A syntactically valid compact JWS, not yet verified.
#[derive(Debug, Clone)]
pub struct Token {
    raw: String,
    signing_input_len: usize,
    /// The signature algorithm named by the header.
    pub alg: Alg,
    /// The key id named by the header.
    pub kid: Option<String>,
    /// The decoded signature.
    pub signature: Vec<u8>,
    /// The claims, typed but untrusted.
    pub claims: Claims,
}

impl Token {
    /// The bytes the signature covers: `base64url(header) "." base64url(claims)`.
    pub fn signing_input(&self) -> &[u8] {
        self.raw.as_bytes().get(..self.signing_input_len).unwrap_or_default()
    }
}

/// The claims tokengate reads, with their registered types already checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    pub exp: Option<f64>,
    pub nbf: Option<f64>,
    pub iat: Option<f64>,
    pub iss: Option<String>,
    /// `aud`, a single string or an array of strings; `None` when absent.
    pub aud: Option<Vec<String>>,
    pub jti: Option<String>,
    pub scope: ScopeClaim,
}

/// The `application_claim` scope claim.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ScopeClaim {
    /// Not present.
    #[default]
    Absent,
    /// Present but not an array of `{namespace_id: string, application_id: string}`.
    Invalid,
    /// The entries, each granting a function or (empty `application_id`) a namespace.
    Entries(Vec<ScopeEntry>),
}

/// One entry of the scope claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeEntry {
    pub namespace_id: String,
    pub application_id: String,
}

/// Why a header value is not an acceptable token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("not a compact JWS (three base64url parts joined by dots)")]
    NotCompact,
    #[error("the {0} part is not canonical base64url")]
    BadEncoding(&'static str),
    #[error("the {0} is not a JSON object without repeated members")]
    NotAnObject(&'static str),
    #[error("header member `{0}` is missing or has the wrong type")]
    BadHeader(&'static str),
    #[error("algorithm is not accepted")]
    DisallowedAlgorithm,
    #[error("header uses `{0}`, which tokengate does not support")]
    UnsupportedHeader(&'static str),
    #[error("the signature is empty")]
    EmptySignature,
    #[error("claim `{0}` has the wrong type")]
    BadClaim(&'static str),
}

impl TokenError {
    /// The denial this parse failure leads to.
    pub fn denial(&self) -> Denial {
        match self {
            TokenError::DisallowedAlgorithm => Denial::DisallowedAlgorithm,
            _ => Denial::MalformedToken,
        }
    }
}

/// The bytes of a compact JWS: the base64url alphabet and the dot (one table lookup a byte,
/// several times faster in Wasm than the comparisons it stands for).
const COMPACT_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        // Evaluated at compile time: an index out of range would fail the build, not the filter.
        #[allow(clippy::indexing_slicing)]
        let slot = &mut table[b];
        *slot = c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.';
        b += 1;
    }
    table
};

/// Parses a header value as a compact JWS.
pub fn parse(value: &[u8]) -> Result<Token, TokenError> {
    if value.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong);
    }
    if !value.iter().all(|&b| COMPACT_BYTES.get(usize::from(b)) == Some(&true)) {
        return Err(TokenError::NotCompact);
    }
    // Only the alphabet above is left, so this is ASCII.
    let raw = std::str::from_utf8(value).map_err(|_| TokenError::NotCompact)?;
    let mut parts = raw.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::NotCompact);
    };
    if header_b64.is_empty() || claims_b64.is_empty() {
        return Err(TokenError::NotCompact);
    }
    let header = decode_object(header_b64, "header")?;
    let (alg, kid) = parse_header(&header)?;
    if signature_b64.is_empty() {
        return Err(TokenError::EmptySignature);
    }
    let signature = b64::decode(signature_b64).map_err(|_| TokenError::BadEncoding("signature"))?;
    let claims = parse_claims(&decode_object(claims_b64, "claims")?)?;
    Ok(Token {
        signing_input_len: header_b64.len() + 1 + claims_b64.len(),
        raw: raw.to_owned(),
        alg,
        kid,
        signature,
        claims,
    })
}

fn decode_object(part: &str, name: &'static str) -> Result<Map<String, Value>, TokenError> {
    let bytes = b64::decode(part).map_err(|_| TokenError::BadEncoding(name))?;
    match json::parse_strict(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(TokenError::NotAnObject(name)),
    }
}

/// Header members that change how a JWS must be processed; tokengate implements none of them.
const UNSUPPORTED_HEADERS: [&str; 4] = ["crit", "b64", "zip", "enc"];

fn parse_header(header: &Map<String, Value>) -> Result<(Alg, Option<String>), TokenError> {
    let alg = match header.get("alg") {
        Some(Value::String(name)) => Alg::from_name(name).ok_or(TokenError::DisallowedAlgorithm)?,
        _ => return Err(TokenError::BadHeader("alg")),
    };
    if let Some(name) = UNSUPPORTED_HEADERS.iter().find(|m| header.contains_key(**m)) {
        return Err(TokenError::UnsupportedHeader(name));
    }
    for member in ["typ", "cty"] {
        if header.get(member).is_some_and(|v| !v.is_string()) {
            return Err(TokenError::BadHeader(if member == "typ" { "typ" } else { "cty" }));
        }
    }
    // A nested JWT (`cty: JWT`) would need a second verification: not supported.
    if header.get("cty").and_then(Value::as_str).is_some_and(|c| c.eq_ignore_ascii_case("jwt")) {
        return Err(TokenError::UnsupportedHeader("cty"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(TokenError::BadHeader("kid")),
    };
    Ok((alg, kid))
}

fn parse_claims(claims: &Map<String, Value>) -> Result<Claims, TokenError> {
    Ok(Claims {
        exp: numeric_date(claims, "exp")?,
        nbf: numeric_date(claims, "nbf")?,
        iat: numeric_date(claims, "iat")?,
        iss: string_claim(claims, "iss")?,
        aud: match claims.get("aud") {
            None => None,
            Some(Value::String(one)) => Some(vec![one.clone()]),
            Some(Value::Array(many)) => Some(
                many.iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(TokenError::BadClaim("aud"))?,
            ),
            Some(_) => return Err(TokenError::BadClaim("aud")),
        },
        jti: string_claim(claims, "jti")?,
        scope: claims.get(SCOPE_CLAIM).map_or(ScopeClaim::Absent, parse_scope),
    })
}

/// A NumericDate (RFC 7519 section 2): any JSON number, integer or not. Other types are errors.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()).map(Some).ok_or(TokenError::BadClaim(name)),
        Some(_) => Err(TokenError::BadClaim(name)),
    }
}

fn string_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<String>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::BadClaim(name)),
    }
}

fn parse_scope(value: &Value) -> ScopeClaim {
    let Some(items) = value.as_array() else {
        return ScopeClaim::Invalid;
    };
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let Some(object) = item.as_object() else {
            return ScopeClaim::Invalid;
        };
        let (Some(Value::String(ns)), Some(Value::String(app))) =
            (object.get("namespace_id"), object.get("application_id"))
        else {
            return ScopeClaim::Invalid;
        };
        entries.push(ScopeEntry { namespace_id: ns.clone(), application_id: app.clone() });
    }
    ScopeClaim::Entries(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jws(header: &str, claims: &str, signature: &[u8]) -> String {
        format!("{}.{}.{}", b64::encode(header.as_bytes()), b64::encode(claims.as_bytes()), b64::encode(signature))
    }

    const HEADER: &str = r#"{"alg":"EdDSA","kid":"k1","typ":"JWT"}"#;

    #[test]
    fn parses_a_well_formed_token() {
        let raw = jws(
            HEADER,
            r#"{"jti":"t1","iat":1,"exp":2.5,"aud":"a","application_claim":[{"namespace_id":"ns","application_id":""}]}"#,
            &[1; 64],
        );
        let token = parse(raw.as_bytes()).unwrap();
        assert_eq!(token.alg, Alg::EdDSA);
        assert_eq!(token.kid.as_deref(), Some("k1"));
        assert_eq!(token.signature, vec![1; 64]);
        assert_eq!(token.claims.exp, Some(2.5));
        assert_eq!(token.claims.aud, Some(vec!["a".to_owned()]));
        assert_eq!(token.claims.jti.as_deref(), Some("t1"));
        let entry = ScopeEntry { namespace_id: "ns".into(), application_id: "".into() };
        assert_eq!(token.claims.scope, ScopeClaim::Entries(vec![entry]));
        let dot = raw.rfind('.').unwrap();
        assert_eq!(token.signing_input(), &raw.as_bytes()[..dot]);
    }

    #[test]
    fn refuses_every_malformed_shape() {
        let good = jws(HEADER, "{}", &[1; 64]);
        let cases: Vec<(String, TokenError)> = vec![
            (String::new(), TokenError::NotCompact),
            (format!("{good} x9-extra"), TokenError::NotCompact),
            (format!("Bearer {good}"), TokenError::NotCompact),
            (format!(" {good}"), TokenError::NotCompact),
            (format!("{good}."), TokenError::NotCompact),
            (format!("{good}="), TokenError::NotCompact),
            (good.replacen('.', "..", 1), TokenError::NotCompact),
            (good.rsplit_once('.').unwrap().0.to_owned(), TokenError::NotCompact),
            (format!(".{good}"), TokenError::NotCompact),
            ("a".repeat(MAX_TOKEN_BYTES + 1), TokenError::TooLong),
            (jws(HEADER, "{}", &[]), TokenError::EmptySignature),
            (jws(HEADER, "[]", &[1]), TokenError::NotAnObject("claims")),
            (jws(HEADER, r#"{"exp":1,"exp":2}"#, &[1]), TokenError::NotAnObject("claims")),
            (jws("[]", "{}", &[1]), TokenError::NotAnObject("header")),
            (jws(r#"{"alg":"EdDSA","alg":"none"}"#, "{}", &[1]), TokenError::NotAnObject("header")),
            (jws(r#"{"kid":"k"}"#, "{}", &[1]), TokenError::BadHeader("alg")),
            (jws(r#"{"alg":1}"#, "{}", &[1]), TokenError::BadHeader("alg")),
            (jws(r#"{"alg":"none"}"#, "{}", &[]), TokenError::DisallowedAlgorithm),
            (jws(r#"{"alg":"HS256"}"#, "{}", &[1]), TokenError::DisallowedAlgorithm),
            (jws(r#"{"alg":"RS256","crit":["exp"]}"#, "{}", &[1]), TokenError::UnsupportedHeader("crit")),
            (jws(r#"{"alg":"RS256","b64":false}"#, "{}", &[1]), TokenError::UnsupportedHeader("b64")),
            (jws(r#"{"alg":"RS256","cty":"JWT"}"#, "{}", &[1]), TokenError::UnsupportedHeader("cty")),
            (jws(r#"{"alg":"RS256","kid":5}"#, "{}", &[1]), TokenError::BadHeader("kid")),
            (jws(r#"{"alg":"RS256","typ":[]}"#, "{}", &[1]), TokenError::BadHeader("typ")),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw.as_bytes()).err(), Some(want), "{raw:.80}");
        }
        let mut padded = good.clone();
        padded.insert(good.find('.').unwrap(), '=');
        assert_eq!(parse(padded.as_bytes()).err(), Some(TokenError::NotCompact));
        assert_eq!(parse(b"\xff\xfe.a.b").err(), Some(TokenError::NotCompact));
    }

    #[test]
    fn claims_must_have_their_registered_types() {
        let cases: &[(&str, Option<TokenError>)] = &[
            (r#"{"exp":1600000000.5}"#, None),
            (r#"{"exp":1e300}"#, None),
            (r#"{"exp":-1}"#, None),
            (r#"{"exp":18446744073709551616}"#, None),
            (r#"{"exp":"1600000000"}"#, Some(TokenError::BadClaim("exp"))),
            (r#"{"exp":null}"#, Some(TokenError::BadClaim("exp"))),
            (r#"{"exp":true}"#, Some(TokenError::BadClaim("exp"))),
            (r#"{"exp":[1]}"#, Some(TokenError::BadClaim("exp"))),
            (r#"{"nbf":{}}"#, Some(TokenError::BadClaim("nbf"))),
            (r#"{"iat":"now"}"#, Some(TokenError::BadClaim("iat"))),
            (r#"{"iss":1}"#, Some(TokenError::BadClaim("iss"))),
            (r#"{"aud":["a",1]}"#, Some(TokenError::BadClaim("aud"))),
            (r#"{"aud":null}"#, Some(TokenError::BadClaim("aud"))),
            (r#"{"jti":7}"#, Some(TokenError::BadClaim("jti"))),
        ];
        for (claims, want) in cases {
            let raw = jws(HEADER, claims, &[1; 64]);
            assert_eq!(parse(raw.as_bytes()).err(), want.clone(), "{claims}");
        }
    }

    #[test]
    fn scope_claim_shapes() {
        let cases: &[(&str, ScopeClaim)] = &[
            ("{}", ScopeClaim::Absent),
            (r#"{"application_claim":[]}"#, ScopeClaim::Entries(vec![])),
            (r#"{"application_claim":{}}"#, ScopeClaim::Invalid),
            (r#"{"application_claim":[{"namespace_id":"n"}]}"#, ScopeClaim::Invalid),
            (r#"{"application_claim":[{"namespace_id":"n","application_id":1}]}"#, ScopeClaim::Invalid),
            (r#"{"application_claim":["n"]}"#, ScopeClaim::Invalid),
            (r#"{"application_claim":null}"#, ScopeClaim::Invalid),
        ];
        for (claims, want) in cases {
            let token = parse(jws(HEADER, claims, &[1; 64]).as_bytes()).unwrap();
            assert_eq!(&token.claims.scope, want, "{claims}");
        }
    }
}
