//! End-to-end tests of the `tokengate` binary: the key service started as a real process on
//! 127.0.0.1 (port 0, temp data dir), driven over HTTP and through the CLI. One test binary.
//!
//! Every wait is bounded; servers are stopped with SIGTERM (and killed on drop if a test fails).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin_api;
mod cli;
mod startup;
mod support;
mod validation;
