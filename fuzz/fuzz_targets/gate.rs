//! Any sequence of header values through the request gate, with a key set that arrives late:
//! no panic, and no token without a valid signature is ever allowed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate::gate::{Gate, Outcome};
use tokengate::host::MemorySharedData;
use tokengate::keycache::Fetched;

fuzz_target!(|data: &[u8]| {
    let store = MemorySharedData::default();
    let Ok(config) = tokengate::config::parse(br#"{"jwks":{"cluster":"k","path":"/k"}}"#) else { return };
    let mut gate = Gate::new(&config);
    gate.start(&store);
    let values: Vec<&[u8]> = data.split(|b| *b == b'\n').take(4).collect();
    let mut now = 1_800_000_000_000u64;
    for (id, value) in values.iter().enumerate() {
        let outcome = gate.on_request(&store, id as u32, &[value], now);
        assert!(!matches!(outcome, Outcome::Allow(_)), "allowed before any key set");
        now += 7;
        let tick = gate.on_tick(&store, now);
        if tick.fetch {
            let (_, resolved) = gate.on_fetch_done(&store, now + 1, Ok(Fetched::body(include_bytes!("../keys.json"))));
            for r in resolved {
                // Random bytes cannot carry a valid signature for the fuzz key set.
                assert!(r.result.is_err());
            }
        }
    }
});
