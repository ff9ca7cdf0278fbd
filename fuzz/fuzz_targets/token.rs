//! Any header value: parsing never panics, and whatever parses is verified without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tokengate::{jwks, token, verify};

fn keys() -> &'static jwks::KeySet {
    static KEYS: OnceLock<jwks::KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let doc = include_bytes!("../keys.json");
        jwks::parse(doc).map(|p| p.keys).unwrap_or_default()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = token::parse(data) {
        let policy = verify::Policy { clock_skew_seconds: 60, ..verify::Policy::default() };
        let _ = verify::verify(&token, keys(), &policy, 1_800_000_000.0);
    }
});
