//! Signature, time, issuer/audience and scope checks: [`Token`] -> [`VerifiedClaims`].
//!
//! The clock is a parameter, so every rule is tested with a fixed time. Nothing from the token
//! is trusted before its signature verifies; header fields only choose candidate keys.

use crate::deny::Denial;
use crate::hostcrypto::{RustOnly, SignatureHost};
use crate::jwks::{Jwk, KeySet};
use crate::token::{ScopeClaim, Token};

/// Most keys tried for one token. Tokens without a `kid` (or keys without one) would otherwise
/// let one request cost a verification per key in the set.
pub const MAX_CANDIDATE_KEYS: usize = 8;

/// What a filter instance requires of a token besides a valid signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Allowed clock difference, in seconds, for `exp` and `nbf`.
    pub clock_skew_seconds: u64,
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// `aud` must name one of these, if any are given.
    pub audiences: Vec<String>,
    /// The namespace or function this filter protects, if any.
    pub scope: Option<Scope>,
}

/// The namespace, and optionally the function, a filter instance protects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub namespace_id: String,
    pub function_id: Option<String>,
}

/// Facts about a request's token that were proven by its signature and checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifiedClaims {
    /// `jti`, if the token has one.
    pub token_id: Option<String>,
    /// The namespace the token was accepted for (or names, when no scope is required).
    pub namespace_id: Option<String>,
    /// The function the token was accepted for (or names, when no scope is required).
    pub function_id: Option<String>,
    /// `exp`, if any.
    pub expires_at: Option<f64>,
    /// `nbf`, if any.
    pub not_before: Option<f64>,
}

/// Verifies `token` with `keys` under `policy` at `now` (Unix seconds), signatures in Rust.
pub fn verify(token: &Token, keys: &KeySet, policy: &Policy, now: f64) -> Result<VerifiedClaims, Denial> {
    verify_with(token, keys, policy, now, &RustOnly)
}

/// [`verify`], with signatures checked by `host` where it can (see [`PublicKey::verify_with`]).
///
/// [`PublicKey::verify_with`]: crate::crypto::PublicKey::verify_with
pub fn verify_with(
    token: &Token,
    keys: &KeySet,
    policy: &Policy,
    now: f64,
    host: &dyn SignatureHost,
) -> Result<VerifiedClaims, Denial> {
    check_signature(token, keys, host)?;
    let claims = &token.claims;
    let skew = policy.clock_skew_seconds as f64;
    // RFC 7519 4.1.4: the token must not be accepted on or after `exp`.
    if claims.exp.is_some_and(|exp| now >= exp + skew) {
        return Err(Denial::Expired);
    }
    if claims.nbf.is_some_and(|nbf| now + skew < nbf) {
        return Err(Denial::NotYetValid);
    }
    if let Some(issuer) = &policy.issuer {
        if claims.iss.as_ref() != Some(issuer) {
            return Err(Denial::WrongIssuer);
        }
    }
    if !policy.audiences.is_empty() {
        let named = claims.aud.as_deref().unwrap_or_default();
        if !named.iter().any(|aud| policy.audiences.contains(aud)) {
            return Err(Denial::WrongAudience);
        }
    }
    let (namespace_id, function_id) = match &policy.scope {
        Some(scope) => {
            check_scope(&claims.scope, scope)?;
            (Some(scope.namespace_id.clone()), scope.function_id.clone())
        }
        None => sole_entry(&claims.scope),
    };
    Ok(VerifiedClaims {
        token_id: claims.jti.clone(),
        namespace_id,
        function_id,
        expires_at: claims.exp,
        not_before: claims.nbf,
    })
}

/// Whether some key with the token's exact `kid` exists; when not, a refetch may find it.
pub fn names_unknown_kid(token: &Token, keys: &KeySet) -> bool {
    token.kid.as_deref().is_some_and(|kid| !keys.has_kid(kid))
}

/// A key without a kid may verify any token; a token without a kid any key.
fn candidates<'a>(token: &'a Token, keys: &'a KeySet) -> impl Iterator<Item = &'a Jwk> + 'a {
    keys.for_kid(token.kid.as_deref()).filter(move |key| key.accepts(token.alg))
}

fn check_signature(token: &Token, keys: &KeySet, host: &dyn SignatureHost) -> Result<(), Denial> {
    let mut tried = 0;
    for key in candidates(token, keys) {
        if tried == MAX_CANDIDATE_KEYS {
            break;
        }
        tried += 1;
        if key.key.verify_with(token.alg, token.signing_input(), &token.signature, host) {
            return Ok(());
        }
    }
    if tried == 0 || names_unknown_kid(token, keys) {
        Err(Denial::UnknownKey)
    } else {
        Err(Denial::BadSignature)
    }
}

