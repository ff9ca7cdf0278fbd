//! How the token travels in the request, through the real Envoy: repeated, spoofed, junk,
//! enormous and non-UTF-8 headers; what the upstream sees; configuration refused at start.

use crate::harness::*;
use serde_json::{json, Value};

#[test]
fn credentials_in_the_request() {
    let function = TestServer::start(true);
    let listeners = [
        ListenerSpec { name: "plain".into(), plugin_config: json!({"local_jwks": main_jwks()}) },
        ListenerSpec {
            name: "forward".into(),
            plugin_config: json!({"local_jwks": main_jwks(), "forward_token": true, "header": "X-Function-Token"}),
        },
    ];
    let envoy = Envoy::start(&listeners, free_port(), function.port, 2);
    let port = envoy.port("plain");
    let token = case_token("pos-03-eddsa");
    let t = token.as_bytes();

    type Case<'a> = (&'a str, Vec<(&'a str, Vec<u8>)>, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("valid", vec![("x-auth-token", t.to_vec())], 200, None),
        ("header name is case-insensitive", vec![("X-AUTH-TOKEN", t.to_vec())], 200, None),
        ("missing", vec![], 403, Some("missing_token")),
        ("empty", vec![("x-auth-token", vec![])], 403, Some("malformed_token")),
        ("repeated", vec![("x-auth-token", t.to_vec()), ("x-auth-token", t.to_vec())], 403, Some("multiple_tokens")),
        ("bearer prefix", vec![("x-auth-token", [b"Bearer ".as_slice(), t].concat())], 403, Some("malformed_token")),
        ("trailing junk", vec![("x-auth-token", [t, b" x"].concat())], 403, Some("malformed_token")),
        ("comma list", vec![("x-auth-token", [t, b",", t].concat())], 403, Some("malformed_token")),
        ("non-UTF-8", vec![("x-auth-token", [t, b"\xff\xfe"].concat())], 403, Some("malformed_token")),
        ("32 KiB", vec![("x-auth-token", vec![b'a'; 32 * 1024])], 403, Some("malformed_token")),
        (
            "only in authorization",
            vec![("authorization", [b"Bearer ".as_slice(), t].concat())],
            403,
            Some("missing_token"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, headers, status, reason) in &cases {
        let before = function.seen().len();
        let refs: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let response = get(port, "/", &refs);
        let reached = function.seen().len() - before;
        let want_reached = usize::from(*status == 200);
        if response.status != *status || response.reason().as_deref() != *reason || reached != want_reached {
            failures.push(format!(
                "{name}: got {} {:?} (upstream reached {reached})",
                response.status,
                response.reason()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let denial = get(port, "/", &[]);
    assert!(denial.headers.iter().any(|(n, v)| n == "content-type" && v == "application/json"), "{:?}", denial.headers);

    // Headers under tokengate's prefix are the filter's alone: a client's are dropped.
    let spoof = get(
        port,
        "/",
        &[
            ("x-auth-token", t),
            ("x-tokengate-token-id", b"admin"),
            ("X-TokenGate-Namespace-Id", b"other"),
            ("x_tokengate_function_id", b"other"),
            ("X_TOKENGATE_TOKEN_ID", b"admin"),
        ],
    );
    assert_eq!(spoof.status, 200);
    let seen = function.seen().pop().unwrap();
    let reserved: Vec<_> =
        seen.headers.iter().filter(|(n, _)| n.replace('_', "-").starts_with("x-tokengate-")).collect();
    assert!(reserved.is_empty(), "client-sent tokengate headers reached the upstream: {reserved:?}");
    assert_eq!(seen.header("x-auth-token"), None, "the token is not forwarded by default");
    // A denied request with spoofed headers never reaches the upstream at all.
    let before = function.seen().len();
    assert_eq!(get(port, "/", &[("x-tokengate-token-id", b"admin")]).status, 403);
    assert_eq!(function.seen().len(), before);

    // forward_token keeps the (configured) header.
    let forwarded = get(envoy.port("forward"), "/", &[("x-function-token", t)]);
    assert_eq!(forwarded.status, 200);
    assert_eq!(function.seen().pop().unwrap().header("x-function-token").as_deref(), Some(token.as_str()));
    assert_eq!(get(envoy.port("forward"), "/", &[("x-auth-token", t)]).status, 403);

    // Denials are counted by reason, and Prometheus gets the reason as a label.
    let prometheus = envoy.prometheus();
    let value = |line_start: &str| -> Option<u64> {
        prometheus.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    assert!(value("tokengate_denied{reason=\"multiple_tokens\"}").is_some_and(|v| v >= 1), "{prometheus}");
    assert!(value("tokengate_denied{reason=\"missing_token\"}").is_some_and(|v| v >= 1));
    assert!(value("tokengate_allowed{}").is_some_and(|v| v >= 3));
    assert!(prometheus.contains("# TYPE tokengate_denied counter"));
    assert!(envoy.counter("wasmcustom.tokengate.denied.multiple_tokens") >= 1);
    assert!(envoy.counter("wasmcustom.tokengate.allowed") >= 3);
    envoy.assert_healthy();
}

#[test]
fn an_invalid_configuration_is_refused_at_start_naming_the_field() {
    let function = TestServer::start(true);
    let bad_configs = [
        (json!({"local_jwks": main_jwks(), "clock_skew_seconds": "60"}), "field `clock_skew_seconds`"),
        (json!({"jwks": {"cluster": "keys", "path": "/k", "refresh_seconds": 0}}), "field `jwks.refresh_seconds`"),
        (json!({"jwks": {"cluster": "keys", "path": "/k"}, "unknown": true}), "field `unknown`"),
        (json!({"local_jwks": main_jwks(), "jwks": {"cluster": "keys", "path": "/k"}}), "field `jwks`"),
    ];
    for (config, named) in bad_configs {
        let listeners = [ListenerSpec { name: "bad".into(), plugin_config: config.clone() }];
        match Envoy::launch(&listeners, free_port(), function.port, 1) {
            Ok(_) => panic!("envoy accepted {config}"),
            Err(log) => {
                assert!(log.contains(&format!("invalid configuration: {named}")), "log does not name {named}:\n{log}");
                assert!(!log.contains("panicked"), "{log}");
            }
        }
    }
    assert!(function.seen().is_empty());
}

/// `token_cache_size` reaches the filter: with the default, a repeated RS256 token is checked by
/// Envoy once and then served from the cache; with 0, every request is checked again; a
/// refused value stops Envoy at start.
#[test]
fn token_cache_size_decides_how_often_a_repeated_token_is_verified() {
    let function = TestServer::start(true);
    let listeners = [
        ListenerSpec { name: "cached".into(), plugin_config: json!({"local_jwks": main_jwks()}) },
        ListenerSpec {
            name: "uncached".into(),
            plugin_config: json!({"local_jwks": main_jwks(), "token_cache_size": 0}),
        },
    ];
    // One worker: the cache is per worker.
    let envoy = Envoy::start(&listeners, free_port(), function.port, 1);
    let token = case_token("pos-01-rs256");
    let by_envoy = || envoy.counter("wasmcustom.tokengate.signatures.by_envoy");
    for (listener, checks) in [("cached", 1), ("uncached", 5)] {
        let before = by_envoy();
        for n in 0..5 {
            assert_eq!(call(envoy.port(listener), Some(&token)).status, 200, "{listener} request {n}");
        }
        assert_eq!(by_envoy() - before, checks, "signatures checked by Envoy for 5 requests on {listener}");
    }
    envoy.assert_logged("token_cache_size=0");
    let config = json!({"local_jwks": main_jwks(), "token_cache_size": 100_000});
    match Envoy::launch(&[ListenerSpec { name: "bad".into(), plugin_config: config }], free_port(), function.port, 1) {
        Ok(_) => panic!("envoy accepted token_cache_size 100000"),
        Err(log) => assert!(log.contains("invalid configuration: field `token_cache_size`"), "{log}"),
    }
    envoy.assert_healthy();
}

fn main_jwks() -> Value {
    serde_json::from_slice(&case_file("jwks_main.json")).unwrap()
}
