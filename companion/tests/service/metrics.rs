//! `GET /metrics` over HTTP: public, in the Prometheus text format, naming no namespace or
//! token, with exact counts after a few admin and JWKS calls.

use std::collections::BTreeMap;
use std::time::Instant;

use tokengate_cli::jwks_cache::JWKS_CACHE_TTL;

use crate::backend::{on_each_backend, Backend};
use crate::support::*;

on_each_backend!(metrics_count_what_the_service_answered);

/// Every sample `/metrics` has, with the given non-zero values.
fn expected(non_zero: &[(&str, u64)]) -> BTreeMap<String, u64> {
    let mut samples: BTreeMap<String, u64> = [
        "tokengate_tokens_created_total",
        "tokengate_tokens_deleted_total",
        r#"tokengate_jwks_requests_total{result="200"}"#,
        r#"tokengate_jwks_requests_total{result="304"}"#,
        r#"tokengate_jwks_requests_total{result="400"}"#,
        r#"tokengate_jwks_requests_total{result="503"}"#,
        r#"tokengate_jwks_cache_total{result="hit"}"#,
        r#"tokengate_jwks_cache_total{result="miss"}"#,
        r#"tokengate_admin_requests_total{status_class="2xx"}"#,
        r#"tokengate_admin_requests_total{status_class="4xx"}"#,
        r#"tokengate_admin_requests_total{status_class="5xx"}"#,
        "tokengate_auth_failures_total",
        "tokengate_errors_total",
        "tokengate_namespace_full_total",
    ]
    .into_iter()
    .map(|series| (series.to_owned(), 0))
    .collect();
    samples.insert(format!(r#"tokengate_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION")), 1);
    for (series, value) in non_zero {
        assert!(samples.insert((*series).to_owned(), *value).is_some(), "unknown series {series}");
    }
    samples
}

fn metrics_count_what_the_service_answered(backend: Backend) {
    let server = Server::start_with(&backend, &["--max-keys-per-namespace", "1"], Some(ADMIN_TOKEN));
    let url = &server.url;

    // No credentials needed; the text format; every series there from the start, at zero.
    let scraped = call("GET", &format!("{url}/metrics"), None, &[], None);
    assert_eq!(scraped.status, 200, "{}", scraped.body);
    assert_eq!(scraped.header("content-type"), Some("text/plain; version=0.0.4"));
    assert_eq!(scraped.header("cache-control"), Some("no-store"));
    for line in [
        "# TYPE tokengate_tokens_created_total counter\n",
        "# TYPE tokengate_jwks_requests_total counter\n",
        "# TYPE tokengate_build_info gauge\n",
    ] {
        assert!(scraped.body.contains(line), "{line:?} not in\n{}", scraped.body);
    }
    assert_eq!(scraped.body.lines().filter(|line| line.starts_with("# HELP ")).count(), 9, "{}", scraped.body);
    assert_eq!(parse_metrics(&scraped.body), expected(&[]));

    // Create (201), then a create over the key cap (409).
    let created = admin("POST", &server, "/v1/tokens", Some(create_body("shop", Some("cart"))));
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let token = created.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(admin("POST", &server, "/v1/tokens", Some(create_body("shop", None))).status, 409);

    // JWKS: sent (200), revalidated (304), a bad namespace name (400).
    let first_lookup = Instant::now();
    let published = jwks(&server, "shop");
    assert_eq!(published.status, 200);
    let etag = published.header("etag").unwrap().to_owned();
    let jwks_url = format!("{url}/v1/namespaces/shop/jwks.json");
    assert_eq!(call("GET", &jwks_url, None, &[("If-None-Match", &etag)], None).status, 304);
    let lookups_took = first_lookup.elapsed();
    assert_eq!(jwks(&server, "-bad-name").status, 400);

    // A wrong admin token (401), a delete (204), the same delete again (404).
    let body = create_body("shop", None).to_string();
    let refused = call("POST", &format!("{url}/v1/tokens"), Some("wrong-token-0123456789"), &[], Some(&body));
    assert_eq!(refused.status, 401);
    assert_eq!(admin("DELETE", &server, &format!("/v1/tokens/{id}"), None).status, 204);
    assert_eq!(admin("DELETE", &server, &format!("/v1/tokens/{id}"), None).status, 404);

    let scraped = call("GET", &format!("{url}/metrics"), None, &[], None);
    for secret in [id.as_str(), token.as_str(), "shop", "cart", ADMIN_TOKEN] {
        assert!(!scraped.body.contains(secret), "/metrics names {secret:?}");
    }
    // The two lookups that reached the cache: the first read the store (the create emptied the
    // namespace's entry), the second was served from the cache, as it came within the cache's
    // age. Only on a machine so loaded that the two took longer may the second read again.
    let counted = parse_metrics(&scraped.body);
    let (hit, miss) = if lookups_took < JWKS_CACHE_TTL {
        (1, 1)
    } else {
        eprintln!("the two JWKS lookups took {lookups_took:?}: the second may have missed");
        let miss = counted[r#"tokengate_jwks_cache_total{result="miss"}"#];
        assert!(miss == 1 || miss == 2, "{miss} misses");
        (2 - miss, miss)
    };
    assert_eq!(
        counted,
        expected(&[
            ("tokengate_tokens_created_total", 1),
            ("tokengate_tokens_deleted_total", 1),
            (r#"tokengate_jwks_requests_total{result="200"}"#, 1),
            (r#"tokengate_jwks_requests_total{result="304"}"#, 1),
            (r#"tokengate_jwks_requests_total{result="400"}"#, 1),
            (r#"tokengate_jwks_cache_total{result="hit"}"#, hit),
            (r#"tokengate_jwks_cache_total{result="miss"}"#, miss),
            // 201 and 204; 409, 401 and 404.
            (r#"tokengate_admin_requests_total{status_class="2xx"}"#, 2),
            (r#"tokengate_admin_requests_total{status_class="4xx"}"#, 3),
            ("tokengate_auth_failures_total", 1),
            ("tokengate_namespace_full_total", 1),
        ])
    );
    assert!(server.stop().success());
}
