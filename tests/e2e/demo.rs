//! The README's demo walkthrough, run as a user runs it (`DEMO_ONCE=1`).

use crate::harness::*;
use std::process::Command;

#[test]
fn the_demo_walkthrough_passes() {
    let output = Command::new(root().join("envoy/demo.sh"))
        .env("DEMO_ONCE", "1")
        .env("ENVOY_BIN", envoy_bin())
        .env("TOKENGATE_BIN", tokengate_bin())
        .output()
        .expect("run envoy/demo.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("Every step gave the expected status."),
        "demo failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "403 {\"error\":\"forbidden\",\"reason\":\"missing_token\"}",
        "\"reason\":\"expired\"",
        "\"reason\":\"out_of_scope\"",
    ] {
        assert!(stdout.contains(expected), "demo output lacks {expected}:\n{stdout}");
    }
}
