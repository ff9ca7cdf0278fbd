//! Tokens made by an independent JWT library (`jsonwebtoken`) verify in tokengate's core, and
//! tokengate refuses what that library's defaults would wrongly accept or refuse.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use tokengate::deny::Denial;
use tokengate::{b64, jwks, token, verify};

const NOW: f64 = 1_800_000_000.0;

fn keypair() -> ed25519_compact::KeyPair {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([42; 32]))
}

fn key_set(kp: &ed25519_compact::KeyPair) -> jwks::KeySet {
    let doc = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k", "use": "sig", "alg": "EdDSA", "x": b64::encode(kp.pk.as_ref())}]});
    jwks::parse_value(&doc).unwrap().keys
}

fn sign(kp: &ed25519_compact::KeyPair, claims: serde_json::Value) -> String {
    let key = EncodingKey::from_ed_der(&kp.sk.to_der());
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("k".into());
    encode(&header, &claims, &key).unwrap()
}

fn check(raw: &str, keys: &jwks::KeySet) -> Result<verify::VerifiedClaims, Denial> {
    let policy = verify::Policy { clock_skew_seconds: 60, ..verify::Policy::default() };
    let token = token::parse(raw.as_bytes()).map_err(|e| e.denial())?;
    verify::verify(&token, keys, &policy, NOW)
}

#[test]
fn jsonwebtoken_eddsa_tokens_verify() {
    let kp = keypair();
    let keys = key_set(&kp);
    let claims = json!({"jti": "t", "iat": 1_700_000_000u64, "exp": 4_102_444_800u64,
        "application_claim": [{"namespace_id": "ns", "application_id": "fn"}]});
    let verified = check(&sign(&kp, claims), &keys).unwrap();
    assert_eq!(verified.token_id.as_deref(), Some("t"));
    assert_eq!(verified.function_id.as_deref(), Some("fn"));
}

#[test]
fn no_exp_is_accepted_and_float_or_past_exp_is_not() {
    let kp = keypair();
    let keys = key_set(&kp);
    // jsonwebtoken's default validation requires exp; the product's non-expiring tokens have none.
    assert!(check(&sign(&kp, json!({"iat": 1_700_000_000u64})), &keys).is_ok());
    assert_eq!(check(&sign(&kp, json!({"exp": 1_600_000_000.5})), &keys).err(), Some(Denial::Expired));
    assert_eq!(check(&sign(&kp, json!({"nbf": 4_000_000_000u64})), &keys).err(), Some(Denial::NotYetValid));
}

#[test]
fn a_jsonwebtoken_hs256_token_keyed_with_public_material_is_refused() {
    let kp = keypair();
    let keys = key_set(&kp);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k".into());
    let forged = encode(&header, &json!({}), &EncodingKey::from_secret(kp.pk.as_ref()).unwrap()).unwrap();
    assert_eq!(check(&forged, &keys).err(), Some(Denial::DisallowedAlgorithm));
}
