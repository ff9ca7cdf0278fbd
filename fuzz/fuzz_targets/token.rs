//! Any header value: parsing never panics, and whatever parses is verified without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate::{jwks, token, verify};

thread_local! {
    // A key set is per VM (single-threaded) in the filter, and so it is here: an Ed25519 key
    // keeps interior state (its verification count and table).
    static KEYS: jwks::KeySet = {
        let doc = include_bytes!("../keys.json");
        jwks::parse(doc).map(|p| p.keys).unwrap_or_default()
    };
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = token::parse(data) {
        let policy = verify::Policy { clock_skew_seconds: 60, ..verify::Policy::default() };
        KEYS.with(|keys| {
            let _ = verify::verify(&token, keys, &policy, 1_800_000_000.0);
        });
    }
});
