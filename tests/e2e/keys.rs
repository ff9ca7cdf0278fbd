//! Key endpoint behaviour through the real Envoy: waiting for the first key set, fetching once
//! per Envoy, keeping the last good keys, and unknown `kid`s.

use crate::harness::*;
use ed25519_compact::{KeyPair, Seed};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

#[test]
fn a_request_before_the_first_key_set_waits_for_it() {
    let keys = TestServer::start(false);
    // The key service answers slowly: requests that come first must wait, not be denied.
    keys.route("/k", Reply { delay: Duration::from_millis(600), ..Reply::json(case_file("jwks_main.json")) });
    let function = TestServer::start(true);
    let config = remote_config("/k", json!({}));
    let envoy = Envoy::single(config, keys.port, function.port, 2);
    let response = call(envoy.port("l"), Some(&case_token("pos-03-eddsa")));
    assert_eq!(response.status, 200, "{}", response.body);
    envoy.assert_healthy();
}

#[test]
fn the_key_set_is_fetched_once_per_envoy_not_per_worker() {
    let keys = TestServer::start(false);
    keys.route("/k", Reply::json(case_file("jwks_main.json")));
    let function = TestServer::start(true);
    let config = remote_config("/k", json!({}));
    let envoy = Envoy::single(config, keys.port, function.port, 4);
    for _ in 0..20 {
        assert_eq!(call(envoy.port("l"), Some(&case_token("pos-01-rs256"))).status, 200);
    }
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(keys.hits("/k"), 1, "4 workers + main thread must share one fetch");
    envoy.assert_healthy();
}

#[test]
fn a_broken_refresh_keeps_the_last_good_keys() {
    let keys = TestServer::start(false);
    keys.route("/k", Reply::json(case_file("jwks_main.json")));
    let function = TestServer::start(true);
    let config = remote_config("/k", json!({"jwks": {"refresh_seconds": 1}}));
    let envoy = Envoy::single(config, keys.port, function.port, 2);
    let token = case_token("pos-02-es256");
    assert_eq!(call(envoy.port("l"), Some(&token)).status, 200);
    // A body over the 4 MiB cap: a valid key set padded with spaces.
    let mut huge = case_file("jwks_main.json");
    huge.resize(5 << 20, b' ');
    let slow = Duration::from_millis(1500); // the fetch timeout is 1000 ms
    let cases: Vec<(u16, &str, Vec<u8>, Duration)> = vec![
        (200, "text/html", b"<html>502 Bad Gateway</html>".to_vec(), Duration::ZERO),
        (503, "application/json", b"{\"keys\":[]}".to_vec(), Duration::ZERO),
        (404, "application/json", b"{\"keys\":[]}".to_vec(), Duration::ZERO),
        (200, "application/json", b"{\"keys\": 7}".to_vec(), Duration::ZERO),
        (200, "application/json", b"{\"keys\": [], \"keys\": []}".to_vec(), Duration::ZERO),
        (200, "application/json", b"".to_vec(), Duration::ZERO),
        (200, "application/json", b"{\"keys\": [".to_vec(), Duration::ZERO),
        (200, "application/json", huge, Duration::ZERO),
        (200, "application/json", case_file("jwks_main.json"), slow),
    ];
    let failures_before = envoy.counter("wasmcustom.tokengate.jwks.fetch_failed");
    for (status, content_type, body, delay) in cases {
        let before = keys.hits("/k");
        keys.route("/k", Reply { status, content_type: content_type.into(), delay, ..Reply::json(body) });
        let refetched = eventually(Duration::from_secs(6), || (keys.hits("/k") > before).then_some(()));
        assert!(refetched.is_some(), "no refresh happened");
        std::thread::sleep(delay + Duration::from_millis(100));
        let response = call(envoy.port("l"), Some(&token));
        assert_eq!(response.status, 200, "after a broken refresh ({status} {content_type}): {}", response.body);
    }
    assert!(envoy.counter("wasmcustom.tokengate.jwks.fetch_failed") >= failures_before + 9);
    // An empty key set is a good key set: it is what revoking a namespace's last token publishes.
    keys.route("/k", Reply::json(b"{\"keys\":[]}".to_vec()));
    let revoked =
        eventually(Duration::from_secs(6), || (call(envoy.port("l"), Some(&token)).status == 403).then_some(()));
    assert!(revoked.is_some(), "an empty key set was not applied");
    envoy.assert_healthy();
}

#[test]
fn max_stale_seconds_bounds_how_long_old_keys_are_trusted() {
    let keys = TestServer::start(false);
    keys.route("/k", Reply::json(case_file("jwks_main.json")));
    let function = TestServer::start(true);
    let config = remote_config("/k", json!({"jwks": {"refresh_seconds": 1, "max_stale_seconds": 3}}));
    let envoy = Envoy::single(config, keys.port, function.port, 2);
    let token = case_token("pos-03-eddsa");
    assert_eq!(call(envoy.port("l"), Some(&token)).status, 200);
    keys.route("/k", Reply { status: 503, ..Reply::json("down") });
    let stale = eventually(Duration::from_secs(8), || {
        let r = call(envoy.port("l"), Some(&token));
        (r.status == 403).then(|| r.reason())
    });
    assert_eq!(stale, Some(Some("keys_unavailable".to_owned())), "old keys trusted past max_stale_seconds");
    keys.route("/k", Reply::json(case_file("jwks_main.json")));
    let back =
        eventually(Duration::from_secs(35), || (call(envoy.port("l"), Some(&token)).status == 200).then_some(()));
    assert!(back.is_some(), "keys came back but requests are still refused");
    envoy.assert_healthy();
}

