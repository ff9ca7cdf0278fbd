//! Every acceptance case of `../shared/cases` through the real Envoy.
//!
//! Each distinct key-set file gets its own listener (its own tokengate instance and key
//! source), all in one Envoy: so this also proves that several instances never mix keys.

use crate::harness::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Through a stock Envoy, RS* and ES* signatures are checked by Envoy's BoringSSL
/// (`verify_signature`); every case must give the same answer as in Wasm, below.
#[test]
fn every_shared_case_gets_its_expected_status() {
    run_every_case(false);
}

/// With the foreign-function capability forbidden, every signature is checked in Wasm.
#[test]
fn every_shared_case_gets_its_expected_status_with_signatures_checked_in_wasm() {
    run_every_case(true);
}

fn run_every_case(in_wasm: bool) {
    let dir = cases_dir();
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    assert!(!cases.is_empty());
    let files: BTreeSet<String> = cases.iter().map(|c| c["jwks_file"].as_str().unwrap().to_owned()).collect();

    let keys = TestServer::start(false);
    for file in &files {
        let body = std::fs::read(dir.join(file)).unwrap();
        let content_type = if file.ends_with(".html") { "text/html" } else { "application/json" };
        keys.route(&format!("/cases/{file}"), Reply { content_type: content_type.into(), ..Reply::json(body) });
    }
    let function = TestServer::start(true);
    let listeners: Vec<ListenerSpec> = files
        .iter()
        .map(|file| ListenerSpec {
            name: listener_name(file),
            plugin_config: remote_config(&format!("/cases/{file}"), json!({})),
        })
        .collect();
    let envoy = if in_wasm {
        Envoy::start_without_foreign_functions(&listeners, keys.port, function.port, 2)
    } else {
        Envoy::start(&listeners, keys.port, function.port, 2)
    };

    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        let id = case["id"].as_str().unwrap();
        let port = envoy.port(&listener_name(case["jwks_file"].as_str().unwrap()));
        let expected = case["expected_status"].as_u64().unwrap() as u16;
        let values: Vec<&str> = case["header_values"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let sends: Vec<Option<&str>> =
            if values.is_empty() { vec![None] } else { values.into_iter().map(Some).collect() };
        for token in sends {
            let before = function.seen().len();
            let response = call(port, token);
            let reached = function.seen().len() - before;
            checked += 1;
            let upstream_ok = if expected == 200 {
                let seen = function.seen();
                reached == 1 && seen.last().is_some_and(|s| s.header("x-auth-token").is_none())
            } else {
                reached == 0 && response.reason().is_some()
            };
            if response.status != expected || !upstream_ok {
                failures.push(format!(
                    "{id}: got {} (reason {:?}, upstream reached {reached} times), want {expected}",
                    response.status,
                    response.reason()
                ));
            }
        }
    }
    envoy.assert_healthy();
    assert!(failures.is_empty(), "{} of {checked} case requests failed:\n{}", failures.len(), failures.join("\n"));
    let (by_envoy, in_wasm_fallback) = (
        envoy.counter("wasmcustom.tokengate.signatures.by_envoy"),
        envoy.counter("wasmcustom.tokengate.signatures.envoy_unavailable"),
    );
    if in_wasm {
        assert_eq!(by_envoy, 0);
        assert!(in_wasm_fallback > 0, "no RS/ES signature reached the Wasm fallback");
        envoy.assert_logged("host signature checks unavailable");
    } else {
        assert!(by_envoy > 0, "no signature was checked by Envoy");
        assert_eq!(in_wasm_fallback, 0);
    }
    eprintln!(
        "{checked} case requests over {} cases gave their expected status (signatures by Envoy {by_envoy}, \
         in Wasm for lack of Envoy {in_wasm_fallback})",
        cases.len()
    );
}

#[test]
fn keys_of_one_instance_never_verify_for_another() {
    let dir = cases_dir();
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let token_of = |id: &str| -> String {
        let case = cases.iter().find(|c| c["id"] == id).unwrap();
        case["header_values"][0].as_str().unwrap().to_owned()
    };
    let keys = TestServer::start(false);
    keys.route("/main", Reply::json(std::fs::read(dir.join("jwks_main.json")).unwrap()));
    keys.route("/enc", Reply::json(std::fs::read(dir.join("jwks_with_enc_key.json")).unwrap()));
    let function = TestServer::start(true);
    let envoy = Envoy::start(
        &[
            ListenerSpec { name: "main".into(), plugin_config: remote_config("/main", json!({})) },
            ListenerSpec { name: "enc".into(), plugin_config: remote_config("/enc", json!({})) },
        ],
        keys.port,
        function.port,
        2,
    );
    let rs256 = token_of("pos-01-rs256");
    assert_eq!(call(envoy.port("main"), Some(&rs256)).status, 200);
    let other = call(envoy.port("enc"), Some(&rs256));
    assert_eq!((other.status, other.reason().as_deref()), (403, Some("unknown_key")));
    // Each instance fetched its own key set, once.
    assert_eq!(keys.hits("/main"), 1);
    assert!(keys.hits("/enc") >= 1);
    envoy.assert_healthy();
}

fn listener_name(file: &str) -> String {
    file.replace('.', "_")
}
