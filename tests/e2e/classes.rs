//! Classes of fault from the acceptance cases, each with its neighbours, through the real Envoy:
//! signature encodings, key selection, and claims of every JSON type.

use crate::harness::*;
use ed25519_compact::{KeyPair, Seed};
use serde_json::{json, Value};

fn unb64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, c)| n | (u32::from(value(*c)) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

fn with_signature(token: &str, signature: &[u8]) -> String {
    let (input, _) = token.rsplit_once('.').unwrap();
    format!("{input}.{}", b64(signature))
}

/// An ECDSA `r || s` signature in ASN.1 DER, as some libraries wrongly emit it for JWS.
fn der(raw: &[u8]) -> Vec<u8> {
    let int = |x: &[u8]| {
        let x: Vec<u8> = x.iter().copied().skip_while(|b| *b == 0).collect();
        let mut v = if x[0] & 0x80 != 0 { vec![0] } else { vec![] };
        v.extend(x);
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let (r, s) = raw.split_at(raw.len() / 2);
    let body = [int(r), int(s)].concat();
    [vec![0x30, body.len() as u8], body].concat()
}

#[test]
fn signature_encodings_are_exactly_what_jwa_specifies() {
    let keys = TestServer::start(false);
    keys.route("/k", Reply::json(case_file("jwks_main.json")));
    let function = TestServer::start(true);
    let envoy = Envoy::single(remote_config("/k", json!({})), keys.port, function.port, 2);
    let port = envoy.port("l");

    let rs = case_token("pos-01-rs256");
    let es = case_token("pos-02-es256");
    let ed = case_token("pos-03-eddsa");
    let sig = |t: &str| unb64(t.rsplit_once('.').unwrap().1);
    let (rs_sig, es_sig, ed_sig) = (sig(&rs), sig(&es), sig(&ed));
    assert_eq!((rs_sig.len(), es_sig.len(), ed_sig.len()), (256, 64, 64));
    // Ed25519 s + L: the same signature, non-canonical (RFC 8032 requires s < L).
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut s_plus_l = ed_sig.clone();
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(s_plus_l[32 + i]) + u16::from(L[i]) + carry;
        s_plus_l[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    let flipped = |mut s: Vec<u8>, at: usize| {
        s[at] ^= 1;
        s
    };
    let cases: Vec<(&str, String, u16)> = vec![
        ("RS256 as issued", rs.clone(), 200),
        ("RS256 with a leading zero byte", with_signature(&rs, &[vec![0], rs_sig.clone()].concat()), 403),
        ("RS256 one byte short", with_signature(&rs, &rs_sig[1..]), 403),
        ("RS256 one bit flipped", with_signature(&rs, &flipped(rs_sig.clone(), 100)), 403),
        ("ES256 as issued", es.clone(), 200),
        ("ES256 in DER", with_signature(&es, &der(&es_sig)), 403),
        ("ES256 with a byte appended", with_signature(&es, &[es_sig.clone(), vec![0]].concat()), 403),
        ("ES256 r and s swapped", with_signature(&es, &[&es_sig[32..], &es_sig[..32]].concat()), 403),
        ("ES256 zero", with_signature(&es, &[0; 64]), 403),
        ("EdDSA as issued", ed.clone(), 200),
        ("EdDSA with s + L", with_signature(&ed, &s_plus_l), 403),
        ("EdDSA truncated", with_signature(&ed, &ed_sig[..63]), 403),
        ("EdDSA signature under the ES256 header", format!("{}.{}", es.rsplit_once('.').unwrap().0, b64(&ed_sig)), 403),
        ("signature with padding", format!("{ed}="), 403),
        (
            "signature in the standard alphabet",
            ed.replace('-', "+").replace('_', "/"),
            if ed.contains(['-', '_']) { 403 } else { 200 },
        ),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(name, token, want)| {
            let got = call(port, Some(token));
            (got.status != *want).then(|| format!("{name}: got {} {:?}, want {want}", got.status, got.reason()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    envoy.assert_healthy();
}

#[test]
fn key_selection_takes_the_right_key_and_no_key_poisons_its_siblings() {
    let main: Value = serde_json::from_slice(&case_file("jwks_main.json")).unwrap();
    let key = |kid: &str| main["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).unwrap().clone();
    let without = |mut k: Value, member: &str| {
        k.as_object_mut().unwrap().remove(member);
        k
    };
    let with = |mut k: Value, member: &str, value: Value| {
        k[member] = value;
        k
    };
    // The RSA key under the EC key's kid, and the EC key under the RSA key's kid.
    let swapped = json!({"keys": [with(key("rsa-main"), "kid", "ec-main".into()), with(key("ec-main"), "kid", "rsa-main".into())]});
    let sets: Vec<(&str, Value)> = vec![
        (
            "no kids",
            json!({"keys": [without(key("rsa-main"), "kid"), without(key("ec-main"), "kid"), without(key("ed-main"), "kid")]}),
        ),
        (
            "repeated kid, wrong key first",
            json!({"keys": [with(key("ed-main"), "kid", "rsa-main".into()), key("rsa-main")]}),
        ),
        (
            "alg that does not fit the key",
            json!({"keys": [with(key("rsa-main"), "alg", "ES256".into()), key("ec-main")]}),
        ),
        ("key marked for encryption", json!({"keys": [with(key("rsa-main"), "use", "enc".into()), key("ec-main")]})),
        (
            "key_ops without verify",
            json!({"keys": [with(key("rsa-main"), "key_ops", json!(["sign"])), key("ec-main")]}),
        ),
        (
            "certificate only",
            json!({"keys": [json!({"kty": "RSA", "kid": "rsa-main", "x5c": ["MIIB"]}), key("ec-main")]}),
        ),
        ("private parts", json!({"keys": [with(key("rsa-main"), "d", "AQAB".into()), key("ec-main")]})),
        ("garbage beside", json!({"keys": [7, "x", null, {"kty": "EC", "crv": "P-521"}, key("ec-main")]})),
        ("swapped kids", swapped),
    ];
    let keys = TestServer::start(false);
    for (i, (_, set)) in sets.iter().enumerate() {
        keys.route(&format!("/k{i}"), Reply::json(set.to_string()));
    }
    let function = TestServer::start(true);
    let listeners: Vec<ListenerSpec> = (0..sets.len())
        .map(|i| ListenerSpec { name: format!("l{i}"), plugin_config: remote_config(&format!("/k{i}"), json!({})) })
        .collect();
    let envoy = Envoy::start(&listeners, keys.port, function.port, 2);
    let (rs, es) = (case_token("pos-01-rs256"), case_token("pos-02-es256"));
    // (set, RS256 status, ES256 status)
    let expected =
        [(200, 200), (200, 403), (403, 200), (403, 200), (403, 200), (403, 200), (403, 200), (403, 200), (403, 403)];
    let mut failures = Vec::new();
    for (i, ((name, _), (want_rs, want_es))) in sets.iter().zip(expected).enumerate() {
        let port = envoy.port(&format!("l{i}"));
        let (got_rs, got_es) = (call(port, Some(&rs)).status, call(port, Some(&es)).status);
        if (got_rs, got_es) != (want_rs, want_es) {
            failures.push(format!("{name}: RS256 {got_rs} (want {want_rs}), ES256 {got_es} (want {want_es})"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    envoy.assert_healthy();
}

#[test]
fn headers_and_claims_of_every_json_type() {
    let pair = KeyPair::from_seed(Seed::new([9; 32]));
    let jwks = ed25519_jwks(&[("k", &pair)]);
    let sign_with = |header: &str, claims: &str| ed25519_sign(&pair, header, claims);
    let sign = |claims: &str| sign_with(r#"{"alg":"EdDSA","kid":"k"}"#, claims);
    let keys = TestServer::start(false);
    keys.route("/k", Reply::json(jwks.to_string()));
    let function = TestServer::start(true);
    let scoped =
        remote_config("/k", json!({"namespace_id": "ns", "function_id": "fn", "issuer": "iss", "audiences": ["aud"]}));
    let envoy = Envoy::single(scoped, keys.port, function.port, 2);
    let port = envoy.port("l");
    let good = r#""iss":"iss","aud":"aud","application_claim":[{"namespace_id":"ns","application_id":"fn"}]"#;
    let cases: Vec<(String, Option<&str>)> = vec![
        (format!("{{{good}}}"), None),
        (format!(r#"{{{good},"exp":4102444800}}"#), None),
        (format!(r#"{{{good},"exp":4102444800.5,"nbf":1.5,"iat":0}}"#), None),
        (format!(r#"{{{good},"exp":1e400}}"#), Some("malformed_token")),
        (format!(r#"{{{good},"exp":"4102444800"}}"#), Some("malformed_token")),
        (format!(r#"{{{good},"exp":null}}"#), Some("malformed_token")),
        (format!(r#"{{{good},"exp":[4102444800]}}"#), Some("malformed_token")),
        (format!(r#"{{{good},"exp":true}}"#), Some("malformed_token")),
        (format!(r#"{{{good},"exp":1600000000}}"#), Some("expired")),
        (format!(r#"{{{good},"exp":-1e308}}"#), Some("expired")),
        (format!(r#"{{{good},"nbf":4000000000}}"#), Some("not_yet_valid")),
        (format!(r#"{{{good},"nbf":{{}}}}"#), Some("malformed_token")),
        (format!(r#"{{{good},"iat":"yesterday"}}"#), Some("malformed_token")),
        (format!(r#"{{{good},"jti":7}}"#), Some("malformed_token")),
        (format!(r#"{{{good},"exp":4102444800,"exp":1}}"#), Some("malformed_token")),
        (
            r#"{"iss":"iss","aud":["x","aud"],"application_claim":[{"namespace_id":"","application_id":"fn"}]}"#.into(),
            None,
        ),
        (r#"{"iss":"iss","aud":"aud","application_claim":[{"namespace_id":"ns","application_id":""}]}"#.into(), None),
        (
            r#"{"iss":"ISS","aud":"aud","application_claim":[{"namespace_id":"ns","application_id":"fn"}]}"#.into(),
            Some("wrong_issuer"),
        ),
        (
            r#"{"aud":"aud","application_claim":[{"namespace_id":"ns","application_id":"fn"}]}"#.into(),
            Some("wrong_issuer"),
        ),
        (
            r#"{"iss":"iss","aud":["x"],"application_claim":[{"namespace_id":"ns","application_id":"fn"}]}"#.into(),
            Some("wrong_audience"),
        ),
        (
            r#"{"iss":"iss","aud":[1],"application_claim":[{"namespace_id":"ns","application_id":"fn"}]}"#.into(),
            Some("malformed_token"),
        ),
        (r#"{"iss":"iss","aud":"aud"}"#.into(), Some("out_of_scope")),
        (
            r#"{"iss":"iss","aud":"aud","application_claim":{"namespace_id":"ns","application_id":"fn"}}"#.into(),
            Some("out_of_scope"),
        ),
        (
            r#"{"iss":"iss","aud":"aud","application_claim":[{"namespace_id":"ns","application_id":1}]}"#.into(),
            Some("out_of_scope"),
        ),
        (
            r#"{"iss":"iss","aud":"aud","application_claim":[{"namespace_id":"other","application_id":"fn"}]}"#.into(),
            Some("out_of_scope"),
        ),
        (
            r#"{"iss":"iss","aud":"aud","application_claim":[{"namespace_id":"ns","application_id":"other"}]}"#.into(),
            Some("out_of_scope"),
        ),
        (r#"{"iss":"iss","aud":"aud","application_claim":[{}]}"#.into(), Some("out_of_scope")),
        ("[]".into(), Some("malformed_token")),
        ("null".into(), Some("malformed_token")),
    ];
    let claims = format!("{{{good}}}");
    let headers: Vec<(&str, Option<&str>)> = vec![
        (r#"{"alg":"EdDSA","kid":"k","typ":"JWT"}"#, None),
        (r#"{"alg":"Ed25519","kid":"k"}"#, None),
        (r#"{"alg":"EdDSA","kid":"k","crit":["exp"]}"#, Some("malformed_token")),
        (r#"{"alg":"EdDSA","kid":"k","crit":["x"],"x":1}"#, Some("malformed_token")),
        (r#"{"alg":"EdDSA","kid":"k","b64":false}"#, Some("malformed_token")),
        (r#"{"alg":"EdDSA","kid":"k","cty":"JWT"}"#, Some("malformed_token")),
        (r#"{"alg":"EdDSA","kid":"k","alg":"EdDSA"}"#, Some("malformed_token")),
        (r#"{"alg":"EdDSA","kid":7}"#, Some("malformed_token")),
        (r#"{"alg":"EdDSA","kid":"other"}"#, Some("unknown_key")),
        (r#"{"alg":"EdDSA","kid":"k","jwk":{"kty":"OKP","crv":"Ed25519","x":"AAAA"}}"#, None),
        (r#"{"alg":"none","kid":"k"}"#, Some("disallowed_algorithm")),
        (r#"{"alg":"HS256","kid":"k"}"#, Some("disallowed_algorithm")),
        (r#"{"alg":["EdDSA"],"kid":"k"}"#, Some("malformed_token")),
    ];
    let mut failures = Vec::new();
    for (header, want) in &headers {
        let got = call(port, Some(&sign_with(header, &claims)));
        let ok = match want {
            None => got.status == 200,
            Some(reason) => got.status == 403 && got.reason().as_deref() == Some(reason),
        };
        if !ok {
            failures.push(format!("header {header}: got {} {:?}, want {want:?}", got.status, got.reason()));
        }
    }
    for (claims, want) in &cases {
        let got = call(port, Some(&sign(claims)));
        let ok = match want {
            None => got.status == 200,
            Some(reason) => got.status == 403 && got.reason().as_deref() == Some(reason),
        };
        if !ok {
            failures.push(format!("{claims}: got {} {:?}, want {want:?}", got.status, got.reason()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    envoy.assert_healthy();
}

#[test]
fn a_key_that_signs_many_tokens_verifies_exactly_with_its_table() {
    // Past ED25519_TABLE_AFTER (64) good signatures a key verifies through a fixed-base table:
    // the answers must stay exactly those of the shared-doublings path, through the real Envoy.
    let pair = KeyPair::from_seed(Seed::new([11; 32]));
    let other = KeyPair::from_seed(Seed::new([12; 32]));
    let jwks = ed25519_jwks(&[("k", &pair)]);
    let sign =
        |key: &KeyPair, n: usize| ed25519_sign(key, r#"{"alg":"EdDSA","kid":"k"}"#, &format!(r#"{{"jti":"t{n}"}}"#));
    let flipped = |token: &str, at: usize| {
        let (input, signature) = token.rsplit_once('.').unwrap();
        let mut raw = unb64(signature);
        raw[at] ^= 0x01;
        format!("{input}.{}", b64(&raw))
    };
    let function = TestServer::start(true);
    // No verified-token cache: every request is a signature check.
    let envoy = Envoy::single(json!({"local_jwks": jwks, "token_cache_size": 0}), free_port(), function.port, 1);
    let port = envoy.port("l");
    let mut failures = Vec::new();
    for n in 0..100 {
        let good = sign(&pair, n);
        for (name, token, want) in [
            ("good", good.clone(), None),
            ("R flipped", flipped(&good, 3), Some("bad_signature")),
            ("S flipped", flipped(&good, 40), Some("bad_signature")),
            ("another key's signature", sign(&other, n), Some("bad_signature")),
        ] {
            if want.is_some() && ![0, 70, 99].contains(&n) {
                continue; // A refusal takes Envoy's 1 s delayed close on these one-shot connections.
            }
            let response = call(port, Some(&token));
            let want_status = if want.is_some() { 403 } else { 200 };
            if response.status != want_status || response.reason().as_deref() != want {
                failures.push(format!("token {n}, {name}: {} {:?}", response.status, response.reason()));
            }
        }
    }
    // The first token again, long after the key got its table.
    assert_eq!(call(port, Some(&sign(&pair, 0))).status, 200);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    envoy.assert_healthy();
}
