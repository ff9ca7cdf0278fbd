//! The wall clock, in unix seconds. Everything else takes `now` as a parameter.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in unix seconds; the server uses [`unix_now`], tests a fixed one.
pub type Clock = fn() -> i64;

/// Seconds since the unix epoch (negative if the system clock is set before 1970).
pub fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}
