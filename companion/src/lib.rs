//! tokengate-cli: the key service and admin CLI of tokengate (the binary is `tokengate`).
//!
//! Every token is a JWT signed with its own fresh Ed25519 key pair; the private half signs once
//! and is dropped, the public half is stored and published in the namespace's JWKS with
//! `kid` = token id. Deleting a token removes its key from the JWKS: that is revocation.
//!
//! Layers, inward: `cli` (command line, admin API client) and `server` (HTTP) call `service`,
//! which mints with `jwt`, renders with `jwks` (kept briefly by `jwks_cache`) and persists
//! through `store`. `metrics` holds the counters both `server` and `service` add to.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod api;
pub mod cli;
pub mod clock;
pub mod jwks;
pub mod jwks_cache;
pub mod jwt;
pub mod metrics;
pub mod rfc3339;
pub mod server;
pub mod service;
pub mod store;
pub mod token_id;
pub mod validate;
