//! The shipped deployment files stay in step with the code and with each other: the demo's
//! plugin configuration passes the filter's own validation, and the compose stack runs the
//! same envoy.yaml, module and ports as the native demo.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use tokengate::config::{self, KeySource};

fn read(path: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The JSON block under `value: |` in envoy.yaml.
fn plugin_config(yaml: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| !l.trim_end().ends_with("value: |")).skip(1);
    let first = lines.next().unwrap();
    let indent = first.len() - first.trim_start().len();
    std::iter::once(first)
        .chain(lines.take_while(|l| l.len() - l.trim_start().len() >= indent && !l.trim().is_empty()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_demo_plugin_configuration_is_valid() {
    let yaml = read("envoy/envoy.yaml");
    let config = config::parse(plugin_config(&yaml).as_bytes()).unwrap_or_else(|e| panic!("envoy/envoy.yaml: {e}"));
    let KeySource::Remote(remote) = &config.keys else { panic!("the demo fetches its keys") };
    assert!(yaml.contains(&format!("- name: {}", remote.cluster)), "cluster {} is defined", remote.cluster);
    assert!(yaml.contains("filename: target/wasm32-wasip1/release/tokengate.wasm"));
    assert!(yaml.contains("envoy.wasm.runtime.v8"));
    assert!(yaml.contains(r"regex: '^wasmcustom\.tokengate\.denied(\.(\w+))$'"), "the reason label of the metrics");
}

#[test]
fn compose_and_native_demo_share_config_module_and_ports() {
    let compose = read("envoy/docker-compose.yaml");
    let yaml = read("envoy/envoy.yaml");
    let demo = read("envoy/demo.sh");
    assert!(compose.contains("./envoy.yaml:/work/envoy/envoy.yaml"), "compose mounts the same envoy.yaml");
    assert!(compose
        .contains("../target/wasm32-wasip1/release/tokengate.wasm:/work/target/wasm32-wasip1/release/tokengate.wasm"));
    assert!(compose.contains("-c\", \"envoy/envoy.yaml\""));
    assert!(demo.contains("-c envoy/envoy.yaml"));
    for port in ["8080", "8081", "9901", "10000"] {
        assert!(yaml.contains(&format!("port_value: {port}")), "envoy.yaml uses {port}");
        assert!(demo.contains(port), "demo.sh uses {port}");
    }
    assert!(compose.contains("127.0.0.1:8081") && compose.contains("\"--port\", \"8080\""));
}
