//! Any key-set document: parsing never panics; every kept key is usable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = tokengate::jwks::parse(data) {
        for key in parsed.keys.keys() {
            let _ = key.key.verify(tokengate::crypto::Alg::EdDSA, b"message", &[0u8; 64]);
        }
    }
});
