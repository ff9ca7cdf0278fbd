//! Minting: one fresh Ed25519 key pair per token, a compact EdDSA JWS, and the key dropped.
//!
//! The private key lives only inside [`mint`]: it signs once and is wiped when dropped
//! (ed25519-compact clears secret keys on drop). Only the public half leaves, to be stored and
//! published in the namespace's JWKS under `kid` = the token id.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_compact::{KeyPair, Seed};
use serde::Serialize;

/// What a token says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims<'a> {
    /// Token id: the `jti` claim and the header's `kid`.
    pub id: &'a str,
    /// `iat`, unix seconds.
    pub issued_at: i64,
    /// `exp`, unix seconds; `None` leaves the claim out (a token that never expires).
    pub expires_at: Option<i64>,
    /// `iss`.
    pub issuer: &'a str,
    /// The namespace the token opens.
    pub namespace_id: &'a str,
    /// The function the token opens; `None` for a namespace token (sent as `""`).
    pub function_id: Option<&'a str>,
}

/// A signed token and the public key that verifies it.
pub struct MintedToken {
    /// The compact JWS `header.payload.signature`.
    pub token: String,
    /// The raw 32-byte Ed25519 public key.
    pub public_key: [u8; 32],
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken").field("token", &"<redacted>").finish_non_exhaustive()
    }
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The operating system's random generator failed.
    #[error("no randomness for a key pair: {0}")]
    Randomness(getrandom::Error),
    /// The random seed was refused (all zeros: a broken generator).
    #[error("could not derive a key pair: {0}")]
    KeyPair(ed25519_compact::Error),
    /// The header or payload could not be serialised.
    #[error("could not encode the token: {0}")]
    Encode(#[from] serde_json::Error),
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

#[derive(Serialize)]
struct Payload<'a> {
    jti: &'a str,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    iss: &'a str,
    application_claim: [ApplicationClaim<'a>; 1],
}

#[derive(Serialize)]
struct ApplicationClaim<'a> {
    namespace_id: &'a str,
    application_id: &'a str,
}

/// Makes a fresh key pair, signs the token with it and returns the token and the public key.
pub fn mint(claims: &TokenClaims<'_>) -> Result<MintedToken, MintError> {
    let mut seed = [0u8; Seed::BYTES];
    getrandom::fill(&mut seed).map_err(MintError::Randomness)?;
    let key_pair = KeyPair::try_from_seed(Seed::new(seed)).map_err(MintError::KeyPair);
    seed.fill(0);
    sign(claims, &key_pair?)
}

/// Encodes and signs with the given key pair (split out so tests can use a fixed key).
fn sign(claims: &TokenClaims<'_>, key_pair: &KeyPair) -> Result<MintedToken, MintError> {
    let header = Header { alg: "EdDSA", typ: "JWT", kid: claims.id };
    let payload = Payload {
        jti: claims.id,
        iat: claims.issued_at,
        exp: claims.expires_at,
        iss: claims.issuer,
        application_claim: [ApplicationClaim {
            namespace_id: claims.namespace_id,
            application_id: claims.function_id.unwrap_or(""),
        }],
    };
    let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload)?));
    let signature = key_pair.sk.sign(token.as_bytes(), None);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
    Ok(MintedToken { token, public_key: *key_pair.pk })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::{self, PublishedKey};
    use ed25519_compact::{PublicKey, Signature};

    const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn claims(function_id: Option<&'static str>, expires_at: Option<i64>) -> TokenClaims<'static> {
        TokenClaims {
            id: ID,
            issued_at: 1_796_317_200,
            expires_at,
            issuer: "tokengate",
            namespace_id: "shop",
            function_id,
        }
    }

    fn decode_part(part: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(part).unwrap()
    }

    /// Splits a token, checks the exact header, and verifies the signature with the key as the
    /// JWKS publishes it. Returns the payload.
    fn verify_through_jwks(minted: &MintedToken) -> serde_json::Value {
        let parts: Vec<&str> = minted.token.split('.').collect();
        assert_eq!(parts.len(), 3, "{}", minted.token);
        assert_eq!(
            String::from_utf8(decode_part(parts[0])).unwrap(),
            format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{ID}"}}"#)
        );

        let document = jwks::render(&[PublishedKey { id: ID.to_owned(), public_key: minted.public_key }]).unwrap();
        let jwks: serde_json::Value = serde_json::from_slice(&document.body).unwrap();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kid"], ID);
        let x = decode_part(jwk["x"].as_str().unwrap());
        let public_key = PublicKey::from_slice(&x).unwrap();
        let signature = Signature::from_slice(&decode_part(parts[2])).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        public_key.verify(signed.as_bytes(), &signature).unwrap();

        let tampered = format!("{}.{}x", parts[0], parts[1]);
        assert!(public_key.verify(tampered.as_bytes(), &signature).is_err());

        serde_json::from_slice(&decode_part(parts[1])).unwrap()
    }

    #[test]
    fn function_token_with_expiry() {
        let minted = mint(&claims(Some("checkout"), Some(1_796_320_800))).unwrap();
        let payload = verify_through_jwks(&minted);
        assert_eq!(
            payload,
            serde_json::json!({
                "jti": ID,
                "iat": 1_796_317_200,
                "exp": 1_796_320_800,
                "iss": "tokengate",
                "application_claim": [{"namespace_id": "shop", "application_id": "checkout"}],
            })
        );
        let raw = String::from_utf8(decode_part(minted.token.split('.').nth(1).unwrap())).unwrap();
        assert!(raw.starts_with(r#"{"jti":""#), "{raw}");
    }

    #[test]
    fn namespace_token_without_expiry() {
        let minted = mint(&claims(None, None)).unwrap();
        let payload = verify_through_jwks(&minted);
        assert!(payload.get("exp").is_none(), "{payload}");
        assert_eq!(payload["application_claim"][0]["application_id"], "");
        assert_eq!(payload["application_claim"][0]["namespace_id"], "shop");
    }

    #[test]
    fn every_token_gets_its_own_key() {
        let first = mint(&claims(None, None)).unwrap();
        let second = mint(&claims(None, None)).unwrap();
        assert_ne!(first.public_key, second.public_key);
        assert_ne!(first.token, second.token);
    }

    #[test]
    fn fixed_key_gives_fixed_token() {
        let key_pair = KeyPair::from_seed(Seed::new([7u8; 32]));
        let a = sign(&claims(None, None), &key_pair).unwrap();
        let b = sign(&claims(None, None), &key_pair).unwrap();
        assert_eq!(a.token, b.token);
        assert!(!a.token.contains('=') && !a.token.contains('+') && !a.token.contains('/'));
        assert!(!format!("{a:?}").contains(&a.token));
    }
}