/// The scope rule. With a function: an entry grants it when its `application_id` is the
/// function and its `namespace_id` is empty or the filter's namespace, or when it names the
/// whole namespace (empty `application_id`). Without a function, only whole-namespace entries
/// grant. Anything else is denied.
fn check_scope(claim: &ScopeClaim, scope: &Scope) -> Result<(), Denial> {
    let ScopeClaim::Entries(entries) = claim else {
        return Err(Denial::OutOfScope);
    };
    let grants = entries.iter().any(|entry| {
        let whole_namespace = entry.application_id.is_empty() && entry.namespace_id == scope.namespace_id;
        let this_function = scope.function_id.as_deref().is_some_and(|function| {
            entry.application_id == function
                && (entry.namespace_id.is_empty() || entry.namespace_id == scope.namespace_id)
        });
        whole_namespace || this_function
    });
    if grants {
        Ok(())
    } else {
        Err(Denial::OutOfScope)
    }
}

fn sole_entry(claim: &ScopeClaim) -> (Option<String>, Option<String>) {
    match claim {
        ScopeClaim::Entries(entries) if entries.len() == 1 => {
            let non_empty = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
            let entry = entries.first();
            (entry.and_then(|e| non_empty(&e.namespace_id)), entry.and_then(|e| non_empty(&e.application_id)))
        }
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64;
    use crate::jwks;
    use crate::token::{self, ScopeEntry};
    use ed25519_compact::{KeyPair, Seed};

    const NOW: f64 = 1_800_000_000.0;

    fn keypair(seed: u8) -> KeyPair {
        KeyPair::from_seed(Seed::new([seed; 32]))
    }

    fn key_set(entries: &[(u8, Option<&str>)]) -> KeySet {
        let keys: Vec<_> = entries
            .iter()
            .map(|(seed, kid)| {
                let mut key =
                    serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(keypair(*seed).pk.as_ref())});
                if let Some(kid) = kid {
                    key["kid"] = (*kid).into();
                }
                key
            })
            .collect();
        jwks::parse_value(&serde_json::json!({ "keys": keys })).unwrap().keys
    }

    fn sign(seed: u8, kid: Option<&str>, claims: serde_json::Value) -> Token {
        let mut header = serde_json::json!({"alg": "EdDSA", "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        let input =
            format!("{}.{}", b64::encode(header.to_string().as_bytes()), b64::encode(claims.to_string().as_bytes()));
        let signature = keypair(seed).sk.sign(input.as_bytes(), None);
        token::parse(format!("{input}.{}", b64::encode(signature.as_ref())).as_bytes()).unwrap()
    }

    fn open() -> Policy {
        Policy { clock_skew_seconds: 60, ..Policy::default() }
    }

    #[test]
    fn signature_and_key_selection() {
        let keys = key_set(&[(1, Some("a")), (2, Some("b"))]);
        let claims = serde_json::json!({});
        assert!(verify(&sign(1, Some("a"), claims.clone()), &keys, &open(), NOW).is_ok());
        assert!(verify(&sign(2, Some("b"), claims.clone()), &keys, &open(), NOW).is_ok());
        // Signed by key 1 but names key b.
        assert_eq!(verify(&sign(1, Some("b"), claims.clone()), &keys, &open(), NOW), Err(Denial::BadSignature));
        assert_eq!(verify(&sign(1, Some("zzz"), claims.clone()), &keys, &open(), NOW), Err(Denial::UnknownKey));
        assert_eq!(verify(&sign(3, None, claims.clone()), &keys, &open(), NOW), Err(Denial::BadSignature));
        // No kid: every fitting key is a candidate.
        assert!(verify(&sign(2, None, claims.clone()), &keys, &open(), NOW).is_ok());
        // A key without kid verifies a token with kid.
        let anonymous = key_set(&[(1, None)]);
        assert!(verify(&sign(1, Some("x"), claims.clone()), &anonymous, &open(), NOW).is_ok());
        assert_eq!(verify(&sign(2, Some("x"), claims.clone()), &anonymous, &open(), NOW), Err(Denial::UnknownKey));
        assert_eq!(verify(&sign(1, Some("a"), claims), &KeySet::default(), &open(), NOW), Err(Denial::UnknownKey));
    }

    #[test]
    fn repeated_kids_try_each_key_but_a_bounded_number() {
        let keys = key_set(&[(1, Some("dup")), (2, Some("dup"))]);
        assert!(verify(&sign(2, Some("dup"), serde_json::json!({})), &keys, &open(), NOW).is_ok());
        let many: Vec<(u8, Option<&str>)> = (1..=(MAX_CANDIDATE_KEYS as u8 + 1)).map(|s| (s, None)).collect();
        let keys = key_set(&many);
        let last = MAX_CANDIDATE_KEYS as u8 + 1;
        assert_eq!(verify(&sign(last, None, serde_json::json!({})), &keys, &open(), NOW), Err(Denial::BadSignature));
    }

    #[test]
    fn time_claims_with_skew() {
        let keys = key_set(&[(1, Some("a"))]);
        let cases: &[(serde_json::Value, Result<(), Denial>)] = &[
            (serde_json::json!({}), Ok(())),
            (serde_json::json!({"exp": NOW + 1.0}), Ok(())),
            (serde_json::json!({"exp": NOW - 59.0}), Ok(())),
            (serde_json::json!({"exp": NOW - 60.0}), Err(Denial::Expired)),
            (serde_json::json!({"exp": 1_600_000_000.5}), Err(Denial::Expired)),
            (serde_json::json!({"exp": -1e300}), Err(Denial::Expired)),
            (serde_json::json!({"exp": 1e300}), Ok(())),
            (serde_json::json!({"nbf": NOW + 60.0}), Ok(())),
            (serde_json::json!({"nbf": NOW + 61.0}), Err(Denial::NotYetValid)),
            (serde_json::json!({"nbf": 4_000_000_000u64}), Err(Denial::NotYetValid)),
            (serde_json::json!({"iat": NOW + 1e6}), Ok(())),
        ];
        for (claims, want) in cases {
            let got = verify(&sign(1, Some("a"), claims.clone()), &keys, &open(), NOW).map(|_| ());
            assert_eq!(&got, want, "{claims}");
        }
    }

    #[test]
    fn issuer_and_audience() {
        let keys = key_set(&[(1, Some("a"))]);
        let policy = Policy { issuer: Some("iss".into()), audiences: vec!["x".into(), "y".into()], ..open() };
        let cases: &[(serde_json::Value, Result<(), Denial>)] = &[
            (serde_json::json!({"iss": "iss", "aud": "y"}), Ok(())),
            (serde_json::json!({"iss": "iss", "aud": ["z", "x"]}), Ok(())),
            (serde_json::json!({"iss": "iss"}), Err(Denial::WrongAudience)),
            (serde_json::json!({"iss": "iss", "aud": []}), Err(Denial::WrongAudience)),
            (serde_json::json!({"iss": "iss", "aud": "X"}), Err(Denial::WrongAudience)),
            (serde_json::json!({"aud": "x"}), Err(Denial::WrongIssuer)),
            (serde_json::json!({"iss": "ISS", "aud": "x"}), Err(Denial::WrongIssuer)),
        ];
        for (claims, want) in cases {
            let got = verify(&sign(1, Some("a"), claims.clone()), &keys, &policy, NOW).map(|_| ());
            assert_eq!(&got, want, "{claims}");
        }
    }

    fn entries(list: &[(&str, &str)]) -> ScopeClaim {
        ScopeClaim::Entries(
            list.iter()
                .map(|(ns, app)| ScopeEntry { namespace_id: (*ns).into(), application_id: (*app).into() })
                .collect(),
        )
    }

    #[test]
    fn scope_rule_for_a_function() {
        let scope = Scope { namespace_id: "ns".into(), function_id: Some("fn".into()) };
        let cases: &[(ScopeClaim, bool)] = &[
            (entries(&[("ns", "fn")]), true),
            (entries(&[("", "fn")]), true),
            (entries(&[("ns", "")]), true),
            (entries(&[("other", "x"), ("ns", "fn")]), true),
            (entries(&[("other", "fn")]), false),
            (entries(&[("ns", "other")]), false),
            (entries(&[("other", "")]), false),
            (entries(&[("", "")]), false),
            (entries(&[]), false),
            (ScopeClaim::Absent, false),
            (ScopeClaim::Invalid, false),
            (entries(&[("NS", "fn")]), false),
        ];
        for (claim, granted) in cases {
            assert_eq!(check_scope(claim, &scope).is_ok(), *granted, "{claim:?}");
        }
    }

    #[test]
    fn scope_rule_for_a_whole_namespace() {
        let scope = Scope { namespace_id: "ns".into(), function_id: None };
        let cases: &[(ScopeClaim, bool)] = &[
            (entries(&[("ns", "")]), true),
            (entries(&[("ns", "fn")]), false),
            (entries(&[("", "fn")]), false),
            (entries(&[("", "")]), false),
            (entries(&[("other", "")]), false),
        ];
        for (claim, granted) in cases {
            assert_eq!(check_scope(claim, &scope).is_ok(), *granted, "{claim:?}");
        }
    }

    #[test]
    fn verified_facts() {
        let keys = key_set(&[(1, Some("a"))]);
        let claims = serde_json::json!({"jti": "t1", "exp": NOW + 5.0, "application_claim": [{"namespace_id": "ns", "application_id": "fn"}]});
        let token = sign(1, Some("a"), claims);
        let facts = verify(&token, &keys, &open(), NOW).unwrap();
        assert_eq!(facts.token_id.as_deref(), Some("t1"));
        assert_eq!(facts.namespace_id.as_deref(), Some("ns"));
        assert_eq!(facts.function_id.as_deref(), Some("fn"));
        let scoped =
            Policy { scope: Some(Scope { namespace_id: "ns".into(), function_id: Some("fn".into()) }), ..open() };
        assert_eq!(verify(&token, &keys, &scoped, NOW).unwrap().function_id.as_deref(), Some("fn"));
        let elsewhere =
            Policy { scope: Some(Scope { namespace_id: "ns".into(), function_id: Some("b".into()) }), ..open() };
        assert_eq!(verify(&token, &keys, &elsewhere, NOW), Err(Denial::OutOfScope));
    }
}