#[test]
fn no_key_service_means_keys_unavailable() {
    let function = TestServer::start(true);
    let config = remote_config("/k", json!({"jwks": {"timeout_ms": 300}}));
    // Nothing listens on the key port.
    let envoy = Envoy::single(config, free_port(), function.port, 2);
    let response = call(envoy.port("l"), Some(&case_token("pos-01-rs256")));
    assert_eq!((response.status, response.reason().as_deref()), (403, Some("keys_unavailable")));
    assert!(function.seen().is_empty());
    envoy.assert_healthy();
}

#[test]
fn a_flood_of_unknown_kids_causes_a_bounded_number_of_fetches() {
    let keys = TestServer::start(false);
    keys.route("/k", Reply::json(case_file("jwks_main.json")));
    let function = TestServer::start(true);
    let config = remote_config("/k", json!({}));
    let envoy = Envoy::single(config, keys.port, function.port, 2);
    let good = case_token("pos-01-rs256");
    assert_eq!(call(envoy.port("l"), Some(&good)).status, 200);
    let (_, rest) = good.split_once('.').unwrap();
    let start = std::time::Instant::now();
    // Valid tokens keep working during the flood.
    let valid = {
        let port = envoy.port("l");
        let good = good.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let mut statuses = Vec::new();
            while started.elapsed() < Duration::from_secs(10) {
                statuses.push(call(port, Some(&good)).status);
                std::thread::sleep(Duration::from_millis(20));
            }
            statuses
        })
    };
    let mut sent = 0;
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let port = envoy.port("l");
            let rest = rest.to_owned();
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                let start = std::time::Instant::now();
                for i in 0.. {
                    if start.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                    let kid = format!(r#"{{"alg":"RS256","kid":"random-{t}-{i}"}}"#);
                    let forged = format!("{}.{rest}", b64(kid.as_bytes()));
                    statuses.push(call(port, Some(&forged)).status);
                }
                statuses
            })
        })
        .collect();
    for thread in threads {
        for status in thread.join().unwrap() {
            assert_eq!(status, 403);
            sent += 1;
        }
    }
    let valid = valid.join().unwrap();
    assert!(!valid.is_empty() && valid.iter().all(|s| *s == 200), "valid tokens refused during the flood: {valid:?}");
    let seconds = start.elapsed().as_secs_f64();
    let fetches = keys.hits("/k");
    eprintln!(
        "{sent} unknown kids in {seconds:.1} s: {fetches} key-set fetches; {} valid requests all 200",
        valid.len()
    );
    // One initial fetch, then at most one per second.
    assert!(fetches as f64 <= 2.0 + seconds, "{fetches} fetches for {sent} unknown kids in {seconds:.1} s");
    assert_eq!(call(envoy.port("l"), Some(&good)).status, 200, "valid tokens keep working");
    envoy.assert_healthy();
}

#[test]
fn hundreds_of_requests_finished_after_a_key_wait_leave_the_vm_healthy() {
    // Two tokengate filters in one chain share one VM; the first waits for a slow key set. When it
    // comes, the paused requests are finished, and Envoy carries out each continue or reply after
    // the callback, through the second filter, which calls into the VM again: finished all at
    // once, a few hundred of them nested deep enough to overflow V8's stack and kill the VM.
    let (first, second) = (KeyPair::from_seed(Seed::new([41; 32])), KeyPair::from_seed(Seed::new([42; 32])));
    let keys = TestServer::start(false);
    let slow = Reply { delay: Duration::from_secs(2), ..Reply::json(ed25519_jwks(&[("one", &first)]).to_string()) };
    keys.route("/k", slow);
    let function = TestServer::start(true);
    let configs = [
        remote_config("/k", json!({"jwks": {"timeout_ms": 8000}})),
        json!({"local_jwks": ed25519_jwks(&[("two", &second)]), "header": "x-second-token"}),
    ];
    let envoy = Envoy::start_chain(&configs, keys.port, function.port, 1);
    let port = envoy.port("l");
    let (t1, t2, unknown) =
        (ed25519_token("one", &first), ed25519_token("two", &second), ed25519_token("nope", &first));
    let at_once = |first_token: &str| {
        let threads: Vec<_> = (0..300)
            .map(|_| {
                let (a, b) = (first_token.to_owned(), t2.clone());
                std::thread::spawn(move || {
                    let response = get(port, "/", &[("x-auth-token", a.as_bytes()), ("x-second-token", b.as_bytes())]);
                    (response.status, response.reason())
                })
            })
            .collect();
        let mut counts: HashMap<(u16, Option<String>), usize> = HashMap::new();
        for thread in threads {
            *counts.entry(thread.join().unwrap()).or_default() += 1;
        }
        counts
    };
    // 300 requests while the first key set is on its way: all wait, all pass both filters.
    assert_eq!(at_once(&t1), HashMap::from([((200, None), 300)]));
    // 300 requests naming a kid the key set lacks: all wait for one refetch, all are refused.
    assert_eq!(at_once(&unknown), HashMap::from([((403, Some("unknown_key".to_owned())), 300)]));
    assert_eq!(call_both(port, &t1, &t2), 200);
    let log = envoy.flushed_log();
    assert!(!log.contains("Maximum call stack"), "{log}");
    envoy.assert_healthy();
}

fn call_both(port: u16, first: &str, second: &str) -> u16 {
    get(port, "/", &[("x-auth-token", first.as_bytes()), ("x-second-token", second.as_bytes())]).status
}
