//! Any plugin configuration: refused or accepted, never a panic; a refusal's message is one
//! printable line (it goes to Envoy's log).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = tokengate::config::parse(data) {
        let _ = config.summary();
    } else if let Err(error) = tokengate::config::parse(data) {
        let message = error.to_string();
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }
});
