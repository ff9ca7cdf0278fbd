//! Differential: tokengate's P-256 ECDSA verification against the p256 crate, on signatures
//! made by p256 with a key and message from the input, then changed by the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use tokengate::crypto::ecdsa::{Curve, EcKey};

fuzz_target!(|data: &[u8]| {
    // [secret: 32][digest: 32][changes: (index, xor) pairs]
    if data.len() < 64 {
        return;
    }
    let (secret, rest) = data.split_at(32);
    let (digest, changes) = rest.split_at(32);
    let Ok(signing) = p256::ecdsa::SigningKey::from_slice(secret) else { return };
    let point = signing.verifying_key().to_sec1_point(false);
    let key = EcKey::new(Curve::p256().expect("P-256"), &point.as_bytes()[1..33], &point.as_bytes()[33..])
        .expect("p256's public key is on the curve");
    let signature: p256::ecdsa::Signature = signing.sign_prehash(digest).expect("sign");
    let mut bytes = signature.to_bytes().to_vec();
    assert!(key.verify_digest(digest, &bytes), "a p256 signature was refused");
    let mut digest = digest.to_vec();
    for pair in changes.chunks_exact(2) {
        let (at, xor) = (usize::from(pair[0]) % 96, pair[1]);
        if at < 64 {
            bytes[at] ^= xor;
        } else {
            digest[at - 64] ^= xor;
        }
    }
    let theirs = p256::ecdsa::Signature::from_slice(&bytes)
        .is_ok_and(|s| signing.verifying_key().verify_prehash(&digest, &s).is_ok());
    assert_eq!(key.verify_digest(&digest, &bytes), theirs, "verdicts differ");
});
