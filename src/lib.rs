//! tokengate: a proxy-wasm HTTP filter that makes a function private.
//!
//! Every request must carry a JWT in `X-Auth-Token` (the header is configurable). The token is
//! verified against the namespace's JWKS, fetched from an Envoy cluster, and a bad or missing
//! token gets a local 403. Everything except `filter/` is plain Rust with no proxy-wasm
//! dependency, so it is compiled and tested natively; `filter/` is the thin host glue and only
//! exists on `wasm32`.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod b64;
pub mod config;
pub mod crypto;
pub mod deny;
pub mod gate;
pub mod host;
pub mod hostcrypto;
pub mod json;
pub mod jwks;
pub mod keycache;
pub mod metrics;
pub mod token;
pub mod verified;
pub mod verify;

#[cfg(target_arch = "wasm32")]
mod filter;
