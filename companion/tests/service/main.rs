//! End-to-end tests of the `tokengate` binary: the key service started as a real process on
//! 127.0.0.1 (port 0), driven over HTTP and through the CLI; and the token stores through the
//! library API. One test binary.
//!
//! Most tests run twice, `…::sqlite` and `…::postgres` (see `backend.rs` for how PostgreSQL is
//! found, and when its tests may be skipped). Every wait is bounded; servers are stopped with
//! SIGTERM (and killed on drop if a test fails).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin_api;
mod backend;
mod cli;
mod console;
mod limits;
mod metrics;
mod replicas;
mod startup;
mod store;
mod support;
mod validation;
