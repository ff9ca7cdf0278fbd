//! Tokens from the real key service through the real Envoy: the scope rule, expiry,
//! acceptance of fresh tokens at once, and revocation within the refresh period.

use crate::harness::*;
use serde_json::json;
use std::time::Duration;

fn instance(name: &str, namespace: &str, function: Option<&str>) -> ListenerSpec {
    let mut extra = json!({"namespace_id": namespace, "issuer": "tokengate", "clock_skew_seconds": 0,
                           "jwks": {"refresh_seconds": 2}});
    if let Some(f) = function {
        extra["function_id"] = f.into();
    }
    ListenerSpec {
        name: name.into(),
        plugin_config: remote_config(&format!("/v1/namespaces/{namespace}/jwks.json"), extra),
    }
}

#[test]
fn scope_expiry_and_revocation_end_to_end() {
    let service = KeyService::start();
    let function = TestServer::start(true);
    let envoy = Envoy::start(
        &[instance("fa", "ns1", Some("fa")), instance("fb", "ns1", Some("fb")), instance("ns2", "ns2", None)],
        service.port,
        function.port,
        2,
    );
    let status = |listener: &str, token: &str| {
        let r = call(envoy.port(listener), Some(token));
        (r.status, r.reason())
    };
    let denied = |reason: &str| (403, Some(reason.to_owned()));
    let ok = (200, None);

    // A function token: its function only. Created after Envoy started, so its kid is new.
    let (fa_id, fa) = service.create("ns1", Some("fa"), None);
    assert_eq!(status("fa", &fa), ok);
    let seen = function.seen().pop().unwrap();
    assert_eq!(seen.header("x-tokengate-token-id"), Some(fa_id.clone()));
    assert_eq!(seen.header("x-tokengate-namespace-id").as_deref(), Some("ns1"));
    assert_eq!(seen.header("x-tokengate-function-id").as_deref(), Some("fa"));
    assert_eq!(status("fb", &fa), denied("out_of_scope"));
    assert_eq!(status("ns2", &fa), denied("unknown_key"), "another namespace's key set does not have it");

    // A namespace token: every function of its namespace, nothing elsewhere.
    let (_, ns1) = service.create("ns1", None, None);
    assert_eq!(status("fa", &ns1), ok);
    assert_eq!(status("fb", &ns1), ok);
    assert_eq!(status("ns2", &ns1), denied("unknown_key"));
    let (_, ns2) = service.create("ns2", None, None);
    assert_eq!(status("ns2", &ns2), ok);
    assert_eq!(status("fa", &ns2), denied("unknown_key"));
    // A function token of another namespace never reaches a namespace-wide instance.
    let (_, ns2_fn) = service.create("ns2", Some("fx"), None);
    assert_eq!(status("ns2", &ns2_fn), denied("out_of_scope"));

    // Expiry.
    let (_, short) = service.create_with_cli("ns1", "fa", "2s");
    assert_eq!(status("fa", &short), ok);
    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(status("fa", &short), denied("expired"));

    // Revocation: gone within the refresh period (2 s) plus a tick.
    service.delete(&fa_id);
    let revoked =
        eventually(Duration::from_secs(6), || (call(envoy.port("fa"), Some(&fa)).status == 403).then_some(()));
    assert!(revoked.is_some(), "a deleted token still works after the refresh period");
    assert_eq!(status("fa", &fa), denied("unknown_key"));
    assert_eq!(status("fa", &ns1), ok, "other tokens keep working");

    // Both sides' Prometheus metrics saw this.
    let metric = |text: &str, line_start: &str| -> u64 {
        text.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
    };
    let service_metrics = get(service.port, "/metrics", &[]).body;
    assert_eq!(metric(&service_metrics, "tokengate_tokens_created_total"), 5, "{service_metrics}");
    assert_eq!(metric(&service_metrics, "tokengate_tokens_deleted_total"), 1);
    assert!(metric(&service_metrics, "tokengate_jwks_requests_total{result=\"200\"}") >= 2);
    let envoy_metrics = envoy.prometheus();
    assert!(metric(&envoy_metrics, "tokengate_denied{reason=\"out_of_scope\"}") >= 2, "{envoy_metrics}");
    assert!(metric(&envoy_metrics, "tokengate_jwks_fetch_ok{}") >= 3);
    envoy.assert_healthy();
}

/// `tokengate_jwks_requests_total{result="…"}` of the key service.
fn jwks_answers(service: &KeyService, result: &str) -> u64 {
    let metrics = get(service.port, "/metrics", &[]).body;
    let line = format!("tokengate_jwks_requests_total{{result=\"{result}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&line)).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn refreshes_are_conditional_and_still_revoke() {
    let service = KeyService::start();
    let function = TestServer::start(true);
    let envoy = Envoy::start(&[instance("f", "etag", Some("f"))], service.port, function.port, 2);
    let (id, token) = service.create("etag", Some("f"), None);
    assert_eq!(call(envoy.port("f"), Some(&token)).status, 200);
    let full_before = jwks_answers(&service, "200");

    // Unknown kids for 4 s: each refetch (at most one a second) is answered 304, not with the
    // key set again.
    let (_, rest) = token.split_once('.').unwrap();
    let started = std::time::Instant::now();
    for i in 0.. {
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
        let forged = format!("{}.{rest}", b64(format!(r#"{{"alg":"EdDSA","kid":"unknown-{i}"}}"#).as_bytes()));
        assert_eq!(call(envoy.port("f"), Some(&forged)).status, 403);
        std::thread::sleep(Duration::from_millis(50));
    }
    let (full, not_modified) = (jwks_answers(&service, "200") - full_before, jwks_answers(&service, "304"));
    eprintln!("during 4 s of unknown kids: {full} full key sets, {not_modified} answers 304");
    assert!(not_modified >= 2, "refetches were not conditional: {not_modified} answers 304, {full} full key sets");
    assert!(full <= 1, "{full} full key sets for an unchanged key set");
    assert_eq!(call(envoy.port("f"), Some(&token)).status, 200, "the token still works");

    // A deletion changes the key set, so the next conditional fetch brings it in full.
    service.delete(&id);
    let refused = eventually(Duration::from_secs(10), || {
        let r = call(envoy.port("f"), Some(&token));
        (r.status == 403).then(|| r.reason())
    });
    assert_eq!(refused, Some(Some("unknown_key".to_owned())), "the deleted token is still accepted");
    // And a new token works at once.
    let (_, fresh) = service.create("etag", Some("f"), None);
    assert_eq!(call(envoy.port("f"), Some(&fresh)).status, 200);
    envoy.assert_healthy();
}
